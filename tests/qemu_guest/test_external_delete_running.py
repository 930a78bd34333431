"""Deleting external snapshots on a real TCG guest, running and shut off: several branches (block-stream for
the branch QEMU runs, qemu-img rebase for the others), an image inside the active chain (intermediate
block-commit), CHILDREN and CHILDREN_ONLY of non-leaf snapshots.

Every test checks that the guest's current data survives the delete (read after dropping the guest's page
cache, so from the images through QEMU's new graph, and again after a cold boot), the backing chains that
qemu-img reports, that QEMU's nodes are exactly the domain's chain, that no overlay is left behind, and that
the remaining snapshots still revert to their own data."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import virtsnap
from virtsnap import (
    VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY as DISK_ONLY,
)
from virtsnap import (
    VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN as CHILDREN,
)
from virtsnap import (
    VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY as CHILDREN_ONLY,
)
from virtsnap.drivers.qemu.monitor import Monitor

from .conftest import agent_for, domain_xml

pytestmark = pytest.mark.qemu
RUN = virtsnap.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING | virtsnap.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE


def chain(path) -> list[str]:
    out = subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "--output=json", str(path)],
                         capture_output=True, text=True, check=True)
    return [Path(layer["filename"]).name for layer in json.loads(out.stdout)]


def disk_source(dom) -> str:
    return dom.XMLDesc().split("<source file='")[1].split("'")[0]


def images(workdir) -> set[str]:
    """The image files in the test directory (the serial log aside)."""
    return {p.name for p in workdir.iterdir() if p.is_file() and not p.name.endswith(".serial")}


def write(conn, dom, text: str) -> None:
    with agent_for(conn, dom) as agent:
        agent.shell(f"echo {text} > /mnt/marker; sync")


def marker(conn, dom) -> str:
    """The marker as the disk holds it: the guest's page cache is dropped first."""
    with agent_for(conn, dom) as agent:
        return agent.shell("sync; echo 3 > /proc/sys/vm/drop_caches; cat /mnt/marker").strip()


def qemu_files(conn, dom) -> set[str]:
    """Every file a node of QEMU's block graph has open."""
    mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "test")
    try:
        return {Path(n["file"]).name for n in mon.execute("query-named-block-nodes", {"flat": True})}
    finally:
        mon.close()


def check_domain(conn, dom, workdir, expected_chain: list[str], expected_files: set[str], data: str) -> None:
    """The domain's image chain, QEMU's graph (when running), the files left and the guest's data."""
    assert chain(disk_source(dom)) == expected_chain
    assert images(workdir) == expected_files
    if dom.isActive():
        assert qemu_files(conn, dom) == set(expected_chain)
        assert marker(conn, dom) == data
        dom.destroy()
    dom.create()  # a cold boot reads everything from the images
    assert marker(conn, dom) == data


def snap(dom, name: str):
    return dom.snapshotCreateXML(f"<domainsnapshot><name>{name}</name></domainsnapshot>", DISK_ONLY)


