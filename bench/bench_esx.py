"""Benchmark: the ESX driver against raw pyvmomi on the same vcsim (tests/esx/vcsim), as a Markdown table.

Lists a 200-snapshot tree (20 branches of 10: ESX allows 32 levels) and times create / revert / delete of one
snapshot, interleaving virtsnap and raw pyvmomi on the same VM, once on a VM with that big tree and once on
a VM with a small one. Raw baselines:
  - idiomatic: the call, then pyVim.task.WaitForTask (a property-collector filter per task);
  - minimal:   the call, then re-read task.info until done (vcsim finishes at once, so usually one read);
  - by name:   minimal, after finding the snapshot (or checking the new name is free) in `vm.snapshot`,
               which is what addressing snapshots by name, as libvirt's API does, costs in raw pyvmomi.
Round trips are SOAP requests counted at the stub. Goal (issue 5): within 1.2x of raw, one round trip for
the tree. Writes bench/results/esx.json (bench/report.py reports it).
Usage: python bench/bench_esx.py [--runs N] [--snapshots N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "esx"))
sys.path.insert(0, str(ROOT / "src"))

from importlib import metadata  # noqa: E402

from common import machine, write_results  # noqa: E402
from conftest_vcsim import vcsim_server  # noqa: E402
from pyVim.connect import Disconnect, SmartConnect  # noqa: E402
from pyVim.task import WaitForTask  # noqa: E402
from pyVmomi import SoapAdapter, vim  # noqa: E402

import virtsnap  # noqa: E402

BRANCH = 10
KINDS = ("idiom", "min", "name", "ours")


class RoundTrips:
    """SOAP requests per stub: every request, pyvmomi's or the driver's fast read, is serialized once."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        original = SoapAdapter.SoapStubAdapter.SerializeRequest

        def counting(stub: Any, mo: Any, info: Any, args: Any) -> Any:
            self.counts[id(stub)] = self.counts.get(id(stub), 0) + 1
            return original(stub, mo, info, args)

        SoapAdapter.SoapStubAdapter.SerializeRequest = counting  # type: ignore[method-assign]

    def of(self, stub: Any, fn: Callable[[], Any]) -> int:
        before = self.counts.get(id(stub), 0)
        fn()
        return self.counts.get(id(stub), 0) - before


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def wait_minimal(task: Any) -> Any:
    while True:
        info = task.info
        if info.state == vim.TaskInfo.State.success:
            return info.result
        if info.state == vim.TaskInfo.State.error:
            raise info.error


def wait_idiom(task: Any) -> Any:
    WaitForTask(task)
    return task.info.result


def walk(vm: Any) -> list[Any]:
    out: list[Any] = []
    stack = list(vm.snapshot.rootSnapshotList) if vm.snapshot else []
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.childSnapshotList)
    return out


def by_name(vm: Any, name: str) -> Any:
    return next(n.snapshot for n in walk(vm) if n.name == name)


def build_tree(vm: Any, count: int, prefix: str) -> None:
    root = wait_minimal(vm.CreateSnapshot_Task(name=f"{prefix}0", description="", memory=False, quiesce=False))
    for i in range(1, count):
        if i % BRANCH == 0:
            wait_minimal(root.RevertToSnapshot_Task())
        wait_minimal(vm.CreateSnapshot_Task(name=f"{prefix}{i}", description="", memory=False, quiesce=False))


