"""Space for the QEMU driver: what a snapshot takes on disk, and whether a new one will fit.

Sizes read files and qcow2 metadata only (qcow2.py); the pre-flight compares an estimate with statvfs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ...conf.snapshot_xml import Location, SnapshotDef
from ...errors import ErrorCode, ErrorDomain, error, libvirtError
from ..base import SnapshotSize
from . import qcow2
from .domain import QemuDomain

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .monitor import Monitor


def allocated(path: str | None) -> int | None:
    """Bytes the file occupies on its filesystem (st_blocks), None when it is gone."""
    if not path:
        return None
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return None


def internal_share(images: Sequence[tuple[str | None, str | None]], name: str,
                   running: bool) -> tuple[int, bool, int | None]:
    """What deleting internal snapshot `name` would free in these (path, declared format) images, from their
    own qcow2 metadata (never probed: an image not declared qcow2 only makes the figure inexact): the bytes only
    its tags reference, whether that is exact (not for an image in use, unreadable or not declared qcow2), and
    its saved VM state's size (None when no image holds one)."""
    disk, exact, vmstate = 0, True, None
    for path, fmt in images:
        if fmt != "qcow2" or not path:
            exact = False
            continue
        try:
            found, snap = qcow2.exclusive_bytes(os.path.abspath(path), name)
        except qcow2.Qcow2Error:
            exact = False
            continue
        disk += found.data + found.metadata
        exact = exact and found.exact and not running
        if snap.vm_state_size:
            vmstate = (vmstate or 0) + snap.vm_state_size
    return disk, exact, vmstate


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
        images = [(i.path, i.format) for i in QemuDomain.from_def(defn.domain).disks if i.target in internal]
        shared, exact, vmstate = internal_share(images, name, running)
        disk, disk_exact = disk + shared, disk_exact and exact
        if vmstate is not None:
            memory = vmstate
        elif defn.memory == Location.INTERNAL:  # the VM state could not be read: the guest's memory is the estimate
            memory, memory_exact = defn.domain.memory_kib * 1024, False
    return SnapshotSize(memory, disk, memory_exact, disk_exact)


# What a create writes besides guest memory: a qcow2 overlay's header and tables, or an internal snapshot's
# copied L1 table and refcount updates. Generous on purpose: the check is for the big items.
SMALL = 1 << 20


def guest_memory(mon: Monitor | None, qdom: QemuDomain) -> int:
    """The guest's RAM as a memory snapshot will save it: the balloon's current size when the guest has one,
    else the configured memory."""
    if mon is not None:
        try:
            return int(mon.execute("query-balloon")["actual"])
        except (libvirtError, KeyError, TypeError, ValueError):
            pass  # no balloon device: QEMU says so with an error
    return qdom.memory_mib << 20


def preflight(needs: list[tuple[str, int, str]], snapshot: str) -> None:
    """Refuse, before any change, a snapshot whose estimated writes exceed the free space of a filesystem they
    land on. `needs` holds (a path on that filesystem, bytes, what for)."""
    by_fs: dict[int, list[tuple[str, int, str]]] = {}
    for path, size, what in needs:
        directory = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
        try:
            dev = os.stat(directory).st_dev
        except OSError:
            continue  # a missing directory is refused by the create's own checks, with a better message
        by_fs.setdefault(dev, []).append((directory, size, what))
    for items in by_fs.values():
        directory = items[0][0]
        st = os.statvfs(directory)
        free = st.f_bavail * st.f_frsize
        total = sum(size for _, size, _ in items)
        if total > free:
            parts = ", ".join(f"{what} {human(size)}" for _, size, what in items)
            raise error(ErrorCode.OPERATION_INVALID, ErrorDomain.QEMU,
                        f"snapshot '{snapshot}' needs about {human(total)} ({parts}) on the filesystem of "
                        f"{directory}, which has {human(free)} free; free some space or create it anyway with "
                        "--no-space-check (VIR_DOMAIN_SNAPSHOT_CREATE_NO_SPACE_CHECK)")


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
