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


def test_parent_pairs_are_the_listing_with_getparent(dom):
    """listAllSnapshotParents / listAllChildrenParents (one query) list what listAllSnapshots /
    listAllChildren list, in the same order, each name with what getParent says."""
    L = libvirt
    for flags in (0, L.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL, L.VIR_DOMAIN_SNAPSHOT_LIST_ROOTS,
                  L.VIR_DOMAIN_SNAPSHOT_LIST_LEAVES | L.VIR_DOMAIN_SNAPSHOT_LIST_INACTIVE,
                  L.VIR_DOMAIN_SNAPSHOT_LIST_NO_METADATA):
        assert dom.listAllSnapshotParents(flags) == [(s.getName(), parent_or_none(s))
                                                      for s in dom.listAllSnapshots(flags)]
    r = dom.snapshotLookupByName("r")
    for flags in (0, L.VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS, L.VIR_DOMAIN_SNAPSHOT_LIST_LEAVES):
        assert r.listAllChildrenParents(flags) == [(s.getName(), parent_or_none(s))
                                                   for s in r.listAllChildren(flags)]
    assert dom.listAllSnapshotParents(L.VIR_DOMAIN_SNAPSHOT_LIST_ROOTS) == [("r", None)]


def test_parent_pairs_refuse_what_the_listings_refuse(dom):
    r = dom.snapshotLookupByName("r")
    for pairs, listing, flags in ((dom.listAllSnapshotParents, dom.listAllSnapshots, 1 << 30),
                                  (r.listAllChildrenParents, r.listAllChildren, 1 << 30)):
        errors = []
        for call in (pairs, listing):
            with pytest.raises(libvirt.libvirtError) as info:
                call(flags)
            errors.append((info.value.get_error_code(), info.value.get_error_message()))
        assert errors[0] == errors[1]
