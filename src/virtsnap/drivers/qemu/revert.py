"""Snapshot revert on the QEMU engine: internal (snapshot-load into the running QEMU, or qemu-img apply) and
external (fresh overlays on the snapshot's images, memory fed back by an incoming migration).

A load cannot stop half way, so interrupts wait; a failed load stops the domain and says so.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from ... import failpoints
from ...conf.domain_xml import DomainDef
from ...conf.snapshot_xml import Location, SnapshotDef, SnapshotState
from ...conf.tree import Moment, SnapshotTree
from ...errors import ErrorCode, ErrorDomain, error, libvirtError
from ...flags import SnapshotRevert as R
from ...progress import DeferredInterrupt
from . import external, firmware, images, lifecycle, migration, moments
from .domain import QemuDomain
from .process import kill

if TYPE_CHECKING:
    from .context import Context
    from .monitor import Monitor

ERR = ErrorDomain.QEMU


def snapshot_revert(ctx: Context, uuid: str, name: str, flags: int) -> None:
    """Revert; validated first (tags present in every image). A failed load never leaves QEMU paused
    in restore-vm: it is stopped and the error says so."""
    with ctx.operation(uuid, ctx.domain_def(uuid).name):
        revert(ctx, uuid, name, flags)


def revert(ctx: Context, uuid: str, name: str, flags: int) -> None:
    """snapshot_revert under the lock (also how a recovery finishes a revert a dead process began)."""
    dom_def = ctx.domain_def(uuid)
    tree = ctx.tree(uuid)
    moment = ctx.moment(tree, name)
    defn = moments.def_of(moment)
    if defn.domain is None:
        raise error(ErrorCode.SNAPSHOT_REVERT_RISKY, ERR,
                    f"snapshot '{name}' lacks domain '{dom_def.name}' rollback info")
    lost = ctx.store.lost(uuid).get(name)
    if lost:
        raise error(ErrorCode.OPERATION_INVALID, ERR, f"snapshot '{name}' was found lost by snapshot-check "
                    f"({lost}); delete it with snapshot-delete --metadata")
    ctx.check_snapshot_paths(defn)  # a definition stored before these checks existed
    if defn.is_external:
        _revert_external(ctx, uuid, tree, moment, defn, dom_def, flags)
        return
    target = QemuDomain.from_def(defn.domain)
    targets = moments.internal_targets(defn, target)
    _refuse_rewriting_frozen_images(tree, name, target, targets)
    running = ctx.rt(uuid).pid() is not None
    online = defn.state.is_online
    if running and not online and flags & (R.RUNNING | R.PAUSED) and not flags & R.FORCE:
        raise error(ErrorCode.SNAPSHOT_REVERT_RISKY, ERR, "must respawn guest to start inactive snapshot")
    same_config = moments.stored(defn.domain) == moments.stored(dom_def)
    with contextlib.ExitStack() as stack:
        mon = stack.enter_context(ctx.monitor(uuid)) if running and same_config else None
        _revert_locked(ctx, uuid, tree, moment, defn, dom_def, target, targets, running, same_config,
                            flags, mon)


def frozen_images(tree: SnapshotTree) -> dict[str, str]:
    """Image (real path) -> the external snapshot whose disk state it holds: an external disk snapshot puts an
    overlay on the disk's image, and from then on that image's content is the snapshot's disk."""
    frozen: dict[str, str] = {}
    for moment in tree.moments():
        if not moment.external:  # from the store's index: only external snapshots are parsed
            continue
        defn = moments.def_of(moment)
        made = {disk.name for disk in defn.disks if disk.snapshot == Location.EXTERNAL}
        if defn.domain is None or not made:
            continue
        for disk in QemuDomain.from_def(defn.domain).disks:
            if disk.target in made and disk.path:
                frozen.setdefault(os.path.realpath(disk.path), moment.name)
    return frozen


def _refuse_rewriting_frozen_images(tree: SnapshotTree, name: str, target: QemuDomain, targets: list[str]) -> None:
    """An internal revert rewrites its images in place (qemu-img snapshot -a, or snapshot-load and a guest
    running on them). An image that is the frozen backing file of an external snapshot holds that snapshot's
    disk: rewriting it would silently replace the external snapshot's data. Refused before any change."""
    frozen = frozen_images(tree)
    written = [(disk.target, disk.path, os.path.realpath(disk.path)) for disk in target.disks
               if disk.target in targets and disk.path]
    hits = [(dev, path, frozen[real]) for dev, path, real in written if real in frozen]
    if hits:
        items = "; ".join(f"image {path} of disk '{dev}' holds the disk of external snapshot '{owner}'"
                          for dev, path, owner in hits)
        raise error(ErrorCode.OPERATION_INVALID, ERR,
                    f"reverting to internal snapshot '{name}' would rewrite images that external snapshots read: "
                    f"{items}; nothing was changed (delete those external snapshots first, which merges them)")


