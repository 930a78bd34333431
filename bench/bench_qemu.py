"""Benchmark: internal snapshot create / revert / delete of a running 128 MiB TCG guest.

virtsnap (public API, in process) against raw QMP (qemu.qmp on the same QEMU, the floor) and libvirt 9.0
(python3-libvirt against libvirtd's qemu:///system, when libvirtd can be started here). Medians of
--runs; prints a Markdown table with ratios and writes bench/results/qemu.json (bench/report.py reports it).
Goals (issue 3): within 1.3x of raw QMP; revert at least 10x faster than libvirt 9.0.
Usage: python bench/bench_qemu.py [--runs N] [--no-libvirt]
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


def build_guest() -> object:
    """The cached tiny test guest (tests/guest/build_guest.py, a stdlib script shared with the tests)."""
    sys.path.insert(0, str(ROOT / "tests" / "guest"))
    import build_guest as builder

    return builder.build()


def domain_xml(name: str, kernel: str, initrd: str, cmdline: str, disk: str, memory: int = 128) -> str:
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{kernel}</kernel><initrd>{initrd}</initrd>
  <cmdline>{cmdline}</cmdline></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>
    <target dev='vda' bus='virtio'/></disk>
  </devices>
</domain>"""


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_virtsnap(guest, workdir: Path, runs: int) -> tuple[dict[str, list[float]], str, str]:
    os.environ["VIRTSNAP_QEMU_STATE_DIR"] = str(workdir / "state")
    import virtsnap

    disk = workdir / "vs.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", guest.data_template, str(disk)], check=True)
    conn = virtsnap.open("qemu:///session")
    dom = conn.defineXML(domain_xml("bench", guest.kernel, guest.initrd, guest.cmdline, str(disk)))
    dom.create()
    time.sleep(3)  # let the guest finish booting so every sample sees the same busy guest
    out: dict[str, list[float]] = {"create": [], "revert": [], "delete": []}
    for i in range(runs):
        xml = f"<domainsnapshot><name>b{i}</name></domainsnapshot>"
        out["create"].append(timed(lambda: dom.snapshotCreateXML(xml)))
        snap = dom.snapshotLookupByName(f"b{i}")
        out["revert"].append(timed(lambda: dom.revertToSnapshot(snap)))
        out["delete"].append(timed(snap.delete))
    monitor = str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock")
    return out, monitor, dom.UUIDString()


async def raw_qmp(monitor: str, runs: int) -> dict[str, list[float]]:
    from qemu.qmp import QMPClient

    client = QMPClient("raw")
    await client.connect(monitor)
    out: dict[str, list[float]] = {"create": [], "revert": [], "delete": []}

    async def job(cmd: str, args: dict) -> None:
        with client.listener("JOB_STATUS_CHANGE") as listener:
            await client.execute(cmd, args)
            async for event in listener:
                if event["data"]["id"] == args["job-id"] and event["data"]["status"] == "concluded":
                    break
        jobs = await client.execute("query-jobs")
        failed = [j for j in jobs if j["id"] == args["job-id"] and j.get("error")]
        await client.execute("job-dismiss", {"id": args["job-id"]})
        if failed:
            raise RuntimeError(failed[0]["error"])

    for i in range(runs):
        tag = f"raw{i}"
        common = {"tag": tag, "vmstate": "drive-vda", "devices": ["drive-vda"]}
        t = time.perf_counter()
        await job("snapshot-save", {"job-id": "s", **common})
        out["create"].append(time.perf_counter() - t)
        t = time.perf_counter()
        await client.execute("stop")
        await job("snapshot-load", {"job-id": "l", **common})
        await client.execute("cont")
        out["revert"].append(time.perf_counter() - t)
        t = time.perf_counter()
        await job("snapshot-delete", {"job-id": "d", "tag": tag, "devices": ["drive-vda"]})
        out["delete"].append(time.perf_counter() - t)
    await client.disconnect()
    return out


