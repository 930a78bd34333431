"""A QEMU-driver domain that never runs: a qcow2 disk made by qemu-img and a definition on qemu:///session,
with a private state directory. For tests of the driver's metadata and qemu-img paths without a guest."""

from __future__ import annotations

import subprocess
from pathlib import Path

import virtsnap


def define_offline(work: Path, name: str, size: str = "16M",
                   devices: str = "") -> tuple[virtsnap.virConnect, virtsnap.virDomain, Path]:
    """(connection, domain, disk); the caller has pointed VIRTSNAP_QEMU_STATE_DIR at `work / "state"`."""
    disk = work / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), size], check=True)
    conn = virtsnap.open("qemu:///session")
    dom = conn.defineXML(
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
        f"<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>"
        f"<target dev='vda' bus='virtio'/></disk>{devices}</devices></domain>")
    return conn, dom, disk
