"""Snapshot delete on the QEMU engine: internal tags removed (QMP's synchronous delete or qemu-img), external
snapshots merged away by the plan extdelete.py makes (block jobs while QEMU runs, qemu-img otherwise).

Data first, then one metadata commit, then the files no one needs any more: a crash leaves before or after.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from ... import failpoints
from ...conf.domain_xml import DomainDef
from ...conf.snapshot_xml import Location, SnapshotDef
from ...conf.tree import Moment, SnapshotTree
from ...errors import ErrorCode, ErrorDomain, error, libvirtError, protected_refusal
from ...flags import SnapshotDelete as D
from . import external, firmware, images, moments
from .domain import Disk, QemuDomain

if TYPE_CHECKING:
    from . import extdelete
    from .context import Context
    from .monitor import Monitor

ERR = ErrorDomain.QEMU


def snapshot_delete(ctx: Context, uuid: str, name: str, flags: int) -> None:
    with ctx.operation(uuid, ctx.domain_name(uuid)):
        if flags & D.FORCE:
            flags &= ~int(D.FORCE)
        else:  # api.py checked too; here it holds against another process protecting it meanwhile
            _refuse_protected(ctx, uuid, name, flags)
        delete(ctx, uuid, name, flags)


def _refuse_protected(ctx: Context, uuid: str, name: str, flags: int) -> None:
    protected = ctx.store.protected(uuid)
    if not protected:
        return
    moment = ctx.moment(ctx.tree(uuid), name)
    names = [] if flags & D.CHILDREN_ONLY else [name]
    if flags & (D.CHILDREN | D.CHILDREN_ONLY):
        names += [m.name for m in moment.visit_descendants()]
    hits = [n for n in names if n in protected]
    if hits:
        raise protected_refusal(hits)


def delete(ctx: Context, uuid: str, name: str, flags: int) -> None:
    """snapshot_delete under the lock (also how a recovery finishes a delete a dead process began).
    Data first (tags, merges), then one commit of definition, tree and journal, then the files no one
    needs any more are removed: a crash at any point leaves the before or the after state."""
    tree = ctx.tree(uuid)
    moment = ctx.moment(tree, name)
    victims = list(moment.visit_descendants()) if flags & (D.CHILDREN | D.CHILDREN_ONLY) else []
    if not flags & D.CHILDREN_ONLY:
        victims.append(moment)
    if flags & D.METADATA_ONLY:
        with ctx.atomic(uuid):  # forgotten: their files are the user's from now on, never removed by us
            tree.delete(moment, children=bool(flags & D.CHILDREN), children_only=bool(flags & D.CHILDREN_ONLY))
            ctx.commit(uuid, tree)
            ctx.store.ledger_release(uuid, [m.name for m in victims])
        return
    qdom = ctx.qemu_view(uuid)
    dom_def = ctx.domain_read(uuid)  # read only, here and by the plans (extdelete derives its model from it)
    ctx.check_domain_paths(dom_def)  # definitions stored before these checks existed: nothing rewritten
    for victim in victims:  # or removed inside virtsnap's own directories
        ctx.check_snapshot_paths(moments.def_of(victim))
    running = ctx.rt(uuid).pid() is not None
    behind = _tags_behind(qdom, [moments.def_of(v) for v in victims])
    reopen = _backing_nodes(ctx, uuid, qdom, behind) if behind and running else {}
    external_victims = [m for m in victims if moments.def_of(m).is_external]
    plans = [_plan_external_delete(ctx, uuid, tree, dom_def, m, set(victims), running)
             for m in external_victims]  # every plan is checked before anything changes
    if plans:
        from . import extdelete  # the delete path only (it needs dataclasses, which a cold start cannot afford)

        # one plan may serve several victims: its steps are checked once; a merge done cannot be taken back
        # when a later qemu-img step finds its target on a read-only mount
        extdelete.refuse_unwritable([s for p in {id(p): p for p in plans}.values() for s in p.steps], ERR)
    entry = ctx.store.journal_begin(uuid, "delete", {"name": name, "flags": flags})
    removed: dict[str, tuple[str, str]] = {}
    drop: set[str] = set()
    try:
        failpoints.hit("delete.journaled")
        with contextlib.ExitStack() as stack:
            mon = stack.enter_context(ctx.monitor(uuid)) if running else None
            # QEMU's snapshot-delete skips images without the tag: no need to ask it first.
            tags = (ctx.tags(qdom, None) if mon is None
                    else _tags_from_metadata(qdom, victims))
            nodes: dict[str, str] = {}  # the active nodes, looked up once for every victim
            for victim in victims:  # an external one holds a tag in the NVRAM image alone
                _delete_data(qdom, moments.def_of(victim), mon, tags, nodes)
            for path, tag, _target in behind:
                if (path, tag) in reopen:
                    assert mon is not None
                    _delete_in_backing_node(mon, reopen[(path, tag)], tag)
                else:  # no QEMU has it open
                    images.snapshot_delete(path, tag)
            for plan in plans:
                merged, dropped = _run_external_delete(ctx, uuid, tree, plan, mon)
                removed.update(merged)
                drop |= dropped
        failpoints.hit("delete.data-done")
    except BaseException:
        ctx.store.journal_end(entry)
        raise
    # Files to remove once the metadata no longer names them: merged or rebased-away images virtsnap
    # made, and the memory files of the deleted snapshots (a memory file serves its snapshot alone).
    unlink = sorted(drop)  # the plan removes only files virtsnap made, never the user's own base image
    unlink += sorted(m for m in (moments.def_of(v).memory_file for v in external_victims) if m)
    with ctx.atomic(uuid):  # the commit point
        if removed:
            repoint(ctx, uuid, tree, removed)
        tree.delete(moment, children=bool(flags & D.CHILDREN), children_only=bool(flags & D.CHILDREN_ONLY))
        ctx.commit(uuid, tree)
        if unlink:
            ctx.store.journal_step(entry, "committed", unlink=unlink)
        else:
            ctx.store.journal_end(entry)
    failpoints.hit("delete.committed")
    if unlink:
        ctx.remove_unneeded(uuid, unlink)
        ctx.store.journal_end(entry)


def _plan_external_delete(ctx: Context, uuid: str, tree: SnapshotTree, dom_def: DomainDef, victim: Moment,
                          going: set[Moment], running: bool) -> extdelete.Plan:
    """How to drop the external snapshots of this delete, decided before any change (extdelete.py): one
    plan for every external snapshot in `going`, leaf first, on a model of the image files and, while the
    domain runs, of QEMU's block graph. Each victim's call returns that same plan, which runs once."""
    from . import extdelete  # the delete path only (it needs dataclasses, which a cold start cannot afford)

    key = (uuid, frozenset(m.name for m in going))
    plan = extdelete.operation_plan(key)
    if plan is not None:
        return plan
    snapshots = []
    for moment in tree.moments():
        defn = moments.def_of(moment)
        disks = [d for d in defn.disks if d.snapshot == Location.EXTERNAL]
        snapshots.append(extdelete.Snapshot(moment.name, defn.domain, [d.name for d in disks],
                                            [d.source for d in disks if d.source], moment in going))

    def depth(moment: Moment) -> int:
        n = 0
        while moment.parent is not None:
            n, moment = n + 1, moment.parent
        return n

    order = sorted((m for m in going if moments.def_of(m).is_external), key=lambda m: (-depth(m), m.name))
    view = None
    if running:
        with ctx.monitor(uuid) as mon:
            view = extdelete.qemu_view(mon)
    plan = extdelete.plan_delete(dom_def, snapshots, [m.name for m in order], view, ctx.ours(uuid))
    extdelete.remember_plan(key, plan)
    return plan


def _run_external_delete(ctx: Context, uuid: str, tree: SnapshotTree, plan: extdelete.Plan,
                         mon: Monitor | None) -> tuple[dict[str, tuple[str, str]], set[str]]:
    """Carry out the plan once (whichever victim's call comes first): block jobs and qemu-img in order, QEMU
    lets go of files that left its graph. Returns the merged files (old path -> (the file it was merged
    into, its format)) for the definitions to follow at the commit, and the files to remove after it."""
    from . import extdelete  # the delete path only (it needs dataclasses, which a cold start cannot afford)

    if plan.done:
        return {}, set()
    plan.done = True
    done: list[extdelete.Step] = []
    try:
        for step in plan.steps:
            if step.how != "qemu-img":
                assert mon is not None
                if step.how == "stream":
                    extdelete.block_stream(mon, step, extdelete.job_id("stream"))
                else:
                    block_commit(mon, step.image, step.base, step.target)
                extdelete.release_nodes(mon, plan.released)
            else:
                extdelete.image_step(step)  # qemu-img, shared with the libvirt+ driver
            external.forget_chains()
            done.append(step)
            failpoints.hit("external-delete.step-done")
    except BaseException:
        # A merge cannot be taken back, but every image still reads as before (a merged image is kept):
        # the definitions follow the merges done so far, so that they name what QEMU and the files use.
        moved = extdelete.moved_by(done)
        if moved:
            repoint(ctx, uuid, tree, moved)
            ctx.commit(uuid, tree)
        raise
    return dict(plan.moved), set(plan.remove)


def block_commit(mon: Monitor, top: str, base: str, target: str) -> None:
    """Merge `top` into `base` inside QEMU. The image the guest writes: active commit, READY, then
    job-complete pivots the disk to `base`. An image inside the chain: top-node/base-node, and QEMU
    completes it by itself, rewriting the backing of the image above."""
    from . import extdelete  # the delete path only (it needs dataclasses, which a cold start cannot afford)

    nodes = extdelete.format_nodes(mon)
    root = mon.active_nodes().get(target)
    if top not in nodes or base not in nodes or root is None:
        raise error(ErrorCode.INTERNAL_ERROR, ERR, f"QEMU does not have {top} and {base} open for disk '{target}'")
    job = extdelete.job_id("commit")
    if nodes[top] == root:
        mon.execute("block-commit", {"job-id": job, "device": root, "base-node": nodes[base],
                                     "auto-dismiss": False})
        failpoints.hit("delete.job-started")
        event = mon.wait_event(lambda ev: ev.get("event") == "JOB_STATUS_CHANGE"
                               and ev["data"].get("id") == job
                               and ev["data"].get("status") in ("ready", "aborting", "concluded"), 600)
        if event["data"]["status"] == "ready":
            mon.execute("job-complete", {"id": job})
    else:
        mon.execute("block-commit", {"job-id": job, "device": root, "top-node": nodes[top],
                                     "base-node": nodes[base], "auto-dismiss": False})
        failpoints.hit("delete.job-started")
    mon.wait_job(job)


def repoint(ctx: Context, uuid: str, tree: SnapshotTree, moved: dict[str, tuple[str, str]]) -> None:
    """Every definition that named a merged file now names the file it was merged into."""
    dom_def = ctx.domain_def(uuid)
    ctx.store.put_domain(uuid, dom_def.name, moments.stored(_moved(dom_def, moved)))
    for moment in tree.moments():
        defn = moments.def_of(moment)
        if defn.domain is not None:
            defn.domain = _moved(defn.domain, moved)
            tree.touch(moment)


def _delete_data(qdom: QemuDomain, defn: SnapshotDef, mon: Monitor | None,
                 tags: dict[str, set[str]], nodes: dict[str, str]) -> None:
    """Remove the snapshot's tag from every current disk image that holds it (remove_tag). `nodes`: the active
    node of each disk, filled on first use (from the monitor's block memo, else QEMU) and reused by the
    operation's later victims (internal deletes do not change the block graph)."""
    holders = [d for d in qdom.disks
               if (d.device == "nvram" or any(x.name == d.target and x.snapshot == Location.INTERNAL
                                              for x in defn.disks))
               and defn.name in tags.get(d.target, set()) and d.path]
    remove_tag(mon, holders, defn.name, nodes)
    for disk in holders:
        tags[disk.target].discard(defn.name)


def remove_tag(mon: Monitor | None, disks: list[Disk], tag: str, nodes: dict[str, str]) -> None:
    """Remove the internal snapshot `tag` from these disks' current images: qemu-img's while QEMU does not run
    (mon None); else one blockdev-snapshot-delete-internal-sync per image, all sent in one round trip. QEMU runs
    each to its end in turn, in its main loop, as its snapshot-delete job would, without the job's events and
    dismissal. An image that no longer holds the tag (a delete that died after removing it) is done already.
    If an image fails, the others have still lost the tag and the snapshot's metadata stays: deleting it again
    finishes the work. `nodes`: the disks' active nodes, filled here on first use (see _delete_data)."""
    if not disks:
        return
    if mon is not None:
        if not nodes:
            nodes.update(mon.active_nodes())
        results = mon.exchange([("blockdev-snapshot-delete-internal-sync",
                                 {"device": nodes[d.target], "name": tag}) for d in disks])
        failed = {d.target: r for d, r in zip(disks, results, strict=True) if isinstance(r, libvirtError)}
        if failed:
            _unless_gone(mon, tag, nodes, failed)
    else:
        for disk in disks:
            assert disk.path is not None
            images.snapshot_delete(disk.path, tag)


def _unless_gone(mon: Monitor, tag: str, nodes: dict[str, str], failed: dict[str, libvirtError]) -> None:
    """Raise the first failure of an image that still holds `tag`, asking QEMU afresh (query-block, not the
    block memo): a failed image counts as done only when the disk's active node is the one the command named
    and that node has no such tag. A node that is not the disk's active one any more is an error, and the
    memo is forgotten so that the next operation asks QEMU."""
    devices = mon.block_devices()
    for target, err in failed.items():
        inserted = devices.get(target) or {}
        held = {snap["name"] for snap in (inserted.get("image") or {}).get("snapshots", [])}
        if inserted.get("node-name") != nodes[target] or tag in held:
            if inserted.get("node-name") != nodes[target]:
                mon.forget_nodes()
            raise error(ErrorCode.OPERATION_FAILED, ERR, f"cannot delete internal snapshot '{tag}' from disk "
                        f"'{target}': {err.get_str2()}") from err


def _tags_behind(qdom: QemuDomain, defns: list[SnapshotDef]) -> list[tuple[str, str, str]]:
    """(image, tag, disk target) of each internal snapshot whose tag lies in an image that is no longer its
    disk's current one: the disk's source when the snapshot was taken, with an external snapshot's overlay (or a
    revert) in front of it since. Neither QEMU's snapshot-delete nor the current images reach it; a tag already
    gone is skipped (a recovery runs this again)."""
    current = {d.target: d.path for d in qdom.disks}
    found: list[tuple[str, str, str]] = []
    for defn in defns:
        sources = external.disk_sources(defn.domain) if defn.domain is not None else {}
        for disk in defn.disks:
            path, fmt = sources.get(disk.name, (None, None))
            if disk.snapshot != Location.INTERNAL or path is None or fmt != "qcow2" or path == current.get(disk.name):
                continue
            if os.path.isfile(path) and defn.name in images.snapshots(path, force_share=True):
                found.append((path, defn.name, disk.name))
    return list(dict.fromkeys(found))


def _backing_nodes(ctx: Context, uuid: str, qdom: QemuDomain,
                   behind: list[tuple[str, str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(image, tag) -> the blockdev-reopen options of the node the running QEMU has that image open as (a
    backing file now: read-only, so QEMU's snapshot-delete skips it, and its lock keeps qemu-img out). Such a
    node is reopened read-write for the delete, read-only again after, with the options it was opened with
    (argv.block_options of its disk): a node virtsnap named (the disk's image at start, an overlay it added).
    A backing file QEMU opened by itself (at a later start) cannot be reopened by QEMU's blockdev-reopen, so
    its tag's delete is refused before anything changes. Images QEMU does not have open are qemu-img's."""
    with ctx.monitor(uuid) as mon:
        nodes = mon.execute("query-named-block-nodes")
        graph = mon.execute("x-debug-query-block-graph") if any(n.get("backing_file") for n in nodes) else {}
    by_name = {str(n["node-name"]): n for n in nodes}
    ids = {g["id"]: str(g["name"]) for g in graph.get("nodes", [])}
    backing = {ids.get(e["parent"]): ids.get(e["child"]) for e in graph.get("edges", []) if e["name"] == "backing"}
    found: dict[tuple[str, str], dict[str, Any]] = {}
    refused = []
    from .argv import block_options

    disks = {d.target: d for d in qdom.disks}
    for path, tag, target in behind:
        holders = [str(n["node-name"]) for n in nodes
                   if n["drv"] == "qcow2" and os.path.realpath(str(n["file"])) == os.path.realpath(path)]
        if not holders:
            continue
        node = holders[0]
        file_node = by_name.get(f"{node}-file")
        if len(holders) > 1 or node.startswith("#") or file_node is None or file_node["drv"] != "file" or \
                (by_name[node].get("backing_file") and not backing.get(node)):
            refused.append((path, tag))
            continue
        options: dict[str, Any] = {"driver": "qcow2", "node-name": node, "file": f"{node}-file"}
        if by_name[node].get("backing_file"):
            options["backing"] = backing[node]
        if target in disks:
            options.update(block_options(disks[target])[1])
        found[(path, tag)] = options
    if refused:
        raise error(ErrorCode.OPERATION_INVALID, ERR,
                    "; ".join(f"internal snapshot '{tag}' is stored in {path}" for path, tag in refused)
                    + ", which the running QEMU opened by itself as a backing file and cannot reopen to write: "
                    "delete it while the domain is shut off; nothing was changed")
    return found


def _delete_in_backing_node(mon: Monitor, options: dict[str, Any], tag: str) -> None:
    """QEMU's snapshot-delete on a backing node, reopened read-write for it and read-only again after."""
    mon.execute("blockdev-reopen", {"options": [{**options, "read-only": False}]})
    try:
        job = f"delete-{os.getpid()}-backing"
        mon.execute("snapshot-delete", {"job-id": job, "tag": tag, "devices": [options["node-name"]]})
        mon.wait_job(job)
    finally:
        mon.execute("blockdev-reopen", {"options": [{**options, "read-only": True}]})


def _moved(domain: DomainDef, moved: dict[str, tuple[str, str]]) -> DomainDef:
    sources = external.disk_sources(domain)
    changes = {target: moved[path] for target, (path, _) in sources.items() if path in moved}
    if not changes:
        return domain
    copy = external.with_sources(domain, {t: p for t, (p, _) in changes.items()})
    for disk in (copy.node.find("devices") or copy.node).findall("disk"):
        target = disk.find("target")
        dev = target.get("dev") if target is not None else None
        driver = disk.find("driver")
        if dev in changes and driver is not None:
            driver.attrs["type"] = changes[dev][1]
    return copy


def _tags_from_metadata(qdom: QemuDomain, victims: list[Moment]) -> dict[str, set[str]]:
    """Which disks should hold which tags, according to the metadata alone."""
    tags: dict[str, set[str]] = {d.target: set() for d in qdom.disks}
    for victim in victims:
        for disk in moments.def_of(victim).disks:
            if disk.snapshot == Location.INTERNAL and disk.name in tags:
                tags[disk.name].add(victim.name)
        if firmware.NVRAM_TARGET in tags:  # every snapshot, internal or external, tags the NVRAM image
            tags[firmware.NVRAM_TARGET].add(victim.name)
    return tags
