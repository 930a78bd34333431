"""snapshot-prune on libvirt+ connections (libvirt's test driver underneath): the retention policy is decided on
libvirt's tree and carried out with libvirt's deletes; the current snapshot and its ancestors are kept."""

from __future__ import annotations

import os
import subprocess
import sys

import virtsnap


def test_prune_keeps_current_and_ancestors_and_deletes_through_libvirt() -> None:
    conn = virtsnap.open("libvirt+test:///default")
    dom = conn.lookupByName("test")
    for i in range(5):
        dom.snapshotCreateXML(f"<domainsnapshot><name>s{i}</name></domainsnapshot>")
    dom.revertToSnapshot(dom.snapshotLookupByName("s2"))
    plan = dom.snapshotPrune({"keep_last": 1}, virtsnap.VIR_DOMAIN_SNAPSHOT_PRUNE_DRY_RUN)
    assert [(d["name"], d["action"], d["reason"]) for d in plan] == [
        ("s4", "keep", "keep-last"), ("s3", "remove", ""), ("s2", "keep", "current"),
        ("s1", "keep", "ancestor-of-current"), ("s0", "keep", "ancestor-of-current")]
    assert sorted(dom.snapshotListNames()) == ["s0", "s1", "s2", "s3", "s4"]  # a dry run changes nothing
    dom.snapshotPrune({"keep_last": 1}, 0)
    assert sorted(dom.snapshotListNames()) == ["s0", "s1", "s2", "s4"]
    assert dom.snapshotCurrent().getName() == "s2"
    conn.close()


def test_prune_from_the_cli() -> None:
    env = dict(os.environ, LC_ALL="C", LANG="C")
    out = subprocess.run([sys.executable, "-m", "virtsnap", "-c", "libvirt+test:///default",
                          "snapshot-create-as test a; snapshot-create-as test b; snapshot-create-as test c; "
                          "snapshot-revert test a; snapshot-prune test --keep-last 1; snapshot-list test --name"],
                         capture_output=True, text=True, env=env, timeout=120, check=True).stdout
    assert out.endswith("2 kept, 1 removed\n\na\nc\n\n")  # c the newest, a the current
