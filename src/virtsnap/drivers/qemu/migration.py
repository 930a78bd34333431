"""Guest memory to and from a file through QEMU's migration: waiting for the transfer, and the guest's pause
as QEMU's own events time it. Shared by external snapshot create and revert.
"""

from __future__ import annotations

import contextlib
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


def wait_finalized(mon: Monitor, deadline: float) -> None:
    """query-migrate says "completed" a moment before QEMU leaves the finish-migrate run state, and `cont`
    is refused until it has. No event marks that step, so poll it, backing off (it takes milliseconds)."""
    delay = 0.001
    while mon.execute("query-status").get("status") == "finish-migrate":
        if time.monotonic() > deadline:
            raise error(ErrorCode.OPERATION_TIMEOUT, ERR, "QEMU did not finalize the memory transfer")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
