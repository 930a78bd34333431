"""snapshot-check for libvirt+ domains: libvirt's snapshot metadata compared with the qcow2 internal snapshot tags.

Report only: libvirtd owns both the metadata and the images, so --repair changes and removes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from lxml import etree

from ...conf.snapshot_xml import escape_for_message
from ...errors import libvirtError
from ..base import Drift
from ..qemu import images

TIMEOUT = 10.0  # seconds per qemu-img call: an image on a hung mount must not hang the check
LEFT_ALONE = "left alone: libvirt made it; virtsnap changes nothing on libvirt+ connections"
# libvirtd's XML is trusted (it wrote it) but is still read without entities or network access
PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


def _xml(text: str) -> Any:
    return etree.fromstring(text.encode(), PARSER)


def _qcow2_disks(domain_xml: str, found: list[Drift]) -> dict[str, str]:
    """target dev -> image path of the domain's local qcow2 disks; every other disk is noted as not checked."""
    out: dict[str, str] = {}
    for disk in _xml(domain_xml).iterfind("devices/disk"):
        target = next((t.get("dev") for t in disk.iterfind("target")), None)
        path = next((s.get("file") for s in disk.iterfind("source")), None)
        fmt = next((d.get("type") for d in disk.iterfind("driver")), None)
        if disk.get("device", "disk") != "disk":
            continue
        if disk.get("type") != "file" or not path or fmt != "qcow2":
            found.append(Drift("not-checked", f"disk {target}", "not a local qcow2 file: it holds no internal "
                               "snapshots virtsnap can read", "nothing to compare", drift=False))
            continue
        out[str(target)] = os.path.abspath(path)  # libvirt's paths are absolute: never read as an option
    return out


def _tags(path: str) -> list[str]:
    """The image's internal snapshot tags, read shared (-U) with the format named (images.info refuses a FIFO
    or a character device before qemu-img runs)."""
    return [str(s["name"]) for s in images.info(path, "qcow2", force_share=True, timeout=TIMEOUT).get("snapshots", [])]


def check(dom: Any, call: Callable[..., Any], repair: bool) -> list[Drift]:
    """`dom` is a libvirt-python domain; `call` turns its errors into virtsnap's. `repair` changes nothing."""
    found: list[Drift] = []
    disks = _qcow2_disks(str(call(dom.XMLDesc, 0)), found)
    by_path = {path: target for target, path in disks.items()}
    expected: dict[str, set[str]] = {path: set() for path in by_path}
    for snap in call(dom.listAllSnapshots, 0):
        root = _xml(str(call(snap.getXMLDesc, 0)))
        for disk in root.iterfind("disks/disk"):
            if disk.get("snapshot") != "internal":
                continue
            name = disk.get("name", "")
            path = disks.get(name) or (os.path.abspath(name) if os.path.abspath(name) in by_path else None)
            if path is not None:
                expected[path].add(str(snap.getName()))
    for path, want in sorted(expected.items()):
        target = by_path[path]
        try:
            tags = set(_tags(path))
        except libvirtError as exc:
            found.append(Drift("unreadable-image", path, f"disk {target}: {exc.get_error_message()}",
                               "nothing compared for this disk"))
            continue
        for name in sorted(want - tags):
            found.append(Drift("lost-snapshot", escape_for_message(name), f"libvirt's metadata has an internal "
                               f"snapshot of disk {target}, but {path} holds no such tag", LEFT_ALONE))
        for tag in sorted(tags - want):
            found.append(Drift("untracked-snapshot", escape_for_message(tag), f"internal snapshot in {path} "
                               "has no libvirt metadata", LEFT_ALONE))
    return found
