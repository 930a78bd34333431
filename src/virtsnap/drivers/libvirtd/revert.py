"""Reverting to an external snapshot on a libvirt that cannot (libvirt < 9.7), through libvirt's public API only:
new overlays on the snapshot's images, the definition pointed at them, memory restored, the snapshot current.

Steps, each journaled: overlays made (O_EXCL, in the ledger) -> domain stopped -> definition defined -> memory
restored or domain started as asked -> snapshot redefined as current -> overlays nothing needs any more removed.
A killed revert is rolled forward by the next operation on the domain (recover): what it ran is stopped, the
overlays it made are removed, and the revert runs again from the start.
"""

from __future__ import annotations

import os
from typing import Any

from ...conf.domain_xml import DomainDef
from ...errors import ErrorCode, error
from ...failpoints import hit
from ...store import ledger
from ...store.db import JournalEntry
from ..qemu import external
from .beyond import (
    CURRENT,
    DOMAIN_XML_INACTIVE,
    DOMAIN_XML_SECURE,
    ERR,
    REDEFINE,
    REVERT_FORCE,
    REVERT_PAUSED,
    REVERT_RUNNING,
    SAVE_PAUSED,
    SAVE_RUNNING,
    SNAPSHOT_XML_SECURE,
    START_PAUSED,
    Context,
    domain_of,
    parse,
    referenced_files,
    safe_component,
)

OP = "libvirt-revert"
KNOWN_FLAGS = REVERT_RUNNING | REVERT_PAUSED | REVERT_FORCE


class Target:
    """What reverting to one external snapshot needs, read and checked before anything changes."""

    def __init__(self, ctx: Context, dom: Any, snap: Any, flags: int) -> None:
        self.name = str(snap.getName())
        self.xml = str(ctx.call(snap.getXMLDesc, SNAPSHOT_XML_SECURE))
        root = parse(self.xml)
        if flags & ~KNOWN_FLAGS:
            raise error(ErrorCode.INVALID_ARG, ERR,
                        f"unsupported flags (0x{flags & ~KNOWN_FLAGS:x}) in function qemuDomainRevertToSnapshot")
        if flags & REVERT_RUNNING and flags & REVERT_PAUSED:
            raise error(ErrorCode.INVALID_ARG, ERR, "Flags 'VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING' and "
                        "'VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED' are mutually exclusive")
        live = root.find("domain")
        if live is None:
            raise error(ErrorCode.OPERATION_INVALID, ERR,
                        f"snapshot '{self.name}' has no domain definition to revert to; nothing was changed")
        self.live = domain_of(live)
        inactive = root.find("inactiveDomain")
        self.persistent = domain_of(inactive) if inactive is not None else self.live
        self.state = root.findtext("state") or ""
        memory = root.find("memory")
        self.memory = memory.get("file") if memory is not None and memory.get("snapshot") == "external" else None
        kinds = {d.get("name"): d.get("snapshot") for d in root.iterfind("disks/disk")}
        refused: list[str] = []
        self.bases: dict[str, tuple[str, str]] = {}
        for disk in self.live.disks():
            kind = kinds.get(disk.target)
            if disk.device != "disk" or kind in (None, "no"):
                continue
            if kind != "external":
                refused.append(f"disk {disk.target} ({kind} snapshot inside an external one)")
            elif disk.source_type != "file" or not disk.source or disk.driver_type not in ("qcow2", "raw"):
                refused.append(f"disk {disk.target} (not a local qcow2 or raw file)")
            elif not os.path.isfile(disk.source):
                refused.append(f"disk {disk.target} (its image {disk.source} is missing)")
            else:
                self.bases[disk.target] = (os.path.abspath(disk.source), disk.driver_type)
        if self.state in ("running", "paused") and self.memory is None:
            refused.append("memory (not saved in an external file)")
        if self.memory is not None and not os.path.isfile(self.memory):
            refused.append(f"memory (its file {self.memory} is missing)")
        if not ctx.call(dom.isPersistent):  # defining it on the overlays would make it persistent
            refused.append("a transient domain (define it first)")
        if refused:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, f"revert to external snapshot '{self.name}' cannot "
                        f"restore: {'; '.join(refused)}; nothing was changed")
        self.flags = flags
        self.old = DomainDef.parse(str(ctx.call(dom.XMLDesc, DOMAIN_XML_SECURE | DOMAIN_XML_INACTIVE)), ERR,
                                   trusted=True)
        self.was_active = bool(ctx.call(dom.isActive))
        if self.was_active:
            self.old_live = DomainDef.parse(str(ctx.call(dom.XMLDesc, DOMAIN_XML_SECURE)), ERR, trusted=True)
        else:
            self.old_live = self.old

    def overlay_names(self) -> dict[str, str]:
        """target -> a new file next to the snapshot's image (never an existing name)."""
        tag = safe_component(self.name)
        return {target: external.revert_overlay_name(base, tag) for target, (base, _fmt) in self.bases.items()}

    def start_mode(self) -> str:
        """'restore-running', 'restore-paused', 'start', 'start-paused' or 'off'."""
        if self.memory is not None:
            paused = self.flags & REVERT_PAUSED or (self.state == "paused" and not self.flags & REVERT_RUNNING)
            return "restore-paused" if paused else "restore-running"
        if self.flags & REVERT_RUNNING:
            return "start"
        return "start-paused" if self.flags & REVERT_PAUSED else "off"


