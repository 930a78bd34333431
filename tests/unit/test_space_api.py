"""Sizes, protection and snapshot-prune through the public API and the CLI, on the test driver.

Snapshots are REDEFINE'd with recorded creation times, so the prune clock is theirs (issue 17, point 4).
"""

from __future__ import annotations

import json
import os
import time

import pytest

import virtsnap
from virtsnap import (
    VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT,
    VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE,
    VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN,
    VIR_DOMAIN_SNAPSHOT_DELETE_FORCE,
    VIR_DOMAIN_SNAPSHOT_PRUNE_DRY_RUN,
    VIR_ERR_INVALID_ARG,
    VIR_ERR_OPERATION_DENIED,
    VIR_ERR_OPERATION_INVALID,
)
from virtsnap.cli import main as cli_main

URI = "test:///default"
DAY = 86400
# 2023-06-05 is a Monday; local noon keeps the days apart in any time zone
BASE = int(time.mktime((2023, 6, 5, 12, 0, 0, 0, 0, -1)))


@pytest.fixture
def conn():
    c = virtsnap.open(URI)
    yield c
    c.close()


def redefine(dom, name, when, parent=None, current=False):
    parent_xml = f"<parent><name>{parent}</name></parent>" if parent else ""
    xml = (f"<domainsnapshot><name>{name}</name><state>shutoff</state>{parent_xml}"
           f"<creationTime>{when}</creationTime>{dom.XMLDesc()}</domainsnapshot>")
    flags = VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE | (VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT if current else 0)
    return dom.snapshotCreateXML(xml, flags)


def chain(dom, days):
    """A chain d0 <- d1 <- ... one snapshot per entry of `days` (day offsets), plus an extra one 1 h later on
    each day listed twice; the newest is current."""
    parent = None
    names = []
    for i, offset in enumerate(days):
        name = f"d{i}"
        redefine(dom, name, BASE + offset * DAY + (3600 if offset in days[:i] else 0), parent,
                 current=i == len(days) - 1)
        names.append(name)
        parent = name
    return names


def test_size_keys_and_protect_roundtrip(conn):
    dom = conn.lookupByName("test")
    snap = dom.snapshotCreateXML("<domainsnapshot><name>s</name></domainsnapshot>")
    assert snap.getSize() == {"memory": 0, "disk": 0, "memory_exact": True, "disk_exact": True}
    assert snap.isProtected() == 0
    assert snap.setProtected(True) == 0
    assert snap.isProtected() == 1
    ro = virtsnap.openReadOnly(URI)
    try:
        ro_snap = ro.lookupByName("test").snapshotLookupByName("s")
        assert ro_snap.isProtected() == 1 and ro_snap.getSize()["disk"] == 0
        with pytest.raises(virtsnap.libvirtError) as info:
            ro_snap.setProtected(False)
        assert info.value.get_error_code() == VIR_ERR_OPERATION_DENIED
    finally:
        ro.close()
    assert snap.isProtected() == 1
    snap.setProtected(False)
    assert snap.isProtected() == 0


def test_protected_delete_needs_force(conn):
    dom = conn.lookupByName("test")
    top = dom.snapshotCreateXML("<domainsnapshot><name>top</name></domainsnapshot>")
    kid = dom.snapshotCreateXML("<domainsnapshot><name>kid</name></domainsnapshot>")
    kid.setProtected(True)
    for victim, flags in ((kid, 0), (top, VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)):
        with pytest.raises(virtsnap.libvirtError) as info:
            victim.delete(flags)
        assert info.value.get_error_code() == VIR_ERR_OPERATION_INVALID
        assert "'kid' is protected" in info.value.get_error_message()
        assert sorted(dom.snapshotListNames()) == ["kid", "top"]
    top.delete(0)  # the protected child is re-parented, not deleted
    assert dom.snapshotListNames() == ["kid"]
    kid.delete(VIR_DOMAIN_SNAPSHOT_DELETE_FORCE)
    assert dom.snapshotListNames() == []
    again = dom.snapshotCreateXML("<domainsnapshot><name>kid</name></domainsnapshot>")
    assert again.isProtected() == 0  # the mark went with the deleted snapshot


def test_prune_by_recorded_time(conn):
    dom = conn.lookupByName("test")
    # days 0,1,1,2,8,9,9: d2 and d6 are a second snapshot on their day
    names = chain(dom, [0, 1, 1, 2, 8, 9, 9])
    dom.snapshotLookupByName("d0").setProtected(True)
    policy = {"keep_daily": 2, "keep_weekly": 2}
    dry = dom.snapshotPrune(policy, VIR_DOMAIN_SNAPSHOT_PRUNE_DRY_RUN)
    assert [(d["name"], d["action"], d["reason"]) for d in dry] == [
        ("d6", "keep", "keep-daily"),        # day 9, newest
        ("d5", "keep", "ancestor-of-current"),  # day 9 again: the rule removes it, the current's chain keeps it
        ("d4", "keep", "keep-daily"),        # day 8
        ("d3", "keep", "keep-weekly"),       # day 2: the week before
        ("d2", "keep", "ancestor-of-current"),
        ("d1", "keep", "ancestor-of-current"),
        ("d0", "keep", "protected"),
    ]
    assert sorted(dom.snapshotListNames()) == names  # a dry run changes nothing
    # leave the chain: with the current on a branch of its own, the rest is prunable
    redefine(dom, "cur", BASE + 10 * DAY, None, current=True)
    done = dom.snapshotPrune(policy)
    assert {d["name"]: d["reason"] for d in done if d["action"] == "keep"} == {
        "cur": "keep-daily", "d6": "keep-daily", "d3": "keep-weekly", "d0": "protected"}
    assert sorted(dom.snapshotListNames()) == ["cur", "d0", "d3", "d6"]
    # removal is the normal delete: survivors are re-parented to their nearest surviving ancestor
    assert dom.snapshotLookupByName("d6").getParent().getName() == "d3"
    assert dom.snapshotLookupByName("d3").getParent().getName() == "d0"


