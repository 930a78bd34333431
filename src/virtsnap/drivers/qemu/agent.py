"""The QEMU guest agent over its virtio-serial socket: a sync-delimited handshake, then JSON commands.

The channel has no framing of its own: after a snapshot load or an agent restart stale replies may sit
in it, so every session starts with guest-sync-delimited (0xFF marker + random id) to resynchronise.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Self

from ...errors import ErrorCode, ErrorDomain, error

if TYPE_CHECKING:
    import socket

# socket, json, random and base64 are imported where a session needs them: the driver loads this module for
# every command, most of which never talk to the agent.

ERR = ErrorDomain.QEMU
MAX_REPLY = 16 * 1024 * 1024  # bytes of one reply; more is a hostile or broken agent (libvirt caps it too)


class _HostileReplyError(ValueError):
    """The agent sent something no agent sends: too much, not JSON, not an object."""


class Agent:
    """A synchronised connection to qemu-ga. Use as a context manager. Every command has one overall deadline
    (`timeout` seconds for the whole exchange, however the agent trickles its bytes), replies are capped at
    MAX_REPLY bytes and must be JSON objects: a hostile agent costs at most `timeout`, never a hang."""

    def __init__(self, socket_path: str, timeout: float = 10.0) -> None:
        self.path = socket_path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""
        self._deadline = 0.0

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self, deadline: float | None = None) -> None:
        """Connect and resynchronise; retries until `deadline` (monotonic) while the guest boots."""
        import socket

        end = deadline if deadline is not None else time.monotonic() + self.timeout
        last: Exception | None = None
        while time.monotonic() < end:
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._sock.settimeout(min(2.0, max(end - time.monotonic(), 0.1)))
                self._sock.connect(self.path)
                self._deadline = min(end, time.monotonic() + 2.0)  # one sync attempt; the next one retries
                self._sync()
                return
            except (OSError, ValueError) as exc:
                last = exc
                self.close()
                time.sleep(0.05)  # the agent is not up yet; the deadline bounds the wait
        raise error(ErrorCode.AGENT_UNRESPONSIVE, ERR, f"guest agent at {self.path} did not answer: {last}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf = b""

    def _sync(self) -> None:
        import json
        import random

        assert self._sock is not None
        token = random.randrange(1, 2**31)
        self._send(b"\xff" + json.dumps({"execute": "guest-sync-delimited", "arguments": {"id": token}}).encode())
        # Skip everything up to the 0xFF the agent sends before its reply.
        while b"\xff" not in self._buf:
            self._buf = self._buf[-1:]  # what came before the marker is stale: never accumulated
            self._recv()
        self._buf = self._buf[self._buf.index(b"\xff") + 1:]
        while self._read_message().get("return") != token:
            pass  # a stale reply; the deadline bounds how many

    def _remaining(self) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no complete reply before the deadline")
        return remaining

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        self._sock.settimeout(self._remaining())
        self._sock.sendall(data)

    def _recv(self) -> None:
        assert self._sock is not None
        self._sock.settimeout(self._remaining())
        chunk = self._sock.recv(65536)
        if not chunk:
            raise OSError("guest agent closed the connection")
        self._buf += chunk
        if len(self._buf) > MAX_REPLY:
            raise _HostileReplyError(f"reply larger than {MAX_REPLY} bytes")

    def _read_message(self) -> dict[str, Any]:
        import json

        while True:
            while b"\n" not in self._buf:
                self._recv()
            line, self._buf = self._buf.split(b"\n", 1)
            line = line.replace(b"\xff", b"").strip()
            if line:
                break
        try:
            message = json.loads(line)
        except ValueError:
            raise _HostileReplyError("reply is not JSON") from None
        if not isinstance(message, dict):
            raise _HostileReplyError(f"reply is a JSON {type(message).__name__}, not an object")
        return message

    def execute(self, command: str, arguments: dict[str, Any] | None = None, reply: bool = True) -> Any:
        """Run an agent command within `timeout` seconds overall; an agent error becomes
        VIR_ERR_OPERATION_FAILED with its description, a silent, slow or hostile agent VIR_ERR_AGENT_UNRESPONSIVE
        (and the connection is closed: the next command resynchronises)."""
        import json

        if self._sock is None:
            self.connect()
        assert self._sock is not None
        msg: dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self._deadline = time.monotonic() + self.timeout
        try:
            self._send(json.dumps(msg).encode() + b"\n")
            if not reply:
                return None
            answer = self._read_message()
        except (OSError, ValueError) as exc:
            self.close()
            why = f"no reply within {self.timeout:g} s" if isinstance(exc, TimeoutError) else str(exc)
            raise error(ErrorCode.AGENT_UNRESPONSIVE, ERR, f"guest agent command {command}: {why}") from exc
        if "error" in answer:
            err = answer["error"]
            desc = err.get("desc") if isinstance(err, dict) else None
            raise error(ErrorCode.OPERATION_FAILED, ERR,
                        f"{command}: {desc if isinstance(desc, str) else 'the guest agent reported an error'}")
        if "return" not in answer:
            self.close()
            raise error(ErrorCode.AGENT_UNRESPONSIVE, ERR, f"guest agent command {command}: reply has no 'return'")
        return answer["return"]

    def execute_dict(self, command: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """execute() of a command whose result is a JSON object (checked)."""
        result = self.execute(command, arguments)
        if not isinstance(result, dict):
            raise error(ErrorCode.AGENT_UNRESPONSIVE, ERR,
                        f"guest agent command {command}: result is a JSON {type(result).__name__}, not an object")
        return result

    def command_json(self, text: str) -> str:
        """Run a command given as QMP-style JSON text; return the whole reply as JSON text."""
        import json

        try:
            msg = json.loads(text)
        except ValueError as exc:
            raise error(ErrorCode.INVALID_ARG, ERR, f"agent command is not JSON: {exc}") from exc
        if not isinstance(msg, dict) or not isinstance(msg.get("execute"), str):
            raise error(ErrorCode.INVALID_ARG, ERR, "agent command must be an object with an 'execute' member")
        return json.dumps({"return": self.execute(msg["execute"], msg.get("arguments"))})

    # -- conveniences used by tests and quiesce -----------------------------------------------------
    def exec(self, argv: list[str], timeout: float = 30.0) -> tuple[int, bytes, bytes]:
        """Run a program in the guest and wait for it: (exit code, stdout, stderr)."""
        import base64

        pid = self.execute_dict("guest-exec", {"path": argv[0], "arg": argv[1:], "capture-output": True}).get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool):
            raise error(ErrorCode.AGENT_UNRESPONSIVE, ERR, "guest-exec: the reply has no process id")
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            status = self.execute_dict("guest-exec-status", {"pid": pid})
            if status.get("exited") is True:
                try:
                    out = base64.b64decode(status.get("out-data", ""), validate=True)
                    err = base64.b64decode(status.get("err-data", ""), validate=True)
                    code = status.get("exitcode", -1)
                    if not isinstance(code, int):
                        raise TypeError("exit code is not a number")
                except (TypeError, ValueError) as exc:
                    raise error(ErrorCode.AGENT_UNRESPONSIVE, ERR, f"guest-exec-status: malformed reply ({exc})") \
                        from exc
                return code, out, err
            if time.monotonic() > deadline:
                raise error(ErrorCode.OPERATION_TIMEOUT, ERR, f"guest command {argv[0]} did not finish")
            time.sleep(delay)  # guest-exec has no completion event; poll with backoff
            delay = min(delay * 2, 0.1)

    def shell(self, script: str, timeout: float = 30.0) -> str:
        code, out, err = self.exec(["/bin/sh", "-c", script], timeout)
        if code != 0:
            raise error(ErrorCode.OPERATION_FAILED, ERR, f"guest command failed ({code}): {err.decode()[:200]}")
        return out.decode()
