"""List filters where virtsnap follows libvirt's documentation rather than libvirt 9.0, plus the group rules."""

import pytest

import virtsnap as libvirt


@pytest.fixture
def dom():
    with libvirt.open("test:///default") as conn:
        d = conn.lookupByName("test")
        # r -> a -> a1, r -> b ; then a shut-off snapshot 'off' under b
        for name in ("r", "a", "a1"):
            d.snapshotCreateXML(f"<domainsnapshot><name>{name}</name></domainsnapshot>")
        d.revertToSnapshot(d.snapshotLookupByName("r"))
        d.snapshotCreateXML("<domainsnapshot><name>b</name></domainsnapshot>")
        d.destroy()
        d.snapshotCreateXML("<domainsnapshot><name>off</name></domainsnapshot>")
        yield d


def names(snaps):
    return sorted(s.getName() for s in snaps)


def test_all_bits_of_a_group_filter_nothing(dom):
    everything = names(dom.listAllSnapshots())
    assert names(dom.listAllSnapshots(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_LEAVES
                                      | libvirt.VIR_DOMAIN_SNAPSHOT_LIST_NO_LEAVES)) == everything
    assert dom.snapshotNum(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_INACTIVE | libvirt.VIR_DOMAIN_SNAPSHOT_LIST_ACTIVE
                           | libvirt.VIR_DOMAIN_SNAPSHOT_LIST_DISK_ONLY) == len(everything)


def test_or_inside_a_group_and_across_groups(dom):
    L = libvirt
    assert names(dom.listAllSnapshots(L.VIR_DOMAIN_SNAPSHOT_LIST_LEAVES)) == ["a1", "off"]
    assert names(dom.listAllSnapshots(L.VIR_DOMAIN_SNAPSHOT_LIST_INACTIVE)) == ["off"]
    assert names(dom.listAllSnapshots(L.VIR_DOMAIN_SNAPSHOT_LIST_LEAVES | L.VIR_DOMAIN_SNAPSHOT_LIST_ACTIVE)) == ["a1"]
    assert names(dom.listAllSnapshots(L.VIR_DOMAIN_SNAPSHOT_LIST_ROOTS)) == ["r"]
    assert dom.snapshotListNames(L.VIR_DOMAIN_SNAPSHOT_LIST_NO_METADATA) == []
    r = dom.snapshotLookupByName("r")
    assert r.listChildrenNames() == ["b", "a"]  # newest child first, as libvirt
    assert r.listChildrenNames(L.VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS) == ["b", "off", "a", "a1"]
    assert [s.getName() for s in dom.listAllSnapshots(L.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)] == \
        ["r", "b", "off", "a", "a1"]


def test_flag_checks_come_before_the_driver(dom):
    L = libvirt
    cases = [
        (lambda: dom.snapshotCreateXML("<domainsnapshot/>", L.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT), 8,
         "Flag 'VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE' is required by flag 'VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT'"),
        (lambda: dom.revertToSnapshot(dom.snapshotLookupByName("r"), 3), 8,
         "Flags 'VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING' and 'VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED' are mutually exclusive"),
        (lambda: dom.snapshotLookupByName("r").delete(5), 8,
         "Flags 'VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN' and 'VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY' are mutually "
         "exclusive"),
        (lambda: dom.snapshotListNames(1 << 30), 8, "unsupported flags (0x40000000) in function testDomainSnapshotNum"),
    ]
    before = dom.snapshotListNames(L.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)
    for call, code, message in cases:
        with pytest.raises(libvirt.libvirtError) as info:
            call()
        assert (info.value.get_error_code(), info.value.get_error_message()) == (code, message)
    assert dom.snapshotListNames(L.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL) == before


def test_read_only_connection_refuses_changes(dom):
    ro = libvirt.openReadOnly("test:///default")
    d = ro.lookupByName("test")
    with pytest.raises(libvirt.libvirtError) as info:
        d.snapshotCreateXML("<domainsnapshot/>")
    assert info.value.get_error_code() == 29
    assert "read only access prevents virDomainSnapshotCreateXML" in info.value.get_error_message()
    assert sorted(d.snapshotListNames()) == sorted(dom.snapshotListNames())  # same hypervisor, readable
    ro.close()


def parent_or_none(snap):
    try:
        return snap.getParent().getName()
    except libvirt.libvirtError:
        return None


def from_xml(snap):
    """(name, parent, state, creation time) as virsh reads them from the snapshot's XML."""
    from xml.etree import ElementTree

    root = ElementTree.fromstring(snap.getXMLDesc())
    created = root.findtext("creationTime")
    return (snap.getName(), root.findtext("parent/name"), root.findtext("state"),
            int(created) if created is not None else None)


