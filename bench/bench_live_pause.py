"""Where the guest pause of a LIVE external memory snapshot goes, step by step, under TCG.

Boots the test guest (512 MiB, the agent keeps 384 MiB dirty) in a QEMU of its own with trace events and
timestamped log lines (-msg timestamp=on), then takes memory snapshots by hand over QMP, three sequences round
by round on the same guest (so load and the guest's transparent huge pages hit them alike):

- held (virtsnap's sequence): migrate with background-snapshot into a pipe that virtsnap's HeldStream keeps
  full; once QEMU's snapshot thread has pre-faulted guest RAM and waits on its first write, query-migrate (the
  check that it is still in setup), stop and blockdev-snapshot onto a fresh overlay back to back, then release
  the pipe (bench_external.held_sequence);
- stop-first (virtsnap's sequence before): stop, transaction and migrate back to back, the pre-fault inside;
- background-snapshot alone (no stop, no disk switch): the floor, and the goal's anchor.

QEMU's snapshot thread restarts the guest. Each step's end comes from QEMU's own trace timestamps (same clock
as the client's send time): vCPUs stopped, migration set up, guest RAM pre-faulted (savevm_state_header),
snapshot thread past its setup (state active), devices saved and RAM write-protected
(ram_write_tracking_ramblock_start), guest running again; and, for held, the client's own times: when it saw
the thread held, when the replies were in, when it released the pipe. The first round is reported apart:
background-snapshot's per-page unprotect splits the guest RAM's transparent huge pages, and later snapshots
pay for 4 KiB pages.

Usage: python bench/bench_live_pause.py [--runs N] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

import bench_external as be  # noqa: E402 - the guest, the dirtier
from common import spread  # noqa: E402

TRACES = ("runstate_set", "vm_state_notify", "migrate_set_state", "savevm_state_header",
          "ram_write_tracking_ramblock_start", "monitor_qmp_respond")
MODES = ("held", "stop_first", "bg_alone")
TITLES = {"held": "virtsnap's sequence: migrate into the held pipe; query-migrate, stop, switch; release",
          "stop_first": "the sequence before: stop, transaction, migrate back to back",
          "bg_alone": "background-snapshot alone (no stop, no disk switch)"}
STEPS = {"setup": "migration set up (state setup)",
         "prefaulted": "guest RAM pre-faulted (one read per 4 KiB page)",
         "seen_held": "client: snapshot thread seen waiting on the pipe",
         "stopped": "vCPUs stopped (STOP)",
         "answered": "QEMU: replied to query-migrate, stop, the disk switch",
         "replied": "client: replies in (disks switched, thread still in setup)",
         "released": "client: pipe released",
         "holding": "snapshot thread past its setup (state active)",
         "protected": "devices saved, RAM write-protected (userfaultfd)",
         "resumed": "guest running (RESUME)"}


def thp_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0


async def run(runs: int) -> dict[str, list[dict[str, float]]]:
    from qemu.qmp import QMPClient

    from virtsnap.drivers.qemu.agent import Agent

    guest = be.build_guest()
    work = Path(tempfile.mkdtemp(prefix="vslp-", dir="/tmp"))
    disk = work / "d.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", guest.data_template, str(disk)], check=True)
    sock, agent_sock, log = work / "m.sock", work / "ga.sock", work / "qemu.log"
    argv = ["qemu-system-x86_64", "-nodefaults", "-display", "none", "-accel", "tcg", "-cpu", "max", "-m", "512",
            "-machine", "pc", "-kernel", guest.kernel, "-initrd", guest.initrd, "-append", guest.cmdline,
            "-msg", "timestamp=on", "-D", str(log), "-qmp", f"unix:{sock},server=on,wait=off",
            "-blockdev", json.dumps({"driver": "file", "filename": str(disk), "node-name": "f0"}),
            "-blockdev", json.dumps({"driver": "qcow2", "file": "f0", "node-name": "d0"}),
            "-device", "virtio-blk-pci,drive=d0,id=vda",
            "-chardev", f"socket,id=qga0,path={agent_sock},server=on,wait=off",
            "-device", "virtio-serial-pci,id=vser0",
            "-device", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0"]
    for trace in TRACES:
        argv += ["-trace", f"enable={trace}"]
    qemu = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    out: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    try:
        client = QMPClient("pause")
        for _ in range(400):
            try:
                await client.connect(str(sock))
                break
            except Exception:  # the socket is not listening yet
                await asyncio.sleep(0.05)
        with Agent(str(agent_sock), timeout=10) as agent:
            agent.connect(time.monotonic() + 120)
            agent.execute("guest-exec", {"path": "/bin/sh", "arg": ["-c", be.DIRTY]})
        await asyncio.sleep(3)
        rtt = []
        for _ in range(20):
            t = time.perf_counter()
            await client.execute("query-status")
            rtt.append((time.perf_counter() - t) * 1000)
        top, n = "d0", 0
        for i in range(runs):
            for mode in MODES:
                thp = thp_kib(qemu.pid)
                marks: dict[str, float] = {}
                cmds: list[tuple[str, dict | None]] = [("migrate", {"uri": "fd:m"})]
                switch: tuple[str, dict] | None = None
                if mode != "bg_alone":
                    n += 1
                    overlay = work / f"ov{n}"
                    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(disk), "-u",
                                    str(overlay), "64M"], check=True)
                    await client.execute("blockdev-add", {"driver": "file", "filename": str(overlay),
                                                          "node-name": f"o{n}f"})
                    await client.execute("blockdev-add", {"driver": "qcow2", "file": f"o{n}f", "node-name": f"o{n}",
                                                          "backing": None})
                    switch = be.disk_switch(top, f"o{n}")
                    cmds = [("stop", None), ("transaction", {"actions": [{"type": switch[0], "data": switch[1]}]}),
                            *cmds]
                    top, disk = f"o{n}", overlay
                memory = work / f"mem-{mode}-{i}"
                held = await be.send_memory_file(client, memory, hold=mode == "held")
                await client.execute("migrate-set-capabilities", {"capabilities": [
                    {"capability": "background-snapshot", "state": True}]})
                mark = log.stat().st_size if log.exists() else 0
                sent = time.time()
                if held:
                    assert switch is not None
                    await client.execute("migrate", {"uri": "fd:m"})
                    marks["held_seen"] = float(held.wait_held(qemu.pid, 5.0))
                    marks["seen_held"] = (time.time() - sent) * 1000
                    state, *_ = await asyncio.gather(*(client.execute(c, a) for c, a in be.held_sequence(switch)))
                    marks["replied"] = (time.time() - sent) * 1000
                    assert state["status"] == "setup", state
                    marks["released"] = (time.time() - sent) * 1000
                    held.release()
                else:
                    await asyncio.gather(*(client.execute(c, a) for c, a in cmds))
                while (await client.execute("query-migrate"))["status"] not in ("completed", "failed"):
                    await asyncio.sleep(0.05)
                if held:
                    held.finish()
                    held.close()
                await asyncio.sleep(0.2)  # the trace lines are written as they happen; let the last one land
                marks.update(phases(log.read_text(errors="replace")[mark:], sent, marks.get("seen_held")))
                marks.update(thp_mib=thp / 1024, rtt_ms=statistics.median(rtt))
                out[mode].append(marks)
                memory.unlink()
        await client.disconnect()
    finally:
        qemu.kill()
        qemu.wait()
        shutil.rmtree(work, ignore_errors=True)
    return out


def phases(text: str, sent: float, seen_held: float | None = None) -> dict[str, float]:
    """Times (ms after the first command was sent) at which each step ended, from QEMU's trace lines; with
    `seen_held`, when QEMU sent the third reply after it (query-migrate, stop, the disk switch)."""
    marks: dict[str, float] = {}
    replies = 0
    for line in text.splitlines():
        m = re.match(r"\d+@(\d+\.\d+):(\S+)\s*(.*)", line)
        if not m:
            continue
        at, event, args = (float(m.group(1)) - sent) * 1000, m.group(2), m.group(3)
        if event == "vm_state_notify" and "running 0" in args:
            marks.setdefault("stopped", at)
        elif event == "migrate_set_state" and "new state setup" in args:
            marks.setdefault("setup", at)
        elif event == "savevm_state_header":
            marks.setdefault("prefaulted", at)
        elif event == "migrate_set_state" and "new state active" in args:
            marks.setdefault("holding", at)
        elif event == "ram_write_tracking_ramblock_start":
            marks.setdefault("protected", at)
        elif event == "vm_state_notify" and "running 1" in args:
            marks.setdefault("resumed", at)
        elif event == "monitor_qmp_respond" and seen_held is not None and at > seen_held:
            replies += 1
            if replies == 3:
                marks["answered"] = at
    return marks


def render(results: dict, runs: int, load: tuple[float, float]) -> list[str]:
    """The Markdown report: THP before each snapshot, then each step's time, first round and later ones."""
    out = [f"LIVE memory snapshot pause by step, 512 MiB TCG guest keeping 384 MiB dirty, {runs} rounds of the "
           f"three sequences on one guest; QMP round trip (idle query-status) {results['held'][0]['rtt_ms']:.2f} "
           f"ms; load average {load[0]:.2f} before, {load[1]:.2f} after", ""]
    for mode, marks in results.items():
        out.append(f"guest RAM in transparent huge pages before each snapshot ({mode}): "
                   f"{[round(r['thp_mib']) for r in marks]} MiB")
    held = [r.get("held_seen", 0) for r in results["held"]]
    out += [f"held thread seen on the pipe in {int(sum(held))} of {len(held)} snapshots", "",
            "| step (ms from the previous one) | first round | later rounds, median (p10-p90) |", "|---|---:|---:|"]
    for mode in MODES:
        out.append(f"| **{TITLES[mode]}** | | |")
        marks = results[mode]
        keys = sorted((k for k in STEPS if all(k in r for r in marks)), key=lambda k: marks[0][k])
        for j, key in enumerate(keys):
            prev = keys[j - 1] if j else None
            label = f"{STEPS[prev] if prev else 'first command sent'} -> {STEPS[key]}"
            steps = [r[key] - (r[prev] if prev else 0.0) for r in marks]
            out.append(f"| {label} | {steps[0]:.2f} | {spread(steps[1:])} |")
        pauses = [r["resumed"] - r["stopped"] for r in marks]
        out.append(f"| **guest pause (STOP -> RESUME)** | {pauses[0]:.2f} | {spread(pauses[1:])} |")
    pause = {mode: [r["resumed"] - r["stopped"] for r in results[mode]][1:] for mode in MODES}
    if pause["held"] and pause["bg_alone"]:
        out += ["", f"held / background-snapshot alone, later rounds' medians: "
                    f"{statistics.median(pause['held']) / statistics.median(pause['bg_alone']):.2f}x (goal: 1.2x); "
                    f"stop-first / alone: "
                    f"{statistics.median(pause['stop_first']) / statistics.median(pause['bg_alone']):.2f}x"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--json", help="also write every run's step times to this file")
    args = parser.parse_args()
    before = os.getloadavg()[0]
    results = asyncio.run(run(args.runs))
    load = (before, os.getloadavg()[0])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    lines = render(results, args.runs, load)
    print("\n".join(lines))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import machine, write_results

    write_results("live_pause", {"machine": machine(), "runs": args.runs, "table": lines, "samples": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
