"""Deleting external snapshots where libvirt cannot (libvirt < 9.9, and CHILDREN / CHILDREN_ONLY at any version),
through libvirt's public API and qemu-img: one plan by the QEMU engine's planner (qemu/extdelete.py), made first.

Running domain: blockCommit (ACTIVE, then blockJobAbort with PIVOT) and blockRebase (a pull into the image the
guest writes); images QEMU does not have open, and every image of a shut-off domain: qemu-img with the formats
named. Then the definition and the snapshots that named a merged file are pointed at the file it went into
(defineXML, snapshotCreateXML with REDEFINE), the deleted snapshots' metadata goes, and only files the ledger
says virtsnap made are unlinked. A delete that would destroy an internal snapshot is refused before any change.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from lxml import etree

from ...conf.domain_xml import DomainDef
from ...errors import ErrorCode, error, libvirtError
from ...failpoints import hit
from ...store.db import JournalEntry
from ..qemu import extdelete, external
from .beyond import (
    BLOCK_COMMIT_ACTIVE,
    BLOCK_JOB_ABORT_PIVOT,
    CURRENT,
    DELETE_CHILDREN,
    DELETE_CHILDREN_ONLY,
    DELETE_METADATA_ONLY,
    DOMAIN_XML_INACTIVE,
    DOMAIN_XML_SECURE,
    ERR,
    REDEFINE,
    SNAPSHOT_XML_SECURE,
    Context,
    domain_of,
    is_external,
    parse,
)

OP = "libvirt-delete"
KNOWN_FLAGS = DELETE_CHILDREN | DELETE_METADATA_ONLY | DELETE_CHILDREN_ONLY
JOB_TIMEOUT = 3600.0  # seconds a block job may take (a large image on slow storage)


@dataclasses.dataclass
class Record:
    """One snapshot as libvirtd describes it."""

    name: str
    parent: str | None
    xml: str  # secure: what REDEFINE needs
    external: bool
    domain: DomainDef | None
    external_disks: list[str]
    overlays: list[str]
    current: bool


def _records(ctx: Context, dom: Any) -> dict[str, Record]:
    out: dict[str, Record] = {}
    current = str(ctx.call(dom.snapshotCurrent, 0).getName()) if ctx.call(dom.hasCurrentSnapshot, 0) else None
    for snap in ctx.call(dom.listAllSnapshots, 0):
        text = str(ctx.call(snap.getXMLDesc, SNAPSHOT_XML_SECURE))
        root = parse(text)
        element = root.find("domain")
        ext = [d for d in root.iterfind("disks/disk") if d.get("snapshot") == "external"]
        name = str(snap.getName())
        out[name] = Record(name, root.findtext("parent/name"), text, is_external(root),
                           domain_of(element) if element is not None else None,
                           [str(d.get("name")) for d in ext],
                           [str(s.get("file")) for d in ext for s in d.iterfind("source") if s.get("file")],
                           name == current)
    return out


def _depth(records: dict[str, Record], name: str) -> int:
    n, parent = 0, records[name].parent
    while parent is not None and parent in records:
        n, parent = n + 1, records[parent].parent
    return n


def going(records: dict[str, Record], name: str, flags: int) -> list[str]:
    """The snapshots the delete removes, leaf first."""
    names = set() if flags & DELETE_CHILDREN_ONLY else {name}
    if flags & (DELETE_CHILDREN | DELETE_CHILDREN_ONLY):
        below = {name}
        changed = True
        while changed:
            more = {r.name for r in records.values() if r.parent in below} - below
            below |= more
            changed = bool(more)
        names |= below - {name}
    return sorted(names, key=lambda n: (-_depth(records, n), n))


def wanted(ctx: Context, dom: Any, name: str, flags: int) -> bool:
    """Whether this delete is virtsnap's to do: data is deleted (not METADATA_ONLY) and an external snapshot goes."""
    if flags & DELETE_METADATA_ONLY or flags & ~KNOWN_FLAGS:
        return False
    if not flags & (DELETE_CHILDREN | DELETE_CHILDREN_ONLY):  # the snapshot alone: its own XML decides
        try:
            return is_external(parse(str(ctx.call(ctx.call(dom.snapshotLookupByName, name, 0).getXMLDesc, 0))))
        except libvirtError:
            return False  # libvirt's own delete then reports what is wrong, in its words
    records = _records(ctx, dom)
    return name in records and any(records[n].external for n in going(records, name, flags))