LIBVIRT_WORKLOAD = r"""
import json, sys, time, libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
xml, runs = sys.argv[1], int(sys.argv[2])
c = libvirt.open("qemu:///system")
try:
    old = c.lookupByName("virtsnap-bench")
    if old.isActive(): old.destroy()
    for s in old.listAllSnapshots(): s.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
    old.undefine()
except libvirt.libvirtError:
    pass
d = c.defineXML(xml)
d.create()
time.sleep(3)
out = {"create": [], "revert": [], "delete": []}
for i in range(runs):
    t = time.perf_counter(); s = d.snapshotCreateXML("<domainsnapshot><name>l%d</name></domainsnapshot>" % i); out["create"].append(time.perf_counter() - t)
    t = time.perf_counter(); d.revertToSnapshot(s); out["revert"].append(time.perf_counter() - t)
    t = time.perf_counter(); s.delete(); out["delete"].append(time.perf_counter() - t)
d.destroy(); d.undefine()
print(json.dumps(out))
"""


def start_libvirtd() -> bool:
    if shutil.which("libvirtd") is None:
        return False
    probe = subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True, text=True)
    if probe.returncode == 0:
        return True
    subprocess.run(["virtlogd", "--daemon"], capture_output=True)  # libvirtd's qemu driver logs through it
    subprocess.run(["libvirtd", "--daemon"], capture_output=True)
    for _ in range(100):
        if subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode == 0:
            return True
        time.sleep(0.1)
    return False


def bench_libvirt(guest, runs: int) -> dict[str, list[float]] | None:
    if os.geteuid() != 0 or not start_libvirtd():
        return None
    images = Path("/var/lib/libvirt/images/virtsnap-bench")
    images.mkdir(parents=True, exist_ok=True)
    for f in ("kernel", "initrd"):
        shutil.copy(getattr(guest, f), images / f)
    disk = images / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", guest.data_template, str(disk)], check=True)
    xml = domain_xml("virtsnap-bench", str(images / "kernel"), str(images / "initrd"), guest.cmdline, str(disk))
    proc = subprocess.run(["/usr/bin/python3", "-c", LIBVIRT_WORKLOAD, xml, str(runs)], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "LIBVIRT_DEBUG": "4"})
    if proc.returncode != 0:
        print(f"(libvirt run failed: {proc.stderr.strip()[-300:]})", file=sys.stderr)
        return None
    return json.loads(proc.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-libvirt", action="store_true")
    args = parser.parse_args()
    info = machine()
    guest = build_guest()
    workdir = Path(tempfile.mkdtemp(prefix="vsb-", dir="/tmp"))
    import virtsnap

    try:
        ours, monitor, uuid = bench_virtsnap(guest, workdir, args.runs)
        raw = asyncio.run(raw_qmp(monitor, args.runs))
        conn = virtsnap.open("qemu:///session")
        conn.lookupByUUIDString(uuid).destroy()
        conn.close()
    finally:
        subprocess.run(["pkill", "-f", str(workdir)], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)
    lib = None if args.no_libvirt else bench_libvirt(guest, args.runs)
    write_results("qemu", {"machine": info, "runs": args.runs, "virtsnap": ours, "raw_qmp": raw, "libvirt": lib})

    print(f"internal snapshot of a running 128 MiB TCG guest, median of {args.runs} runs\n")
    print("| operation | virtsnap | raw QMP | libvirt 9.0 | virtsnap / raw | libvirt / virtsnap |")
    print("|---|---:|---:|---:|---:|---:|")
    for op in ("create", "revert", "delete"):
        v, r = statistics.median(ours[op]), statistics.median(raw[op])
        lv = statistics.median(lib[op]) if lib else None
        print(f"| {op} | {v * 1000:.1f} ms | {r * 1000:.1f} ms | "
              f"{f'{lv * 1000:.1f} ms' if lv else '-'} | {v / r:.2f}x | {f'{lv / v:.1f}x' if lv else '-'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
