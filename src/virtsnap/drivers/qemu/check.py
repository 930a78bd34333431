"""snapshot-check for the QEMU driver: the metadata compared with the images and the QEMU process.

Drift found (each a `Drift`): internal snapshots in images but not in the metadata, snapshots whose data is
gone, overlay files no definition reaches, backing chains that do not open, a QEMU left paused by an
operation, a guest left with frozen file systems, an unfinished operation the journal could not finish.
`repair` fixes what is safe (untracked snapshots imported as roots, lost ones marked, the guest thawed and
resumed, empty orphans that the ledger says virtsnap made removed, the journal retried) and explains the rest.

It reads this domain's images only (every format named, a short timeout, never a FIFO or a device), and
looks for orphans in the ledger, never by scanning directories: a file it did not make is never its business.
"""

from __future__ import annotations

import json
import os
import stat
from typing import TYPE_CHECKING

from ...conf.domain_xml import DomainDef
from ...conf.snapshot_xml import DiskSnapshot, Location, SnapshotDef, SnapshotState, check_name, escape_for_message
from ...conf.tree import Moment, SnapshotTree
from ...errors import libvirtError
from ...store import ledger
from ..base import Drift
from . import external, firmware, images, moments, recovery, tpm

if TYPE_CHECKING:
    from ...store.db import MetadataStore
    from .context import Context

TIMEOUT = 10.0  # seconds per qemu-img call: an image on a hung mount must not hang the check


def check(ctx: Context, uuid: str, repair: bool) -> list[Drift]:
    """Caller holds the domain's lock (and the journal was replayed when it took it)."""

    found: list[Drift] = []
    found += _journal(ctx, uuid, repair)
    dom_def = ctx.domain_def(uuid)
    tree = ctx.tree(uuid)
    lost = ctx.store.lost(uuid)
    roots: list[tuple[str, DomainDef]] = [("the domain", dom_def)]
    roots += [(f"snapshot '{m.name}'", d) for m, d in ((m, moments.def_of(m).domain) for m in tree.moments()) if d]
    external.forget_chains()
    layers: dict[str, external.Layer] = {}  # every image reachable from a definition
    for owner, root in roots:
        for target, (path, fmt) in external.disk_sources(root).items():
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
    # Internal snapshots: which images should hold which tags, and which tags the images hold.
    for moment in tree.moments():
        defn = moments.def_of(moment)
        if moment.name in lost:
            found.append(Drift("marked-lost", moment.name, lost[moment.name],
                               "kept on record; delete it with snapshot-delete --metadata", drift=False))
            continue
        problem = _missing_data(defn, layers)
        if problem:
            if repair:
                ctx.store.mark_lost(uuid, moment.name, problem)
            found.append(Drift("lost-snapshot", moment.name, problem,
                               "marked lost: kept on record, never reverted to" if repair
                               else "--repair marks it lost", repaired=repair))
    holders: dict[str, list[str]] = {}
    for layer in layers.values():
        for tag in layer.internal:
            holders.setdefault(tag, []).append(layer.path)
    for tag, paths in sorted(holders.items()):
        if tag in tree:
            continue
        fixed = False
        try:
            check_name(tag)
            why = ""
        except libvirtError as exc:
            why = exc.get_error_message()
        if repair and not why:
            fixed = _import(ctx, uuid, dom_def, tag, paths)
        found.append(Drift("untracked-snapshot", escape_for_message(tag), f"internal snapshot in "
                           f"{', '.join(sorted(paths))} has no metadata",
                           f"never imported: {why}" if why else "imported as a root snapshot" if fixed
                           else "--repair imports it as a root", repaired=fixed))
    found += _nvram(dom_def, tree)
    found += _orphans(ctx, uuid, layers, repair)
    found += _process(ctx, uuid, repair)
    try:
        tree.check_invariants()
    except (AssertionError, ValueError) as exc:
        found.append(Drift("tree", "metadata", str(exc), "report this: the store's tree breaks an invariant"))
    return found


