"""Guest memory to and from a file through QEMU's migration: waiting for the transfer, and the guest's pause
as QEMU's own events time it. Shared by external snapshot create and revert.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from ...errors import ErrorCode, ErrorDomain, error, libvirtError
from ...progress import report

if TYPE_CHECKING:
    from .monitor import Monitor

ERR = ErrorDomain.QEMU


def pause_ms(events: list[dict[str, Any]]) -> float | None:
    """Time from the first STOP to the last RESUME, by QEMU's own event timestamps."""
    def stamp(ev: dict[str, Any]) -> float:
        ts = ev.get("timestamp", {})
        return float(ts.get("seconds", 0)) + float(ts.get("microseconds", 0)) / 1e6
    stops = [stamp(e) for e in events if e.get("event") == "STOP"]
    resumes = [stamp(e) for e in events if e.get("event") == "RESUME"]
    if not stops or not resumes:
        return None
    return (max(resumes) - min(stops)) * 1000



def wait_migration(mon: Monitor, timeout: float = 600.0) -> None:
    """Until query-migrate says completed (or failed, raised); MIGRATION events wake the wait."""
    deadline = time.monotonic() + timeout
    while True:
        info = mon.execute("query-migrate")
        status = info.get("status", "none")
        if status == "completed":
            wait_finalized(mon, deadline)
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


def wait_restarted(mon: Monitor, timeout: float) -> None:
    """After a held stream's release, until QEMU's snapshot thread has captured the guest and restarted it
    (RESUME), or the transfer ended: nothing of ours (a journal write, a query-migrate, which QEMU's monitor
    thread reads a byte per turn of its loop) takes a CPU from that thread while the guest is paused. A
    timeout is no error: wait_migration follows."""
    def restarted(event: dict[str, Any]) -> bool:
        return event.get("event") == "RESUME" or (
            event.get("event") == "MIGRATION" and (event.get("data") or {}).get("status") in (
                "completed", "failed", "cancelled"))
    with contextlib.suppress(libvirtError):
        mon.wait_event(restarted, timeout)


def wait_finalized(mon: Monitor, deadline: float) -> None:
    """query-migrate says "completed" a moment before QEMU leaves the finish-migrate run state, and `cont`
    is refused until it has. No event marks that step, so poll it, backing off (it takes milliseconds)."""
    delay = 0.001
    while mon.execute("query-status").get("status") == "finish-migrate":
        if time.monotonic() > deadline:
            raise error(ErrorCode.OPERATION_TIMEOUT, ERR, "QEMU did not finalize the memory transfer")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


# QEMU releases whose background-snapshot thread pre-faults guest RAM and writes the stream's header without
# holding the big QEMU lock: 8.2 takes it around the header ("migration: hold the BQL during setup"), where a
# held write would stall the monitor; 6.0 brought background-snapshot.
HOLDABLE_QEMU = ((6, 0), (8, 2))


# The relay: a process of its own (started detached, like QEMU), so that the stream never loses its reader when
# virtsnap dies. QEMU 7.2's snapshot thread does not survive a failed write: it write-protects RAM and restarts the
# guest anyway, and the first device write into protected RAM then deadlocks QEMU. argv: control socket, pipe
# read end, memory file, filler length. It says "+" when ready; "r" (or the control socket's end: virtsnap died)
# lets it copy; it then reads the stream to its end (discarding the filler unless virtsnap took it), holding an
# exclusive lock on the memory file, which it empties if it cannot write it; last it says "." or "!" and why.
RELAY = r"""
import fcntl, os, socket, sys
ctl = socket.socket(fileno=int(sys.argv[1]))
src, dst, filler = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fcntl.flock(dst, fcntl.LOCK_EX)
ctl.sendall(b"+")
if ctl.recv(1) != b"r":
    while filler:
        filler -= len(os.read(src, filler))
try:
    fcntl.fcntl(src, fcntl.F_SETPIPE_SZ, 1 << 20)
except OSError:
    pass
failure = b""
while True:
    try:
        if not os.splice(src, dst, 1 << 20):
            break
    except OSError as exc:
        if not failure:
            failure, _ = str(exc).encode(), os.ftruncate(dst, 0)
        if not os.read(src, 1 << 20):
            break
try:
    ctl.sendall(b"!" + failure if failure else b".")
except OSError:
    pass
"""


def holdable(mon: Monitor) -> bool:
    """Whether this QEMU's snapshot thread can be held at its first write (HOLDABLE_QEMU), and a relay can be
    started (an interpreter to run it: not so where virtsnap is embedded without one)."""
    import sys

    if not sys.executable:
        return False
    version = mon.execute("query-version").get("qemu", {})
    low, high = HOLDABLE_QEMU
    return low <= (int(version.get("major", 0)), int(version.get("minor", 0))) < high


