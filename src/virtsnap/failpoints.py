"""Named failpoints inside multi-step operations, for crash and interrupt tests.

Inert unless VIRTSNAP_FAILPOINTS is set (read once per process), e.g.
VIRTSNAP_FAILPOINTS="create.save-started=sigint,revert.loaded=sigkill".
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import signal


@functools.cache
def _table() -> dict[str, signal.Signals]:
    table: dict[str, signal.Signals] = {}
    spec = os.environ.get("VIRTSNAP_FAILPOINTS", "")
    if not spec:
        return table
    import signal

    actions = {"sigint": signal.SIGINT, "sigkill": signal.SIGKILL, "sigterm": signal.SIGTERM}
    for item in spec.split(","):
        name, _, action = item.strip().partition("=")
        if name and action in actions:
            table[name] = actions[action]
    return table


def hit(name: str) -> None:
    """At failpoint `name`: do what the environment asks (send this process a signal), else nothing."""
    sig = _table().get(name)
    if sig is not None:
        os.kill(os.getpid(), sig)