def refuse_lost_tags(ctx: Context, dom: Any, name: str, flags: int) -> None:
    """Before libvirt's own delete of an external snapshot: libvirt merges the snapshot's overlays (its <disks>
    files) into the images below and removes them, internal snapshots stored in them included (measured on 11.3,
    as on 9.0). Refused before any change, as virtsnap's own delete refuses it."""
    if flags & (DELETE_METADATA_ONLY | DELETE_CHILDREN | DELETE_CHILDREN_ONLY) or flags & ~KNOWN_FLAGS:
        return
    try:
        root = parse(str(ctx.call(ctx.call(dom.snapshotLookupByName, name, 0).getXMLDesc, 0)))
    except libvirtError:
        return  # libvirt's own delete then reports what is wrong, in its words
    lost: list[str] = []
    for disk in root.iterfind("disks/disk"):
        source = disk.find("source")
        driver = disk.find("driver")
        path = source.get("file") if disk.get("snapshot") == "external" and source is not None else None
        if path is None:
            continue
        try:
            tags = external.chain(path, driver.get("type", "qcow2") if driver is not None else "qcow2")[0].internal
        except libvirtError:
            continue  # unreadable or gone: libvirt's delete says so itself
        lost += [f"{', '.join(tags)} in {path}"] if tags else []
    external.forget_chains()
    if lost:
        raise error(ErrorCode.OPERATION_INVALID, ERR,
                    f"internal snapshots {'; '.join(lost)}, which libvirt's delete of snapshot '{name}' would merge "
                    "away and remove; delete them first. Nothing was changed")


def _live_chains(xml: str) -> extdelete.QemuView:
    """Each disk's chain, top first, as libvirtd reports what QEMU has open (the live <backingStore> chain)."""
    chains: dict[str, list[str]] = {}
    for disk in parse(xml).iterfind("devices/disk"):
        target = disk.find("target")
        if disk.get("device", "disk") != "disk" or target is None:
            continue
        files: list[str] = []
        node: Any = disk
        while node is not None and node.find("source") is not None and node.find("source").get("file"):
            files.append(str(node.find("source").get("file")))
            node = node.find("backingStore")
        chains[str(target.get("dev"))] = files
    open_files = {f: [f] for chain in chains.values() for f in chain}
    return extdelete.QemuView(chains, open_files)


def delete(ctx: Context, uuid: str, name: str, flags: int) -> None:
    """Delete snapshot `name` (and its descendants with CHILDREN, only those with CHILDREN_ONLY). The plan is
    made and checked first: a refusal changes nothing. A killed delete is finished by the next operation."""
    dom = ctx.dom(uuid)
    records = _records(ctx, dom)
    order = going(records, name, flags)
    running = bool(ctx.call(dom.isActive))
    live_xml = str(ctx.call(dom.XMLDesc, DOMAIN_XML_SECURE if running else DOMAIN_XML_SECURE | DOMAIN_XML_INACTIVE))
    plan = _plan(ctx, uuid, records, order, live_xml, running)
    if running:
        _refuse_busy(ctx, dom, plan)
    steps = [dataclasses.asdict(s) for s in plan.steps]
    entry = ctx.store.journal_begin(uuid, OP, {"snapshot": name, "flags": flags, "order": order, "steps": steps,
                                               "moved": plan.moved, "remove": plan.remove})
    hit("libvirt-delete.begun")
    _finish(ctx, uuid, entry, order, plan.steps, dict(plan.moved), plan.remove, set())


