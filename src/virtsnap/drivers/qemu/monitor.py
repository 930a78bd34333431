"""QMP through the qemu.qmp library: an asyncio client behind a synchronous facade, its loop run by the caller.

One Monitor per running domain per operation (or one kept open between operations, see context.py); every call
has a timeout, and QMP failures become libvirtError at this edge (VIR_FROM_QEMU).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import sys
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from qemu.qmp import ConnectError, EventListener, ExecuteError, Message, QMPClient, QMPError, Runstate

from ...errors import ErrorCode, ErrorDomain, error, libvirtError
from ...progress import report
from .firmware import NVRAM_TARGET
from .process import BLOCK_MEMO, Runtime, read_text, unlink_quiet

# pflash devices have no id of their own: the machine's flash1 is the UEFI variable store (argv.py puts it there)
PFLASH = {"/machine/system.flash1": NVRAM_TARGET}

T = TypeVar("T")
ERR = ErrorDomain.QEMU
DEFAULT_TIMEOUT = 60.0

# QMP commands that leave every disk's active node in place and start no job that could move it. Any other
# command (blockdev-*, transaction, block-commit, job-complete, human-monitor-command...) makes the monitor
# forget its block memo before the command is sent, so no memo outlives a change of the block graph.
KEEPS_GRAPH = frozenset({
    "qmp_capabilities", "stop", "cont", "quit", "system_reset", "system_powerdown", "balloon", "set_password",
    "expire_password", "getfd", "closefd", "migrate-set-capabilities", "migrate-set-parameters", "migrate",
    "migrate-incoming", "migrate_cancel", "snapshot-save", "snapshot-load", "snapshot-delete", "job-dismiss",
    "blockdev-snapshot-delete-internal-sync"})
SNAPSHOT_JOBS = frozenset({"snapshot-save", "snapshot-load", "snapshot-delete"})  # jobs that move no node


def keeps_graph(command: str) -> bool:
    return command in KEEPS_GRAPH or command.startswith("query-")


class _Client(QMPClient):
    """qemu.qmp's client whose message hooks log only when its debug log is on: the library's own hooks format
    every message as indented JSON first (Python's pure encoder), whether logged or not, which was most of
    the CPU time a short operation spent on QMP."""

    def _cb_outbound(self, msg: Message) -> Message:
        return super()._cb_outbound(msg) if self.logger.isEnabledFor(logging.DEBUG) else msg

    def _cb_inbound(self, msg: Message) -> Message:
        return super()._cb_inbound(msg) if self.logger.isEnabledFor(logging.DEBUG) else msg


class _Events(EventListener):
    """The events of the operation under way: a kept monitor takes none while it rests between operations."""

    listening = True

    def accept(self, event: Message) -> bool:
        return self.listening and super().accept(event)


class Runner:
    """A monitor's asyncio loop, run by the thread that calls it, for as long as the call lasts: commands go out
    and replies come in on the caller's own thread. A loop on a thread of its own cost every call two thread
    wake-ups (0.3 ms of a 0.7 ms query-status here, milliseconds on a loaded machine). Between calls nothing
    reads the connection: a connection kept open between operations is read now and then by its keeper."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_hung_up_quietly)
        if not _RUNNERS:
            atexit.register(_close_runners)
        _RUNNERS.add(self)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the usual case: no loop runs on this thread
            return self._call(coro, timeout)
        # A caller inside a running loop (an asyncio program calling the synchronous API) cannot run a second
        # loop on its thread: the call runs on a thread of its own, the caller's loop blocked meanwhile.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="qmp") as pool:
            return pool.submit(self._call, coro, timeout).result()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        async def limited() -> T:
            async with asyncio.timeout(timeout):
                return await coro
        try:
            return self._loop.run_until_complete(limited())
        except TimeoutError as exc:
            raise error(ErrorCode.OPERATION_TIMEOUT, ERR, f"QEMU monitor did not answer in {timeout:g} s") from exc

    def close(self) -> None:
        """Close the loop, its pending tasks cancelled first (a connection's reader and writer, when it was not
        disconnected): a task destroyed pending would end in qemu.qmp's error path with no loop to run it."""
        loop = self._loop
        if loop.is_closed() or loop.is_running():
            return
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()


_RUNNERS: weakref.WeakSet[Runner] = weakref.WeakSet()


def _close_runners() -> None:
    """At exit, the loops of the monitors a program left open (a connection it never closed)."""
    for runner in list(_RUNNERS):
        runner.close()


class Monitor:
    """A connected QMP monitor. Not thread-safe for concurrent calls: the driver serialises per domain.

    It keeps a block memo, the active node of each disk (active_nodes), in a file beside the socket, for the
    operations of every process that connect later. The memo names the QEMU process it describes (the pid file
    beside the socket: pid and start time), so another QEMU never reads it; it is written only while no job
    other than an internal snapshot's runs (a block job ending changes the graph by itself), and removed before
    any command that may change the graph is sent (KEEPS_GRAPH), whoever sends it through this class. Commands
    that change the graph are sent by operations, under the domain's lock: whichever of QEMU's two monitors
    another process uses (each serves one client at a time), it changes no graph during this one's operation."""

    def __init__(self, socket_path: str, name: str, connect_timeout: float = 10.0, qemu: str | None = None) -> None:
        self._runner = Runner()
        self._qemu = qemu  # the pid file's text ("pid start-time") as read before connecting, when the opener did
        self._client = _Client(name)
        self._client.negotiate = False  # qmp_capabilities goes out with the first command (exchange)
        self._negotiated = False
        self._events = _Events()
        self._stale = False  # rested with events perhaps left in the listener: cleared before the next command
        self._seen: list[dict[str, Any]] = []  # events a wait consumed, kept for drain_events
        self._job_statuses: dict[str, set[str]] = {}  # job started on this connection -> statuses it announced
        self._client.register_listener(self._events)
        self.socket_path = socket_path
        beside = Runtime(os.path.dirname(socket_path))  # the memo and the pid file lie beside the socket
        self._memo, self._pidfile = beside.block_memo, beside.pidfile
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
        if self._stale:  # the events a rest left behind go first, on the loop, before this operation's commands
            self._stale = False
            coro = self._after_clearing(coro)
        return self._runner.run(coro, timeout)

    async def _after_clearing(self, coro: Coroutine[Any, Any, T]) -> T:
        self._events.clear()
        return await coro

    def _sending(self, command: str, arguments: dict[str, Any] | None) -> None:
        """What every command does before it goes out: the memo forgotten unless the command keeps the
        graph; a job it starts noted (its end is then awaited by event)."""
        if not keeps_graph(command):
            self.forget_nodes()
        if arguments and "job-id" in arguments:
            self._job_statuses[str(arguments["job-id"])] = set()

    def execute(self, command: str, arguments: dict[str, Any] | None = None,
                timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Run one QMP command; its error class and description become an OPERATION_FAILED error."""
        if not self._negotiated:
            return self.pipeline([(command, arguments)], timeout)[0]
        self._sending(command, arguments)
        try:
            return self._run(self._client.execute(command, arguments), timeout)
        except ExecuteError as exc:
            raise error(ErrorCode.OPERATION_FAILED, ERR, f"{command}: {exc.error.error.desc}") from exc
        except QMPError as exc:
            raise error(ErrorCode.OPERATION_FAILED, ERR, f"{command}: QEMU monitor error: {_first_line(exc)}") from exc

    def pipeline(self, commands: list[tuple[str, dict[str, Any] | None]],
                 timeout: float = DEFAULT_TIMEOUT, then: Callable[[list[Any]], object] | None = None) -> list[Any]:
        """Send several commands back to back (QEMU runs them in order) and wait for all replies: no round
        trip between them, for sequences that must be short, such as the guest pause of a live snapshot.
        Raises the first command's error, after every reply has arrived. `then` gets the replies (an exception
        in place of a command's error) the moment the last one is in, before anything else runs: for what must
        follow them within microseconds."""
        results = self.exchange(commands, timeout, then)
        for result in results:
            if isinstance(result, libvirtError):
                raise result
        return results

    def exchange(self, commands: list[tuple[str, dict[str, Any] | None]],
                 timeout: float = DEFAULT_TIMEOUT, then: Callable[[list[Any]], object] | None = None) -> list[Any]:
        """pipeline, raising nothing: each command's reply, or its error (a libvirtError) in its place. The
        connection's first commands go out behind qmp_capabilities, which then costs no round trip of its own."""
        for command, arguments in commands:
            self._sending(command, arguments)
        sent = commands if self._negotiated else [("qmp_capabilities", self._capabilities()), *commands]
        client = self._client

        async def one(command: str, arguments: dict[str, Any] | None) -> Any:
            try:
                return await client.execute(command, arguments)
            except Exception as exc:  # each command's failure is its reply (qemu.qmp fails every pending one
                return exc  # at once when the session ends: a hang-up, a reply that is not QMP)

        async def go() -> list[Any]:
            # one command is awaited here; several go out back to back, each in a task of its own, in order
            replies = [await one(*sent[0])] if len(sent) == 1 else list(await asyncio.gather(
                *(one(cmd, args) for cmd, args in sent)))
            if then is not None:
                then(replies[len(sent) - len(commands):])
            return replies
        results = self._run(go(), timeout)
        for i, ((command, _), result) in enumerate(zip(sent, results, strict=True)):
            if isinstance(result, ExecuteError):
                results[i] = error(ErrorCode.OPERATION_FAILED, ERR, f"{command}: {result.error.error.desc}")
                results[i].__cause__ = result
            elif isinstance(result, BaseException):
                results[i] = error(ErrorCode.OPERATION_FAILED, ERR, f"{command}: QEMU monitor error: "
                                   f"{_first_line(result)}")
                results[i].__cause__ = result
        if not self._negotiated:
            if isinstance(results[0], libvirtError):
                raise results[0]
            self._negotiated = True
            del results[0]
        return results

    def _capabilities(self) -> dict[str, Any] | None:
        """qmp_capabilities' arguments: out-of-band execution enabled where QEMU offers it (as qemu.qmp's own
        negotiation does), for what it changes for in-band commands too. Without it QEMU's monitor thread reads
        one command at a time, resumed only once the main loop has run the previous one, so commands sent back to
        back still paid one thread hop apiece: 0.4-1.4 ms each here, inside a LIVE snapshot's pause."""
        greeting = self._client.greeting
        return {"enable": ["oob"]} if greeting is not None and "oob" in greeting.QMP.capabilities else None

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
        if not self._negotiated:
            self.exchange([])
        self._sending("getfd", None)

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
        return _by_target(self.execute("query-block"))

    def active_nodes(self) -> dict[str, str]:
        """target dev -> the node QEMU writes to now (it changes when an overlay is switched in): the block memo
        when it describes this QEMU, else query-block (one round trip with query-jobs), then remembered."""
        owner = self._qemu
        if owner is None:
            try:
                owner = read_text(self._pidfile).strip()
            except OSError:
                pass  # not a QEMU virtsnap launched: nothing remembered
        try:
            memo = json.loads(read_text(self._memo))
            if owner and memo["qemu"] == owner:
                return {str(target): str(node) for target, node in memo["nodes"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        block, jobs = self.pipeline([("query-block", None), ("query-jobs", None)])
        nodes = {target: str(inserted["node-name"]) for target, inserted in _by_target(block).items()}
        if owner and all(job.get("type") in SNAPSHOT_JOBS for job in jobs):
            staged = os.path.join(os.path.dirname(self._memo), f".{BLOCK_MEMO}.{os.getpid()}")
            with contextlib.suppress(OSError):
                fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "w") as f:
                    json.dump({"qemu": owner, "nodes": nodes}, f)
                os.replace(staged, self._memo)
        return nodes

    def forget_nodes(self) -> None:
        """Drop the block memo (a command failed on a node it named): the next active_nodes asks QEMU."""
        unlink_quiet(self._memo)

    def drain_events(self) -> list[dict[str, Any]]:
        """Every event received so far, in order (and forget them)."""
        async def go() -> list[dict[str, Any]]:
            return [dict(ev) for ev in self._events.clear()]
        drained = self._run(go(), 5)
        for event in drained:
            self._note(event)
        events, self._seen = self._seen + drained, []
        return events

    def _note(self, event: dict[str, Any]) -> None:
        """Keep the statuses that a job started on this connection goes through."""
        data = event.get("data") or {}
        if event.get("event") == "JOB_STATUS_CHANGE" and data.get("id") in self._job_statuses:
            self._job_statuses[data["id"]].add(str(data.get("status")))

    def wait_event(self, accept: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """Block until an event `accept`s (events seen before that are dropped)."""
        if not self._negotiated:  # QEMU sends no event before
            self.exchange([])

        async def go() -> dict[str, Any]:
            while True:
                event = dict(await self._events.get())
                self._seen.append(event)
                self._note(event)
                if accept(event):
                    return event
        return self._run(asyncio.wait_for(go(), timeout), timeout + 1)

    def wait_job(self, job_id: str, timeout: float = 600.0, cancel_when_ready: bool = False) -> None:
        """Wait for a QMP job to conclude, report its error, and dismiss it. With `cancel_when_ready`, a job
        that reaches `ready` (a block job waiting for its pivot) is cancelled there, once, and then awaited."""
        deadline = time.monotonic() + timeout
        cancelled = False
        if job_id in self._job_statuses and not cancel_when_ready and self._ended(job_id, deadline):
            if "aborting" not in self._job_statuses[job_id]:
                # Concluded without aborting: it succeeded (QEMU's job states), so nothing is left to ask, only
                # its dismissal (query-jobs first cost a 3 ms snapshot-delete job one more round trip).
                self.execute("job-dismiss", {"id": job_id})
                report(job_id.split("-")[0], 1, 1)
                return
            jobs, dismissed = self.exchange([("query-jobs", None), ("job-dismiss", {"id": job_id})])
            if isinstance(jobs, libvirtError):
                raise jobs
            job = next((j for j in jobs if j["id"] == job_id), None)
            if job is not None and job["status"] == "concluded" and not isinstance(dismissed, libvirtError):
                if job.get("error"):
                    raise error(ErrorCode.OPERATION_FAILED, ERR, str(job["error"]))
                return
            # not concluded after all (or not dismissed): the questions below find out
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

    def _ended(self, job_id: str, deadline: float) -> bool:
        """Until the job's `concluded` event (True), asking QEMU twice a second for its progress meanwhile; False
        when the job is gone or the deadline passed (wait_job's questions then say what happened)."""
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                self.wait_event(_job_status(job_id, ("concluded",)), min(remaining, 0.5))
                return True
            except libvirtError as exc:
                if exc.get_error_code() != ErrorCode.OPERATION_TIMEOUT:
                    raise
            job = next((j for j in self.execute("query-jobs") if j["id"] == job_id), None)
            if job is None or job["status"] == "concluded":
                return False
            report(job_id.split("-")[0], int(job.get("current-progress", 0)), int(job.get("total-progress", 0)))
        return False

    @property
    def connected(self) -> bool:
        return self._client.runstate == Runstate.RUNNING

    def rest(self) -> None:
        """Between two operations on a connection kept open: events are no longer taken, and those the
        operation did not consume are dropped before the next one's first command (so that none outlives it)."""
        self._events.listening = False
        self._stale = True
        self._seen, self._job_statuses = [], {}

    def resume(self) -> None:
        """The next operation on a connection kept open: its events are taken from now on."""
        self._events.listening = True

    def idle(self) -> None:
        """Read what QEMU sent since the last call (events of a connection kept open between operations, which
        are dropped, or its hang-up): unread, they would pile up in QEMU's memory."""
        async def go() -> None:
            for _ in range(3):  # the socket read, then the messages it brought
                await asyncio.sleep(0)
        self._runner.run(go(), 5)

    def close(self) -> None:
        if sys.is_finalizing():  # a connection closed at exit: its loop runs no more, the kernel closes it
            return
        try:
            self._runner.run(self._client.disconnect(), 5)
        except Exception:
            pass
        self._runner.close()


def _hung_up_quietly(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A QEMU that exited while a kept connection rested leaves qemu.qmp's reader with an EOFError nobody asks
    for (the connection is dropped at its next use, or at exit): not worth a traceback on stderr."""
    if isinstance(context.get("exception"), EOFError | ConnectionError):
        logging.getLogger(__name__).debug("QEMU hung up: %s", context.get("message"))
        return
    loop.default_exception_handler(context)


def _by_target(block: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """query-block's inserted media by target dev, from each device's qdev id (see block_devices)."""
    found: dict[str, dict[str, Any]] = {}
    for dev in block:
        qdev = str(dev.get("qdev") or "")
        target = qdev.split("/")[3] if qdev.startswith("/machine/peripheral/") else PFLASH.get(qdev, qdev)
        if dev.get("inserted") and target:
            found[target] = dev["inserted"]
    return found


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
