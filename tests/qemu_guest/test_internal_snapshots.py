"""Internal snapshots on a real TCG guest: what a revert restores (disk and RAM), offline snapshots in the
images, refused operations that change nothing, delete flags, reconnecting from another process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import virtsnap
from virtsnap import (
    VIR_DOMAIN_SNAPSHOT_CREATE_HALT,
    VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA,
    VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN,
    VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY,
    VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY,
    VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED,
    VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING,
)

from .conftest import agent_for, domain_xml, guest_read, image_tags

pytestmark = pytest.mark.qemu
RUNNING, PAUSED, SHUTOFF = 1, 3, 5


def snap_xml(name: str) -> str:
    return f"<domainsnapshot><name>{name}</name></domainsnapshot>"


def write_markers(conn, dom, disk_value: str, ram_value: str) -> None:
    with agent_for(conn, dom) as agent:
        agent.shell(f"echo {disk_value} > /mnt/marker; echo {ram_value} > /ram/value; sync")


def test_revert_of_running_snapshot_restores_disk_and_memory_in_place(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    write_markers(conn, dom, "disk-1", "ram-1")
    pid_before = dom.ID()
    s1 = dom.snapshotCreateXML(snap_xml("s1"))
    assert dom.state()[0] == RUNNING
    write_markers(conn, dom, "disk-2", "ram-2")
    s2 = dom.snapshotCreateXML(snap_xml("s2"))
    assert s2.isCurrent() and not s1.isCurrent()
    dom.revertToSnapshot(s1)
    assert dom.state()[0] == RUNNING
    assert conn.lookupByName("demo").ID() == pid_before  # loaded in place: QEMU was not restarted
    assert guest_read(conn, dom, "cat /mnt/marker /ram/value").split() == ["disk-1", "ram-1"]
    assert image_tags(str(workdir / "demo.qcow2")) == ["s1", "s2"]
    assert s1.isCurrent() and not s2.isCurrent() and "<state>running</state>" in s1.getXMLDesc()


def test_revert_flags_choose_running_or_paused(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    agent_for(conn, dom).close()
    s1 = dom.snapshotCreateXML(snap_xml("s1"))
    dom.revertToSnapshot(s1, VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED)
    assert dom.state()[0] == PAUSED
    dom.revertToSnapshot(s1, VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING)
    assert dom.state()[0] == RUNNING
    dom.suspend()
    paused = dom.snapshotCreateXML(snap_xml("paused"))
    assert "<state>paused</state>" in paused.getXMLDesc()
    dom.resume()
    dom.revertToSnapshot(paused)
    assert dom.state()[0] == PAUSED
    dom.destroy()
    dom.revertToSnapshot(s1)  # QEMU started again, paused, then loaded
    assert dom.state()[0] == RUNNING


def test_offline_snapshot_lives_in_the_image_and_reverts(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    write_markers(conn, dom, "before", "x")
    dom.destroy()
    off = dom.snapshotCreateXML(snap_xml("off"))
    assert "<state>shutoff</state>" in off.getXMLDesc()
    assert image_tags(str(workdir / "demo.qcow2")) == ["off"]
    dom.create()
    write_markers(conn, dom, "after", "x")
    dom.revertToSnapshot(off)  # a running domain reverted to a shut-off snapshot ends shut off
    assert dom.state()[0] == SHUTOFF
    dom.create()
    assert guest_read(conn, dom, "cat /mnt/marker").strip() == "before"


def test_refused_operations_change_nothing(guest, workdir, conn):
    raw = conn.defineXML(domain_xml(guest, workdir, name="rawdom", fmt="raw"))
    with pytest.raises(virtsnap.libvirtError) as info:
        raw.snapshotCreateXML(snap_xml("s"))
    assert info.value.get_error_code() == 67 and "raw" in info.value.get_error_message()
    assert raw.snapshotNum() == 0

    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    write_markers(conn, dom, "kept", "kept")
    s1 = dom.snapshotCreateXML(snap_xml("s1"))
    with pytest.raises(virtsnap.libvirtError) as info:
        dom.snapshotCreateXML(snap_xml("s1"))
    assert info.value.get_error_code() == 9
    before = (dom.ID(), dom.state(), dom.snapshotListNames(), image_tags(str(workdir / "demo.qcow2")))
    with pytest.raises(virtsnap.libvirtError) as info:
        dom.revertToSnapshot(s1, 0x1000)  # an undefined flag bit
    assert info.value.get_error_code() == 8
    after = (conn.lookupByName("demo").ID(), dom.state(), dom.snapshotListNames(),
             image_tags(str(workdir / "demo.qcow2")))
    assert after == before
    assert guest_read(conn, dom, "cat /mnt/marker").strip() == "kept"
    with pytest.raises(virtsnap.libvirtError) as info:
        dom.undefine()
    assert info.value.get_error_code() == 55


def test_missing_tag_refuses_revert_and_leaves_guest_running(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    write_markers(conn, dom, "now", "now")
    s1 = dom.snapshotCreateXML(snap_xml("s1"))
    dom.snapshotCreateXML(snap_xml("s2"), VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA)
    assert dom.snapshotListNames() == ["s1"] and image_tags(str(workdir / "demo.qcow2")) == ["s1", "s2"]
    s1.delete(VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)  # forget the metadata, keep the data
    assert image_tags(str(workdir / "demo.qcow2")) == ["s1", "s2"]
    # Redefine s1's metadata under a tag the image does not have, then try to revert to it.
    ghost = dom.snapshotCreateXML(snap_xml("ghost"))
    xml = ghost.getXMLDesc()
    ghost.delete()
    dom.snapshotCreateXML(xml, virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
    pid = dom.ID()
    with pytest.raises(virtsnap.libvirtError) as info:
        dom.revertToSnapshot(dom.snapshotLookupByName("ghost"))
    assert info.value.get_error_code() == 55 and "no snapshot 'ghost'" in info.value.get_error_message()
    assert dom.state()[0] == RUNNING and conn.lookupByName("demo").ID() == pid
    assert guest_read(conn, dom, "cat /mnt/marker").strip() == "now"


def test_delete_flags_remove_tags_from_the_image(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir, memory_mib=128, agent=False))
    for name in ("a", "b", "c"):
        dom.snapshotCreateXML(snap_xml(name))  # offline chain a -> b -> c
    dom.revertToSnapshot(dom.snapshotLookupByName("a"))
    assert dom.snapshotCurrent().getName() == "a"
    dom.snapshotCreateXML(snap_xml("d"))  # a branch: a -> d
    assert dom.snapshotLookupByName("d").getParent().getName() == "a"
    assert sorted(dom.snapshotLookupByName("a").listChildrenNames()) == ["b", "d"]
    image = str(workdir / "demo.qcow2")
    assert sorted(image_tags(image)) == ["a", "b", "c", "d"]
    dom.snapshotLookupByName("b").delete()  # c moves up to a
    assert dom.snapshotLookupByName("c").getParent().getName() == "a"
    assert sorted(image_tags(image)) == ["a", "c", "d"]
    dom.snapshotLookupByName("a").delete(VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY)
    assert image_tags(image) == ["a"] and dom.snapshotListNames() == ["a"]
    assert dom.snapshotCurrent().getName() == "a"
    dom.snapshotLookupByName("a").delete(VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)
    assert image_tags(image) == [] and dom.snapshotNum() == 0 and not dom.hasCurrentSnapshot()


def test_halt_and_reconnect_from_another_process(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    agent_for(conn, dom).close()
    script = ("import json, virtsnap; c = virtsnap.open('qemu:///session'); d = c.lookupByName('demo');"
              "print(json.dumps([d.state()[0], d.snapshotListNames(), d.ID()]))")
    env = {**__import__("os").environ}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert json.loads(out.stdout)[:2] == [RUNNING, []]
    dom.snapshotCreateXML(snap_xml("last"), VIR_DOMAIN_SNAPSHOT_CREATE_HALT)
    assert dom.state()[0] == SHUTOFF
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert json.loads(out.stdout) == [SHUTOFF, ["last"], -1]


def test_domain_outside_the_subset_is_refused_naming_it(guest, workdir, conn):
    xml = domain_xml(guest, workdir).replace("<devices>", "<devices><sound model='sb16'/>")
    with pytest.raises(virtsnap.libvirtError) as info:
        conn.defineXML(xml)
    assert info.value.get_error_code() == 67 and "model='sb16' of <domain/devices/sound>" in info.value.get_error_message()
    assert conn.listAllDomains() == []


def test_children_delete_of_a_running_guest_removes_every_tag(guest, workdir, conn):
    """One delete, several internal victims on a running guest: each tag leaves the image (the active nodes
    QEMU named for the first victim serve the others), the guest keeps running, and a later snapshot works."""
    dom = conn.defineXML(domain_xml(guest, workdir, memory_mib=128, agent=False))
    dom.create()
    for name in ("a", "b", "c", "d"):
        dom.snapshotCreateXML(snap_xml(name))  # a chain a -> b -> c -> d, each with the guest's memory
    image = str(workdir / "demo.qcow2")
    assert image_tags(image) == ["a", "b", "c", "d"]
    dom.snapshotLookupByName("b").delete(VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)
    assert image_tags(image) == ["a"] and dom.snapshotListNames() == ["a"]
    assert dom.state()[0] == RUNNING
    dom.snapshotCreateXML(snap_xml("e"))
    assert image_tags(image) == ["a", "e"] and dom.snapshotCurrent().getName() == "e"


def test_internal_snapshots_follow_every_change_of_the_block_graph(guest, workdir, conn):
    """The node each disk writes to is remembered between operations (not asked of QEMU for every snapshot):
    an overlay switched in by virtsnap, by any other monitor client, or a restarted QEMU is never missed, so
    each internal snapshot lands in the image the guest writes to."""
    from pathlib import Path

    from virtsnap.drivers.qemu.monitor import Monitor

    base = str(workdir / "demo.qcow2")
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    dom.snapshotCreateXML(snap_xml("s1"))
    dom.snapshotLookupByName("s1").delete()  # the nodes learned by the create serve the delete
    assert image_tags(base) == []
    dom.snapshotCreateXML("<domainsnapshot><name>e1</name><disks><disk name='vda' snapshot='external'>"
                          f"<source file='{workdir / 'e1.qcow2'}'/></disk></disks></domainsnapshot>",
                          virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
    dom.snapshotCreateXML(snap_xml("s2"))
    assert image_tags(str(workdir / "e1.qcow2")) == ["s2"] and image_tags(base) == []

    # another monitor client switches in an overlay virtsnap does not know of
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(workdir / "e1.qcow2"),
                    str(workdir / "foreign.qcow2")], check=True)
    mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "foreign")
    try:
        active = {b["qdev"].split("/")[3]: b["inserted"]["node-name"] for b in mon.execute("query-block")}
        mon.execute("blockdev-add", {"driver": "qcow2", "node-name": "foreign", "backing": None,
                                     "file": {"driver": "file", "filename": str(workdir / "foreign.qcow2")}})
        mon.execute("blockdev-snapshot", {"node": active["vda"], "overlay": "foreign"})
    finally:
        mon.close()
    dom.snapshotCreateXML(snap_xml("s3"))
    assert image_tags(str(workdir / "foreign.qcow2")) == ["s3"] and image_tags(str(workdir / "e1.qcow2")) == ["s2"]

    # a restarted QEMU opens the defined disk (e1) under its own node names
    dom.destroy()
    dom.create()
    dom.snapshotCreateXML(snap_xml("s4"))
    dom.snapshotLookupByName("s2").delete()
    assert image_tags(str(workdir / "e1.qcow2")) == ["s4"]


def two_disk_domain(guest, workdir) -> str:
    """The test guest with a second, empty qcow2 disk (vdb) beside its own."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(workdir / "data.qcow2"), "16M"], check=True)
    return domain_xml(guest, workdir, memory_mib=128, agent=False).replace(
        "</devices>", f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{workdir / 'data.qcow2'}'/><target dev='vdb' bus='virtio'/></disk></devices>")


def test_running_delete_when_one_image_lost_the_tag_already(guest, workdir, conn):
    """A tag already gone from one image (removed with qemu-img while the domain was shut off) is no error:
    the delete removes it from the other image and forgets the snapshot."""
    dom = conn.defineXML(two_disk_domain(guest, workdir))
    dom.create()
    dom.snapshotCreateXML(snap_xml("s1"))
    dom.snapshotCreateXML(snap_xml("s2"))
    dom.destroy()
    subprocess.run(["qemu-img", "snapshot", "-d", "s1", str(workdir / "data.qcow2")], check=True)
    dom.create()
    dom.snapshotLookupByName("s1").delete()
    assert dom.snapshotListNames() == ["s2"] and dom.state()[0] == RUNNING
    assert image_tags(str(workdir / "demo.qcow2")) == ["s2"] and image_tags(str(workdir / "data.qcow2")) == ["s2"]


def test_running_delete_failing_on_one_image_keeps_the_snapshot_and_can_be_repeated(guest, workdir, conn):
    """The second disk is busy (a mirror job another monitor client started): the delete fails naming that
    disk, the snapshot stays listed, and once the job is gone the same delete finishes the work."""
    import contextlib
    from pathlib import Path

    from virtsnap.drivers.qemu.monitor import Monitor

    dom = conn.defineXML(two_disk_domain(guest, workdir))
    dom.create()
    dom.snapshotCreateXML(snap_xml("s1"))
    socket = str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock")
    mon = Monitor(socket, "foreign")
    try:
        vdb = next(b["inserted"] for b in mon.execute("query-block") if b["qdev"].split("/")[3] == "vdb")
        mon.execute("blockdev-add", {"driver": "null-co", "node-name": "sink",
                                     "size": vdb["image"]["virtual-size"]})
        mon.execute("blockdev-mirror", {"job-id": "busy", "device": vdb["node-name"], "target": "sink",
                                        "sync": "full", "speed": 1, "auto-dismiss": False})
    finally:
        mon.close()
    with pytest.raises(virtsnap.libvirtError) as info:
        dom.snapshotLookupByName("s1").delete()
    assert info.value.get_error_code() == 9 and "disk 'vdb'" in info.value.get_error_message()
    assert dom.snapshotListNames() == ["s1"] and dom.state()[0] == RUNNING
    assert image_tags(str(workdir / "data.qcow2")) == ["s1"] and image_tags(str(workdir / "demo.qcow2")) == []
    mon = Monitor(socket, "foreign")
    try:
        mon.execute("job-cancel", {"id": "busy"})
        with contextlib.suppress(virtsnap.libvirtError):
            mon.wait_job("busy")  # a mirror cancelled before it was ready ends with an error
        mon.execute("blockdev-del", {"node-name": "sink"})
    finally:
        mon.close()
    dom.snapshotLookupByName("s1").delete()
    assert dom.snapshotListNames() == [] and dom.state()[0] == RUNNING
    assert image_tags(str(workdir / "demo.qcow2")) == [] and image_tags(str(workdir / "data.qcow2")) == []