def _plan(ctx: Context, uuid: str, records: dict[str, Record], order: list[str], live_xml: str,
          running: bool) -> extdelete.Plan:
    domain = DomainDef.parse(live_xml, ERR, trusted=True)
    snapshots = [extdelete.Snapshot(r.name, r.domain, r.external_disks, r.overlays, r.name in order)
                 for r in records.values()]
    view = _live_chains(live_xml) if running else None
    external.forget_chains()
    plan = extdelete.plan_delete(domain, snapshots, [n for n in order if records[n].external], view, ctx.ours(uuid))
    for step in plan.steps:
        if step.how == "stream" and view is not None and view.chains.get(step.target, [None])[0] != step.image:
            raise error(ErrorCode.OPERATION_UNSUPPORTED, ERR,
                        f"deleting would pull data into {step.image}, which is inside disk {step.target}'s chain "
                        "while the domain runs (libvirt pulls only into the image the guest writes); shut the domain "
                        "down first. Nothing was changed")
    extdelete.refuse_unwritable(plan.steps, ERR)
    return plan


def _refuse_busy(ctx: Context, dom: Any, plan: extdelete.Plan) -> None:
    """A block job someone else runs on a disk the plan merges through libvirtd (a copy, a pull, a backup) is
    not this delete's to wait for or pivot: refused before any change, as libvirt refuses a second job."""
    busy = sorted({s.target for s in plan.steps if s.how in ("active", "intermediate", "stream")
                   and _job(ctx, dom, s.target)})
    if busy:
        raise error(ErrorCode.OPERATION_INVALID, ERR, ", ".join(f"disk '{t}'" for t in busy) + " already in active "
                    "block job (see virsh blockjob); let it end or abort it, then delete again. Nothing was changed")


def _finish(ctx: Context, uuid: str, entry: int, order: list[str], steps: list[extdelete.Step],
            moved: dict[str, Any], remove: list[str], done: set[int]) -> None:
    dom = ctx.dom(uuid)
    for index, step in enumerate(steps):
        if index in done:
            continue
        try:
            _run_step(ctx, dom, step)
        except Exception:
            # Failed in this process (a kill skips this): a merge cannot be taken back, but every image still
            # reads as before; the definitions follow the merges done so far, and the delete ends here.
            finished = [s for i, s in enumerate(steps) if i in done]
            _repoint(ctx, dom, {old: new for old, (new, _f) in extdelete.moved_by(finished).items()}, set())
            ctx.store.journal_end(entry)
            raise
        done.add(index)
        external.forget_chains()
        ctx.store.journal_step(entry, f"step-{index}")
        hit("libvirt-delete.step-done")
    _repoint(ctx, dom, {old: new for old, (new, _fmt) in moved.items()}, set(order))
    hit("libvirt-delete.repointed")
    for name in order:  # leaf first: libvirt moves each one's children to its parent, current to its parent
        try:
            snap = ctx.call(dom.snapshotLookupByName, name, 0)
        except libvirtError:
            continue  # gone already (a killed delete got this far)
        root = parse(str(ctx.call(snap.getXMLDesc, 0)))
        ctx.call(snap.delete, DELETE_METADATA_ONLY if is_external(root) else 0)
    ctx.store.journal_step(entry, "forgotten")
    hit("libvirt-delete.forgotten")
    ctx.remove_ours(uuid, set(remove))
    ctx.store.journal_end(entry)


def _run_step(ctx: Context, dom: Any, step: extdelete.Step) -> None:
    """One step of the plan: a block job through libvirtd for an image QEMU writes, qemu-img otherwise."""
    if step.how == "active":
        if not _job(ctx, dom, step.target):
            if _chain_top(ctx, dom, step.target) != step.image:
                return  # pivoted already (a killed delete got this far)
            ctx.call(dom.blockCommit, step.target, step.base, None, 0, BLOCK_COMMIT_ACTIVE)
            hit("libvirt-delete.job-started")
        _pivot(ctx, dom, step.target)
    elif step.how == "intermediate":
        if not _job(ctx, dom, step.target) and step.image in _chain(ctx, dom, step.target):
            ctx.call(dom.blockCommit, step.target, step.base, step.image, 0, 0)
            hit("libvirt-delete.job-started")
        _wait(ctx, dom, step.target)
    elif step.how == "stream":
        if not _job(ctx, dom, step.target) and step.base in _chain(ctx, dom, step.target):
            ctx.call(dom.blockRebase, step.target, step.below, 0, 0)
            hit("libvirt-delete.job-started")
        _wait(ctx, dom, step.target)
    else:
        extdelete.image_step(step)