def cycle(kind: str, name: str, vm: Any, dom: Any) -> list[tuple[str, Callable[[], Any]]]:
    """create, revert, delete of snapshot `name` done the `kind` way."""
    held: list[Any] = []
    if kind == "ours":
        return [("create", lambda: held.append(dom.snapshotCreateXML(
                    f"<domainsnapshot><name>{name}</name></domainsnapshot>", 0))),
                ("revert", lambda: dom.revertToSnapshot(held[0])),
                ("delete", lambda: held[0].delete())]
    if kind == "name":
        def create() -> None:
            assert all(n.name != name for n in walk(vm))
            wait_minimal(vm.CreateSnapshot_Task(name=name, description="", memory=False, quiesce=False))
        return [("create", create),
                ("revert", lambda: wait_minimal(by_name(vm, name).RevertToSnapshot_Task())),
                ("delete", lambda: wait_minimal(by_name(vm, name).RemoveSnapshot_Task(removeChildren=False)))]
    wait = wait_idiom if kind == "idiom" else wait_minimal
    return [("create", lambda: held.append(wait(vm.CreateSnapshot_Task(name=name, description="", memory=False,
                                                                      quiesce=False)))),
            ("revert", lambda: wait(held[0].RevertToSnapshot_Task())),
            ("delete", lambda: wait(held[0].RemoveSnapshot_Task(removeChildren=False)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--snapshots", type=int, default=200)
    args = parser.parse_args()
    info = machine()
    trips = RoundTrips()
    rows: list[tuple[str, dict[str, float], dict[str, int]]] = []
    with vcsim_server() as srv:
        si = SmartConnect(**srv.connect_kwargs())
        os.environ["VIRTSNAP_ESX_PASSWORD"] = srv.password
        conn = virtsnap.open(f"esx://{srv.user}@{srv.host}:{srv.port}/?no_verify=1")
        stubs = {"ours": conn.driver.session.si._stub}
        stubs.update({k: si._stub for k in ("idiom", "min", "name")})
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        vms = {v.name: v for v in view.view}
        view.Destroy()
        big, small = vms["ha-host_VM0"], vms["ha-host_VM1"]
        build_tree(big, args.snapshots, "s")
        build_tree(small, 3, "t")
        big_dom, small_dom = conn.lookupByName("ha-host_VM0"), conn.lookupByName("ha-host_VM1")
        assert big_dom.snapshotNum() == args.snapshots == len(walk(big))

        listing = {
            "idiom": lambda: [n.name for n in walk(big)],
            "ours": lambda: big_dom.listAllSnapshots(),
        }
        times = {k: [timed(fn) for _ in range(args.runs)] for k, fn in listing.items()}
        med = {k: statistics.median(v) for k, v in times.items()}
        med["min"] = med["name"] = med["idiom"]
        counts = {"idiom": trips.of(stubs["idiom"], listing["idiom"]), "ours": trips.of(stubs["ours"], listing["ours"])}
        counts["min"] = counts["name"] = counts["idiom"]
        rows.append((f"list {args.snapshots} snapshots", med, counts))
        topo = statistics.median(timed(lambda: big_dom.snapshotListNames(
            virtsnap.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)) for _ in range(args.runs))
        rows.append((f"list {args.snapshots}, TOPOLOGICAL names", {**med, "ours": topo}, counts))

        cases = ((f"{args.snapshots}-snapshot tree", big, big_dom), ("3-snapshot tree", small, small_dom))
        for label, vm, dom in cases:
            samples: dict[str, dict[str, list[float]]] = {op: {k: [] for k in KINDS} for op in
                                                          ("create", "revert", "delete")}
            trip_counts: dict[str, dict[str, int]] = {op: {} for op in samples}
            for i in range(args.runs):
                for kind in KINDS:
                    for op, fn in cycle(kind, f"b{kind}{i}", vm, dom):
                        stub = stubs[kind]
                        before = trips.counts.get(id(stub), 0)
                        samples[op][kind].append(timed(fn))
                        trip_counts[op][kind] = trips.counts.get(id(stub), 0) - before
            for op in samples:
                rows.append((f"{op} ({label})", {k: statistics.median(v) for k, v in samples[op].items()},
                             trip_counts[op]))
        conn.close()
        Disconnect(si)

    write_results("esx", {"machine": info, "runs": args.runs, "snapshots": args.snapshots,
                          "pyvmomi": metadata.version("pyvmomi"),
                          "rows": [{"operation": label, "median": m, "round_trips": c} for label, m, c in rows]})
    print(f"vcsim (govmomi 0.24.2, ESX model) on 127.0.0.1, pyvmomi {metadata.version('pyvmomi')}; "
          f"medians of {args.runs} runs, ms\n")
    print("| operation | raw WaitForTask | raw minimal | raw by name | virtsnap | vs WaitForTask | vs minimal "
          "| vs by name | round trips (WaitForTask/min/name/virtsnap) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for label, m, c in rows:
        ours = m["ours"]
        print(f"| {label} | {m['idiom'] * 1e3:.2f} | {m['min'] * 1e3:.2f} | {m['name'] * 1e3:.2f} | {ours * 1e3:.2f} "
              f"| {ours / m['idiom']:.2f}x | {ours / m['min']:.2f}x | {ours / m['name']:.2f}x "
              f"| {c['idiom']}/{c['min']}/{c['name']}/{c['ours']} |")
    print("\nList rows: every raw column is the same `vm.snapshot` walk. virtsnap's revert includes the lookup "
          "libvirt-python's API makes afterwards to refresh the domain's ID.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
