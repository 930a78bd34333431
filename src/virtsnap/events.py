"""libvirt's default event loop (virEventRegisterDefaultImpl / virEventRunDefaultImpl, handles, timers) and
the domain event registry behind virConnect.domainEventRegisterAny.

Events raised by one connection reach every connection of the process open on the same hypervisor; their
callbacks run inside virEventRunDefaultImpl, on the thread that runs the loop, as with libvirt.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import time
from collections import deque
from collections.abc import Callable

from .errors import ErrorCode, ErrorDomain, error
from .locks import Later, allocate_lock

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any

# virEventHandleType
READABLE, WRITABLE, ERROR, HANGUP = 1, 2, 4, 8


class _Loop:
    """One process-wide loop: file handles, timers and queued callbacks, woken through a pipe."""

    def __init__(self) -> None:
        self.lock = allocate_lock()
        self.ids = itertools.count(1)
        self.handles: dict[int, list[Any]] = {}  # watch -> [fd, events, cb, opaque]
        self.timers: dict[int, list[Any]] = {}  # timer -> [interval ms, cb, opaque, due]
        self.pending: deque[Callable[[], None]] = deque()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def wake(self) -> None:
        try:
            os.write(self.wake_w, b"x")
        except BlockingIOError:  # the pipe is full: the loop is already due to wake
            pass

    def queue(self, fn: Callable[[], None]) -> None:
        with self.lock:
            self.pending.append(fn)
        self.wake()

    def run_once(self) -> None:
        import selectors  # only event-driven programs pay for it

        with self.lock:
            now = time.monotonic()
            dues = [t[3] for t in self.timers.values() if t[0] >= 0]
            timeout = None if not dues else max(0.0, min(dues) - now)
            if self.pending:
                timeout = 0.0
            handles = {w: list(h) for w, h in self.handles.items()}
        sel = selectors.DefaultSelector()
        try:
            sel.register(self.wake_r, selectors.EVENT_READ)
            for watch, (fd, events, _cb, _opaque) in handles.items():
                mask = ((selectors.EVENT_READ if events & READABLE else 0)
                        | (selectors.EVENT_WRITE if events & WRITABLE else 0))
                if mask:
                    try:
                        sel.register(fd, mask, watch)
                    except (KeyError, ValueError, OSError):
                        continue
            ready = sel.select(timeout)
        finally:
            sel.close()
        calls: list[Callable[[], None]] = []
        for key, mask in ready:
            if key.fd == self.wake_r:
                try:
                    while os.read(self.wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            watch = key.data
            fd, _events, cb, opaque = handles[watch]
            got = (READABLE if mask & selectors.EVENT_READ else 0) | (WRITABLE if mask & selectors.EVENT_WRITE else 0)
            calls.append(functools.partial(cb, watch, fd, got, opaque))
        with self.lock:
            now = time.monotonic()
            for timer, entry in self.timers.items():
                if entry[0] >= 0 and entry[3] <= now:
                    entry[3] = now + entry[0] / 1000
                    calls.append(functools.partial(entry[1], timer, entry[2]))
            while self.pending:
                calls.append(self.pending.popleft())
        for call in calls:
            call()


_loop: _Loop | None = None
_loop_lock = allocate_lock()


def _require_loop() -> _Loop:
    if _loop is None:
        raise error(ErrorCode.INTERNAL_ERROR, ErrorDomain.NONE, "no event loop implementation registered")
    return _loop


def virEventRegisterDefaultImpl() -> int:  # noqa: N802 - libvirt-python's name
    """Register the default event loop (once per process; later calls keep it)."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = _Loop()
    return 0


def virEventRunDefaultImpl() -> int:  # noqa: N802
    """Run one iteration: wait for a handle, a timer or a queued event, then run their callbacks."""
    _require_loop().run_once()
    return 0


def virEventAddHandle(fd: int, events: int, cb: Any, opaque: Any) -> int:  # noqa: N802
    loop = _require_loop()
    with loop.lock:
        watch = next(loop.ids)
        loop.handles[watch] = [fd, events, cb, opaque]
    loop.wake()
    return watch


def virEventUpdateHandle(watch: int, events: int) -> None:  # noqa: N802
    loop = _require_loop()
    with loop.lock:
        if watch in loop.handles:
            loop.handles[watch][1] = events
    loop.wake()


def virEventRemoveHandle(watch: int) -> int:  # noqa: N802
    loop = _require_loop()
    with loop.lock:
        found = loop.handles.pop(watch, None)
    loop.wake()
    if found is None:
        raise error(ErrorCode.INTERNAL_ERROR, ErrorDomain.EVENT, f"no event handle with watch {watch}")
    return 0


