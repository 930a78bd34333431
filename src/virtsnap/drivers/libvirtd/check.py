"""snapshot-check for libvirt+ domains: libvirt's snapshot metadata compared with the qcow2 internal snapshot
tags and external snapshots' overlays and backing chains, with --repair by the QEMU engine's rules.

--repair goes through libvirt's public API only: a snapshot whose data is gone leaves libvirt's metadata
(delete with METADATA_ONLY; its remaining files are left alone), an internal tag in a disk the domain runs on
that no metadata names is imported (REDEFINE), and a file is removed only when virtsnap's ledger recorded it as
virtsnap's and no definition reaches it. Files libvirt made are never removed. Without a context (a read-only
connection or a driver that keeps no files) the check reports only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any

from lxml import etree

from ...conf.snapshot_xml import check_name, escape_for_message
from ...errors import libvirtError
from ..base import Drift
from ..qemu import external, images
from ..qemu.check import ledger_orphans

TIMEOUT = 10.0  # seconds per qemu-img call: an image on a hung mount must not hang the check
LEFT_ALONE = "left alone: virtsnap changes nothing on this connection"
METADATA_ONLY = 2  # VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY
REDEFINE = 1  # VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
# libvirtd's XML is trusted (it wrote it) but is still read without entities or network access
PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


def _xml(text: str) -> Any:
    return etree.fromstring(text.encode(), PARSER)


def _disks(domain: Any, found: list[Drift] | None) -> dict[str, tuple[str, str]]:
    """target dev -> (image path, format) of a <domain>'s local qcow2 disks; every other disk is noted as not
    checked when `found` is given."""
    out: dict[str, tuple[str, str]] = {}
    for disk in domain.iterfind("devices/disk"):
        target = next((t.get("dev") for t in disk.iterfind("target")), None)
        path = next((s.get("file") for s in disk.iterfind("source")), None)
        fmt = next((d.get("type") for d in disk.iterfind("driver")), None)
        if disk.get("device", "disk") != "disk":
            continue
        if disk.get("type") != "file" or not path or fmt != "qcow2":
            if found is not None:
                found.append(Drift("not-checked", f"disk {target}", "not a local qcow2 file: it holds no internal "
                                   "snapshots virtsnap can read", "nothing to compare", drift=False))
            continue
        out[str(target)] = (os.path.abspath(path), "qcow2")  # libvirt's paths are absolute: never an option
    return out


def _chains(owners: list[tuple[str, dict[str, tuple[str, str]]]], found: list[Drift]) -> dict[str, external.Layer]:
    """Every image reachable from these disks, each layer read on its own with its format named."""
    external.forget_chains()
    layers: dict[str, external.Layer] = {}
    seen: set[str] = set()
    for owner, disks in owners:
        for target, (path, fmt) in disks.items():
            if path in seen:  # the same image in several definitions: read and reported once
                continue
            seen.add(path)
            if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
                found.append(Drift("not-a-file", path, f"disk {target} of {owner} is not a regular file",
                                   "not read (a FIFO or a device is never opened by snapshot-check)", drift=False))
                continue
            try:
                for layer in external.chain(path, fmt, timeout=TIMEOUT):
                    layers[layer.path] = layer
            except libvirtError as exc:
                found.append(Drift("broken-chain", path, f"disk {target} of {owner}: {exc.get_error_message()}",
                                   "restore the image or its backing files; nothing is changed automatically"))
    return layers


def _backing(path: str, fmt: str) -> str | None:
    item = images.info(path, fmt, force_share=True, timeout=TIMEOUT)
    backing = item.get("full-backing-filename") or item.get("backing-filename")
    return None if backing is None else os.path.abspath(str(backing))


def _problem(name: str, root: Any, disks: dict[str, tuple[str, str]], layers: dict[str, external.Layer],
             found: list[Drift]) -> str | None:
    """Why a snapshot's data is gone (the QEMU engine's wording), or None; a wrong backing is reported."""
    snap_disks = _disks(next(iter(root.iterfind("domain")), root), None) or disks
    for disk in root.iterfind("disks/disk"):
        target, where = disk.get("name", ""), disk.get("snapshot")
        if target not in snap_disks:
            continue
        path = snap_disks[target][0]
        if where == "internal":
            if not os.path.exists(path):
                return f"image {path} of disk {target} is missing"
            layer = layers.get(path)
            if layer is not None and name not in layer.internal:
                return f"image {path} of disk {target} has no internal snapshot '{name}'"
        elif where == "external":
            overlay = next((s.get("file") for s in disk.iterfind("source")), None)
            fmt = next((d.get("type") for d in disk.iterfind("driver")), None) or "qcow2"
            if not os.path.exists(path):
                return f"image {path} of disk {target} is missing"
            if overlay is None:
                continue
            overlay = os.path.abspath(overlay)
            if not os.path.exists(overlay):
                return f"overlay {overlay} of disk {target} is missing"
            try:
                backing = _backing(overlay, fmt)
            except libvirtError as exc:
                found.append(Drift("broken-chain", overlay, f"disk {target} of snapshot '{name}': "
                                   f"{exc.get_error_message()}",
                                   "restore the image or its backing files; nothing is changed automatically"))
                continue
            if backing != path:
                found.append(Drift("broken-chain", overlay, f"disk {target} of snapshot '{name}': its backing "
                                   f"file is {backing or 'none'}, not {path}, the image the snapshot's domain used",
                                   "restore the image or its backing files; nothing is changed automatically"))
    for memory in root.iterfind("memory"):
        if memory.get("snapshot") == "external" and memory.get("file") and not os.path.exists(memory.get("file")):
            return f"memory file {memory.get('file')} is missing"
    return None


def _import(dom: Any, call: Callable[..., Any], domain_xml: str, disks: dict[str, tuple[str, str]], tag: str,
            paths: list[str]) -> str | None:
    """Redefine an internal tag found in the disks the domain runs on as a root snapshot, as the QEMU engine
    imports one: state from whether it saved memory, the domain as it is defined now. None when imported,
    else why not (libvirt's QEMU driver records an internal snapshot only of every disk at once)."""
    domain = _xml(domain_xml)
    targets = [str(next((t.get("dev") for t in d.iterfind("target")), "")) for d in domain.iterfind("devices/disk")
               if d.get("device", "disk") == "disk"]
    holding = {t for t, (p, _f) in disks.items() if p in paths}
    if not holding:  # in an older layer only: the domain no longer runs on that image
        return "left in place: not in a disk the domain runs on"
    if missing := [t for t in targets if t not in holding]:
        return (f"left in place: disk {', '.join(missing)} holds no such tag, and libvirt records an internal "
                "snapshot only of every disk")
    held = images.info(paths[0], "qcow2", force_share=True, timeout=TIMEOUT).get("snapshots", [])
    info: dict[str, Any] = next((s for s in held if s.get("name") == tag), {})
    with_memory = int(info.get("vm-state-size", 0)) > 0
    root = etree.Element("domainsnapshot")
    etree.SubElement(root, "name").text = tag
    etree.SubElement(root, "description").text = "imported by snapshot-check --repair: found in the images"
    etree.SubElement(root, "state").text = "running" if with_memory else "shutoff"
    etree.SubElement(root, "creationTime").text = str(int(info.get("date-sec", 0)))
    etree.SubElement(root, "memory", snapshot="internal" if with_memory else "no")
    listed = etree.SubElement(root, "disks")
    for target in targets:
        etree.SubElement(listed, "disk", name=target, snapshot="internal")
    root.append(domain)
    call(dom.snapshotCreateXML, etree.tostring(root, encoding="unicode"), REDEFINE)
    return None


def check(dom: Any, call: Callable[..., Any], repair: bool, ctx: Any = None, uuid: str = "") -> list[Drift]:
    """`dom` is a libvirt-python domain; `call` turns its errors into virtsnap's. `repair` changes something
    only with `ctx` (beyond.Context of a read-write QEMU connection, its domain lock held by the caller)."""
    fix = repair and ctx is not None
    found: list[Drift] = []
    domain_xml = str(call(dom.XMLDesc, 0))
    disks = _disks(_xml(domain_xml), found)
    snaps = [(str(s.getName()), s, _xml(str(call(s.getXMLDesc, 0)))) for s in call(dom.listAllSnapshots, 0)]
    owners = [("the domain", disks)]
    owners += [(f"snapshot '{n}'", _disks(d, None)) for n, _s, r in snaps for d in r.iterfind("domain")]
    layers = _chains(owners, found)
    needed = set(layers)
    for name, snap, root in snaps:
        needed |= {os.path.abspath(str(s.get("file"))) for s in root.iterfind("disks/disk/source") if s.get("file")}
        needed |= {os.path.abspath(str(m.get("file"))) for m in root.iterfind("memory") if m.get("file")}
        problem = _problem(name, root, disks, layers, found)
        if problem is None:
            continue
        if fix:
            call(snap.delete, METADATA_ONLY)
        found.append(Drift("lost-snapshot", escape_for_message(name), problem,
                           "removed from libvirt's metadata; files libvirt made are left in place" if fix
                           else "--repair removes it from libvirt's metadata" if ctx is not None else LEFT_ALONE,
                           repaired=fix))
    known = {name for name, _s, _r in snaps}
    holders: dict[str, list[str]] = {}
    for layer in layers.values():
        for tag in layer.internal:
            holders.setdefault(tag, []).append(layer.path)
    for tag, paths in sorted(holders.items()):
        if tag in known:
            continue
        try:
            check_name(tag)
            why = ""
        except libvirtError as exc:
            why = exc.get_error_message()
        refused = _import(dom, call, domain_xml, disks, tag, paths) if fix and not why else "not tried"
        found.append(Drift("untracked-snapshot", escape_for_message(tag), f"internal snapshot in "
                           f"{', '.join(sorted(paths))} has no libvirt metadata",
                           f"never imported: {why}" if why else "imported as a root snapshot" if refused is None
                           else refused if fix else "--repair imports it as a root" if ctx is not None
                           else LEFT_ALONE, repaired=refused is None))
    if ctx is not None:
        found += ledger_orphans(ctx.store, uuid, needed, repair)  # as the QEMU engine's check
    return found
