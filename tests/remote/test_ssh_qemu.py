"""qemu+ssh://127.0.0.1:PORT/session on a real TCG guest: create, list, revert (a marker file read back through
the guest agent), delete, with the host's progress reports arriving here; a connection that drops mid-create (a
failpoint kills the ssh session at a known point): a typed error here, while the remote virtsnap finishes the
snapshot under its journal; and a local Ctrl-C (SIGINT to the local CLI, its progress on a terminal) mid-save,
which the host undoes as a local Ctrl-C would be undone."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import virtsnap
from tests.qemu_guest.conftest import conn, domain_xml, guest, guest_read, image_tags, workdir  # noqa: F401
from virtsnap import progress
from virtsnap.drivers.qemu.process import BLOCK_MEMO
from virtsnap.errors import ErrorCode, ErrorDomain

from .conftest import VIRTSNAP, Host, _keygen, start_host, stop_host

pytestmark = pytest.mark.qemu


@pytest.fixture
def qemu_hosts(workdir: Path, tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Host]]:  # noqa: F811
    """sshd hosts whose sessions use the test's QEMU state directory (and, if asked, failpoints)."""
    client_key = tmp_path / "client_key"
    _keygen(client_key)
    started: list[Host] = []

    def start(env: dict[str, str]) -> Host:
        host = start_host(tmp_path, f"h{len(started)}", client_key, env, state=workdir / "state")
        started.append(host)
        return host

    yield start
    for host in started:
        stop_host(host)


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").iterdir():
            for child in (task / "children").read_text().split():
                out.append(int(child))
                todo.append(int(child))
    return out


