"""Progress of long operations (memory save and load), reported to whoever asked for it.

A library logs and prints nothing: callers that want a progress display install a callback for the
duration of a call with `reporting(fn)`; drivers call `report(...)` from their job loops.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Self

ProgressFn = Callable[[str, int, int], None]  # (what, done, total)
_current: contextvars.ContextVar[ProgressFn | None] = contextvars.ContextVar("virtsnap_progress", default=None)


@contextlib.contextmanager
def reporting(fn: ProgressFn) -> Iterator[None]:
    token = _current.set(fn)
    try:
        yield
    finally:
        _current.reset(token)


def listening() -> bool:
    """Whether a caller installed a callback (so that a remote call asks its server for progress)."""
    return _current.get() is not None


def report(what: str, done: int, total: int) -> None:
    fn = _current.get()
    if fn is not None:
        fn(what, done, total)


class DeferredInterrupt:
    """Hold SIGINT back while a step that cannot stop half way runs; `interrupted` tells if one came.

    Only the main thread can own signal handlers; elsewhere this does nothing.
    """

    def __init__(self) -> None:
        self.interrupted = False
        self._previous: object = None
        self._active = False

    def __enter__(self) -> Self:
        import threading  # only operations that change images defer interrupts (a cold read does without it)

        if threading.current_thread() is threading.main_thread():
            import signal

            self._previous = signal.signal(signal.SIGINT, self._note)
            self._active = True
        return self

    def _note(self, signum: int, frame: object) -> None:
        self.interrupted = True
        report("interrupt noted: finishing the current step first", 0, 0)

    def __exit__(self, *exc: object) -> None:
        if self._active:
            import signal

            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
