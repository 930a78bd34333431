"""The context every verb of the QEMU driver works in: the metadata store, state and runtime directories,
the per-domain lock, QEMU's monitor and the files virtsnap made (ledger), shared by lifecycle, create,
revert, delete, check and recovery.

One Context per connection; QemuDriver owns it and hands it to each verb module.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

from ... import failpoints
from ...conf.tree import Moment, SnapshotTree
from ...errors import ErrorCode, ErrorDomain, error, libvirtError
from ...locks import RLock, allocate_lock
from ...store import ledger
from ...store.db import MetadataStore, state_dir, verified_dir
from ...store.lock import DEFAULT_TIMEOUT as LOCK_TIMEOUT
from ...store.lock import DomainLock
from . import moments
from .process import Runtime, qemu_binary, read_text, runtime_root

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    import threading

    from ...conf.domain_xml import DomainDef
    from ...conf.snapshot_xml import SnapshotDef
    from .confine import Identity
    from .domain import QemuDomain
    from .monitor import Monitor

ERR = ErrorDomain.QEMU
KEPT_READ_INTERVAL = 2.0  # seconds between two reads of the kept monitors resting between operations


class _Kept:
    """A domain's kept monitor as one connection holds it: the lock file's descriptor (its flock is the claim,
    released when the descriptor closes, also by the kernel when the process dies), the connection while it is
    open and the QEMU it is to (the pid file's pid and start time), and the operation using it now."""

    __slots__ = ("busy", "lock_fd", "monitor", "qemu", "reading")

    def __init__(self, lock_fd: int) -> None:
        self.lock_fd = lock_fd
        self.monitor: Monitor | None = None
        self.qemu = ""
        self.busy = allocate_lock()
        self.reading = False  # held by the connection's reader (Context._read_kept), for a moment

    @classmethod
    def claim(cls, path: str) -> _Kept | None:
        import fcntl

        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another connection keeps it
            os.close(fd)
            return None
        return cls(fd)

    def disconnect(self) -> None:
        if self.monitor is not None:
            self.monitor.close()
            self.monitor = None

    def release(self) -> None:
        self.disconnect()
        os.close(self.lock_fd)


class Context:
    """What the verbs share: one connection's store, directories, lock and caches."""

    def __init__(self, system: bool, read_only: bool) -> None:
        self.system = system  # QEMU confined: an unprivileged user, its files handed over (confine.py)
        self.read_only = read_only  # never replays the journal: it reports what is pending instead
        base = os.environ.get("VIRTSNAP_QEMU_STATE_DIR")
        self.state_dir = base or state_dir("qemu", system)
        self.store = MetadataStore(self.state_dir, read_only=read_only)  # a read-only one never writes it
        # A read-only connection makes no directory: where none exists, no QEMU of ours runs.
        create = not read_only
        self.runtime = runtime_root(system, create) if not base else verified_dir(os.path.join(base, "run"), create)
        self.trees: dict[str, tuple[int, SnapshotTree]] = {}
        self.lock = RLock()  # one operation at a time per connection; the flock covers processes
        self.last_pause_ms: float | None = None  # guest pause of the last memory snapshot, from QMP events
        self.recovery_errors: dict[int, str] = {}  # journal entry -> why finishing it failed (in this process)
        self._runtimes: dict[str, Runtime | None] = {}  # domain under an operation -> its runtime directory
        self._views: dict[str, tuple[str, QemuDomain]] = {}  # domain -> (stored text, its QEMU view)
        self._kept: dict[str, _Kept] = {}  # domain -> the second monitor of its QEMU that this connection keeps
        self._kept_lock = allocate_lock()
        # state and runtime dirs, their symlinks resolved at the first check (they are virtsnap's own, owner-only)
        self._roots: list[tuple[str, str]] | None = None
        self._inside: dict[str, str | None] | None = None  # path -> the private dir it is in, during an operation
        # The reader of the kept monitors between operations (_read_kept) and what tells it to stop: made, with
        # the module threading, when the first is kept (under _kept_lock, as `_closed` is set).
        self._reader: threading.Thread | None = None
        self._closing: threading.Event | None = None
        self._closed = False

    def close(self) -> None:
        with self._kept_lock:
            self._closed = True
            closing, reader = self._closing, self._reader
        if closing is not None:
            closing.set()
        if reader is not None:
            reader.join(5)
        self.store.close()
        with self._kept_lock:
            for kept in self._kept.values():
                kept.release()
            self._kept.clear()

    def _read_kept(self, closing: threading.Event) -> None:
        """Every few seconds, what QEMU sent to the kept monitors that rest between operations (their events, a
        hang-up): a monitor's loop runs only while it is called, and QEMU keeps what nobody reads in memory."""
        while not closing.wait(KEPT_READ_INTERVAL):
            with self._kept_lock:
                kept_now = list(self._kept.values())
            for kept in kept_now:
                if not kept.busy.acquire(blocking=False):
                    continue  # in use: its operation reads it
                kept.reading = True
                try:
                    if kept.monitor is not None and kept.monitor.connected:
                        with contextlib.suppress(libvirtError):
                            kept.monitor.idle()
                finally:
                    kept.reading = False
                    kept.busy.release()

    def _row(self, uuid: str) -> tuple[str, str]:
        """The domain's stored (name, definition): one indexed row, or NO_DOMAIN."""
        row = self.store.domain(uuid)
        if row is None:
            raise error(ErrorCode.NO_DOMAIN, ERR, f"no domain with matching uuid '{uuid}'")
        return row

    def _stored(self, uuid: str) -> str:
        """The domain's definition as stored."""
        return self._row(uuid)[1]

    def domain_name(self, uuid: str) -> str:
        """The domain's name (its row's column: no definition parsed), or NO_DOMAIN."""
        return self._row(uuid)[0]

    def domain_def(self, uuid: str) -> DomainDef:
        return moments.parse_domain(self._stored(uuid)).copy()  # a copy: callers may edit their definition

    def domain_read(self, uuid: str) -> DomainDef:
        """The stored definition, parsed and shared with every other reader of the same text: to read only."""
        return moments.parse_domain(self._stored(uuid))

    def qemu_view(self, uuid: str) -> QemuDomain:
        """The QEMU view of the domain's definition: a function of its text alone (QemuDomain.from_def reads
        nothing else), built from a copy of its own and kept while the stored text stays the same."""
        from .domain import QemuDomain

        stored = self._stored(uuid)
        cached = self._views.get(uuid)
        if cached is None or cached[0] != stored:
            cached = (stored, QemuDomain.from_def(moments.parse_domain(stored).copy()))
            self._views[uuid] = cached
        return cached[1]

    def exists(self, uuid: str) -> None:
        """The cheap check of queries that need no definition (no XML parse)."""
        self._stored(uuid)

    def rt(self, uuid: str) -> Runtime:
        if self.read_only and not os.path.lexists(os.path.join(self.runtime, uuid)):
            return Runtime(os.path.join(self.runtime, uuid))  # nothing there to read: no pid file, no socket
        made = self._runtimes.get(uuid)
        if made is not None:
            return made
        rt = Runtime.for_domain(self.runtime, uuid)
        if uuid in self._runtimes:  # made and checked once per operation (virtsnap never removes it)
            self._runtimes[uuid] = rt
        return rt

    @contextlib.contextmanager
    def operation(self, uuid: str, name: str, timeout: float = LOCK_TIMEOUT) -> Iterator[DomainLock]:
        """The per-domain lock, across threads and processes. An operation a dead process left unfinished is
        rolled forward or back first (it holds no lock any more: the kernel released its flock)."""
        from . import external  # images and chains: operations only, not the commands that read metadata

        with self.lock, DomainLock(self.state_dir, uuid, timeout=timeout, what=name) as lock:
            external.forget_chains()  # images may have changed since the last operation
            self._runtimes[uuid] = None
            self._inside = {}
            try:
                self.hand_back_if_stopped(uuid)  # a guest that powered itself off since the last operation
                if self.store.journal_pending(uuid) and not self.read_only:
                    from . import recovery

                    recovery.recover(self, uuid)
                yield lock
            finally:
                external.forget_chains()
                self.hand_back_if_stopped(uuid)
                self._runtimes.pop(uuid, None)
                self._inside = None


    # -- confinement (qemu:///system) ----------------------------------------------------------------
    def qemu_user(self, qdom: QemuDomain) -> Identity | None:
        """Who QEMU runs as: None under qemu:///session (the caller itself), else the unprivileged user."""
        from . import confine

        if not self.system:
            if qdom.seclabel is not None:
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                            "<seclabel> applies to qemu:///system; qemu:///session runs QEMU as the connecting user")
            return None
        return confine.qemu_user(qdom.seclabel)

    def hand_over(self, uuid: str, qdom: QemuDomain, user: Identity | None, paths: list[str] | None = None) -> None:
        """Give QEMU's user the files it opens (every disk's backing chain, kernel, initrd) or `paths`, as
        libvirt's DAC driver does; given back when the domain stops. Not with <seclabel relabel='no'>."""
        from . import confine

        if user is None or (qdom.seclabel is not None and not qdom.seclabel.relabel):
            return
        if paths is None:
            from . import external

            paths = [p for p in (qdom.kernel, qdom.initrd) if p]
            for disk in qdom.disks:
                if disk.path and disk.device != "nvram":  # the NVRAM reaches QEMU as a descriptor
                    paths.append(disk.path)
                    if disk.format == "qcow2" and os.path.exists(disk.path):
                        paths += [layer.path for layer in external.chain(disk.path, "qcow2")]
        confine.check_reachable(user, paths)
        confine.hand_over(self.state_dir, uuid, user, paths)

    def hand_back_if_stopped(self, uuid: str) -> None:
        if not self.system:  # qemu:///session hands nothing over
            return
        from . import confine

        if confine.holds(self.state_dir, uuid) and self.rt(uuid).pid() is None:
            confine.hand_back(self.state_dir, uuid)

    def live_refusal(self, uuid: str) -> str | None:
        """Why the running QEMU cannot take a LIVE snapshot (userfaultfd denied to its user), if it cannot."""
        from . import argv, confine

        pid = self.rt(uuid).pid()
        try:
            status = read_text(f"/proc/{pid}/status")
            uid, gid = (int(next(line.split()[1] for line in status.splitlines() if line.startswith(key)))
                        for key in ("Uid:", "Gid:"))
        except (OSError, StopIteration, ValueError):
            return None
        if uid == 0:
            return None
        return confine.userfaultfd_refusal(confine.resolve(f"+{uid}:+{gid}"), argv.facts(qemu_binary()).version)

    def recover_on_open(self, uuid: str) -> None:
        """Opening a domain finishes what a dead process left undone, unless someone holds the lock now (or
        the connection is read-only: snapshot-check then reports the pending entry)."""
        if self.read_only or not self.store.journal_pending(uuid):
            return
        with contextlib.suppress(libvirtError), self.operation(uuid, uuid, timeout=0):
            pass

    @contextlib.contextmanager
    def atomic(self, uuid: str) -> Iterator[None]:
        """One sqlite transaction for an operation's commit point: definition, tree and journal together."""
        try:
            with self.store.transaction():
                yield
        except BaseException:
            self.trees.pop(uuid, None)
            raise

    @contextlib.contextmanager
    def monitor(self, uuid: str, shared: bool = False) -> Iterator[Monitor]:
        """QEMU's monitor for one operation: the connection this one keeps open to the domain's second monitor
        when it can claim it, else a connection of its own to the shared monitor, closed at the end. `shared`:
        the shared monitor always, for an operation that passes QEMU a named descriptor (getfd): QEMU keeps it
        per monitor, and a recovery in any process must reach it to close it."""
        from .monitor import Monitor  # qemu.qmp and asyncio: only for operations that talk to QEMU

        rt = self.rt(uuid)
        kept = None if shared else self._claim_kept(uuid, rt)
        if kept is not None:
            assert kept.monitor is not None
            kept.monitor.resume()
            done = False
            try:
                yield kept.monitor
                done = True
            finally:
                if done and kept.monitor.connected:
                    kept.monitor.rest()
                else:  # a failure may leave a reply or an event behind: the next operation connects afresh
                    kept.disconnect()
                kept.busy.release()
            return
        mon = Monitor(rt.monitor, uuid[:8])
        try:
            yield mon
        finally:
            mon.close()

    def _claim_kept(self, uuid: str, rt: Runtime) -> _Kept | None:
        """The kept monitor of the domain's QEMU, connected and reserved for this operation, or None: QEMU
        started without one (by an older virtsnap), another connection keeps it (the lock file's flock, held for
        as long as that connection lives), another thread of this connection uses it now, or it does not
        answer. Nobody waits on anybody: whoever cannot have it uses the shared monitor."""
        from .monitor import Monitor

        if self.read_only:  # it makes no file, not even the lock
            return None
        try:
            qemu = read_text(rt.pidfile)  # pid and start time: which QEMU the connection is to
        except (OSError, ValueError):
            return None
        with self._kept_lock:
            kept = self._kept.get(uuid)
            if kept is None:
                if not os.path.exists(rt.kept_monitor):
                    return None
                kept = _Kept.claim(rt.kept_lock)
                if kept is None:
                    return None
                self._kept[uuid] = kept
            # in use by another thread of this connection, unless only read between operations for a moment
            if not kept.busy.acquire(blocking=False) and not (kept.reading and kept.busy.acquire(timeout=1)):
                return None
        if kept.monitor is not None and (kept.qemu != qemu or not kept.monitor.connected):
            kept.disconnect()  # a QEMU that has exited (or been replaced)
        if kept.monitor is None:
            try:
                if not os.path.exists(rt.kept_monitor):
                    raise FileNotFoundError(rt.kept_monitor)
                kept.monitor = Monitor(rt.kept_monitor, uuid[:8], qemu=qemu.strip())
            except (OSError, libvirtError):
                kept.busy.release()
                return None
            kept.qemu = qemu
            with self._kept_lock:
                if self._reader is None and not self._closed:
                    import threading

                    self._closing = threading.Event()
                    self._reader = threading.Thread(target=self._read_kept, args=(self._closing,), name="qmp-kept",
                                                    daemon=True)
                    self._reader.start()
        return kept

    def status(self, uuid: str) -> str | None:
        """QEMU's run status, or None when no QEMU runs for the domain."""
        rt = self.rt(uuid)
        if rt.pid() is None:
            return None
        try:
            with self.monitor(uuid) as mon:
                return str(mon.execute("query-status")["status"])
        except libvirtError:
            return None if rt.pid() is None else "unknown"

    def tags(self, qdom: QemuDomain, mon: Monitor | None) -> dict[str, set[str]]:
        """Internal snapshot tags per disk target: from QEMU when it runs (one query), else qemu-img."""
        from . import images

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

    def tree(self, uuid: str) -> SnapshotTree:
        generation = self.store.generation(uuid)
        if generation < 0:
            raise error(ErrorCode.NO_DOMAIN, ERR, f"no domain with matching uuid '{uuid}'")
        cached = self.trees.get(uuid)
        if cached is not None and cached[0] == generation:
            return cached[1]
        tree = self.store.load_tree(uuid)
        self.trees[uuid] = (generation, tree)
        return tree

    def commit(self, uuid: str, tree: SnapshotTree) -> None:
        self.trees[uuid] = (self.store.save_tree(uuid, tree, moments.xml_of), tree)

    def moment(self, tree: SnapshotTree, name: str) -> Moment:
        moment = tree.get(name)
        if moment is None:
            raise error(ErrorCode.NO_DOMAIN_SNAPSHOT, ERR, f"no domain snapshot with matching name '{name}'")
        return moment

    # One snapshot read alone: a few indexed rows, never the whole tree (a cold snapshot-current, -info,
    def check_outside_state(self, path: str, what: str) -> None:
        """No disk, overlay, memory file, socket or log is ever inside virtsnap's own state or runtime
        directories (metadata.db, locks, QEMU's sockets of any domain), whatever symlinks the path goes through."""
        if self._roots is None:
            self._roots = ledger.resolved([self.state_dir, self.runtime])
        seen = self._inside  # an operation resolves each path once (a delete checks the disks of two definitions)
        if seen is not None and path in seen:
            private = seen[path]
        else:
            private = ledger.inside(path, self._roots)
            if seen is not None:
                seen[path] = private
        if private is not None:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, f"{what} {path} is inside virtsnap's private directory "
                        f"{private}")

    def check_domain_paths(self, defn: DomainDef) -> None:
        """Every file a domain definition names for QEMU to open or create (disks, sockets, serial files and
        their logs) lies outside virtsnap's own directories: checked at define, create, redefine and revert."""
        devices = defn.node.find("devices")
        for dev in devices.children if devices is not None else []:
            for child in dev.children:
                for attr in ("file", "dev", "path") if child.tag == "source" else ("file",) if child.tag == "log" \
                        else ():
                    value = child.get(attr)
                    if value:
                        self.check_outside_state(value, f"<{dev.tag}> file")
        from . import firmware

        own = firmware.own_nvram(self.state_dir, defn.uuid)
        for what, path in firmware.named_paths(defn):
            if not (what == "<nvram>" and path == own):  # the domain's own NVRAM store is ours to keep there
                self.check_outside_state(path, f"{what} file")

    def check_snapshot_paths(self, defn: SnapshotDef) -> None:
        """A snapshot definition's memory file, overlays and <domain> (REDEFINE takes any of them as given)."""
        if defn.memory_file:
            self.check_outside_state(defn.memory_file, "memory file")
        for disk in defn.disks:
            if disk.source:
                self.check_outside_state(disk.source, f"overlay for disk {disk.name}")
        for domain in (defn.domain, defn.inactive_domain):
            if domain is not None:
                self.check_domain_paths(domain)
    def record_file(self, uuid: str, snapshot: str, purpose: str, path: str, fmt: str, backing: str | None = None,
                     backing_format: str | None = None) -> Callable[[int], object]:
        """The callback that records a file in the ledger the moment it is created (before data goes in)."""
        def made(fd: int) -> None:
            ledger.record(self.store, path, fd, uuid, snapshot, purpose, fmt, backing, backing_format)
            failpoints.hit("ledger.recorded")  # a crash here leaves an empty file that only the ledger knows

        return made

    def remove_ours(self, uuid: str, paths: list[str] | set[str], snapshot: str | None = None) -> None:
        """Remove these files where the ledger says this domain made them and they are still those files;
        every other path is left alone (the one way any file is removed)."""
        for path in sorted(paths):
            with contextlib.suppress(OSError):
                ledger.remove_path(self.store, path, uuid, snapshot)

    def ours(self, uuid: str) -> set[str]:
        """Paths of the domain's ledger files that are still the files virtsnap made."""
        return set(ledger.ours(self.store, uuid))
    def record_new(self, uuid: str, tree: SnapshotTree, defn: SnapshotDef, parent_name: str | None = "") -> None:
        """The metadata commit of a create: the new snapshot is current, a child of the previous current
        (or of `parent_name`, when a recovery finishes a create)."""
        moment = tree.add(Moment(defn.name))
        moments.attach(moment, defn)
        parent = tree.current if parent_name == "" else tree.get(parent_name) if parent_name else None
        tree.set_current(moment)
        tree.link(moment, parent)
        self.commit(uuid, tree)
    def collect(self, uuid: str, tree: SnapshotTree, current: DomainDef, candidates: set[str]) -> None:
        """Remove candidate files that no snapshot and not the domain reach, and that the ledger says virtsnap
        made (whatever their names: a user's disk named like a revert overlay is the user's)."""
        needed = self.needed(tree, current)
        if needed is not None:
            self.remove_ours(uuid, candidates - needed)

    def needed(self, tree: SnapshotTree, current: DomainDef) -> set[str] | None:
        """Every file the domain or a snapshot reaches, or None when a chain cannot be read (then nothing is
        removed: a file is never judged unneeded on a partial view)."""
        from . import external

        try:
            needed = external.needed_files([current, *moments.snapshot_domains(tree)])
        except libvirtError:
            return None
        return needed | {m for m in (moments.def_of(moment).memory_file for moment in tree.moments()) if m}
    def remove_unneeded(self, uuid: str, paths: list[str]) -> None:
        """Remove these files unless the domain or a snapshot still reaches them, and only those the ledger
        says virtsnap made (checked again: safe to run after a crash, when the files may be gone already)."""
        from . import external

        external.forget_chains()
        needed = self.needed(self.tree(uuid), self.domain_def(uuid))
        if needed is not None:
            self.remove_ours(uuid, set(paths) - needed)
    def require_running(self, uuid: str) -> None:
        if self.rt(uuid).pid() is None:
            raise error(ErrorCode.OPERATION_INVALID, ErrorDomain.DOMAIN, "domain is not running")