def test_summaries_are_the_listing_with_what_the_xml_says(dom):
    """listAllSnapshotSummaries / listAllChildrenSummaries (one query) list what listAllSnapshots /
    listAllChildren list, in the same order, with the parent getParent gives and what the XML says."""
    L = libvirt
    for flags in (0, L.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL, L.VIR_DOMAIN_SNAPSHOT_LIST_ROOTS,
                  L.VIR_DOMAIN_SNAPSHOT_LIST_LEAVES | L.VIR_DOMAIN_SNAPSHOT_LIST_INACTIVE,
                  L.VIR_DOMAIN_SNAPSHOT_LIST_NO_METADATA):
        snaps = dom.listAllSnapshots(flags)
        assert dom.listAllSnapshotSummaries(flags) == [from_xml(s) for s in snaps]
        assert [row[1] for row in dom.listAllSnapshotSummaries(flags)] == [parent_or_none(s) for s in snaps]
    r = dom.snapshotLookupByName("r")
    for flags in (0, L.VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS, L.VIR_DOMAIN_SNAPSHOT_LIST_LEAVES):
        assert r.listAllChildrenSummaries(flags) == [from_xml(s) for s in r.listAllChildren(flags)]
    assert [row[:3] for row in dom.listAllSnapshotSummaries(L.VIR_DOMAIN_SNAPSHOT_LIST_ROOTS)] == [
        ("r", None, "running")]


def test_summaries_of_qemu_metadata_are_what_the_xml_says(tmp_path, monkeypatch):
    """The QEMU driver answers from its store's columns (no XML read); they must say what the XML says, for
    every state, after moves (a delete reparents), and in a fresh connection (a tree loaded from the store)."""
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))  # the disk outside it
    L = libvirt
    domxml = ("<domain type='qemu'><name>q</name><uuid>5a7e0c9b-6d1f-4c5e-9b1a-00000000abcd</uuid>"
              "<memory unit='KiB'>131072</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>"
              f"<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
              f"<source file='{tmp_path}/q.qcow2'/><target dev='vda' bus='virtio'/></disk></devices></domain>")
    with libvirt.open("qemu:///session") as conn:
        d = conn.defineXML(domxml)
        for i, (state, parent) in enumerate([("shutoff", None), ("running", "s0"), ("paused", "s1"),
                                             ("disk-snapshot", "s1"), ("shutoff", "s3")]):
            parent_xml = f"<parent><name>{parent}</name></parent>" if parent else ""
            memory = "no" if state in ("shutoff", "disk-snapshot") else "internal"
            disk = (f"<disk name='vda' snapshot='external'><source file='{tmp_path}/q.s{i}'/></disk>"
                    if state == "disk-snapshot" else "<disk name='vda' snapshot='internal'/>")
            d.snapshotCreateXML(f"<domainsnapshot><name>s{i}</name><state>{state}</state>{parent_xml}"
                                f"<creationTime>{1700000000 + i}</creationTime><memory snapshot='{memory}'/>"
                                f"<disks>{disk}</disks>{d.XMLDesc()}</domainsnapshot>",
                                L.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
        d.snapshotLookupByName("s1").delete()  # s2 and s3 move under s0
    for _ in range(2):  # the second connection loads the tree from the store
        with libvirt.open("qemu:///session") as conn:
            d = conn.lookupByName("q")
            for flags in (0, L.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL, L.VIR_DOMAIN_SNAPSHOT_LIST_ACTIVE):
                assert d.listAllSnapshotSummaries(flags) == [from_xml(s) for s in d.listAllSnapshots(flags)]
            assert d.snapshotLookupByName("s3").listAllChildrenSummaries() == [
                ("s4", "s3", "shutoff", 1700000004)]
            # the whole listing again, now from the tree this connection has loaded (the first came from the
            # store's rows without a tree)
            assert d.listAllSnapshotSummaries(0) == [from_xml(s) for s in d.listAllSnapshots(0)]


def test_summaries_refuse_what_the_listings_refuse(dom):
    r = dom.snapshotLookupByName("r")
    for summaries, listing, flags in ((dom.listAllSnapshotSummaries, dom.listAllSnapshots, 1 << 30),
                                      (r.listAllChildrenSummaries, r.listAllChildren, 1 << 30)):
        errors = []
        for call in (summaries, listing):
            with pytest.raises(libvirt.libvirtError) as info:
                call(flags)
            errors.append((info.value.get_error_code(), info.value.get_error_message()))
        assert errors[0] == errors[1]
