"""Snapshot creation on the QEMU engine: redefine, internal (snapshot-save or qemu-img) and external (overlays
switched in one transaction, optionally with guest memory migrated to a file, quiesced through the agent).

Each call journals its intent before its first change and commits metadata in one transaction (context.py).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import failpoints
from ...conf.domain_xml import DomainDef
from ...conf.snapshot_xml import (
    Location,
    ParseMode,
    SnapshotDef,
    SnapshotState,
    SourceType,
    align_disks,
    format_snapshot,
    parse_snapshot,
)
from ...conf.tree import SnapshotTree
from ...errors import ErrorCode, ErrorDomain, error, libvirtError
from ...flags import DomainState
from ...flags import SnapshotCreate as C
from ...progress import DeferredInterrupt, report
from . import external, firmware, images, lifecycle, migration, moments
from .domain import QemuDomain
from .process import kill

if TYPE_CHECKING:
    from .agent import Agent
    from .context import Context
    from .monitor import Monitor

ERR = ErrorDomain.QEMU


def snapshot_create(ctx: Context, uuid: str, xml: str, flags: int) -> str:
    """Create or redefine. On failure nothing is left behind: no tag in any image, no metadata."""
    dom_def = ctx.domain_def(uuid)
    if flags & C.VALIDATE:
        from ...conf import validate as schema  # RelaxNG: only when asked for

        schema.validate_snapshot(xml)
    redefine = bool(flags & C.REDEFINE)
    defn = parse_snapshot(xml, ParseMode.REDEFINE if redefine else ParseMode.CREATE)
    networked = [d.name for d in defn.disks if d.source_type == SourceType.NETWORK]
    if networked:  # its revert and delete would have no image to work on
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    f"network disk snapshots are not supported by virtsnap's QEMU driver: {', '.join(networked)}")
    with ctx.operation(uuid, dom_def.name):
        tree = ctx.tree(uuid)
        ctx.check_domain_paths(dom_def)
        if redefine:
            ctx.check_snapshot_paths(defn)  # before redefine_snapshot, which adds the moment to the tree
            from ...conf.redefine import redefine as redefine_snapshot

            moment = redefine_snapshot(tree, dom_def, defn, moments.regular_file)
            parent = tree.get(defn.parent) if defn.parent else None
            moments.attach(moment, defn)
            if flags & C.CURRENT:
                tree.set_current(moment)
            tree.link(moment, parent)
            ctx.commit(uuid, tree)
            return defn.name
        if defn.name in tree:
            raise error(ErrorCode.OPERATION_FAILED, ErrorDomain.DOMAIN, f"domain moment {defn.name} already exists")
        qdom = QemuDomain.from_def(dom_def)
        status = ctx.status(uuid)
        defn.domain = dom_def.copy()
        defn.state = SnapshotState(int(moments.STATUS.get(status, (DomainState.SHUTOFF, 0))[0])) if status \
            else SnapshotState.SHUTOFF
        if flags & C.DISK_ONLY or defn.memory == Location.EXTERNAL or any(
                d.snapshot == Location.EXTERNAL for d in defn.disks) or any(
                d.snapshot == "external" for d in qdom.disks if not defn.disks):
            return _create_external(ctx, uuid, tree, dom_def, qdom, defn, status, flags)
        if flags & (C.QUIESCE | C.REUSE_EXT):
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, "QUIESCE and REUSE_EXT apply to external snapshots only")
        if defn.memory == Location.NO and defn.state.is_online:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        "an internal snapshot of a running domain always saves its memory; use a disk-only "
                        "snapshot for disks alone")
        defn.memory = Location.INTERNAL if defn.state.is_online else Location.NO
        align_disks(defn, Location.INTERNAL, uniform_internal=True, is_regular_file=moments.regular_file)
        targets = moments.internal_targets(defn, qdom)
        if not targets:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, "the snapshot would include no disk")
        clash = moments.id_clash(qdom, targets, defn.name)  # a name that is an ID is ambiguous to QEMU's loads
        if clash is not None:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        f"snapshot name '{defn.name}' is the ID of snapshot '{clash[1]}' in {clash[0]}; QEMU "
                        "looks snapshots up by ID first, so choose another name")
        _refuse_existing_tag(ctx, uuid, qdom, targets, defn.name, status)
        if not flags & C.NO_SPACE_CHECK:
            from . import space

            paths = {d.target: d.path for d in qdom.disks}
            needs = [(p, space.SMALL, f"disk {t}") for t in targets if (p := paths.get(t))]
            if status is not None and needs:  # snapshot-save writes the VM state into the first image
                with ctx.monitor(uuid) as mon:
                    needs.append((needs[0][0], space.guest_memory(mon, qdom), "memory"))
            space.preflight(needs, defn.name)
        entry = ctx.store.journal_begin(uuid, "create", _create_intent(tree, defn, status, flags,
                                                                          disks=targets))
        try:
            failpoints.hit("create.journaled")
            with DeferredInterrupt() as interrupt:
                _create_data(ctx, uuid, qdom, targets, defn, status, flags)
            if interrupt.interrupted:
                undo_create(ctx, uuid, qdom, targets, defn.name, status, flags)
                raise error(ErrorCode.OPERATION_ABORTED, ERR,
                            f"snapshot '{defn.name}' cancelled; nothing was kept and the domain is as before")
        except BaseException:
            ctx.store.journal_end(entry)  # the call undid its own changes
            raise
        try:
            with ctx.atomic(uuid):  # the commit point
                if not flags & C.NO_METADATA:
                    ctx.record_new(uuid, tree, defn)
                ctx.store.journal_end(entry)
        except libvirtError:
            # The store refused the record (full, read-only, locked): take the data back, so that the error
            # is the whole outcome. An entry that cannot be ended either is rolled back by the next recovery.
            with DeferredInterrupt():
                undo_create(ctx, uuid, qdom, targets, defn.name, status, flags)
            with contextlib.suppress(libvirtError):
                ctx.store.journal_end(entry)
            raise
        return defn.name


def _refuse_existing_tag(ctx: Context, uuid: str, qdom: QemuDomain, targets: list[str], name: str,
                         status: str | None) -> None:
    """An internal snapshot named like a tag an image already holds is refused before any change: the
    tag is someone else's (another tool's, or made by hand), and a later delete would remove it."""
    if status is not None:
        with ctx.monitor(uuid) as mon:
            tags = ctx.tags(qdom, mon)
    else:
        tags = ctx.tags(qdom, None)
    holders = sorted(d.path or d.target for d in qdom.disks
                     if d.target in targets and name in tags.get(d.target, ()))
    if holders:
        raise error(ErrorCode.OPERATION_INVALID, ERR,
                    f"image {', '.join(holders)} already has an internal snapshot named '{name}' that virtsnap "
                    "does not track; nothing was changed (snapshot-check --repair imports it)")


def _create_intent(tree: SnapshotTree, defn: SnapshotDef, status: str | None, flags: int,
                   **more: Any) -> dict[str, Any]:
    """What a create records before its first change: enough to finish or undo it after a crash."""
    return {"name": defn.name, "xml": format_snapshot(defn, secure=True), "status": status, "flags": flags,
            "parent": tree.current.name if tree.current is not None else None, **more}


def _create_external(ctx: Context, uuid: str, tree: SnapshotTree, dom_def: DomainDef, qdom: QemuDomain,
                     defn: SnapshotDef, status: str | None, flags: int) -> str:
    """Disk-only external snapshot: overlays created exclusively, switched in one QMP transaction
    (so ATOMIC holds) or made with qemu-img when the domain is off; the domain then runs on them."""
    with_memory = defn.memory == Location.EXTERNAL
    if with_memory:
        if flags & C.DISK_ONLY:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, "a disk-only snapshot cannot save memory")
        if status not in ("running", "paused"):
            raise error(ErrorCode.OPERATION_INVALID, ERR, "an external memory snapshot needs a running domain")
        assert defn.memory_file is not None
        ctx.check_outside_state(defn.memory_file, "memory file")
        if not Path(defn.memory_file).parent.is_dir() or os.path.lexists(defn.memory_file):
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        f"memory file {defn.memory_file} already exists or its directory does not")
        defn.state = SnapshotState.RUNNING if status == "running" else SnapshotState.PAUSED
    else:
        if defn.memory not in (Location.DEFAULT, Location.NO):
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, "a disk-only snapshot cannot save memory")
        if flags & C.LIVE:
            raise error(ErrorCode.OPERATION_UNSUPPORTED, ERR,
                        "live snapshot creation is supported only during full system snapshots")
        defn.memory = Location.NO
        defn.state = SnapshotState.DISK_SNAPSHOT if status is not None else SnapshotState.SHUTOFF
    align_disks(defn, Location.EXTERNAL, uniform_internal=False, is_regular_file=moments.regular_file)
    if any(d.snapshot == Location.INTERNAL for d in defn.disks):
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    "mixing internal and external targets for a snapshot is not yet supported")
    chosen = [d for d in defn.disks if d.snapshot == Location.EXTERNAL]
    if not chosen:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    "disk-only snapshots require at least one disk to be selected for snapshot")
    reuse = bool(flags & C.REUSE_EXT)
    sources = external.disk_sources(dom_def)
    by_target = {d.target: d for d in qdom.disks}
    seen: set[str] = set()
    for disk in chosen:
        extras = disk.extra_settings()
        if extras:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        f"disk '{disk.name}': virtsnap's QEMU driver does not apply {', '.join(extras)}")
        dom_disk = by_target[disk.name]
        if dom_disk.readonly or disk.name not in sources:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        f"disk '{disk.name}' is read-only or has no image: it cannot have an external snapshot")
        assert disk.source is not None
        if disk.source in seen or disk.source == sources[disk.name][0]:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        f"external snapshot file {disk.source} for disk {disk.name} is used twice")
        seen.add(disk.source)
        ctx.check_outside_state(disk.source, f"overlay for disk {disk.name}")
        external.check_new_overlay(disk.source, reuse, disk.name)
        disk.driver_type = "qcow2"
    if flags & C.QUIESCE and (status is None or qdom.agent_socket is None):
        raise error(ErrorCode.OPERATION_INVALID, ERR,
                    "QUIESCE needs a running domain with a guest agent channel")
    if with_memory and flags & C.LIVE and status == "running":
        refusal = ctx.live_refusal(uuid)
        if refusal is not None:
            raise error(ErrorCode.OPERATION_UNSUPPORTED, ERR, refusal)
    if not flags & C.NO_SPACE_CHECK:
        from . import space

        needs = [(d.source, space.SMALL, f"overlay of {d.name}") for d in chosen if d.source]
        if with_memory:
            assert defn.memory_file is not None
            with ctx.monitor(uuid) as mon:
                needs.append((defn.memory_file, space.guest_memory(mon, qdom), "memory"))
        space.preflight(needs, defn.name)
    nvram = firmware.state_image(qdom)  # its variables go with the disks, as a tag of the NVRAM image
    state_tag = defn.name if nvram is not None else None
    new_def = external.with_sources(dom_def, {d.name: d.source for d in chosen if d.source})
    entry = ctx.store.journal_begin(uuid, "create-external", _create_intent(
        tree, defn, status, flags, overlays={d.name: d.source for d in chosen}, reuse=reuse,
        memory_file=defn.memory_file if with_memory else None, domain_xml=moments.stored(new_def)))
    created: list[str] = []
    switched = False
    try:
        for disk in chosen:
            assert disk.source is not None
            path, fmt = sources[disk.name]
            if not reuse:
                created.append(disk.source)
            external.create_overlay(disk.source, path, fmt, reuse, disk.name,
                                    ctx.record_file(uuid, defn.name, "overlay", disk.source, "qcow2", path, fmt))
        if status is not None:  # the running QEMU opens the overlays itself (blockdev-add)
            ctx.hand_over(uuid, qdom, ctx.qemu_user(qdom), [d.source for d in chosen if d.source])
        failpoints.hit("external.overlays-created")
        if with_memory:
            assert defn.memory_file is not None
            _switch_with_memory(ctx, uuid, qdom, chosen, defn.memory_file, status == "running",
                                     bool(flags & C.LIVE), ctx.record_file(uuid, defn.name, "memory",
                                                                             defn.memory_file, "memory"),
                                state_tag, lambda step: ctx.store.journal_step(entry, step))
        elif status is not None:
            note = _switch_overlays(ctx, uuid, qdom, chosen, bool(flags & C.QUIESCE), state_tag)
            if note:  # reported as such, in the snapshot itself
                defn.description = f"{defn.description} ({note})" if defn.description else note
        elif nvram is not None and nvram.path:
            images.snapshot_create(nvram.path, defn.name)
        switched = True  # from here on the overlays hold the guest's writes: never removed
        failpoints.hit("external.switched")
        with ctx.atomic(uuid):  # the commit point
            ctx.store.put_domain(uuid, dom_def.name, moments.stored(new_def))
            if not flags & C.NO_METADATA:
                ctx.record_new(uuid, tree, defn)
            ctx.store.journal_end(entry)
    except BaseException:
        if not switched:
            ctx.remove_ours(uuid, created, defn.name)  # a reused file is in no ledger: it stays
            if status is None and nvram is not None and nvram.path:
                with contextlib.suppress(libvirtError):  # absent unless the disks' part was done
                    images.snapshot_delete(nvram.path, defn.name)
            ctx.store.journal_end(entry)
        # else the journal entry stays: the next operation on the domain finishes the snapshot
        raise
    if flags & C.HALT and status is not None:
        kill(ctx.rt(uuid))
    return defn.name


def _add_overlay_nodes(mon: Monitor, qdom: QemuDomain, chosen: list[Any], added: list[str],
                       state_tag: str | None = None) -> list[dict[str, Any]]:
    """blockdev-add each overlay (recorded in `added` for undo) with its disk's block options (cache, discard,
    I/O mode: the guest keeps writing as the XML says); returns the snapshot transaction, which also tags the
    NVRAM image with `state_tag` (so its variables are of the same instant as the disks)."""
    from .argv import block_options

    stamp = f"{os.getpid()}x{int(time.monotonic() * 1000) % 10**8}"
    active = mon.active_nodes()
    disks = {d.target: d for d in qdom.disks}
    actions = []
    for i, disk in enumerate(chosen):
        node = f"snap{stamp}n{i}"
        file_options, fmt_options = block_options(disks[disk.name]) if disk.name in disks else ({}, {})
        mon.execute("blockdev-add", {"driver": "file", "filename": disk.source, "node-name": f"{node}-file",
                                     **file_options})
        added.append(f"{node}-file")
        mon.execute("blockdev-add", {"driver": "qcow2", "node-name": node, "file": f"{node}-file",
                                     "backing": None, **fmt_options})
        added.append(node)
        actions.append({"type": "blockdev-snapshot", "data": {"node": active[disk.name], "overlay": node}})
    if state_tag is not None and firmware.NVRAM_TARGET in active:
        actions.append({"type": "blockdev-snapshot-internal-sync",
                        "data": {"device": active[firmware.NVRAM_TARGET], "name": state_tag}})
    return actions


def _switch_command(actions: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The disk switch as one QMP command: a lone blockdev-snapshot as itself (QEMU runs it as a transaction of
    that one action), 40 bytes shorter than the transaction around it, for a switch inside a guest pause."""
    if len(actions) == 1 and actions[0]["type"] == "blockdev-snapshot":
        return "blockdev-snapshot", actions[0]["data"]
    return "transaction", {"actions": actions}


