"""The libvirt+<URI> driver: every domain, lifecycle and snapshot call passed to libvirtd through libvirt-python.

Results, errors (code, domain, message) and flags are libvirt's own; virtsnap stores only what it adds (the
journal and ledger of its own operations, snapshot-protect marks), in its state directory, never in libvirt's XML.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from lxml import etree

from ...conf.tree import Moment, SnapshotTree, Summary
from ...errors import ErrorCode, ErrorDomain, error, libvirtError, protected_refusal
from ...flags import DomainState, SnapshotCheck, SnapshotDelete, SnapshotList
from ...uri import URI, redact
from ..base import SNAPSHOT_QUERIES, Capabilities, DomainInfo, DomainRecord, Drift, Op, SnapshotSize

T = TypeVar("T")

PREFIX = "libvirt+"
# libvirtd checks the flags of every call that changes something itself: virtsnap's table lets all bits through.
# The read-only snapshot queries are answered through a SnapshotTree view that cannot tell snapshotNum from
# listAllSnapshots, so their flags are checked by api.py against libvirt's own sets (base.SNAPSHOT_QUERIES),
# whose messages name the function libvirt names.
ALL_FLAGS = 0xFFFFFFFF
# Calls whose flags the Driver protocol does not carry to the driver: checked by api.py against libvirt's sets
# (virDomainGetState takes none; listAllDomains filters in api.py: VIR_CONNECT_LIST_DOMAINS_FILTERS_ALL)
NOT_CARRIED = {Op.DOMAIN_STATE: 0, Op.LIST_ALL_DOMAINS: 0xFFFF}
# The error domain of the driver underneath, for the errors api.py raises itself (unsupported flags, ...)
_DRIVER_DOMAINS = {"test": ErrorDomain.TEST, "qemu": ErrorDomain.QEMU, "esx": ErrorDomain.ESX,
                   "vpx": ErrorDomain.ESX, "vbox": ErrorDomain.VBOX}
# libvirtd's XML is trusted (it wrote it) but is still read without entities or network access
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def load_libvirt(uri_text: str) -> Any:
    """Import libvirt-python, refusing virtsnap's own drop-in shim (a `libvirt.py` that re-exports virtsnap)."""
    try:
        module = importlib.import_module("libvirt")
    except ImportError as exc:
        raise error(ErrorCode.NO_CONNECT, ErrorDomain.NONE,
                    f"{redact(uri_text)} (needs libvirt-python: install it with: pip install 'virtsnap[libvirt]', "
                    f"or use a Python that has Debian's python3-libvirt)") from exc
    if "virtsnap" in str(getattr(getattr(module, "virConnect", None), "__module__", "virtsnap")):
        raise error(ErrorCode.NO_CONNECT, ErrorDomain.NONE,
                    f"{redact(uri_text)} (the 'libvirt' module found is virtsnap's drop-in shim, not libvirt-python)")
    return module


class LibvirtMoment(Moment):
    """A snapshot named by libvirtd; its parent is asked of libvirtd when read (api.py's getParent)."""

    __slots__ = ("_call", "_snap")

    def __init__(self, name: str, snap: Any, call: Callable[..., Any]) -> None:
        super().__init__(name)
        self._snap = snap
        self._call = call

    @property
    def parent_name(self) -> str | None:
        return str(self._call(self._snap.getParent, 0).getName())