def test_running_delete_of_a_snapshot_with_two_branches(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    write(conn, dom, "A")
    s1 = snap(dom, "s1")
    write(conn, dom, "B")
    s2 = snap(dom, "s2")
    write(conn, dom, "gone")
    dom.revertToSnapshot(s1, RUN)  # a second branch on s1's image: demo.s1 (s2's state) and the revert overlay
    assert marker(conn, dom) == "A"
    write(conn, dom, "C")
    assert chain(disk_source(dom)) == ["demo.s1-revert1", "demo.qcow2"]

    s1.delete()  # running: block-stream into the revert overlay, qemu-img rebase of demo.s1
    assert dom.isActive() and dom.snapshotListNames() == ["s2"]
    assert chain(workdir / "demo.s1") == ["demo.s1"]  # s2's state no longer needs the base
    # demo.qcow2 is the user's own image: left in place, though nothing reads it any more
    check_domain(conn, dom, workdir, ["demo.s1-revert1"], {"demo.qcow2", "demo.s1", "demo.s1-revert1"}, "C")
    dom.revertToSnapshot(s2, RUN)
    assert marker(conn, dom) == "B"
    assert chain(disk_source(dom)) == ["demo.s2-revert1", "demo.s1"]


def test_running_delete_of_an_image_inside_the_active_chain(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    write(conn, dom, "A")
    s1 = snap(dom, "s1")
    write(conn, dom, "B")
    s2 = snap(dom, "s2")
    write(conn, dom, "C")
    assert chain(disk_source(dom)) == ["demo.s2", "demo.s1", "demo.qcow2"]

    s1.delete()  # demo.s1 is s2's state, below the image the guest writes: intermediate block-commit
    assert dom.snapshotListNames() == ["s2"] and f"<source file='{workdir / 'demo.qcow2'}'/>" in s2.getXMLDesc()
    check_domain(conn, dom, workdir, ["demo.s2", "demo.qcow2"], {"demo.qcow2", "demo.s2"}, "C")
    dom.revertToSnapshot(s2, RUN)
    assert marker(conn, dom) == "B"


def test_running_children_delete_of_a_chain_merges_everything_into_the_base(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    for name, text in (("s1", "A"), ("s2", "B"), ("s3", "C")):
        write(conn, dom, text)
        snap(dom, name)
    write(conn, dom, "D")
    s1 = dom.snapshotLookupByName("s1")
    s1.delete(CHILDREN)
    assert dom.isActive() and dom.snapshotNum() == 0
    assert disk_source(dom) == str(workdir / "demo.qcow2")
    check_domain(conn, dom, workdir, ["demo.qcow2"], {"demo.qcow2"}, "D")


def test_running_children_only_delete_keeps_the_parent_and_its_data(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    for name, text in (("s1", "A"), ("s2", "B"), ("s3", "C")):
        write(conn, dom, text)
        snap(dom, name)
    write(conn, dom, "D")
    s1 = dom.snapshotLookupByName("s1")
    s1.delete(CHILDREN_ONLY)
    assert dom.isActive() and dom.snapshotListNames() == ["s1"]
    check_domain(conn, dom, workdir, ["demo.s1", "demo.qcow2"], {"demo.qcow2", "demo.s1"}, "D")
    dom.revertToSnapshot(s1, RUN)
    assert marker(conn, dom) == "A"


def test_running_children_only_delete_of_a_branched_snapshot(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    write(conn, dom, "A")
    s1 = snap(dom, "s1")
    write(conn, dom, "B")
    snap(dom, "s2")
    dom.revertToSnapshot(s1, RUN)
    write(conn, dom, "C")
    snap(dom, "s3")  # s1 has two children: s2 (on demo.s1) and s3 (on the revert overlay)
    write(conn, dom, "D")
    assert sorted(s1.listChildrenNames()) == ["s2", "s3"]
    s1.delete(CHILDREN_ONLY)  # s3 merges its running overlay down; s2's image is needed by no one
    assert dom.snapshotListNames() == ["s1"]
    check_domain(conn, dom, workdir, ["demo.s1-revert1", "demo.qcow2"], {"demo.qcow2", "demo.s1-revert1"}, "D")
    dom.revertToSnapshot(s1, RUN)
    assert marker(conn, dom) == "A"


def test_offline_children_and_children_only_deletes_of_branched_snapshots(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    write(conn, dom, "A")
    s1 = snap(dom, "s1")
    write(conn, dom, "B")
    s2 = snap(dom, "s2")
    write(conn, dom, "C")
    snap(dom, "s3")
    dom.revertToSnapshot(s2, RUN)  # s2 gets a second branch
    write(conn, dom, "D")
    snap(dom, "s4")
    write(conn, dom, "E")
    dom.destroy()
    # s1 -> s2 -> {s3, s4}; the domain runs on s4's overlay, on s2's revert overlay, on demo.s1, on demo.qcow2
    assert chain(disk_source(dom)) == ["demo.s4", "demo.s2-revert1", "demo.s1", "demo.qcow2"]

    s2.delete(CHILDREN_ONLY)  # shut off: qemu-img commit, leaf first
    assert sorted(dom.snapshotListNames()) == ["s1", "s2"]
    check_domain(conn, dom, workdir, ["demo.s2-revert1", "demo.s1", "demo.qcow2"],
                 {"demo.qcow2", "demo.s1", "demo.s2-revert1"}, "E")
    dom.destroy()
    dom.revertToSnapshot(s2, RUN)
    assert marker(conn, dom) == "B"
    write(conn, dom, "F")
    dom.destroy()

    s1.delete(CHILDREN)
    assert dom.snapshotNum() == 0
    check_domain(conn, dom, workdir, ["demo.qcow2"], {"demo.qcow2"}, "F")


def test_delete_interrupted_after_a_merge_leaves_definitions_on_the_images_in_use(guest, workdir, conn,
                                                                                monkeypatch):
    from virtsnap import failpoints

    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    for name, text in (("s1", "A"), ("s2", "B"), ("s3", "C")):
        write(conn, dom, text)
        snap(dom, name)
    write(conn, dom, "D")
    s1 = dom.snapshotLookupByName("s1")
    monkeypatch.setenv("VIRTSNAP_FAILPOINTS", "external-delete.step-done=sigint")
    failpoints._table.cache_clear()
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C once s3's overlay is merged into demo.s2
        s1.delete(CHILDREN)
    monkeypatch.delenv("VIRTSNAP_FAILPOINTS")
    failpoints._table.cache_clear()
    # Nothing is deleted; the domain runs on the image the merge went into, and its definition says so.
    assert dom.isActive() and sorted(dom.snapshotListNames()) == ["s1", "s2", "s3"]
    assert disk_source(dom) == str(workdir / "demo.s2")
    assert chain(disk_source(dom)) == ["demo.s2", "demo.s1", "demo.qcow2"]
    assert qemu_files(conn, dom) == {"demo.s2", "demo.s1", "demo.qcow2"}
    assert marker(conn, dom) == "D"
    s1.delete(CHILDREN)  # the same delete again finishes the job
    assert dom.snapshotNum() == 0
    check_domain(conn, dom, workdir, ["demo.qcow2"], {"demo.qcow2"}, "D")