def revert(ctx: Context, uuid: str, snap: Any, flags: int) -> None:
    """Revert the domain to external snapshot `snap`. Everything is checked first: a refusal changes nothing.
    If it fails part-way, the journal entry stays and the next operation on the domain finishes it."""
    dom = ctx.dom(uuid)
    target = Target(ctx, dom, snap, flags)
    _run(ctx, uuid, dom, target)


def _run(ctx: Context, uuid: str, dom: Any, target: Target, earlier: list[str] | None = None) -> None:
    """`earlier`: files a killed run of this revert found in use, to be tidied up as this run's own."""
    overlays = target.overlay_names()
    old_tops = sorted({p for d in (target.old, target.old_live) for p, _f in external.disk_sources(d).values()}
                      | set(earlier or ()))
    entry = ctx.store.journal_begin(uuid, OP, {"snapshot": target.name, "flags": target.flags,
                                               "overlays": overlays, "old_tops": old_tops})
    try:
        hit("libvirt-revert.begun")
        for disk, path in overlays.items():
            base, fmt = target.bases[disk]

            def made(fd: int, path: str = path, base: str = base, fmt: str = fmt) -> object:
                return ledger.record(ctx.store, path, fd, uuid, target.name, "revert-overlay", "qcow2", base, fmt)

            external.create_overlay(path, base, fmt, False, disk, made=made)
        ctx.store.journal_step(entry, "overlays")
        hit("libvirt-revert.overlays-made")
        if ctx.call(dom.isActive):
            ctx.call(dom.destroyFlags, 0)  # the current state is dropped, as a revert drops it
        ctx.store.journal_step(entry, "stopped")
        hit("libvirt-revert.stopped")
        persistent = external.with_sources(target.persistent, overlays)
        ctx.call(ctx.conn.defineXML, persistent.format(secure=True))
        ctx.store.journal_step(entry, "defined")
        hit("libvirt-revert.defined")
        mode = target.start_mode()
        if mode.startswith("restore"):
            live = external.with_sources(target.live, overlays)
            ctx.call(ctx.conn.restoreFlags, target.memory, live.format(secure=True),
                     SAVE_PAUSED if mode == "restore-paused" else SAVE_RUNNING)
        elif mode == "start":
            ctx.call(dom.createWithFlags, 0)
        elif mode == "start-paused":
            ctx.call(dom.createWithFlags, START_PAUSED)
        ctx.store.journal_step(entry, "started")
        hit("libvirt-revert.started")
        ctx.call(dom.snapshotCreateXML, target.xml, REDEFINE | CURRENT)
        ctx.store.journal_step(entry, "redefined")
        hit("libvirt-revert.redefined")
    except Exception:
        _undo(ctx, uuid, entry, target, overlays)
        raise
    _tidy(ctx, uuid, old_tops)
    ctx.store.journal_end(entry)