class LibvirtView(SnapshotTree):
    """One domain's snapshots as libvirtd answers for them, call by call (nothing is cached beyond one query).

    api.py asks a SnapshotTree; this one forwards every question it asks to libvirtd, so list filters, list
    orders, the current snapshot and every error are libvirt's own.
    """

    def __init__(self, dom: Any, call: Callable[..., Any], keep: Callable[[Any], None]) -> None:
        super().__init__(metadata=True)
        self._dom = dom
        self._call = call
        self._keep = keep
        self._seen: dict[str, LibvirtMoment] = {}

    def _moment(self, snap: Any) -> LibvirtMoment:
        name = str(snap.getName())
        if name not in self._seen:  # one object per name: api.py compares `tree.current is moment`
            self._keep(snap)
            self._seen[name] = LibvirtMoment(name, snap, self._call)
        return self._seen[name]

    def __len__(self) -> int:
        return int(self._call(self._dom.snapshotNum, 0))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._call(self._dom.snapshotListNames, 0)

    def get(self, name: str) -> Moment | None:
        # libvirtd's own error for a missing name (its code, domain and message) rather than api.py's
        return self._moment(self._call(self._dom.snapshotLookupByName, name, 0))

    @property
    def current(self) -> Moment | None:
        if not self._call(self._dom.hasCurrentSnapshot, 0):
            return None
        return self._moment(self._call(self._dom.snapshotCurrent, 0))

    @current.setter
    def current(self, value: Moment | None) -> None:
        pass  # SnapshotTree.__init__ sets it; libvirtd owns the current snapshot

    def select(self, start: Moment | None, flags: int) -> list[Moment]:
        if start is None:
            snaps = self._call(self._dom.listAllSnapshots, flags)
        else:
            assert isinstance(start, LibvirtMoment)
            snaps = self._call(start._snap.listAllChildren, flags)
        return [self._moment(s) for s in snaps]

    def summaries(self, moments: Iterable[Moment]) -> list[Summary]:
        out: list[Summary] = []
        for m in moments:
            assert isinstance(m, LibvirtMoment)
            root = etree.fromstring(self._call(m._snap.getXMLDesc, 0).encode(), _PARSER)
            created = root.findtext("creationTime")
            out.append((m.name, root.findtext("parent/name"), root.findtext("state"),
                        int(created) if created else None))
        return out

    def moments(self) -> list[Moment]:
        """Every snapshot, parents before children, linked as api.py's prune walks them (parent links under one
        hidden root, creation times, link order), read from libvirtd in one listing."""
        hidden = Moment("")
        ordered = self.select(None, int(SnapshotList.TOPOLOGICAL))
        by_name = {m.name: m for m in ordered}
        for seq, (moment, (_name, parent, _state, created)) in enumerate(zip(ordered, self.summaries(ordered),
                                                                                strict=True)):
            moment.parent = by_name.get(parent or "", hidden)
            moment.seq = seq
            moment.creation_time = created or 0
        return ordered

    def topological(self) -> list[Moment]:
        return self.select(None, int(SnapshotList.TOPOLOGICAL))


