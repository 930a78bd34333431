"""The QEMU driver behind qemu:///session and qemu:///system: domains as QEMU processes, internal and external
snapshots. This module holds the entry points; each verb lives in its own module (lifecycle, create, revert,
delete, check) around the shared Context (context.py), imported when a call needs it.

Metadata lives in the driver's sqlite store; each state-changing call is parse -> validate -> lock and
journal -> act -> commit, and a refused call changes nothing. Monitors are connected per operation, so
several processes can manage one domain one operation at a time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from ...conf.tree import Moment, SnapshotTree, Summary
from ...errors import ErrorCode, ErrorDomain, error
from ...flags import (
    DomainCreate,
    DomainState,
    DomainUndefine,
    DomainXML,
    FlagRule,
    SnapshotCheck,
    SnapshotXML,
)
from ...flags import SnapshotCreate as C
from ...flags import SnapshotDelete as D
from ...flags import SnapshotRevert as R
from ...store.db import PointRow
from ...uri import URI
from ..base import SNAPSHOT_QUERIES, Capabilities, DomainInfo, DomainRecord, Drift, Op, SnapshotSize
from . import moments
from .context import Context
from .process import proc_stat

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any, TypeVar
    T = TypeVar("T")

ERR = ErrorDomain.QEMU
CAPABILITIES = Capabilities(
    func_prefix="qemu",
    error_domain=ERR,
    flags={
        Op.SNAPSHOT_CREATE: C.REDEFINE | C.CURRENT | C.NO_METADATA | C.HALT | C.ATOMIC | C.VALIDATE | C.DISK_ONLY
        | C.REUSE_EXT | C.QUIESCE | C.LIVE | C.NO_SPACE_CHECK,
        **SNAPSHOT_QUERIES,
        Op.REVERT: R.RUNNING | R.PAUSED | R.FORCE,
        Op.SNAPSHOT_DELETE: D.CHILDREN | D.CHILDREN_ONLY | D.METADATA_ONLY | D.FORCE,
        Op.DOMAIN_XML: DomainXML.SECURE | DomainXML.INACTIVE | DomainXML.MIGRATABLE,
        Op.DOMAIN_STATE: 0,
        Op.DOMAIN_UNDEFINE: DomainUndefine.SNAPSHOTS_METADATA | DomainUndefine.MANAGED_SAVE | DomainUndefine.TPM
        | DomainUndefine.KEEP_TPM | DomainUndefine.NVRAM | DomainUndefine.KEEP_NVRAM,
        Op.DOMAIN_DEFINE: 0,
        Op.DOMAIN_CREATE: DomainCreate.START_PAUSED | DomainCreate.START_RESET_NVRAM,
        Op.DOMAIN_SHUTDOWN: 0,
        Op.DOMAIN_DESTROY: 0,
        Op.LIST_ALL_DOMAINS: 0xFFFF,
    },
    rules={Op.SNAPSHOT_CREATE: (FlagRule(C.QUIESCE, C.DISK_ONLY, exclusive=False),  # as libvirt's qemu driver
                                FlagRule(C.LIVE, C.REDEFINE))},
)


def open_driver(uri: URI, read_only: bool, auth: Any = None) -> QemuDriver:
    if uri.host or uri.path not in ("/session", "/system"):
        raise error(ErrorCode.NO_CONNECT, ErrorDomain.NONE, f"{uri.text} (use qemu:///session or qemu:///system)")
    system = uri.path == "/system"
    if system and os.geteuid() != 0:
        raise error(ErrorCode.OPERATION_DENIED, ErrorDomain.NONE, "qemu:///system needs root")
    return QemuDriver(uri, system, read_only)


class QemuDriver:
    """The entry points: queries answered here, state changes delegated to the verb modules (lifecycle,
    create, revert, delete, check), all working in one Context per connection."""

    capabilities = CAPABILITIES

    def __init__(self, uri: URI, system: bool, read_only: bool = False) -> None:
        self.uri = uri
        self.ctx = Context(system, read_only)
        self.system, self.read_only = system, read_only
        self.store, self.state_dir, self.runtime = self.ctx.store, self.ctx.state_dir, self.ctx.runtime

    @property
    def last_pause_ms(self) -> float | None:
        """The guest's pause during the last memory snapshot of this connection, from QMP events."""
        return self.ctx.last_pause_ms

    def close(self) -> None:
        self.ctx.close()

    def hostname(self) -> str:
        import socket

        return socket.gethostname()

    def hypervisor_version(self) -> int:
        from . import host

        return host.hypervisor_version()

    def node_info(self) -> list[object]:
        from . import host

        return host.node_info()

    def capabilities_xml(self) -> str:
        from . import host

        return host.capabilities_xml()

    def domain_block_stats(self, uuid: str) -> dict[str, object]:
        """The block group of virConnectGetAllDomainStats for the domain's image-backed disks: name, path,
        capacity and allocation (qemu-img, format as defined, never probed) and physical (the file's size)."""
        from . import external, images

        sources = external.disk_sources(self.ctx.domain_def(uuid))
        out: dict[str, object] = {"block.count": len(sources)}
        for i, (target, (path, fmt)) in enumerate(sources.items()):
            facts = images.info(path, fmt, force_share=True)
            out.update({f"block.{i}.name": target, f"block.{i}.path": path,
                        f"block.{i}.allocation": int(facts.get("actual-size", 0)),
                        f"block.{i}.capacity": int(facts.get("virtual-size", 0)),
                        f"block.{i}.physical": os.stat(path).st_size})
        return out


    # -- domains ------------------------------------------------------------------------------------
    def _record(self, uuid: str, name: str) -> DomainRecord:
        pid = self.ctx.rt(uuid).pid()
        return DomainRecord(name, uuid, pid if pid is not None else -1, True)

    def list_domains(self) -> list[DomainRecord]:
        return [self._record(uuid, name) for uuid, name, _ in self.ctx.store.domains()]

    def lookup_domain(self, *, name: str | None = None, uuid: str | None = None,
                      id: int | None = None) -> DomainRecord:
        if name is not None or uuid is not None:  # one indexed query, whatever the number of domains
            found = self.ctx.store.find_domain(name=name, uuid=uuid)
            if found is not None:
                self.ctx.recover_on_open(found[0])
                return self._record(*found)
        else:
            for rec in self.list_domains():  # by id: the pid of each running domain
                if id is not None and id >= 0 and rec.id == id:
                    self.ctx.recover_on_open(rec.uuid)
                    return rec
        raise error(ErrorCode.NO_DOMAIN, ERR, f"no domain with matching name '{name}'" if name
                    else f"no domain with matching uuid '{uuid}'" if uuid else f"no domain with matching id {id}")

    def domain_state(self, uuid: str) -> tuple[DomainState, int]:
        self.ctx.exists(uuid)
        status = self.ctx.status(uuid)
        if status is None:
            return DomainState.SHUTOFF, 0
        return moments.STATUS.get(status, (DomainState.NOSTATE, 0))

    def domain_persistent(self, uuid: str) -> bool:
        self.ctx.exists(uuid)
        return True

    def domain_info(self, uuid: str) -> DomainInfo:
        defn = self.ctx.domain_def(uuid)
        state, _ = self.domain_state(uuid)
        cpu_ns = 0
        pid = self.ctx.rt(uuid).pid()
        if pid is not None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = proc_stat(pid)
                cpu_ns = (int(fields[11]) + int(fields[12])) * 10_000_000  # utime+stime in 10 ms ticks
        return DomainInfo(state, defn.memory_kib, defn.current_memory_kib, defn.vcpus, cpu_ns)

    def domain_xml(self, uuid: str, flags: int) -> str:
        defn = self.ctx.domain_def(uuid)
        pid = None if flags & DomainXML.INACTIVE else self.ctx.rt(uuid).pid()
        return defn.format(inactive=pid is None, secure=bool(flags & DomainXML.SECURE), dom_id=pid)


    def define_xml(self, xml: str, flags: int) -> DomainRecord:
        from . import lifecycle

        defn = lifecycle.define_xml(self.ctx, xml, flags)
        return self._record(defn.uuid, defn.name)

    def undefine(self, uuid: str, flags: int) -> None:
        from . import lifecycle

        lifecycle.undefine(self.ctx, uuid, flags)

    def start(self, uuid: str, flags: int) -> None:
        from . import lifecycle

        lifecycle.start(self.ctx, uuid, flags)

    def shutdown(self, uuid: str, flags: int) -> None:
        from . import lifecycle

        lifecycle.shutdown(self.ctx, uuid, flags)

    def destroy(self, uuid: str, flags: int) -> None:
        from . import lifecycle

        lifecycle.destroy(self.ctx, uuid, flags)

    def suspend(self, uuid: str) -> None:
        from . import lifecycle

        lifecycle.suspend(self.ctx, uuid)

    def resume(self, uuid: str) -> None:
        from . import lifecycle

        lifecycle.resume(self.ctx, uuid)

    def agent_command(self, uuid: str, command: str, timeout: float) -> str:
        """libvirt_qemu.qemuAgentCommand: pass one JSON command to the guest agent."""
        from . import lifecycle

        return lifecycle.agent_command(self.ctx, uuid, command, timeout)

    def snapshot_check(self, uuid: str, flags: int) -> list[Drift]:
        """virtsnap's snapshot-check: metadata against images and QEMU (see check.py)."""
        from . import check, external

        if self.ctx.read_only:  # no lock, no recovery: it reads, and reports a pending journal entry as such
            with self.ctx.lock:
                external.forget_chains()
                return check.check(self.ctx, uuid, repair=False)
        with self.ctx.operation(uuid, self.ctx.domain_def(uuid).name):
            return check.check(self.ctx, uuid, repair=bool(flags & SnapshotCheck.REPAIR))

    # -- snapshots ----------------------------------------------------------------------------------
    def snapshot_query(self, uuid: str, fn: Callable[[SnapshotTree], T]) -> T:
        with self.ctx.lock:
            return fn(self.ctx.tree(uuid))  # one query: the generation, which also says the domain exists

    def _moment(self, tree: SnapshotTree, name: str) -> Moment:
        moment = tree.get(name)
        if moment is None:
            raise error(ErrorCode.NO_DOMAIN_SNAPSHOT, ERR, f"no domain snapshot with matching name '{name}'")
        return moment

    # One snapshot read alone: a few indexed rows, never the whole tree (a cold snapshot-current, -info,
    # -parent or -dumpxml costs the same at 100 snapshots as at 100,000).
    def snapshot_point(self, uuid: str, name: str | None, with_xml: bool = False) -> PointRow | None:
        """The snapshot `name` (the current one when None: then None when there is none)."""
        with self.ctx.lock:
            row = self.ctx.store.snapshot_row(uuid, name, with_xml)
        if row is None:
            raise error(ErrorCode.NO_DOMAIN, ERR, f"no domain with matching uuid '{uuid}'")
        if not row.found:
            if name is None:
                return None
            raise error(ErrorCode.NO_DOMAIN_SNAPSHOT, ERR, f"no domain snapshot with matching name '{name}'")
        return row

    def snapshot_summaries(self, uuid: str) -> list[Summary]:
        """listAllSnapshotSummaries(0): the tree this connection holds when it is current, else the stored rows."""
        with self.ctx.lock:
            cached = self.ctx.trees.get(uuid)
            if cached is not None and cached[0] == self.ctx.store.generation(uuid):
                return cached[1].summaries(cached[1].moments())
            rows = self.ctx.store.snapshot_summaries(uuid)
        if rows is None:
            raise error(ErrorCode.NO_DOMAIN, ERR, f"no domain with matching uuid '{uuid}'")
        return rows

    def snapshot_children(self, uuid: str, name: str, descendants: bool) -> int:
        """How many children (or descendants) the snapshot has: numChildren with flags 0 or DESCENDANTS."""
        self.snapshot_point(uuid, name)
        with self.ctx.lock:
            return self.ctx.store.snapshot_children(uuid, name, descendants)

    def snapshot_xml(self, uuid: str, name: str, flags: int) -> str:
        row = self.snapshot_point(uuid, name, with_xml=True)
        assert row is not None and row.xml is not None
        with self.ctx.lock:
            cached = self.ctx.trees.get(uuid)
            moment = cached[1].get(name) if cached is not None and cached[0] == row.generation else None
            # a tree already loaded here keeps each parsed definition: parse this one only once
            defn = moments.def_of(moment) if moment is not None else moments.parse_private(row.xml)
            defn.parent = row.parent
            from ...conf.snapshot_xml import format_snapshot

            return format_snapshot(defn, uuid, secure=bool(flags & SnapshotXML.SECURE))

    def snapshot_protected(self, uuid: str) -> set[str]:
        self.ctx.exists(uuid)
        return self.ctx.store.protected(uuid)

    def snapshot_set_protected(self, uuid: str, name: str, on: bool) -> None:
        with self.ctx.operation(uuid, self.ctx.domain_def(uuid).name):
            self.ctx.moment(self.ctx.tree(uuid), name)
            self.ctx.store.set_protected(uuid, name, on)

    def snapshot_rename(self, uuid: str, name: str, new_name: str) -> str:
        """virDomainSnapshot.rename: an internal snapshot is a qcow2 tag named after the snapshot, and qcow2
        cannot rename a tag, so renaming its metadata (libvirt's snapshot-edit --rename does) would leave a
        snapshot no revert finds: refused. External snapshots name no file after themselves: NO_SUPPORT, so
        the caller's redefine-and-forget (snapshot-edit --rename) is right for them."""
        from ...conf.snapshot_xml import Location

        with self.ctx.lock:
            defn = moments.def_of(self.ctx.moment(self.ctx.tree(uuid), name))
        stored = [d.name for d in defn.disks if d.snapshot == Location.INTERNAL]
        if defn.memory == Location.INTERNAL:
            stored.insert(0, "memory")
        if stored:
            raise error(ErrorCode.OPERATION_UNSUPPORTED, ERR,
                        f"snapshot '{name}' is stored under the qcow2 tag '{name}' ({', '.join(stored)}), and qcow2 "
                        f"cannot rename a tag: it cannot become '{new_name}'; nothing was changed")
        raise error(ErrorCode.NO_SUPPORT, ERR, "virDomainSnapshotRename")

    def snapshot_size(self, uuid: str, name: str) -> SnapshotSize:
        """External: the overlays' allocation and the memory file's size (exact). Internal: per qcow2 image,
        the clusters only this snapshot references, from the image's own refcounts (exact when no QEMU has the
        image open, else as of QEMU's last flush), and the saved VM state's size; an image that cannot be read
        safely gives an estimate (the domain's memory, no disk)."""
        with self.ctx.lock:
            defn = moments.def_of(self.ctx.moment(self.ctx.tree(uuid), name))
        from . import space

        return space.snapshot_size(defn, name, running=self.ctx.rt(uuid).pid() is not None)


    def snapshot_create(self, uuid: str, xml: str, flags: int) -> str:
        """Create or redefine. On failure nothing is left behind: no tag in any image, no metadata."""
        from . import create

        return create.snapshot_create(self.ctx, uuid, xml, flags)

    def snapshot_revert(self, uuid: str, name: str, flags: int) -> None:
        """Revert; validated first (tags present in every image). A failed load never leaves QEMU paused
        in restore-vm: it is stopped and the error says so."""
        from . import revert

        revert.snapshot_revert(self.ctx, uuid, name, flags)

    def snapshot_delete(self, uuid: str, name: str, flags: int) -> None:
        from . import delete

        delete.snapshot_delete(self.ctx, uuid, name, flags)
