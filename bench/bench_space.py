"""Benchmark: snapshot sizes and prune (issue 17).

Times (1) the prune policy over N snapshots (pure conf code) and (2) the qcow2 reader measuring one internal
snapshot of an image with D MiB of data written by qemu-io (qemu-img makes the image, in a temporary
directory). Writes bench/results/space.json. Usage: python bench/bench_space.py [--sizes 1000,10000]
[--data-mib 64,512] [--samples 5]. Goal: a listing with sizes of a big image stays well under a second.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from datetime import UTC
from pathlib import Path

from common import machine, write_results

from virtsnap.conf.prune import Candidate, parse_policy, plan
from virtsnap.drivers.qemu import qcow2


def time_prune(n: int, samples: int) -> float:
    base = 1_600_000_000
    cands = [Candidate(f"s{i}", base + i * 3600, seq=i) for i in range(n)]  # hourly for n hours
    policy = parse_policy({"keep_last": 3, "keep_hourly": 24, "keep_daily": 7, "keep_weekly": 4,
                           "keep_monthly": 12, "keep_yearly": 5})
    runs = []
    for _ in range(samples):
        start = time.perf_counter()
        plan(cands, policy, tz=UTC)
        runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs)


def time_qcow2(data_mib: int, samples: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "b.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), f"{2 * data_mib}M"], check=True)
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P 0x11 0 {data_mib}M", str(image)], check=True,
                       capture_output=True)
        subprocess.run(["qemu-img", "snapshot", "-c", "s", str(image)], check=True)
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P 0x22 0 {data_mib // 2}M", str(image)],
                       check=True, capture_output=True)
        runs = []
        found = None
        for _ in range(samples):
            start = time.perf_counter()
            found, _ = qcow2.exclusive_bytes(str(image), "s")
            runs.append((time.perf_counter() - start) * 1000)
        assert found is not None
        return statistics.median(runs), found.data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--data-mib", default="64,512")
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args()
    rows: dict[str, object] = {"prune_ms": {}, "qcow2_ms": {}}
    print(f"{'snapshots':>10} {'prune ms':>10}")
    for n in (int(x) for x in args.sizes.split(",")):
        ms = time_prune(n, args.samples)
        rows["prune_ms"][str(n)] = round(ms, 2)  # type: ignore[index]
        print(f"{n:>10} {ms:>10.2f}")
    print(f"{'data MiB':>10} {'qcow2 ms':>10} {'own MiB':>8}")
    for mib in (int(x) for x in args.data_mib.split(",")):
        ms, own = time_qcow2(mib, args.samples)
        rows["qcow2_ms"][str(mib)] = round(ms, 2)  # type: ignore[index]
        print(f"{mib:>10} {ms:>10.2f} {own / 2**20:>8.1f}")
    write_results("space", {"machine": machine(), **rows})


if __name__ == "__main__":
    main()