def _switch_with_memory(ctx: Context, uuid: str, qdom: QemuDomain, chosen: list[Any], memory_file: str,
                        was_running: bool, live: bool, made: Callable[[int], object],
                        state_tag: str | None = None, journal: Callable[[str], object] = lambda step: None) -> None:
    """Full-system external snapshot: guest memory migrated to a file, disks switched at the same instant.

    LIVE uses QEMU's background-snapshot: the guest pauses once, while the disks switch and QEMU saves the
    devices and write-protects RAM (userfaultfd), then runs while its memory as of that instant is written out.
    Where QEMU allows it (HOLDABLE_QEMU) the stream goes through a pipe that holds QEMU's snapshot thread
    (migration.HeldStream), so that its pre-fault of guest RAM runs before the pause rather than inside it; the
    `journal` gets the steps "memory-held" and "memory-released" (recovery keeps no held snapshot that was not
    released by this call)."""
    fd = os.open(memory_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    added: list[str] = []
    held: migration.HeldStream | None = None
    migrating = False
    live = live and was_running
    with ctx.monitor(uuid, shared=True) as mon:
        try:
            try:
                made(fd)
                if live and migration.holdable(mon):
                    held = migration.HeldStream(fd)
                mon.send_fd(held.write_end if held is not None else fd, "virtsnap-memory")
            finally:
                os.close(fd)
                if held is not None:  # QEMU has its own copy now
                    os.close(held.write_end)
                    held.write_end = -1
            try:
                mon.execute("migrate-set-capabilities", {"capabilities": [
                    {"capability": "background-snapshot", "state": live},
                    {"capability": "events", "state": True}]})  # MIGRATION events wake the wait
            except libvirtError as exc:
                raise error(ErrorCode.OPERATION_UNSUPPORTED, ERR,
                            "LIVE needs QEMU's background-snapshot, which needs userfaultfd write-protection "
                            "(QEMU running as root, or vm.unprivileged_userfaultfd=1): "
                            f"{exc.get_error_message()}") from exc
            actions = _add_overlay_nodes(mon, qdom, chosen, added, state_tag)
            # Pause, switch the disks and start saving memory at one instant. With LIVE the guest must not run
            # again before background-snapshot has captured devices and write-protected RAM: its migration
            # thread first pre-faults all guest RAM, then stops the VM itself (a no-op here), saves the devices,
            # write-protects RAM and restarts the guest (QEMU 7.2's vm_start). A `cont` of ours sent right
            # after `migrate` ran before that: the guest ran for milliseconds on the new overlays while its
            # memory was captured afterwards (two STOP/RESUME pairs), so memory and disks were not of one instant.
            if held is not None:
                journal("memory-held")
                migrating = True
                _held_switch(ctx, uuid, qdom, mon, held, actions)
                migration.wait_restarted(mon, 1.0 + qdom.memory_mib / 1024 * 0.5)
                journal("memory-released")
            else:
                steps: list[tuple[str, dict[str, Any] | None]] = [("stop", None)] if was_running else []
                steps += [_switch_command(actions), ("migrate", {"uri": "fd:virtsnap-memory"})]
                try:
                    mon.pipeline(steps)
                except libvirtError:
                    if was_running:
                        with contextlib.suppress(libvirtError):
                            mon.execute("migrate_cancel")
                    raise
            failpoints.hit("memory.migrating")
            migration.wait_migration(mon)
            if held is not None:
                held.finish()
            # Not live: paused for the whole save. LIVE: running already, unless a QEMU restores the run
            # state the VM had when the snapshot thread stopped it (newer releases): paused by us.
            # (_wait_migration returned once QEMU left finish-migrate, where a cont is refused.)
            if was_running and mon.execute("query-status")["status"] != "running":
                mon.execute("cont")
            ctx.last_pause_ms = migration.pause_ms(mon.drain_events())
        except BaseException:
            from . import recovery

            if held is not None:
                # No migrate_cancel: QEMU 7.2's snapshot thread deadlocks QEMU when a transfer ends early once
                # RAM is write-protected. The held stream is let go and the transfer ends normally (its file is
                # discarded below); a descriptor QEMU never used for a migration is given back.
                if not migrating:
                    with contextlib.suppress(libvirtError):
                        mon.execute("closefd", {"fdname": "virtsnap-memory"})
                held.close()
                with contextlib.suppress(libvirtError):
                    recovery.settle_migration(mon)
                migration.wait_relay(memory_file, 60.0)
            # A failure after the disks were switched (the memory transfer failed): merge the overlays back
            # into their bases first, so that nothing QEMU wrote is lost and the overlays can go.
            with contextlib.suppress(libvirtError):
                recovery.unswitch(ctx, mon, {d.name: d.source for d in chosen})
            if state_tag is not None:
                recovery.drop_state_tag(mon, state_tag)
            for node in reversed(added):
                with contextlib.suppress(libvirtError):
                    mon.execute("blockdev-del", {"node-name": node})
            ctx.remove_ours(uuid, [memory_file])
            if was_running:
                with contextlib.suppress(libvirtError):
                    mon.execute("cont")
            raise
        finally:
            if held is not None:
                held.close()
            if live:
                with contextlib.suppress(libvirtError):
                    mon.execute("migrate-set-capabilities", {"capabilities": [
                        {"capability": "background-snapshot", "state": False}]})


def _held_switch(ctx: Context, uuid: str, qdom: QemuDomain, mon: Monitor, held: migration.HeldStream,
                 actions: list[dict[str, Any]]) -> None:
    """LIVE through a held stream: `migrate` while the guest runs; once QEMU's snapshot thread has pre-faulted
    RAM and waits on the full pipe, check that it has not passed its setup (has captured nothing), stop and switch
    the disks, all sent back to back; then release it. Its first write waits on the pipe until release(), so the
    migration cannot leave `setup` between the check and the release: the check goes before the stop, and only
    the disk switch is left for QEMU to read inside the pause (its monitor reads a byte per turn of its loop,
    ~10 us here). The thread captures the stopped guest, whose disks switched at the STOP: one instant, one
    STOP/RESUME pair."""
    mon.execute("migrate", {"uri": "fd:virtsnap-memory"})
    pid = ctx.rt(uuid).pid()
    if pid is not None:  # a pre-fault reads 512 MiB in 3-12 ms here; allow for loaded hosts and big guests
        held.wait_held(pid, 1.0 + qdom.memory_mib / 1024 * 0.5)
    def release(replies: list[Any]) -> None:  # as the last reply comes in, before the pipeline returns
        if not any(isinstance(r, BaseException) for r in replies) and replies[0].get("status") == "setup":
            failpoints.hit("memory.held")
            held.release()

    state, *_ = mon.pipeline([("query-migrate", None), ("stop", None), _switch_command(actions)], then=release)
    if state.get("status") != "setup":
        raise error(ErrorCode.INTERNAL_ERROR, ERR,
                    f"QEMU's snapshot thread did not wait for the disk switch (migration {state.get('status')}): "
                    "its memory could be of another instant than the disks; no snapshot was taken")


def _freeze(ctx: Context, uuid: str, qdom: QemuDomain) -> Agent | None:
    """guest-fsfreeze-freeze; None when it failed and the opt-in crash-consistent fallback is on."""
    from .agent import Agent

    agent = Agent(qdom.agent_socket or str(ctx.rt(uuid).agent), timeout=10.0)
    try:
        agent.connect()
        agent.execute("guest-fsfreeze-freeze")
        return agent
    except libvirtError as exc:
        agent.close()
        with contextlib.suppress(libvirtError), Agent(agent.path, timeout=2.0) as probe:
            probe.execute("guest-fsfreeze-thaw")  # a freeze that half worked must not stay
        if os.environ.get("VIRTSNAP_QUIESCE_FALLBACK") == "1":
            report(f"quiesce failed ({exc.get_error_message()}); taking a crash-consistent snapshot", 0, 0)
            return None
        raise error(ErrorCode(exc.get_error_code()), ERR,
                    f"the guest could not be quiesced, nothing was changed: {exc.get_error_message()} "
                    "(VIRTSNAP_QUIESCE_FALLBACK=1 takes a crash-consistent snapshot instead)") from exc


def _switch_overlays(ctx: Context, uuid: str, qdom: QemuDomain, chosen: list[Any], quiesce: bool,
                     state_tag: str | None = None) -> str | None:
    """blockdev-add every overlay, then one transaction of blockdev-snapshot; undone if it fails.
    Returns a note when QUIESCE fell back to a crash-consistent snapshot."""
    with ctx.monitor(uuid) as mon:
        added: list[str] = []
        try:
            actions = _add_overlay_nodes(mon, qdom, chosen, added, state_tag)
            agent = _freeze(ctx, uuid, qdom) if quiesce else None
            note = None if agent is not None or not quiesce else "crash-consistent: the guest could not be quiesced"
            try:
                failpoints.hit("external.frozen")
                mon.execute("transaction", {"actions": actions})
            finally:
                if agent is not None:
                    _thaw(agent)
            return note
        except BaseException:
            for node in reversed(added):
                with contextlib.suppress(libvirtError):
                    mon.execute("blockdev-del", {"node-name": node})
            raise


def _create_data(ctx: Context, uuid: str, qdom: QemuDomain, targets: list[str], defn: SnapshotDef,
                 status: str | None, flags: int) -> None:
    if status is not None:
        with ctx.monitor(uuid) as mon:
            active = mon.active_nodes()
            nodes = [active[t] for t in targets]
            mon.execute("snapshot-save", {"job-id": f"save-{os.getpid()}", "tag": defn.name,
                                          "vmstate": nodes[0], "devices": nodes})
            failpoints.hit("create.save-started")
            mon.wait_job(f"save-{os.getpid()}")
            if flags & C.HALT:
                mon.execute("quit")
        if flags & C.HALT:
            kill(ctx.rt(uuid))
    else:
        _offline_create(qdom, targets, defn.name)
    failpoints.hit("create.data-done")


def undo_create(ctx: Context, uuid: str, qdom: QemuDomain, targets: list[str], name: str, status: str | None,
                 flags: int) -> None:
    """Remove a just-made snapshot's data (after an interrupt), and restart a halted guest paused->run."""
    running = ctx.rt(uuid).pid() is not None
    if running:
        with ctx.monitor(uuid) as mon:
            job = f"delete-{os.getpid()}"
            active = mon.active_nodes()
            mon.execute("snapshot-delete", {"job-id": job, "tag": name,
                                            "devices": [active[t] for t in targets]})
            mon.wait_job(job)
    else:
        for disk in qdom.disks:
            if disk.target in targets and disk.path:
                with contextlib.suppress(libvirtError):
                    images.snapshot_delete(disk.path, name)
        if status is not None and flags & C.HALT:
            lifecycle.boot(ctx, uuid, qdom.defn, paused=status != "running")


def _thaw(agent: Agent) -> None:
    """guest-fsfreeze-thaw, retried once on a fresh connection: QEMU 7.2 never thaws by itctx."""
    try:
        agent.execute("guest-fsfreeze-thaw")
    except libvirtError:
        agent.close()
        from .agent import Agent

        with Agent(agent.path, timeout=10.0) as again:
            again.execute("guest-fsfreeze-thaw")
    finally:
        agent.close()


def _offline_create(qdom: QemuDomain, targets: list[str], name: str) -> None:
    """qemu-img snapshot -c on every disk; undone on the disks already done if one fails."""
    done: list[str] = []
    try:
        for disk in qdom.disks:
            if disk.target in targets and disk.path:
                images.snapshot_create(disk.path, name)
                done.append(disk.path)
    except libvirtError:
        for path in done:
            with contextlib.suppress(libvirtError):
                images.snapshot_delete(path, name)
        raise
