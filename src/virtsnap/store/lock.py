"""The per-domain operation lock: an flock on a file per domain, shared by processes and threads.

The kernel releases it when the holder dies, so there is never a stale lock to clean by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from types import TracebackType

from ..errors import ErrorCode, ErrorDomain, error
from .db import private_dir, system_error

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Self

DEFAULT_TIMEOUT = 30.0
_MADE: set[str] = set()  # lock directories this process has made or checked


class DomainLock:
    """`with DomainLock(dir, uuid):` holds the domain's operation lock; waits up to `timeout` seconds.

    Each acquisition opens its own file description, so two threads of one process exclude each other too.
    """

    def __init__(self, directory: str | os.PathLike[str], uuid: str, timeout: float = DEFAULT_TIMEOUT,
                 what: str = "") -> None:
        locks = os.path.join(directory, "locks")
        if locks not in _MADE:  # made (or tightened) once per process: every operation takes a lock
            private_dir(locks)
            _MADE.add(locks)
        self._locks = locks
        self.path = os.path.join(locks, f"{uuid}.lock")
        self.uuid = uuid
        self.timeout = timeout
        self.what = what or uuid
        self._fd: int | None = None

    def _open(self) -> int:
        try:
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:  # the directory went since this process made it: make it again
                private_dir(self._locks)
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise system_error(f"cannot open lock file '{self.path}'", exc) from exc

    def acquire(self) -> None:
        fd = self._open()
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if self._still_linked(fd):
                    break
                # The holder undefined the domain and removed the file: lock the file at the path now.
                os.close(fd)
                fd = self._open()
                continue
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise error(ErrorCode.RESOURCE_BUSY, ErrorDomain.NONE,
                                f"domain {self.what} is busy: another operation holds its lock "
                                f"(waited {self.timeout:g} s)") from None
                # Back off up to 50 ms: flock has no timed wait, and a holder's operation takes milliseconds.
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        self._fd = fd

    def _still_linked(self, fd: int) -> bool:
        try:
            at_path = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (held.st_dev, held.st_ino) == (at_path.st_dev, at_path.st_ino)

    def discard(self) -> None:
        """Remove the lock file, while holding it (the domain is going away); waiters then lock afresh."""
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
