"""What every benchmark script shares: the machine it ran on, its results file in bench/results/, a spread.

Each script writes bench/results/<name>.json (raw samples, in seconds, plus the machine); bench/report.py turns
every results file present into the one report (report.md and latency.png). Stdlib only.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def spread(values: list[float]) -> str:
    """Median and p10-p90 (ms values in, two decimals out); the median alone below three values."""
    if not values:
        return "-"
    if len(values) < 3:
        return f"{statistics.median(values):.2f}"
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    return f"{statistics.median(values):.2f} ({deciles[0]:.2f}-{deciles[-1]:.2f})"


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> dict[str, str]:
    def sh(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "uname": sh("uname", "-a"), "nproc": sh("nproc"),
            "cpu": cpu, "python": platform.python_version(), "libvirt_python": sh(
                "/usr/bin/python3", "-c", "import libvirt; v = libvirt.getVersion(); "
                "print(f'{v // 1000000}.{v // 1000 % 1000}.{v % 1000}')"),
            "load_before": load()}


@contextlib.contextmanager
def system_libvirtd() -> Iterator[bool]:
    """libvirtd's qemu:///system, the libvirt 9.0 anchor: True while it answers (root, libvirtd installed). A
    libvirtd (and virtlogd, which its QEMU driver logs through) started here is stopped at the end; one that was
    running already is left as it was."""
    def answers() -> bool:
        return subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode == 0

    if answers():
        yield True
        return
    if os.geteuid() != 0 or shutil.which("libvirtd") is None:
        yield False
        return
    daemons = ("virtlogd", "libvirtd")
    pidfiles = [Path(f"/run/virtsnap-bench-{daemon}.pid") for daemon in daemons]
    for daemon, pidfile in zip(daemons, pidfiles, strict=True):
        pidfile.unlink(missing_ok=True)  # a pid from an earlier run may belong to another process by now
        subprocess.run([daemon, "--daemon", "--pid-file", str(pidfile)], capture_output=True)
    try:
        deadline = time.monotonic() + 10
        while not answers() and time.monotonic() < deadline:
            time.sleep(0.1)  # polling for readiness: libvirtd answers once its drivers are loaded
        yield answers()
    finally:
        for pidfile in reversed(pidfiles):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
            pidfile.unlink(missing_ok=True)


def write_results(name: str, result: dict[str, Any], out: Path = RESULTS) -> Path:
    """bench/results/<name>.json, with the load average after the run added to its machine."""
    result.setdefault("machine", {})["load_after"] = load()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}", file=sys.stderr)
    return path