class LibvirtDriver:
    """A connection to libvirtd at the URI after `libvirt+`, opened read-only when virtsnap's is."""

    def __init__(self, uri: URI, lv: Any, conn: Any, scheme: str, read_only: bool = False, inner: str = "") -> None:
        self.uri = uri
        self._lv = lv
        self._conn = conn
        self._scheme = scheme
        self._read_only = read_only
        self._inner = inner
        self._context: Any = None  # beyond.Context, made by the first operation virtsnap does itself
        self._marks_store: Any = None  # store.db.MetadataStore for snapshot-protect marks where there is no Context
        domain = _DRIVER_DOMAINS.get(scheme, ErrorDomain.DOMAIN)
        # (domain UUID, snapshot name) -> the libvirt-python handle last seen for it. libvirt's snapshot handles
        # are a domain and a name, checked again on every call: a handle whose snapshot is gone still reaches
        # libvirtd, which then checks the flags before the name, in its own order.
        self._handles: dict[tuple[str, str], Any] = {}
        self.capabilities = Capabilities(scheme, domain, {op: SNAPSHOT_QUERIES.get(op, NOT_CARRIED.get(op, ALL_FLAGS))
                                                               for op in Op})

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Call libvirt-python; its libvirtError becomes virtsnap's with the same code, domain and message."""
        try:
            return fn(*args)
        except self._lv.libvirtError as exc:
            err = exc.get_error_code()
            raise libvirtError(exc.get_error_message() or str(exc),
                               ErrorCode.INTERNAL_ERROR if err is None else int(err),
                               int(exc.get_error_domain() or 0), int(exc.get_error_level() or 2),
                               exc.get_str1(), exc.get_str2(), exc.get_str3()) from None

    def close(self) -> None:
        if self._context is not None:
            self._context.close()
        if self._marks_store is not None:
            self._marks_store.close()
        try:
            self._call(self._conn.close)
        except libvirtError:
            pass  # closing a connection libvirtd already dropped: nothing left to release

    def hostname(self) -> str:
        return str(self._call(self._conn.getHostname))

    def hypervisor_version(self) -> int:
        return int(self._call(self._conn.getVersion))

    def capabilities_xml(self) -> str:
        return str(self._call(self._conn.getCapabilities))

    def node_info(self) -> list[Any]:
        return list(self._call(self._conn.getInfo))

    # -- domains ------------------------------------------------------------------------------------
    def _record(self, dom: Any) -> DomainRecord:
        return DomainRecord(str(dom.name()), str(dom.UUIDString()), int(dom.ID()),
                            bool(self._call(dom.isPersistent)))

    def _dom(self, uuid: str) -> Any:
        dom = self._call(self._conn.lookupByUUIDString, uuid)
        ctx = self._beyond()
        if ctx is not None:
            ctx.settle(uuid)  # an operation of virtsnap's own that a killed process left: finished first
        return dom

    def list_domains(self) -> list[DomainRecord]:
        return [self._record(d) for d in self._call(self._conn.listAllDomains, 0)]

    def lookup_domain(self, *, name: str | None = None, uuid: str | None = None,
                      id: int | None = None) -> DomainRecord:
        if name is not None:
            return self._record(self._call(self._conn.lookupByName, name))
        if uuid is not None:
            return self._record(self._dom(uuid))
        return self._record(self._call(self._conn.lookupByID, id))

    def domain_state(self, uuid: str) -> tuple[DomainState, int]:
        state, reason = self._call(self._dom(uuid).state, 0)
        return DomainState(state), int(reason)

    def domain_info(self, uuid: str) -> DomainInfo:
        state, max_mem, mem, vcpus, cpu = self._call(self._dom(uuid).info)
        return DomainInfo(DomainState(state), int(max_mem), int(mem), int(vcpus), int(cpu))

    def domain_xml(self, uuid: str, flags: int) -> str:
        return str(self._call(self._dom(uuid).XMLDesc, flags))

    def domain_persistent(self, uuid: str) -> bool:
        return bool(self._call(self._dom(uuid).isPersistent))

    def define_xml(self, xml: str, flags: int) -> DomainRecord:
        return self._record(self._call(self._conn.defineXMLFlags, xml, flags))

    def undefine(self, uuid: str, flags: int) -> None:
        self._call(self._dom(uuid).undefineFlags, flags)

    def start(self, uuid: str, flags: int) -> None:
        self._call(self._dom(uuid).createWithFlags, flags)

    def shutdown(self, uuid: str, flags: int) -> None:
        self._call(self._dom(uuid).shutdownFlags, flags)

    def destroy(self, uuid: str, flags: int) -> None:
        self._call(self._dom(uuid).destroyFlags, flags)

    def suspend(self, uuid: str) -> None:
        self._call(self._dom(uuid).suspend)

    def resume(self, uuid: str) -> None:
        self._call(self._dom(uuid).resume)

    def agent_command(self, uuid: str, cmd: str, seconds: float) -> str:
        qemu = importlib.import_module("libvirt_qemu")
        return str(self._call(qemu.qemuAgentCommand, self._dom(uuid), cmd, max(1, int(seconds)), 0))

    # -- snapshots ----------------------------------------------------------------------------------
    def _keep(self, uuid: str, snap: Any) -> Any:
        self._handles[(uuid, str(snap.getName()))] = snap
        return snap

    def snapshot_query(self, uuid: str, fn: Callable[[SnapshotTree], T]) -> T:
        return fn(LibvirtView(self._dom(uuid), self._call, lambda snap: self._keep(uuid, snap)))

    def _snapshot(self, uuid: str, name: str) -> Any:
        handle = self._handles.get((uuid, name))
        if handle is not None:
            return handle
        return self._keep(uuid, self._call(self._dom(uuid).snapshotLookupByName, name, 0))

    def snapshot_create(self, uuid: str, xml: str, flags: int) -> str:
        return str(self._keep(uuid, self._call(self._dom(uuid).snapshotCreateXML, xml, flags)).getName())

    def snapshot_xml(self, uuid: str, name: str, flags: int) -> str:
        return str(self._call(self._snapshot(uuid, name).getXMLDesc, flags))

    def _beyond(self) -> Any:
        """virtsnap's own operations (beyond.py) where they may run: a read-write connection to a QEMU
        libvirtd (libvirt's test driver keeps no image files; a read-only connection changes nothing)."""
        if self._read_only or self._scheme != "qemu":
            return None
        if self._context is None:
            from . import beyond

            self._context = beyond.Context(self._lv, self._conn, self._call, self._state_directory())
        return self._context

    def snapshot_revert(self, uuid: str, name: str, flags: int) -> None:
        snap = self._snapshot(uuid, name)
        ctx = self._beyond()
        if ctx is not None:
            from . import beyond

            if beyond.own_revert(ctx.version()) and beyond.is_external(
                    beyond.parse(str(self._call(snap.getXMLDesc, 0)))):
                beyond.local_only(self._inner)
                from . import revert

                with ctx.operation(uuid, name):
                    revert.revert(ctx, uuid, snap, flags)
                return
        self._call(self._dom(uuid).revertToSnapshot, snap, flags)

    def snapshot_delete(self, uuid: str, name: str, flags: int) -> None:
        """libvirt's delete, or virtsnap's own where libvirt cannot (delete.py). FORCE (virtsnap's bit, never
        passed to libvirtd) deletes protected snapshots too; the marks of the snapshots it removed go with them."""
        force = bool(flags & SnapshotDelete.FORCE)
        flags &= ~int(SnapshotDelete.FORCE)
        snap = self._snapshot(uuid, name)
        ctx = self._beyond()
        own = False
        if ctx is not None:
            from . import beyond, delete

            own = beyond.own_delete(ctx.version(), flags) and delete.wanted(ctx, self._dom(uuid), name, flags)
            if own:
                beyond.local_only(self._inner)
            elif self._local():  # libvirt's own delete would drop internal snapshots kept in the overlays it merges
                delete.refuse_lost_tags(ctx, self._dom(uuid), name, flags)
        store = self._mark_store(create=False)
        marked = store is not None and bool(store.marks(uuid))
        locked = ctx is not None and (own or marked)
        with ctx.operation(uuid, name) if locked else contextlib.nullcontext():
            marks = self._marks(uuid) if marked else {}
            if marks and not force:  # api.py checked too; here it holds against another process marking meanwhile
                self._refuse_protected(snap, name, flags, marks)
            before = set(self._call(self._dom(uuid).snapshotListNames, 0)) if marked else set()
            if own:
                from . import delete

                delete.delete(ctx, uuid, name, flags)
            else:
                try:
                    self._call(snap.delete, flags)
                except libvirtError as exc:
                    if not self._own_after_refusal(ctx, uuid, name, flags, exc):
                        raise
                    from . import delete

                    with ctx.operation(uuid, name) if not locked else contextlib.nullcontext():
                        delete.delete(ctx, uuid, name, flags)
            if marked:  # every mark of a snapshot this removed (CHILDREN: its descendants too)
                assert store is not None
                store.drop_marks(uuid, before - set(self._call(self._dom(uuid).snapshotListNames, 0)))

    def _own_after_refusal(self, ctx: Any, uuid: str, name: str, flags: int, exc: libvirtError) -> bool:
        """Whether virtsnap deletes it itself after libvirt refused to: a libvirt that deletes external snapshots
        still refuses some (11.3: "deletion of active external snapshot that is not a leaf snapshot is not
        supported", the one the domain runs on after a revert while it has children) with
        VIR_ERR_CONFIG_UNSUPPORTED, checked before it changes anything."""
        if ctx is None or exc.get_error_code() != ErrorCode.CONFIG_UNSUPPORTED:
            return False
        from . import delete

        if not self._local():
            return False  # another host's libvirtd: its refusal stands
        return bool(delete.wanted(ctx, self._dom(uuid), name, flags))

    def _local(self) -> bool:
        """Whether libvirtd runs on this host (its image files are this host's files)."""
        from . import beyond

        try:
            beyond.local_only(self._inner)
        except libvirtError:
            return False
        return True

    # -- snapshot-protect marks (virtsnap's state, keyed by the domain's UUID; libvirt's XML is left alone) ----
    def _mark_store(self, create: bool = True) -> Any:
        """The store holding the marks; None (create=False) where none was ever made: no marks then."""
        ctx = self._beyond()
        directory = ctx.directory if ctx is not None else self._state_directory()
        if not create and not directory.joinpath("metadata.db").exists():
            return None
        if ctx is not None:
            return ctx.store
        if self._marks_store is None:
            from ...store.db import MetadataStore

            self._marks_store = MetadataStore(directory, read_only=self._read_only)
        return self._marks_store

    def _state_directory(self) -> Path:
        from .beyond import is_system, state_directory

        return state_directory(is_system(self._inner))

    def _created(self, snap: Any) -> int:
        root = etree.fromstring(self._call(snap.getXMLDesc, 0).encode(), _PARSER)
        return int(root.findtext("creationTime") or 0)

    def _marks(self, uuid: str) -> dict[str, Any]:
        """name -> libvirt-python handle of the domain's protected snapshots: a mark counts while a snapshot of
        that name and creation time exists (one deleted outside virtsnap, even if made again, is unmarked)."""
        store = self._mark_store(create=False)
        marked = store.marks(uuid) if store is not None else {}
        dom = self._dom(uuid)
        if not marked:
            return {}
        out = {}
        for snap in self._call(dom.listAllSnapshots, 0):
            name = str(snap.getName())
            if name in marked and self._created(snap) == marked[name]:
                out[name] = snap
        return out

    def _refuse_protected(self, snap: Any, name: str, flags: int, marks: dict[str, Any]) -> None:
        names = [] if flags & SnapshotDelete.CHILDREN_ONLY else [name]
        if flags & (SnapshotDelete.CHILDREN | SnapshotDelete.CHILDREN_ONLY):
            names += [str(s.getName()) for s in self._call(snap.listAllChildren, int(SnapshotList.DESCENDANTS))]
        hits = [n for n in names if n in marks]
        if hits:
            raise protected_refusal(hits)

    def snapshot_protected(self, uuid: str) -> set[str]:
        return set(self._marks(uuid))

    def snapshot_set_protected(self, uuid: str, name: str, on: bool) -> None:
        if self._read_only:  # api.py refuses first; a driver call from elsewhere is refused here too
            raise error(ErrorCode.OPERATION_DENIED, ErrorDomain.DOMAIN_SNAPSHOT,
                        "read only access prevents virDomainSnapshotSetProtected")
        ctx = self._beyond()
        with ctx.operation(uuid, name) if ctx is not None else contextlib.nullcontext():
            snap = self._call(self._dom(uuid).snapshotLookupByName, name, 0)
            self._mark_store().set_mark(uuid, name, self._created(snap), on)

    def snapshot_size(self, uuid: str, name: str) -> SnapshotSize:
        """What the snapshot takes, read from the files libvirt's snapshot XML names (space.py)."""
        from . import space

        dom = self._dom(uuid)
        xml = str(self._call(self._snapshot(uuid, name).getXMLDesc, 0))
        return space.snapshot_size(xml, name, bool(self._call(dom.isActive)))

    def snapshot_check(self, uuid: str, flags: int) -> list[Drift]:
        """libvirt's snapshot metadata against the qcow2 tags and backing chains (check.py); REPAIR changes
        something only where virtsnap's own operations may run (a read-write connection to a local QEMU)."""
        from . import beyond, check

        repair = bool(flags & SnapshotCheck.REPAIR)
        ctx = self._beyond()
        if ctx is None:
            return check.check(self._dom(uuid), self._call, repair)
        if repair:
            beyond.local_only(self._inner)
        with ctx.operation(uuid, "snapshot-check"):
            return check.check(self._dom(uuid), self._call, repair, ctx, uuid)


def open_driver(uri: URI, read_only: bool, auth: Any = None) -> LibvirtDriver:
    """`uri` is libvirt+<URI>: everything after `libvirt+` is handed to libvirt as it was written."""
    inner = uri.text[len(PREFIX):] if uri.text.lower().startswith(PREFIX) else ""
    scheme = inner.split(":", 1)[0].split("+", 1)[0].lower()
    if not scheme or ":" not in inner:
        raise error(ErrorCode.NO_CONNECT, ErrorDomain.NONE,
                    f"{redact(uri.text)} (write libvirt+ followed by a libvirt URI, e.g. libvirt+qemu:///system)")
    lv = load_libvirt(uri.text)
    lv.registerErrorHandler(lambda _ctx, _err: None, None)  # errors reach the caller as exceptions, not stderr
    try:
        conn = lv.openReadOnly(inner) if read_only else lv.open(inner)
    except lv.libvirtError as exc:
        raise libvirtError(exc.get_error_message() or str(exc), int(exc.get_error_code() or 5),
                           int(exc.get_error_domain() or 0)) from None
    return LibvirtDriver(uri, lv, conn, scheme, read_only, inner)
