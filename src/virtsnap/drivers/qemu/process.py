"""QEMU processes: launching a domain's QEMU detached, finding and stopping it.

virtsnap binds QEMU's sockets and opens its log and serial file itself, in a private runtime directory per
domain, and passes them as descriptors (argv.py writes the options); a later process reconnects by path.
"""

from __future__ import annotations

import contextlib
import os
import time

from ...errors import ErrorCode, ErrorDomain, error
from ...locks import allocate_lock
from ...records import Frozen
from ...store.db import private_dir, verified_dir

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    import socket
    import subprocess

    from .confine import Identity
    from .domain import QemuDomain

ERR = ErrorDomain.QEMU


def qemu_binary(arch: str = "x86_64", emulator: str | None = None) -> str:
    """The QEMU that runs `arch` (VIRTSNAP_QEMU overrides x86_64's). A domain's <emulator> must be that very
    binary: virtsnap runs no other program a definition names."""
    import shutil  # shutil and subprocess: only for starting QEMU

    from .devices import ARCH_BINARIES

    name = ARCH_BINARIES[arch]
    path = (os.environ.get("VIRTSNAP_QEMU") if arch == "x86_64" else None) or shutil.which(name)
    if not path:
        if arch != "x86_64":
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        f"arch='{arch}' runs on {name}, which is not installed (Debian's qemu-system-x86)")
        raise error(ErrorCode.OPERATION_FAILED, ERR,
                    "qemu-system-x86_64 not found (install Debian's qemu-system-x86, or set VIRTSNAP_QEMU)")
    if emulator is not None and os.path.realpath(emulator) != os.path.realpath(path):
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    f"<emulator> {emulator!r} is not supported: virtsnap runs {path} for arch='{arch}'")
    return path


def runtime_root(system: bool, create: bool = True) -> str:
    """Where sockets, pid files and logs go: every component verified (store.db.verified_dir), so a
    /tmp/virtsnap-UID made by someone else, or a symlink in the path, is refused rather than used."""
    if system:
        return verified_dir("/run/virtsnap/qemu", create)
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/virtsnap-{os.getuid()}"
    return verified_dir(os.path.join(base, "virtsnap", "qemu"), create)


PIDFILE = "qemu.pid"  # "pid start-time" of the domain's QEMU
BLOCK_MEMO = "block-nodes.json"  # the active node of each disk, as that QEMU last said (monitor.Monitor)


class _File:
    """A file of a domain's runtime directory, by its name (Runtime's attributes)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, rt: Runtime, owner: type | None = None) -> str:
        return os.path.join(rt.directory, self.name)


class Runtime(Frozen):
    """The per-domain runtime files (a directory named by the domain's uuid, the owner's only)."""

    _fields = ("directory",)
    __slots__ = _fields

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.fspath(directory)

    @classmethod
    def for_domain(cls, root: str, uuid: str) -> Runtime:
        private_dir(root)
        return cls(private_dir(os.path.join(root, uuid)))

    # the files of the directory, by name
    monitor = _File("monitor.sock")
    kept_monitor = _File("monitor-kept.sock")  # a second QMP monitor, kept open by one long-lived connection
    kept_lock = _File("monitor-kept.lock")  # held (flock) by the connection keeping it: no other connects to it
    agent = _File("agent.sock")
    spice = _File("spice.sock")
    pidfile = _File(PIDFILE)
    block_memo = _File(BLOCK_MEMO)
    log = _File("qemu.log")
    swtpm_pidfile = _File("swtpm.pid")
    swtpm_log = _File("swtpm.log")
    sockets = _File("sockets.json")  # the sockets bound for QEMU outside the directory (path, device, inode)

    def swtpm_pid(self) -> int | None:
        """The domain's swtpm while it runs (pid and start time as recorded at launch; never a recycled pid)."""
        found = _recorded(self.swtpm_pidfile)
        return found[0] if found is not None else None

    def pid(self) -> int | None:
        """The QEMU pid if that process is alive and really is this domain's QEMU: the pid file holds the
        process's start time too, so a recycled pid never matches. A process found to be the domain's QEMU (its
        command line names the domain) is known from then on; asked about again, it gets a pidfd, which tells
        without reading /proc whether it has ended (/proc/PID/stat of a running QEMU took a tenth of a
        millisecond of every delete). A command that asks once opens no descriptor."""
        reap()
        recorded = _read_pidfile(self.pidfile)
        if recorded is None:
            return None
        pid, started = recorded
        found = (pid, started, self.directory)
        with _QEMUS_LOCK:  # a pidfd is polled, closed and replaced by one thread at a time
            known = _QEMUS.get(found)
            if known is not None and known >= 0:
                if not _pidfd_ended(known):
                    return pid
                del _QEMUS[found]
                os.close(known)
                return None
        if known is None:  # first sight: is it this domain's QEMU?
            if _alive(pid, started) is None:
                return None
            try:
                cmdline = read_bytes(f"/proc/{pid}/cmdline").split(b"\0")
            except OSError:
                return None
            if os.path.basename(self.directory).encode() not in cmdline:  # -uuid UUID
                return None
            fd = -1
        else:  # seen before: a pidfd from now on, where the kernel gives one
            opened = _pidfd(pid, started)
            if opened is None and _alive(pid, started) is None:
                return None
            fd = -1 if opened is None else opened
        with _QEMUS_LOCK:
            held = _QEMUS.get(found)
            if held is not None and held >= 0:  # another thread got one meanwhile
                if fd >= 0:
                    os.close(fd)
                return pid
            if held is None and len(_QEMUS) >= 64:  # a connection serving many domains keeps a few pidfds
                for other in _QEMUS.values():
                    if other >= 0:
                        os.close(other)
                _QEMUS.clear()
            _QEMUS[found] = fd
        return pid


