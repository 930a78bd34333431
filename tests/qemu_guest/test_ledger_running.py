"""Issue #12 item 7 on a running domain: an internal snapshot whose name is already a tag in the image QEMU has
open (another tool's, made before the domain started) is refused before any change; QEMU's own view decides."""

from __future__ import annotations

import subprocess

import pytest

import virtsnap

from .conftest import domain_xml, image_tags

pytestmark = pytest.mark.qemu


def test_a_tag_already_in_a_running_domains_image_is_refused(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    disk = workdir / "demo.qcow2"
    subprocess.run(["qemu-img", "snapshot", "-c", "nightly", str(disk)], check=True)  # another tool's snapshot
    dom.create()
    with pytest.raises(virtsnap.libvirtError) as exc:
        dom.snapshotCreateXML("<domainsnapshot><name>nightly</name></domainsnapshot>")
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
    assert "already has an internal snapshot named 'nightly'" in exc.value.get_error_message()
    assert image_tags(str(disk)) == ["nightly"] and dom.snapshotNum() == 0 and dom.isActive()
    dom.snapshotCreateXML("<domainsnapshot><name>mine</name></domainsnapshot>")  # another name is fine
    assert image_tags(str(disk)) == ["nightly", "mine"]
