"""Sizes of libvirt's snapshots (virtsnap's getSize on libvirt+ connections): memory and disk data that deleting
a snapshot would free, read from the files and qcow2 metadata libvirt's snapshot XML names (never written).

External: the memory file and the overlays the snapshot created. Internal: the clusters only the snapshot's
qcow2 tag references (qemu/qcow2.py), in the image its <domain> wrote to; its saved VM state as the memory.
"""

from __future__ import annotations

from ..base import SnapshotSize
from ..qemu.space import allocated, internal_share
from .beyond import domain_of, parse


def snapshot_size(xml: str, name: str, running: bool) -> SnapshotSize:
    """`xml` is libvirt's <domainsnapshot> for snapshot `name`; `running`: the domain runs now (an internal
    snapshot's share of an image in use is then an estimate)."""
    root = parse(xml)
    memory = disk = 0
    memory_exact = disk_exact = True
    mem = root.find("memory")
    if mem is not None and mem.get("snapshot") == "external":
        size = allocated(mem.get("file"))
        memory, memory_exact = (size, True) if size is not None else (0, False)
    internal: set[str] = set()
    for item in root.iterfind("disks/disk"):
        if item.get("snapshot") == "external":
            size = allocated(next((s.get("file") for s in item.iterfind("source")), None))
            disk, disk_exact = (disk + size, disk_exact) if size is not None else (disk, False)
        elif item.get("snapshot") == "internal":
            internal.add(str(item.get("name")))
    element = root.find("domain")
    if internal and element is not None:
        images = [(view.source if view.source_type == "file" else None, view.driver_type)
                  for view in domain_of(element).disks() if view.target in internal]
        shared, exact, vmstate = internal_share(images, name, running)
        disk, disk_exact = disk + shared, disk_exact and exact
        if vmstate is not None:
            memory = vmstate
        elif root.findtext("state") in ("running", "paused"):
            memory, memory_exact = domain_of(element).memory_kib * 1024, False  # the VM state could not be read
    return SnapshotSize(memory, disk, memory_exact, disk_exact)
