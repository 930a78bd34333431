"""Named failpoints inside multi-step operations, for crash and interrupt tests.

Inert unless VIRTSNAP_FAILPOINTS is set (read once per process), e.g.
VIRTSNAP_FAILPOINTS="create.save-started=sigint,revert.loaded=sigkill".
"""

from __future__ import annotations

import functools
import os
import signal

_ACTIONS = {"sigint": signal.SIGINT, "sigkill": signal.SIGKILL, "sigterm": signal.SIGTERM}


@functools.cache
def _table() -> dict[str, signal.Signals]:
    table: dict[str, signal.Signals] = {}
    for item in os.environ.get("VIRTSNAP_FAILPOINTS", "").split(","):
        name, _, action = item.strip().partition("=")
        if name and action in _ACTIONS:
            table[name] = _ACTIONS[action]
    return table


def hit(name: str) -> None:
    """At failpoint `name`: do what the environment asks (send this process a signal), else nothing."""
    sig = _table().get(name)
    if sig is not None:
        os.kill(os.getpid(), sig)
