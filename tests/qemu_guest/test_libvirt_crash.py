"""Crash safety of virtsnap's own external revert and delete on libvirt+qemu:///system (libvirtd 9.0, tiny guest,
TCG): each failpoint of drivers/libvirtd is hit with SIGKILL in a separate process, then the next call on the
domain through a new connection must find the state before the call or after it (the marker file and the RAM
value say which), never one in between, and no file virtsnap made left behind unused.

The test fails when a failpoint in drivers/libvirtd has no crash case here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import libvirt
import pytest

import virtsnap
from virtsnap.store.db import MetadataStore

from .test_libvirt_driver import wait_for_agent
from .test_libvirt_external import IMAGES, ext, mark, markers, setup, source  # noqa: F401 (setup: a fixture)

SRC = Path(virtsnap.__file__).resolve().parent / "drivers" / "libvirtd"
REVERT = ["libvirt-revert.begun", "libvirt-revert.overlays-made", "libvirt-revert.stopped", "libvirt-revert.defined",
          "libvirt-revert.started", "libvirt-revert.redefined"]
DELETE = ["libvirt-delete.begun", "libvirt-delete.job-started", "libvirt-delete.step-done",
          "libvirt-delete.repointed", "libvirt-delete.forgotten"]

SCRIPT = """
import sys, virtsnap
dom = virtsnap.open("libvirt+qemu:///system").lookupByName(sys.argv[1])
snap = dom.snapshotLookupByName(sys.argv[3])
dom.revertToSnapshot(snap) if sys.argv[2] == "revert" else snap.delete(0)
"""

pytestmark = pytest.mark.qemu


def killed(state: Path, failpoint: str, op: str, name: str, domain: str) -> None:
    env = dict(os.environ, VIRTSNAP_LIBVIRT_STATE_DIR=str(state), VIRTSNAP_FAILPOINTS=f"{failpoint}=sigkill")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, domain, op, name], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == -9, f"{failpoint} was not reached: rc {proc.returncode} {proc.stderr}"


def used_files(theirs) -> set[str]:
    """Every file the domain or a snapshot names."""
    found = set(re.findall(r"<source file='([^']+)'", theirs.XMLDesc(0)))
    found |= set(re.findall(r"<source file='([^']+)'", theirs.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
    for snap in theirs.listAllSnapshots():
        found |= set(re.findall(r"<source file='([^']+)'", snap.getXMLDesc()))
    return found


def test_killed_revert_and_delete_end_before_or_after(setup):  # noqa: F811 (the fixture, imported)
    _conn, dom, theirs, _disk, state = setup
    uuid = theirs.UUIDString()
    dom.create()
    wait_for_agent(dom)
    mark(dom, "1")
    dom.snapshotCreateXML(ext("m1", memory=True))
    seen: dict[str, str] = {}
    for failpoint in REVERT:
        mark(dom, "2")
        killed(state, failpoint, "revert", "m1", theirs.name())
        again = virtsnap.open("libvirt+qemu:///system")
        ours = again.lookupByName(theirs.name())
        ours.state()  # the next call on the domain: the killed revert is finished first
        assert theirs.snapshotCurrent().getName() == "m1" and theirs.isActive(), failpoint
        wait_for_agent(ours)
        found = markers(ours)
        assert found in (["disk-1", "ram-1"], ["disk-2", "ram-2"]), (failpoint, found)
        seen[failpoint] = "after" if found == ["disk-1", "ram-1"] else "before"
        store = MetadataStore(state)
        made = {row.path for row in store.ledger(uuid)}
        assert not store.journal_pending(uuid), failpoint
        store.close()
        assert made <= used_files(theirs) and all(os.path.exists(p) for p in made), (failpoint, made)
        again.close()

    for n, failpoint in enumerate(DELETE):
        name = f"k{n}"
        top = source(theirs)
        dom.snapshotCreateXML(ext(name), virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
        mark(dom, f"k{n}")
        killed(state, failpoint, "delete", name, theirs.name())
        again = virtsnap.open("libvirt+qemu:///system")
        ours = again.lookupByName(theirs.name())
        ours.state()
        names = theirs.snapshotListNames()
        seen[failpoint] = "after" if name not in names else "before"
        assert seen[failpoint] == "after" or source(theirs) == str(IMAGES / f"{name}.qcow2"), failpoint
        if seen[failpoint] == "after":
            assert source(theirs) == top, failpoint  # merged back into the image it was taken on
        assert markers(ours) == [f"disk-k{n}", f"ram-k{n}"], failpoint  # the running guest lost nothing
        assert theirs.snapshotCurrent().getName() == ("m1" if seen[failpoint] == "after" else name), failpoint
        again.close()
    print(f"\nlibvirt+ crash test: {len(seen)} failpoints: {seen}")
    assert set(seen) == set(REVERT) | set(DELETE)


def test_every_failpoint_has_a_crash_case():
    names: set[str] = set()
    for path in SRC.glob("*.py"):
        names |= set(re.findall(r'hit\("([a-z.-]+)"\)', path.read_text()))
    assert names == set(REVERT) | set(DELETE)