class HeldStream:
    """A LIVE snapshot's memory stream through a pipe held full until virtsnap has stopped the guest and switched
    the disks: the one instant of both stays virtsnap's STOP, and QEMU's pre-fault of guest RAM leaves the pause.

    QEMU's background-snapshot thread (7.2's bg_migration_thread) first reads every 4 KiB page of guest RAM (so
    that userfaultfd can write-protect it: 3-12 ms per 512 MiB here), then writes the stream's header, and only
    then stops the guest, saves the devices and write-protects RAM. With the pipe full, that write waits: the
    pre-fault runs while the guest still runs, and the capture cannot happen before release(). A relay process
    (RELAY) holds the read end too and copies the stream into the memory file; it outlives virtsnap, so QEMU's
    stream never breaks. The caller records in its journal that it released the stream (after a check that
    the thread had captured nothing before the disks switched): without that record a snapshot is never kept."""

    def __init__(self, out_fd: int) -> None:
        import socket
        import subprocess
        import sys

        self.read_end, self.write_end = os.pipe2(os.O_CLOEXEC)
        self._ctl: socket.socket | None = None
        self._released = False
        self._filler = 0
        try:
            with contextlib.suppress(OSError):  # one page: the least to fill (64 KiB by default is as good)
                fcntl.fcntl(self.write_end, fcntl.F_SETPIPE_SZ, 4096)
            os.set_blocking(self.write_end, False)
            with contextlib.suppress(BlockingIOError):
                while True:
                    self._filler += os.write(self.write_end, bytes(4096))
            os.set_blocking(self.write_end, True)
            ours, theirs = socket.socketpair()
            self._ctl = ours
            with theirs:
                self._relay = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", RELAY, str(theirs.fileno()), str(self.read_end), str(out_fd),
                     str(self._filler)], pass_fds=(theirs.fileno(), self.read_end, out_fd),
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True)
            ours.settimeout(10.0)
            if ours.recv(1) != b"+":
                raise error(ErrorCode.OPERATION_FAILED, ERR, "the memory stream's relay did not start")
        except BaseException:
            self.close()
            raise

    def wait_held(self, pid: int, timeout: float) -> bool:
        """Until a thread of QEMU `pid` sleeps writing to a pipe (the snapshot thread, its pre-fault done) or
        `timeout` passed; False at once when QEMU's threads cannot be seen (/proc/PID/task/*/wchan reads 0 for
        another user's process). Only the pause's length depends on it: the capture waits for release() anyway."""
        tasks = f"/proc/{pid}/task"
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            visible = False
            try:
                tids = os.listdir(tasks)
            except OSError:
                return False
            for tid in tids:
                try:
                    fd = os.open(f"{tasks}/{tid}/wchan", os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        chan = os.read(fd, 128)
                    finally:
                        os.close(fd)
                except OSError:
                    continue
                if b"pipe_write" in chan:  # pipe_write; anon_pipe_write in Linux 6.16 and later
                    return True
                visible = visible or chan not in (b"", b"0")
            if not visible or time.monotonic() > deadline:
                return False
            time.sleep(delay)  # every ms at most: the guest runs on while the page tables cool
            delay = min(delay * 2, 0.001)

    def release(self) -> None:
        """Let QEMU's write through (the guest must be stopped and the disks switched by now: the filler is
        taken here, at once) and have the relay copy the stream from then on."""
        left = self._filler
        while left:
            left -= len(os.read(self.read_end, left))
        self._released = True
        assert self._ctl is not None
        self._ctl.sendall(b"r")
        os.close(self.read_end)
        self.read_end = -1

    def finish(self, timeout: float = 120.0) -> None:
        """After QEMU completed the transfer: until the relay has copied the stream's end; raises when the
        memory file could not be written."""
        assert self._ctl is not None
        self._ctl.settimeout(timeout)
        status = b""
        try:
            while chunk := self._ctl.recv(4096):
                status += chunk
        except TimeoutError as exc:
            raise error(ErrorCode.OPERATION_TIMEOUT, ERR, "the memory stream did not end") from exc
        if status != b".":
            raise error(ErrorCode.SYSTEM_ERROR, ERR,
                        f"cannot write the memory file: {status[1:].decode(errors='replace') or 'relay failed'}")

    def close(self) -> None:
        """Our ends closed. The relay copies whatever QEMU still sends, to the stream's end (a held stream is let
        go: QEMU ends its transfer normally, and the caller discards the file)."""
        for fd in (self.read_end, self.write_end):
            if fd >= 0:
                os.close(fd)
        self.read_end = self.write_end = -1
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None
        relay = getattr(self, "_relay", None)
        if relay is not None and relay.poll() is None:
            # reaped when it ends by a thread, so that no zombie stays behind this process
            threading.Thread(target=relay.wait, name="virtsnap-relay-reaper", daemon=True).start()


def wait_relay(memory_file: str, timeout: float) -> bool:
    """Until no relay writes `memory_file` (its lock is free); whether the file holds a whole stream (a relay
    that could not write it empties it)."""
    try:
        fd = os.open(memory_file, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
        return os.fstat(fd).st_size > 0
    finally:
        os.close(fd)
