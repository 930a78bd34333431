"""Benchmark: test:///default in-process, virtsnap against libvirt 9.0's C test driver, and CLI cold start.

Prints a Markdown table of medians and writes bench/results/test_driver.json (bench/report.py reports it).
Goals (issue 2): 2,000 creates and a list of 2,000 within 2x of libvirt; `virtsnap snapshot-list` cold start
under 100 ms. Usage: python bench/bench_test_driver.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import machine, write_results

# The same timing code runs under this interpreter (virtsnap) and Debian's /usr/bin/python3 (libvirt).
WORKLOAD = r"""
import json, sys, time
impl, count = sys.argv[1], int(sys.argv[2])
if impl == "libvirt":
    import libvirt
else:
    import virtsnap as libvirt
conn = libvirt.open("test:///default")
dom = conn.lookupByName("test")
t0 = time.perf_counter()
for i in range(count):
    dom.snapshotCreateXML("<domainsnapshot><name>s%d</name></domainsnapshot>" % i, 0)
t1 = time.perf_counter()
snaps = dom.listAllSnapshots(0)
t2 = time.perf_counter()
names = dom.snapshotListNames(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)
t3 = time.perf_counter()
dom.snapshotLookupByName("s%d" % (count // 2)).getXMLDesc(0)
t4 = time.perf_counter()
assert len(snaps) == count and len(names) == count
print(json.dumps({"create": t1 - t0, "list_all": t2 - t1, "list_names_topo": t3 - t2, "xml": t4 - t3}))
"""


def run_workload(python: str, impl: str, count: int) -> dict[str, float]:
    # A clean environment, but the virtsnap under test is the one PYTHONPATH names, if any (a checkout's src)
    env = {"LIBVIRT_DEBUG": "4", "PATH": "/usr/bin:/bin"}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    out = subprocess.run([python, "-c", WORKLOAD, impl, str(count)], capture_output=True, text=True, check=True,
                         env=env)
    return json.loads(out.stdout)


def cold_start(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return times


WORKLOAD_ROWS = (("create", "{n} creates"), ("list_all", "listAllSnapshots of {n}"),
                 ("list_names_topo", "snapshotListNames(TOPOLOGICAL) of {n}"), ("xml", "getXMLDesc of one"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()

    result: dict = {"machine": machine(), "runs": args.runs, "count": args.count}
    have_libvirt = subprocess.run(["/usr/bin/python3", "-c", "import libvirt"], capture_output=True).returncode == 0
    result["virtsnap"] = [run_workload(sys.executable, "virtsnap", args.count) for _ in range(args.runs)]
    result["libvirt"] = ([run_workload("/usr/bin/python3", "libvirt", args.count) for _ in range(args.runs)]
                         if have_libvirt else [])
    cli = shutil.which("virtsnap") or str(Path(sys.executable).with_name("virtsnap"))
    result["cold"] = {
        "python -c pass (interpreter floor)": {"virtsnap": cold_start([sys.executable, "-c", "pass"], args.runs * 2)},
        "snapshot-list test on test:///default": {
            "virtsnap": cold_start([cli, "-c", "test:///default", "snapshot-list", "test"], args.runs * 2),
            "libvirt": cold_start(["virsh", "-c", "test:///default", "snapshot-list", "test"], args.runs * 2)
            if shutil.which("virsh") else []},
    }
    write_results("test_driver", result)

    print(f"test:///default, median of {args.runs} runs (seconds); ratio = virtsnap / libvirt 9.0\n")
    print("| operation | virtsnap | libvirt 9.0 | ratio |")
    print("|---|---:|---:|---:|")
    rows = [(label.format(n=args.count), [r[key] for r in result["virtsnap"]], [r[key] for r in result["libvirt"]])
            for key, label in WORKLOAD_ROWS]
    rows += [(f"cold: {label}", sides["virtsnap"], sides.get("libvirt", [])) for label, sides in result["cold"].items()]
    for label, mine_samples, ref_samples in rows:
        mine = statistics.median(mine_samples)
        ref = statistics.median(ref_samples) if ref_samples else None
        ratio = f"{mine / ref:.2f}x" if ref else "-"
        ref_text = f"{ref * 1000:.2f} ms" if ref is not None else "-"
        print(f"| {label} | {mine * 1000:.2f} ms | {ref_text} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
