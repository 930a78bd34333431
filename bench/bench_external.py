"""Benchmark: external snapshots on TCG guests, virtsnap against raw QMP / qemu-img and libvirt 9.0.

1. disk-only snapshot with QUIESCE of a running guest (goal: within 1.3x of raw QMP);
2. delete of an external snapshot of a shut-off domain (goal: under 100 ms; libvirt 9.0 starts QEMU);
3. guest pause during a memory snapshot of a 512 MiB guest that keeps ~384 MiB dirty, from QEMU's own
   STOP/RESUME event timestamps (goal for LIVE: at most 5 ms).
Prints a Markdown table of medians and writes bench/results/external.json (bench/report.py reports it).
Usage: python bench/bench_external.py [--runs N] [--no-libvirt]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, write_results

ROOT = Path(__file__).resolve().parent.parent
DIRTY = ("dd if=/dev/zero of=/ram/fill bs=1M count=384 2>/dev/null; "
         "while true; do dd if=/dev/zero of=/ram/fill bs=1M count=384 conv=notrunc 2>/dev/null; done")


def build_guest() -> object:
    """The cached tiny test guest (tests/guest/build_guest.py, a stdlib script shared with the tests)."""
    sys.path.insert(0, str(ROOT / "tests" / "guest"))
    import build_guest as builder

    return builder.build()


def domain_xml(name, guest, disk, memory=256, agent=True, kernel=None, initrd=None):
    channel = "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>" if agent else ""
    return f"""<domain type='qemu'><name>{name}</name><memory unit='MiB'>{memory}</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{kernel or guest.kernel}</kernel>
  <initrd>{initrd or guest.initrd}</initrd><cmdline>{guest.cmdline}</cmdline></os>
  <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>
  <target dev='vda' bus='virtio'/></disk>{channel}</devices></domain>"""


def median_ms(values):
    return statistics.median(values) * 1000 if values else None


def agent_shell(virtsnap, dom, script, background=False):
    cmd = {"execute": "guest-exec", "arguments": {"path": "/bin/sh", "arg": ["-c", script],
                                                  "capture-output": not background}}
    deadline = time.monotonic() + 90
    while True:
        try:
            return virtsnap.qemuAgentCommand(dom, json.dumps(cmd), 10)
        except virtsnap.libvirtError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def bench_virtsnap(guest, work: Path, runs: int):
    os.environ["VIRTSNAP_QEMU_STATE_DIR"] = str(work / "state")
    import virtsnap

    conn = virtsnap.open("qemu:///session")
    results = {"quiesce": [], "delete_off": [], "pause_live": [], "pause_save": []}
    # 1 and 2: a 256 MiB guest
    disk = work / "a.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", guest.data_template, str(disk)], check=True)
    dom = conn.defineXML(domain_xml("bench-a", guest, disk))
    dom.create()
    agent_shell(virtsnap, dom, "true")
    for i in range(runs):
        t = time.perf_counter()
        dom.snapshotCreateXML(f"<domainsnapshot><name>q{i}</name></domainsnapshot>",
                              virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY | virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE)
        results["quiesce"].append(time.perf_counter() - t)
    dom.destroy()
    for i in reversed(range(runs)):
        t = time.perf_counter()
        dom.snapshotLookupByName(f"q{i}").delete()
        results["delete_off"].append(time.perf_counter() - t)
    # 3: a 512 MiB guest dirtying 384 MiB
    disk_b = work / "b.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", guest.data_template, str(disk_b)], check=True)
    big = conn.defineXML(domain_xml("bench-b", guest, disk_b, memory=512))
    big.create()
    agent_shell(virtsnap, big, DIRTY, background=True)
    time.sleep(3)  # let the dirtier fill its 384 MiB before the first sample
    for i in range(runs):
        for live, key in ((True, "pause_live"), (False, "pause_save")):
            mem = work / f"mem-{key}-{i}"
            big.snapshotCreateXML(f"<domainsnapshot><name>{key}{i}</name><memory snapshot='external' "
                                  f"file='{mem}'/></domainsnapshot>",
                                  virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_LIVE if live else 0)
            results[key].append((conn.driver.last_pause_ms or float("nan")) / 1000)
    big.destroy()
    conn.close()
    return results


async def raw_qmp(guest, work: Path, runs: int):
    """The same disk-only switch and memory snapshots driven by hand over QMP on a QEMU of our own."""
    from qemu.qmp import EventListener, QMPClient

    results = {"quiesce": [], "delete_off": [], "pause_live": [], "pause_save": []}
    disk = work / "raw.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", guest.data_template, str(disk)], check=True)
    sock = work / "raw.sock"
    qemu = subprocess.Popen(["qemu-system-x86_64", "-nodefaults", "-display", "none", "-accel", "tcg", "-m", "512",
                             "-kernel", guest.kernel, "-initrd", guest.initrd, "-append", guest.cmdline,
                             "-qmp", f"unix:{sock},server=on,wait=off",
                             "-blockdev", json.dumps({"driver": "file", "filename": str(disk), "node-name": "f0"}),
                             "-blockdev", json.dumps({"driver": "qcow2", "file": "f0", "node-name": "d0"}),
                             "-device", "virtio-blk-pci,drive=d0,id=vda"])
    try:
        client = QMPClient("raw")
        for _ in range(200):
            try:
                await client.connect(str(sock))
                break
            except Exception:  # noqa: BLE001 - the socket is not listening yet
                await asyncio.sleep(0.05)
        await asyncio.sleep(3)
        top = "d0"
        for i in range(runs):
            overlay = work / f"raw-ov{i}"
            t = time.perf_counter()
            size = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(disk)],
                                             capture_output=True, text=True).stdout)["virtual-size"]
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(disk), "-u",
                            str(overlay), str(size)], check=True)
            await client.execute("blockdev-add", {"driver": "file", "filename": str(overlay), "node-name": f"o{i}f"})
            await client.execute("blockdev-add", {"driver": "qcow2", "file": f"o{i}f", "node-name": f"o{i}",
                                                  "backing": None})
            await client.execute("transaction", {"actions": [
                {"type": "blockdev-snapshot", "data": {"node": top, "overlay": f"o{i}"}}]})
            results["quiesce"].append(time.perf_counter() - t)  # no agent here: the raw floor has no freeze
            top, disk = f"o{i}", overlay
        for i in range(runs):
            for live, key in ((True, "pause_live"), (False, "pause_save")):
                mem = work / f"raw-mem-{key}-{i}"
                fd = os.open(mem, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                client.send_fd_scm(fd)
                os.close(fd)
                await client.execute("getfd", {"fdname": "m"})
                await client.execute("migrate-set-capabilities", {"capabilities": [
                    {"capability": "background-snapshot", "state": live}, {"capability": "events", "state": True}]})
                stamps: dict[str, list[float]] = {}
                listener_events = []
                listener = EventListener(("STOP", "RESUME", "MIGRATION"))
                with client.listen(listener):
                    await client.execute("stop")
                    await client.execute("migrate", {"uri": "fd:m"})
                    if live:
                        await client.execute("cont")
                    while True:
                        ev = await listener.get()
                        listener_events.append(ev)
                        if ev["event"] == "MIGRATION" and ev["data"]["status"] in ("completed", "failed"):
                            break
                    while (await client.execute("query-migrate"))["status"] != "completed":
                        await asyncio.sleep(0.001)  # the event comes just before the migration is finalized
                    if not live:
                        while True:
                            try:
                                await client.execute("cont")
                                break
                            except Exception:  # noqa: BLE001 - "Migration is not finalized yet", for a moment
                                await asyncio.sleep(0.001)
                        listener_events.append(await listener.get())
                for ev in listener_events:
                    ts = ev["timestamp"]["seconds"] + ev["timestamp"]["microseconds"] / 1e6
                    stamps.setdefault(ev["event"], []).append(ts)
                results[key].append(max(stamps["RESUME"]) - min(stamps["STOP"]))
        await client.disconnect()
    finally:
        qemu.kill()
        qemu.wait()
    # offline delete floor: one qemu-img commit of an overlay into its base
    for i in range(runs):
        base = work / f"raw-del-base{i}"
        ov = work / f"raw-del-ov{i}"
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", guest.data_template, str(base)], check=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(ov)],
                       check=True)
        t = time.perf_counter()
        subprocess.run(["qemu-img", "commit", "-q", "-d", str(ov)], check=True)
        os.unlink(ov)
        results["delete_off"].append(time.perf_counter() - t)
    return results


LIBVIRT = r"""
import json, subprocess, sys, time, libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
xml, runs, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = libvirt.open("qemu:///system")
for name in ("virtsnap-bench-ext",):
    try:
        d = c.lookupByName(name)
        if d.isActive(): d.destroy()
        for s in d.listAllSnapshots(): s.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
        d.undefine()
    except libvirt.libvirtError:
        pass
