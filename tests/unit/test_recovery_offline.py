"""A journal entry whose recovery fails (here: a revert whose snapshot lost its data) does not block the
domain: later operations run, snapshot-check reports the entry with the reason, and --repair finishes it once
the cause is gone. No guest needed: the domain is shut off and qemu-img does the work."""

from __future__ import annotations

import subprocess

from qemu_offline import define_offline

import virtsnap
from virtsnap import VIR_DOMAIN_SNAPSHOT_CHECK_REPAIR as REPAIR


def test_a_recovery_that_fails_is_reported_and_retried(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    conn, dom, disk = define_offline(tmp_path, "rec")
    snap = dom.snapshotCreateXML("<domainsnapshot><name>s</name></domainsnapshot>")
    subprocess.run(["qemu-img", "snapshot", "-d", "s", str(disk)], check=True)  # its data gone by hand
    # as a process that died during `snapshot-revert rec s` leaves it
    conn.driver.store.journal_begin(dom.UUIDString(), "revert", {"name": "s", "flags": 0})

    other = virtsnap.open("qemu:///session")  # the next process: its lookup tries the recovery, which fails
    dom2 = other.lookupByName("rec")
    dom2.snapshotCreateXML("<domainsnapshot><name>t</name></domainsnapshot>")  # the domain is not blocked
    found = {f.kind: f for f in dom2.snapshotCheck(0)}
    assert "has no snapshot 's'" in found["unfinished-operation"].detail
    assert not found["unfinished-operation"].repaired and "lost-snapshot" in found

    snap.delete(virtsnap.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)  # the cause goes
    fixed = {f.kind: f for f in dom2.snapshotCheck(REPAIR)}
    assert fixed["unfinished-operation"].repaired
    assert dom2.snapshotCheck(0) == [] and dom2.snapshotListNames() == ["t"]
    assert not other.driver.store.journal_pending(dom.UUIDString())
