"""Benchmark: the wall time of a 3-host ansible-playbook run of virtsnap.virtsnap.snapshot (two domains per
host, sshd hosts on loopback as tests/remote starts them): the creating run and an unchanged second run.

Writes bench/results/ansible.json. Usage: python bench/bench_ansible.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from common import machine, write_results

import virtsnap

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.remote.conftest import _keygen, start_host, stop_host, write_inventory
from tests.remote.test_ansible import _domain, _play


def main() -> None:
    before = machine()  # its load average is the one before the run
    base = Path(tempfile.mkdtemp(prefix="vs-bench-"))
    key = base / "client_key"
    _keygen(key)
    hosts = [start_host(base, name, key) for name in ("alpha", "beta", "gamma")]
    try:
        for host in hosts:
            os.environ["VIRTSNAP_QEMU_STATE_DIR"] = str(host.state)
            conn = virtsnap.open("qemu:///session")
            for name in ("d1", "d2"):
                conn.defineXML(_domain(host.state.parent, name))
            conn.close()
        inventory = write_inventory(base / "hosts.ini", hosts)
        rows = {}
        for label in ("create_s", "unchanged_s"):
            start = time.perf_counter()
            recap = _play(base, inventory)
            rows[label] = time.perf_counter() - start
            assert all(r["failed"] == 0 for r in recap.values()), recap
    finally:
        for host in hosts:
            stop_host(host)
    for name, value in rows.items():
        print(f"{name:<16}{value:>10.2f}")
    write_results("ansible", {"machine": before, "hosts": 3, "domains_per_host": 2, **rows})


if __name__ == "__main__":
    main()
