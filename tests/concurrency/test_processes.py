"""Four processes x 25 mixed snapshot operations on one QEMU domain (shut off: qemu-img does the work), and
four threads x 25 on the test driver: the per-domain lock serialises them; nothing is lost or duplicated,
metadata and images agree (snapshot-check finds no drift), no deadlock."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import virtsnap

WORKER = r"""
import json, os, random, sys, time
import virtsnap
me, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
conn = virtsnap.open("qemu:///session")
dom = conn.lookupByName("shared")
mine, log, waits = [], [], []
for k in range(25):
    op = rng.choice(["create", "create", "revert", "delete", "list"]) if mine else "create"
    t = time.monotonic()
    if op == "create":
        name = f"{me}-{k}"
        dom.snapshotCreateXML(f"<domainsnapshot><name>{name}</name></domainsnapshot>")
        mine.append(name)
    elif op == "revert":
        dom.revertToSnapshot(dom.snapshotLookupByName(rng.choice(mine)))
    elif op == "delete":
        name = mine.pop(rng.randrange(len(mine)))
        dom.snapshotLookupByName(name).delete()
    else:
        dom.listAllSnapshots(virtsnap.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)
    waits.append(time.monotonic() - t)
    log.append(op)
print(json.dumps({"alive": mine, "ops": log, "max_wait": max(waits)}))
"""


def test_four_processes_never_interleave():
    if shutil.which("qemu-img") is None:
        pytest.fail("qemu-img is needed (Debian's qemu-utils)")
    work = Path(tempfile.mkdtemp(prefix="vsc-", dir="/tmp"))
    env = {**os.environ, "VIRTSNAP_QEMU_STATE_DIR": str(work / "state")}
    disk = work / "shared.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    xml = (f"<domain type='qemu'><name>shared</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
           f"<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
           f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk></devices></domain>")
    os.environ["VIRTSNAP_QEMU_STATE_DIR"] = str(work / "state")
    try:
        conn = virtsnap.open("qemu:///session")
        dom = conn.defineXML(xml)
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, f"p{i}", str(i)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err[-2000:]
            results.append(json.loads(out))
        alive = sorted(name for r in results for name in r["alive"])
        assert sum(len(r["ops"]) for r in results) == 100
        assert sorted(dom.snapshotListNames()) == alive  # nothing lost, nothing duplicated
        tags = subprocess.run(["qemu-img", "snapshot", "-l", str(disk)], capture_output=True, text=True,
                              check=True).stdout.splitlines()[2:]
        assert sorted(line.split()[1] for line in tags if line.strip()) == alive  # metadata and image agree
        seen = set()
        for snap in dom.listAllSnapshots(virtsnap.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL):
            try:
                assert snap.getParent().getName() in seen  # parents listed first: no cycle, no orphan
            except virtsnap.libvirtError:
                pass  # a root
            seen.add(snap.getName())
        assert dom.snapshotCheck(0) == []  # metadata, images and the journal agree
        print(f"\nconcurrency: 4 processes x 25 ops, {len(alive)} snapshots left, longest wait "
              f"{max(r['max_wait'] for r in results) * 1000:.0f} ms")
        conn.close()
    finally:
        del os.environ["VIRTSNAP_QEMU_STATE_DIR"]
        shutil.rmtree(work, ignore_errors=True)


def test_four_threads_on_the_test_driver_never_interleave():
    """The test driver keeps its state in memory, so its concurrency is threads on one connection: 4 x 25
    mixed operations, then nothing lost or duplicated and the tree keeps its invariants."""
    import random
    import threading

    conn = virtsnap.open("test:///default")
    dom = conn.lookupByName("test")
    alive: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def work(me: int) -> None:
        rng, mine = random.Random(me), []
        try:
            for k in range(25):
                op = rng.choice(["create", "create", "revert", "delete", "list"]) if mine else "create"
                if op == "create":
                    dom.snapshotCreateXML(f"<domainsnapshot><name>t{me}-{k}</name></domainsnapshot>")
                    mine.append(f"t{me}-{k}")
                elif op == "revert":
                    dom.revertToSnapshot(dom.snapshotLookupByName(rng.choice(mine)))
                elif op == "delete":
                    dom.snapshotLookupByName(mine.pop(rng.randrange(len(mine)))).delete()
                else:
                    dom.listAllSnapshots(virtsnap.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)
        alive[me] = mine

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(alive) == 4
    assert sorted(dom.snapshotListNames()) == sorted(n for names in alive.values() for n in names)
    assert dom.snapshotCheck(0) == []  # tree invariants hold
    conn.close()  # test:///default lives while a connection of the process is open: leave it as found