def _revert_locked(ctx: Context, uuid: str, tree: SnapshotTree, moment: Moment, defn: SnapshotDef,
                   dom_def: DomainDef, target: QemuDomain, targets: list[str], running: bool,
                   same_config: bool, flags: int, mon: Monitor | None) -> None:
    assert defn.domain is not None
    name, online = defn.name, defn.state.is_online
    for disk in target.disks:
        if disk.target in targets and disk.path and not os.path.exists(disk.path):
            raise error(ErrorCode.OPERATION_INVALID, ERR, f"image {disk.path} of disk '{disk.target}' is missing")
    tags = ctx.tags(target, mon)
    for disk in target.disks:
        if disk.target in targets and name not in tags.get(disk.target, set()):
            raise error(ErrorCode.OPERATION_INVALID, ERR,
                        f"image {disk.path} of disk '{disk.target}' has no snapshot '{name}'")
    clash = moments.id_clash(target, targets, name) if online else None  # snapshot-load looks IDs up first
    if clash is not None:
        raise error(ErrorCode.OPERATION_UNSUPPORTED, ERR,
                    f"snapshot name '{name}' is also the ID of snapshot '{clash[1]}' in {clash[0]}, and QEMU "
                    f"would load '{clash[1]}' instead; nothing was changed")
    want_paused = bool(flags & R.PAUSED) or (defn.state == SnapshotState.PAUSED and not flags & R.RUNNING)
    # A load cannot stop half way (guest memory would be neither state): Ctrl-C waits for the end.
    with DeferredInterrupt():
        entry = ctx.store.journal_begin(uuid, "revert", {"name": name, "flags": flags})
        try:
            failpoints.hit("revert.journaled")
            if online:
                if running and not same_config:
                    kill(ctx.rt(uuid))
                    running = False
                if not running:
                    lifecycle.boot(ctx, uuid, defn.domain, paused=True)
                if mon is not None:
                    _load(ctx, mon, uuid, target, targets, name, want_paused)
                else:
                    with ctx.monitor(uuid) as fresh:
                        _load(ctx, fresh, uuid, target, targets, name, want_paused)
            else:
                if running:
                    kill(ctx.rt(uuid))
                for disk in target.disks:
                    if disk.target in targets and disk.path:
                        images.snapshot_apply(disk.path, name)
                if flags & (R.RUNNING | R.PAUSED):
                    lifecycle.boot(ctx, uuid, defn.domain, paused=bool(flags & R.PAUSED))
            failpoints.hit("revert.data-done")
        except BaseException:
            ctx.store.journal_end(entry)
            raise
        with ctx.atomic(uuid):  # the commit point
            if not same_config:
                ctx.store.put_domain(uuid, dom_def.name, moments.stored(defn.domain))
            tree.set_current(moment)
            ctx.commit(uuid, tree)
            ctx.store.journal_end(entry)


