"""libvirt+qemu+ssh:// and virtsnap's own external-snapshot operations: they read and write image files, so over
libvirt's remote to another host they are refused with VIR_ERR_NO_SUPPORT before any change, while what libvirt
does itself still passes through (here: the snapshot is listed and its XML read through the remote)."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path

import libvirt
import pytest

import virtsnap
from tests.qemu_guest.conftest import libvirtd  # noqa: F401

from .conftest import Host

NAME = f"virtsnap-libvirt-ssh-own-{os.getpid()}"
IMAGES = Path("/var/lib/libvirt/images") / NAME


def test_own_operations_refused_over_libvirts_remote(libvirtd, hosts: list[Host], tmp_path: Path) -> None:  # noqa: F811
    host = hosts[0]
    ssh = tmp_path / "ssh"
    ssh.write_text(f"#!/bin/sh\nexec ssh -o UserKnownHostsFile={host.known_hosts} -o BatchMode=yes \"$@\"\n")
    ssh.chmod(0o755)
    IMAGES.mkdir(parents=True, exist_ok=True)
    disk = IMAGES / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    local = libvirt.open("qemu:///system")
    dom = local.defineXML(f"""<domain type='qemu'><name>{NAME}</name><memory unit='MiB'>64</memory>
      <os><type arch='x86_64' machine='pc'>hvm</type></os><devices><disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
      </devices></domain>""")
    remote = None
    try:
        dom.snapshotCreateXML(f"<domainsnapshot><name>e1</name><disks><disk name='vda' snapshot='external'>"
                              f"<source file='{IMAGES / 'e1.qcow2'}'/></disk></disks></domainsnapshot>",
                              libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
        before = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), sorted(os.listdir(IMAGES))
        remote = virtsnap.open(f"libvirt+qemu+ssh://{getpass.getuser()}@127.0.0.1:{host.port}/system"
                               f"?keyfile={host.client_key}&command={ssh}&no_tty=1")
        theirs = remote.lookupByName(NAME)
        snap = theirs.snapshotLookupByName("e1")
        assert theirs.snapshotListNames() == ["e1"] and "<name>e1</name>" in snap.getXMLDesc()
        for action in (lambda: theirs.revertToSnapshot(snap), lambda: snap.delete(0)):
            with pytest.raises(virtsnap.libvirtError) as refused:
                action()
            assert refused.value.get_error_code() == virtsnap.VIR_ERR_NO_SUPPORT
            assert "run virtsnap there" in refused.value.get_error_message()
        assert (dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), sorted(os.listdir(IMAGES))) == before
        assert dom.snapshotListNames() == ["e1"]
    finally:
        if remote is not None:
            remote.close()
        for snap in dom.listAllSnapshots():
            snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
        dom.undefine()
        local.close()
        shutil.rmtree(IMAGES, ignore_errors=True)
