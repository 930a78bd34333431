"""The virtsnap.virtsnap collection against a domain of a real root libvirtd 9.0 (uri: libvirt+qemu:///system),
over ssh to an sshd host as Ansible runs it: snapshot present (changed, then unchanged), reverted and absent,
external disk-only snapshots that libvirt 9.0 itself can neither revert to nor delete; snapshot_info reports the
tree and a snapshot-protect mark; snapshot_prune keeps the protected snapshot, and once it is unprotected its
check mode lists it and changes nothing, then it is removed. Checked through libvirt-python after every play."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import libvirt
import pytest

import virtsnap
from tests.qemu_guest.conftest import libvirtd  # noqa: F401

from .conftest import Host, _keygen, play_json, start_host, stop_host, task_results, write_inventory

NAME = f"virtsnap-ansible-libvirt-{os.getpid()}"
IMAGES = Path("/var/lib/libvirt/images") / NAME
URI = "libvirt+qemu:///system"

SNAPSHOT = """
- hosts: hv
  gather_facts: false
  tasks:
    - virtsnap.virtsnap.snapshot:
        uri: "libvirt+qemu:///system"
        domain: "{{ domain }}"
        name: "{{ item }}"
        state: "{{ wanted }}"
        disk_only: true
      loop: "{{ names.split(',') }}"
"""
INFO = """
- hosts: hv
  gather_facts: false
  tasks:
    - virtsnap.virtsnap.snapshot_info: {uri: "libvirt+qemu:///system", domain: "{{ domain }}"}
"""
PRUNE = """
- hosts: hv
  gather_facts: false
  tasks:
    - virtsnap.virtsnap.snapshot_prune: {uri: "libvirt+qemu:///system", domain: "{{ domain }}", keep_last: 1}
