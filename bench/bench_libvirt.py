"""Benchmark: the libvirt+ driver against libvirt-python on the same root libvirtd (the tiny 256 MiB TCG guest).

Internal snapshots (create, revert, delete of a running guest) pass through: the difference is virtsnap's
overhead. External snapshots: libvirt 9.0 deletes a leaf itself (shut off it starts QEMU), so virtsnap's own
delete (qemu-img commit shut off, blockCommit+pivot running) is timed beside it; libvirt 9.0 cannot revert
to one, so virtsnap's external revert (with memory, running) is timed beside libvirt's internal revert.
Needs root and a running libvirtd (qemu:///system). Prints a Markdown table of medians (ms) and writes
bench/results/libvirt.json. Usage: python bench/bench_libvirt.py [--runs N]
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(ROOT / "src"))
IMAGES = Path("/var/lib/libvirt/images") / f"virtsnap-bench-libvirt-{os.getpid()}"


def build_guest() -> object:
    sys.path.insert(0, str(ROOT / "tests" / "guest"))
    import build_guest as builder

    return builder.build()


def domain_xml(name: str, guest: object, disk: Path) -> str:
    return f"""<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{IMAGES / 'kernel'}</kernel>
  <initrd>{IMAGES / 'initrd'}</initrd><cmdline>{guest.cmdline}</cmdline></os>
  <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>
  <target dev='vda' bus='virtio'/></disk></devices></domain>"""


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ext_xml(name: str, memory: bool) -> str:
    mem = f"<memory snapshot='external' file='{IMAGES / (name + '.mem')}'/>" if memory else ""
    return (f"<domainsnapshot><name>{name}</name>{mem}<disks><disk name='vda' snapshot='external'>"
            f"<source file='{IMAGES / (name + '.qcow2')}'/></disk></disks></domainsnapshot>")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import libvirt

    import virtsnap

    guest = build_guest()
    IMAGES.mkdir(parents=True, exist_ok=True)
    for item in ("kernel", "initrd"):
        shutil.copy(getattr(guest, item), IMAGES / item)
    state = Path(tempfile.mkdtemp(prefix="vs-bench-libvirt-"))
    os.environ["VIRTSNAP_LIBVIRT_STATE_DIR"] = str(state)
    direct = libvirt.open("qemu:///system")
    ours = virtsnap.open("libvirt+qemu:///system")
    samples: dict[str, dict[str, list[float]]] = {}

    def add(op: str, side: str, seconds: float) -> None:
        samples.setdefault(op, {}).setdefault(side, []).append(seconds)

    doms = {}
    try:
        for side, conn in (("libvirt", direct), ("virtsnap", ours)):
            disk = IMAGES / f"{side}.qcow2"
            subprocess.run(["qemu-img", "convert", "-O", "qcow2", guest.data_template, str(disk)], check=True)
            doms[side] = conn.defineXML(domain_xml(f"vs-bench-{side}-{os.getpid()}", guest, disk))
            doms[side].create()
        for i in range(args.runs):
            for side, dom in doms.items():
                add("internal create (running)", side,
                    timed(lambda: dom.snapshotCreateXML(f"<domainsnapshot><name>i{i}</name></domainsnapshot>")))
                add("internal revert (running)", side, timed(lambda: dom.revertToSnapshot(dom.snapshotLookupByName(f"i{i}"))))
                add("internal delete (running)", side, timed(lambda: dom.snapshotLookupByName(f"i{i}").delete(0)))
        for i in range(args.runs):  # external leaf delete, running: libvirt 9.0's own vs virtsnap's
            for side, dom in doms.items():
                dom.snapshotCreateXML(ext_xml(f"{side}-r{i}", False), 16)  # DISK_ONLY
                add("external delete, leaf (running)", side,
                    timed(lambda: dom.snapshotLookupByName(f"{side}-r{i}").delete(0)))
        doms["virtsnap"].snapshotCreateXML(ext_xml("mem", True))
        for _ in range(args.runs):
            add("external revert with memory (running)", "virtsnap",
                timed(lambda: doms["virtsnap"].revertToSnapshot(doms["virtsnap"].snapshotLookupByName("mem"))))
        doms["virtsnap"].snapshotLookupByName("mem").delete(0)
        for dom in doms.values():
            dom.destroy()
        for i in range(args.runs):  # external leaf delete, shut off
            for side, dom in doms.items():
                dom.snapshotCreateXML(ext_xml(f"{side}-o{i}", False), 16)
                add("external delete, leaf (shut off)", side,
                    timed(lambda: dom.snapshotLookupByName(f"{side}-o{i}").delete(0)))
    finally:
        for side in doms:
            try:
                left = direct.lookupByName(f"vs-bench-{side}-{os.getpid()}")
            except libvirt.libvirtError:
                continue
            if left.isActive():
                left.destroy()
            for snap in left.listAllSnapshots():
                snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
            left.undefine()
        ours.close()
        direct.close()
        shutil.rmtree(IMAGES, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    print("| operation | libvirt 9.0 (libvirt-python) | virtsnap libvirt+ |\n|---|---|---|")
    for op, sides in samples.items():
        cells = [f"{statistics.median(sides[s]) * 1000:.0f}" if s in sides else "refused (not supported)"
                 for s in ("libvirt", "virtsnap")]
        print(f"| {op} | {cells[0]} | {cells[1]} |")
    write_results("libvirt", {"machine": machine(), "runs": args.runs, "samples": samples})


if __name__ == "__main__":
    main()
