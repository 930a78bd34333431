"""virtsnap.records: the value semantics the frozen dataclasses (and NamedTuples) of these records had."""

import pytest

from virtsnap.conf.snapshot_xml import DiskSnapshot, SnapshotDef
from virtsnap.drivers.base import DomainRecord
from virtsnap.uri import parse_uri


def test_frozen_records_compare_hash_print_and_refuse_changes():
    a, b = DomainRecord("d", "u", 1), DomainRecord("d", "u", 1)
    assert a == b and hash(a) == hash(b) and {a, b} == {a}
    assert a != DomainRecord("d", "u", 2) and a != ("d", "u", 1, True)
    assert repr(a) == "DomainRecord(name='d', uuid='u', id=1, persistent=True)"
    with pytest.raises(AttributeError):
        a.id = 2
    with pytest.raises(AttributeError):
        del a.name
    with pytest.raises(AttributeError):
        a.other = 1  # slotted: no new attributes either
    uri = parse_uri("qemu:///session?x=1")
    assert str(uri) == "qemu:///session?x=1" and uri.flag("x") and uri == parse_uri("qemu:///session?x=1")


def test_mutable_records_compare_and_copy_but_do_not_hash():
    defn = SnapshotDef("s", disks=[DiskSnapshot("vda")])
    copy = defn.copy()
    assert copy == defn and copy.disks[0] is not defn.disks[0]
    copy.disks[0].source = "/x"
    assert copy != defn
    with pytest.raises(TypeError):
        hash(defn)
