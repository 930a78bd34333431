"""Snapshot sizes, protection and prune on vcsim (issue 17).

getSize on vcsim agrees with govc's reckoning computed here from the raw config.layoutEx. vcsim 0.24.2 reports
every snapshot file with size 0 (it neither writes delta disks nor measures its files), so the arithmetic
itself (which files count, the parent's chain left out, the current snapshot's running delta) is checked on a
layoutEx built from pyVmomi's own data objects with known sizes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import pyVmomi  # noqa: F401  (the esx extra: a missing pyVmomi is an error, not a skip)

import virtsnap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest_vcsim import make_vcsim_fixture
from esxutil import VM0, create, open_auth, raw_si, raw_vm, reset_vm

vcsim = make_vcsim_fixture(scope="module")


@pytest.fixture(scope="module")
def si(vcsim: Any) -> Any:
    with raw_si(vcsim) as si:
        yield si


@pytest.fixture
def dom(vcsim: Any, si: Any) -> Any:
    reset_vm(si, VM0, "poweredOn")
    conn = open_auth(vcsim)
    yield conn.lookupByName(VM0)
    conn.close()


def host_path(vm: Any, ds_path: str) -> Path:
    """'[LocalDS_0] dir/file' -> the file in vcsim's datastore directory (the datastore's url)."""
    ds_name, rel = ds_path[1:].split("] ", 1)
    ds = next(d for d in vm.datastore if d.name == ds_name)
    return Path(ds.info.url) / rel


def govc_size(vm: Any, moref: str) -> int:
    """govc's snapshot size from the raw layoutEx: .vmsn + .vmem + chain files the parent lacks."""
    layout = vm.layoutEx
    files = {f.key: f.size for f in layout.file}
    snaps = {s.key._moId: s for s in layout.snapshot}

    def keys(s: Any) -> set[int]:
        return {k for d in s.disk for c in d.chain for k in c.fileKey}

    parent = next((n.parent for n in _tree_nodes(vm) if n.snapshot._moId == moref), None)
    mine = snaps[moref]
    extra = keys(mine) - (keys(snaps[parent._moId]) if parent is not None else set())
    memory = files.get(mine.memoryKey, 0) if mine.memoryKey is not None and mine.memoryKey >= 0 else 0
    return files[mine.dataKey] + memory + sum(files[k] for k in extra)


def _tree_nodes(vm: Any) -> list[Any]:
    out: list[Any] = []

    class Node:
        def __init__(self, snapshot: Any, parent: Any) -> None:
            self.snapshot, self.parent = snapshot, parent

    def walk(nodes: Any, parent: Any) -> None:
        for n in nodes:
            out.append(Node(n.snapshot, parent))
            walk(n.childSnapshotList, n.snapshot)

    walk(vm.snapshot.rootSnapshotList, None)
    return out


def test_size_on_vcsim_matches_govc(dom: Any, si: Any) -> None:
    for name in ("a", "b", "c"):
        create(dom, name)
    vm = raw_vm(si, VM0)
    for name in ("a", "b", "c"):
        size = dom.snapshotLookupByName(name).getSize()
        assert size["memory_exact"] and size["disk_exact"]
        assert size["memory"] + size["disk"] == govc_size(vm, _moref(name, vm))


def _moref(name: str, vm: Any) -> str:
    def walk(nodes: Any) -> Any:
        for n in nodes:
            if n.name == name:
                return n.snapshot._moId
            found = walk(n.childSnapshotList)
            if found:
                return found
        return None
    return str(walk(vm.snapshot.rootSnapshotList))


def test_layout_arithmetic() -> None:
    from pyVmomi import vim

    from virtsnap.drivers.esx.tree import snapshot_size

    lx = vim.vm.FileLayoutEx
    f = [lx.FileInfo(key=k, name=n, size=s, type=t) for k, n, s, t in (
        (0, "base-flat.vmdk", 10_000, "diskExtent"), (1, "d1-delta.vmdk", 700, "diskExtent"),
        (2, "d2-delta.vmdk", 50, "diskExtent"), (3, "d3-delta.vmdk", 9, "diskExtent"),
        (4, "s1.vmsn", 30, "snapshotData"), (5, "s1.vmem", 4000, "snapshotMemory"), (6, "s2.vmsn", 20, "snapshotData"))]

    def disk(*keys: int) -> Any:
        return [lx.DiskLayout(key=2000, chain=[lx.DiskUnit(fileKey=[k]) for k in keys])]

    s1 = vim.vm.Snapshot("snapshot-1")
    s2 = vim.vm.Snapshot("snapshot-2")
    layout = lx(file=f, disk=disk(0, 1, 2, 3), snapshot=[
        lx.SnapshotLayout(key=s1, dataKey=4, memoryKey=5, disk=disk(0, 1)),
        lx.SnapshotLayout(key=s2, dataKey=6, memoryKey=-1, disk=disk(0, 1, 2))])
    got = snapshot_size(layout, "snapshot-1", None, current=False)
    assert (got.memory, got.disk) == (4000, 30 + 10_000 + 700)  # a root: its whole chain
    got = snapshot_size(layout, "snapshot-2", "snapshot-1", current=False)
    assert (got.memory, got.disk) == (0, 20 + 50)  # the delta its parent's chain lacks
    got = snapshot_size(layout, "snapshot-2", "snapshot-1", current=True)
    assert (got.memory, got.disk) == (0, 20 + 50 + 9)  # and, being current, the delta the VM runs on
    assert snapshot_size(layout, "snapshot-9", None, current=False).disk_exact is False


def test_protect_is_not_supported_and_prune_runs(dom: Any) -> None:
    for name in ("p1", "p2", "p3"):
        create(dom, name)
    snap = dom.snapshotLookupByName("p1")
    with pytest.raises(virtsnap.libvirtError) as info:
        snap.setProtected(True)
    assert info.value.get_error_code() == virtsnap.VIR_ERR_NO_SUPPORT
    assert snap.isProtected() == 0
    with pytest.raises(virtsnap.libvirtError) as info:
        snap.delete(virtsnap.VIR_DOMAIN_SNAPSHOT_DELETE_FORCE)  # no protection here: the flag is unknown
    assert info.value.get_error_code() == virtsnap.VIR_ERR_INVALID_ARG
    dom.revertToSnapshot(snap)
    create(dom, "p4")  # p1 -> {p2 -> p3, p4}: p2 and p3 are off the current branch
    result = dom.snapshotPrune({"keep_last": 1})
    assert {r["name"]: (r["action"], r["reason"]) for r in result} == {
        "p4": ("keep", "keep-last"), "p3": ("remove", ""), "p2": ("remove", ""),
        "p1": ("keep", "ancestor-of-current")}
    assert sorted(dom.snapshotListNames()) == ["p1", "p4"]
