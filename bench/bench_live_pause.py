"""Where the guest pause of a LIVE external memory snapshot goes, step by step, under TCG.

Boots the test guest (512 MiB, the agent keeps 384 MiB dirty) in a QEMU of its own with trace events and
timestamped log lines (-msg timestamp=on), then runs virtsnap's sequence by hand: stop, transaction
(blockdev-snapshot onto a fresh overlay) and migrate with background-snapshot, sent back to back; QEMU's
snapshot thread restarts the guest. Each step's end comes from QEMU's own trace timestamps (same clock as the
client's send time): vCPUs stopped, disks switched (transaction reply), migration set up, guest RAM
pre-faulted (savevm_state_header), devices saved and RAM write-protected (ram_write_tracking_ramblock_start),
guest running again. Also: QMP's round trip for an idle command, and background-snapshot alone (no stop, no
disk switch) as the floor. The first snapshot of a guest is reported apart: background-snapshot's per-page
unprotect splits the guest RAM's transparent huge pages, and later snapshots pay for 4 KiB pages.

Usage: python bench/bench_live_pause.py [--runs N]
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

TRACES = ("runstate_set", "vm_state_notify", "migrate_set_state", "savevm_state_header",
          "ram_write_tracking_ramblock_start")
STEPS = [("vCPUs stopped (STOP)", "stopped"),
         ("disks switched, migration set up (state setup)", "setup"),
         ("guest RAM pre-faulted (one read per 4 KiB page)", "prefaulted"),
         ("snapshot thread set up (state active)", "holding"),
         ("devices saved, RAM write-protected (userfaultfd)", "protected"),
         ("guest running (RESUME)", "resumed")]


def thp_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0


async def run(runs: int, mode: str) -> list[dict[str, float]]:
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
    out: list[dict[str, float]] = []
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
        top = "d0"
        for i in range(runs):
            thp = thp_kib(qemu.pid)
            cmds: list[tuple[str, dict | None]] = [("migrate", {"uri": "fd:m"})]
            if mode == "consistent":
                overlay = work / f"ov{i}"
                subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(disk), "-u",
                                str(overlay), "64M"], check=True)
                await client.execute("blockdev-add", {"driver": "file", "filename": str(overlay),
                                                      "node-name": f"o{i}f"})
                await client.execute("blockdev-add", {"driver": "qcow2", "file": f"o{i}f", "node-name": f"o{i}",
                                                      "backing": None})
                cmds = [("stop", None), ("transaction", {"actions": [
                    {"type": "blockdev-snapshot", "data": {"node": top, "overlay": f"o{i}"}}]}), *cmds]
                top, disk = f"o{i}", overlay
            fd = os.open(work / f"mem-{mode}-{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            client.send_fd_scm(fd)
            os.close(fd)
            await client.execute("getfd", {"fdname": "m"})
            await client.execute("migrate-set-capabilities", {"capabilities": [
                {"capability": "background-snapshot", "state": True}]})
            mark = log.stat().st_size if log.exists() else 0
            sent = time.time()
            await asyncio.gather(*(client.execute(c, a) for c, a in cmds))
            while (await client.execute("query-migrate"))["status"] not in ("completed", "failed"):
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # the trace lines are written as they happen; let the last one land
            marks = phases(log.read_text(errors="replace")[mark:], sent)
            marks.update(thp_mib=thp / 1024, rtt_ms=statistics.median(rtt))
            out.append(marks)
        await client.disconnect()
    finally:
        qemu.kill()
        qemu.wait()
        shutil.rmtree(work, ignore_errors=True)
    return out


def phases(text: str, sent: float) -> dict[str, float]:
    """Times (ms after the first command was sent) at which each step ended, from QEMU's trace lines."""
    marks: dict[str, float] = {}
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
    return marks


def render(results: dict, runs_per_guest: int) -> list[str]:
    """The Markdown report: THP before each snapshot, then each step's time, first and later snapshots."""
    out = [f"LIVE memory snapshot pause by step, 512 MiB TCG guest keeping 384 MiB dirty, {runs_per_guest} snapshots "
           f"per guest; QMP round trip (idle query-status) {results['consistent'][0]['rtt_ms']:.2f} ms", ""]
    for mode, runs in results.items():
        out.append(f"guest RAM in transparent huge pages before each snapshot ({mode}): "
                   f"{[round(r['thp_mib']) for r in runs]} MiB")
    out += ["", "| step (ms from the previous one) | first snapshot | later snapshots, median |", "|---|---:|---:|"]
    for mode, title in (("consistent", "virtsnap's sequence: stop, transaction, migrate"),
                        ("bg_alone", "background-snapshot alone (no stop, no disk switch)")):
        out.append(f"| **{title}** | | |")
        runs = results[mode]
        labels = {k: label for label, k in STEPS}
        if mode == "bg_alone":
            labels["setup"] = "migration set up (state setup)"
        keys = sorted((k for k in labels if all(k in r for r in runs)), key=lambda k: runs[0][k])
        for key in keys:
            prev = keys[keys.index(key) - 1] if keys.index(key) else None
            label = f"{labels[prev] if prev else 'commands sent'} -> {labels[key]}"
            steps = [r[key] - (r[prev] if prev else 0.0) for r in runs]
            later = statistics.median(steps[1:]) if len(steps) > 1 else float("nan")
            out.append(f"| {label} | {steps[0]:.2f} | {later:.2f} |")
        pauses = [r["resumed"] - r["stopped"] for r in runs]
        later = statistics.median(pauses[1:]) if len(pauses) > 1 else float("nan")
        out.append(f"| guest pause (STOP -> RESUME) | {pauses[0]:.2f} | {later:.2f} |")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", help="also write every run's step times to this file")
    args = parser.parse_args()
    results = {mode: asyncio.run(run(args.runs, mode)) for mode in ("consistent", "bg_alone")}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    lines = render(results, args.runs)
    print("\n".join(lines))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import machine, write_results

    write_results("live_pause", {"machine": machine(), "runs": args.runs, "table": lines})
    return 0


if __name__ == "__main__":
    sys.exit(main())