"""


@pytest.fixture
def hv(libvirtd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    """One sshd host whose sessions keep virtsnap's libvirt+ state where this test reads it, and a shut-off
    domain in libvirtd with one qcow2 disk."""
    state = tmp_path / "libvirt-state"
    monkeypatch.setenv("VIRTSNAP_LIBVIRT_STATE_DIR", str(state))
    client_key = tmp_path / "client_key"
    _keygen(client_key)
    host = start_host(tmp_path, "hv", client_key, {"VIRTSNAP_LIBVIRT_STATE_DIR": str(state)})
    IMAGES.mkdir(parents=True, exist_ok=True)
    disk = IMAGES / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    oracle = libvirt.open("qemu:///system")
    theirs = oracle.defineXML(f"""<domain type='qemu'><name>{NAME}</name><memory unit='MiB'>64</memory>
      <os><type arch='x86_64' machine='pc'>hvm</type></os><devices><disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
      </devices></domain>""")
    try:
        yield host, theirs, str(disk)
    finally:
        stop_host(host)
        for snap in theirs.listAllSnapshots():
            snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
        theirs.undefine()
        oracle.close()
        shutil.rmtree(IMAGES, ignore_errors=True)


def play(tmp: Path, host: Host, playbook: str, *extra: str) -> tuple[tuple[int, int], list[dict[str, Any]]]:
    """(changed, failures) and the task results of one ansible-playbook run on the host; a looped task counts
    each item it changed (Ansible's recap counts the task once)."""
    run = play_json(tmp, write_inventory(tmp / "hosts.ini", [host]), playbook, "-e", f"domain={NAME}", *extra)
    stats = run["stats"][host.name]
    results = task_results(run, host.name)
    changed = sum(sum(bool(i["changed"]) for i in r["results"]) if "results" in r else bool(r["changed"])
                  for r in results)
    return (changed, stats["failures"]), results


def tree(theirs) -> tuple[str, list[tuple[str, str | None]], str | None]:
    """libvirt's own view: the disk's source, (snapshot, parent) pairs, the current snapshot."""
    xml = theirs.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    start = xml.index("<source file='") + len("<source file='")
    pairs = []
    for snap in theirs.listAllSnapshots():
        try:
            parent = snap.getParent().getName()
        except libvirt.libvirtError:
            parent = None
        pairs.append((snap.getName(), parent))
    current = theirs.snapshotCurrent().getName() if theirs.hasCurrentSnapshot() else None
    return xml[start:xml.index("'", start)], sorted(pairs), current


def test_snapshot_info_and_prune_modules_on_libvirtd(hv, tmp_path: Path) -> None:
    host, theirs, disk = hv
    present = ("-e", "wanted=present", "-e", "names=pre,later1,later2")
    assert play(tmp_path, host, SNAPSHOT, *present)[0] == (3, 0)
    assert play(tmp_path, host, SNAPSHOT, *present)[0] == (0, 0)  # a second run changes nothing
    top, pairs, current = tree(theirs)
    assert pairs == [("later1", "pre"), ("later2", "later1"), ("pre", None)] and current == "later2"
    assert top == str(IMAGES / "disk.later2")  # libvirt's own external snapshots, named by libvirt

    # reverted: libvirt 9.0 refuses external snapshots; check mode reports a change and makes none
    before = tree(theirs)
    assert play(tmp_path, host, SNAPSHOT, "-e", "wanted=reverted", "-e", "names=pre", "--check")[0] == (1, 0)
    assert tree(theirs) == before
    assert play(tmp_path, host, SNAPSHOT, "-e", "wanted=reverted", "-e", "names=pre")[0] == (1, 0)
    top, pairs, current = tree(theirs)
    assert current == "pre" and pairs == before[1]
    assert subprocess.run(["qemu-img", "info", "-U", "-f", "qcow2", "--output=json", top], capture_output=True,
                          text=True, check=True).stdout.count(f'"backing-filename": "{disk}"') == 1

    # a mark set through virtsnap on the host: snapshot_info shows it, prune keeps the marked snapshot
    conn = virtsnap.open(URI)
    try:
        conn.lookupByName(NAME).snapshotLookupByName("later1").setProtected(True)
        status, (info,) = play(tmp_path, host, INFO)
        assert status == (0, 0)
        report = info["domains"][NAME]
        assert report["current"] == "pre" and report["roots"] == ["pre"]
        assert [(s["name"], s["parent"], s["current"], s["protected"]) for s in report["snapshots"]] == [
            ("pre", None, True, False), ("later1", "pre", False, True), ("later2", "later1", False, False)]
        status, (kept,) = play(tmp_path, host, PRUNE)
        assert status == (0, 0) and kept["removed"] == []
        assert {d["name"]: d["reason"] for d in kept["decisions"]}["later1"] == "protected"

        conn.lookupByName(NAME).snapshotLookupByName("later1").setProtected(False)
    finally:
        conn.close()
    before = tree(theirs)
    files = sorted(os.listdir(IMAGES))
    status, (check,) = play(tmp_path, host, PRUNE, "--check")
    assert status == (1, 0) and check["removed"] == ["later1"]
    assert tree(theirs) == before and sorted(os.listdir(IMAGES)) == files
    status, (pruned,) = play(tmp_path, host, PRUNE)
    assert status == (1, 0) and pruned["removed"] == ["later1"]
    assert tree(theirs)[1:] == ([("later2", "pre"), ("pre", None)], "pre")  # later2 moved up to pre
    assert play(tmp_path, host, PRUNE)[0] == (0, 0)

    # absent: check mode changes nothing; then both go (virtsnap's own external delete, shut off), then no-op
    absent = ("-e", "wanted=absent", "-e", "names=later2,pre")
    before = tree(theirs)
    assert play(tmp_path, host, SNAPSHOT, *absent, "--check")[0] == (2, 0)
    assert tree(theirs) == before
    assert play(tmp_path, host, SNAPSHOT, *absent)[0] == (2, 0)
    assert tree(theirs) == (disk, [], None)  # the domain is back on its own image
    assert play(tmp_path, host, SNAPSHOT, *absent)[0] == (0, 0)
