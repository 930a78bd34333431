"""Benchmark: aligning a snapshot's disks with a domain of many disks (issue 12: align_disks was quadratic).

Parses a domain of N disks and a snapshot that names every disk (half external with default overlay names,
half internal-default), then times `align_disks` alone, at each of --sizes. Pure conf code: no hypervisor.
Writes bench/results/align.json. Usage: python bench/bench_align.py [--sizes 250,500,1000,2000] [--samples 5]
Goal: linear growth (2,000 disks in well under a second).
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import machine, write_results

from virtsnap.conf.domain_xml import DomainDef
from virtsnap.conf.snapshot_xml import Location, ParseMode, align_disks, parse_snapshot


def documents(n: int) -> tuple[str, str]:
    disks = "".join(f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                    f"<source file='/images/d{i}.qcow2'/><target dev='vd{i}' bus='virtio'/></disk>"
                    for i in range(n))
    domain = f"<domain type='qemu'><name>big</name><devices>{disks}</devices></domain>"
    # reversed order, so alignment has to sort; even disks external (default names), odd ones internal default
    wanted = "".join(f"<disk name='vd{i}' snapshot='external'/>" if i % 2 == 0 else f"<disk name='vd{i}'/>"
                     for i in reversed(range(n)))
    return domain, f"<domainsnapshot><name>s</name><disks>{wanted}</disks></domainsnapshot>"


def once(n: int) -> float:
    domain_xml, snap_xml = documents(n)
    dom = DomainDef.parse(domain_xml)
    defn = parse_snapshot(snap_xml, ParseMode.CREATE, now=0)
    start = time.perf_counter()
    align_disks(defn, Location.EXTERNAL, uniform_internal=False, existing=dom, is_regular_file=lambda _p: True)
    elapsed = time.perf_counter() - start
    assert len(defn.disks) == n and defn.disks[0].source == "/images/d0.s"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="250,500,1000,2000")
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args()
    result: dict[str, object] = {"machine": machine(), "align_disks_s": {}}
    for n in (int(s) for s in args.sizes.split(",")):
        samples = [once(n) for _ in range(args.samples)]
        result["align_disks_s"][n] = samples  # type: ignore[index]
        print(f"{n:6d} disks: align_disks median {statistics.median(samples) * 1000:9.1f} ms")
    write_results("align", result)


if __name__ == "__main__":
    main()
