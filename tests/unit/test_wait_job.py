"""Monitor.wait_job wakes when its job ends, not at each status change on the way: every wake costs a
query-jobs round trip (issue 21: an internal delete made five for one 3 ms snapshot-delete job)."""

from __future__ import annotations

from typing import Any

from virtsnap.drivers.qemu.monitor import Monitor


class EventedQemu:
    """A job whose JOB_STATUS_CHANGE events come as QEMU sends them; query-jobs shows the status of the last
    event delivered. wait_event drops the events its predicate refuses, as the real one does."""

    def __init__(self, job_id: str, statuses: list[str]) -> None:
        self.job_id, self.pending, self.status = job_id, list(statuses), statuses[0]
        self.calls: list[str] = []

    def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        self.calls.append(cmd)
        if cmd == "query-jobs":
            return [{"id": self.job_id, "status": self.status, "type": "snapshot-delete"}]
        if cmd == "job-dismiss":
            assert self.status == "concluded"
        return {}

    def wait_event(self, accept: Any, timeout: float) -> dict[str, Any]:
        while self.pending:
            self.status = self.pending.pop(0)
            event = {"event": "JOB_STATUS_CHANGE", "data": {"id": self.job_id, "status": self.status}}
            if accept(event):
                return event
        raise TimeoutError

    wait_job = Monitor.wait_job  # the real loop


def test_a_job_is_asked_about_when_it_started_and_when_it_ended():
    qemu = EventedQemu("delete-1", ["created", "running", "waiting", "pending", "concluded", "null"])
    qemu.wait_job("delete-1")  # type: ignore[arg-type]
    assert qemu.calls == ["query-jobs", "query-jobs", "job-dismiss"]


def test_a_commit_to_cancel_wakes_at_ready_then_at_its_end():
    qemu = EventedQemu("commit-1", ["created", "running", "ready", "concluded"])
    qemu.wait_job("commit-1", cancel_when_ready=True)  # type: ignore[arg-type]
    # asked at the start, at ready (then cancelled), once more after the cancel, and at the end
    assert qemu.calls == ["query-jobs", "query-jobs", "job-cancel", "query-jobs", "query-jobs", "job-dismiss"]
