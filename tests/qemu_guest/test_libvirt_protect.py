"""snapshot-protect on libvirt+qemu:///system, against a real root libvirtd 9.0: the marks live in virtsnap's own
state (libvirt's snapshot and domain XML stay as libvirt wrote them), snapshot-prune keeps a protected snapshot,
snapshot-delete refuses it (and a CHILDREN delete above it) without --force and deletes it with --force, a deleted
snapshot's mark goes with it, and a read-only connection reads the marks but cannot set them."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
from pathlib import Path

import libvirt
import pytest

import virtsnap
from virtsnap.cli import main as cli_main

from .conftest import image_tags

pytestmark = pytest.mark.qemu

NAME = f"virtsnap-libvirt-protect-{os.getpid()}"
IMAGES = Path("/var/lib/libvirt/images") / NAME
URI = "libvirt+qemu:///system"


def virsh(*commands: str) -> tuple[int, str]:
    """virtsnap's virsh-style command line, in this process (it sees this test's state directory)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main.main(["-c", URI, "; ".join(commands)])
    return rc, out.getvalue() + err.getvalue()


@pytest.fixture
def setup(guest, workdir, libvirtd, monkeypatch):
    """A shut-off domain in libvirtd with internal snapshots s1 <- s2 and s1 <- s3 (current), made by libvirt."""
    monkeypatch.setenv("VIRTSNAP_LIBVIRT_STATE_DIR", str(workdir / "state"))
    IMAGES.mkdir(parents=True, exist_ok=True)
    disk = IMAGES / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", guest.data_template, str(disk)], check=True)
    oracle = libvirt.open("qemu:///system")
    theirs = oracle.defineXML(f"""<domain type='qemu'><name>{NAME}</name><memory unit='MiB'>64</memory>
      <os><type arch='x86_64' machine='pc'>hvm</type></os>
      <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>
      <target dev='vda' bus='virtio'/></disk></devices></domain>""")
    for name in ("s1", "s2"):
        theirs.snapshotCreateXML(f"<domainsnapshot><name>{name}</name></domainsnapshot>")
    theirs.revertToSnapshot(theirs.snapshotLookupByName("s1"))
    theirs.snapshotCreateXML("<domainsnapshot><name>s3</name></domainsnapshot>")
    conn = virtsnap.open(URI)
    yield conn, conn.lookupByName(NAME), theirs, str(disk), workdir / "state"
    try:
        for snap in theirs.listAllSnapshots():
            snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
        theirs.undefine()
    finally:
        conn.close()
        oracle.close()
        shutil.rmtree(IMAGES, ignore_errors=True)