def _undo(ctx: Context, uuid: str, entry: int, target: Target, overlays: dict[str, str]) -> None:
    """A step failed in this process (it was not killed): the domain is put back on its definition before the
    revert, shut off if the revert had stopped it (its running state is gone, as with libvirt's own revert),
    and the overlays made are removed; the journal entry ends. A kill skips this: recovery rolls forward."""
    try:
        steps = next((e.steps for e in ctx.store.journal_unfinished(uuid) if e.id == entry), [])
        if "redefined" in steps:
            return  # the revert is done; only the tidy-up failed
        dom = ctx.dom(uuid)
        if "stopped" in steps:
            if ctx.call(dom.isActive):
                ctx.call(dom.destroyFlags, 0)
            ctx.call(ctx.conn.defineXML, target.old.format(secure=True))
        for path in overlays.values():
            ledger.remove_path(ctx.store, path, uuid)
    finally:
        ctx.store.journal_end(entry)


def _tidy(ctx: Context, uuid: str, old_tops: list[str]) -> list[str]:
    """Remove the files the domain used before the revert that virtsnap made (an earlier revert's overlays)
    and that nothing reaches any more: neither the domain nor any snapshot."""
    candidates = set(old_tops) & ctx.ours(uuid)
    if not candidates:
        return []
    dom = ctx.dom(uuid)
    defs = [DomainDef.parse(str(ctx.call(dom.XMLDesc, DOMAIN_XML_SECURE | DOMAIN_XML_INACTIVE)), ERR, trusted=True)]
    if ctx.call(dom.isActive):
        defs.append(DomainDef.parse(str(ctx.call(dom.XMLDesc, DOMAIN_XML_SECURE)), ERR, trusted=True))
    extra: list[str] = []
    for snap in ctx.call(dom.listAllSnapshots, 0):
        root = parse(str(ctx.call(snap.getXMLDesc, 0)))
        for tag in ("domain", "inactiveDomain"):
            element = root.find(tag)
            if element is not None:
                defs.append(domain_of(element))
        extra += [s.get("file") for s in root.iterfind("disks/disk/source") if s.get("file")]
    return ctx.remove_ours(uuid, candidates - referenced_files(defs, extra))


def recover(ctx: Context, uuid: str, entry: JournalEntry) -> str:
    """Finish a revert whose process was killed: after `redefined` only the tidy-up is left; before it, what
    the domain runs is stopped, the overlays made are removed, and the revert runs again from the start."""
    if "redefined" in entry.steps:
        removed = _tidy(ctx, uuid, list(entry.intent.get("old_tops", [])))
        ctx.store.journal_end(entry.id)
        return f"revert to {entry.intent['snapshot']} finished (removed {len(removed)} unneeded files)"
    dom = ctx.dom(uuid)
    if ctx.call(dom.isActive):
        ctx.call(dom.destroyFlags, 0)
    for path in entry.intent.get("overlays", {}).values():
        ledger.remove_path(ctx.store, path, uuid)
    ctx.store.journal_end(entry.id)
    snap = ctx.call(dom.snapshotLookupByName, entry.intent["snapshot"], 0)
    target = Target(ctx, dom, snap, int(entry.intent.get("flags", 0)))
    _run(ctx, uuid, dom, target, list(entry.intent.get("old_tops", [])))
    return f"revert to {entry.intent['snapshot']} carried out again"
