"""Named failpoints inside multi-step operations, for crash and interrupt tests.

Inert unless VIRTSNAP_FAILPOINTS is set (read once per process), e.g.
VIRTSNAP_FAILPOINTS="create.save-started=sigint,revert.loaded=sigkill". The action `kill-parent` kills the
process that started this one instead (under `virtsnap rpc`, the ssh session: the connection drops mid-call);
`pause` reports the failpoint as progress and waits for a signal (a test's Ctrl-C lands at a known point).
"""

from __future__ import annotations

import functools
import os

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    import signal


@functools.cache
def _table() -> dict[str, tuple[signal.Signals | None, bool]]:
    table: dict[str, tuple[signal.Signals | None, bool]] = {}
    spec = os.environ.get("VIRTSNAP_FAILPOINTS", "")
    if not spec:
        return table
    import signal

    # action -> (signal, sent to the parent instead of this process); no signal: pause
    actions: dict[str, tuple[signal.Signals | None, bool]] = {
        "sigint": (signal.SIGINT, False), "sigkill": (signal.SIGKILL, False), "sigterm": (signal.SIGTERM, False),
        "kill-parent": (signal.SIGKILL, True), "pause": (None, False)}
    for item in spec.split(","):
        name, _, action = item.strip().partition("=")
        if name and action in actions:
            table[name] = actions[action]
    return table


def hit(name: str) -> None:
    """At failpoint `name`: do what the environment asks (send a signal, or pause), else nothing."""
    action = _table().get(name)
    if action is not None:
        sig, parent = action
        if sig is None:
            _pause(name)
            return
        os.kill(os.getppid() if parent else os.getpid(), sig)


class _ReleasedError(Exception):
    pass


def _pause(name: str) -> None:
    """Report the failpoint (the test's cue, shown remotely too), wait for SIGINT, then hand the signal to the
    handler that was there (so an interrupt is deferred or raised as it would be without the pause)."""
    import signal
    import threading

    from .progress import report

    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread can wait for a signal

    def release(signum: int, frame: object) -> None:
        raise _ReleasedError

    previous = signal.signal(signal.SIGINT, release)  # before the cue: a signal right after it is not lost
    try:
        report(f"failpoint {name}: paused until interrupted", 0, 0)
        while True:
            signal.pause()
    except _ReleasedError:
        pass
    finally:
        signal.signal(signal.SIGINT, previous)
    os.kill(os.getpid(), signal.SIGINT)
