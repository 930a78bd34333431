"""A QEMU monitor that answers badly (not JSON, a bad greeting, hanging up, replies of the wrong shape):
every snapshot operation of the QEMU driver fails with a typed libvirt error, the CLI prints one line, and
nothing changes (no snapshot, no tag in the image, no unfinished journal entry)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from qemu_offline import define_offline

import virtsnap

FAKE_QMP = textwrap.dedent(r'''
    import json, os, socket, sys
    path, mode, pidfile = sys.argv[1], sys.argv[2], sys.argv[3]  # sys.argv[4]: the uuid, as QEMU's -uuid
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(4)
    started = open(f"/proc/{os.getpid()}/stat").read().rsplit(")", 1)[1].split()[19]
    with open(pidfile, "w") as f:
        f.write(f"{os.getpid()} {started}")  # as virtsnap writes QEMU's pid file
    GREETING = {"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": ""},
                        "capabilities": []}}
    WRONG = {"query-status": {"status": 42}, "query-block": [{"qdev": 5, "inserted": "x"}],
             "query-named-block-nodes": "nodes", "query-jobs": [{"id": None}]}
    def messages(conn):
        """QMP's stream of JSON objects (not necessarily one per line)."""
        decoder, buf = json.JSONDecoder(), ""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk.decode()
            while buf.strip():
                try:
                    msg, end = decoder.raw_decode(buf.lstrip())
                except ValueError:
                    break
                buf = buf.lstrip()[end:]
                yield msg

    def serve(conn):
        f = conn.makefile("wb", buffering=0)
        f.write(b"{}\n" if mode == "badgreeting" else json.dumps(GREETING).encode() + b"\n")
        for msg in messages(conn):
            cmd, mid = msg.get("execute"), msg.get("id")
            if cmd == "qmp_capabilities":
                f.write(json.dumps({"return": {}, "id": mid}).encode() + b"\n")
            elif mode == "notjson":
                f.write(b"this is not json {\n")
            elif mode == "hangup":
                return
            elif mode == "wrongtypes":
                f.write(json.dumps({"return": WRONG.get(cmd, {}), "id": mid}).encode() + b"\n")
            else:
                f.write(json.dumps({"id": mid, "surprise": True}).encode() + b"\n")
    while True:
        conn, _ = srv.accept()
        try:
            serve(conn)
        except (OSError, ValueError):
            pass  # the client gave up on us: serve the next one
        conn.close()
''')

MODES = ["notjson", "badgreeting", "hangup", "wrongtypes", "noreturn"]
CODES = {virtsnap.VIR_ERR_OPERATION_FAILED, virtsnap.VIR_ERR_INTERNAL_ERROR, virtsnap.VIR_ERR_OPERATION_INVALID,
         virtsnap.VIR_ERR_OPERATION_TIMEOUT}


@pytest.fixture
def fake_domain(request, monkeypatch):
    work = Path(tempfile.mkdtemp(prefix="vsq-", dir="/tmp"))
    try:
        monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(work / "state"))
        conn, dom, disk = define_offline(work, "fake")
        rt = conn.driver.ctx.rt(dom.UUIDString())
        proc = subprocess.Popen([sys.executable, "-c", FAKE_QMP, str(rt.monitor), request.param, str(rt.pidfile),
                                 dom.UUIDString()])
        try:
            deadline = time.monotonic() + 10
            while not (os.path.exists(rt.monitor) and os.path.exists(rt.pidfile) and Path(rt.pidfile).read_text()):
                assert time.monotonic() < deadline, "the fake monitor did not start"
                time.sleep(0.01)  # waiting for another process to create its socket: no event to wait on
            yield conn, dom, disk, work
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
            conn.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the run leaves no /tmp/vsq-* behind


def _tags(disk: Path) -> list[str]:
    return subprocess.run(["qemu-img", "snapshot", "-U", "-l", str(disk)], capture_output=True, text=True,
                          check=True).stdout.splitlines()[2:]


@pytest.mark.parametrize("fake_domain", MODES, indirect=True)
def test_bad_monitor_replies_are_typed_errors_and_change_nothing(fake_domain):
    conn, dom, disk, work = fake_domain
    before = dom.XMLDesc(virtsnap.VIR_DOMAIN_XML_INACTIVE)
    for attempt in (lambda: dom.snapshotCreateXML("<domainsnapshot><name>s</name></domainsnapshot>"),
                    lambda: dom.snapshotCreateXML("<domainsnapshot><name>e</name></domainsnapshot>",
                                                  virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)):
        with pytest.raises(virtsnap.libvirtError) as exc:
            attempt()
        assert exc.value.get_error_code() in CODES, exc.value.get_error_message()
        assert dom.snapshotNum() == 0 and _tags(disk) == []
        assert dom.XMLDesc(virtsnap.VIR_DOMAIN_XML_INACTIVE) == before
        assert not conn.driver.store.journal_pending(dom.UUIDString())
        assert sorted(p.name for p in work.iterdir()) == ["d.qcow2", "state"]  # no overlay left behind
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "virtsnap", "-c", "qemu:///session", "snapshot-create-as",
                          "fake", "s"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr.startswith("error:") and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 2  # virsh's "error: ..." lines, no dump