def test_snapshot_lifecycle_over_ssh_on_a_real_guest(guest, workdir, conn, qemu_hosts) -> None:  # noqa: F811
    host = qemu_hosts({})
    local = conn.defineXML(domain_xml(guest, workdir))
    uri = host.uri("qemu", "/session")
    remote = virtsnap.open(uri)
    try:
        dom = remote.lookupByName("demo")
        assert dom.UUIDString() == local.UUIDString()
        dom.create()
        assert guest_read(conn, local, "echo before > /mnt/marker && sync && cat /mnt/marker").strip() == "before"
        reports: list[tuple[str, int, int]] = []
        with progress.reporting(lambda *event: reports.append(event)):  # as the CLI's progress bar listens
            s1 = dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>")
        assert [r for r in reports if r[0] == "save" and r[2] > 0], reports  # the host's save job, step by step
        assert reports[-1][1] == reports[-1][2], reports
        guest_read(conn, local, "echo after > /mnt/marker && sync")
        listed = subprocess.run([VIRTSNAP, "-c", uri, "snapshot-list", "demo", "--name"], capture_output=True,
                                text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert (listed.returncode, listed.stdout.split()) == (0, ["s1"]), listed.stderr
        assert dom.snapshotCurrent().getName() == "s1" and s1.getXMLDesc().count("<state>running</state>") == 1
        dom.revertToSnapshot(s1)
        assert guest_read(conn, local, "cat /mnt/marker").strip() == "before"
        s1.delete()
        assert dom.snapshotNum() == 0
        assert image_tags(str(workdir / "demo.qcow2")) == []
        dom.destroy()
    finally:
        remote.close()


def test_dropped_connection_mid_create_finishes_remotely(guest, workdir, conn, qemu_hosts) -> None:  # noqa: F811
    dropping = qemu_hosts({"VIRTSNAP_FAILPOINTS": "create.data-done=kill-parent"})
    local = conn.defineXML(domain_xml(guest, workdir))
    local.create()
    guest_read(conn, local, "echo kept > /mnt/marker && sync")
    remote = virtsnap.open(dropping.uri("qemu", "/session"))
    try:
        dom = remote.lookupByName("demo")
        (server,) = [p for p in _descendants(dropping.proc.pid)
                     if Path(f"/proc/{p}/comm").read_text().strip() == "virtsnap"]
        pidfd = os.pidfd_open(server)  # to wait for the remote virtsnap's exit without polling
        with pytest.raises(virtsnap.libvirtError) as info:
            dom.snapshotCreateXML("<domainsnapshot><name>s2</name></domainsnapshot>")
        err = info.value
        assert (err.get_error_code(), err.get_error_domain()) == (ErrorCode.SYSTEM_ERROR, ErrorDomain.RPC)
        assert err.get_error_message().startswith("End of file while reading data")
        select.select([pidfd], [], [])  # the remote call runs to its end, then its server exits
        os.close(pidfd)
    finally:
        remote.close()
    # The host finished the snapshot: it is listed, current, in the image, and a revert works.
    assert local.snapshotListNames() == ["s2"]
    assert local.snapshotCurrent().getName() == "s2"
    assert image_tags(str(workdir / "demo.qcow2")) == ["s2"]
    assert local.snapshotCheck() == []
    guest_read(conn, local, "echo changed > /mnt/marker && sync")
    local.revertToSnapshot(local.snapshotLookupByName("s2"))
    assert guest_read(conn, local, "cat /mnt/marker").strip() == "kept"


def test_interrupt_on_the_host_reaches_the_local_cli(guest, workdir, conn, qemu_hosts) -> None:  # noqa: F811
    # The host's virtsnap is interrupted at a known point (as a cancel from a local Ctrl-C interrupts it):
    # its journal rolls the snapshot back and the local command reports it as a local one would.
    host = qemu_hosts({"VIRTSNAP_FAILPOINTS": "create.save-started=sigint"})
    local = conn.defineXML(domain_xml(guest, workdir))
    local.create()
    guest_read(conn, local, "echo alive > /ram/value")
    done = subprocess.run([VIRTSNAP, "-c", host.uri("qemu", "/session"), "snapshot-create-as", "demo", "s1"],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: operation aborted: snapshot 's1' cancelled; nothing was kept and the domain is as before")
    assert local.snapshotNum() == 0
    assert image_tags(str(workdir / "demo.qcow2")) == []
    assert local.state()[0] == 1
    assert guest_read(conn, local, "cat /ram/value").strip() == "alive"


def _read_until(fd: int, text: str, seen: bytearray) -> str:
    """What a terminal showed, up to and including `text` (120 s bound in all, as the progress line keeps
    redrawing: a failure, not a timing)."""
    deadline = time.monotonic() + 120
    while text.encode() not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no {text!r} on the terminal; it showed: {seen.decode(errors='replace')}"
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the terminal's other side is closed (the command ended)
            chunk = b""
        assert chunk, f"no {text!r} on the terminal; it showed: {seen.decode(errors='replace')}"
        seen += chunk
    return seen.decode(errors="replace")


def test_local_ctrl_c_mid_save_cancels_on_the_host(guest, workdir, conn, qemu_hosts) -> None:  # noqa: F811
    # The host pauses its memory save at a known point and says so as progress; that report reaching this
    # terminal is the cue for a SIGINT to the local command, which cancels the remote call as Ctrl-C would.
    host = qemu_hosts({"VIRTSNAP_FAILPOINTS": "create.save-started=pause"})
    local = conn.defineXML(domain_xml(guest, workdir))
    local.create()
    guest_read(conn, local, "echo alive > /ram/value")
    before = sorted(p.name for p in workdir.rglob("*"))
    primary, terminal = pty.openpty()
    try:
        cli = subprocess.Popen([VIRTSNAP, "-c", host.uri("qemu", "/session"), "snapshot-create-as", "demo", "s1"],
                               stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True,
                               env={**os.environ, "TERM": "xterm", "COLUMNS": "200"})
        os.close(terminal)
        seen = bytearray()
        _read_until(primary, "failpoint create.save-started: paused until interrupted", seen)
        cli.send_signal(signal.SIGINT)
        shown = _read_until(primary, "domain is as before", seen)
        assert cli.wait(timeout=120) == 1, shown
    finally:
        os.close(primary)
    # The host said it was finishing its step, undid the snapshot and answered as a local call answers.
    assert "interrupt noted: finishing the current step first" in shown
    assert "error: operation aborted: snapshot 's1' cancelled; nothing was kept and the domain is as before" in shown
    assert local.snapshotNum() == 0
    assert image_tags(str(workdir / "demo.qcow2")) == []
    assert local.snapshotCheck() == []
    assert local.state()[0] == 1
    assert guest_read(conn, local, "cat /ram/value").strip() == "alive"
    # nothing left over (but the running QEMU's block memo beside its monitor, whatever the operation's outcome)
    assert sorted(p.name for p in workdir.rglob("*") if p.name != BLOCK_MEMO) == before
    servers = [p for p in _descendants(host.proc.pid) if Path(f"/proc/{p}/comm").read_text().strip() == "virtsnap"]
    assert servers == []  # the remote virtsnap ended with its connection