def test_protected_snapshot_kept_by_prune_and_delete(setup):
    _conn, dom, theirs, disk, state = setup
    snapshot_xml = {n: theirs.snapshotLookupByName(n).getXMLDesc(0) for n in ("s1", "s2", "s3")}
    domain_xml = theirs.XMLDesc(0)
    rc, text = virsh(f"snapshot-protect {NAME} s2")
    assert rc == 0, text
    assert dom.snapshotLookupByName("s2").isProtected() == 1 and dom.snapshotLookupByName("s3").isProtected() == 0
    rc, text = virsh(f"snapshot-info {NAME} s2 --size")
    assert "Protected:      yes" in text
    # libvirt's XML is not where the mark lives: both documents are as libvirt wrote them
    assert {n: theirs.snapshotLookupByName(n).getXMLDesc(0) for n in ("s1", "s2", "s3")} == snapshot_xml
    assert theirs.XMLDesc(0) == domain_xml
    assert (state / "metadata.db").is_file()

    # prune keeping one: s3 is current, s1 its ancestor, s2 protected: nothing is removed
    decisions = {d["name"]: (d["action"], d["reason"]) for d in dom.snapshotPrune({"keep_last": 1})}
    assert decisions["s2"] == ("keep", "protected")
    assert sorted(theirs.snapshotListNames()) == ["s1", "s2", "s3"] and sorted(image_tags(disk)) == ["s1", "s2", "s3"]

    # a plain delete, and a CHILDREN delete of its parent, are refused with nothing changed
    rc, text = virsh(f"snapshot-delete {NAME} s2")
    assert rc != 0 and "'s2' is protected" in text and "--force" in text
    for flags in (0, virtsnap.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY):
        with pytest.raises(virtsnap.libvirtError) as refused:
            dom.snapshotLookupByName("s2").delete(flags)
        assert refused.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
    with pytest.raises(virtsnap.libvirtError) as refused:
        dom.snapshotLookupByName("s1").delete(virtsnap.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)
    assert refused.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
    assert "'s2' is protected" in refused.value.get_error_message()
    with pytest.raises(virtsnap.libvirtError, match="'s2' is protected"):
        dom.snapshotLookupByName("s1").delete(virtsnap.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY)
    assert sorted(theirs.snapshotListNames()) == ["s1", "s2", "s3"] and sorted(image_tags(disk)) == ["s1", "s2", "s3"]

    # a read-only connection sees the mark and cannot change it
    ro = virtsnap.openReadOnly(URI)
    try:
        snap = ro.lookupByName(NAME).snapshotLookupByName("s2")
        assert snap.isProtected() == 1
        with pytest.raises(virtsnap.libvirtError) as denied:
            snap.setProtected(False)
        assert denied.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_DENIED
    finally:
        ro.close()
    assert dom.snapshotLookupByName("s2").isProtected() == 1

    # --force deletes it (libvirt's own delete of an internal snapshot: the qcow2 tag goes too)
    rc, text = virsh(f"snapshot-delete {NAME} s2 --force")
    assert rc == 0, text
    assert sorted(theirs.snapshotListNames()) == ["s1", "s3"] and sorted(image_tags(disk)) == ["s1", "s3"]
    # and its mark went with it: a new snapshot under that name is not protected
    theirs.snapshotCreateXML("<domainsnapshot><name>s2</name></domainsnapshot>")
    assert dom.snapshotLookupByName("s2").isProtected() == 0
    assert dom.snapshotLookupByName("s2").delete(0) == 0


def test_marks_follow_deletes_made_anywhere(setup):
    _conn, dom, theirs, _disk, _state = setup
    dom.snapshotLookupByName("s2").setProtected(True)
    dom.snapshotLookupByName("s3").setProtected(True)
    # CHILDREN with --force: s1 and both children go, and every mark with them
    rc, text = virsh(f"snapshot-delete {NAME} s1 --children --force")
    assert rc == 0, text
    assert theirs.snapshotListNames() == []
    theirs.snapshotCreateXML("<domainsnapshot><name>s3</name></domainsnapshot>")
    assert dom.snapshotLookupByName("s3").isProtected() == 0

    # deleted behind virtsnap's back (libvirt-python, metadata only) and defined again with another creation
    # time: another snapshot under the old name, not protected
    dom.snapshotLookupByName("s3").setProtected(True)
    old = theirs.snapshotLookupByName("s3").getXMLDesc(libvirt.VIR_DOMAIN_SNAPSHOT_XML_SECURE)
    theirs.snapshotLookupByName("s3").delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
    created = old.split("<creationTime>", 1)[1].split("<", 1)[0]
    theirs.snapshotCreateXML(old.replace(f"<creationTime>{created}<", f"<creationTime>{int(created) + 60}<"),
                             libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
    assert dom.snapshotLookupByName("s3").isProtected() == 0
    assert dom.snapshotListNames() == ["s3"]


def test_a_rename_keeps_the_mark(setup, tmp_path, monkeypatch):
    _conn, dom, theirs, _disk, _state = setup
    editor = tmp_path / "editor"
    editor.write_text('#!/bin/sh\nsed -i "s|<name>s2</name>|<name>kept</name>|" "$1"\n')
    editor.chmod(0o755)
    monkeypatch.setenv("EDITOR", str(editor))
    monkeypatch.setenv("VISUAL", str(editor))
    dom.snapshotLookupByName("s2").setProtected(True)
    rc, text = virsh(f"snapshot-edit {NAME} s2 --rename")
    assert rc == 0, text
    assert sorted(theirs.snapshotListNames()) == ["kept", "s1", "s3"]
    assert dom.snapshotLookupByName("kept").isProtected() == 1
    rc, text = virsh(f"snapshot-delete {NAME} kept --metadata")
    assert rc != 0 and "'kept' is protected" in text
    assert sorted(theirs.snapshotListNames()) == ["kept", "s1", "s3"]
