"""Benchmark: snapshot metadata at scale (issue 8), with libvirt 9.0's C test driver as the anchor.

Grows one domain's forest to each of --sizes snapshots (through REDEFINE, no guest needed) and times the
metadata operations at every size: create (REDEFINE of a new snapshot on qemu:///session, a plain create on
test:///default), redefine of an existing snapshot as current, lookup, current, getParent, getXMLDesc, delete
of a leaf, delete of a snapshot with 3 children (they move to its parent), revert (test driver), the full
listAllSnapshots and `snapshot-list --tree` run in-process through the CLI's main(). Then cold CLI starts
(fresh processes) and the 2,000-creates-and-a-list comparison of bench_test_driver.py.

The same worker runs under this interpreter (virtsnap: qemu:///session and test:///default) and under
Debian's /usr/bin/python3 (libvirt 9.0's test:///default; its `--tree` is virsh's algorithm in Python:
listAllSnapshots then getParent per snapshot). Each worker is a fresh process.

Forest shape (deterministic): snapshot i is a child of i-1, except every 10th which branches off a random
earlier snapshot and every 1,000th which starts a new root: depth ~ 10·ln(N), a few roots.

Writes bench/results/scale.json and, through bench/report.py, the report of every benchmark's results
(report.md and latency.png).
Usage: python bench/bench_scale.py [--sizes 100,1000,10000,100000] [--anchor-max 10000] [--samples 31] [--quick]
       [--no-report]
Goals: --tree of 10,000 under 200 ms in-process (issue 8), of 100,000 under 2 s (issue 21); each metadata
operation under 2 ms at 10,000 and flat to 100,000; a cold snapshot-current/-info/-parent/-dumpxml of one
snapshot of the big domain as fast as of the small one; cold CLI start under 100 ms (issue 21: 50 ms); test
driver within 2x of libvirt's C test driver on 2,000 creates and a list. libvirt's C test driver (the anchor)
is grown only to --anchor-max snapshots: its getParent-per-snapshot tree is quadratic-ish in Python and would
dominate `make bench` at 100,000.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, machine, write_results

HERE = Path(__file__).resolve().parent
QEMU_UUID = "5a7e0c9b-6d1f-4c5e-9b1a-000000010000"
SMALL_UUID = "5a7e0c9b-6d1f-4c5e-9b1a-000000000010"
SMALL_COUNT = 10
NONLEAF_CHILDREN = 3


def qemu_domain_xml(name: str, uuid: str, disk: str) -> str:
    # The disk need not exist: REDEFINE never touches images, and delete skips a missing image.
    return (f"<domain type='qemu'>\n  <name>{name}</name>\n  <uuid>{uuid}</uuid>\n"
            "  <memory unit='KiB'>262144</memory>\n  <currentMemory unit='KiB'>262144</currentMemory>\n"
            "  <vcpu placement='static'>1</vcpu>\n  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n  </os>\n"
            "  <devices>\n    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n"
            f"      <source file='{disk}'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n"
            "  </devices>\n</domain>\n")


def parent_of(i: int, rng: random.Random) -> int | None:
    if i % 1000 == 0:
        return None
    if i % 10 == 0:
        return rng.randrange(i)
    return i - 1


# -- the worker (runs under either interpreter: stdlib only at import time) ------------------------------
class Worker:
    def __init__(self, impl: str, uri: str, samples: int) -> None:
        self.impl, self.uri, self.samples = impl, uri, samples
        self.serial = 0  # names of the benchmark's own snapshots (x1, x2...) and creation times
        self.qemu = uri.startswith("qemu")
        if impl == "libvirt":
            import libvirt as lv
            lv.registerErrorHandler(lambda *_: None, None)
        else:
            import virtsnap as lv
        self.lv = lv
        self.conn = lv.open(uri)
        if self.qemu:
            # the disks (never created) outside the state directory: the driver refuses paths inside it
            disks = os.environ["VIRTSNAP_BENCH_DISKS"]
            self.dom = self.conn.defineXML(qemu_domain_xml("big", QEMU_UUID, f"{disks}/big.qcow2"))
            small = self.conn.defineXML(qemu_domain_xml("small", SMALL_UUID, f"{disks}/small.qcow2"))
            small_xml = small.XMLDesc(0)
            for i in range(SMALL_COUNT):
                small.snapshotCreateXML(self.snapshot_xml(f"s{i}", f"s{i - 1}" if i else None, small_xml),
                                        lv.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE | lv.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT)
        else:
            self.dom = self.conn.lookupByName("test")
        self.domxml = self.dom.XMLDesc(0)
        self.other = lv.open(uri) if self.qemu else None
        self.rng = random.Random(8)
        self.shape_rng = random.Random(1)
        self.count = 0
        self.redefine = lv.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE

    def snapshot_xml(self, name: str, parent: str | None, domxml: str | None = None) -> str:
        state = "shutoff"
        memory = "<memory snapshot='no'/>"
        disks = "<disks><disk name='vda' snapshot='internal'/></disks>"
        parent_xml = f"<parent><name>{parent}</name></parent>" if parent else ""
        return (f"<domainsnapshot><name>{name}</name><state>{state}</state>{parent_xml}"
                f"<creationTime>{1700000000 + self.serial_next()}</creationTime>{memory}{disks}"
                f"{domxml or self.domxml}</domainsnapshot>")

    def serial_next(self) -> int:
        self.serial += 1
        return self.serial

    def grow(self, size: int) -> None:
        lv = self.lv
        while self.count < size:
            i = self.count
            parent = parent_of(i, self.shape_rng)
            flags = self.redefine | (lv.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT if i == size - 1 else 0)
            self.dom.snapshotCreateXML(self.snapshot_xml(f"s{i}", f"s{parent}" if parent is not None else None), flags)
            self.count += 1

    def pick(self) -> str:
        return f"s{self.rng.randrange(self.count)}"

    def pick_child(self) -> str:
        while True:
            i = self.rng.randrange(1, self.count)
            if i % 1000:
                return f"s{i}"

    def fresh(self) -> str:
        self.serial_next()
        return f"x{self.serial}"

    def timed(self, fn, samples: int | None = None, setup=None, teardown=None) -> list[float]:
        out = []
        for _ in range(samples or self.samples):
            arg = setup() if setup is not None else None
            start = time.perf_counter()
            result = fn(arg) if setup is not None else fn()
            out.append(time.perf_counter() - start)
            if teardown is not None:
                teardown(arg, result)
        return out

    def measure(self, size: int) -> dict[str, list[float]]:
        lv, dom = self.lv, self.dom
        self.grow(size)
        res: dict[str, list[float]] = {}
        created: list = []

        # create: a plain create on the test driver (child of current), REDEFINE of a new leaf on QEMU
        if self.qemu:
            def create_setup():
                return self.snapshot_xml(self.fresh(), self.pick())
            res["create"] = self.timed(lambda xml: created.append(dom.snapshotCreateXML(xml, self.redefine)),
                                       setup=create_setup)
        else:
            def create_setup():
                return f"<domainsnapshot><name>{self.fresh()}</name></domainsnapshot>"
            res["create"] = self.timed(lambda xml: created.append(dom.snapshotCreateXML(xml, 0)), setup=create_setup)
        # delete of a leaf: the snapshots just created (newest first: each is a leaf on either driver)
        res["delete (leaf)"] = self.timed(lambda snap: snap.delete(0), setup=created.pop)

        # delete of a snapshot with children: X under a random P, NONLEAF_CHILDREN leaves under X, delete X
        def nonleaf_setup():
            x = self.fresh()
            snap = dom.snapshotCreateXML(self.snapshot_xml(x, self.pick()), self.redefine)
            kids = [dom.snapshotCreateXML(self.snapshot_xml(self.fresh(), x), self.redefine)
                    for _ in range(NONLEAF_CHILDREN)]
            return snap, kids

        def nonleaf_teardown(arg, _result):
            for kid in arg[1]:
                kid.delete(0)

        res["delete (3 children)"] = self.timed(lambda arg: arg[0].delete(0), setup=nonleaf_setup,
                                                teardown=nonleaf_teardown)

        # redefine an existing snapshot as current (snapshot-current NAME): the O(depth) cycle check
        flags = self.redefine | lv.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT
        res["redefine existing as current"] = self.timed(
            lambda xml: dom.snapshotCreateXML(xml, flags),
            setup=lambda: dom.snapshotLookupByName(self.pick(), 0).getXMLDesc(lv.VIR_DOMAIN_SNAPSHOT_XML_SECURE))
        res["lookup"] = self.timed(lambda name: dom.snapshotLookupByName(name, 0), setup=self.pick)
        if self.qemu:  # another connection (another store: as another process) wrote since the last call
            other = self.other.lookupByName(dom.name())

            def other_writes():
                name = self.fresh()
                other.snapshotCreateXML(self.snapshot_xml(name, self.pick()), self.redefine)
                return name

            res["lookup after another process's create"] = self.timed(
                lambda name: dom.snapshotLookupByName(name, 0), setup=other_writes,
                teardown=lambda name, snap: other.snapshotLookupByName(name, 0).delete(0))
        res["current"] = self.timed(lambda: dom.snapshotCurrent(0))
        res["getParent"] = self.timed(lambda snap: snap.getParent(0),
                                      setup=lambda: dom.snapshotLookupByName(self.pick_child(), 0))
        res["getXMLDesc"] = self.timed(lambda snap: snap.getXMLDesc(0),
                                       setup=lambda: dom.snapshotLookupByName(self.pick(), 0))
        if not self.qemu:
            res["revert"] = self.timed(lambda snap: dom.revertToSnapshot(snap, 0),
                                       setup=lambda: dom.snapshotLookupByName(self.pick(), 0))
        few = max(3, self.samples // 6) if size >= 3000 else max(5, self.samples // 3)
        res["listAllSnapshots"] = self.timed(lambda: dom.listAllSnapshots(0), samples=few)
        res["snapshot-list --tree"] = self.timed(self.tree_listing, samples=few)
        return res

    def tree_listing(self) -> None:
        if self.impl == "virtsnap":
            from virtsnap.cli.main import main

            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                status = main(["-c", self.uri, "snapshot-list", self.dom.name(), "--tree"])
            assert status == 0 and buf.getvalue().count("\n") > self.count, buf.getvalue()[:200]
            return
        # libvirt-python: virsh's own algorithm (virshSnapshotListCollect + vshTreePrint), in Python
        snaps = self.dom.listAllSnapshots(0)
        parents = {}
        for snap in snaps:
            try:
                parents[snap.getName()] = snap.getParent(0).getName()
            except self.lv.libvirtError:
                parents[snap.getName()] = None
        children: dict[str | None, list[str]] = {}
        for name in sorted(parents, key=str.lower):
            children.setdefault(parents[name], []).append(name)
        out = []
        stack = [(name, "") for name in reversed(children.get(None, []))]
        while stack:
            name, indent = stack.pop()
            out.append(indent + name)
            stack.extend((kid, indent + "  ") for kid in reversed(children.get(name, [])))
        assert len(out) == len(snaps)


def worker_main(impl: str, uri: str, sizes: list[int], samples: int) -> None:
    worker = Worker(impl, uri, samples)
    results: dict[str, dict[str, list[float]]] = {}
    for size in sizes:
        start = time.perf_counter()
        results[str(size)] = worker.measure(size)
        print(f"  {impl} {uri} {size}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    json.dump(results, sys.stdout)


# -- the driver script ----------------------------------------------------------------------------------
def run_worker(python: str, impl: str, uri: str, sizes: list[int], samples: int,
               env: dict[str, str] | None = None) -> dict[str, dict[str, list[float]]]:
    cmd = [python, str(Path(__file__).resolve()), "--worker", impl, uri, ",".join(map(str, sizes)), str(samples)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=HERE)
    sys.stderr.write(out.stderr)
    if out.returncode != 0:
        raise SystemExit(f"worker {impl} {uri} failed")
    return json.loads(out.stdout)


def cold(argv: list[str], runs: int, env: dict[str, str] | None = None, status: int = 0) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, env={**os.environ, **(env or {})})
        times.append(time.perf_counter() - start)
        if proc.returncode != status:
            raise SystemExit(f"{argv} failed: {proc.stderr.decode()[:300]}")
    return times


# Where a cold start's imports go: cumulative -X importtime of these modules where they were first imported.
IMPORT_WATCH = ("virtsnap.api", "virtsnap.cli.registry", "virtsnap.drivers.qemu.driver", "virtsnap.store.db",
                "virtsnap.conf.snapshot_xml", "virtsnap.drivers.base", "virtsnap.flags", "virtsnap.errors",
                "virtsnap.conf.tree", "typing", "enum", "re", "sqlite3", "pathlib", "urllib.parse", "threading",
                "xml.parsers.expat", "lxml.etree", "dataclasses", "json", "uuid", "socket", "subprocess")


def import_profile(argv: list[str], env: dict[str, str], runs: int = 5) -> dict[str, float]:
    """Median cumulative import time (ms) of IMPORT_WATCH modules and the sum of all imports' own time."""
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        out = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env})
        seen: dict[str, float] = {"all imports (sum of own times)": 0.0}
        for line in out.stderr.splitlines():
            if not line.startswith("import time:") or "|" not in line[13:]:
                continue
            own, cumulative, name = (part.strip() for part in line[12:].split("|"))
            if not own.isdigit():
                continue
            seen["all imports (sum of own times)"] += int(own) / 1000
            if name in IMPORT_WATCH:
                seen[name] = int(cumulative) / 1000
        for name, ms in seen.items():
            samples.setdefault(name, []).append(ms)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,10000,100000")
    parser.add_argument("--anchor-max", type=int, default=10000,
                        help="largest size libvirt's C test driver (the anchor) is grown to")
    parser.add_argument("--samples", type=int, default=31)
    parser.add_argument("--runs", type=int, default=11, help="fresh processes per cold-start command")
    parser.add_argument("--creates", type=int, default=2000, help="creates in the libvirt comparison")
    parser.add_argument("--quick", action="store_true", help="sizes 100,1000, few samples (a smoke run)")
    parser.add_argument("--no-libvirt", action="store_true")
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", nargs=4, metavar=("IMPL", "URI", "SIZES", "SAMPLES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, uri, sizes, samples = args.worker
        worker_main(impl, uri, [int(s) for s in sizes.split(",")], int(samples))
        return 0
    if args.quick:
        args.sizes, args.samples, args.runs, args.creates = "100,1000", 7, 3, 500
    sizes = [int(s) for s in args.sizes.split(",")]
    have_libvirt = not args.no_libvirt and subprocess.run(
        ["/usr/bin/python3", "-c", "import libvirt"], capture_output=True).returncode == 0

    result: dict = {"machine": machine(), "sizes": sizes, "samples": args.samples, "runs": args.runs,
                    "scale": {}, "cold": {}, "compare": {}}
    with tempfile.TemporaryDirectory(prefix="virtsnap-bench-") as tmp:
        qenv = {"VIRTSNAP_QEMU_STATE_DIR": f"{tmp}/state", "VIRTSNAP_BENCH_DISKS": tmp}
        result["scale"]["qemu"] = run_worker(sys.executable, "virtsnap", "qemu:///session", sizes, args.samples, qenv)
        result["scale"]["test"] = run_worker(sys.executable, "virtsnap", "test:///default", sizes, args.samples)
        if have_libvirt:
            anchor_sizes = [s for s in sizes if s <= args.anchor_max] or sizes[:1]
            result["scale"]["libvirt-test"] = run_worker("/usr/bin/python3", "libvirt", "test:///default",
                                                         anchor_sizes, args.samples, {"LIBVIRT_DEBUG": "4"})

        # cold starts: fresh processes, the QEMU state the worker left behind (big: max(sizes), small: 10);
        # bytecode compiled first, as an installed package has it
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(HERE.parent / "src" / "virtsnap")], check=True)
        cli = shutil.which("virtsnap", path=str(Path(sys.executable).parent)) or "virtsnap"
        big = max(sizes)
        commands = [
            ("python -c pass (interpreter floor)", [sys.executable, "-c", "pass"], None),
            ("python -c 'import virtsnap'", [sys.executable, "-c", "import virtsnap"], None),
            (f"virtsnap -c qemu:///session snapshot-list small ({SMALL_COUNT})",
             [cli, "-c", "qemu:///session", "snapshot-list", "small"], qenv),
            (f"virtsnap -c qemu:///session snapshot-current small ({SMALL_COUNT})",
             [cli, "-c", "qemu:///session", "snapshot-current", "small"], qenv),
            (f"virtsnap -c qemu:///session snapshot-current big ({big:,})",
             [cli, "-c", "qemu:///session", "snapshot-current", "big", "--name"], qenv),
            # one snapshot of each domain, read alone: the same cost at 10 and at `big` snapshots
            *[(f"virtsnap -c qemu:///session {cmd} {dom} s{SMALL_COUNT - 1} ({count:,})",
               [cli, "-c", "qemu:///session", cmd, dom, f"s{SMALL_COUNT - 1}"], qenv)
              for cmd in ("snapshot-info", "snapshot-parent", "snapshot-dumpxml")
              for dom, count in (("small", SMALL_COUNT), ("big", big))],
            (f"virtsnap -c qemu:///session snapshot-list big --tree ({big:,})",
             [cli, "-c", "qemu:///session", "snapshot-list", "big", "--tree"], qenv),
            ("virtsnap -c test:///default snapshot-list test", [cli, "-c", "test:///default", "snapshot-list", "test"],
             None),
            # the test driver starts without snapshots: "no current snapshot", status 1, after the same lookups
            ("virtsnap -c test:///default snapshot-current test",
             [cli, "-c", "test:///default", "snapshot-current", "test"], None),
        ]
        if shutil.which("virsh"):
            commands.append(("virsh -c test:///default snapshot-list test (libvirt 9.0)",
                             ["virsh", "-c", "test:///default", "snapshot-list", "test"], None))
        # Rounds interleaved (one fresh process of each command per round; the slow --tree in every third): on a
        # shared machine whose speed drifts by tens of percent within minutes, each figure and the interpreter's
        # floor then see the same moments, and their ratios hold where the absolute values move.
        for round_ in range(args.runs):
            for label, argv, env in commands:
                if "--tree" in label and round_ % 3:
                    continue
                status = 1 if label.endswith("snapshot-current test") else 0
                result["cold"].setdefault(label, []).extend(cold(argv, 1, env, status=status))
        for label in result["cold"]:
            print(f"  cold {label}: {statistics.median(result['cold'][label]) * 1000:.1f} ms", file=sys.stderr)

        result["imports"] = import_profile([sys.executable, "-X", "importtime", cli, "-c", "qemu:///session",
                                            "snapshot-list", "small"], qenv)

    # the comparison: 2,000 creates and a list, fresh interpreter each run (bench_test_driver's workload)
    sys.path.insert(0, str(HERE))
    from bench_test_driver import run_workload

    runs = max(3, args.runs // 2)
    result["compare"]["virtsnap"] = [run_workload(sys.executable, "virtsnap", args.creates) for _ in range(runs)]
    if have_libvirt:
        result["compare"]["libvirt"] = [run_workload("/usr/bin/python3", "libvirt", args.creates) for _ in range(runs)]
    result["compare"]["creates"] = args.creates

    write_results("scale", result, args.out)
    if not args.no_report:
        from report import write_report

        write_report(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