def _nvram(dom_def: DomainDef, tree: SnapshotTree) -> list[Drift]:
    """The domain's NVRAM image holds one tag per snapshot taken while the domain had it (firmware.py), and no
    other: reported, never repaired (a tag is never imported from the NVRAM alone, nor removed by the check)."""
    from .domain import QemuDomain

    try:
        image = firmware.state_image(QemuDomain.from_def(dom_def))
    except libvirtError:
        return []  # a raw NVRAM: no snapshot can include it
    if image is None or not image.path or not os.path.isfile(image.path):
        return []
    try:
        held = {s["name"] for s in images.info(image.path, "qcow2", force_share=True, timeout=TIMEOUT)
                .get("snapshots", [])}
    except libvirtError as exc:
        return [Drift("broken-chain", image.path, f"the NVRAM: {exc.get_error_message()}",
                      "restore the NVRAM image; nothing is changed automatically")]
    out = []
    for moment in tree.moments():
        domain = moments.def_of(moment).domain
        had = domain is not None and ("<nvram>", image.path) in firmware.named_paths(domain)
        if had and moment.name not in held:
            out.append(Drift("nvram-missing", moment.name, f"the NVRAM {image.path} has no snapshot "
                             f"'{moment.name}': a revert to it is refused", "restore the NVRAM image; nothing is "
                             "changed automatically"))
    for tag in sorted(held - {m.name for m in tree.moments()}):
        out.append(Drift("untracked-snapshot", escape_for_message(tag), f"internal snapshot in the NVRAM "
                         f"{image.path} has no metadata", "left in place: the NVRAM alone is no snapshot"))
    return out


def _journal(ctx: Context, uuid: str, repair: bool) -> list[Drift]:
    entries = ctx.store.journal_unfinished(uuid)
    if entries and repair:
        for entry in entries:
            ctx.recovery_errors.pop(entry.id, None)
        recovery.recover(ctx, uuid)
        left = {e.id for e in ctx.store.journal_unfinished(uuid)}
    else:
        left = {e.id for e in entries}
    out = []
    for entry in entries:
        why = ctx.recovery_errors.get(entry.id, "not finished yet")
        done = entry.id not in left
        out.append(Drift("unfinished-operation", f"{entry.op} by pid {entry.pid}",
                         f"{json.dumps(entry.intent.get('name'))}: {why}",
                         "finished" if done else "fix the cause above, then run snapshot-check --repair again",
                         repaired=done))
    return out


def _missing_data(defn: SnapshotDef, layers: dict[str, external.Layer]) -> str | None:
    """Why a snapshot's data is gone, or None when every piece it needs is there."""
    if defn.domain is None:
        return None
    sources = external.disk_sources(defn.domain)
    for disk in defn.disks:
        if disk.snapshot not in (Location.INTERNAL, Location.EXTERNAL) or disk.name not in sources:
            continue
        path = sources[disk.name][0]
        if not os.path.exists(path):
            return f"image {path} of disk {disk.name} is missing"
        if disk.snapshot == Location.INTERNAL:
            layer = layers.get(path)
            if layer is not None and defn.name not in layer.internal:
                return f"image {path} of disk {disk.name} has no internal snapshot '{defn.name}'"
    if defn.memory == Location.EXTERNAL and defn.memory_file and not os.path.exists(defn.memory_file):
        return f"memory file {defn.memory_file} is missing"
    return None


def _import(ctx: Context, uuid: str, dom_def: DomainDef, tag: str, paths: list[str]) -> bool:
    """Record an internal snapshot found in the images as a root: state from whether it saved memory. A tag
    is a name the image's writer chose (a guest can write a raw disk's bytes): it passes the same checks as a
    name given to snapshot-create, or it is not imported."""

    try:
        check_name(tag)
    except libvirtError:
        return False
    info = {}
    for snap in images.info(paths[0], "qcow2", force_share=True, timeout=TIMEOUT).get("snapshots", []):
        if snap.get("name") == tag:
            info = snap
    sources = external.disk_sources(dom_def)
    holding = {t for t, (p, _f) in sources.items() if p in paths}
    if not holding:  # in an older layer only: the domain no longer runs on that image
        return False
    with_memory = int(info.get("vm-state-size", 0)) > 0
    defn = SnapshotDef(name=tag, description="imported by snapshot-check --repair: found in the images",
                       state=SnapshotState.RUNNING if with_memory else SnapshotState.SHUTOFF,
                       creation_time=int(info.get("date-sec", 0)),
                       memory=Location.INTERNAL if with_memory else Location.NO,
                       disks=[DiskSnapshot(t, Location.INTERNAL if t in holding else Location.NO)
                              for t in sources],
                       domain=dom_def.copy())
    tree = ctx.tree(uuid)
    moment = tree.add(Moment(tag))
    moments.attach(moment, defn)
    tree.link(moment, None)
    ctx.commit(uuid, tree)
    return True


def _orphans(ctx: Context, uuid: str, layers: dict[str, external.Layer], repair: bool) -> list[Drift]:
    """Files the ledger says virtsnap made for this domain that no definition reaches any more. No directory
    is scanned and no other domain's image is read: another domain's definition or ledger naming the file
    (a disk on it, an overlay on top of it) keeps it, judged from the store alone."""

    tree = ctx.tree(uuid)
    needed = set(layers) | {m for m in (moments.def_of(x).memory_file for x in tree.moments()) if m}
    for other, _name, xml in ctx.store.domains():
        if other != uuid:
            needed |= {p for p, _f in external.disk_sources(DomainDef.parse(xml, trusted=True)).values()}
    return ledger_orphans(ctx.store, uuid, needed, repair, keep=(tpm.PURPOSE, firmware.PURPOSE))


