"""A hostile guest agent on the agent socket (silent, trickling bytes, a reply larger than any agent sends, JSON
that is not an object, malformed results): every command ends with a typed libvirt error within its deadline,
never a hang or a raw Python exception."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
from pathlib import Path

import pytest

import virtsnap
from virtsnap.drivers.qemu.agent import MAX_REPLY, Agent

HANG_GUARD = 60.0  # far beyond every deadline below: reaching it means the call hung


class FakeAgent:
    """A unix socket server that answers guest-sync-delimited correctly (unless `mode` is 'silent') and then
    misbehaves as `mode` says."""

    def __init__(self, path: str, mode: str) -> None:
        self.mode = mode
        self.stop = threading.Event()
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen(8)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self.talk, args=(conn,), daemon=True).start()

    def talk(self, conn: socket.socket) -> None:
        decoder, buf = json.JSONDecoder(), ""
        with conn:
            try:
                while not self.stop.is_set():
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk.replace(b"\xff", b"").decode()
                    while buf.strip():
                        try:
                            msg, end = decoder.raw_decode(buf.lstrip())
                        except ValueError:
                            break
                        buf = buf.lstrip()[end:]
                        self.answer(conn, msg)
            except (OSError, ValueError):
                return

    def answer(self, conn: socket.socket, msg: dict) -> None:
        cmd = msg.get("execute")
        if self.mode == "silent":
            return
        if cmd == "guest-sync-delimited":
            conn.sendall(b"\xff" + json.dumps({"return": msg["arguments"]["id"]}).encode() + b"\n")
            return
        if self.mode == "trickle":  # a byte at a time, never a whole line
            while not self.stop.wait(0.05):
                conn.sendall(b" ")
        elif self.mode == "huge":  # an endless reply (bounded here at 4 caps, then a trickle)
            conn.sendall(b'{"return": "')
            for _ in range(4):
                conn.sendall(b"x" * MAX_REPLY)
            while not self.stop.wait(0.05):
                conn.sendall(b"x")
        elif self.mode == "list":
            conn.sendall(b"[1, 2, 3]\n")
        elif self.mode == "string":
            conn.sendall(b'"frozen"\n')
        elif self.mode == "notjson":
            conn.sendall(b"{not json\n")
        elif self.mode == "error-string":
            conn.sendall(b'{"error": "boom"}\n')
        elif self.mode == "no-return":
            conn.sendall(b'{"surprise": 1}\n')
        elif self.mode == "exec-bad-pid":
            conn.sendall(b'{"return": {"pid": "one"}}\n' if cmd == "guest-exec" else b'{"return": {}}\n')
        elif self.mode == "exec-bad-status":
            reply = {"pid": 7} if cmd == "guest-exec" else {"exited": True, "exitcode": "0", "out-data": "%%"}
            conn.sendall(json.dumps({"return": reply}).encode() + b"\n")

    def close(self) -> None:
        self.stop.set()
        self.server.close()


@pytest.fixture
def sock_dir():
    path = Path(tempfile.mkdtemp(prefix="vsa-", dir="/tmp"))
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def run_bounded(fn):
    """Run `fn` in a thread; the result or exception, or a failure if it hangs."""
    out: dict = {}

    def go() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    thread.join(HANG_GUARD)
    assert not thread.is_alive(), "the agent call hung"
    return out


CASES = {
    # mode: (call, expected code)
    "silent": (lambda a: a.execute("guest-ping"), virtsnap.VIR_ERR_AGENT_UNRESPONSIVE),
    "trickle": (lambda a: a.execute("guest-ping"), virtsnap.VIR_ERR_AGENT_UNRESPONSIVE),
    "huge": (lambda a: a.execute("guest-ping"), virtsnap.VIR_ERR_AGENT_UNRESPONSIVE),
    "list": (lambda a: a.execute("guest-ping"), virtsnap.VIR_ERR_AGENT_UNRESPONSIVE),
    "string": (lambda a: a.execute("guest-fsfreeze-status"), virtsnap.VIR_ERR_AGENT_UNRESPONSIVE),
    "notjson": (lambda a: a.execute("guest-ping"), virtsnap.VIR_ERR_AGENT_UNRESPONSIVE),
    "error-string": (lambda a: a.execute("guest-ping"), virtsnap.VIR_ERR_OPERATION_FAILED),
    "no-return": (lambda a: a.execute("guest-ping"), virtsnap.VIR_ERR_AGENT_UNRESPONSIVE),
    "exec-bad-pid": (lambda a: a.exec(["/bin/true"]), virtsnap.VIR_ERR_AGENT_UNRESPONSIVE),
    "exec-bad-status": (lambda a: a.exec(["/bin/true"]), virtsnap.VIR_ERR_AGENT_UNRESPONSIVE),
}


@pytest.mark.parametrize("mode", sorted(CASES))
def test_hostile_agent_gives_a_typed_error(sock_dir, mode):
    path = str(sock_dir / "agent.sock")
    fake = FakeAgent(path, mode)
    try:
        call, code = CASES[mode]

        def attempt():
            with Agent(path, timeout=1.0) as agent:
                return call(agent)

        out = run_bounded(attempt)
        assert "value" not in out, out
        exc = out["error"]
        assert isinstance(exc, virtsnap.libvirtError), repr(exc)
        assert exc.get_error_code() == code, exc.get_error_message()
        assert "\n" not in exc.get_error_message()
    finally:
        fake.close()


def test_agent_command_json_rejects_a_non_object_reply(sock_dir):
    """The path of virsh qemu-agent-command: a reply that is a JSON list is an error, not a crash."""
    path = str(sock_dir / "agent.sock")
    fake = FakeAgent(path, "list")
    try:
        out = run_bounded(lambda: Agent(path, timeout=1.0).command_json('{"execute": "guest-info"}'))
        assert isinstance(out.get("error"), virtsnap.libvirtError)
        assert out["error"].get_error_code() == virtsnap.VIR_ERR_AGENT_UNRESPONSIVE
    finally:
        fake.close()
