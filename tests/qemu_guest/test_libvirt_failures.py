"""virtsnap's own external revert and delete on libvirt+qemu:///system when something fails in this process (not a
kill: test_libvirt_crash.py), on a two-disk domain in a real root libvirtd 9.0 (TCG): the domain definition, its
files, its snapshots and the current snapshot end as they were. Revert: the second overlay cannot be made (its
directory is on a read-only mount) after the first was; libvirt cannot restore the saved memory after the domain
was stopped and redefined. Delete: a block job of the user's runs on the disk; an image the merge would write is
on a read-only mount. And a transient domain's revert is refused with nothing changed."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

import virtsnap
from virtsnap.store.db import MetadataStore

from .conftest import domain_xml, remove_with_libvirt

pytestmark = pytest.mark.qemu

NAME = f"virtsnap-libvirt-fail-{os.getpid()}"
IMAGES = Path("/var/lib/libvirt/images") / NAME
RO = IMAGES / "ro"  # vdb's image; bind-mounted read-only where a test says so
URI = "libvirt+qemu:///system"
INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE


def ext(name: str, memory: bool = False) -> str:
    """An external snapshot of both disks, its overlays (and memory) in IMAGES."""
    mem = f"<memory snapshot='external' file='{IMAGES / (name + '.mem')}'/>" if memory else ""
    disks = "".join(f"<disk name='{d}' snapshot='external'><source file='{IMAGES / f'{name}-{d}.qcow2'}'/></disk>"
                    for d in ("vda", "vdb"))
    return f"<domainsnapshot><name>{name}</name>{mem}<disks>{disks}</disks></domainsnapshot>"


def picture(theirs) -> dict[str, object]:
    """What a user checks after a failed operation, read through libvirt-python and the file system."""
    active = theirs.isActive()
    return {"state": theirs.state()[0], "inactive": theirs.XMLDesc(INACTIVE),
            "live": theirs.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE) if active else None,
            "files": sorted(str(p.relative_to(IMAGES)) for p in IMAGES.rglob("*")),
            "snapshots": sorted(theirs.snapshotListNames()),
            "current": theirs.snapshotCurrent().getName() if theirs.hasCurrentSnapshot() else None,
            "snapshot_xml": {s.getName(): s.getXMLDesc(libvirt.VIR_DOMAIN_SNAPSHOT_XML_SECURE)
                             for s in theirs.listAllSnapshots()}}


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` on a read-only bind mount (as root: a mode bit would not stop root) until the block ends."""
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def setup(guest, workdir, libvirtd, monkeypatch):
    monkeypatch.setenv("VIRTSNAP_LIBVIRT_STATE_DIR", str(workdir / "state"))
    RO.mkdir(parents=True, exist_ok=True)
    for name in ("kernel", "initrd"):
        shutil.copy(getattr(guest, name), IMAGES / name)
    disk, data = IMAGES / "disk.qcow2", RO / "data.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", guest.data_template, str(disk)], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(data), "16M"], check=True)
    xml = domain_xml(guest, workdir, name=NAME)
    xml = (xml.replace(guest.kernel, str(IMAGES / "kernel")).replace(guest.initrd, str(IMAGES / "initrd"))
           .replace(str(workdir / f"{NAME}.qcow2"), str(disk))
           .replace(f"<serial type='file'><source path='{workdir / (NAME + '.serial')}'/></serial>", "")
           .replace("</disk>", f"</disk><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                                f"<source file='{data}'/><target dev='vdb' bus='virtio'/></disk>", 1))
    conn = virtsnap.open(URI)
    dom = conn.defineXML(xml)
    oracle = libvirt.open("qemu:///system")
    yield dom, oracle.lookupByName(NAME), workdir / "state"
    try:
        remove_with_libvirt(oracle, NAME)
    finally:
        oracle.close()
        conn.close()
        shutil.rmtree(IMAGES, ignore_errors=True)


def nothing_pending(state: Path, uuid: str) -> bool:
    store = MetadataStore(state)
    try:
        return not store.journal_pending(uuid)
    finally:
        store.close()


def test_revert_fails_making_the_second_overlay(setup):
    dom, theirs, state = setup
    dom.snapshotCreateXML(ext("e1"), virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)  # shut off: libvirt's own
    dom.create()
    before = picture(theirs)
    with read_only(RO):  # vda's overlay goes next to disk.qcow2 (writable), vdb's next to ro/data.qcow2
        with pytest.raises(virtsnap.libvirtError) as failed:
            dom.revertToSnapshot(dom.snapshotLookupByName("e1"))
    assert failed.value.get_error_code() == virtsnap.VIR_ERR_SYSTEM_ERROR
    assert "for disk vdb: Read-only file system" in failed.value.get_error_message()
    assert "\n" not in failed.value.get_error_message()
    # still running on the same files, vda's new overlay removed again, e1 still current
    assert picture(theirs) == before
    assert nothing_pending(state, theirs.UUIDString())
    dom.revertToSnapshot(dom.snapshotLookupByName("e1"))  # and the same revert works once it can
    assert theirs.isActive() == 0 and theirs.snapshotCurrent().getName() == "e1"


def test_revert_fails_restoring_memory_after_the_domain_was_stopped(setup):
    dom, theirs, state = setup
    dom.create()
    dom.snapshotCreateXML(ext("m1", memory=True))
    os.truncate(IMAGES / "m1.mem", 0)  # the saved memory damaged: libvirt's restore fails reading its header
    before = picture(theirs)
    with pytest.raises(virtsnap.libvirtError) as failed:
        dom.revertToSnapshot(dom.snapshotLookupByName("m1"))
    assert failed.value.get_error_code() != virtsnap.VIR_ERR_CONFIG_UNSUPPORTED  # not refused: failed midway
    after = picture(theirs)
    # the revert had stopped the domain and defined it on new overlays: the definition is put back and the
    # overlays removed; the running state it replaced is gone, as any revert drops it
    assert after["state"] == libvirt.VIR_DOMAIN_SHUTOFF
    assert {k: v for k, v in after.items() if k not in ("state", "live")} == \
        {k: v for k, v in before.items() if k not in ("state", "live")}
    assert nothing_pending(state, theirs.UUIDString())


def test_delete_refused_while_a_block_job_of_the_user_runs(setup):
    dom, theirs, state = setup
    dom.create()
    dom.snapshotCreateXML(ext("e1"), virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
    # the user's own pull into vda's overlay, throttled to a byte a second: it is still running below
    theirs.blockRebase("vda", None, 1, libvirt.VIR_DOMAIN_BLOCK_REBASE_BANDWIDTH_BYTES)
    try:
        before = picture(theirs)
        with pytest.raises(virtsnap.libvirtError) as refused:
            dom.snapshotLookupByName("e1").delete(0)
        assert refused.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
        assert "disk 'vda' already in active block job" in refused.value.get_error_message()
        assert picture(theirs) == before
        assert theirs.blockJobInfo("vda", 0)["type"] == libvirt.VIR_DOMAIN_BLOCK_JOB_TYPE_PULL  # untouched
    finally:
        theirs.blockJobAbort("vda", 0)
    assert nothing_pending(state, theirs.UUIDString())


def test_delete_refused_when_a_merge_target_is_read_only(setup):
    dom, theirs, state = setup
    dom.snapshotCreateXML(ext("e1"), virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
    before = picture(theirs)
    sums = {p: subprocess.run(["sha256sum", str(p)], capture_output=True, text=True, check=True).stdout
            for p in (IMAGES / "disk.qcow2", RO / "data.qcow2")}
    with read_only(RO):  # shut off: qemu-img would commit e1-vda into disk.qcow2, then e1-vdb into ro/data.qcow2
        with pytest.raises(virtsnap.libvirtError) as refused:
            dom.snapshotLookupByName("e1").delete(0)
    assert refused.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
    assert f"merge data into {RO / 'data.qcow2'}, which cannot be written" in refused.value.get_error_message()
    assert picture(theirs) == before
    # neither disk was merged (a merge done cannot be taken back when the next one fails)
    assert {p: subprocess.run(["sha256sum", str(p)], capture_output=True, text=True, check=True).stdout
            for p in sums} == sums
    assert nothing_pending(state, theirs.UUIDString())
    dom.snapshotLookupByName("e1").delete(0)  # and the same delete works once it can
    assert theirs.snapshotListNames() == []


def test_transient_domain_revert_refused(guest, workdir, libvirtd, monkeypatch):
    monkeypatch.setenv("VIRTSNAP_LIBVIRT_STATE_DIR", str(workdir / "state"))
    IMAGES.mkdir(parents=True, exist_ok=True)
    disk = IMAGES / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    oracle = libvirt.open("qemu:///system")
    theirs = oracle.createXML(f"""<domain type='qemu'><name>{NAME}</name><memory unit='MiB'>64</memory>
      <os><type arch='x86_64' machine='pc'>hvm</type></os>
      <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>
      <target dev='vda' bus='virtio'/></disk></devices></domain>""")
    conn = virtsnap.open(URI)
    try:
        assert not theirs.isPersistent()
        theirs.snapshotCreateXML(f"<domainsnapshot><name>t1</name><disks><disk name='vda' snapshot='external'>"
                                 f"<source file='{IMAGES / 't1.qcow2'}'/></disk></disks></domainsnapshot>",
                                 libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
        dom = conn.lookupByName(NAME)
        before = (theirs.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE), sorted(os.listdir(IMAGES)),
                  theirs.snapshotListNames(), theirs.snapshotCurrent().getName(), theirs.state()[0])
        with pytest.raises(virtsnap.libvirtError) as refused:
            dom.revertToSnapshot(dom.snapshotLookupByName("t1"))
        assert refused.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
        assert refused.value.get_error_message() == (
            "unsupported configuration: revert to external snapshot 't1' cannot restore: a transient domain "
            "(define it first); nothing was changed")
        assert (theirs.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE), sorted(os.listdir(IMAGES)),
                theirs.snapshotListNames(), theirs.snapshotCurrent().getName(), theirs.state()[0]) == before
        assert not theirs.isPersistent()  # not defined behind the user's back
        assert nothing_pending(workdir / "state", theirs.UUIDString())
    finally:
        theirs.destroy()  # a transient domain's snapshots go with it
        conn.close()
        oracle.close()
        shutil.rmtree(IMAGES, ignore_errors=True)
