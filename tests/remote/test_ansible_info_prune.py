"""ansible-playbook with virtsnap.virtsnap.snapshot_info and snapshot_prune against three sshd hosts, each with
its own QEMU state (shut-off domains, internal snapshots in real qcow2 images): the trees, current snapshots,
protection and sizes each host reports; prune's check mode lists what would go and changes nothing; prune
removes it; a second run changes nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

import virtsnap

from .conftest import Host, play_json, task_results, write_inventory

INFO = """
- hosts: hv
  gather_facts: false
  tasks:
    - virtsnap.virtsnap.snapshot_info: {uri: "qemu:///session"}
    - virtsnap.virtsnap.snapshot_info: {uri: "qemu:///session", domain: d2, sizes: false}
"""
PRUNE = """
- hosts: hv
  gather_facts: false
  tasks:
    - virtsnap.virtsnap.snapshot_prune: {uri: "qemu:///session", domain: d1, keep_last: 1}
"""


def _define(conn: virtsnap.virConnect, workdir: Path, name: str) -> virtsnap.virDomain:
    disk = workdir / f"{name}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    return conn.defineXML(
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type>"
        f"</os><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>"
        "<target dev='vda' bus='virtio'/></disk></devices></domain>")


@pytest.fixture(scope="module")
def fleet(hosts: list[Host]) -> list[Host]:
    """On every host: d1 with the chain a > b > c > d, reverted to a, c protected; d2 with one snapshot."""
    mp = pytest.MonkeyPatch()
    try:
        for host in hosts:
            mp.setenv("VIRTSNAP_QEMU_STATE_DIR", str(host.state))
            conn = virtsnap.open("qemu:///session")
            d1, d2 = _define(conn, host.state.parent, "d1"), _define(conn, host.state.parent, "d2")
            for name in "abcd":
                d1.snapshotCreateXML(f"<domainsnapshot><name>{name}</name></domainsnapshot>")
            d1.revertToSnapshot(d1.snapshotLookupByName("a"))
            d1.snapshotLookupByName("c").setProtected(True)
            d2.snapshotCreateXML("<domainsnapshot><name>only</name></domainsnapshot>")
            conn.close()
    finally:
        mp.undo()
    return hosts


def _tree(host: Host) -> dict[str, Any]:
    """What a user checks on the host itself: each domain's (snapshot, parent) pairs and current snapshot."""
    mp = pytest.MonkeyPatch()
    mp.setenv("VIRTSNAP_QEMU_STATE_DIR", str(host.state))
    conn = virtsnap.open("qemu:///session")
    try:
        out: dict[str, Any] = {}
        for dom in conn.listAllDomains():
            pairs = sorted((s.getName(), s.getParent().getName() if _has_parent(s) else None)
                           for s in dom.listAllSnapshots())
            out[dom.name()] = (pairs, dom.snapshotCurrent().getName() if dom.hasCurrentSnapshot() else None)
        return out
    finally:
        conn.close()
        mp.undo()


def _has_parent(snap: virtsnap.virDomainSnapshot) -> bool:
    try:
        snap.getParent()
    except virtsnap.libvirtError:
        return False
    return True


def test_snapshot_info_reports_each_hosts_trees(fleet, tmp_path) -> None:
    before = {h.name: _tree(h) for h in fleet}
    run = play_json(tmp_path, write_inventory(tmp_path / "hosts.ini", fleet), INFO)
    assert {h: (s["changed"], s["failures"]) for h, s in run["stats"].items()} == {h.name: (0, 0) for h in fleet}
    for host in fleet:
        every, one = task_results(run, host.name)
        assert set(every["domains"]) == {"d1", "d2"} and set(one["domains"]) == {"d2"}
        d1 = every["domains"]["d1"]
        assert (d1["current"], d1["roots"]) == ("a", ["a"])
        assert [(s["name"], s["parent"], s["children"], s["current"], s["protected"], s["state"])
                for s in d1["snapshots"]] == [("a", None, ["b"], True, False, "shutoff"),
                                              ("b", "a", ["c"], False, False, "shutoff"),
                                              ("c", "b", ["d"], False, True, "shutoff"),
                                              ("d", "c", [], False, False, "shutoff")]
        for snap in d1["snapshots"]:
            assert snap["size"]["memory"] == 0 and snap["size"]["disk"] >= 0 and isinstance(snap["creation_time"], int)
        (only,) = one["domains"]["d2"]["snapshots"]
        assert (only["name"], only["current"], only["size"]) == ("only", True, None)
    assert {h.name: _tree(h) for h in fleet} == before  # info changed nothing


def test_snapshot_prune_check_mode_then_prune_then_unchanged(fleet, tmp_path) -> None:
    inventory = write_inventory(tmp_path / "hosts.ini", fleet)
    before = {h.name: _tree(h) for h in fleet}
    check = play_json(tmp_path, inventory, PRUNE, "--check", "--diff")
    assert {h: (s["changed"], s["failures"]) for h, s in check["stats"].items()} == {h.name: (1, 0) for h in fleet}
    for host in fleet:
        (result,) = task_results(check, host.name)
        # d kept by keep-last 1, c protected, a current; b would go
        assert result["removed"] == ["b"] and result["kept"] == ["d", "c", "a"]
        assert [(d["name"], d["action"], d["reason"]) for d in result["decisions"]] == [
            ("d", "keep", "keep-last"), ("c", "keep", "protected"), ("b", "remove", ""), ("a", "keep", "current")]
        assert result["diff"] == {"before": "d\nc\nb\na\n", "after": "d\nc\na\n"}
    assert {h.name: _tree(h) for h in fleet} == before  # check mode changed nothing

    pruned = play_json(tmp_path, inventory, PRUNE)
    assert {h: (s["changed"], s["failures"]) for h, s in pruned["stats"].items()} == {h.name: (1, 0) for h in fleet}
    for host in fleet:
        (result,) = task_results(pruned, host.name)
        assert result["removed"] == ["b"]
        d1_pairs, current = _tree(host)["d1"]
        assert (d1_pairs, current) == ([("a", None), ("c", "a"), ("d", "c")], "a")  # b's child moved up

    again = play_json(tmp_path, inventory, PRUNE)
    assert {h: (s["changed"], s["failures"]) for h, s in again["stats"].items()} == {h.name: (0, 0) for h in fleet}