# (pid, start time, runtime directory) of the domains' QEMUs seen -> a pidfd of that very process (readable once it
# has ended), or -1 while it has none (its /proc entry is then read at every call)
_QEMUS: dict[tuple[int, str, str], int] = {}
_QEMUS_LOCK = allocate_lock()


def _pidfd(pid: int, started: str) -> int | None:
    """A pidfd of the process `pid` started at `started`, or None. The start time is read again once the pidfd
    is open: a process that ended between the two reads and whose pid was recycled never gets it."""
    try:
        fd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None
    if _alive(pid, started) is None:
        os.close(fd)
        return None
    return fd


def _pidfd_ended(pidfd: int, timeout_ms: int = 0) -> bool:
    """Whether the process of this pidfd has ended, every thread of it, waiting up to `timeout_ms` (poll, not
    select: a descriptor may be above 1023)."""
    import select

    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(timeout_ms))


def _alive(pid: int, started: str) -> int | None:
    """`pid` if that process has not ended (ended()) and started at `started` (the recorded start time)."""
    try:
        fields = proc_stat(pid)
        if len(fields) < 20 or ended(fields) or fields[19] != started:
            return None
    except (OSError, IndexError, ValueError):
        return None
    return pid


def ended(fields: list[str]) -> bool:
    """Whether the process whose /proc/PID/stat fields these are (proc_stat) has ended: a zombie with no thread
    left. A thread-group leader that exited alone is a zombie too, but its other threads still run and hold its
    files (a QEMU between its main thread's exit and its last thread's): running, as its pidfd says."""
    return fields[0] == "Z" and int(fields[17]) <= 1


def _recorded(pidfile: str) -> tuple[int, str, str] | None:
    """(pid, start time, directory) of the live process a "pid start-time" file names (a recycled pid has another
    start time; a zombie is not alive); children of this process that ended are reaped first."""
    reap()
    recorded = _read_pidfile(pidfile)
    if recorded is None or _alive(*recorded) is None:
        return None
    return recorded[0], recorded[1], os.path.dirname(pidfile)


def _read_pidfile(pidfile: str) -> tuple[int, str] | None:
    """(pid, start time) as a "pid start-time" file records them, or None (no file, or not that)."""
    try:
        pid_text, _, started = read_text(pidfile).strip().partition(" ")
        return int(pid_text), started
    except (OSError, ValueError):
        return None