def ledger_orphans(store: MetadataStore, uuid: str, needed: set[str], repair: bool,
                   keep: tuple[str, ...] = ()) -> list[Drift]:
    """The orphaned-overlay drift of a domain, for every driver that records files in the ledger: each file
    the ledger says virtsnap made for `uuid` that is not in `needed`, nor under another domain's recorded
    overlay, nor of a purpose in `keep` (the domain's own while it exists). With `repair`, a file holding no
    data of its own goes through the ledger (identity checked); one that holds data is left in place."""
    needed = needed | {row.backing for row in store.ledger() if row.domain != uuid and row.backing}
    out = []
    for row in store.ledger(uuid):
        if row.path in needed or row.purpose in keep:
            continue
        if not ledger.matches(row):  # gone, or the name now leads to another file: not ours any more
            if repair:
                store.ledger_forget(row.path)
            continue
        empty = row.purpose == "memory" or not _has_own_data(row.path, row.format)
        if repair and empty:
            removed = ledger.remove(store, row)
            out.append(Drift("orphaned-overlay", row.path, "no definition reaches it", "removed" if removed
                             else "left in place: it changed since the check read it", repaired=removed))
        else:
            out.append(Drift("orphaned-overlay", row.path, "no definition reaches it" +
                             ("" if empty else f"; it holds data written on top of {row.backing}"),
                             "--repair removes it" if empty
                             else "left in place: it holds data; remove it by hand if it is not needed"))
    return out


def _has_own_data(path: str, fmt: str) -> bool:
    try:
        extents = json.loads(images.run(["map", "-U", "-f", fmt, "--output=json", "--", path], TIMEOUT))
    except (libvirtError, ValueError):
        return True
    return any(e.get("data") and e.get("depth") == 0 for e in extents)


def _io_errors(ctx: Context, uuid: str) -> list[Drift]:
    """Why the guest is paused on an I/O error: each disk whose io-status is not ok, with the free space left
    on its image's filesystem. A note, not drift: the metadata is fine and resuming is the user's call."""
    out = []
    with ctx.monitor(uuid) as mon:
        devices = mon.execute("query-block")
    for dev in devices:
        io_status = dev.get("io-status", "ok")
        if io_status == "ok":
            continue
        qdev = str(dev.get("qdev") or "")
        target = qdev.split("/")[3] if qdev.startswith("/machine/peripheral/") else qdev or str(dev.get("device"))
        path = str(((dev.get("inserted") or {}).get("image") or {}).get("filename") or "?")
        why = "no space left on the host filesystem" if io_status == "nospace" else "an I/O error"
        try:
            st = os.statvfs(os.path.dirname(path) or ".")
            free = f"; {st.f_bavail * st.f_frsize} bytes free there"
        except OSError:
            free = ""
        out.append(Drift("paused-io-error", f"disk {target}", f"the guest is paused: writing {path} failed with "
                         f"{why}{free}", "left paused: free space on that filesystem, then resume the domain",
                         drift=False))
    return out


def _process(ctx: Context, uuid: str, repair: bool) -> list[Drift]:
    """A QEMU left paused by an operation; a guest left frozen."""
    out = []
    status = ctx.status(uuid)
    if status in recovery.PAUSED_BY_US:
        if repair:
            with ctx.monitor(uuid) as mon:
                mon.execute("cont")
        out.append(Drift("paused-by-operation", "QEMU", f"the guest is paused in state '{status}', which only an "
                         "interrupted snapshot operation leaves", "resumed" if repair else "--repair resumes it",
                         repaired=repair))
    elif status in ("restore-vm", "inmigrate"):
        out.append(Drift("paused-by-operation", "QEMU", f"the guest is paused in state '{status}': a load of its "
                         "memory did not finish, so its memory is incomplete",
                         "not resumed (unsafe): revert to a snapshot again, or destroy the domain"))
    if status == "io-error":
        out.extend(_io_errors(ctx, uuid))
    if status in ("running", "paused") and recovery.thaw_if_frozen(ctx, uuid, thaw=False):
        if repair:
            recovery.thaw_if_frozen(ctx, uuid, thaw=True)
        out.append(Drift("guest-frozen", "guest file systems", "frozen (guest-fsfreeze-status), and no operation "
                         "is running", "thawed" if repair else "--repair thaws them", repaired=repair))
    return out
