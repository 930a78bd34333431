"""The QEMU driver's store keeps a domain's graphics password (its files are the owner's only) and hands it
out only with VIR_DOMAIN_XML_SECURE / VIR_DOMAIN_SNAPSHOT_XML_SECURE, in this process and the next."""

from __future__ import annotations

from qemu_offline import define_offline

import virtsnap


def test_graphics_password_survives_the_store_and_stays_hidden(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    conn, dom, _disk = define_offline(tmp_path, "pw", devices="<graphics type='vnc' passwd='s3cret'/>")
    snap = dom.snapshotCreateXML("<domainsnapshot><name>s</name></domainsnapshot>")
    for c in (conn, virtsnap.open("qemu:///session")):
        d = c.lookupByName("pw")
        s = d.snapshotLookupByName("s")
        assert "s3cret" not in d.XMLDesc() and "passwd='s3cret'" in d.XMLDesc(virtsnap.VIR_DOMAIN_XML_SECURE)
        assert "s3cret" not in s.getXMLDesc()
        assert "passwd='s3cret'" in s.getXMLDesc(virtsnap.VIR_DOMAIN_SNAPSHOT_XML_SECURE)
    dom.revertToSnapshot(snap)  # the same configuration, password included: an in-place revert
    assert "passwd='s3cret'" in dom.XMLDesc(virtsnap.VIR_DOMAIN_XML_SECURE)
