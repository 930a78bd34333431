"""Where virtsnap's own LIVE pause goes, from QEMU's trace of virtsnap's own QEMU (bench_live_pause.py does the
same for hand-made QMP sequences on a QEMU of its own).

Runs the 512 MiB guest that keeps 384 MiB dirty as a virtsnap domain whose QEMU is started through a wrapper
(VIRTSNAP_QEMU) adding trace points with timestamps (-msg timestamp=on, the client's clock), then, round by
round: a LIVE external memory snapshot through virtsnap's API, background-snapshot alone over QMP on the same
QEMU (the goal's anchor), and with --save a non-live one (bench_external.py's order). Per LIVE round, from
QEMU's trace: when its monitor read the stop and the disk switch, STOP, the switch's reply, the snapshot thread
past its setup, RAM write-protected, RESUME; from virtsnap's process: when it released the held stream.
Later rounds only (the first has the guest's transparent huge pages intact).

Usage: python bench/bench_live_trace.py [--runs N] [--save] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

import bench_external as be  # noqa: E402 - the guest, the dirtier, background-snapshot alone
from common import spread  # noqa: E402

TRACES = ("vm_state_notify", "migrate_set_state", "ram_write_tracking_ramblock_start", "monitor_qmp_respond",
          "handle_qmp_command")
SWITCH = ("transaction", "blockdev-snapshot")
STEPS = (("stop", "stop_replied", "STOP -> QEMU replied to the stop (its drain and flush)"),
         ("stop_replied", "switch_replied", "-> QEMU replied to the disk switch"),
         ("switch_replied", "released", "-> virtsnap released the held stream"),
         ("released", "active", "-> snapshot thread past its setup"),
         ("active", "protected", "-> devices saved, RAM write-protected"),
         ("protected", "resume", "-> RESUME"),
         ("stop", "released", "STOP -> release"),
         ("stop_read", "switch_read", "QEMU's monitor read the stop -> read the disk switch"))


def wrapper(directory: Path, log: Path) -> Path:
    """A VIRTSNAP_QEMU script that starts the system's QEMU with the trace points on (for the guest's QEMU, which
    virtsnap starts paused; other runs, such as the machine-type check, unchanged)."""
    qemu = subprocess.run(["sh", "-c", "command -v qemu-system-x86_64"], capture_output=True, text=True).stdout.strip()
    traces = " ".join(f"-trace enable={t}" for t in TRACES)
    script = directory / "qemu-traced"
    script.write_text(f'#!/bin/sh\ncase " $* " in *" -S "*) exec {qemu} "$@" -msg timestamp=on -D {log} {traces};;\n'
                      f'esac\nexec {qemu} "$@"\n')
    script.chmod(0o755)
    return script


def phases(text: str) -> dict[str, float]:
    """Each step's time (s, the client's clock) from QEMU's trace lines of one snapshot."""
    marks: dict[str, float] = {}
    commands: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"\d+@(\d+\.\d+):(\S+)\s*(.*)", line)
        if not m:
            continue
        at, event, args = float(m.group(1)), m.group(2), m.group(3)
        if event == "vm_state_notify":
            marks.setdefault("stop" if "running 0" in args else "resume", at)
        elif event == "migrate_set_state" and "new state active" in args:
            marks.setdefault("active", at)
        elif event == "ram_write_tracking_ramblock_start":
            marks.setdefault("protected", at)
        elif event == "handle_qmp_command":
            cmd = re.search(r'"execute": "([^"]+)".*"id": "([^"]+)"', args)
            if cmd and (cmd.group(1) == "stop" or cmd.group(1) in SWITCH):
                commands[cmd.group(2)] = "stop" if cmd.group(1) == "stop" else "switch"
                marks.setdefault(f"{commands[cmd.group(2)]}_read", at)
        elif event == "monitor_qmp_respond":
            reply = re.search(r'"id": "([^"]+)"}$', args)
            if reply and reply.group(1) in commands:
                marks.setdefault(f"{commands[reply.group(1)]}_replied", at)
    return marks


