"""Snapshot sizes and the free-space pre-flight on a real TCG guest (issue 17).

Sizes move with what the guest writes: N MiB overwritten after an internal snapshot become that snapshot's
own clusters; N MiB written after an external one grow its overlay. Memory figures are checked against
QEMU's own vm-state-size and the memory file. The pre-flight is checked against a small tmpfs.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

import virtsnap
from virtsnap import VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY as DISK_ONLY

from .conftest import agent_for, domain_xml

pytestmark = pytest.mark.qemu
MiB = 1 << 20
N = 8  # MiB the guest writes
# ext4 adds journal and metadata writes of its own, and qcow2 tables: the stated tolerance above N MiB
SLACK = 3 * MiB


def vm_state_size(image, name) -> int:
    out = subprocess.run(["qemu-img", "info", "-U", "-f", "qcow2", "--output=json", str(image)],
                         capture_output=True, text=True, check=True).stdout
    return next(s["vm-state-size"] for s in json.loads(out)["snapshots"] if s["name"] == name)


def test_internal_size_moves_with_overwritten_data(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    with agent_for(conn, dom) as agent:
        agent.shell(f"dd if=/dev/urandom of=/mnt/blob bs=1M count={N} 2>/dev/null; sync")
    snap = dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>")
    before = snap.getSize()
    assert before["disk"] < SLACK  # nothing of the data is its own yet
    with agent_for(conn, dom) as agent:  # overwrite in place: every cluster is copied on write
        agent.shell(f"dd if=/dev/urandom of=/mnt/blob bs=1M count={N} conv=notrunc 2>/dev/null; sync")
    after = snap.getSize()
    assert N * MiB <= after["disk"] - before["disk"] <= N * MiB + SLACK, (before, after)
    assert not after["disk_exact"]  # QEMU has the image open: as of its last flush
    image = workdir / "demo.qcow2"
    assert after["memory"] == vm_state_size(image, "s1") > 0 and after["memory_exact"]
    dom.destroy()
    offline = snap.getSize()
    assert offline["disk_exact"] and offline["memory"] == after["memory"]
    assert abs(offline["disk"] - after["disk"]) <= SLACK


def test_external_sizes_are_the_overlay_and_the_memory_file(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    memory = workdir / "mem.save"
    agent_for(conn, dom).close()  # booted
    full = dom.snapshotCreateXML(f"<domainsnapshot><name>full</name><memory snapshot='external' file='{memory}'/>"
                                 "</domainsnapshot>")
    size = full.getSize()
    assert size["memory"] == memory.stat().st_blocks * 512 and size["memory_exact"]
    assert abs(size["memory"] - memory.stat().st_size) <= MiB
    ext = dom.snapshotCreateXML("<domainsnapshot><name>ext</name></domainsnapshot>", DISK_ONLY)
    before = ext.getSize()
    with agent_for(conn, dom) as agent:
        agent.shell(f"dd if=/dev/urandom of=/mnt/blob bs=1M count={N} 2>/dev/null; sync")
    after = ext.getSize()
    assert N * MiB <= after["disk"] - before["disk"] <= N * MiB + SLACK, (before, after)
    assert after["memory"] == 0 and after["disk_exact"]


@pytest.fixture
def small_fs(workdir):
    """A 32 MiB tmpfs, unmounted at the end."""
    mnt = workdir / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32M,mode=0700", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_memory_snapshot_that_cannot_fit_is_refused_before_any_change(guest, workdir, conn, small_fs):
    dom = conn.defineXML(domain_xml(guest, workdir))  # 256 MiB of guest memory
    dom.create()
    agent_for(conn, dom).close()
    memory = small_fs / "mem.save"
    xml = f"<domainsnapshot><name>big</name><memory snapshot='external' file='{memory}'/></domainsnapshot>"
    with pytest.raises(virtsnap.libvirtError) as info:
        dom.snapshotCreateXML(xml)
    message = info.value.get_error_message()
    assert info.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
    assert "memory 256.0 MiB" in message and str(small_fs) in message and "free" in message
    assert "--no-space-check" in message
    assert os.listdir(small_fs) == [] and dom.snapshotNum() == 0 and dom.state()[0] == 1
    assert "demo.qcow2" in dom.XMLDesc()  # still on its own image: no overlay was switched in


def _wait_state(dom, state: int, seconds: float = 120.0) -> list[int]:
    """Poll until the domain reaches `state` (an event from the guest's side, not a timing assumption)."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = dom.state()
        if now[0] == state:
            return now
        time.sleep(0.2)
    return dom.state()


def test_guest_filling_the_host_filesystem_pauses_and_is_explained(guest, workdir, conn, small_fs, capsys):
    from virtsnap.cli import main as cli_main

    image = small_fs / "demo.qcow2"  # the data disk lives on the 32 MiB tmpfs; the guest sees 64 MiB
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", guest.data_template, str(image)], check=True)
    xml = domain_xml(guest, workdir).replace(str(workdir / "demo.qcow2"), str(image))
    dom = conn.defineXML(xml)
    dom.create()
    with agent_for(conn, dom) as agent:
        agent.shell("(dd if=/dev/urandom of=/mnt/fill bs=1M count=48; sync; echo done > /mnt/fill.done) "
                    ">/dev/null 2>&1 &")
    assert _wait_state(dom, virtsnap.VIR_DOMAIN_PAUSED) == [virtsnap.VIR_DOMAIN_PAUSED, 5]  # paused: I/O error
    findings = dom.snapshotCheck()
    notes = [f for f in findings if f.kind == "paused-io-error"]
    assert len(notes) == 1 and notes[0].subject == "disk vda" and str(image) in notes[0].detail
    assert "no space left" in notes[0].detail and not notes[0].drift
    capsys.readouterr()
    assert cli_main.main(["-q", "-c", "qemu:///session", "domstate demo --reason"]) == 0
    assert capsys.readouterr().out.strip() == "paused (I/O error)"
    # room again: resumed, the guest finishes its writes and nothing was lost or corrupted
    subprocess.run(["mount", "-o", "remount,size=160M", str(small_fs)], check=True)
    dom.resume()
    with agent_for(conn, dom) as agent:
        agent.shell("while [ ! -e /mnt/fill.done ]; do sleep 0.2; done")
        assert agent.shell("wc -c < /mnt/fill").strip() == str(48 * MiB)
    dom.destroy()
    check = subprocess.run(["qemu-img", "check", "-f", "qcow2", str(image)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
