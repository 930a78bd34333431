"""The main job: a real QEMU guest (TCG) snapshotted with memory, changed, reverted, and proven restored.

Builds (or reuses) the tiny test guest, defines and starts a domain named `demo` on qemu:///session,
writes a marker through the guest agent, takes a memory snapshot, changes the marker, shows the tree,
reverts, reads the marker back, deletes the snapshot, and prints each step's time. Public API and CLI only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import virtsnap

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
URI = "qemu:///session"
NAME = "demo"


def step(title: str, fn: Callable[[], T]) -> T:
    start = time.perf_counter()
    result = fn()
    print(f"  {title:<62} {1000 * (time.perf_counter() - start):9.1f} ms", flush=True)
    return result


def build_guest() -> object:
    """The cached tiny test guest (tests/guest/build_guest.py, a stdlib script shared with the tests)."""
    sys.path.insert(0, str(ROOT / "tests" / "guest"))
    import build_guest as builder

    return builder.build()


def domain_xml(guest: object, disk: Path, serial: Path) -> str:
    g = guest.__dict__ if hasattr(guest, "__dict__") else {f: getattr(guest, f) for f in guest.__slots__}
    return f"""<domain type='qemu'>
  <name>{NAME}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{g['kernel']}</kernel>
    <initrd>{g['initrd']}</initrd>
    <cmdline>{g['cmdline']}</cmdline>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <serial type='file'><source path='{serial}'/></serial>
  </devices>
</domain>"""


def guest_shell(dom: virtsnap.virDomain, script: str, timeout: float = 60.0) -> str:
    """Run a shell command in the guest through the agent (guest-exec), waiting for the guest to boot."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = json.loads(virtsnap.qemuAgentCommand(dom, json.dumps({
                "execute": "guest-exec", "arguments": {"path": "/bin/sh", "arg": ["-c", script],
                                                       "capture-output": True}}), 10))
            break
        except virtsnap.libvirtError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # the guest is still booting; the deadline bounds the wait
    pid = reply["return"]["pid"]
    while True:
        status = json.loads(virtsnap.qemuAgentCommand(dom, json.dumps({
            "execute": "guest-exec-status", "arguments": {"pid": pid}}), 10))["return"]
        if status.get("exited"):
            import base64
            return base64.b64decode(status.get("out-data", "")).decode()
        time.sleep(0.01)


def cli(*args: str) -> str:
    exe = shutil.which("virtsnap") or str(Path(sys.executable).with_name("virtsnap"))
    proc = subprocess.run([exe, "-c", URI, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"virtsnap {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def main() -> int:
    # As in libvirt-python, errors are also printed to stderr unless a handler is registered; the demo handles
    # the ones it expects (no leftover domain, the agent still booting) itself.
    virtsnap.registerErrorHandler(lambda ctx, err: None, None)
    print(f"virtsnap {virtsnap.__version__} demo: a TCG guest on {URI}")
    guest = step("build or reuse the tiny guest (cached in ~/.cache/virtsnap)", build_guest)
    workdir = Path.home() / ".cache" / "virtsnap" / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    disk = workdir / "demo.qcow2"
    conn = virtsnap.open(URI)
    try:
        old = conn.lookupByName(NAME)
        if old.isActive():
            old.destroy()
        for snap in old.listAllSnapshots(virtsnap.VIR_DOMAIN_SNAPSHOT_LIST_ROOTS):
            snap.delete(virtsnap.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)
        old.undefine()
    except virtsnap.libvirtError:
        pass  # no leftover from an earlier run
    template = getattr(guest, "data_template")
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", template, str(disk)], check=True)
    dom = step("define the domain 'demo' (256 MiB, qcow2 disk, guest agent)",
               lambda: conn.defineXML(domain_xml(guest, disk, workdir / "serial.log")))
    try:
        step("start it (QEMU, TCG)", dom.create)
        step("wait for the guest agent, write a marker on disk and in RAM",
             lambda: guest_shell(dom, "echo original > /mnt/marker; echo in-ram > /ram/value; sync"))
        snap = step("snapshot 'before-change' (memory + disk, guest running)",
                    lambda: dom.snapshotCreateXML("<domainsnapshot><name>before-change</name>"
                                                  "<description>marker says original</description>"
                                                  "</domainsnapshot>"))
        step("change the marker and the RAM value",
             lambda: guest_shell(dom, "echo changed > /mnt/marker; echo lost > /ram/value; sync"))
        print("  snapshot-list --tree:")
        print("    " + cli("snapshot-list", NAME, "--tree").rstrip().replace("\n", "\n    "))
        step("revert to 'before-change' (loaded in place, no QEMU restart)", lambda: dom.revertToSnapshot(snap))
        seen = step("read the marker and RAM value back", lambda: guest_shell(dom, "cat /mnt/marker /ram/value"))
        print(f"    guest says: {' | '.join(seen.split())}")
        if seen.split() != ["original", "in-ram"]:
            print("  the revert did not restore the guest")
            return 1
        step("delete the snapshot", snap.delete)
        print(f"  snapshots left: {dom.snapshotListNames()}")
    finally:
        if dom.isActive():
            step("destroy the domain", dom.destroy)
        dom.undefine()
        conn.close()
    print("demo finished: the revert brought back both the file and the RAM-only value")
    return 0


if __name__ == "__main__":
    sys.exit(main())
