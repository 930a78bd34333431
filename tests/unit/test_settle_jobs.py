"""Recovery settles the QEMU jobs of a dead process: an active block commit that was not yet ready when its
client died is followed until it is ready and then cancelled, never waited on as if it could end by itself."""

from __future__ import annotations

from typing import Any

from virtsnap.drivers.qemu.monitor import Monitor
from virtsnap.drivers.qemu.recovery import settle_jobs


class ScriptedQemu:
    """QEMU's job model as QMP shows it: an active commit runs, becomes ready and waits there for
    job-complete or job-cancel; either ends it (concluded), after which job-dismiss removes it."""

    def __init__(self, jobs: dict[str, list[str]]) -> None:
        self.jobs = {job_id: list(steps) for job_id, steps in jobs.items()}  # statuses still to come
        self.status = {job_id: steps[0] for job_id, steps in jobs.items()}
        self.calls: list[tuple[str, Any]] = []
        self._job_statuses: dict[str, set[str]] = {}  # every job is a dead process's: none started here

    def _advance(self) -> None:
        for job_id, steps in self.jobs.items():
            if len(steps) > 1 and self.status.get(job_id) != "ready":
                steps.pop(0)
                self.status[job_id] = steps[0]

    def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        self.calls.append((cmd, args))
        if cmd == "query-jobs":
            return [{"id": j, "status": s, "type": "commit"} for j, s in self.status.items()]
        job_id = (args or {})["id"]
        if cmd == "job-cancel":
            assert self.status[job_id] in ("running", "ready")
            self.status[job_id] = "concluded"
        elif cmd == "job-dismiss":
            assert self.status[job_id] == "concluded"
            del self.status[job_id]
        return {}

    def wait_event(self, accept: Any, timeout: float) -> dict[str, Any]:
        self._advance()  # time passes: each job moves one status on (a ready commit stays ready)
        return {"event": "JOB_STATUS_CHANGE"}

    wait_job = Monitor.wait_job  # the real loop, over this QEMU


def test_an_active_commit_not_yet_ready_is_cancelled_once_ready():
    qemu = ScriptedQemu({"commit-42": ["created", "running", "running", "ready"]})
    settle_jobs(qemu, timeout=30)  # type: ignore[arg-type]
    assert qemu.status == {}  # concluded and dismissed
    assert [c for c, _ in qemu.calls if c.startswith("job-")] == ["job-cancel", "job-dismiss"]


def test_a_job_that_ends_by_itself_is_only_dismissed_and_foreign_jobs_are_left_alone():
    qemu = ScriptedQemu({"stream-7": ["running", "pending", "concluded"], "someone-else": ["running", "ready"]})
    settle_jobs(qemu, timeout=30)  # type: ignore[arg-type]
    assert qemu.status == {"someone-else": "ready"}
    assert [(c, a["id"]) for c, a in qemu.calls if c.startswith("job-")] == [("job-dismiss", "stream-7")]
