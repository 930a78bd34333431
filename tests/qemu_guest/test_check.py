"""snapshot-check and --repair against real images and a real QEMU: every kind of drift is produced the way
it happens in practice (a tag made or removed by hand, an overlay left behind, a backing file gone, a guest
left frozen or paused by a migration), found, repaired where safe and explained where not."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import virtsnap
from virtsnap import VIR_DOMAIN_SNAPSHOT_CHECK_REPAIR as REPAIR
from virtsnap import VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY as DISK_ONLY
from virtsnap import VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY as METADATA_ONLY

from .conftest import agent_for, domain_xml, image_tags

pytestmark = pytest.mark.qemu


def kinds(findings, drift_only=True):
    return sorted((f.kind, f.subject) for f in findings if f.drift or not drift_only)


def cli(workdir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, VIRTSNAP_QEMU_STATE_DIR=str(workdir / "state"))
    return subprocess.run([sys.executable, "-m", "virtsnap", "-c", "qemu:///session", *argv],
                          env=env, capture_output=True, text=True, timeout=120)


def test_untracked_and_lost_internal_snapshots(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    disk = str(workdir / "demo.qcow2")
    assert dom.snapshotCheck(0) == []
    s1 = dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>")
    subprocess.run(["qemu-img", "snapshot", "-c", "by-hand", disk], check=True)  # made outside virtsnap
    subprocess.run(["qemu-img", "snapshot", "-d", "s1", disk], check=True)  # its data removed by hand

    out = cli(workdir, "snapshot-check", "demo", "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 1 and report["drift"] is True
    assert sorted((f["kind"], f["subject"]) for f in report["findings"]) == [
        ("lost-snapshot", "s1"), ("untracked-snapshot", "by-hand")]
    assert dom.snapshotListNames() == ["s1"]  # a check without --repair changes nothing

    fixed = dom.snapshotCheck(REPAIR)
    assert all(f.repaired for f in fixed) and kinds(fixed) == [("lost-snapshot", "s1"),
                                                                ("untracked-snapshot", "by-hand")]
    assert sorted(dom.snapshotListNames()) == ["by-hand", "s1"]
    imported = dom.snapshotLookupByName("by-hand")
    assert "<state>shutoff</state>" in imported.getXMLDesc()
    with pytest.raises(virtsnap.libvirtError) as exc:
        imported.getParent()  # imported as a root
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_NO_DOMAIN_SNAPSHOT
    after = dom.snapshotCheck(0)
    assert kinds(after) == [] and kinds(after, drift_only=False) == [("marked-lost", "s1")]
    out = cli(workdir, "snapshot-check", "demo")
    assert out.returncode == 0 and "marked-lost" in out.stdout

    with pytest.raises(virtsnap.libvirtError) as exc:
        dom.revertToSnapshot(s1)
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
    assert "found lost by snapshot-check" in exc.value.get_error_message()
    dom.revertToSnapshot(imported)  # the imported one is a working snapshot
    s1.delete(METADATA_ONLY)
    assert dom.snapshotCheck(0) == [] and image_tags(disk) == ["by-hand"]


def test_orphaned_overlays_and_broken_chains(guest, workdir, conn):
    """Orphans are the ledger's files that no definition reaches: an empty one is removed by --repair, one with
    data is explained; files virtsnap did not make (whatever their names) are never reported nor touched."""
    dom = conn.defineXML(domain_xml(guest, workdir))
    before = dom.XMLDesc()
    base = str(workdir / "demo.qcow2")
    with_data, empty = workdir / "demo.e1", workdir / "demo.e2"  # overlays virtsnap makes (in its ledger)
    dom.snapshotCreateXML("<domainsnapshot><name>e1</name></domainsnapshot>", DISK_ONLY)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 64k", str(with_data)], check=True,
                   capture_output=True)
    conn.defineXML(before)  # the user puts the domain back on its base: the overlay is reached by nothing
    dom.snapshotCreateXML("<domainsnapshot><name>e2</name></domainsnapshot>", DISK_ONLY)
    conn.defineXML(before)
    not_ours = [workdir / "demo.e1-revert7", workdir / "leftover.qcow2"]  # another tool's, named like ours or not
    for path in not_ours:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, str(path)], check=True)

    found = dom.snapshotCheck(0)
    assert kinds(found) == [("orphaned-overlay", str(with_data)), ("orphaned-overlay", str(empty))]
    fixed = {f.subject: f for f in dom.snapshotCheck(REPAIR)}
    assert fixed[str(empty)].repaired and not empty.exists()
    assert not fixed[str(with_data)].repaired and "holds data" in fixed[str(with_data)].fix
    assert with_data.exists() and all(p.exists() for p in not_ours)  # never removed: data, or not virtsnap's
    with_data.unlink()
    assert dom.snapshotCheck(0) == []

    dom.snapshotCreateXML("<domainsnapshot><name>e3</name></domainsnapshot>", DISK_ONLY)
    os.rename(base, base + ".moved")  # the snapshot's image (the overlay's backing file) disappears
    found = dom.snapshotCheck(REPAIR)
    assert ("broken-chain", str(workdir / "demo.e3")) in kinds(found)
    assert ("lost-snapshot", "e3") in kinds(found)
    assert not [f for f in found if f.kind == "broken-chain" and f.repaired]  # explained, not touched
    os.rename(base + ".moved", base)


def test_guest_left_frozen_or_paused_is_thawed_and_resumed(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    with agent_for(conn, dom) as agent:
        agent.execute("guest-fsfreeze-freeze")  # as a process killed between freeze and thaw leaves it
    found = dom.snapshotCheck(0)
    assert kinds(found) == [("guest-frozen", "guest file systems")]
    dom.snapshotCheck(REPAIR)
    with agent_for(conn, dom) as agent:
        assert agent.execute("guest-fsfreeze-status") == "thawed"

    # A memory save that ran to its end with nobody left to resume the guest: QEMU sits in postmigrate.
    from virtsnap.drivers.qemu.monitor import Monitor

    mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "test")
    sink = os.open(os.devnull, os.O_WRONLY)
    try:
        mon.send_fd(sink, "sink")
        mon.execute("migrate", {"uri": "fd:sink"})
        while mon.execute("query-migrate")["status"] != "completed":
            with contextlib.suppress(virtsnap.libvirtError, TimeoutError):
                mon.wait_event(lambda ev: ev.get("event") == "MIGRATION", 1)
        assert mon.execute("query-status")["status"] == "postmigrate"
    finally:
        os.close(sink)
        mon.close()
    assert kinds(dom.snapshotCheck(0)) == [("paused-by-operation", "QEMU")]
    assert [f.repaired for f in dom.snapshotCheck(REPAIR)] == [True]
    assert dom.state()[0] == virtsnap.VIR_DOMAIN_RUNNING and dom.snapshotCheck(0) == []
