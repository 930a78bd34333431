"""The main job, on test:///default until the QEMU driver lands: a snapshot tree built, reverted and tidied.

Uses only the public API and the `virtsnap` command line; prints each step with its time.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import virtsnap

T = TypeVar("T")
URI = "test:///default"


def step(title: str, fn: Callable[[], T]) -> T:
    start = time.perf_counter()
    result = fn()
    print(f"  {title:<58} {1000 * (time.perf_counter() - start):8.2f} ms")
    return result


def tree_lines(dom: virtsnap.virDomain) -> list[str]:
    current = dom.snapshotCurrent().getName() if dom.hasCurrentSnapshot() else None
    lines: list[str] = []

    def walk(snap: virtsnap.virDomainSnapshot, depth: int) -> None:
        mark = "  <- current" if snap.getName() == current else ""
        lines.append("    " + "  " * depth + f"{snap.getName()}{mark}")
        for child in snap.listAllChildren():
            walk(child, depth + 1)

    for root in dom.listAllSnapshots(virtsnap.VIR_DOMAIN_SNAPSHOT_LIST_ROOTS):
        walk(root, 0)
    return lines or ["    (no snapshots)"]


def main() -> int:
    print(f"virtsnap {virtsnap.__version__} demo on {URI} (libvirt's test hypervisor, in memory)")
    conn = virtsnap.open(URI)
    dom = conn.lookupByName("test")
    step("snapshot 'before-upgrade' of the running domain",
         lambda: dom.snapshotCreateXML("<domainsnapshot><name>before-upgrade</name>"
                                       "<description>clean install</description></domainsnapshot>"))
    step("snapshot 'upgraded' (child of before-upgrade)",
         lambda: dom.snapshotCreateXML("<domainsnapshot><name>upgraded</name></domainsnapshot>"))
    step("revert to 'before-upgrade'", lambda: dom.revertToSnapshot(dom.snapshotLookupByName("before-upgrade")))
    step("snapshot 'try-again' (a second branch)",
         lambda: dom.snapshotCreateXML("<domainsnapshot><name>try-again</name></domainsnapshot>"))
    print("  snapshot tree:")
    print("\n".join(tree_lines(dom)))
    xml = step("snapshot XML of 'try-again'", lambda: dom.snapshotLookupByName("try-again").getXMLDesc())
    print("    " + "\n    ".join(xml.splitlines()[:6]) + "\n    ...")
    step("delete 'before-upgrade' (children move up)", lambda: dom.snapshotLookupByName("before-upgrade").delete())
    print("  snapshot tree:")
    print("\n".join(tree_lines(dom)))
    try:
        dom.snapshotCreateXML("<domainsnapshot><name>upgraded</name></domainsnapshot>")
    except virtsnap.libvirtError as exc:
        print(f"  a duplicate name is refused: error {exc.get_error_code()}: {exc.get_error_message()}")
    conn.close()

    cli = shutil.which("virtsnap") or str(Path(sys.executable).with_name("virtsnap"))
    if Path(cli).exists():
        chain = ("snapshot-create-as test s1 'first one'; snapshot-create-as test s2; snapshot-create-as test s3; "
                 "snapshot-revert test s1; snapshot-create-as test s4; snapshot-list test --tree; "
                 "snapshot-info test --current")
        print(f"\n  the same kind of session through the command line:\n  $ virtsnap -c {URI} \"{chain}\"")
        start = time.perf_counter()
        proc = subprocess.run([cli, "-c", URI, chain], capture_output=True, text=True, check=False)
        print("    " + "\n    ".join((proc.stdout + proc.stderr).rstrip().splitlines()))
        print(f"  (whole command: {1000 * (time.perf_counter() - start):.1f} ms, exit {proc.returncode})")
        if proc.returncode != 0:
            return 1
    print("demo finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