def virEventAddTimeout(timeout: int, cb: Any, opaque: Any) -> int:  # noqa: N802
    loop = _require_loop()
    with loop.lock:
        timer = next(loop.ids)
        loop.timers[timer] = [timeout, cb, opaque, time.monotonic() + max(timeout, 0) / 1000]
    loop.wake()
    return timer


def virEventUpdateTimeout(timer: int, timeout: int) -> None:  # noqa: N802
    loop = _require_loop()
    with loop.lock:
        if timer in loop.timers:
            loop.timers[timer][0] = timeout
            loop.timers[timer][3] = time.monotonic() + max(timeout, 0) / 1000
    loop.wake()


def virEventRemoveTimeout(timer: int) -> int:  # noqa: N802
    loop = _require_loop()
    with loop.lock:
        found = loop.timers.pop(timer, None)
    loop.wake()
    if found is None:
        raise error(ErrorCode.INTERNAL_ERROR, ErrorDomain.EVENT, f"no event timer with id {timer}")
    return 0


# -- domain events --------------------------------------------------------------------------------------
class Registration:
    __slots__ = ("callback_id", "cb", "conn", "event_id", "opaque", "scope", "uuid")

    def __init__(self, callback_id: int, conn: Any, scope: str, uuid: str | None, event_id: int, cb: Any,
                 opaque: Any) -> None:
        self.callback_id, self.conn, self.scope, self.uuid = callback_id, conn, scope, uuid
        self.event_id, self.cb, self.opaque = event_id, cb, opaque


_registrations: dict[int, Registration] = {}
_callback_ids = itertools.count(1)


def _new_registry_lock() -> Any:
    import threading  # at the first registration: a program that registers nothing does without it (issue 21)

    return threading.RLock()


# Re-entrant: a connection's last reference can go in a finalizer (virDomain.__del__ -> deregister_all), which
# the garbage collector runs at any allocation, on a thread that may already hold this lock (the full suite hung
# there: listening() -> gc -> __del__ -> deregister_all). Every walk of the registry goes over a copy made without
# allocating per item (_copy), so a nested change cannot break it. Made by the first register(): until then the
# registry is empty, and a reader that finds no lock has nothing to read (_held).
_reg_lock = Later(_new_registry_lock)
_NOTHING_TO_HOLD = contextlib.nullcontext()


def _held() -> Any:
    """The registry's lock for a reader: none to take before the first register() made it (nothing registered)."""
    return _reg_lock.made or _NOTHING_TO_HOLD


def _copy() -> list[Registration]:
    return list(_registrations.values())


def register(conn: Any, scope: str, uuid: str | None, event_id: int, cb: Any, opaque: Any) -> int:
    """Remember a callback; returns libvirt's callback ID."""
    with _reg_lock.get():
        callback_id = next(_callback_ids)
        _registrations[callback_id] = Registration(callback_id, conn, scope, uuid, event_id, cb, opaque)
    return callback_id


def deregister(conn: Any, callback_id: int) -> bool:
    with _held():
        reg = _registrations.get(callback_id)
        if reg is None or reg.conn is not conn:
            return False
        del _registrations[callback_id]
    return True


def ids_for(conn: Any, event_id: int, cb: Any) -> list[int]:
    with _held():
        return [r.callback_id for r in _copy() if r.conn is conn and r.event_id == event_id and r.cb == cb]


def deregister_all(conn: Any) -> None:
    with _held():
        for r in _copy():
            if r.conn is conn:
                _registrations.pop(r.callback_id, None)


def listening(scope: str) -> bool:
    """Whether any callback of the process watches this hypervisor (so events are worth working out)."""
    with _held():
        return any(r.scope == scope for r in _copy())


def emit(scope: str, uuid: str, event_id: int, make_args: Callable[[Any], tuple[Any, ...]]) -> None:
    """Queue the event for every matching callback; make_args(conn) gives the arguments after conn."""
    with _held():
        targets = [r for r in _copy()
                   if r.scope == scope and r.event_id == event_id and r.uuid in (None, uuid)]
    if not targets or _loop is None:
        return
    for reg in targets:
        args = make_args(reg.conn)
        _loop.queue(functools.partial(_deliver, reg, args))


def _deliver(reg: Registration, args: tuple[Any, ...]) -> None:
    with _held():
        if reg.callback_id not in _registrations:
            return  # deregistered after the event was queued
    reg.cb(reg.conn, *args, reg.opaque)