def test_prune_match_and_errors(conn):
    dom = conn.lookupByName("test")
    for i, name in enumerate(["nightly-1", "manual", "nightly-2", "nightly-3"]):
        redefine(dom, name, BASE + i * 60)
    result = dom.snapshotPrune({"keep_last": 1, "match": "nightly-*"})
    assert [(d["name"], d["action"], d["reason"]) for d in result] == [
        ("nightly-3", "keep", "keep-last"), ("nightly-2", "remove", ""),
        ("manual", "keep", "not-matched"), ("nightly-1", "remove", "")]
    assert sorted(dom.snapshotListNames()) == ["manual", "nightly-3"]
    for policy, code, words in (
        ({"keep_lst": 1, "keep_daily": -2}, VIR_ERR_INVALID_ARG, ["'keep_lst'", "keep_daily must not be negative"]),
        ({}, VIR_ERR_INVALID_ARG, ["names no keep rule"]),
    ):
        with pytest.raises(virtsnap.libvirtError) as info:
            dom.snapshotPrune(policy)
        assert info.value.get_error_code() == code
        assert all(w in info.value.get_error_message() for w in words)
    with pytest.raises(virtsnap.libvirtError) as info:
        dom.snapshotPrune({"keep_last": 0}, 0x100)
    assert info.value.get_error_code() == VIR_ERR_INVALID_ARG
    assert sorted(dom.snapshotListNames()) == ["manual", "nightly-3"]
    ro = virtsnap.openReadOnly(URI)
    try:
        ro_dom = ro.lookupByName("test")
        assert [d["action"] for d in ro_dom.snapshotPrune({"keep_last": 0}, VIR_DOMAIN_SNAPSHOT_PRUNE_DRY_RUN)] == [
            "remove", "remove"]
        with pytest.raises(virtsnap.libvirtError) as info:
            ro_dom.snapshotPrune({"keep_last": 0})
        assert info.value.get_error_code() == VIR_ERR_OPERATION_DENIED
    finally:
        ro.close()
    assert sorted(dom.snapshotListNames()) == ["manual", "nightly-3"]


def test_cli_prune_protect_and_sizes(capsys, conn):
    domain = conn.lookupByName("test").XMLDesc()
    xml = "<domainsnapshot><name>{}</name><state>shutoff</state><creationTime>{}</creationTime>{}</domainsnapshot>"
    path = f"/tmp/virtsnap-space-{os.getpid()}.xml"
    steps = []
    for i in range(4):
        with open(f"{path}.{i}", "w") as f:
            f.write(xml.format(f"s{i}", BASE + i * DAY, domain))
        steps.append(f"snapshot-create test {path}.{i} --redefine")
    try:
        status = cli_main.main(["-q", "-c", URI, "; ".join(steps) + "; snapshot-protect test s0;"
                                " snapshot-prune test --keep-last 1 --dry-run --json;"
                                " snapshot-prune test --keep-last 1; snapshot-list test --name;"
                                " snapshot-list test --size --json"])
    finally:
        for i in range(4):
            os.unlink(f"{path}.{i}")
    out, err = capsys.readouterr()
    assert status == 0, err
    decoder = json.JSONDecoder()
    dry, end = decoder.raw_decode(out)
    assert dry == [{"name": "s3", "action": "keep", "reason": "keep-last"},
                   {"name": "s2", "action": "remove", "reason": ""},
                   {"name": "s1", "action": "remove", "reason": ""},
                   {"name": "s0", "action": "keep", "reason": "protected"}]
    rest = out[end:]
    table, _, names = rest.partition("s0\ns3\n")
    assert "s2" in table and "remove" in table  # the table of the real run
    listing, _ = decoder.raw_decode(names.strip())
    assert [(s["name"], s["size"]["disk"]) for s in listing] == [("s0", 0), ("s3", 0)]
    assert cli_main.main(["-q", "-c", URI, "dominfo test --size --json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["snapshots"], info["snapshot_bytes"], info["snapshot_bytes_exact"]) == (2, 0, True)
    status = cli_main.main(["-q", "-c", URI, "snapshot-prune test --keep-last nine"])
    assert status == 1
    assert "Numeric value 'nine' for <keep-last> option is malformed" in capsys.readouterr().err


def test_test_driver_forgets_the_mark_of_a_deleted_snapshot_among_many(conn):
    """A protected snapshot deleted with FORCE takes its mark along; the marks of others stay (test driver)."""
    dom = conn.lookupByName("test")
    for name in ("keep", "gone", "other"):
        dom.snapshotCreateXML(f"<domainsnapshot><name>{name}</name></domainsnapshot>", 0)
    dom.snapshotLookupByName("keep").setProtected(True)
    dom.snapshotLookupByName("gone").setProtected(True)
    dom.snapshotLookupByName("gone").delete(virtsnap.VIR_DOMAIN_SNAPSHOT_DELETE_FORCE)
    dom.snapshotLookupByName("other").delete(0)
    again = dom.snapshotCreateXML("<domainsnapshot><name>gone</name></domainsnapshot>", 0)
    assert again.isProtected() == 0
    assert dom.snapshotLookupByName("keep").isProtected() == 1
