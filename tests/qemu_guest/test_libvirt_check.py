"""snapshot-check --repair on libvirt+qemu:///system: drift made by hand on a shut-off tiny guest's images in the
test libvirtd (an internal tag deleted and one added with qemu-img, an external snapshot's overlay removed),
reported, repaired through libvirt's public API as the QEMU engine repairs, and checked with libvirt-python."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import libvirt
import pytest

import virtsnap

from .conftest import domain_xml, image_tags, remove_with_libvirt

pytestmark = pytest.mark.qemu

NAME = f"virtsnap-libvirt-check-{os.getpid()}"
IMAGES = Path("/var/lib/libvirt/images") / NAME
REPAIR = virtsnap.VIR_DOMAIN_SNAPSHOT_CHECK_REPAIR


@pytest.fixture
def shutoff_domain(guest, workdir, libvirtd):
    IMAGES.mkdir(parents=True, exist_ok=True)
    disk = IMAGES / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", guest.data_template, str(disk)], check=True)
    for name in ("kernel", "initrd"):  # libvirt's QEMU runs as libvirt-qemu: its own copies
        shutil.copy(getattr(guest, name), IMAGES / name)
    xml = domain_xml(guest, workdir, name=NAME)
    xml = (xml.replace(guest.kernel, str(IMAGES / "kernel")).replace(guest.initrd, str(IMAGES / "initrd"))
           .replace(str(workdir / f"{NAME}.qcow2"), str(disk))
           .replace(f"<serial type='file'><source path='{workdir / (NAME + '.serial')}'/></serial>", ""))
    conn = virtsnap.open("libvirt+qemu:///system")
    dom = conn.defineXML(xml)
    yield conn, dom, str(disk)
    oracle = libvirt.open("qemu:///system")  # cleaned up with libvirt itself, whatever virtsnap did
    try:
        remove_with_libvirt(oracle, NAME)
    finally:
        oracle.close()
        conn.close()
        shutil.rmtree(IMAGES, ignore_errors=True)


def external(dom, name: str, overlay: Path) -> None:
    dom.snapshotCreateXML(f"<domainsnapshot><name>{name}</name><disks><disk name='vda' snapshot='external'>"
                          f"<source file='{overlay}'/></disk></disks></domainsnapshot>",
                          virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)


def drift(dom, flags: int = 0) -> list[tuple[str, str, bool]]:
    return [(d.kind, d.subject, d.repaired) for d in dom.snapshotCheck(flags) if d.drift]


def test_check_repairs_libvirt_metadata(shutoff_domain):
    conn, dom, disk = shutoff_domain
    oracle = libvirt.openReadOnly("qemu:///system")
    theirs = oracle.lookupByName(NAME)
    o1, o2 = IMAGES / "e1.qcow2", IMAGES / "e2.qcow2"
    dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>")
    external(dom, "e1", o1)
    assert drift(dom) == []

    # by hand: s1's tag deleted from its image (now e1's backing), a stray tag added to the disk the domain runs on
    subprocess.run(["qemu-img", "snapshot", "-d", "s1", disk], check=True)
    subprocess.run(["qemu-img", "snapshot", "-c", "stray", str(o1)], check=True)
    expected = [("lost-snapshot", "s1", False), ("untracked-snapshot", "stray", False)]
    assert drift(dom) == expected

    # a read-only connection refuses --repair and changes nothing
    ro = virtsnap.openReadOnly("libvirt+qemu:///system")
    with pytest.raises(virtsnap.libvirtError) as denied:
        ro.lookupByName(NAME).snapshotCheck(REPAIR)
    assert denied.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_DENIED
    assert drift(ro.lookupByName(NAME)) == expected
    ro.close()
    assert sorted(theirs.snapshotListNames()) == ["e1", "s1"] and image_tags(str(o1)) == ["stray"]

    # with a raw disk added, the tag is not in every disk: libvirt cannot record it, so it is left and said so
    raw = IMAGES / "raw.img"
    raw.write_bytes(b"\0" * 65536)
    plain = theirs.XMLDesc()
    rw = libvirt.open("qemu:///system")
    rw.defineXML(plain.replace("</disk>", "</disk><disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                               f"<source file='{raw}'/><target dev='vdb' bus='virtio'/></disk>", 1))
    found = {d.subject: d for d in dom.snapshotCheck(REPAIR)}
    assert found["s1"].repaired and not found["stray"].repaired and "disk vdb holds no such tag" in found["stray"].fix
    assert sorted(theirs.snapshotListNames()) == ["e1"]
    rw.defineXML(plain)
    rw.close()
    assert drift(dom, REPAIR) == [("untracked-snapshot", "stray", True)]
    assert sorted(theirs.snapshotListNames()) == ["e1", "stray"]  # s1's metadata gone, the tag imported
    stray = theirs.snapshotLookupByName("stray").getXMLDesc()
    assert "<disk name='vda' snapshot='internal'/>" in stray and f"<source file='{o1}'" in stray
    assert image_tags(disk) == [] and image_tags(str(o1)) == ["stray"]  # no image changed
    assert drift(dom) == []

    # by hand: the overlay of a newer external snapshot (the disk the domain runs on) removed
    external(dom, "e2", o2)
    assert drift(dom) == []
    o2.unlink()
    found = drift(dom)
    assert ("lost-snapshot", "e2", False) in found and ("broken-chain", str(o2), False) in found
    assert ("lost-snapshot", "e2", True) in drift(dom, REPAIR)
    assert sorted(theirs.snapshotListNames()) == ["e1", "stray"]
    assert drift(dom) == [("broken-chain", str(o2), False)]  # the domain's own disk: never changed by the check
    assert o1.exists() and Path(disk).exists()  # files libvirt made are never removed

    # virtsnap's own revert (libvirt 9.0 has none) makes an overlay and records it in the ledger; the user then
    # points the disk back at e1's overlay by hand: the ledger's file is an orphan, removed by --repair only
    dom.revertToSnapshot(dom.snapshotLookupByName("e1"))
    made = Path(theirs.XMLDesc().split("<source file='")[1].split("'")[0])
    assert made.parent == IMAGES and made not in (o1, o2, Path(disk))
    rw = libvirt.open("qemu:///system")
    rw.defineXML(theirs.XMLDesc().replace(str(made), str(o1)))
    rw.close()
    assert drift(dom) == [("orphaned-overlay", str(made), False)]
    assert drift(dom, REPAIR) == [("orphaned-overlay", str(made), True)]
    assert not made.exists() and o1.exists() and Path(disk).exists()
    assert drift(dom) == []
    oracle.close()


def test_check_removes_a_snapshot_whose_memory_file_is_gone(shutoff_domain):
    conn, dom, _disk = shutoff_domain
    overlay, memory = IMAGES / "m1.qcow2", IMAGES / "m1.mem"
    dom.create()  # no need to wait for the guest: the snapshot saves whatever RAM QEMU holds
    dom.snapshotCreateXML(f"<domainsnapshot><name>m1</name><memory snapshot='external' file='{memory}'/>"
                          f"<disks><disk name='vda' snapshot='external'><source file='{overlay}'/></disk></disks>"
                          "</domainsnapshot>")
    dom.destroy()
    assert drift(dom) == []
    memory.unlink()
    assert drift(dom) == [("lost-snapshot", "m1", False)]
    assert drift(dom, REPAIR) == [("lost-snapshot", "m1", True)]
    oracle = libvirt.openReadOnly("qemu:///system")
    assert oracle.lookupByName(NAME).snapshotListNames() == []
    oracle.close()
    assert overlay.exists() and drift(dom) == []  # libvirt's overlay stays: the domain runs on it
