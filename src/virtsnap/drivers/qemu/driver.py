"""The QEMU driver behind qemu:///session and qemu:///system: domains as QEMU processes, internal snapshots.

Metadata lives in the driver's sqlite store; each state-changing call is parse -> validate -> lock and
journal -> act -> commit, and a refused call changes nothing. Monitors are connected per operation, so
several processes can manage one domain one operation at a time.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ... import failpoints
from ...conf.domain_xml import DomainDef
from ...conf.snapshot_xml import (
    Location,
    ParseMode,
    SnapshotDef,
    SnapshotState,
    SourceType,
    align_disks,
    format_snapshot,
    parse_snapshot,
)
from ...conf.tree import Moment, SnapshotTree
from ...errors import ErrorCode, ErrorDomain, error, libvirtError
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
from ...progress import DeferredInterrupt, report
from ...store import ledger
from ...store.db import MetadataStore, PointRow, state_dir, verified_dir
from ...store.lock import DEFAULT_TIMEOUT as LOCK_TIMEOUT
from ...store.lock import DomainLock
from ...uri import URI
from ..base import SNAPSHOT_QUERIES, Capabilities, DomainInfo, DomainRecord, Drift, Op, SnapshotSize
from . import external, images, tpm
from .domain import QemuDomain

if TYPE_CHECKING:  # and modules only some operations need, imported where they are used
    from . import extdelete
    from .agent import Agent
    from .confine import Identity
    from .monitor import Monitor
from .process import Runtime, kill, launch, qemu_binary, runtime_root

ERR = ErrorDomain.QEMU
T = TypeVar("T")
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
        Op.DOMAIN_UNDEFINE: DomainUndefine.SNAPSHOTS_METADATA | DomainUndefine.MANAGED_SAVE,
        Op.DOMAIN_DEFINE: 0,
        Op.DOMAIN_CREATE: DomainCreate.START_PAUSED,
        Op.DOMAIN_SHUTDOWN: 0,
        Op.DOMAIN_DESTROY: 0,
        Op.LIST_ALL_DOMAINS: 0xFFFF,
    },
    rules={Op.SNAPSHOT_CREATE: (FlagRule(C.QUIESCE, C.DISK_ONLY, exclusive=False),  # as libvirt's qemu driver
                                FlagRule(C.LIVE, C.REDEFINE))},
)

# query-status 'status' -> libvirt state and reason
_STATUS = {
    "running": (DomainState.RUNNING, 1),
    "paused": (DomainState.PAUSED, 1),
    "suspended": (DomainState.PMSUSPENDED, 0),
    "prelaunch": (DomainState.PAUSED, 0),
    "restore-vm": (DomainState.PAUSED, 0),
    "save-vm": (DomainState.PAUSED, 9),
    "postmigrate": (DomainState.PAUSED, 0),
    "finish-migrate": (DomainState.PAUSED, 0),
    "inmigrate": (DomainState.PAUSED, 0),
    "debug": (DomainState.PAUSED, 0),
    "io-error": (DomainState.PAUSED, 5),  # VIR_DOMAIN_PAUSED_IOERROR
    "internal-error": (DomainState.PAUSED, 0),
    "watchdog": (DomainState.PAUSED, 6),  # VIR_DOMAIN_PAUSED_WATCHDOG
    "guest-panicked": (DomainState.CRASHED, 0),
    "shutdown": (DomainState.SHUTDOWN, 0),
}


def open_driver(uri: URI, read_only: bool, auth: Any = None) -> QemuDriver:
    if uri.host or uri.path not in ("/session", "/system"):
        raise error(ErrorCode.NO_CONNECT, ErrorDomain.NONE, f"{uri.text} (use qemu:///session or qemu:///system)")
    system = uri.path == "/system"
    if system and os.geteuid() != 0:
        raise error(ErrorCode.OPERATION_DENIED, ErrorDomain.NONE, "qemu:///system needs root")
    return QemuDriver(uri, system, read_only)


class QemuDriver:
    capabilities = CAPABILITIES

    def __init__(self, uri: URI, system: bool, read_only: bool = False) -> None:
        self.uri = uri
        self.system = system  # QEMU confined: an unprivileged user, its files handed over (confine.py)
        self.read_only = read_only  # never replays the journal: it reports what is pending instead
        base = os.environ.get("VIRTSNAP_QEMU_STATE_DIR")
        self.state_dir = Path(base) if base else state_dir("qemu", system)
        self.store = MetadataStore(self.state_dir, read_only=read_only)  # a read-only one never writes it
        # A read-only connection makes no directory: where none exists, no QEMU of ours runs.
        create = not read_only
        self.runtime = runtime_root(system, create) if not base else verified_dir(Path(base) / "run", create)
        self._trees: dict[str, tuple[int, SnapshotTree]] = {}
        self._lock = threading.RLock()  # one operation at a time per connection; the flock covers processes
        self.last_pause_ms: float | None = None  # guest pause of the last memory snapshot, from QMP events
        self.recovery_errors: dict[int, str] = {}  # journal entry -> why finishing it failed (in this process)

    def close(self) -> None:
        self.store.close()

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
        sources = external.disk_sources(self._def(uuid))
        out: dict[str, object] = {"block.count": len(sources)}
        for i, (target, (path, fmt)) in enumerate(sources.items()):
            facts = images.info(path, fmt, force_share=True)
            out.update({f"block.{i}.name": target, f"block.{i}.path": path,
                        f"block.{i}.allocation": int(facts.get("actual-size", 0)),
                        f"block.{i}.capacity": int(facts.get("virtual-size", 0)),
                        f"block.{i}.physical": os.stat(path).st_size})
        return out

    # -- helpers ------------------------------------------------------------------------------------
    def _def(self, uuid: str) -> DomainDef:
        row = self.store.domain(uuid)
        if row is None:
            raise error(ErrorCode.NO_DOMAIN, ERR, f"no domain with matching uuid '{uuid}'")
        return _parse_domain(row[1]).copy()  # a copy: callers may edit their definition

    def _exists(self, uuid: str) -> None:
        """The cheap check of queries that need no definition (no XML parse)."""
        if self.store.domain(uuid) is None:
            raise error(ErrorCode.NO_DOMAIN, ERR, f"no domain with matching uuid '{uuid}'")

    def _rt(self, uuid: str) -> Runtime:
        if self.read_only and not os.path.lexists(self.runtime / uuid):
            return Runtime(self.runtime / uuid)  # nothing there to read: no pid file, no socket
        return Runtime.for_domain(self.runtime, uuid)

    @contextlib.contextmanager
    def _operation(self, uuid: str, name: str, timeout: float = LOCK_TIMEOUT) -> Iterator[DomainLock]:
        """The per-domain lock, across threads and processes. An operation a dead process left unfinished is
        rolled forward or back first (it holds no lock any more: the kernel released its flock)."""
        with self._lock, DomainLock(self.state_dir, uuid, timeout=timeout, what=name) as lock:
            external.forget_chains()  # images may have changed since the last operation
            try:
                self._hand_back_if_stopped(uuid)  # a guest that powered itself off since the last operation
                if self.store.journal_pending(uuid) and not self.read_only:
                    from . import recovery

                    recovery.recover(self, uuid)
                yield lock
            finally:
                external.forget_chains()
                self._hand_back_if_stopped(uuid)

    # -- confinement (qemu:///system) ----------------------------------------------------------------
    def _qemu_user(self, qdom: QemuDomain) -> Identity | None:
        """Who QEMU runs as: None under qemu:///session (the caller itself), else the unprivileged user."""
        from . import confine

        if not self.system:
            if qdom.seclabel is not None:
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                            "<seclabel> applies to qemu:///system; qemu:///session runs QEMU as the connecting user")
            return None
        return confine.qemu_user(qdom.seclabel)

    def _hand_over(self, uuid: str, qdom: QemuDomain, user: Identity | None, paths: list[str] | None = None) -> None:
        """Give QEMU's user the files it opens (every disk's backing chain, kernel, initrd) or `paths`, as
        libvirt's DAC driver does; given back when the domain stops. Not with <seclabel relabel='no'>."""
        from . import confine

        if user is None or (qdom.seclabel is not None and not qdom.seclabel.relabel):
            return
        if paths is None:
            paths = [p for p in (qdom.kernel, qdom.initrd) if p]
            for disk in qdom.disks:
                if disk.path:
                    paths.append(disk.path)
                    if disk.format == "qcow2" and os.path.exists(disk.path):
                        paths += [layer.path for layer in external.chain(disk.path, "qcow2")]
        confine.check_reachable(user, paths)
        confine.hand_over(self.state_dir, uuid, user, paths)

    def _hand_back_if_stopped(self, uuid: str) -> None:
        from . import confine

        if self.system and confine.holds(self.state_dir, uuid) and self._rt(uuid).pid() is None:
            confine.hand_back(self.state_dir, uuid)

    def _live_refusal(self, uuid: str) -> str | None:
        """Why the running QEMU cannot take a LIVE snapshot (userfaultfd denied to its user), if it cannot."""
        from . import argv, confine

        pid = self._rt(uuid).pid()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            uid, gid = (int(next(line.split()[1] for line in status.splitlines() if line.startswith(key)))
                        for key in ("Uid:", "Gid:"))
        except (OSError, StopIteration, ValueError):
            return None
        if uid == 0:
            return None
        return confine.userfaultfd_refusal(confine.resolve(f"+{uid}:+{gid}"), argv.facts(qemu_binary()).version)

    def _recover_on_open(self, uuid: str) -> None:
        """Opening a domain finishes what a dead process left undone, unless someone holds the lock now (or
        the connection is read-only: snapshot-check then reports the pending entry)."""
        if self.read_only or not self.store.journal_pending(uuid):
            return
        with contextlib.suppress(libvirtError), self._operation(uuid, uuid, timeout=0):
            pass

    @contextlib.contextmanager
    def _atomic(self, uuid: str) -> Iterator[None]:
        """One sqlite transaction for an operation's commit point: definition, tree and journal together."""
        try:
            with self.store.transaction():
                yield
        except BaseException:
            self._trees.pop(uuid, None)
            raise

    @contextlib.contextmanager
    def _monitor(self, uuid: str) -> Iterator[Monitor]:
        from .monitor import Monitor  # qemu.qmp and asyncio: only for operations that talk to QEMU

        mon = Monitor(str(self._rt(uuid).monitor), uuid[:8])
        try:
            yield mon
        finally:
            mon.close()

    def _status(self, uuid: str) -> str | None:
        """QEMU's run status, or None when no QEMU runs for the domain."""
        rt = self._rt(uuid)
        if rt.pid() is None:
            return None
        try:
            with self._monitor(uuid) as mon:
                return str(mon.execute("query-status")["status"])
        except libvirtError:
            return None if rt.pid() is None else "unknown"

    def _tags(self, qdom: QemuDomain, mon: Monitor | None) -> dict[str, set[str]]:
        """Internal snapshot tags per disk target: from QEMU when it runs (one query), else qemu-img."""
        tags: dict[str, set[str]] = {}
        if mon is not None:
            for target, inserted in mon.block_devices().items():
                image = inserted.get("image") or {}
                tags[target] = {snap["name"] for snap in image.get("snapshots", [])}
            return tags
        for disk in qdom.disks:
            if disk.path and disk.format == "qcow2" and os.path.exists(disk.path):
                tags[disk.target] = set(images.snapshots(disk.path, force_share=True))
        return tags

    def _tree(self, uuid: str) -> SnapshotTree:
        generation = self.store.generation(uuid)
        if generation < 0:
            raise error(ErrorCode.NO_DOMAIN, ERR, f"no domain with matching uuid '{uuid}'")
        cached = self._trees.get(uuid)
        if cached is not None and cached[0] == generation:
            return cached[1]
        tree = self.store.load_tree(uuid)
        self._trees[uuid] = (generation, tree)
        return tree

    def _commit(self, uuid: str, tree: SnapshotTree) -> None:
        self.store.save_tree(uuid, tree, _xml_of)
        self._trees[uuid] = (self.store.generation(uuid), tree)

    # -- domains ------------------------------------------------------------------------------------
    def _record(self, uuid: str, name: str) -> DomainRecord:
        pid = self._rt(uuid).pid()
        return DomainRecord(name, uuid, pid if pid is not None else -1, True)

    def list_domains(self) -> list[DomainRecord]:
        return [self._record(uuid, name) for uuid, name, _ in self.store.domains()]

    def lookup_domain(self, *, name: str | None = None, uuid: str | None = None,
                      id: int | None = None) -> DomainRecord:
        if name is not None or uuid is not None:  # one indexed query, whatever the number of domains
            found = self.store.find_domain(name=name, uuid=uuid)
            if found is not None:
                self._recover_on_open(found[0])
                return self._record(*found)
        else:
            for rec in self.list_domains():  # by id: the pid of each running domain
                if id is not None and id >= 0 and rec.id == id:
                    self._recover_on_open(rec.uuid)
                    return rec
        raise error(ErrorCode.NO_DOMAIN, ERR, f"no domain with matching name '{name}'" if name
                    else f"no domain with matching uuid '{uuid}'" if uuid else f"no domain with matching id {id}")

    def domain_state(self, uuid: str) -> tuple[DomainState, int]:
        self._def(uuid)
        status = self._status(uuid)
        if status is None:
            return DomainState.SHUTOFF, 0
        return _STATUS.get(status, (DomainState.NOSTATE, 0))

    def domain_persistent(self, uuid: str) -> bool:
        self._def(uuid)
        return True

    def domain_info(self, uuid: str) -> DomainInfo:
        defn = self._def(uuid)
        state, _ = self.domain_state(uuid)
        cpu_ns = 0
        pid = self._rt(uuid).pid()
        if pid is not None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu_ns = (int(fields[11]) + int(fields[12])) * 10_000_000  # utime+stime in 10 ms ticks
        return DomainInfo(state, defn.memory_kib, defn.current_memory_kib, defn.vcpus, cpu_ns)

    def domain_xml(self, uuid: str, flags: int) -> str:
        defn = self._def(uuid)
        pid = None if flags & DomainXML.INACTIVE else self._rt(uuid).pid()
        return defn.format(inactive=pid is None, secure=bool(flags & DomainXML.SECURE), dom_id=pid)

    def define_xml(self, xml: str, flags: int) -> DomainRecord:
        defn = DomainDef.parse(xml, ERR)
        qdom = QemuDomain.from_def(defn)  # the subset check: refuse what the driver cannot run
        self._check_domain_paths(defn)
        if qdom.seclabel is not None:
            self._qemu_user(qdom)  # a DAC label names an existing unprivileged user, under qemu:///system only
        from . import argv

        argv.check_machine(qemu_binary(), qdom.machine)
        with self._lock:
            for uuid, name, _ in self.store.domains():
                if name == defn.name and uuid != defn.uuid:
                    raise error(ErrorCode.OPERATION_FAILED, ErrorDomain.DOMAIN,
                                f"domain '{name}' already exists with uuid {uuid}")
                if uuid == defn.uuid and name != defn.name:
                    raise error(ErrorCode.OPERATION_FAILED, ErrorDomain.DOMAIN,
                                f"domain '{name}' is already defined with uuid {uuid}")
            with self._operation(defn.uuid, defn.name):
                self.store.put_domain(defn.uuid, defn.name, _stored(defn))
        return self._record(defn.uuid, defn.name)

    def undefine(self, uuid: str, flags: int) -> None:
        defn = self._def(uuid)
        with self._operation(uuid, defn.name) as lock:
            if self._rt(uuid).pid() is not None:
                raise error(ErrorCode.OPERATION_INVALID, ERR,
                            f"domain '{defn.name}' is running; destroy it before undefining it")
            count = self.store.snapshot_count(uuid)
            if count and not flags & DomainUndefine.SNAPSHOTS_METADATA:
                raise error(ErrorCode.OPERATION_INVALID, ERR, f"cannot delete inactive domain with {count} snapshots")
            self.store.delete_domain(uuid)
            self.store.ledger_release(uuid)  # the files stay, and are the user's now
            self._trees.pop(uuid, None)
            lock.discard()  # the lock file goes with its domain

    def _start(self, uuid: str, defn: DomainDef, paused: bool, incoming: bool = False) -> None:
        dom = QemuDomain.from_def(defn)
        self._check_domain_paths(defn)  # a definition stored before these checks existed
        _refuse_probing(dom)
        user = self._qemu_user(dom)
        self._hand_over(uuid, dom, user)
        tpm_state = tpm.prepare(self.store, self.state_dir, uuid, dom.hw.tpm, user) if dom.hw.tpm else None
        launch(dom, self._rt(uuid), paused=paused, incoming=incoming, user=user, tpm_state=tpm_state)

    def start(self, uuid: str, flags: int) -> None:
        defn = self._def(uuid)
        with self._operation(uuid, defn.name):
            if self._rt(uuid).pid() is not None:
                raise error(ErrorCode.OPERATION_INVALID, ERR, "domain is already running")
            self._start(uuid, defn, paused=bool(flags & DomainCreate.START_PAUSED))

    def _require_running(self, uuid: str) -> None:
        if self._rt(uuid).pid() is None:
            raise error(ErrorCode.OPERATION_INVALID, ErrorDomain.DOMAIN, "domain is not running")

    def shutdown(self, uuid: str, flags: int) -> None:
        defn = self._def(uuid)
        with self._operation(uuid, defn.name):
            self._require_running(uuid)
            with self._monitor(uuid) as mon:
                mon.execute("system_powerdown")

    def destroy(self, uuid: str, flags: int) -> None:
        defn = self._def(uuid)
        with self._operation(uuid, defn.name):
            self._require_running(uuid)
            kill(self._rt(uuid))

    def suspend(self, uuid: str) -> None:
        defn = self._def(uuid)
        with self._operation(uuid, defn.name):
            self._require_running(uuid)
            with self._monitor(uuid) as mon:
                mon.execute("stop")

    def resume(self, uuid: str) -> None:
        defn = self._def(uuid)
        with self._operation(uuid, defn.name):
            self._require_running(uuid)
            with self._monitor(uuid) as mon:
                mon.execute("cont")

    def agent_command(self, uuid: str, command: str, timeout: float) -> str:
        """libvirt_qemu.qemuAgentCommand: pass one JSON command to the guest agent."""
        defn = self._def(uuid)
        qdom = QemuDomain.from_def(defn)
        if qdom.agent_socket is None:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, f"domain '{defn.name}' has no guest agent channel")
        self._require_running(uuid)
        path = qdom.agent_socket or str(self._rt(uuid).agent)
        from .agent import Agent

        with Agent(path, timeout=timeout) as agent:
            return agent.command_json(command)

    def snapshot_check(self, uuid: str, flags: int) -> list[Drift]:
        """virtsnap's snapshot-check: metadata against images and QEMU (see check.py)."""
        from . import check

        if self.read_only:  # no lock, no recovery: it reads, and reports a pending journal entry as such
            with self._lock:
                external.forget_chains()
                return check.check(self, uuid, repair=False)
        with self._operation(uuid, self._def(uuid).name):
            return check.check(self, uuid, repair=bool(flags & SnapshotCheck.REPAIR))

    # -- snapshots ----------------------------------------------------------------------------------
    def snapshot_query(self, uuid: str, fn: Callable[[SnapshotTree], T]) -> T:
        with self._lock:
            return fn(self._tree(uuid))  # one query: the generation, which also says the domain exists

    def _moment(self, tree: SnapshotTree, name: str) -> Moment:
        moment = tree.get(name)
        if moment is None:
            raise error(ErrorCode.NO_DOMAIN_SNAPSHOT, ERR, f"no domain snapshot with matching name '{name}'")
        return moment

    # One snapshot read alone: a few indexed rows, never the whole tree (a cold snapshot-current, -info,
    # -parent or -dumpxml costs the same at 100 snapshots as at 100,000).
    def snapshot_point(self, uuid: str, name: str | None, with_xml: bool = False) -> PointRow | None:
        """The snapshot `name` (the current one when None: then None when there is none)."""
        with self._lock:
            row = self.store.snapshot_row(uuid, name, with_xml)
        if row is None:
            raise error(ErrorCode.NO_DOMAIN, ERR, f"no domain with matching uuid '{uuid}'")
        if not row.found:
            if name is None:
                return None
            raise error(ErrorCode.NO_DOMAIN_SNAPSHOT, ERR, f"no domain snapshot with matching name '{name}'")
        return row

    def snapshot_children(self, uuid: str, name: str, descendants: bool) -> int:
        """How many children (or descendants) the snapshot has: numChildren with flags 0 or DESCENDANTS."""
        self.snapshot_point(uuid, name)
        with self._lock:
            return self.store.snapshot_children(uuid, name, descendants)

    def snapshot_xml(self, uuid: str, name: str, flags: int) -> str:
        row = self.snapshot_point(uuid, name, with_xml=True)
        assert row is not None and row.xml is not None
        with self._lock:
            cached = self._trees.get(uuid)
            moment = cached[1].get(name) if cached is not None and cached[0] == row.generation else None
            # a tree already loaded here keeps each parsed definition: parse this one only once
            defn = _def_of(moment) if moment is not None else _parse_private(row.xml)
            defn.parent = row.parent
            return format_snapshot(defn, uuid, secure=bool(flags & SnapshotXML.SECURE))

    def snapshot_protected(self, uuid: str) -> set[str]:
        self._exists(uuid)
        return self.store.protected(uuid)

    def snapshot_set_protected(self, uuid: str, name: str, on: bool) -> None:
        with self._operation(uuid, self._def(uuid).name):
            self._moment(self._tree(uuid), name)
            self.store.set_protected(uuid, name, on)

    def snapshot_size(self, uuid: str, name: str) -> SnapshotSize:
        """External: the overlays' allocation and the memory file's size (exact). Internal: per qcow2 image,
        the clusters only this snapshot references, from the image's own refcounts (exact when no QEMU has the
        image open, else as of QEMU's last flush), and the saved VM state's size; an image that cannot be read
        safely gives an estimate (the domain's memory, no disk)."""
        with self._lock:
            defn = _def_of(self._moment(self._tree(uuid), name))
        from . import space

        return space.snapshot_size(defn, name, running=self._rt(uuid).pid() is not None)

    def snapshot_create(self, uuid: str, xml: str, flags: int) -> str:
        """Create or redefine. On failure nothing is left behind: no tag in any image, no metadata."""
        dom_def = self._def(uuid)
        if flags & C.VALIDATE:
            from ...conf import validate as schema  # RelaxNG: only when asked for

            schema.validate_snapshot(xml)
        redefine = bool(flags & C.REDEFINE)
        defn = parse_snapshot(xml, ParseMode.REDEFINE if redefine else ParseMode.CREATE)
        networked = [d.name for d in defn.disks if d.source_type == SourceType.NETWORK]
        if networked:  # its revert and delete would have no image to work on
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        f"network disk snapshots are not supported by virtsnap's QEMU driver: {', '.join(networked)}")
        with self._operation(uuid, dom_def.name):
            tree = self._tree(uuid)
            self._check_domain_paths(dom_def)
            if redefine:
                self._check_snapshot_paths(defn)  # before redefine_snapshot, which adds the moment to the tree
                from ...conf.redefine import redefine as redefine_snapshot

                moment = redefine_snapshot(tree, dom_def, defn, _regular_file)
                parent = tree.get(defn.parent) if defn.parent else None
                _attach(moment, defn)
                if flags & C.CURRENT:
                    tree.set_current(moment)
                tree.link(moment, parent)
                self._commit(uuid, tree)
                return defn.name
            if defn.name in tree:
                raise error(ErrorCode.OPERATION_FAILED, ErrorDomain.DOMAIN, f"domain moment {defn.name} already exists")
            qdom = QemuDomain.from_def(dom_def)
            status = self._status(uuid)
            defn.domain = dom_def.copy()
            defn.state = SnapshotState(int(_STATUS.get(status, (DomainState.SHUTOFF, 0))[0])) if status \
                else SnapshotState.SHUTOFF
            if flags & C.DISK_ONLY or defn.memory == Location.EXTERNAL or any(
                    d.snapshot == Location.EXTERNAL for d in defn.disks) or any(
                    d.snapshot == "external" for d in qdom.disks if not defn.disks):
                return self._create_external(uuid, tree, dom_def, qdom, defn, status, flags)
            if flags & (C.QUIESCE | C.REUSE_EXT):
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, "QUIESCE and REUSE_EXT apply to external snapshots only")
            if defn.memory == Location.NO and defn.state.is_online:
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                            "an internal snapshot of a running domain always saves its memory; use a disk-only "
                            "snapshot for disks alone")
            defn.memory = Location.INTERNAL if defn.state.is_online else Location.NO
            align_disks(defn, Location.INTERNAL, uniform_internal=True, is_regular_file=_regular_file)
            targets = _internal_targets(defn, qdom)
            if not targets:
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, "the snapshot would include no disk")
            clash = _id_clash(qdom, targets, defn.name)  # a name that is an ID is ambiguous to QEMU's loads
            if clash is not None:
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                            f"snapshot name '{defn.name}' is the ID of snapshot '{clash[1]}' in {clash[0]}; QEMU "
                            "looks snapshots up by ID first, so choose another name")
            self._refuse_existing_tag(uuid, qdom, targets, defn.name, status)
            if not flags & C.NO_SPACE_CHECK:
                from . import space

                paths = {d.target: d.path for d in qdom.disks}
                needs = [(p, space.SMALL, f"disk {t}") for t in targets if (p := paths.get(t))]
                if status is not None and needs:  # snapshot-save writes the VM state into the first image
                    with self._monitor(uuid) as mon:
                        needs.append((needs[0][0], space.guest_memory(mon, qdom), "memory"))
                space.preflight(needs, defn.name)
            entry = self.store.journal_begin(uuid, "create", self._create_intent(tree, defn, status, flags,
                                                                              disks=targets))
            try:
                failpoints.hit("create.journaled")
                with DeferredInterrupt() as interrupt:
                    self._create_data(uuid, qdom, targets, defn, status, flags)
                if interrupt.interrupted:
                    self._undo_create(uuid, qdom, targets, defn.name, status, flags)
                    raise error(ErrorCode.OPERATION_ABORTED, ERR,
                                f"snapshot '{defn.name}' cancelled; nothing was kept and the domain is as before")
            except BaseException:
                self.store.journal_end(entry)  # the call undid its own changes
                raise
            try:
                with self._atomic(uuid):  # the commit point
                    if not flags & C.NO_METADATA:
                        self._record_new(uuid, tree, defn)
                    self.store.journal_end(entry)
            except libvirtError:
                # The store refused the record (full, read-only, locked): take the data back, so that the error
                # is the whole outcome. An entry that cannot be ended either is rolled back by the next recovery.
                with DeferredInterrupt():
                    self._undo_create(uuid, qdom, targets, defn.name, status, flags)
                with contextlib.suppress(libvirtError):
                    self.store.journal_end(entry)
                raise
            return defn.name

    def _check_outside_state(self, path: str, what: str) -> None:
        """No disk, overlay, memory file, socket or log is ever inside virtsnap's own state or runtime
        directories (metadata.db, locks, QEMU's sockets of any domain), whatever symlinks the path goes through."""
        private = ledger.inside(path, [self.state_dir, self.runtime])
        if private is not None:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, f"{what} {path} is inside virtsnap's private directory "
                        f"{private}")

    def _check_domain_paths(self, defn: DomainDef) -> None:
        """Every file a domain definition names for QEMU to open or create (disks, sockets, serial files and
        their logs) lies outside virtsnap's own directories: checked at define, create, redefine and revert."""
        devices = defn.node.find("devices")
        for dev in devices.children if devices is not None else []:
            for child in dev.children:
                for attr in ("file", "dev", "path") if child.tag == "source" else ("file",) if child.tag == "log" \
                        else ():
                    value = child.get(attr)
                    if value:
                        self._check_outside_state(value, f"<{dev.tag}> file")

    def _check_snapshot_paths(self, defn: SnapshotDef) -> None:
        """A snapshot definition's memory file, overlays and <domain> (REDEFINE takes any of them as given)."""
        if defn.memory_file:
            self._check_outside_state(defn.memory_file, "memory file")
        for disk in defn.disks:
            if disk.source:
                self._check_outside_state(disk.source, f"overlay for disk {disk.name}")
        for domain in (defn.domain, defn.inactive_domain):
            if domain is not None:
                self._check_domain_paths(domain)

    def _refuse_existing_tag(self, uuid: str, qdom: QemuDomain, targets: list[str], name: str,
                             status: str | None) -> None:
        """An internal snapshot named like a tag an image already holds is refused before any change: the
        tag is someone else's (another tool's, or made by hand), and a later delete would remove it."""
        if status is not None:
            with self._monitor(uuid) as mon:
                tags = self._tags(qdom, mon)
        else:
            tags = self._tags(qdom, None)
        holders = sorted(d.path or d.target for d in qdom.disks
                         if d.target in targets and name in tags.get(d.target, ()))
        if holders:
            raise error(ErrorCode.OPERATION_INVALID, ERR,
                        f"image {', '.join(holders)} already has an internal snapshot named '{name}' that virtsnap "
                        "does not track; nothing was changed (snapshot-check --repair imports it)")

    def _record_file(self, uuid: str, snapshot: str, purpose: str, path: str, fmt: str, backing: str | None = None,
                     backing_format: str | None = None) -> Callable[[int], object]:
        """The callback that records a file in the ledger the moment it is created (before data goes in)."""
        def made(fd: int) -> None:
            ledger.record(self.store, path, fd, uuid, snapshot, purpose, fmt, backing, backing_format)
            failpoints.hit("ledger.recorded")  # a crash here leaves an empty file that only the ledger knows

        return made

    def _remove_ours(self, uuid: str, paths: list[str] | set[str], snapshot: str | None = None) -> None:
        """Remove these files where the ledger says this domain made them and they are still those files;
        every other path is left alone (the one way any file is removed)."""
        for path in sorted(paths):
            with contextlib.suppress(OSError):
                ledger.remove_path(self.store, path, uuid, snapshot)

    def _ours(self, uuid: str) -> set[str]:
        """Paths of the domain's ledger files that are still the files virtsnap made."""
        return set(ledger.ours(self.store, uuid))

    @staticmethod
    def _create_intent(tree: SnapshotTree, defn: SnapshotDef, status: str | None, flags: int,
                       **more: Any) -> dict[str, Any]:
        """What a create records before its first change: enough to finish or undo it after a crash."""
        return {"name": defn.name, "xml": format_snapshot(defn, secure=True), "status": status, "flags": flags,
                "parent": tree.current.name if tree.current is not None else None, **more}

    def _record_new(self, uuid: str, tree: SnapshotTree, defn: SnapshotDef, parent_name: str | None = "") -> None:
        """The metadata commit of a create: the new snapshot is current, a child of the previous current
        (or of `parent_name`, when a recovery finishes a create)."""
        moment = tree.add(Moment(defn.name))
        _attach(moment, defn)
        parent = tree.current if parent_name == "" else tree.get(parent_name) if parent_name else None
        tree.set_current(moment)
        tree.link(moment, parent)
        self._commit(uuid, tree)

    def _create_external(self, uuid: str, tree: SnapshotTree, dom_def: DomainDef, qdom: QemuDomain,
                         defn: SnapshotDef, status: str | None, flags: int) -> str:
        """Disk-only external snapshot: overlays created exclusively, switched in one QMP transaction
        (so ATOMIC holds) or made with qemu-img when the domain is off; the domain then runs on them."""
        with_memory = defn.memory == Location.EXTERNAL
        if with_memory:
            if flags & C.DISK_ONLY:
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, "a disk-only snapshot cannot save memory")
            if status not in ("running", "paused"):
                raise error(ErrorCode.OPERATION_INVALID, ERR, "an external memory snapshot needs a running domain")
            assert defn.memory_file is not None
            self._check_outside_state(defn.memory_file, "memory file")
            if not Path(defn.memory_file).parent.is_dir() or os.path.lexists(defn.memory_file):
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                            f"memory file {defn.memory_file} already exists or its directory does not")
            defn.state = SnapshotState.RUNNING if status == "running" else SnapshotState.PAUSED
        else:
            if defn.memory not in (Location.DEFAULT, Location.NO):
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, "a disk-only snapshot cannot save memory")
            if flags & C.LIVE:
                raise error(ErrorCode.OPERATION_UNSUPPORTED, ERR,
                            "live snapshot creation is supported only during full system snapshots")
            defn.memory = Location.NO
            defn.state = SnapshotState.DISK_SNAPSHOT if status is not None else SnapshotState.SHUTOFF
        align_disks(defn, Location.EXTERNAL, uniform_internal=False, is_regular_file=_regular_file)
        if any(d.snapshot == Location.INTERNAL for d in defn.disks):
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        "mixing internal and external targets for a snapshot is not yet supported")
        chosen = [d for d in defn.disks if d.snapshot == Location.EXTERNAL]
        if not chosen:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        "disk-only snapshots require at least one disk to be selected for snapshot")
        reuse = bool(flags & C.REUSE_EXT)
        sources = external.disk_sources(dom_def)
        by_target = {d.target: d for d in qdom.disks}
        seen: set[str] = set()
        for disk in chosen:
            extras = disk.extra_settings()
            if extras:
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                            f"disk '{disk.name}': virtsnap's QEMU driver does not apply {', '.join(extras)}")
            dom_disk = by_target[disk.name]
            if dom_disk.readonly or disk.name not in sources:
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                            f"disk '{disk.name}' is read-only or has no image: it cannot have an external snapshot")
            assert disk.source is not None
            if disk.source in seen or disk.source == sources[disk.name][0]:
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                            f"external snapshot file {disk.source} for disk {disk.name} is used twice")
            seen.add(disk.source)
            self._check_outside_state(disk.source, f"overlay for disk {disk.name}")
            external.check_new_overlay(disk.source, reuse, disk.name)
            disk.driver_type = "qcow2"
        if flags & C.QUIESCE and (status is None or qdom.agent_socket is None):
            raise error(ErrorCode.OPERATION_INVALID, ERR,
                        "QUIESCE needs a running domain with a guest agent channel")
        if with_memory and flags & C.LIVE and status == "running":
            refusal = self._live_refusal(uuid)
            if refusal is not None:
                raise error(ErrorCode.OPERATION_UNSUPPORTED, ERR, refusal)
        if not flags & C.NO_SPACE_CHECK:
            from . import space

            needs = [(d.source, space.SMALL, f"overlay of {d.name}") for d in chosen if d.source]
            if with_memory:
                assert defn.memory_file is not None
                with self._monitor(uuid) as mon:
                    needs.append((defn.memory_file, space.guest_memory(mon, qdom), "memory"))
            space.preflight(needs, defn.name)
        new_def = external.with_sources(dom_def, {d.name: d.source for d in chosen if d.source})
        entry = self.store.journal_begin(uuid, "create-external", self._create_intent(
            tree, defn, status, flags, overlays={d.name: d.source for d in chosen}, reuse=reuse,
            memory_file=defn.memory_file if with_memory else None, domain_xml=_stored(new_def)))
        created: list[str] = []
        switched = False
        try:
            for disk in chosen:
                assert disk.source is not None
                path, fmt = sources[disk.name]
                if not reuse:
                    created.append(disk.source)
                external.create_overlay(disk.source, path, fmt, reuse, disk.name,
                                        self._record_file(uuid, defn.name, "overlay", disk.source, "qcow2", path, fmt))
            if status is not None:  # the running QEMU opens the overlays itself (blockdev-add)
                self._hand_over(uuid, qdom, self._qemu_user(qdom), [d.source for d in chosen if d.source])
            failpoints.hit("external.overlays-created")
            if with_memory:
                assert defn.memory_file is not None
                self._switch_with_memory(uuid, chosen, defn.memory_file, status == "running",
                                         bool(flags & C.LIVE), self._record_file(uuid, defn.name, "memory",
                                                                                 defn.memory_file, "memory"))
            elif status is not None:
                note = self._switch_overlays(uuid, qdom, chosen, bool(flags & C.QUIESCE))
                if note:  # reported as such, in the snapshot itself
                    defn.description = f"{defn.description} ({note})" if defn.description else note
            switched = True  # from here on the overlays hold the guest's writes: never removed
            failpoints.hit("external.switched")
            with self._atomic(uuid):  # the commit point
                self.store.put_domain(uuid, dom_def.name, _stored(new_def))
                if not flags & C.NO_METADATA:
                    self._record_new(uuid, tree, defn)
                self.store.journal_end(entry)
        except BaseException:
            if not switched:
                self._remove_ours(uuid, created, defn.name)  # a reused file is in no ledger: it stays
                self.store.journal_end(entry)
            # else the journal entry stays: the next operation on the domain finishes the snapshot
            raise
        if flags & C.HALT and status is not None:
            kill(self._rt(uuid))
        return defn.name

    @staticmethod
    def _add_overlay_nodes(mon: Monitor, chosen: list[Any], added: list[str]) -> list[dict[str, Any]]:
        """blockdev-add each overlay (recorded in `added` for undo); returns the snapshot transaction."""
        stamp = f"{os.getpid()}x{int(time.monotonic() * 1000) % 10**8}"
        active = _active_nodes(mon)
        actions = []
        for i, disk in enumerate(chosen):
            node = f"snap{stamp}n{i}"
            mon.execute("blockdev-add", {"driver": "file", "filename": disk.source, "node-name": f"{node}-file"})
            added.append(f"{node}-file")
            mon.execute("blockdev-add", {"driver": "qcow2", "node-name": node, "file": f"{node}-file",
                                         "backing": None})
            added.append(node)
            actions.append({"type": "blockdev-snapshot", "data": {"node": active[disk.name], "overlay": node}})
        return actions

    def _switch_with_memory(self, uuid: str, chosen: list[Any], memory_file: str, was_running: bool,
                            live: bool, made: Callable[[int], object]) -> None:
        """Full-system external snapshot: guest memory migrated to a file, disks switched at the same instant.

        LIVE uses QEMU's background-snapshot: the guest pauses once, while the disks switch and QEMU pre-faults
        RAM, saves the devices and write-protects RAM (userfaultfd), then runs while its memory as of that
        instant is written out."""
        fd = os.open(memory_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        added: list[str] = []
        with self._monitor(uuid) as mon:
            try:
                try:
                    made(fd)
                    mon.send_fd(fd, "virtsnap-memory")
                finally:
                    os.close(fd)
                live = live and was_running
                try:
                    mon.execute("migrate-set-capabilities", {"capabilities": [
                        {"capability": "background-snapshot", "state": live},
                        {"capability": "events", "state": True}]})  # MIGRATION events wake the wait
                except libvirtError as exc:
                    raise error(ErrorCode.OPERATION_UNSUPPORTED, ERR,
                                "LIVE needs QEMU's background-snapshot, which needs userfaultfd write-protection "
                                "(QEMU running as root, or vm.unprivileged_userfaultfd=1): "
                                f"{exc.get_error_message()}") from exc
                actions = self._add_overlay_nodes(mon, chosen, added)
                # Pause, switch the disks and start saving memory at one instant, sent back to back. With LIVE
                # the guest must not run again before background-snapshot has captured devices and
                # write-protected RAM: its migration thread first pre-faults all guest RAM, then stops the VM
                # itself (a no-op here), saves the devices, write-protects RAM and restarts the guest (QEMU 7.2's
                # vm_start). A `cont` of ours sent right after `migrate` ran before that: the guest ran for
                # milliseconds on the new overlays while its memory was captured afterwards (two STOP/RESUME
                # pairs), so memory and disks were not of one instant.
                steps: list[tuple[str, dict[str, Any] | None]] = [("stop", None)] if was_running else []
                steps += [("transaction", {"actions": actions}), ("migrate", {"uri": "fd:virtsnap-memory"})]
                try:
                    mon.pipeline(steps)
                except libvirtError:
                    if was_running:
                        with contextlib.suppress(libvirtError):
                            mon.execute("migrate_cancel")
                    raise
                failpoints.hit("memory.migrating")
                _wait_migration(mon)
                # Not live: paused for the whole save. LIVE: running already, unless a QEMU restores the run
                # state the VM had when the snapshot thread stopped it (newer releases): paused by us.
                # (_wait_migration returned once QEMU left finish-migrate, where a cont is refused.)
                if was_running and mon.execute("query-status")["status"] != "running":
                    mon.execute("cont")
                self.last_pause_ms = _pause_ms(mon.drain_events())
            except BaseException:
                from . import recovery

                # A failure after the disks were switched (the memory transfer failed): merge the overlays back
                # into their bases first, so that nothing QEMU wrote is lost and the overlays can go.
                with contextlib.suppress(libvirtError):
                    recovery.unswitch(self, mon, {d.name: d.source for d in chosen})
                for node in reversed(added):
                    with contextlib.suppress(libvirtError):
                        mon.execute("blockdev-del", {"node-name": node})
                self._remove_ours(uuid, [memory_file])
                if was_running:
                    with contextlib.suppress(libvirtError):
                        mon.execute("cont")
                raise
            finally:
                if live:
                    with contextlib.suppress(libvirtError):
                        mon.execute("migrate-set-capabilities", {"capabilities": [
                            {"capability": "background-snapshot", "state": False}]})

    def _freeze(self, uuid: str, qdom: QemuDomain) -> Agent | None:
        """guest-fsfreeze-freeze; None when it failed and the opt-in crash-consistent fallback is on."""
        from .agent import Agent

        agent = Agent(qdom.agent_socket or str(self._rt(uuid).agent), timeout=10.0)
        try:
            agent.connect()
            agent.execute("guest-fsfreeze-freeze")
            return agent
        except libvirtError as exc:
            agent.close()
            with contextlib.suppress(libvirtError), Agent(agent.path, timeout=2.0) as probe:
                probe.execute("guest-fsfreeze-thaw")  # a freeze that half worked must not stay
            if os.environ.get("VIRTSNAP_QUIESCE_FALLBACK") == "1":
                report(f"quiesce failed ({exc.get_error_message()}); taking a crash-consistent snapshot", 0, 0)
                return None
            raise error(ErrorCode(exc.get_error_code()), ERR,
                        f"the guest could not be quiesced, nothing was changed: {exc.get_error_message()} "
                        "(VIRTSNAP_QUIESCE_FALLBACK=1 takes a crash-consistent snapshot instead)") from exc

    def _switch_overlays(self, uuid: str, qdom: QemuDomain, chosen: list[Any], quiesce: bool) -> str | None:
        """blockdev-add every overlay, then one transaction of blockdev-snapshot; undone if it fails.
        Returns a note when QUIESCE fell back to a crash-consistent snapshot."""
        with self._monitor(uuid) as mon:
            added: list[str] = []
            try:
                actions = self._add_overlay_nodes(mon, chosen, added)
                agent = self._freeze(uuid, qdom) if quiesce else None
                note = None if agent is not None or not quiesce else "crash-consistent: the guest could not be quiesced"
                try:
                    failpoints.hit("external.frozen")
                    mon.execute("transaction", {"actions": actions})
                finally:
                    if agent is not None:
                        _thaw(agent)
                return note
            except BaseException:
                for node in reversed(added):
                    with contextlib.suppress(libvirtError):
                        mon.execute("blockdev-del", {"node-name": node})
                raise

    def _create_data(self, uuid: str, qdom: QemuDomain, targets: list[str], defn: SnapshotDef,
                     status: str | None, flags: int) -> None:
        if status is not None:
            with self._monitor(uuid) as mon:
                active = _active_nodes(mon)
                nodes = [active[t] for t in targets]
                mon.execute("snapshot-save", {"job-id": f"save-{os.getpid()}", "tag": defn.name,
                                              "vmstate": nodes[0], "devices": nodes})
                failpoints.hit("create.save-started")
                mon.wait_job(f"save-{os.getpid()}")
                if flags & C.HALT:
                    mon.execute("quit")
            if flags & C.HALT:
                kill(self._rt(uuid))
        else:
            _offline_create(qdom, targets, defn.name)
        failpoints.hit("create.data-done")

    def _undo_create(self, uuid: str, qdom: QemuDomain, targets: list[str], name: str, status: str | None,
                     flags: int) -> None:
        """Remove a just-made snapshot's data (after an interrupt), and restart a halted guest paused->run."""
        running = self._rt(uuid).pid() is not None
        if running:
            with self._monitor(uuid) as mon:
                job = f"delete-{os.getpid()}"
                active = _active_nodes(mon)
                mon.execute("snapshot-delete", {"job-id": job, "tag": name,
                                                "devices": [active[t] for t in targets]})
                mon.wait_job(job)
        else:
            for disk in qdom.disks:
                if disk.target in targets and disk.path:
                    with contextlib.suppress(libvirtError):
                        images.snapshot_delete(disk.path, name)
            if status is not None and flags & C.HALT:
                self._start(uuid, qdom.defn, paused=status != "running")

    def snapshot_revert(self, uuid: str, name: str, flags: int) -> None:
        """Revert; validated first (tags present in every image). A failed load never leaves QEMU paused
        in restore-vm: it is stopped and the error says so."""
        with self._operation(uuid, self._def(uuid).name):
            self._revert(uuid, name, flags)

    def _revert(self, uuid: str, name: str, flags: int) -> None:
        """snapshot_revert under the lock (also how a recovery finishes a revert a dead process began)."""
        dom_def = self._def(uuid)
        tree = self._tree(uuid)
        moment = self._moment(tree, name)
        defn = _def_of(moment)
        if defn.domain is None:
            raise error(ErrorCode.SNAPSHOT_REVERT_RISKY, ERR,
                        f"snapshot '{name}' lacks domain '{dom_def.name}' rollback info")
        lost = self.store.lost(uuid).get(name)
        if lost:
            raise error(ErrorCode.OPERATION_INVALID, ERR, f"snapshot '{name}' was found lost by snapshot-check "
                        f"({lost}); delete it with snapshot-delete --metadata")
        self._check_snapshot_paths(defn)  # a definition stored before these checks existed
        if defn.is_external:
            self._revert_external(uuid, tree, moment, defn, dom_def, flags)
            return
        target = QemuDomain.from_def(defn.domain)
        targets = _internal_targets(defn, target)
        running = self._rt(uuid).pid() is not None
        online = defn.state.is_online
        if running and not online and flags & (R.RUNNING | R.PAUSED) and not flags & R.FORCE:
            raise error(ErrorCode.SNAPSHOT_REVERT_RISKY, ERR, "must respawn guest to start inactive snapshot")
        same_config = _stored(defn.domain) == _stored(dom_def)
        with contextlib.ExitStack() as stack:
            mon = stack.enter_context(self._monitor(uuid)) if running and same_config else None
            self._revert_locked(uuid, tree, moment, defn, dom_def, target, targets, running, same_config,
                                flags, mon)

    def _revert_locked(self, uuid: str, tree: SnapshotTree, moment: Moment, defn: SnapshotDef,
                       dom_def: DomainDef, target: QemuDomain, targets: list[str], running: bool,
                       same_config: bool, flags: int, mon: Monitor | None) -> None:
        assert defn.domain is not None
        name, online = defn.name, defn.state.is_online
        for disk in target.disks:
            if disk.target in targets and disk.path and not os.path.exists(disk.path):
                raise error(ErrorCode.OPERATION_INVALID, ERR, f"image {disk.path} of disk '{disk.target}' is missing")
        tags = self._tags(target, mon)
        for disk in target.disks:
            if disk.target in targets and name not in tags.get(disk.target, set()):
                raise error(ErrorCode.OPERATION_INVALID, ERR,
                            f"image {disk.path} of disk '{disk.target}' has no snapshot '{name}'")
        clash = _id_clash(target, targets, name) if online else None  # snapshot-load looks IDs up first
        if clash is not None:
            raise error(ErrorCode.OPERATION_UNSUPPORTED, ERR,
                        f"snapshot name '{name}' is also the ID of snapshot '{clash[1]}' in {clash[0]}, and QEMU "
                        f"would load '{clash[1]}' instead; nothing was changed")
        want_paused = bool(flags & R.PAUSED) or (defn.state == SnapshotState.PAUSED and not flags & R.RUNNING)
        # A load cannot stop half way (guest memory would be neither state): Ctrl-C waits for the end.
        with DeferredInterrupt():
            entry = self.store.journal_begin(uuid, "revert", {"name": name, "flags": flags})
            try:
                failpoints.hit("revert.journaled")
                if online:
                    if running and not same_config:
                        kill(self._rt(uuid))
                        running = False
                    if not running:
                        self._start(uuid, defn.domain, paused=True)
                    if mon is not None:
                        self._load(mon, uuid, target, targets, name, want_paused)
                    else:
                        with self._monitor(uuid) as fresh:
                            self._load(fresh, uuid, target, targets, name, want_paused)
                else:
                    if running:
                        kill(self._rt(uuid))
                    for disk in target.disks:
                        if disk.target in targets and disk.path:
                            images.snapshot_apply(disk.path, name)
                    if flags & (R.RUNNING | R.PAUSED):
                        self._start(uuid, defn.domain, paused=bool(flags & R.PAUSED))
                failpoints.hit("revert.data-done")
            except BaseException:
                self.store.journal_end(entry)
                raise
            with self._atomic(uuid):  # the commit point
                if not same_config:
                    self.store.put_domain(uuid, dom_def.name, _stored(defn.domain))
                tree.set_current(moment)
                self._commit(uuid, tree)
                self.store.journal_end(entry)

    def _revert_external(self, uuid: str, tree: SnapshotTree, moment: Moment, defn: SnapshotDef,
                         dom_def: DomainDef, flags: int) -> None:
        """Revert to an external snapshot (libvirt 9.0 refuses): fresh overlays on the snapshot's images, the
        domain switched to them; an overlay no snapshot needs any more is removed, a needed one never."""
        assert defn.domain is not None
        with_memory = defn.memory == Location.EXTERNAL and defn.state.is_online
        if with_memory and not (defn.memory_file and os.path.exists(defn.memory_file)):
            raise error(ErrorCode.OPERATION_INVALID, ERR,
                        f"memory file {defn.memory_file} of snapshot '{defn.name}' is missing")
        running = self._rt(uuid).pid() is not None
        if running and not with_memory and flags & (R.RUNNING | R.PAUSED) and not flags & R.FORCE:
            raise error(ErrorCode.SNAPSHOT_REVERT_RISKY, ERR, "must respawn guest to start inactive snapshot")
        bases = external.disk_sources(defn.domain)
        news: dict[str, str] = {}
        for disk in defn.disks:
            if disk.snapshot != Location.EXTERNAL:
                continue
            base = bases.get(disk.name)
            if base is None or not os.path.exists(base[0]):
                raise error(ErrorCode.OPERATION_INVALID, ERR,
                            f"image {base[0] if base else '?'} of disk '{disk.name}' for snapshot '{defn.name}' is "
                            "missing")
            external.chain(*base)  # the whole backing chain must open
            news[disk.name] = external.revert_overlay_name(base[0], defn.name)
        old_tops = sorted(path for path, _ in external.disk_sources(dom_def).values())
        with DeferredInterrupt():
            entry = self.store.journal_begin(uuid, "revert-external", {"name": defn.name, "flags": flags,
                                                                       "overlays": news, "old_tops": old_tops})
            try:
                if running:
                    kill(self._rt(uuid))
                failpoints.hit("revert-external.stopped")
                for target, path in news.items():
                    base_path, base_fmt = bases[target]
                    external.create_overlay(path, base_path, base_fmt, False, target,
                                            self._record_file(uuid, defn.name, "revert-overlay", path, "qcow2",
                                                              base_path, base_fmt))
                failpoints.hit("revert-external.overlays-created")
            except BaseException:
                self._remove_ours(uuid, list(news.values()), defn.name)
                self.store.journal_end(entry)
                raise
            new_def = external.with_sources(defn.domain, news)
            with self._atomic(uuid):  # the commit point; what follows is finished by a recovery if need be
                self.store.put_domain(uuid, dom_def.name, _stored(new_def))
                tree.set_current(moment)
                self._commit(uuid, tree)
                self.store.journal_step(entry, "committed")
            failpoints.hit("revert-external.committed")
            self._finish_revert_external(uuid, defn.name, flags, old_tops)
            self.store.journal_end(entry)

    def _finish_revert_external(self, uuid: str, name: str, flags: int, old_tops: list[str]) -> None:
        """After a revert's commit: collect the old overlays no one needs, then run the domain as asked
        (from the memory file when the snapshot has one). Safe to run again after a crash."""
        tree = self._tree(uuid)
        new_def = self._def(uuid)
        self._collect(uuid, tree, new_def, set(old_tops))
        defn = _def_of(self._moment(tree, name))
        with_memory = defn.memory == Location.EXTERNAL and defn.state.is_online
        paused = bool(flags & R.PAUSED) or (defn.state == SnapshotState.PAUSED and not flags & R.RUNNING)
        status = self._status(uuid)
        if status not in (None, "running", "paused"):  # a start a dead process left half done
            kill(self._rt(uuid))
            status = None
        if status is None:
            if with_memory:
                assert defn.memory_file is not None
                self._start_from_memory(uuid, new_def, defn.memory_file, paused)
            elif flags & (R.RUNNING | R.PAUSED):
                self._start(uuid, new_def, paused=bool(flags & R.PAUSED))
        elif status == "paused" and not paused and (with_memory or flags & R.RUNNING):
            with self._monitor(uuid) as mon:
                mon.execute("cont")

    def _start_from_memory(self, uuid: str, defn: DomainDef, memory_file: str, paused: bool) -> None:
        """Start QEMU waiting for an incoming migration and feed it the memory file; stopped again if it fails."""
        rt = self._rt(uuid)
        self._start(uuid, defn, paused=True, incoming=True)
        try:
            fd = os.open(memory_file, os.O_RDONLY | os.O_CLOEXEC)
            with self._monitor(uuid) as mon:
                try:
                    mon.send_fd(fd, "virtsnap-memory")
                finally:
                    os.close(fd)
                mon.execute("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
                mon.execute("migrate-incoming", {"uri": "fd:virtsnap-memory"})
                _wait_migration(mon)
                if not paused:
                    mon.execute("cont")
        except BaseException:
            kill(rt)
            raise

    def _collect(self, uuid: str, tree: SnapshotTree, current: DomainDef, candidates: set[str]) -> None:
        """Remove candidate files that no snapshot and not the domain reach, and that the ledger says virtsnap
        made (whatever their names: a user's disk named like a revert overlay is the user's)."""
        needed = self._needed(tree, current)
        if needed is not None:
            self._remove_ours(uuid, candidates - needed)

    def _needed(self, tree: SnapshotTree, current: DomainDef) -> set[str] | None:
        """Every file the domain or a snapshot reaches, or None when a chain cannot be read (then nothing is
        removed: a file is never judged unneeded on a partial view)."""
        try:
            needed = external.needed_files([current, *_snapshot_domains(tree)])
        except libvirtError:
            return None
        return needed | {m for m in (_def_of(moment).memory_file for moment in tree.moments()) if m}

    def _load(self, mon: Monitor, uuid: str, target: QemuDomain, targets: list[str], name: str,
              paused: bool) -> None:
        active = _active_nodes(mon)
        nodes = [active[d.target] for d in target.disks if d.target in targets]
        job = f"load-{os.getpid()}"
        try:
            mon.execute("stop")
            mon.execute("snapshot-load", {"job-id": job, "tag": name, "vmstate": nodes[0], "devices": nodes})
            failpoints.hit("revert.load-started")
            mon.wait_job(job)
        except libvirtError as exc:
            kill(self._rt(uuid))
            raise error(ErrorCode.OPERATION_FAILED, ERR,
                        f"loading snapshot '{name}' failed and the domain was stopped: {exc.get_error_message()}"
                        ) from exc
        mon.execute("stop" if paused else "cont")

    def snapshot_delete(self, uuid: str, name: str, flags: int) -> None:
        with self._operation(uuid, self._def(uuid).name):
            if flags & D.FORCE:
                flags &= ~int(D.FORCE)
            else:  # api.py checked too; here it holds against another process protecting it meanwhile
                self._refuse_protected(uuid, name, flags)
            self._delete(uuid, name, flags)

    def _refuse_protected(self, uuid: str, name: str, flags: int) -> None:
        protected = self.store.protected(uuid)
        if not protected:
            return
        moment = self._moment(self._tree(uuid), name)
        names = [] if flags & D.CHILDREN_ONLY else [name]
        if flags & (D.CHILDREN | D.CHILDREN_ONLY):
            names += [m.name for m in moment.visit_descendants()]
        hits = [n for n in names if n in protected]
        if hits:
            raise error(ErrorCode.OPERATION_INVALID, ErrorDomain.DOMAIN_SNAPSHOT,
                        "snapshot " + ", ".join(f"'{n}'" for n in hits) + " is protected: unprotect it "
                        "(snapshot-protect --off) or delete with --force (VIR_DOMAIN_SNAPSHOT_DELETE_FORCE)")

    def _delete(self, uuid: str, name: str, flags: int) -> None:
        """snapshot_delete under the lock (also how a recovery finishes a delete a dead process began).
        Data first (tags, merges), then one commit of definition, tree and journal, then the files no one
        needs any more are removed: a crash at any point leaves the before or the after state."""
        dom_def = self._def(uuid)
        tree = self._tree(uuid)
        moment = self._moment(tree, name)
        victims = list(moment.visit_descendants()) if flags & (D.CHILDREN | D.CHILDREN_ONLY) else []
        if not flags & D.CHILDREN_ONLY:
            victims.append(moment)
        if flags & D.METADATA_ONLY:
            with self._atomic(uuid):  # forgotten: their files are the user's from now on, never removed by us
                tree.delete(moment, children=bool(flags & D.CHILDREN), children_only=bool(flags & D.CHILDREN_ONLY))
                self._commit(uuid, tree)
                self.store.ledger_release(uuid, [m.name for m in victims])
            return
        qdom = QemuDomain.from_def(dom_def)
        self._check_domain_paths(dom_def)  # definitions stored before these checks existed: nothing rewritten
        for victim in victims:  # or removed inside virtsnap's own directories
            self._check_snapshot_paths(_def_of(victim))
        running = self._rt(uuid).pid() is not None
        internal_victims = [m for m in victims if not _def_of(m).is_external]
        external_victims = [m for m in victims if _def_of(m).is_external]
        plans = [self._plan_external_delete(uuid, tree, dom_def, m, set(victims), running)
                 for m in external_victims]  # every plan is checked before anything changes
        entry = self.store.journal_begin(uuid, "delete", {"name": name, "flags": flags})
        removed: dict[str, tuple[str, str]] = {}
        drop: set[str] = set()
        try:
            failpoints.hit("delete.journaled")
            with contextlib.ExitStack() as stack:
                mon = stack.enter_context(self._monitor(uuid)) if running else None
                # QEMU's snapshot-delete skips images without the tag: no need to ask it first.
                tags = (self._tags(qdom, None) if mon is None
                        else _tags_from_metadata(qdom, internal_victims))
                for victim in internal_victims:
                    self._delete_data(qdom, _def_of(victim), mon, tags)
                for plan in plans:
                    merged, dropped = self._run_external_delete(uuid, tree, plan, mon)
                    removed.update(merged)
                    drop |= dropped
            failpoints.hit("delete.data-done")
        except BaseException:
            self.store.journal_end(entry)
            raise
        # Files to remove once the metadata no longer names them: merged or rebased-away images virtsnap
        # made, and the memory files of the deleted snapshots (a memory file serves its snapshot alone).
        unlink = sorted(drop)  # the plan removes only files virtsnap made, never the user's own base image
        unlink += sorted(m for m in (_def_of(v).memory_file for v in external_victims) if m)
        with self._atomic(uuid):  # the commit point
            if removed:
                self._repoint(uuid, tree, removed)
            tree.delete(moment, children=bool(flags & D.CHILDREN), children_only=bool(flags & D.CHILDREN_ONLY))
            self._commit(uuid, tree)
            if unlink:
                self.store.journal_step(entry, "committed", unlink=unlink)
            else:
                self.store.journal_end(entry)
        failpoints.hit("delete.committed")
        if unlink:
            self._remove_unneeded(uuid, unlink)
            self.store.journal_end(entry)

    def _remove_unneeded(self, uuid: str, paths: list[str]) -> None:
        """Remove these files unless the domain or a snapshot still reaches them, and only those the ledger
        says virtsnap made (checked again: safe to run after a crash, when the files may be gone already)."""
        external.forget_chains()
        needed = self._needed(self._tree(uuid), self._def(uuid))
        if needed is not None:
            self._remove_ours(uuid, set(paths) - needed)

    def _plan_external_delete(self, uuid: str, tree: SnapshotTree, dom_def: DomainDef, victim: Moment,
                              going: set[Moment], running: bool) -> extdelete.Plan:
        """How to drop the external snapshots of this delete, decided before any change (extdelete.py): one
        plan for every external snapshot in `going`, leaf first, on a model of the image files and, while the
        domain runs, of QEMU's block graph. Each victim's call returns that same plan, which runs once."""
        from . import extdelete  # the delete path only (it needs dataclasses, which a cold start cannot afford)

        key = (uuid, frozenset(m.name for m in going))
        plan = extdelete.operation_plan(key)
        if plan is not None:
            return plan
        snapshots = []
        for moment in tree.moments():
            defn = _def_of(moment)
            disks = [d for d in defn.disks if d.snapshot == Location.EXTERNAL]
            snapshots.append(extdelete.Snapshot(moment.name, defn.domain, [d.name for d in disks],
                                                [d.source for d in disks if d.source], moment in going))

        def depth(moment: Moment) -> int:
            n = 0
            while moment.parent is not None:
                n, moment = n + 1, moment.parent
            return n

        order = sorted((m for m in going if _def_of(m).is_external), key=lambda m: (-depth(m), m.name))
        view = None
        if running:
            with self._monitor(uuid) as mon:
                view = extdelete.qemu_view(mon)
        plan = extdelete.plan_delete(dom_def, snapshots, [m.name for m in order], view, self._ours(uuid))
        extdelete.remember_plan(key, plan)
        return plan

    def _run_external_delete(self, uuid: str, tree: SnapshotTree, plan: extdelete.Plan,
                             mon: Monitor | None) -> tuple[dict[str, tuple[str, str]], set[str]]:
        """Carry out the plan once (whichever victim's call comes first): block jobs and qemu-img in order, QEMU
        lets go of files that left its graph. Returns the merged files (old path -> (the file it was merged
        into, its format)) for the definitions to follow at the commit, and the files to remove after it."""
        from . import extdelete  # the delete path only (it needs dataclasses, which a cold start cannot afford)

        if plan.done:
            return {}, set()
        plan.done = True
        done: list[extdelete.Step] = []
        try:
            for step in plan.steps:
                if step.how != "qemu-img":
                    assert mon is not None
                    if step.how == "stream":
                        extdelete.block_stream(mon, step, extdelete.job_id("stream"))
                    else:
                        self._block_commit(mon, step.image, step.base, step.target)
                    extdelete.release_nodes(mon, plan.released)
                elif step.kind == "commit":
                    images.run(["commit", "-q", "-f", step.image_format, "-d", "--", step.image])
                elif step.kind == "set-backing":  # header only: the same data through another file
                    images.run(["rebase", "-u", "-f", step.image_format, "-F", step.format, "-b", step.base, "--",
                                step.image])
                else:  # rebase: the image gets the old backing's data, so it reads the same through the new one
                    images.run(["rebase", "-q", "-f", step.image_format, "-b", step.below or ""]
                               + (["-F", step.format] if step.below else []) + ["--", step.image])
                external.forget_chains()
                done.append(step)
                failpoints.hit("external-delete.step-done")
        except BaseException:
            # A merge cannot be taken back, but every image still reads as before (a merged image is kept):
            # the definitions follow the merges done so far, so that they name what QEMU and the files use.
            moved = extdelete.moved_by(done)
            if moved:
                self._repoint(uuid, tree, moved)
                self._commit(uuid, tree)
            raise
        return dict(plan.moved), set(plan.remove)

    def _block_commit(self, mon: Monitor, top: str, base: str, target: str) -> None:
        """Merge `top` into `base` inside QEMU. The image the guest writes: active commit, READY, then
        job-complete pivots the disk to `base`. An image inside the chain: top-node/base-node, and QEMU
        completes it by itself, rewriting the backing of the image above."""
        from . import extdelete  # the delete path only (it needs dataclasses, which a cold start cannot afford)

        nodes = extdelete.format_nodes(mon)
        root = _active_nodes(mon).get(target)
        if top not in nodes or base not in nodes or root is None:
            raise error(ErrorCode.INTERNAL_ERROR, ERR, f"QEMU does not have {top} and {base} open for disk '{target}'")
        job = extdelete.job_id("commit")
        if nodes[top] == root:
            mon.execute("block-commit", {"job-id": job, "device": root, "base-node": nodes[base],
                                         "auto-dismiss": False})
            failpoints.hit("delete.job-started")
            event = mon.wait_event(lambda ev: ev.get("event") == "JOB_STATUS_CHANGE"
                                   and ev["data"].get("id") == job
                                   and ev["data"].get("status") in ("ready", "aborting", "concluded"), 600)
            if event["data"]["status"] == "ready":
                mon.execute("job-complete", {"id": job})
        else:
            mon.execute("block-commit", {"job-id": job, "device": root, "top-node": nodes[top],
                                         "base-node": nodes[base], "auto-dismiss": False})
            failpoints.hit("delete.job-started")
        mon.wait_job(job)

    def _repoint(self, uuid: str, tree: SnapshotTree, moved: dict[str, tuple[str, str]]) -> None:
        """Every definition that named a merged file now names the file it was merged into."""
        dom_def = self._def(uuid)
        self.store.put_domain(uuid, dom_def.name, _stored(_moved(dom_def, moved)))
        for moment in tree.moments():
            defn = _def_of(moment)
            if defn.domain is not None:
                defn.domain = _moved(defn.domain, moved)
                tree.touch(moment)

    def _delete_data(self, qdom: QemuDomain, defn: SnapshotDef, mon: Monitor | None,
                     tags: dict[str, set[str]]) -> None:
        """Remove the snapshot's tag from every current disk image that holds it."""
        holders = [d for d in qdom.disks
                   if any(x.name == d.target and x.snapshot == Location.INTERNAL for x in defn.disks)
                   and defn.name in tags.get(d.target, set()) and d.path]
        if not holders:
            return
        if mon is not None:
            job = f"delete-{os.getpid()}"
            active = _active_nodes(mon)
            mon.execute("snapshot-delete", {"job-id": job, "tag": defn.name,
                                            "devices": [active[d.target] for d in holders]})
            failpoints.hit("delete.tag-job-started")
            mon.wait_job(job)
        else:
            for disk in holders:
                assert disk.path is not None
                images.snapshot_delete(disk.path, defn.name)
        for disk in holders:
            tags[disk.target].discard(defn.name)

@functools.lru_cache(maxsize=64)
def _parse_domain(xml: str) -> DomainDef:
    """Parsed definitions by their text: every call reads the stored XML, few need a new parse."""
    return DomainDef.parse(xml, ERR, trusted=True)


def _refuse_probing(dom: QemuDomain) -> None:
    """QEMU opens a qcow2 disk's backing files by the formats their headers record: a chain with a backing file
    whose format is not recorded would be probed, so it is refused before QEMU starts (as libvirt refuses it)."""
    for disk in dom.disks:
        if disk.path and disk.format == "qcow2" and disk.source_type == "file":
            external.chain(disk.path, "qcow2")


def _snapshot_domains(tree: SnapshotTree) -> list[DomainDef]:
    """The <domain> of every snapshot that has one: with the domain's own, what reaches image files."""
    return [d for d in (_def_of(m).domain for m in tree.moments()) if d is not None]


def _moved(domain: DomainDef, moved: dict[str, tuple[str, str]]) -> DomainDef:
    sources = external.disk_sources(domain)
    changes = {target: moved[path] for target, (path, _) in sources.items() if path in moved}
    if not changes:
        return domain
    copy = external.with_sources(domain, {t: p for t, (p, _) in changes.items()})
    for disk in (copy.node.find("devices") or copy.node).findall("disk"):
        target = disk.find("target")
        dev = target.get("dev") if target is not None else None
        driver = disk.find("driver")
        if dev in changes and driver is not None:
            driver.attrs["type"] = changes[dev][1]
    return copy


def _tags_from_metadata(qdom: QemuDomain, victims: list[Moment]) -> dict[str, set[str]]:
    """Which disks should hold which tags, according to the metadata alone."""
    tags: dict[str, set[str]] = {d.target: set() for d in qdom.disks}
    for victim in victims:
        for disk in _def_of(victim).disks:
            if disk.snapshot == Location.INTERNAL and disk.name in tags:
                tags[disk.name].add(victim.name)
    return tags


def _pause_ms(events: list[dict[str, Any]]) -> float | None:
    """Time from the first STOP to the last RESUME, by QEMU's own event timestamps."""
    def stamp(ev: dict[str, Any]) -> float:
        ts = ev.get("timestamp", {})
        return float(ts.get("seconds", 0)) + float(ts.get("microseconds", 0)) / 1e6
    stops = [stamp(e) for e in events if e.get("event") == "STOP"]
    resumes = [stamp(e) for e in events if e.get("event") == "RESUME"]
    if not stops or not resumes:
        return None
    return (max(resumes) - min(stops)) * 1000


def _thaw(agent: Agent) -> None:
    """guest-fsfreeze-thaw, retried once on a fresh connection: QEMU 7.2 never thaws by itself."""
    try:
        agent.execute("guest-fsfreeze-thaw")
    except libvirtError:
        agent.close()
        from .agent import Agent

        with Agent(agent.path, timeout=10.0) as again:
            again.execute("guest-fsfreeze-thaw")
    finally:
        agent.close()


def _wait_migration(mon: Monitor, timeout: float = 600.0) -> None:
    """Until query-migrate says completed (or failed, raised); MIGRATION events wake the wait."""
    deadline = time.monotonic() + timeout
    while True:
        info = mon.execute("query-migrate")
        status = info.get("status", "none")
        if status == "completed":
            _wait_finalized(mon, deadline)
            return
        if status in ("failed", "cancelled"):
            raise error(ErrorCode.OPERATION_FAILED, ERR, f"memory transfer {status}: {info.get('error-desc', '')}")
        ram = info.get("ram") or {}
        report("memory", int(ram.get("transferred", 0)), int(ram.get("total", 0)))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise error(ErrorCode.OPERATION_TIMEOUT, ERR, "memory transfer did not finish")
        with contextlib.suppress(libvirtError):
            mon.wait_event(lambda ev: ev.get("event") == "MIGRATION", min(remaining, 0.2))


def _wait_finalized(mon: Monitor, deadline: float) -> None:
    """query-migrate says "completed" a moment before QEMU leaves the finish-migrate run state, and `cont`
    is refused until it has. No event marks that step, so poll it, backing off (it takes milliseconds)."""
    delay = 0.001
    while mon.execute("query-status").get("status") == "finish-migrate":
        if time.monotonic() > deadline:
            raise error(ErrorCode.OPERATION_TIMEOUT, ERR, "QEMU did not finalize the memory transfer")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _active_nodes(mon: Monitor) -> dict[str, str]:
    """target dev -> the node QEMU writes to now (it changes when an overlay is switched in)."""
    return {target: str(inserted["node-name"]) for target, inserted in mon.block_devices().items()}


def _regular_file(path: str) -> bool:
    return os.path.isfile(path)


def _def_of(moment: Moment) -> SnapshotDef:
    """A moment's definition, parsed from its stored XML the first time it is needed."""
    if isinstance(moment.defn, str):
        moment.defn = _parse_private(moment.defn)
    defn: SnapshotDef = moment.defn
    return defn


def _parse_private(xml: str) -> SnapshotDef:
    return parse_snapshot(xml, ParseMode.REDEFINE, trusted=True)


def _stored(domain: DomainDef) -> str:
    """A definition as the store keeps it: everything, graphics passwords included (the store is 0600;
    callers without VIR_DOMAIN_XML_SECURE get them stripped when it is formatted for them)."""
    return domain.format(secure=True)


def _xml_of(moment: Moment) -> str:
    return moment.defn if isinstance(moment.defn, str) else format_snapshot(_def_of(moment), secure=True)


def _attach(moment: Moment, defn: SnapshotDef) -> None:
    moment.defn, moment.state, moment.external = defn, defn.state, defn.is_external
    moment.creation_time = defn.creation_time


def _internal_targets(defn: SnapshotDef, qdom: QemuDomain) -> list[str]:
    """Disks the snapshot stores internally; each must be a writable qcow2 image."""
    by_target = {d.target: d for d in qdom.disks}
    targets = []
    for disk in defn.disks:
        if disk.snapshot != Location.INTERNAL:
            continue
        dom_disk = by_target.get(disk.name)
        if dom_disk is None or dom_disk.readonly or not dom_disk.path:
            continue
        if dom_disk.format != "qcow2":
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        f"internal snapshot for disk {disk.name} unsupported for storage type {dom_disk.format}")
        targets.append(disk.name)
    return targets


def _id_clash(qdom: QemuDomain, targets: list[str], tag: str) -> tuple[str, str] | None:
    """(image, other snapshot) where `tag` is the ID of another snapshot in one of these disks' images."""
    for disk in qdom.disks:
        if disk.target in targets and disk.path:
            other = images.id_clash(disk.path, tag)
            if other is not None:
                return disk.path, other
    return None


def _offline_create(qdom: QemuDomain, targets: list[str], name: str) -> None:
    """qemu-img snapshot -c on every disk; undone on the disks already done if one fails."""
    done: list[str] = []
    try:
        for disk in qdom.disks:
            if disk.target in targets and disk.path:
                images.snapshot_create(disk.path, name)
                done.append(disk.path)
    except libvirtError:
        for path in done:
            with contextlib.suppress(libvirtError):
                images.snapshot_delete(path, name)
        raise