def read_bytes(path: str) -> bytes:
    """A small file's bytes, read with three system calls (no buffered file object): pid files, the block memo,
    /proc entries (whose size says 0)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, 65536)]
        while chunks[-1]:
            chunks.append(os.read(fd, 65536))
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_text(path: str) -> str:
    return read_bytes(path).decode()


def unlink_quiet(path: str) -> None:
    """Remove a file of virtsnap's own runtime directory if it is there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (the state first, the start time at 19): the name, in
    parentheses, may hold spaces and ')' itself. OSError when there is no such process."""
    return read_text(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()


def start_time(pid: int) -> str | None:
    try:
        return proc_stat(pid)[19]
    except (OSError, IndexError):
        return None


_children: dict[int, subprocess.Popen[bytes]] = {}  # QEMUs this process started, reaped when they exit


def reap() -> None:
    """Collect the QEMUs this process started that have exited (killed by another process, or quit by
    themselves): without it each would stay a zombie until this process ends."""
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            del _children[pid]


def open_nvram(path: str) -> int:
    """The NVRAM opened read-write for QEMU: a regular file, reached without following a final symbolic link
    (QEMU's user gets this descriptor, never the right to open the path itself)."""
    import stat

    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise error(ErrorCode.OPERATION_FAILED, ERR, f"cannot open NVRAM {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise error(ErrorCode.OPERATION_FAILED, ERR, f"NVRAM {path} is not a regular file")
    os.set_blocking(fd, True)
    return fd


def launch(dom: QemuDomain, rt: Runtime, *, paused: bool = False, incoming: bool = False,
           user: Identity | None = None, timeout: float = 60.0, tpm_state: str | None = None) -> int:
    """Start QEMU detached (its own session; it outlives this process) and return its pid once its monitor
    answers; it runs unless `paused` or `incoming`. `user`: the unprivileged user it runs as from its first
    instruction (qemu:///system), with the seccomp sandbox. `tpm_state`: the prepared state directory of the
    domain's <tpm>, whose swtpm starts first (tpm.py) and ends with QEMU. On failure nothing runs and QEMU's
    own error output is the message."""
    import subprocess

    from . import argv, netdev

    reap()
    binary = qemu_binary(dom.arch, dom.emulator)
    for kind, _source in dom.nets:
        if kind != "user":
            netdev.require_root(kind)  # before anything is made
    opened: list[int] = []
    sockets: list[socket.socket] = []
    try:
        remove_sockets(rt)
        for stale in (rt.monitor, rt.kept_monitor, rt.pidfile, rt.block_memo, rt.log, rt.agent, rt.swtpm_pidfile,
                      rt.swtpm_log):
            unlink_quiet(stale)  # virtsnap's own files, in its own directory
        taps = open_taps(dom, opened)  # first: a missing network or bridge leaves nothing started
        tpm_fd = None
        if dom.hw.tpm is not None:
            tpm_fd = _start_swtpm(rt, tpm_state, user)
            opened.append(tpm_fd)  # QEMU holds its copy; if QEMU never starts, closing ours ends swtpm
        monitor = _listen(str(rt.monitor), sockets)
        kept_monitor = _listen(rt.kept_monitor, sockets)
        # the kept monitor's lock file, made with it (never removed: a connection may hold it across restarts),
        # so that the first connection to keep the monitor adds no file to the runtime directory
        os.close(os.open(rt.kept_lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        agent = None
        if dom.agent_socket is not None:
            agent = _listen(dom.agent_socket or str(rt.agent), sockets, user_path=bool(dom.agent_socket))
            if dom.agent_socket:
                _record_socket(rt, dom.agent_socket)
        serial = None
        if dom.serial is not None and dom.serial[0] == "file":
            assert dom.serial[1] is not None
            serial = open_serial(dom.serial[1], dom.serial[2], user)
            opened.append(serial)
        log = os.open(rt.log, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        opened.append(log)
        spice, secret, port, spice_socket = dom.hw.extra.spice, None, None, None
        if spice is not None:
            from . import devices

            if spice.password is not None:
                secret = devices.secret_fd(spice.password)
                opened.append(secret)
            if spice.socket:
                if user is not None:  # QEMU binds it itself: in a directory its user cannot write
                    raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                                "a SPICE unix socket is not supported when QEMU runs as another user")
                spice_socket = str(rt.spice)
                unlink_quiet(rt.spice)  # virtsnap's own file, in its own directory
            elif spice.port is None:
                assert spice.listen is not None
                port = devices.free_port(spice.listen)
        nvram = None
        if dom.firmware is not None and dom.firmware.nvram is not None:
            nvram = open_nvram(dom.firmware.nvram)
            opened.append(nvram)
        fds = argv.Descriptors(monitor, agent, serial, tpm_fd, secret, port, spice_socket, nvram, taps, kept_monitor)
        args = argv.build(dom, fds, binary, incoming=incoming, sandbox=True)
        keep = [fd for fd in (monitor, kept_monitor, agent, serial, tpm_fd, secret, nvram, *taps) if fd is not None]
        ids = {} if user is None else {"user": user.uid, "group": user.gid, "extra_groups": list(user.groups)}
        proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=keep, cwd="/", start_new_session=True,
            umask=0o077, **ids)
    finally:
        for sock in sockets:
            sock.close()  # QEMU holds its copies
        for fd in opened:
            os.close(fd)
    _children[proc.pid] = proc
    started = None
    while started is None and proc.poll() is None:
        started = start_time(proc.pid)
    if started is not None:
        fd = os.open(rt.pidfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{proc.pid} {started}\n")
    try:
        _wait_ready(dom, rt, proc, paused or incoming, timeout, incoming)
    except BaseException:
        kill(rt)
        proc.kill()
        proc.wait()
        raise
    return proc.pid


def _start_swtpm(rt: Runtime, state: str | None, user: Identity | None) -> int:
    """The domain's swtpm, started and recorded (pid and start time); QEMU's end of its control channel."""
    from . import tpm

    if state is None:
        raise error(ErrorCode.INTERNAL_ERROR, ERR, "the TPM state directory was not prepared")
    log = os.open(rt.swtpm_log, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if user is not None:
            os.fchown(log, user.uid, user.gid)
        fd, proc = tpm.start(state, log, user)
    finally:
        os.close(log)
    _children[proc.pid] = proc
    started = start_time(proc.pid)
    if started is not None:
        pidfd = os.open(rt.swtpm_pidfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(pidfd, "w") as f:
            f.write(f"{proc.pid} {started}\n")
    return fd


def open_taps(dom: QemuDomain, opened: list[int]) -> tuple[int, ...]:
    """A tap on its bridge for each bridge or network NIC, in order; each descriptor goes into `opened` (closed
    by the caller once QEMU holds its copy: the taps then live exactly as long as QEMU)."""
    from . import netdev

    taps = []
    for (kind, source), mac in zip(dom.nets, dom.user_net, strict=True):
        if kind == "user":
            continue
        assert source is not None
        bridge = netdev.network_bridge(source) if kind == "network" else source
        fd, _name = netdev.open_tap(bridge, mac)
        opened.append(fd)
        taps.append(fd)
    return tuple(taps)


def _listen(path: str, sockets: list[socket.socket], user_path: bool = False) -> int:
    """A listening unix socket bound at `path`, created here (never an existing file: QEMU would unlink one)."""
    import socket

    if user_path and os.path.lexists(path):
        # whatever is there is not virtsnap's: a socket it bound in an earlier run was recorded and removed
        # by remove_sockets before this start; even a dead socket may be someone else's rendezvous point
        raise error(ErrorCode.OPERATION_INVALID, ERR,
                    f"guest agent socket path {path} already exists and virtsnap did not create it; nothing was "
                    "removed (remove it or choose another path)")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sockets.append(sock)
    try:
        sock.bind(path)
    except OSError as exc:
        raise error(ErrorCode.OPERATION_FAILED, ERR, f"cannot create socket {path!r}: {exc.strerror or exc}") from exc
    sock.listen(16)
    return sock.fileno()


def _record_socket(rt: Runtime, path: str) -> None:
    import json

    st = os.lstat(path)
    fd = os.open(rt.sockets, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump([[path, st.st_dev, st.st_ino]], f)


def remove_sockets(rt: Runtime) -> None:
    """Unlink the sockets virtsnap bound outside the runtime directory, each only while it is still the very
    socket bound (same device and inode): never a file someone put there since."""
    import json
    import stat

    try:
        entries = json.loads(read_text(rt.sockets))
    except (OSError, ValueError):
        entries = []
    for path, dev, ino in entries:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == (dev, ino):
            os.unlink(path)
    unlink_quiet(rt.sockets)


def open_serial(path: str, append: bool, user: Identity | None) -> int:
    """The serial console's output file, opened here: created if missing (owned by QEMU's user); an existing
    one must be a regular file that QEMU's user could write itself (truncated unless append='on', as libvirt)."""
    import stat

    flags = os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY  # a FIFO must not block us
    try:
        try:
            fd, created = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600), True
        except FileExistsError:
            fd, created = os.open(path, flags), False
    except OSError as exc:
        raise error(ErrorCode.OPERATION_FAILED, ERR, f"cannot open serial file {path}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, f"serial file {path} is not a regular file")
        if user is not None and created:
            os.fchown(fd, user.uid, user.gid)  # the guest's output, written by QEMU: its user's file from now on
        elif user is not None and not user.can(st, 2):
            raise error(ErrorCode.OPERATION_DENIED, ERR,
                        f"serial file {path} is not writable by QEMU's user {user.name}; it was left untouched")
        if not append:
            os.ftruncate(fd, 0)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _wait_ready(dom: QemuDomain, rt: Runtime, proc: subprocess.Popen[bytes], paused: bool, timeout: float,
                incoming: bool = False) -> None:
    """Until QEMU's monitor answers (or QEMU exits: its log is the error), then what only the monitor may
    carry (the VNC password, the balloon's target), then `cont` unless the domain starts paused. An incoming
    domain's balloon comes with its saved device state."""
    from .monitor import Monitor

    mon = None
    try:
        mon = Monitor(str(rt.monitor), dom.defn.uuid[:8], connect_timeout=timeout)
        mon.exchange([])  # qmp_capabilities answered: QEMU may greet and then exit (a CPU model it refuses)
    except Exception as exc:
        if mon is not None:
            mon.close()
        proc.poll()
        try:
            proc.wait(5)
        except Exception:
            pass
        try:
            with open(rt.log, "rb") as f:
                message = f.read()[-2000:].decode(errors="replace").strip()
        except FileNotFoundError:
            message = ""
        raise error(ErrorCode.OPERATION_FAILED, ERR,
                    f"QEMU failed to start: {message or exc}") from exc
    try:
        if dom.vnc is not None and dom.vnc.password is not None:
            mon.execute("set_password", {"protocol": "vnc", "password": dom.vnc.password})
        if dom.hw.extra.cpuset is not None:  # before the vCPUs first run (QEMU starts with -S)
            from .devices import pin

            pin(proc.pid, dom.hw.extra.cpuset)
        if dom.balloon_bytes is not None and not incoming:
            mon.execute("balloon", {"value": int(dom.balloon_bytes)})
        if not paused:
            mon.execute("cont")
    finally:
        mon.close()


def kill(rt: Runtime, timeout: float = 10.0) -> None:
    """Stop QEMU: SIGTERM, then SIGKILL; wait until the process is gone (its image locks with it)."""
    import signal

    pid = rt.pid()
    if pid is None:
        stop_swtpm(rt)
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        if wait_gone(pid, wait):
            break
    stop_swtpm(rt)
    unlink_quiet(rt.pidfile)
    unlink_quiet(rt.block_memo)
    unlink_quiet(rt.monitor)
    unlink_quiet(rt.kept_monitor)
    unlink_quiet(rt.agent)
    unlink_quiet(rt.spice)
    remove_sockets(rt)


def stop_swtpm(rt: Runtime, timeout: float = 10.0) -> None:
    """Once QEMU is gone: wait for the domain's swtpm to end (its control channel closed with QEMU, so it saves
    and exits by itself), and stop it only if it does not."""
    import signal

    pid = rt.swtpm_pid()
    if pid is not None:
        for sig, wait in ((None, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if sig is not None:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
            if wait_gone(pid, wait):
                break
    unlink_quiet(rt.swtpm_pidfile)


def wait_gone(pid: int, timeout: float) -> bool:
    """Whether the process ended within `timeout` seconds: every thread of it, so that its files are closed (its
    pidfd, Runtime.pid's test, becomes readable then; a thread-group leader is a zombie earlier). A child of this
    process is reaped."""
    deadline = time.monotonic() + timeout
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        _children.pop(pid, None)
        return True
    except (OSError, AttributeError):
        return _poll_gone(pid, deadline)
    try:
        if not _pidfd_ended(pidfd, max(0, int((deadline - time.monotonic()) * 1000))):
            return False
    finally:
        os.close(pidfd)
    child = _children.pop(pid, None)
    if child is not None:
        child.wait()  # ended: the wait returns at once
    return True


def _poll_gone(pid: int, deadline: float) -> bool:
    """wait_gone on a kernel without pidfds: the process's state read until it is a zombie or gone."""
    delay = 0.002
    while time.monotonic() < deadline:
        child = _children.get(pid)
        if child is not None and child.poll() is not None:
            del _children[pid]
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a QEMU another process started is not our child: poll for its exit (no waitpid), backing off to 50 ms
        try:
            if ended(proc_stat(pid)):
                return True
        except (OSError, IndexError, ValueError):
            return True
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return False
