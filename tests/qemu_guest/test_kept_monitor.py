"""The second QMP monitor one long-lived connection keeps open between its operations: it blocks no other
process (they use the shared monitor), follows QEMU when it is restarted by anyone, and a QEMU that has none
(started by an older virtsnap) is managed through the shared monitor as before."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from virtsnap.drivers.qemu.monitor import Monitor

from .conftest import domain_xml, image_tags

pytestmark = pytest.mark.qemu


def snap_xml(name: str) -> str:
    return f"<domainsnapshot><name>{name}</name></domainsnapshot>"


def cli(*argv: str) -> str:
    """virtsnap in another process (the same state directory, from the environment the fixture set)."""
    out = subprocess.run([sys.executable, "-m", "virtsnap", "-c", "qemu:///session", *argv], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_kept_monitor_blocks_no_other_process_and_follows_a_restarted_qemu(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir, memory_mib=128, agent=False))
    dom.create()
    image = str(workdir / "demo.qcow2")
    dom.snapshotCreateXML(snap_xml("a"))  # this connection now keeps the second monitor open
    runtime = Path(conn.driver.runtime) / dom.UUIDString()

    # other processes work meanwhile, each through the shared monitor, and so does a QMP client of its own
    cli("snapshot-create-as", "demo", "b")
    cli("snapshot-delete", "demo", "a")
    mon = Monitor(str(runtime / "monitor.sock"), "other", connect_timeout=30)
    try:
        assert mon.execute("query-status")["status"] == "running"
    finally:
        mon.close()
    assert image_tags(image) == ["b"]

    # the kept connection still serves this one, and sees what the others did
    dom.snapshotCreateXML(snap_xml("c"))
    dom.snapshotLookupByName("b").delete()
    assert image_tags(image) == ["c"] and dom.snapshotListNames() == ["c"]

    # another process restarts QEMU: the next operation here reaches the new one
    cli("destroy", "demo")
    cli("start", "demo")
    dom.snapshotCreateXML(snap_xml("d"))
    dom.snapshotLookupByName("c").delete()
    assert image_tags(image) == ["d"] and dom.state()[0] == 1

    # and so does one after this connection restarted it itself
    dom.destroy()
    dom.create()
    dom.snapshotLookupByName("d").delete()
    assert image_tags(image) == [] and dom.snapshotNum() == 0


def test_a_qemu_without_a_second_monitor_is_managed_through_the_shared_one(guest, workdir, conn):
    """As a QEMU started by an older virtsnap: no monitor-kept.sock beside monitor.sock."""
    dom = conn.defineXML(domain_xml(guest, workdir, memory_mib=128, agent=False))
    dom.create()
    (Path(conn.driver.runtime) / dom.UUIDString() / "monitor-kept.sock").unlink()
    image = str(workdir / "demo.qcow2")
    dom.snapshotCreateXML(snap_xml("a"))
    cli("snapshot-create-as", "demo", "b")  # another process meanwhile: nothing is held between operations
    dom.snapshotLookupByName("a").delete()
    assert image_tags(image) == ["b"] and dom.snapshotListNames() == ["b"] and dom.state()[0] == 1
