"""snapshot-check for the QEMU driver: the metadata compared with the images and the QEMU process.

Drift found (each a `Drift`): internal snapshots in images but not in the metadata, snapshots whose data is
gone, overlay files no definition reaches, backing chains that do not open, a QEMU left paused by an
operation, a guest left with frozen file systems, an unfinished operation the journal could not finish.
`repair` fixes what is safe (untracked snapshots imported as roots, lost ones marked, the guest thawed and
resumed, empty or virtsnap-made orphans removed, the journal retried) and explains the rest.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ...conf.domain_xml import DomainDef
from ...conf.snapshot_xml import DiskSnapshot, Location, SnapshotDef, SnapshotState
from ...conf.tree import Moment
from ...errors import libvirtError
from ..base import Drift
from . import external, images, recovery

if TYPE_CHECKING:
    from .driver import QemuDriver

QCOW2_MAGIC = b"QFI\xfb"


def check(drv: QemuDriver, uuid: str, repair: bool) -> list[Drift]:
    """Caller holds the domain's lock (and the journal was replayed when it took it)."""
    from .driver import _def_of, _files_we_made

    found: list[Drift] = []
    found += _journal(drv, uuid, repair)
    dom_def = drv._def(uuid)
    tree = drv._tree(uuid)
    lost = drv.store.lost(uuid)
    roots: list[tuple[str, DomainDef]] = [("the domain", dom_def)]
    roots += [(f"snapshot '{m.name}'", d) for m, d in ((m, _def_of(m).domain) for m in tree.moments()) if d]
    external.forget_chains()
    layers: dict[str, external.Layer] = {}  # every image reachable from a definition
    for owner, root in roots:
        for target, (path, _fmt) in external.disk_sources(root).items():
            try:
                for layer in external.chain(path):
                    layers[layer.path] = layer
            except libvirtError as exc:
                found.append(Drift("broken-chain", path, f"disk {target} of {owner}: {exc.get_error_message()}",
                                   "restore the image or its backing files; nothing is changed automatically"))
    # Internal snapshots: which images should hold which tags, and which tags the images hold.
    for moment in tree.moments():
        defn = _def_of(moment)
        if moment.name in lost:
            found.append(Drift("marked-lost", moment.name, lost[moment.name],
                               "kept on record; delete it with snapshot-delete --metadata", drift=False))
            continue
        problem = _missing_data(defn, layers)
        if problem:
            if repair:
                drv.store.mark_lost(uuid, moment.name, problem)
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
        if repair:
            fixed = _import(drv, uuid, dom_def, tag, paths)
        found.append(Drift("untracked-snapshot", tag, f"internal snapshot in {', '.join(sorted(paths))} has no "
                           "metadata", "imported as a root snapshot" if fixed else "--repair imports it as a root",
                           repaired=fixed))
    found += _orphans(drv, uuid, layers, _files_we_made(tree), repair)
    found += _process(drv, uuid, repair)
    try:
        tree.check_invariants()
    except (AssertionError, ValueError) as exc:
        found.append(Drift("tree", "metadata", str(exc), "report this: the store's tree breaks an invariant"))
    return found


def _journal(drv: QemuDriver, uuid: str, repair: bool) -> list[Drift]:
    entries = drv.store.journal_unfinished(uuid)
    if entries and repair:
        for entry in entries:
            drv.recovery_errors.pop(entry.id, None)
        recovery.recover(drv, uuid)
        left = {e.id for e in drv.store.journal_unfinished(uuid)}
    else:
        left = {e.id for e in entries}
    out = []
    for entry in entries:
        why = drv.recovery_errors.get(entry.id, "not finished yet")
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


def _import(drv: QemuDriver, uuid: str, dom_def: DomainDef, tag: str, paths: list[str]) -> bool:
    """Record an internal snapshot found in the images as a root: state from whether it saved memory."""
    from .driver import _attach

    info = {}
    for snap in images.info(paths[0], force_share=True).get("snapshots", []):
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
    tree = drv._tree(uuid)
    moment = tree.add(Moment(tag))
    _attach(moment, defn)
    tree.link(moment, None)
    drv._commit(uuid, tree)
    return True


def _orphans(drv: QemuDriver, uuid: str, layers: dict[str, external.Layer], ours: set[str],
             repair: bool) -> list[Drift]:
    """qcow2 files beside the domain's images that back onto them (or that a revert made) and that no
    definition of any domain reaches."""
    from .driver import _def_of, _snapshot_domains

    needed = set(layers)
    for other, _name, xml in drv.store.domains():
        if other != uuid:
            doms = [DomainDef.parse(xml), *_snapshot_domains(drv._tree(other))]
            with contextlib.suppress(libvirtError):
                needed |= external.needed_files(doms)
    memory = {_def_of(m).memory_file for m in drv._tree(uuid).moments()}
    out = []
    for directory in sorted({str(Path(p).parent) for p in layers}):
        with contextlib.suppress(OSError):
            names = sorted(os.listdir(directory))
        for name in names:
            path = os.path.join(directory, name)
            if path in needed or path in memory or not os.path.isfile(path) or not _is_qcow2(path):
                continue
            try:
                top = external.chain(path)[0]
            except libvirtError:
                continue
            if top.backing not in layers and not external.is_revert_overlay(path):
                continue
            empty = not _has_own_data(path)
            if repair and (empty or external.is_revert_overlay(path) or path in ours):
                os.unlink(path)
                out.append(Drift("orphaned-overlay", path, "no definition reaches it", "removed", repaired=True))
            else:
                out.append(Drift("orphaned-overlay", path, "no definition reaches it" +
                                 ("" if empty else "; it holds data written on top of " + str(top.backing)),
                                 "--repair removes it" if empty or external.is_revert_overlay(path)
                                 else "left in place: it holds data; remove it by hand if it is not needed"))
    return out


def _is_qcow2(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == QCOW2_MAGIC
    except OSError:
        return False


def _has_own_data(path: str) -> bool:
    try:
        extents = json.loads(images.run(["map", "-U", "--output=json", path]))
    except (libvirtError, ValueError):
        return True
    return any(e.get("data") and e.get("depth") == 0 for e in extents)


def _process(drv: QemuDriver, uuid: str, repair: bool) -> list[Drift]:
    """A QEMU left paused by an operation; a guest left frozen."""
    out = []
    status = drv._status(uuid)
    if status in recovery.PAUSED_BY_US:
        if repair:
            with drv._monitor(uuid) as mon:
                mon.execute("cont")
        out.append(Drift("paused-by-operation", "QEMU", f"the guest is paused in state '{status}', which only an "
                         "interrupted snapshot operation leaves", "resumed" if repair else "--repair resumes it",
                         repaired=repair))
    elif status in ("restore-vm", "inmigrate"):
        out.append(Drift("paused-by-operation", "QEMU", f"the guest is paused in state '{status}': a load of its "
                         "memory did not finish, so its memory is incomplete",
                         "not resumed (unsafe): revert to a snapshot again, or destroy the domain"))
    if status in ("running", "paused") and recovery.thaw_if_frozen(drv, uuid, thaw=False):
        if repair:
            recovery.thaw_if_frozen(drv, uuid, thaw=True)
        out.append(Drift("guest-frozen", "guest file systems", "frozen (guest-fsfreeze-status), and no operation "
                         "is running", "thawed" if repair else "--repair thaws them", repaired=repair))
    return out
