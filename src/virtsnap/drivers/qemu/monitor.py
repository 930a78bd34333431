"""QMP through the qemu.qmp library: an asyncio client on its own loop thread behind a synchronous facade.

One Monitor per running domain per connection; every call has a timeout, and QMP failures become
libvirtError at this edge (VIR_FROM_QEMU).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from qemu.qmp import ConnectError, EventListener, ExecuteError, QMPClient, QMPError, Runstate

from ...errors import ErrorCode, ErrorDomain, error
from ...progress import report
from .firmware import NVRAM_TARGET

# pflash devices have no id of their own: the machine's flash1 is the UEFI variable store (argv.py puts it there)
PFLASH = {"/machine/system.flash1": NVRAM_TARGET}

T = TypeVar("T")
ERR = ErrorDomain.QEMU
DEFAULT_TIMEOUT = 60.0


class Monitor:
    """A connected QMP monitor. Not thread-safe for concurrent calls: the driver serialises per domain."""

    def __init__(self, socket_path: str, name: str, connect_timeout: float = 10.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"qmp-{name}", daemon=True)
        self._thread.start()
        self._client = QMPClient(name)
        self._events = EventListener()
        self._seen: list[dict[str, Any]] = []  # events a wait consumed, kept for drain_events
        self._client.register_listener(self._events)
        self.socket_path = socket_path
        try:
            self._run(self._connect(connect_timeout), connect_timeout + 5)
        except BaseException:
            self.close()
            raise

    async def _connect(self, timeout: float) -> None:
        # QEMU creates the socket file before it listens: retry until the deadline.
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                await self._client.connect(self.socket_path)
                return
            except ConnectError as exc:
                # Only a socket not listening yet is worth a retry; a bad greeting or negotiation is not.
                if time.monotonic() >= deadline or not isinstance(exc.exc, ConnectionRefusedError | FileNotFoundError):
                    raise error(ErrorCode.OPERATION_FAILED, ERR,
                                f"cannot connect to the QEMU monitor at {self.socket_path}: {exc}") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError as exc:
            future.cancel()
            raise error(ErrorCode.OPERATION_TIMEOUT, ERR, f"QEMU monitor did not answer in {timeout:g} s") from exc

    async def _until_lost(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro`, unless the session ends first (a reply QMP cannot parse, QEMU hanging up): then
        fail at once instead of waiting for a reply that will never come."""
        task = asyncio.ensure_future(coro)
        while True:
            if self._client.runstate != Runstate.RUNNING:
                task.cancel()
                raise error(ErrorCode.OPERATION_FAILED, ERR, "the QEMU monitor connection was lost (QEMU hung up "
                            "or sent a reply that is not QMP)")
            change = asyncio.ensure_future(self._client.runstate_changed())
            done, _ = await asyncio.wait({task, change}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                change.cancel()
                return task.result()

    def execute(self, command: str, arguments: dict[str, Any] | None = None,
                timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Run one QMP command; its error class and description become an OPERATION_FAILED error."""
        try:
            return self._run(self._until_lost(self._client.execute(command, arguments)), timeout)
        except ExecuteError as exc:
            raise error(ErrorCode.OPERATION_FAILED, ERR, f"{command}: {exc.error.error.desc}") from exc
        except QMPError as exc:
            raise error(ErrorCode.OPERATION_FAILED, ERR, f"{command}: QEMU monitor error: {_first_line(exc)}") from exc

    def pipeline(self, commands: list[tuple[str, dict[str, Any] | None]],
                 timeout: float = DEFAULT_TIMEOUT) -> list[Any]:
        """Send several commands back to back (QEMU runs them in order) and wait for all replies: no round
        trip between them, for sequences that must be short, such as the guest pause of a live snapshot.
        Raises the first command's error, after every reply has arrived."""
        async def go() -> list[Any]:
            return list(await asyncio.gather(*(self._client.execute(cmd, args) for cmd, args in commands),
                                             return_exceptions=True))
        results = self._run(self._until_lost(go()), timeout)
        for (command, _), result in zip(commands, results, strict=True):
            if isinstance(result, ExecuteError):
                raise error(ErrorCode.OPERATION_FAILED, ERR, f"{command}: {result.error.error.desc}") from result
            if isinstance(result, BaseException):
                raise error(ErrorCode.OPERATION_FAILED, ERR,
                            f"{command}: QEMU monitor error: {_first_line(result)}") from result
        return results

    def hmp(self, command: str, *args: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """An HMP command (QEMU reports HMP errors as ordinary output text). HMP has its own parser, which splits
        at spaces and reads quotes, so each part must be one plain word: anything else is refused, not escaped."""
        for part in (command, *args):
            if not part or any(c.isspace() or c in "\"'\\" or ord(c) < 32 or ord(c) == 127 for c in part):
                raise error(ErrorCode.INVALID_ARG, ERR, f"HMP argument {part!r} is not a plain word")
        result = self.execute("human-monitor-command", {"command-line": " ".join((command, *args))}, timeout)
        return str(result)

    def send_fd(self, fd: int, fdname: str) -> None:
        """Pass a file descriptor to QEMU (getfd), e.g. for migration to a file."""
        async def go() -> None:
            self._client.send_fd_scm(fd)
            await self._client.execute("getfd", {"fdname": fdname})
        try:
            self._run(go(), DEFAULT_TIMEOUT)
        except ExecuteError as exc:
            raise error(ErrorCode.OPERATION_FAILED, ERR, f"getfd: {exc.error.error.desc}") from exc

    def block_devices(self) -> dict[str, dict[str, Any]]:
        """query-block's inserted media by target dev, from each device's qdev id
        ("/machine/peripheral/vda/virtio-backend" -> vda; the UEFI variable flash -> nvram); devices without a
        medium are left out."""
        found: dict[str, dict[str, Any]] = {}
        for dev in self.execute("query-block"):
            qdev = str(dev.get("qdev") or "")
            target = qdev.split("/")[3] if qdev.startswith("/machine/peripheral/") else PFLASH.get(qdev, qdev)
            if dev.get("inserted") and target:
                found[target] = dev["inserted"]
        return found

    def drain_events(self) -> list[dict[str, Any]]:
        """Every event received so far, in order (and forget them)."""
        async def go() -> list[dict[str, Any]]:
            return [dict(ev) for ev in self._events.clear()]
        events, self._seen = self._seen + self._run(go(), 5), []
        return events

    def wait_event(self, accept: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """Block until an event `accept`s (events seen before that are dropped)."""
        async def go() -> dict[str, Any]:
            while True:
                event = dict(await self._events.get())
                self._seen.append(event)
                if accept(event):
                    return event
        return self._run(asyncio.wait_for(go(), timeout), timeout + 1)

    def wait_job(self, job_id: str, timeout: float = 600.0, cancel_when_ready: bool = False) -> None:
        """Wait for a QMP job to conclude, report its error, and dismiss it. With `cancel_when_ready`, a job
        that reaches `ready` (a block job waiting for its pivot) is cancelled there, once, and then awaited."""
        deadline = time.monotonic() + timeout
        cancelled = False
        while True:
            jobs = {j["id"]: j for j in self.execute("query-jobs")}
            job = jobs.get(job_id)
            if job is None:
                raise error(ErrorCode.INTERNAL_ERROR, ERR, f"QEMU job {job_id} vanished")
            report(job_id.split("-")[0], int(job.get("current-progress", 0)), int(job.get("total-progress", 0)))
            if cancel_when_ready and job["status"] == "ready" and not cancelled:
                self.execute("job-cancel", {"id": job_id})
                cancelled = True
                continue
            if job["status"] == "concluded":
                self.execute("job-dismiss", {"id": job_id})
                if job.get("error"):
                    raise error(ErrorCode.OPERATION_FAILED, ERR, str(job["error"]))
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise error(ErrorCode.OPERATION_TIMEOUT, ERR, f"QEMU job {job_id} did not finish in {timeout:g} s")
            # Wake when the job ends (or reaches the ready point it is to be cancelled at), not on each of the
            # status changes on the way (created, running, waiting, pending): each wake asked query-jobs again,
            # a round trip apiece (a 3 ms snapshot-delete made five). A long job still reports progress twice a
            # second.
            try:
                self.wait_event(_job_status(job_id, ("concluded", "ready") if cancel_when_ready and not cancelled
                                            else ("concluded",)), min(remaining, 0.5))
            except Exception:
                pass

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            if self._thread.is_alive():
                asyncio.run_coroutine_threadsafe(self._client.disconnect(), self._loop).result(5)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def _job_status(job_id: str, statuses: tuple[str, ...]) -> Callable[[dict[str, Any]], bool]:
    """Accepts the JOB_STATUS_CHANGE event of `job_id` reaching one of `statuses`."""
    def accept(event: dict[str, Any]) -> bool:
        data = event.get("data", {})
        return event.get("event") == "JOB_STATUS_CHANGE" and data.get("id") == job_id and data.get("status") in statuses
    return accept


def _first_line(exc: BaseException) -> str:
    """qemu.qmp's protocol errors append the offending message on further lines: one line is enough."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
