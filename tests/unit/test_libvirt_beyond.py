"""Which libvirt does which external-snapshot operation itself (libvirt's NEWS: delete 9.0 without CHILDREN
flags, revert 9.7, <externalSnapshot/> 9.9), and which URIs virtsnap's own operations refuse as remote."""

from __future__ import annotations

import pytest

import virtsnap
from virtsnap.drivers.libvirtd import beyond


@pytest.mark.parametrize(("version", "ours"), [(9_000_000, True), (9_006_000, True), (9_007_000, False),
                                              (10_000_000, False)])
def test_revert_is_virtsnaps_below_9_7(version, ours):
    assert beyond.own_revert(version) is ours


@pytest.mark.parametrize(("version", "flags", "ours"), [
    (9_000_000, 0, True), (9_008_000, 0, True), (9_009_000, 0, False), (11_000_000, 0, False),
    (11_000_000, virtsnap.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN, True),
    (11_000_000, virtsnap.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY, True)])
def test_delete_is_virtsnaps_below_9_9_and_for_children(version, flags, ours):
    assert beyond.own_delete(version, flags) is ours


@pytest.mark.parametrize("uri", ["qemu+ssh://host/system", "qemu://host/system",
                                 "qemu+ssh://root@host:2222/system?keyfile=/k"])
def test_remote_uris_are_refused_for_virtsnaps_own_operations(uri):
    with pytest.raises(virtsnap.libvirtError) as refused:
        beyond.local_only(uri)
    assert refused.value.get_error_code() == virtsnap.VIR_ERR_NO_SUPPORT


@pytest.mark.parametrize("uri", ["qemu:///system", "qemu:///session", "qemu://localhost/system",
                                 "qemu+unix:///system", "qemu+tcp:///system"])
def test_local_uris_are_accepted(uri):
    beyond.local_only(uri)


@pytest.mark.parametrize(("uri", "system"), [
    ("qemu:///system", True), ("qemu:///system/", True), ("qemu+unix:///system?socket=/tmp/d/libvirt-sock", True),
    ("qemu:///session", False), ("qemu+unix:///session?socket=/tmp/system", False)])
def test_system_uris_keep_state_in_the_system_directory(uri, system):
    assert beyond.is_system(uri) is system


def test_snapshot_names_make_harmless_file_name_parts():
    assert beyond.safe_component("../../etc/passwd") == "_.._etc_passwd"
    assert beyond.safe_component("-rf") == "rf" and beyond.safe_component("") == "snapshot"
