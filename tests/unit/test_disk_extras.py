"""Snapshot disk settings libvirt keeps (<source><seclabel>, <driver><metadata_cache>, network overlays):
the test driver keeps them as libvirt's does (tests/data vectors); the QEMU driver, which does not apply
them, refuses them by name and changes nothing."""

import json
import subprocess

import pytest
from qemu_offline import define_offline

import virtsnap

CACHE = """<domainsnapshot><name>s1</name><disks>
  <disk name='vda' snapshot='external'><source file='{path}'>
    <seclabel model='dac' relabel='no'/></source>
    <driver type='qcow2'><metadata_cache><max_size unit='bytes'>1234</max_size></metadata_cache></driver>
  </disk></disks></domainsnapshot>"""
NETWORK = """<domainsnapshot><name>n1</name><state>disk-snapshot</state><creationTime>1</creationTime>
  <disks><disk name='vda' snapshot='external' type='network'>
    <source protocol='rbd' name='vol/name'><host name='host' port='1234'/></source></disk></disks>
</domainsnapshot>"""


def test_qemu_refuses_what_it_does_not_apply(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    conn, dom, _ = define_offline(tmp_path, "extras")
    overlay = tmp_path / "overlay.qcow2"
    with pytest.raises(virtsnap.libvirtError) as info:
        dom.snapshotCreateXML(CACHE.format(path=overlay), virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
    assert info.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    assert str(info.value) == ("unsupported configuration: disk 'vda': virtsnap's QEMU driver does not apply "
                               "<source><seclabel>, <driver><metadata_cache>")
    with pytest.raises(virtsnap.libvirtError) as net:
        dom.snapshotCreateXML(NETWORK, virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
    assert net.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED and "vda" in str(net.value)
    with pytest.raises(virtsnap.libvirtError) as made:  # a new one is refused by name as well
        dom.snapshotCreateXML(NETWORK, virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
    assert made.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    assert str(made.value) == ("unsupported configuration: network disk snapshots are not supported by virtsnap's "
                               "QEMU driver: vda")
    assert not overlay.exists() and dom.snapshotNum() == 0
    del dom
    conn.close()


LIBVIRT_CREATE = r'''
import json, sys
import libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
dom = libvirt.open("test:///default").lookupByName("test")
try:
    print(json.dumps(dom.snapshotCreateXML(sys.argv[1], 0).getXMLDesc()))
except libvirt.libvirtError as e:
    print(json.dumps([e.get_error_code(), str(e)]))
'''


def test_network_disk_on_create_like_libvirt():
    """libvirt parses a network overlay on create too; its test driver then refuses it at disk alignment."""
    done = subprocess.run(["/usr/bin/python3", "-c", LIBVIRT_CREATE, NETWORK], capture_output=True, text=True,
                          check=True)
    libvirt = json.loads(done.stdout)
    with virtsnap.open("test:///default") as conn:
        try:
            ours = conn.lookupByName("test").snapshotCreateXML(NETWORK, 0).getXMLDesc()
        except virtsnap.libvirtError as exc:
            ours = [exc.get_error_code(), str(exc)]
    assert ours == libvirt == [virtsnap.VIR_ERR_CONFIG_UNSUPPORTED,
                               "unsupported configuration: disk 'vda' must use snapshot mode 'internal'"]
