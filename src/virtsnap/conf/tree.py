"""The snapshot forest: moments linked to parents, a current pointer, libvirt's list filters and orders.

Semantics follow libvirt's virdomainmomentobjlist.c: children are visited newest-linked first, descendants
in pre-order, and moved children go in front of their new siblings. Every driver uses these verbs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ..errors import ErrorCode, ErrorDomain, error
from ..flags import SnapshotList, SnapshotState

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any

# SnapshotState by value, for building moments from stored rows without an enum call per row
_STATES = {int(s): s for s in SnapshotState}
# A stored moment: name, parent name, seq, creation_time, state, external
StoredRow = tuple[str, str | None, int, int, int, int]
# What a listing shows of a moment: name, parent name, <state> text, creation time (SnapshotTree.summaries)
Summary = tuple[str, str | None, str | None, int | None]
_STATE_XML: dict[SnapshotState, str] = {s: s.xml for s in SnapshotState if s is not SnapshotState.NOSTATE}
_STATE_XML_BY_VALUE = {int(s): text for s, text in _STATE_XML.items()}


def row_summaries(rows: list[tuple[str, str | None, int, int]]) -> list[Summary]:
    """SnapshotTree.summaries of every moment of a tree that `load_rows` would build from these stored
    (name, parent, state, creation_time) rows in `seq` order, without building it: a parent not among the
    rows reads as none, as load_rows links such a moment as a root."""
    names = {row[0] for row in rows}
    states = _STATE_XML_BY_VALUE
    return [(name, parent if parent and parent in names else None, states.get(state), ctime or None)
            for name, parent, state, ctime in rows]


class Moment:
    """One snapshot in the forest. `children` is kept oldest-linked first; visits go newest first.

    `defn` is the driver's payload (a SnapshotDef, a hypervisor object, or stored XML). A store may leave it
    unloaded: the first read of `defn` then asks the store's loader for it (one row), and setting it drops the
    loader.
    """

    __slots__ = ("_defn", "_loader", "children", "creation_time", "external", "name", "parent", "seq", "state")

    def __init__(self, name: str, state: SnapshotState = SnapshotState.NOSTATE, external: bool = False,
                 defn: Any = None, parent: Moment | None = None, children: list[Moment] | None = None,
                 seq: int = 0, creation_time: int = 0) -> None:
        self.name = name
        self.state = state
        self.external = external
        self._defn = defn
        self._loader: Callable[[Moment], None] | None = None
        self.parent = parent
        self.children: list[Moment] = children if children is not None else []
        self.seq = seq  # link order, persisted so that a reloaded tree lists children in the same order
        self.creation_time = creation_time

    def __repr__(self) -> str:
        return f"Moment({self.name!r}, {self.state!r}, external={self.external}, seq={self.seq})"

    @property
    def defn(self) -> Any:
        if self._loader is not None:
            self._loader(self)  # sets _defn through the setter, which drops the loader
        return self._defn

    @defn.setter
    def defn(self, value: Any) -> None:
        self._defn = value
        self._loader = None

    def defer(self, loader: Callable[[Moment], None]) -> None:
        """Leave `defn` unloaded until it is read; `loader(moment)` must then set it."""
        self._defn = None
        self._loader = loader

    @property
    def loaded(self) -> bool:
        return self._loader is None

    @property
    def parent_name(self) -> str | None:
        # The forest's hidden root is the only moment without a parent of its own.
        return self.parent.name if self.parent is not None and self.parent.parent is not None else None

    def visit_children(self) -> Iterator[Moment]:
        return reversed(self.children)

    def visit_descendants(self) -> Iterator[Moment]:
        """Pre-order, newest child first (virDomainMomentForEachDescendant)."""
        stack = list(self.children)
        while stack:
            moment = stack.pop()
            yield moment
            stack.extend(moment.children)


class DeleteResult:
    __slots__ = ("current_changed", "removed")

    def __init__(self, removed: list[Moment], current_changed: bool) -> None:
        self.removed = removed
        self.current_changed = current_changed


class SnapshotTree:
    """A domain's snapshots. `metadata` says whether they are tracked by virtsnap (libvirt's hasMetadata)."""

    def __init__(self, metadata: bool = True) -> None:
        self._root = Moment(name="")
        self._by_name: dict[str, Moment] = {}
        self.current: Moment | None = None
        self.metadata = metadata
        self._seq = 0
        # What changed since the owner last persisted the tree: `dirty` moments are new or changed,
        # `moved` ones only got a new parent or link order (a store need not rewrite their definitions).
        self.dirty: set[str] = set()
        self.moved: set[str] = set()
        self.deleted: set[str] = set()
        self.current_dirty = False

    @property
    def changed(self) -> bool:
        """Whether the tree holds changes its owner has not persisted."""
        return bool(self.dirty or self.moved or self.deleted or self.current_dirty)

    def mark_clean(self) -> None:
        self.dirty.clear()
        self.moved.clear()
        self.deleted.clear()
        self.current_dirty = False

    # -- lookups ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str) -> Moment | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return list(self._by_name)

    def moments(self) -> list[Moment]:
        return list(self._by_name.values())

    def roots(self) -> Iterator[Moment]:
        return self._root.visit_children()

    def parent_of(self, moment: Moment) -> Moment | None:
        return moment.parent if moment.parent is not self._root else None

    def is_root(self, moment: Moment) -> bool:
        return moment.parent is self._root

    # -- verbs --------------------------------------------------------------------------------------
    def add(self, moment: Moment) -> Moment:
        """virDomainMomentAssignDef: index a new moment (not yet linked to a parent)."""
        if moment.name in self._by_name:
            raise error(ErrorCode.OPERATION_FAILED, ErrorDomain.DOMAIN, f"domain moment {moment.name} already exists")
        self._by_name[moment.name] = moment
        self.deleted.discard(moment.name)
        self.dirty.add(moment.name)
        return moment

    def link(self, moment: Moment, parent: Moment | None, seq: int | None = None) -> None:
        """Make `moment` the newest child of `parent` (None: a root)."""
        target = parent if parent is not None else self._root
        moment.parent = target
        target.children.append(moment)
        moment.seq = self._next_seq() if seq is None else seq
        self._seq = max(self._seq, moment.seq)
        self.dirty.add(moment.name)

    def drop_parent(self, moment: Moment) -> None:
        if moment.parent is not None:
            moment.parent.children.remove(moment)
            moment.parent = None
            self.moved.add(moment.name)  # unsaved until linked again and persisted

    def move_children(self, source: Moment, target: Moment | None) -> None:
        """Reparent all children of `source` to `target`, in front of target's own children."""
        dest = target if target is not None else self._root
        for child in source.children:
            child.parent = dest
            child.seq = self._next_seq()
            self.moved.add(child.name)
        dest.children.extend(source.children)
        source.children = []

    def remove(self, moment: Moment) -> bool:
        """Forget a moment (children are the caller's business). Returns whether it was current."""
        del self._by_name[moment.name]
        self.dirty.discard(moment.name)
        self.moved.discard(moment.name)
        self.deleted.add(moment.name)
        if self.current is moment:
            self.set_current(None)
            return True
        return False

    def set_current(self, moment: Moment | None) -> None:
        if self.current is not moment:
            self.current = moment
            self.current_dirty = True

    def touch(self, moment: Moment) -> None:
        self.dirty.add(moment.name)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def check_cycles(self, name: str, parent_name: str | None) -> None:
        """virDomainMomentCheckCycles for a redefinition of `name` under `parent_name`."""
        if not parent_name:
            return
        if parent_name == name:
            raise error(ErrorCode.INVALID_ARG, ErrorDomain.DOMAIN, f"cannot set moment {name} as its own parent")
        parent = self._by_name.get(parent_name)
        if parent is None:
            raise error(ErrorCode.INVALID_ARG, ErrorDomain.DOMAIN, f"parent {parent_name} for moment {name} not found")
        moment = self._by_name.get(name)
        if moment is None:
            return  # a new name cannot be anybody's ancestor: no walk up a deep chain
        # Walk up from the parent by identity (no name lookups): O(depth), only for a redefinition in place.
        root = self._root
        other = parent
        while other.parent is not None and other.parent is not root:
            if other.parent is moment:
                raise error(ErrorCode.INVALID_ARG, ErrorDomain.DOMAIN,
                            f"parent {other.name} would create cycle to {name}")
            other = other.parent

    def delete(self, moment: Moment, children: bool = False, children_only: bool = False) -> DeleteResult:
        """libvirt's delete semantics for the metadata: reparent or drop the subtree, move current."""
        before = self.current
        removed: list[Moment] = []
        if children or children_only:
            was_current = False
            for desc in list(moment.visit_descendants()):
                removed.append(desc)
                was_current |= self.remove(desc)
            if was_current:
                self.set_current(moment)
        elif moment.children:
            self.move_children(moment, self.parent_of(moment))
        if children_only:
            moment.children = []
        else:
            parent = self.parent_of(moment)
            self.drop_parent(moment)
            if self.current is moment:
                self.set_current(parent)
                # the moment is gone from the index below; keep current pointing at its parent
            del self._by_name[moment.name]
            self.dirty.discard(moment.name)
            self.moved.discard(moment.name)
            self.deleted.add(moment.name)
            removed.append(moment)
        return DeleteResult(removed=removed, current_changed=self.current is not before)

    # -- building from stored rows (for stores) -----------------------------------------------------------
    def load_rows(self, rows: Iterable[StoredRow], current: str | None, loader: Callable[[Moment], None]) -> None:
        """Fill an empty tree from rows in `seq` order; each moment's `defn` is left to `loader`.

        Children are linked in seq order (oldest first), as they were linked when the rows were written.
        """
        by_name = self._by_name
        states = _STATES
        linked: list[tuple[Moment, str | None]] = []
        for name, parent, seq, ctime, state, external in rows:
            moment = Moment(name, states.get(state, SnapshotState.NOSTATE), bool(external), None, None, None, seq,
                            ctime)
            moment._loader = loader
            by_name[name] = moment
            linked.append((moment, parent))
        root = self._root
        for moment, parent in linked:
            dest = by_name.get(parent, root) if parent else root
            moment.parent = dest
            dest.children.append(moment)
        if linked:
            self._seq = max(self._seq, max(m.seq for m, _ in linked))
        self.current = by_name.get(current) if current else None
        self.mark_clean()

    def apply_rows(self, rows: Iterable[StoredRow], deleted: Iterable[str], current: str | None,
                   loader: Callable[[Moment], None]) -> None:
        """Bring a clean tree up to date with another writer's changes: `deleted` names are gone, `rows`
        (in seq order) were added or rewritten. The result equals `load_rows` of the whole new state."""
        by_name = self._by_name
        root = self._root
        for name in deleted:
            moment = by_name.pop(name, None)
            if moment is not None and moment.parent is not None:
                moment.parent.children.remove(moment)
                moment.parent = None
        relink: list[tuple[Moment, str | None]] = []
        for name, parent, seq, ctime, state, external in rows:
            moment = by_name.get(name)
            if moment is None:
                moment = Moment(name, seq=seq)
                by_name[name] = moment
                relink.append((moment, parent))
            else:
                old_parent = moment.parent
                if moment.seq != seq or (old_parent.name if old_parent is not None and old_parent is not root
                                         else None) != parent:
                    if old_parent is not None:
                        old_parent.children.remove(moment)
                        moment.parent = None
                    if moment.seq != seq:  # relinked: a fresh load lists it by its new link order
                        del by_name[name]
                        by_name[name] = moment
                    moment.seq = seq
                    relink.append((moment, parent))
            moment.state = _STATES.get(state, SnapshotState.NOSTATE)
            moment.external = bool(external)
            moment.creation_time = ctime
            moment.defer(loader)
            self._seq = max(self._seq, seq)
        # Every relinked row got a seq above all unchanged ones (link and move_children take the next seq),
        # and rows come in seq order: appending keeps each child list oldest-linked first.
        for moment, parent in relink:
            dest = by_name.get(parent, root) if parent else root
            moment.parent = dest
            dest.children.append(moment)
        self.current = by_name.get(current) if current else None
        self.mark_clean()

    # -- listing ------------------------------------------------------------------------------------
    def select(self, start: Moment | None, flags: int) -> list[Moment]:
        """virDomainMomentObjListGetNames with libvirt's snapshot filter; flags are already checked."""
        fl = SnapshotList(flags)
        leaves = fl & (SnapshotList.LEAVES | SnapshotList.NO_LEAVES)
        if leaves == SnapshotList.LEAVES | SnapshotList.NO_LEAVES:
            leaves = SnapshotList(0)
        meta = fl & (SnapshotList.METADATA | SnapshotList.NO_METADATA)
        if meta == SnapshotList.METADATA | SnapshotList.NO_METADATA:
            meta = SnapshotList(0)
        status_all = SnapshotList.INACTIVE | SnapshotList.ACTIVE | SnapshotList.DISK_ONLY
        status = fl & status_all
        if status == status_all:
            status = SnapshotList(0)
        location = fl & (SnapshotList.INTERNAL | SnapshotList.EXTERNAL)
        if location == SnapshotList.INTERNAL | SnapshotList.EXTERNAL:
            location = SnapshotList(0)
        if meta == (SnapshotList.NO_METADATA if self.metadata else SnapshotList.METADATA):
            return []

        bit0 = bool(fl & SnapshotList.ROOTS)
        candidates: Iterator[Moment]
        if start is None:
            if bit0:
                candidates = self._root.visit_children()
            elif fl & SnapshotList.TOPOLOGICAL:
                candidates = self._root.visit_descendants()
            else:
                candidates = iter(list(self._by_name.values()))
        elif bit0:
            candidates = start.visit_descendants()
        else:
            candidates = start.visit_children()

        if not (leaves or status or location):
            return list(candidates)
        out = []
        for moment in candidates:
            if leaves == SnapshotList.LEAVES and moment.children:
                continue
            if leaves == SnapshotList.NO_LEAVES and not moment.children:
                continue
            if status:
                st = moment.state
                if not (status & SnapshotList.INACTIVE) and st == SnapshotState.SHUTOFF:
                    continue
                if not (status & SnapshotList.DISK_ONLY) and st == SnapshotState.DISK_SNAPSHOT:
                    continue
                if not (status & SnapshotList.ACTIVE) and st.is_active:
                    continue
            if location == SnapshotList.INTERNAL and moment.external:
                continue
            if location == SnapshotList.EXTERNAL and not moment.external:
                continue
            out.append(moment)
        return out

    def summaries(self, moments: Iterable[Moment]) -> list[Summary]:
        """(name, parent, state, creation time) of each moment as its XML shows them (what a listing prints),
        in one pass: the parent None for a root, the state as <state> spells it, None for the no-state and
        for a creation time of 0 (the XML then has no <state> or <creationTime>)."""
        root, states = self._root, _STATE_XML
        return [(m.name, m.parent.name if m.parent is not None and m.parent is not root else None,
                 states.get(m.state), m.creation_time or None) for m in moments]

    def topological(self) -> list[Moment]:
        """Every moment, parents before children."""
        return list(self._root.visit_descendants())

    def check_invariants(self) -> None:
        """Raise AssertionError if links, index and current disagree (used by tests)."""
        seen: set[str] = set()
        for moment in self._root.visit_descendants():
            assert moment.name not in seen, f"{moment.name} reached twice"
            seen.add(moment.name)
            assert self._by_name.get(moment.name) is moment, f"{moment.name} not indexed"
            for child in moment.children:
                assert child.parent is moment, f"{child.name} has a stale parent link"
        assert seen == set(self._by_name), f"unreachable: {set(self._by_name) - seen}"
        assert self.current is None or self._by_name.get(self.current.name) is self.current, "stale current"
