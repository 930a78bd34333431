"""The snapshot forest: moments linked to parents, a current pointer, libvirt's list filters and orders.

Semantics follow libvirt's virdomainmomentobjlist.c: children are visited newest-linked first, descendants
in pre-order, and moved children go in front of their new siblings. Every driver uses these verbs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import ErrorCode, ErrorDomain, error
from ..flags import SnapshotList
from .snapshot_xml import SnapshotState


@dataclass(eq=False, slots=True)
class Moment:
    """One snapshot in the forest. `children` is kept oldest-linked first; visits go newest first."""

    name: str
    state: SnapshotState = SnapshotState.NOSTATE
    external: bool = False
    defn: Any = None  # the driver's payload: a SnapshotDef, or a hypervisor object
    parent: Moment | None = None
    children: list[Moment] = field(default_factory=list)
    seq: int = 0  # link order, persisted so that a reloaded tree lists children in the same order
    creation_time: int = 0

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


@dataclass(slots=True)
class DeleteResult:
    removed: list[Moment]
    current_changed: bool


class SnapshotTree:
    """A domain's snapshots. `metadata` says whether they are tracked by virtsnap (libvirt's hasMetadata)."""

    def __init__(self, metadata: bool = True) -> None:
        self._root = Moment(name="")
        self._by_name: dict[str, Moment] = {}
        self.current: Moment | None = None
        self.metadata = metadata
        self._seq = 0
        # What changed since the owner last persisted the tree.
        self.dirty: set[str] = set()
        self.deleted: set[str] = set()
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

    def move_children(self, source: Moment, target: Moment | None) -> None:
        """Reparent all children of `source` to `target`, in front of target's own children."""
        dest = target if target is not None else self._root
        for child in source.children:
            child.parent = dest
            child.seq = self._next_seq()
            self.dirty.add(child.name)
        dest.children.extend(source.children)
        source.children = []

    def remove(self, moment: Moment) -> bool:
        """Forget a moment (children are the caller's business). Returns whether it was current."""
        del self._by_name[moment.name]
        self.dirty.discard(moment.name)
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
        other: Moment | None = parent
        while other is not None and other.parent_name is not None:
            if other.parent_name == name:
                raise error(ErrorCode.INVALID_ARG, ErrorDomain.DOMAIN,
                            f"parent {other.name} would create cycle to {name}")
            other = self.parent_of(other)

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
            self.deleted.add(moment.name)
            removed.append(moment)
        return DeleteResult(removed=removed, current_changed=self.current is not before)

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
