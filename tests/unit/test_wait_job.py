"""Monitor.wait_job wakes when its job ends, not at each status change on the way: every wake costs a
query-jobs round trip (issue 21: an internal delete made five for one 3 ms snapshot-delete job). A job started
on the same connection is not asked about at all: its events say when it ended and whether it failed (a job
that fails or is cancelled goes through `aborting`); a successful one is only dismissed, a failed one asked
about and dismissed in one round trip."""

from __future__ import annotations

from typing import Any

from virtsnap.drivers.qemu.monitor import Monitor
from virtsnap.errors import ErrorCode, ErrorDomain, error, libvirtError


class EventedQemu:
    """A job whose JOB_STATUS_CHANGE events come as QEMU sends them; query-jobs shows the status of the last
    event delivered. wait_event drops the events its predicate refuses, as the real one does."""

    def __init__(self, job_id: str, statuses: list[str], started_here: bool = False) -> None:
        self.job_id, self.pending, self.status = job_id, list(statuses), statuses[0]
        self.calls: list[str] = []
        self.round_trips = 0
        self._job_statuses: dict[str, set[str]] = {job_id: set()} if started_here else {}

    def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        self.round_trips += 1
        return self._answer(cmd)

    def _answer(self, cmd: str) -> Any:
        self.calls.append(cmd)
        if cmd == "query-jobs":
            return [{"id": self.job_id, "status": self.status, "type": "snapshot-delete"}]
        if cmd == "job-dismiss" and self.status != "concluded":
            return error(ErrorCode.OPERATION_FAILED, ErrorDomain.QEMU,
                         f"job-dismiss: Job '{self.job_id}' in state '{self.status}' cannot accept verb 'dismiss'")
        return {}

    def exchange(self, commands: list[tuple[str, Any]]) -> list[Any]:
        self.round_trips += 1  # sent back to back: one round trip for all
        return [self._answer(cmd) for cmd, _ in commands]

    def wait_event(self, accept: Any, timeout: float) -> dict[str, Any]:
        while self.pending:
            self.status = self.pending.pop(0)
            event = {"event": "JOB_STATUS_CHANGE", "data": {"id": self.job_id, "status": self.status}}
            self._note(event)
            if accept(event):
                return event
        raise error(ErrorCode.OPERATION_TIMEOUT, ErrorDomain.QEMU, "QEMU monitor did not answer in 0.5 s")

    wait_job = Monitor.wait_job  # the real loop
    _ended = Monitor._ended
    _note = Monitor._note


def test_a_job_is_asked_about_when_it_started_and_when_it_ended():
    qemu = EventedQemu("delete-1", ["created", "running", "waiting", "pending", "concluded", "null"])
    qemu.wait_job("delete-1")  # type: ignore[arg-type]
    assert qemu.calls == ["query-jobs", "query-jobs", "job-dismiss"]


def test_a_commit_to_cancel_wakes_at_ready_then_at_its_end():
    qemu = EventedQemu("commit-1", ["created", "running", "ready", "concluded"])
    qemu.wait_job("commit-1", cancel_when_ready=True)  # type: ignore[arg-type]
    # asked at the start, at ready (then cancelled), once more after the cancel, and at the end
    assert qemu.calls == ["query-jobs", "query-jobs", "job-cancel", "query-jobs", "query-jobs", "job-dismiss"]


def test_a_job_started_here_that_ends_without_aborting_is_only_dismissed():
    qemu = EventedQemu("delete-1", ["created", "running", "waiting", "pending", "concluded", "null"], started_here=True)
    qemu.wait_job("delete-1")  # type: ignore[arg-type]
    assert qemu.calls == ["job-dismiss"] and qemu.round_trips == 1


def test_a_job_started_here_whose_end_is_not_announced_is_asked_about():
    qemu = EventedQemu("delete-1", ["created", "running"], started_here=True)
    qemu.status = "running"
    qemu.pending = []  # no more events: it never says it ended
    original = qemu._answer

    def ends_when_asked(cmd: str) -> Any:  # concluded by the third question
        if cmd == "query-jobs" and qemu.calls.count("query-jobs") == 2:
            qemu.status = "concluded"
        return original(cmd)
    qemu._answer = ends_when_asked  # type: ignore[method-assign]
    qemu.wait_job("delete-1", timeout=5)  # type: ignore[arg-type]
    assert qemu.calls[-2:] == ["query-jobs", "job-dismiss"] and qemu.status == "concluded"


def test_a_failed_job_started_here_raises_its_error_and_is_dismissed():
    qemu = EventedQemu("delete-1", ["created", "running", "aborting", "concluded"], started_here=True)
    original = qemu._answer

    def failed(cmd: str) -> Any:
        answer = original(cmd)
        return [{**answer[0], "error": "Snapshot 'x' not found"}] if cmd == "query-jobs" else answer
    qemu._answer = failed  # type: ignore[method-assign]
    try:
        qemu.wait_job("delete-1")  # type: ignore[arg-type]
    except libvirtError as exc:
        assert "Snapshot 'x' not found" in exc.get_error_message()
        assert exc.get_error_code() == ErrorCode.OPERATION_FAILED
    else:
        raise AssertionError("no error")
    assert qemu.calls == ["query-jobs", "job-dismiss"] and qemu.round_trips == 1
