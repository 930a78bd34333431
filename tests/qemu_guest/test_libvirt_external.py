"""External snapshots beyond libvirt 9.0 on libvirt+qemu:///system, on the tiny guest in a real root libvirtd
(TCG): revert (with memory while running, disk-only while shut off, to a snapshot with children) and delete
(running and shut off, non-leaf, CHILDREN and CHILDREN_ONLY), proved by a marker file on the disk and a value in
RAM, checked against libvirt-python directly; and a delete that would destroy an internal snapshot is refused
with nothing changed (libvirt 9.0's own delete destroys it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import libvirt
import pytest

import virtsnap
from virtsnap.store.db import MetadataStore

from .conftest import domain_xml, remove_with_libvirt
from .test_libvirt_driver import shell, wait_for_agent

pytestmark = pytest.mark.qemu

NAME = f"virtsnap-libvirt-ext-{os.getpid()}"
IMAGES = Path("/var/lib/libvirt/images") / NAME


def ext(name: str, memory: bool = False) -> str:
    mem = f"<memory snapshot='external' file='{IMAGES / (name + '.mem')}'/>" if memory else ""
    return (f"<domainsnapshot><name>{name}</name>{mem}<disks><disk name='vda' snapshot='external'>"
            f"<source file='{IMAGES / (name + '.qcow2')}'/></disk></disks></domainsnapshot>")


def chain(path: str) -> list[str]:
    out = subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "-f", "qcow2", path],
                         capture_output=True, text=True, check=True).stdout
    return [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("image: ")]


def source(dom) -> str:
    xml = dom.XMLDesc(0)
    start = xml.index("<source file='", xml.index("<disk type='file' device='disk'>")) + len("<source file='")
    return xml[start:xml.index("'", start)]


@pytest.fixture
def setup(guest, workdir, libvirtd, monkeypatch):
    monkeypatch.setenv("VIRTSNAP_LIBVIRT_STATE_DIR", str(workdir / "state"))
    IMAGES.mkdir(parents=True, exist_ok=True)
    for name in ("kernel", "initrd"):
        shutil.copy(getattr(guest, name), IMAGES / name)
    disk = IMAGES / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", guest.data_template, str(disk)], check=True)
    xml = domain_xml(guest, workdir, name=NAME)
    xml = (xml.replace(guest.kernel, str(IMAGES / "kernel")).replace(guest.initrd, str(IMAGES / "initrd"))
           .replace(str(workdir / f"{NAME}.qcow2"), str(disk))
           .replace(f"<serial type='file'><source path='{workdir / (NAME + '.serial')}'/></serial>", ""))
    conn = virtsnap.open("libvirt+qemu:///system")
    dom = conn.defineXML(xml)
    oracle = libvirt.open("qemu:///system")
    yield conn, dom, oracle.lookupByName(NAME), str(disk), workdir / "state"
    try:
        remove_with_libvirt(oracle, NAME)
    finally:
        oracle.close()
        conn.close()
        shutil.rmtree(IMAGES, ignore_errors=True)


def markers(dom) -> list[str]:
    return shell(dom, "cat /mnt/marker /ram/value").split()


def mark(dom, value: str) -> None:
    shell(dom, f"echo disk-{value} > /mnt/marker; echo ram-{value} > /ram/value; sync")


def test_running_memory_revert_and_delete(setup):
    _conn, dom, theirs, disk, state = setup
    dom.create()
    wait_for_agent(dom)
    mark(dom, "1")
    dom.snapshotCreateXML(ext("m1", memory=True))  # libvirt's own create (external, memory, live guest)
    size = dom.snapshotLookupByName("m1").getSize(0)  # what `du` says of the memory file and the overlay
    assert size == {"memory": os.stat(IMAGES / "m1.mem").st_blocks * 512, "memory_exact": True,
                    "disk": os.stat(IMAGES / "m1.qcow2").st_blocks * 512, "disk_exact": True}
    assert size["memory"] > 1 << 20  # the guest's RAM really is in there
    mark(dom, "2")
    with pytest.raises(libvirt.libvirtError, match="not supported yet"):  # what libvirt 9.0 itself says
        theirs.revertToSnapshot(theirs.snapshotLookupByName("m1"))

    dom.revertToSnapshot(dom.snapshotLookupByName("m1"))
    assert theirs.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    wait_for_agent(dom)  # the restored guest's agent channel reconnects in its own time
    assert markers(dom) == ["disk-1", "ram-1"]  # the disk as it was, and the RAM from the memory file
    assert theirs.snapshotCurrent().getName() == "m1"
    first = source(theirs)
    assert first != disk and chain(first)[1:] == [disk]  # a new overlay on the snapshot's image
    store = MetadataStore(state)
    assert [r.path for r in store.ledger(theirs.UUIDString())] == [first]  # recorded as virtsnap's

    mark(dom, "3")
    dom.snapshotCreateXML(ext("d2"), virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)  # child of m1, on `first`
    mark(dom, "4")
    dom.revertToSnapshot(dom.snapshotLookupByName("m1"), virtsnap.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED)
    assert theirs.state()[0] == libvirt.VIR_DOMAIN_PAUSED
    dom.resume()
    wait_for_agent(dom)
    assert markers(dom) == ["disk-1", "ram-1"]
    second = source(theirs)
    assert second != first and os.path.exists(first)  # d2's image stays: d2 needs it
    mark(dom, "5")

    # delete m1 (it has a child) while the guest runs: the two branches on disk.qcow2 get its data
    dom.snapshotLookupByName("m1").delete(0)
    assert sorted(theirs.snapshotListNames()) == ["d2"]
    assert markers(dom) == ["disk-5", "ram-5"]  # the running guest lost nothing
    assert chain(source(theirs)) == [second] and chain(first) == [first]  # disk.qcow2 no longer needed
    assert os.path.exists(disk)  # not virtsnap's file: left where it is

    # d2 reverts to what it saw, through its rebased image
    dom.revertToSnapshot(dom.snapshotLookupByName("d2"), virtsnap.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING)
    wait_for_agent(dom)
    assert shell(dom, "cat /mnt/marker").split() == ["disk-3"]
    assert not os.path.exists(second)  # the earlier revert's overlay: virtsnap's, needed by no one
    store.close()


def test_shut_off_revert_delete_children_and_internal_refusal(setup):
    _conn, dom, theirs, disk, _state = setup
    dom.create()
    wait_for_agent(dom)
    mark(dom, "a")
    dom.snapshotCreateXML(ext("e1"), virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
    mark(dom, "b")
    dom.snapshotCreateXML(ext("e2"), virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
    mark(dom, "c")
    dom.snapshotCreateXML(ext("e3"), virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
    mark(dom, "d")
    dom.destroy()

    # a snapshot whose image is gone: refused naming it, before any change
    os.rename(disk, disk + ".away")
    before = (theirs.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), sorted(os.listdir(IMAGES)))
    with pytest.raises(virtsnap.libvirtError) as refused:
        dom.revertToSnapshot(dom.snapshotLookupByName("e1"))
    assert refused.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    assert f"disk vda (its image {disk} is missing)" in refused.value.get_error_message()
    assert (theirs.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), sorted(os.listdir(IMAGES))) == before
    os.rename(disk + ".away", disk)

    # revert to e1 (two descendants) while shut off: the domain stays off, on a new overlay on disk.qcow2
    dom.revertToSnapshot(dom.snapshotLookupByName("e1"))
    assert not theirs.isActive() and theirs.snapshotCurrent().getName() == "e1"
    assert chain(source(theirs))[1:] == [disk]

    # CHILDREN_ONLY of e1 while shut off (libvirt 9.0 refuses it): e2 and e3 go, e1 stays
    with pytest.raises(libvirt.libvirtError, match="not supported"):
        theirs.snapshotLookupByName("e1").delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY)
    dom.snapshotLookupByName("e1").delete(virtsnap.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY)
    assert theirs.snapshotListNames() == ["e1"] and theirs.snapshotCurrent().getName() == "e1"

    dom.create()
    wait_for_agent(dom)
    assert shell(dom, "cat /mnt/marker").split() == ["disk-a"]
    mark(dom, "e")
    dom.destroy()

    # an internal snapshot in the overlay libvirt made for e1... no: in virtsnap's revert overlay. Deleting e1
    # would merge that overlay into disk.qcow2 and lose the internal snapshot: refused, nothing changed.
    top = source(theirs)
    subprocess.run(["qemu-img", "snapshot", "-c", "keepme", top], check=True)
    before = (sorted(theirs.snapshotListNames()), top, chain(top), os.path.getsize(disk))
    with pytest.raises(virtsnap.libvirtError) as refused:
        dom.snapshotLookupByName("e1").delete(0)
    assert "keepme" in refused.value.get_error_message()
    assert (sorted(theirs.snapshotListNames()), source(theirs), chain(top), os.path.getsize(disk)) == before
    subprocess.run(["qemu-img", "snapshot", "-d", "keepme", top], check=True)

    # now e1 goes, shut off: qemu-img commit into disk.qcow2, the definition follows
    dom.snapshotLookupByName("e1").delete(0)
    assert theirs.snapshotListNames() == [] and source(theirs) == disk and chain(disk) == [disk]
    assert not os.path.exists(top)  # virtsnap's overlay, merged: removed
    dom.create()
    wait_for_agent(dom)
    assert shell(dom, "cat /mnt/marker").split() == ["disk-e"]