def _chain(ctx: Context, dom: Any, target: str) -> list[str]:
    return _live_chains(str(ctx.call(dom.XMLDesc, 0))).chains.get(target, [])


def _chain_top(ctx: Context, dom: Any, target: str) -> str | None:
    chain = _chain(ctx, dom, target)
    return chain[0] if chain else None


def _job(ctx: Context, dom: Any, target: str) -> dict[str, int]:
    return dict(ctx.call(dom.blockJobInfo, target, 0) or {})


def _wait(ctx: Context, dom: Any, target: str) -> None:
    """Until the disk's block job has ended (libvirtd reports no job); libvirt-python has no blocking wait."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while _job(ctx, dom, target):
        if time.monotonic() > deadline:
            raise error(ErrorCode.OPERATION_FAILED, ERR, f"the block job of disk {target} did not end")
        time.sleep(0.05)


BLOCK_COPY_ACTIVE = 83  # VIR_ERR_BLOCK_COPY_ACTIVE


def _pivot(ctx: Context, dom: Any, target: str) -> None:
    """Pivot an active commit once it is ready (libvirt refuses a pivot before; it is asked again then)."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        info = _job(ctx, dom, target)
        if not info:
            return
        if info.get("end", 0) and info.get("cur") == info.get("end"):
            try:
                ctx.call(dom.blockJobAbort, target, BLOCK_JOB_ABORT_PIVOT)
                _wait(ctx, dom, target)
                return
            except libvirtError as exc:
                # cur == end can come before QEMU reports the job ready: libvirt then refuses the pivot with
                # VIR_ERR_BLOCK_COPY_ACTIVE ("not ready for pivot yet"), and it is asked again
                if exc.get_error_code() not in (ErrorCode.OPERATION_INVALID, BLOCK_COPY_ACTIVE):
                    raise
        if time.monotonic() > deadline:
            raise error(ErrorCode.OPERATION_FAILED, ERR, f"the block commit of disk {target} never became ready")
        time.sleep(0.05)


def _moved_xml(text: str, moved: dict[str, str]) -> str:
    """The document with every disk source that names a merged file naming the file it went into."""
    root = parse(text)
    changed = False
    for source in root.iter("source"):
        path = source.get("file")
        if path in moved:
            source.set("file", moved[path])
            changed = True
    return etree.tostring(root, encoding="unicode") if changed else text


def _repoint(ctx: Context, dom: Any, moved: dict[str, str], gone: set[str]) -> None:
    """The persistent definition and every remaining snapshot name the files merged files went into."""
    if not moved:
        return
    inactive = str(ctx.call(dom.XMLDesc, DOMAIN_XML_SECURE | DOMAIN_XML_INACTIVE))
    updated = _moved_xml(inactive, moved)
    if updated != inactive:
        ctx.call(ctx.conn.defineXML, updated)
    for record in _records(ctx, dom).values():
        if record.name in gone:
            continue
        updated = _moved_xml(record.xml, moved)
        if updated != record.xml:
            ctx.call(dom.snapshotCreateXML, updated, REDEFINE | (CURRENT if record.current else 0))


def recover(ctx: Context, uuid: str, entry: JournalEntry) -> str:
    """Finish a delete whose process was killed, from the first step it had not recorded as done (each step
    checks the images and libvirtd's block jobs first, so a step that was under way is not done twice)."""
    intent = entry.intent
    steps = [extdelete.Step(**s) for s in intent.get("steps", [])]
    done = {int(s.split("-", 1)[1]) for s in entry.steps if s.startswith("step-")}
    moved = {k: tuple(v) for k, v in intent.get("moved", {}).items()}
    _finish(ctx, uuid, entry.id, list(intent["order"]), steps, moved, list(intent.get("remove", [])), done)
    return f"delete of {intent['snapshot']} finished"