d = c.defineXML(xml)
d.create()
time.sleep(3)
out = {"delete_off": [], "pause_live": []}
for i in range(runs):
    mon = subprocess.Popen(["virsh", "-c", "qemu:///system", "qemu-monitor-event", "virtsnap-bench-ext", "--loop",
                            "--timestamp"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    d.snapshotCreateXML("<domainsnapshot><name>l%d</name><memory snapshot='external' file='%s/lv-mem%d'/>"
                        "<disks><disk name='vda' snapshot='external'><source file='%s/lv-ov%d'/></disk></disks>"
                        "</domainsnapshot>" % (i, work, i, work, i), libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_LIVE)
    time.sleep(0.5)
    mon.terminate()
    lines = mon.communicate()[0].splitlines()
    import re
    def ts(line):  # virsh prints QEMU's own timestamp: "event STOP at 1795758093.123456 for domain ..."
        m = re.search(r" at ([0-9]+[.][0-9]+)", line)
        return float(m.group(1)) if m else None
    stops = [t for t in (ts(l) for l in lines if "event STOP" in l) if t]
    res = [t for t in (ts(l) for l in lines if "event RESUME" in l) if t]
    if stops and res:
        out["pause_live"].append(max(res) - min(stops))
d.destroy()
for i in reversed(range(runs)):
    t = time.perf_counter()
    d.snapshotLookupByName("l%d" % i).delete(0)
    out["delete_off"].append(time.perf_counter() - t)
d.undefine()
print(json.dumps(out))
"""


def bench_libvirt(guest, runs: int):
    if os.geteuid() != 0 or shutil.which("libvirtd") is None:
        return None
    if subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode != 0:
        subprocess.run(["virtlogd", "--daemon"], capture_output=True)
        subprocess.run(["libvirtd", "--daemon"], capture_output=True)
        for _ in range(100):
            if subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
    images = Path("/var/lib/libvirt/images/virtsnap-bench-ext")
    shutil.rmtree(images, ignore_errors=True)
    images.mkdir(parents=True)
    for f in ("kernel", "initrd"):
        shutil.copy(getattr(guest, f), images / f)
    disk = images / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", guest.data_template, str(disk)], check=True)
    xml = domain_xml("virtsnap-bench-ext", guest, disk, memory=512, agent=False,
                     kernel=images / "kernel", initrd=images / "initrd")
    proc = subprocess.run(["/usr/bin/python3", "-c", LIBVIRT, xml, str(runs), str(images)], capture_output=True,
                          text=True, env={"PATH": "/usr/sbin:/usr/bin:/bin", "LIBVIRT_DEBUG": "4"})
    if proc.returncode != 0:
        print(f"(libvirt run failed: {proc.stderr.strip()[-400:]})", file=sys.stderr)
        return None
    return json.loads(proc.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-libvirt", action="store_true")
    args = parser.parse_args()
    info = machine()
    guest = build_guest()
    work = Path(tempfile.mkdtemp(prefix="vse-", dir="/tmp"))
    try:
        ours = bench_virtsnap(guest, work, args.runs)
        raw = asyncio.run(raw_qmp(guest, work, args.runs))
    finally:
        subprocess.run(["pkill", "-f", str(work)], capture_output=True)
    lib = None if args.no_libvirt else bench_libvirt(guest, args.runs)
    shutil.rmtree(work, ignore_errors=True)
    write_results("external", {"machine": info, "runs": args.runs, "virtsnap": ours, "raw": raw, "libvirt": lib})
    rows = [("disk-only snapshot, QUIESCE (raw: no freeze)", "quiesce"),
            ("delete external snapshot, domain shut off", "delete_off"),
            ("guest pause, LIVE memory snapshot, 512 MiB, 384 MiB dirty", "pause_live"),
            ("guest pause, non-live memory snapshot (save)", "pause_save")]
    print(f"external snapshots on TCG guests, median of {args.runs} runs\n")
    print("| measure | virtsnap | raw QMP / qemu-img | libvirt 9.0 |")
    print("|---|---:|---:|---:|")
    for label, key in rows:
        cells = []
        for source in (ours, raw, lib):
            value = median_ms(source.get(key, [])) if source else None
            cells.append(f"{value:.1f} ms" if value is not None else "-")
        print(f"| {label} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
