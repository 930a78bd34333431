"""Locks for the code a cold command runs, without the `threading` module (issue 21).

Importing `threading` costs a read-only CLI command about 4 M instructions (with `_weakrefset`; a tenth of what it
runs over the bare interpreter), and the interpreter's shutdown does more work when it was imported. So:

- `allocate_lock()` is `_thread`'s lock, the very object `threading.Lock()` returns.
- `RLock` is a re-entrant lock made of one, for the locks every read takes (a connection's).
- `Later` makes what `_thread` has no equivalent of (thread-local storage, `threading.RLock`, events, threads) at
  its first real use, once, even when threads race to it; until then the module `threading` is not imported.
"""

from __future__ import annotations

import _thread

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

allocate_lock = _thread.allocate_lock
get_ident = _thread.get_ident


class RLock:
    """threading.RLock's behaviour where virtsnap uses it: a thread that holds the lock may take it again, and
    releases it as often as it took it; only the holder may release it (RuntimeError otherwise)."""

    __slots__ = ("_count", "_lock", "_owner")

    def __init__(self) -> None:
        self._lock = allocate_lock()
        self._owner: int | None = None
        self._count = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = get_ident()
        if self._owner == me:
            self._count += 1
            return True
        if not self._lock.acquire(blocking, timeout):
            return False
        self._owner = me
        self._count = 1
        return True

    def release(self) -> None:
        if self._owner != get_ident():
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if self._count == 0:
            self._owner = None
            self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<virtsnap RLock owner={self._owner} count={self._count}>"


class Later:
    """A value made by `make()` at its first `get()`, exactly once: threads that race to it get the same one.
    `made` is None until then, so a reader that has nothing to read makes nothing."""

    __slots__ = ("_lock", "_make", "made")

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        # re-entrant: a finalizer run by the collector while `make()` allocates may come back here on this thread
        self._lock = RLock()
        self.made: Any = None

    def get(self) -> Any:
        made = self.made
        if made is None:
            with self._lock:
                if self.made is None:
                    value = self._make()
                    if self.made is None:  # not made meanwhile by a finalizer on this thread
                        self.made = value
                made = self.made
        return made
