"""Named failpoints inside multi-step operations, for crash and interrupt tests.

Inert unless VIRTSNAP_FAILPOINTS is set (read once per process), e.g.
VIRTSNAP_FAILPOINTS="create.save-started=sigint,revert.loaded=sigkill". The action `kill-parent` kills the
process that started this one instead (under `virtsnap rpc`, the ssh session: the connection drops mid-call).
"""

from __future__ import annotations

import functools
import os

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    import signal


@functools.cache
def _table() -> dict[str, tuple[signal.Signals, bool]]:
    table: dict[str, tuple[signal.Signals, bool]] = {}
    spec = os.environ.get("VIRTSNAP_FAILPOINTS", "")
    if not spec:
        return table
    import signal

    # action -> (signal, sent to the parent instead of this process)
    actions = {"sigint": (signal.SIGINT, False), "sigkill": (signal.SIGKILL, False),
               "sigterm": (signal.SIGTERM, False), "kill-parent": (signal.SIGKILL, True)}
    for item in spec.split(","):
        name, _, action = item.strip().partition("=")
        if name and action in actions:
            table[name] = actions[action]
    return table


def hit(name: str) -> None:
    """At failpoint `name`: do what the environment asks (send this process a signal), else nothing."""
    action = _table().get(name)
    if action is not None:
        sig, parent = action
        os.kill(os.getppid() if parent else os.getpid(), sig)
