"""Minimal stdlib client for qemu-guest-agent reached through a QEMU unix socket chardev.

    with Agent.connect("/path/qga.sock", timeout=60) as agent:   # waits for the guest
        agent.sh("echo hi > /mnt/marker")
        print(agent.sh("cat /mnt/marker").stdout)

Every session starts with the guest-sync-delimited handshake (also call ``sync()``
again after a snapshot load/revert): the 0xFF byte resets qemu-ga's JSON parser and
the reply's 0xFF marks where fresh output starts, so stale replies are skipped.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import socket
import time
from collections.abc import Callable
from typing import Self


class AgentError(Exception):
    """The agent answered with an error, could not be reached, or did not answer in time."""


@dataclasses.dataclass(frozen=True)
class ExecResult:
    exitcode: int
    stdout: bytes
    stderr: bytes


class Agent:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._next_id = 1

    @classmethod
    def connect(cls, path: str, timeout: float = 60.0,
                alive: Callable[[], bool] = lambda: True) -> Agent:
        """Connect and sync, retrying until ``timeout`` s pass (the guest may still be booting).

        ``alive`` is polled between attempts so a dead QEMU fails fast instead of timing out.
        """
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()  # QEMU has not created or is not yet listening on the socket
                if not alive():
                    raise AgentError(f"{path}: QEMU exited before the agent socket opened") from None
                if time.monotonic() > deadline:
                    raise AgentError(f"{path}: cannot connect within {timeout} s") from None
                time.sleep(0.02)
        agent = cls(sock)
        try:
            # Short attempts: a sync sent before qemu-ga opened the port may be lost.
            while True:
                try:
                    agent.sync(timeout=min(1.0, max(0.05, deadline - time.monotonic())))
                    return agent
                except AgentError:
                    if not alive():
                        raise AgentError(f"{path}: QEMU exited before the agent answered") from None
                    if time.monotonic() > deadline:
                        raise AgentError(f"{path}: no agent answer within {timeout} s") from None
        except BaseException:
            agent.close()
            raise

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- wire ---------------------------------------------------------------

    def _send(self, execute: str, arguments: dict | None, prefix: bytes = b"", **extra) -> None:
        msg = {"execute": execute, **({"arguments": arguments} if arguments is not None else {}), **extra}
        try:
            self._sock.sendall(prefix + json.dumps(msg).encode())
        except OSError as exc:
            raise AgentError(f"{execute}: cannot send ({exc})") from None

    def _read_line(self, deadline: float) -> bytes:
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AgentError("timed out waiting for the agent")
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                raise AgentError("timed out waiting for the agent") from None
            except OSError as exc:
                raise AgentError(f"agent socket: {exc}") from None
            if not chunk:
                raise AgentError("agent socket closed")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def sync(self, timeout: float = 10.0) -> None:
        """guest-sync-delimited: discard everything up to our reply."""
        deadline = time.monotonic() + timeout
        token = random.randrange(1, 2**31)
        self._send("guest-sync-delimited", {"id": token}, prefix=b"\xff")
        while True:
            line = self._read_line(deadline)
            start = line.rfind(b"\xff")
            if start < 0:
                continue  # output that predates our 0xFF
            try:
                reply = json.loads(line[start + 1:])
            except ValueError:
                continue
            if reply.get("return") == token:
                return  # replies to older syncs carry other tokens and are skipped

    def execute(self, command: str, arguments: dict | None = None, timeout: float = 30.0):
        """Run one agent command and return its "return" value."""
        deadline = time.monotonic() + timeout
        msg_id = self._next_id
        self._next_id += 1
        self._send(command, arguments, id=msg_id)
        while True:
            try:
                reply = json.loads(self._read_line(deadline).lstrip(b"\xff"))
            except ValueError as exc:
                raise AgentError(f"{command}: unparsable reply ({exc})") from None
            if reply.get("id") == msg_id:
                break  # other ids answer commands that timed out earlier
        if "error" in reply:
            err = reply["error"]
            raise AgentError(f"{command}: {err.get('class')}: {err.get('desc')}")
        return reply.get("return")

    # --- commands -----------------------------------------------------------

    def ping(self) -> None:
        self.execute("guest-ping")

    def exec(self, argv: list[str], stdin: bytes | None = None, timeout: float = 30.0) -> ExecResult:
        """guest-exec ``argv`` with captured output, polling guest-exec-status until it exits."""
        deadline = time.monotonic() + timeout
        args = {"path": argv[0], "arg": argv[1:], "capture-output": True}
        if stdin is not None:
            args["input-data"] = base64.b64encode(stdin).decode()
        pid = self.execute("guest-exec", args, timeout)["pid"]
        delay = 0.005
        while True:
            status = self.execute("guest-exec-status", {"pid": pid}, max(1.0, deadline - time.monotonic()))
            if status["exited"]:
                break
            if time.monotonic() > deadline:
                raise AgentError(f"guest-exec {argv}: still running after {timeout} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)  # short commands finish fast; long ones need not be hammered
        return ExecResult(
            exitcode=status.get("exitcode", -status.get("signal", 0)),  # killed: -signal, as subprocess
            stdout=base64.b64decode(status.get("out-data", "")),
            stderr=base64.b64decode(status.get("err-data", "")),
        )

    def sh(self, script: str, check: bool = True, timeout: float = 30.0) -> ExecResult:
        """Run ``/bin/sh -c script``; raise AgentError on a non-zero exit when ``check``."""
        result = self.exec(["/bin/sh", "-c", script], timeout=timeout)
        if check and result.exitcode != 0:
            raise AgentError(f"sh -c {script!r}: exit {result.exitcode}: "
                             f"{result.stderr.decode(errors='replace').strip()}")
        return result

    def fsfreeze_status(self) -> str:
        return self.execute("guest-fsfreeze-status")

    def fsfreeze_freeze(self) -> int:
        return self.execute("guest-fsfreeze-freeze")

    def fsfreeze_thaw(self) -> int:
        return self.execute("guest-fsfreeze-thaw")

    def shutdown(self, mode: str = "powerdown") -> None:
        """guest-shutdown; qemu-ga sends no reply when it succeeds, so none is awaited."""
        self._send("guest-shutdown", {"mode": mode})
