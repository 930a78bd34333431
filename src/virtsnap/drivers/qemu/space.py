"""Space for the QEMU driver: what a snapshot takes on disk, and whether a new one will fit.

Sizes read files and qcow2 metadata only (qcow2.py); the pre-flight compares an estimate with statvfs.
"""

from __future__ import annotations

import os

from ...conf.snapshot_xml import Location, SnapshotDef
from ..base import SnapshotSize
from . import qcow2
from .domain import QemuDomain


def allocated(path: str | None) -> int | None:
    """Bytes the file occupies on its filesystem (st_blocks), None when it is gone."""
    if not path:
        return None
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return None


def snapshot_size(defn: SnapshotDef, name: str, running: bool) -> SnapshotSize:
    memory = disk = 0
    memory_exact = disk_exact = True
    if defn.memory == Location.EXTERNAL:
        size = allocated(defn.memory_file)
        memory, memory_exact = (size, True) if size is not None else (0, False)
    for d in defn.disks:
        if d.snapshot == Location.EXTERNAL:
            size = allocated(d.source)
            if size is None:
                disk_exact = False
            else:
                disk += size
    internal = {d.name for d in defn.disks if d.snapshot == Location.INTERNAL}
    if internal and defn.domain is not None:
        saved_memory = defn.memory == Location.INTERNAL
        vmstate: int | None = None
        for image in QemuDomain.from_def(defn.domain).disks:
            if image.target not in internal:
                continue
            if image.format != "qcow2" or not image.path:  # the declared format only: never probed
                disk_exact = False
                continue
            try:
                found, snap = qcow2.exclusive_bytes(image.path, name)
            except qcow2.Qcow2Error:
                disk_exact = False
                continue
            disk += found.data + found.metadata
            disk_exact = disk_exact and found.exact and not running
            if snap.vm_state_size:
                vmstate = (vmstate or 0) + snap.vm_state_size
        if vmstate is not None:
            memory = vmstate
        elif saved_memory:  # the VM state could not be read: the guest's memory is the estimate
            memory, memory_exact = defn.domain.memory_kib * 1024, False
    return SnapshotSize(memory, disk, memory_exact, disk_exact)
