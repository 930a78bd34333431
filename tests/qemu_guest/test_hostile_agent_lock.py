"""A hostile guest agent while virtsnap holds the domain lock: a QUIESCE snapshot whose agent answers the
handshake and then trickles bytes forever fails with a typed error after the agent deadline, changes nothing, and
leaves the domain lock free for the next operation (another connection)."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

import virtsnap

from .test_argv_injection import domain, qcow2

pytestmark = pytest.mark.qemu


def trickling_agent(path: Path, stop: threading.Event) -> socket.socket:
    """Answers guest-sync-delimited, then sends one space every 50 ms and never a whole reply."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(8)

    def talk(conn: socket.socket) -> None:
        decoder, buf = json.JSONDecoder(), ""
        with conn:
            try:
                while not stop.is_set():
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
                        if msg.get("execute") == "guest-sync-delimited":
                            conn.sendall(b"\xff" + json.dumps({"return": msg["arguments"]["id"]}).encode() + b"\n")
                        else:
                            while not stop.wait(0.05):
                                conn.sendall(b" ")
            except OSError:
                return

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=talk, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server


def test_trickling_agent_during_quiesce_releases_the_lock(conn, workdir):
    qcow2(workdir / "disk")
    dom = conn.defineXML(domain("qa", workdir / "disk", agent=workdir / "agent.sock"))
    dom.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)
    agent = workdir / "agent.sock"
    agent.unlink()  # QEMU keeps its listening socket; virtsnap now reaches the fake at this path
    stop = threading.Event()
    server = trickling_agent(agent, stop)
    overlay = workdir / "disk.ovl"
    outcome: dict = {}

    def snapshot() -> None:
        try:
            dom.snapshotCreateXML(f"<domainsnapshot><name>q</name><disks><disk name='vda' snapshot='external'>"
                                  f"<source file='{overlay}'/></disk></disks></domainsnapshot>",
                                  virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
                                  | virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE)
        except virtsnap.libvirtError as exc:
            outcome["error"] = exc

    try:
        worker = threading.Thread(target=snapshot, daemon=True)
        worker.start()
        worker.join(120)  # far beyond the agent's deadlines (10 s freeze, 2 s thaw): reaching it is a hang
        assert not worker.is_alive(), "the snapshot hung on the agent while holding the domain lock"
        exc = outcome["error"]
        assert exc.get_error_code() == virtsnap.VIR_ERR_AGENT_UNRESPONSIVE
        assert "nothing was changed" in exc.get_error_message()
        assert dom.snapshotNum() == 0 and not overlay.exists()
        other = virtsnap.open("qemu:///session")  # another connection: its own flock on the domain lock
        try:
            other_dom = other.lookupByName("qa")
            other_dom.resume()
            assert other_dom.state()[0] == virtsnap.VIR_DOMAIN_RUNNING
        finally:
            other.close()
    finally:
        stop.set()
        server.close()
        dom.destroy()