def run(runs: int, save: bool) -> dict[str, list[dict[str, float]]]:
    from virtsnap.drivers.qemu import migration

    work = Path(tempfile.mkdtemp(prefix="vslt-", dir="/tmp"))
    log = work / "qemu.log"
    os.environ["VIRTSNAP_QEMU"] = str(wrapper(work, log))
    os.environ["VIRTSNAP_QEMU_STATE_DIR"] = str(work / "state")
    import virtsnap

    released: list[float] = []
    release = migration.HeldStream.release

    def timed_release(self: migration.HeldStream) -> None:
        released.append(time.time())
        release(self)
    migration.HeldStream.release = timed_release  # type: ignore[method-assign]

    guest = be.build_guest()
    conn = virtsnap.open("qemu:///session")
    disk = work / "d.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", guest.data_template, str(disk)], check=True)
    dom = conn.defineXML(be.domain_xml("trace", guest, disk, memory=512))
    dom.create()
    out: dict[str, list[dict[str, float]]] = {"live": [], "bg_alone": [], "save": []}
    try:
        be.agent_shell(virtsnap, dom, be.DIRTY, background=True)
        time.sleep(3)  # let the dirtier fill its 384 MiB before the first sample
        monitor = Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"
        for i in range(runs):
            for mode in ("live", "bg_alone", "save") if save else ("live", "bg_alone"):
                memory = work / f"mem-{mode}-{i}"
                mark = log.stat().st_size
                released.clear()
                if mode == "bg_alone":
                    pause = asyncio.run(be.bg_alone_on(monitor, memory)) * 1000
                else:
                    dom.snapshotCreateXML(f"<domainsnapshot><name>{mode}{i}</name><memory snapshot='external' "
                                          f"file='{memory}'/></domainsnapshot>",
                                          virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_LIVE if mode == "live" else 0)
                    pause = conn.driver.last_pause_ms or float("nan")
                time.sleep(0.2)  # the trace lines are written as they happen; let the last one land
                marks = phases(log.read_text(errors="replace")[mark:])
                if released:
                    marks["released"] = released[0]
                marks = {k: (v - marks["stop"]) * 1000 for k, v in marks.items() if "stop" in marks}
                out[mode].append({**marks, "pause": pause})
                memory.unlink()
    finally:
        dom.destroy()
        conn.close()
    return out


def render(results: dict[str, list[dict[str, float]]], runs: int, load: tuple[str, str]) -> list[str]:
    live, alone = results["live"][1:], results["bg_alone"][1:]
    out = [f"virtsnap's LIVE pause by step, QEMU's trace, {runs} rounds (the first left out), 512 MiB TCG guest "
           f"keeping 384 MiB dirty; load average {load[0]} before, {load[1]} after", "",
           "| step (ms) | median (p10-p90) |", "|---|---:|"]
    for start, end, label in STEPS:
        out.append(f"| {label} | {spread([r[end] - r[start] for r in live if start in r and end in r])} |")
    pauses, floors = [r["pause"] for r in live], [r["pause"] for r in alone]
    out.append(f"| **guest pause, LIVE** | {spread(pauses)} |")
    out.append(f"| **guest pause, background-snapshot alone** | {spread(floors)} |")
    if pauses and floors:
        per_round = statistics.median([a / b for a, b in zip(pauses, floors, strict=True)])
        out += ["", f"LIVE / alone: {statistics.median(pauses) / statistics.median(floors):.2f}x by medians, "
                    f"{per_round:.2f}x per round (goal: 1.2x)"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--save", action="store_true", help="a non-live snapshot in each round too")
    parser.add_argument("--json", help="also write every round's step times to this file")
    args = parser.parse_args()
    from common import load

    before = load()
    results = run(args.runs, args.save)
    lines = render(results, args.runs, (before, load()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