def _revert_external(ctx: Context, uuid: str, tree: SnapshotTree, moment: Moment, defn: SnapshotDef,
                     dom_def: DomainDef, flags: int) -> None:
    """Revert to an external snapshot (libvirt 9.0 refuses): fresh overlays on the snapshot's images, the
    domain switched to them; an overlay no snapshot needs any more is removed, a needed one never."""
    assert defn.domain is not None
    with_memory = defn.memory == Location.EXTERNAL and defn.state.is_online
    if with_memory and not (defn.memory_file and os.path.exists(defn.memory_file)):
        raise error(ErrorCode.OPERATION_INVALID, ERR,
                    f"memory file {defn.memory_file} of snapshot '{defn.name}' is missing")
    running = ctx.rt(uuid).pid() is not None
    if running and not with_memory and flags & (R.RUNNING | R.PAUSED) and not flags & R.FORCE:
        raise error(ErrorCode.SNAPSHOT_REVERT_RISKY, ERR, "must respawn guest to start inactive snapshot")
    bases = external.disk_sources(defn.domain)
    news: dict[str, str] = {}
    for disk in defn.disks:
        if disk.snapshot != Location.EXTERNAL:
            continue
        base = bases.get(disk.name)
        if base is None or not os.path.exists(base[0]):
            raise error(ErrorCode.OPERATION_INVALID, ERR,
                        f"image {base[0] if base else '?'} of disk '{disk.name}' for snapshot '{defn.name}' is "
                        "missing")
        external.chain(*base)  # the whole backing chain must open
        news[disk.name] = external.revert_overlay_name(base[0], defn.name)
    old_tops = sorted(path for path, _ in external.disk_sources(dom_def).values())
    nvram = firmware.state_image(QemuDomain.from_def(defn.domain))
    if nvram is not None and nvram.path and defn.name not in images.snapshots(nvram.path, force_share=True):
        raise error(ErrorCode.OPERATION_INVALID, ERR, f"NVRAM {nvram.path} has no snapshot '{defn.name}'")
    with DeferredInterrupt():
        entry = ctx.store.journal_begin(uuid, "revert-external", {"name": defn.name, "flags": flags,
                                                                   "overlays": news, "old_tops": old_tops})
        try:
            if running:
                kill(ctx.rt(uuid))
            failpoints.hit("revert-external.stopped")
            if nvram is not None and nvram.path:  # the variables of the snapshot's instant
                images.snapshot_apply(nvram.path, defn.name)
            for target, path in news.items():
                base_path, base_fmt = bases[target]
                external.create_overlay(path, base_path, base_fmt, False, target,
                                        ctx.record_file(uuid, defn.name, "revert-overlay", path, "qcow2",
                                                          base_path, base_fmt))
            failpoints.hit("revert-external.overlays-created")
        except BaseException:
            ctx.remove_ours(uuid, list(news.values()), defn.name)
            ctx.store.journal_end(entry)
            raise
        new_def = external.with_sources(defn.domain, news)
        with ctx.atomic(uuid):  # the commit point; what follows is finished by a recovery if need be
            ctx.store.put_domain(uuid, dom_def.name, moments.stored(new_def))
            tree.set_current(moment)
            ctx.commit(uuid, tree)
            ctx.store.journal_step(entry, "committed")
        failpoints.hit("revert-external.committed")
        finish_revert_external(ctx, uuid, defn.name, flags, old_tops)
        ctx.store.journal_end(entry)


def finish_revert_external(ctx: Context, uuid: str, name: str, flags: int, old_tops: list[str]) -> None:
    """After a revert's commit: collect the old overlays no one needs, then run the domain as asked
    (from the memory file when the snapshot has one). Safe to run again after a crash."""
    tree = ctx.tree(uuid)
    new_def = ctx.domain_def(uuid)
    ctx.collect(uuid, tree, new_def, set(old_tops))
    defn = moments.def_of(ctx.moment(tree, name))
    with_memory = defn.memory == Location.EXTERNAL and defn.state.is_online
    paused = bool(flags & R.PAUSED) or (defn.state == SnapshotState.PAUSED and not flags & R.RUNNING)
    status = ctx.status(uuid)
    if status not in (None, "running", "paused"):  # a start a dead process left half done
        kill(ctx.rt(uuid))
        status = None
    if status is None:
        if with_memory:
            assert defn.memory_file is not None
            _start_from_memory(ctx, uuid, new_def, defn.memory_file, paused)
        elif flags & (R.RUNNING | R.PAUSED):
            lifecycle.boot(ctx, uuid, new_def, paused=bool(flags & R.PAUSED))
    elif status == "paused" and not paused and (with_memory or flags & R.RUNNING):
        with ctx.monitor(uuid) as mon:
            mon.execute("cont")


def _start_from_memory(ctx: Context, uuid: str, defn: DomainDef, memory_file: str, paused: bool) -> None:
    """Start QEMU waiting for an incoming migration and feed it the memory file; stopped again if it fails."""
    rt = ctx.rt(uuid)
    lifecycle.boot(ctx, uuid, defn, paused=True, incoming=True)
    try:
        fd = os.open(memory_file, os.O_RDONLY | os.O_CLOEXEC)
        with ctx.monitor(uuid, shared=True) as mon:
            try:
                mon.send_fd(fd, "virtsnap-memory")
            finally:
                os.close(fd)
            mon.execute("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
            mon.execute("migrate-incoming", {"uri": "fd:virtsnap-memory"})
            migration.wait_migration(mon)
            if not paused:
                mon.execute("cont")
    except BaseException:
        kill(rt)
        raise


def _load(ctx: Context, mon: Monitor, uuid: str, target: QemuDomain, targets: list[str], name: str,
          paused: bool) -> None:
    active = mon.active_nodes()
    nodes = [active[d.target] for d in target.disks if d.target in targets]
    job = f"load-{os.getpid()}"
    try:
        mon.execute("stop")
        mon.execute("snapshot-load", {"job-id": job, "tag": name, "vmstate": nodes[0], "devices": nodes})
        failpoints.hit("revert.load-started")
        mon.wait_job(job)
    except libvirtError as exc:
        kill(ctx.rt(uuid))
        raise error(ErrorCode.OPERATION_FAILED, ERR,
                    f"loading snapshot '{name}' failed and the domain was stopped: {exc.get_error_message()}"
                    ) from exc
    mon.execute("stop" if paused else "cont")
