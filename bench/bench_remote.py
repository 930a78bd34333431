"""Benchmark: the overhead of a call over test+ssh:// (a real sshd on loopback, as tests/remote starts it)
over the same call on test:///default, and what opening the ssh connection costs.

Writes bench/results/remote.json. Usage: python bench/bench_remote.py [--calls 200] [--samples 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import machine, write_results

import virtsnap

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.remote.conftest import _keygen, start_host, stop_host


def per_call_ms(conn: virtsnap.virConnect, calls: int) -> float:
    dom = conn.lookupByName("test")
    start = time.perf_counter()
    for _ in range(calls):
        dom.snapshotNum()
    return (time.perf_counter() - start) * 1000 / calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args()
    before = machine()  # its load average is the one before the run
    base = Path(tempfile.mkdtemp(prefix="vs-bench-"))
    key = base / "client_key"
    _keygen(key)
    host = start_host(base, "bench", key)
    try:
        uri = host.uri("test")
        opens, remote, local = [], [], []
        lconn = virtsnap.open("test:///default")
        for _ in range(args.samples):
            start = time.perf_counter()
            rconn = virtsnap.open(uri)
            opens.append((time.perf_counter() - start) * 1000)
            remote.append(per_call_ms(rconn, args.calls))
            rconn.close()
            local.append(per_call_ms(lconn, args.calls))
        lconn.close()
    finally:
        stop_host(host)
    rows = {"open_ssh_ms": statistics.median(opens), "call_remote_ms": statistics.median(remote),
            "call_local_ms": statistics.median(local)}
    rows["overhead_ms"] = rows["call_remote_ms"] - rows["call_local_ms"]
    print(f"{'what':<28}{'median ms':>12}")
    for name, value in rows.items():
        print(f"{name:<28}{value:>12.3f}")
    write_results("remote", {"machine": before, "calls": args.calls, "samples": args.samples, **rows})


if __name__ == "__main__":
    main()
