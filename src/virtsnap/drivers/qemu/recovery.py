"""Finishing or undoing what a dead process left half done.

Every create, revert and delete of the QEMU driver records its intent in the store's journal before its
first change, and its metadata commit ends the entry (or moves it to a "committed" phase) in the same sqlite
transaction. An entry found when the domain's lock is next taken therefore belongs to a process that died,
and the metadata is still the state before its call. What the images and QEMU show decides the rest:

- create: the data is all there (every tag, or QEMU already writes the new overlays and the memory file is
  complete) -> the metadata is committed as the call would have; otherwise what was made is removed;
- revert and delete: any QEMU job of the dead process is settled, then the call is carried out again from
  the start; both are idempotent on real state (a load is loaded again, a plan is made again from the
  images' real backing chains);
- a "committed" entry: only the tidy-up after the commit is left (files no one needs, starting the guest).

The result is the state before the call or after it, never one in between.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ...conf.snapshot_xml import ParseMode, parse_snapshot
from ...errors import libvirtError, redact
from ...flags import SnapshotCreate as C
from ...progress import DeferredInterrupt
from ...store.db import JournalEntry
from . import delete, external, firmware, images, migration, revert
from .agent import Agent
from .domain import QemuDomain
from .process import kill

if TYPE_CHECKING:
    from .context import Context
    from .monitor import Monitor

log = logging.getLogger("virtsnap.recovery")
JOB_PREFIXES = ("save-", "load-", "delete-", "commit-", "stream-")  # ids of the jobs virtsnap starts
_MIGRATING = ("setup", "active", "pre-switchover", "device", "wait-unplug", "cancelling")
# QEMU states only virtsnap's own steps leave a guest in (a user's pause is "paused")
PAUSED_BY_US = ("postmigrate", "finish-migrate", "save-vm")


def recover(ctx: Context, uuid: str) -> list[str]:
    """Roll every unfinished operation of the domain forward or back; the caller holds the domain's lock.
    Returns what was done, one line per entry. An entry whose recovery fails stays in the journal (and
    snapshot-check reports it) instead of blocking every later operation."""
    done = []
    for entry in ctx.store.journal_unfinished(uuid):
        if entry.id in ctx.recovery_errors:
            continue  # tried once in this process already; snapshot-check --repair tries again
        try:
            with DeferredInterrupt():  # a recovery half done would need a recovery of its own
                outcome = _HANDLERS[entry.op](ctx, uuid, entry)
            done.append(f"{entry.op} of pid {entry.pid}: {outcome}")
            log.warning("finished an operation a dead process left undone: %s of pid %d: %s",
                        entry.op, entry.pid, outcome)
        except Exception as exc:  # whatever went wrong, later operations must still run
            message = exc.get_error_message() if isinstance(exc, libvirtError) else redact(repr(exc))
            ctx.recovery_errors[entry.id] = message
            log.warning("could not finish the %s left by pid %d: %s", entry.op, entry.pid, message)
    return done


# -- state probes ------------------------------------------------------------------------------------
def settle_jobs(mon: Monitor, timeout: float = 600.0) -> None:
    """Let virtsnap's jobs in QEMU end: a block commit waiting to pivot is cancelled (QEMU keeps writing the
    image it wrote; the base merely holds a copy of some of its data), any other job runs to its end.

    An active commit whose client died before it was ready reaches `ready` later and then waits for a pivot
    that nobody will ask for: it is followed until it is ready (then cancelled) or concluded, never waited
    on as if it could end by itself."""
    for job in mon.execute("query-jobs"):
        job_id = str(job.get("id", ""))
        if job_id.startswith(JOB_PREFIXES):
            with contextlib.suppress(libvirtError):
                mon.wait_job(job_id, timeout, cancel_when_ready=True)


def settle_migration(mon: Monitor, timeout: float = 600.0) -> bool:
    """Wait for an outgoing migration (a memory snapshot) to end; whether it completed."""
    deadline = time.monotonic() + timeout
    while True:
        status = mon.execute("query-migrate").get("status", "none")
        if status not in _MIGRATING or time.monotonic() > deadline:
            return bool(status == "completed")
        with contextlib.suppress(libvirtError):
            mon.wait_event(lambda ev: ev.get("event") == "MIGRATION", 0.2)


def active_files(mon: Monitor) -> dict[str, str]:
    """target dev -> the file QEMU writes for it now."""
    return {target: str(inserted.get("file", "")) for target, inserted in mon.block_devices().items()}


def drop_nodes(mon: Monitor, paths: Iterable[str]) -> None:
    """blockdev-del the nodes of these files that no device uses any more (format nodes first; QEMU refuses
    to delete a node in use, and that refusal is expected for the ones still in a chain)."""
    wanted = set(paths)
    nodes = [n for n in mon.execute("query-named-block-nodes") if n.get("file") in wanted]
    for node in sorted(nodes, key=lambda n: n.get("ctx") == "file"):
        with contextlib.suppress(libvirtError):
            mon.execute("blockdev-del", {"node-name": node["node-name"]})


def unswitch(ctx: Context, mon: Monitor, overlays: dict[str, str]) -> None:
    """Undo a disk switch whose snapshot cannot be kept: every overlay QEMU writes is merged back into its
    base (active commit and pivot), so the guest loses nothing and the overlays are no longer used."""
    active = active_files(mon)
    for target, overlay in overlays.items():
        if active.get(target) == overlay:
            external.forget_chains()
            base = external.chain(overlay, "qcow2")[0].backing  # an overlay virtsnap made: qcow2
            if base:
                delete.block_commit(mon, overlay, base, target)
    drop_nodes(mon, overlays.values())


def drop_state_tag(mon: Monitor, tag: str) -> None:
    """Remove an external snapshot's tag from the running domain's NVRAM image, if it is there (the switch
    that took it is being undone)."""
    inserted = mon.block_devices().get(firmware.NVRAM_TARGET)
    if inserted is not None and any(s.get("name") == tag for s in (inserted.get("image") or {}).get("snapshots", [])):
        with contextlib.suppress(libvirtError):
            mon.execute("blockdev-snapshot-delete-internal-sync", {"device": str(inserted["node-name"]), "name": tag})


def thaw_if_frozen(ctx: Context, uuid: str, thaw: bool = True) -> bool | None:
    """Whether the guest's file systems are frozen (None: no agent, or it does not answer); thawed if asked."""
    if ctx.rt(uuid).pid() is None:
        return None
    qdom = QemuDomain.from_def(ctx.domain_def(uuid))
    if qdom.agent_socket is None:
        return None
    try:
        with Agent(qdom.agent_socket or str(ctx.rt(uuid).agent), timeout=3.0) as agent:
            frozen = bool(agent.execute("guest-fsfreeze-status") == "frozen")
            if frozen and thaw:
                agent.execute("guest-fsfreeze-thaw")
            return frozen
    except libvirtError:
        return None


def resume_if_paused_by_us(mon: Monitor, was: str | None) -> None:
    """A guest that ran before the call runs again (the dead process stopped it, or a migration did)."""
    if was == "running" and mon.execute("query-status").get("status") in ("paused", *PAUSED_BY_US):
        mon.execute("cont")


# -- per operation ------------------------------------------------------------------------------------
def _create(ctx: Context, uuid: str, entry: JournalEntry) -> str:
    intent = entry.intent
    name, flags, disks = intent["name"], int(intent["flags"]), list(intent["disks"])
    tree = ctx.tree(uuid)
    if name in tree:
        ctx.store.journal_end(entry.id)
        return "already committed"
    qdom = QemuDomain.from_def(ctx.domain_def(uuid))
    running = ctx.rt(uuid).pid() is not None
    with contextlib.ExitStack() as stack:
        mon = stack.enter_context(ctx.monitor(uuid)) if running else None
        if mon is not None:
            settle_jobs(mon)  # a snapshot-save job runs to its end inside QEMU even when its client died
        tags = ctx.tags(qdom, mon)
        holders = [t for t in disks if name in tags.get(t, set())]
        if holders and len(holders) == len(disks):
            if flags & C.HALT and mon is not None:
                with contextlib.suppress(libvirtError):
                    mon.execute("quit")
            forward = True
        else:
            forward = False
            delete.remove_tag(mon, [d for d in qdom.disks if d.target in holders and d.path], name, {})
    if forward and flags & C.HALT:
        kill(ctx.rt(uuid))
    if not forward:
        ctx.store.journal_end(entry.id)
        return f"rolled back: snapshot '{name}' was in {len(holders)} of {len(disks)} disks; removed"
    defn = parse_snapshot(intent["xml"], ParseMode.REDEFINE)
    with ctx.atomic(uuid):
        if not flags & C.NO_METADATA:
            ctx.record_new(uuid, tree, defn, parent_name=intent.get("parent"))
        ctx.store.journal_end(entry.id)
    return f"rolled forward: snapshot '{name}' was complete in every disk; recorded"


def _create_external(ctx: Context, uuid: str, entry: JournalEntry) -> str:
    intent = entry.intent
    name, flags, status = intent["name"], int(intent["flags"]), intent["status"]
    overlays: dict[str, str] = dict(intent["overlays"])
    memory_file: str | None = intent.get("memory_file")
    if flags & C.QUIESCE:
        thaw_if_frozen(ctx, uuid)  # the dead process froze the guest and never thawed it
    running = ctx.rt(uuid).pid() is not None
    forward = False
    if status is not None and running:
        with ctx.monitor(uuid, shared=True) as mon:  # where the dead process passed the memory descriptor
            settle_jobs(mon)
            if "memory-held" in entry.steps:  # a descriptor no migrate took holds its relay: given back
                with contextlib.suppress(libvirtError):
                    mon.execute("closefd", {"fdname": "virtsnap-memory"})
            memory_ok = settle_migration(mon) if memory_file else True
            if memory_file and "memory-held" in entry.steps:
                # a held stream (migration.HeldStream): kept only if the dead process released it itself,
                # after its check, and once the relay has written all of it
                memory_ok = memory_ok and "memory-released" in entry.steps and \
                    migration.wait_relay(memory_file, 120.0)
            switched = all(active_files(mon).get(t) == p for t, p in overlays.items())
            if switched and memory_ok:
                forward = True
            else:
                if switched:  # the memory never reached its file: no snapshot; the guest keeps its writes
                    unswitch(ctx, mon, overlays)
                drop_nodes(mon, overlays.values())
                drop_state_tag(mon, name)
            with contextlib.suppress(libvirtError):
                mon.execute("migrate-set-capabilities", {"capabilities": [
                    {"capability": "background-snapshot", "state": False}]})
            resume_if_paused_by_us(mon, status)
    if forward:
        defn = parse_snapshot(intent["xml"], ParseMode.REDEFINE)
        tree = ctx.tree(uuid)
        dom_name = ctx.domain_def(uuid).name
        with ctx.atomic(uuid):
            ctx.store.put_domain(uuid, dom_name, intent["domain_xml"])
            if not flags & C.NO_METADATA and name not in tree:
                ctx.record_new(uuid, tree, defn, parent_name=intent.get("parent"))
            ctx.store.journal_end(entry.id)
        if flags & C.HALT:
            kill(ctx.rt(uuid))
        return f"rolled forward: QEMU writes the overlays of '{name}'; recorded"
    kept = []
    if status is not None and not running:
        # QEMU died too: whether it had switched to the overlays is unknown, so they stay (snapshot-check
        # lists them) rather than risk the guest's last writes.
        kept = [p for p in overlays.values() if os.path.exists(p)]
    elif not intent.get("reuse"):
        ctx.remove_ours(uuid, list(overlays.values()), name)  # the ledger's files of this call, none other
    if status is None:  # an offline create tags the NVRAM image last: the tag goes with the snapshot
        nvram = firmware.state_image(QemuDomain.from_def(ctx.domain_def(uuid)))
        if nvram is not None and nvram.path and name in images.snapshots(nvram.path, force_share=True):
            images.snapshot_delete(nvram.path, name)
    if memory_file:
        ctx.remove_ours(uuid, [memory_file], name)
    ctx.store.journal_end(entry.id)
    return f"rolled back: snapshot '{name}' was not taken" + (f"; kept {', '.join(kept)}" if kept else "")


def _revert(ctx: Context, uuid: str, entry: JournalEntry) -> str:
    name, flags = entry.intent["name"], int(entry.intent["flags"])
    if ctx.rt(uuid).pid() is not None:
        with ctx.monitor(uuid) as mon:
            settle_jobs(mon)  # a snapshot-load job ends inside QEMU even when its client died
    return _revert_again(ctx, uuid, entry, name, flags)


def _revert_again(ctx: Context, uuid: str, entry: JournalEntry, name: str, flags: int) -> str:
    """The revert runs again from the start (with an entry of its own); this entry ends only once it has
    succeeded, so a revert that cannot be finished stays on record for snapshot-check."""
    if name not in ctx.tree(uuid):
        ctx.store.journal_end(entry.id)
        return f"snapshot '{name}' is gone; nothing to finish"
    revert.revert(ctx, uuid, name, flags)
    ctx.store.journal_end(entry.id)
    return f"rolled forward: reverted to '{name}' again"


def _revert_external(ctx: Context, uuid: str, entry: JournalEntry) -> str:
    intent = entry.intent
    name, flags = intent["name"], int(intent["flags"])
    if "committed" in entry.steps:
        revert.finish_revert_external(ctx, uuid, name, flags, list(intent["old_tops"]))
        ctx.store.journal_end(entry.id)
        return f"finished the revert to '{name}' (unneeded overlays removed, guest started as asked)"
    used = {path for path, _ in external.disk_sources(ctx.domain_def(uuid)).values()}
    ctx.remove_ours(uuid, [p for p in dict(intent["overlays"]).values() if p not in used], name)
    return _revert_again(ctx, uuid, entry, name, flags)


def _delete(ctx: Context, uuid: str, entry: JournalEntry) -> str:
    intent = entry.intent
    name, flags = intent["name"], int(intent["flags"])
    if "committed" in entry.steps:
        ctx.remove_unneeded(uuid, list(intent.get("unlink", [])))
        ctx.store.journal_end(entry.id)
        return f"finished deleting '{name}' (files no one needs removed)"
    merged: list[str] = []
    if ctx.rt(uuid).pid() is not None:
        with ctx.monitor(uuid) as mon:
            settle_jobs(mon)
            merged = adopt_active_images(ctx, uuid, mon)
    if name in ctx.tree(uuid):
        delete.delete(ctx, uuid, name, flags)  # this entry ends only once that has succeeded
    if merged:
        ctx.remove_unneeded(uuid, merged)
    ctx.store.journal_end(entry.id)
    return f"rolled forward: deleted '{name}'"


def adopt_active_images(ctx: Context, uuid: str, mon: Monitor) -> list[str]:
    """Where QEMU pivoted to the image a file was merged into (a block commit that finished before its
    client died), the definitions follow QEMU. Returns the merged files virtsnap made (now unneeded)."""
    dom_def = ctx.domain_def(uuid)
    tree = ctx.tree(uuid)
    moved: dict[str, tuple[str, str]] = {}
    active = active_files(mon)
    for target, (path, fmt) in external.disk_sources(dom_def).items():
        now = active.get(target)
        if not now or now == path or not os.path.exists(path):
            continue
        layers = {layer.path: layer.format for layer in external.chain(path, fmt)}
        if now in layers:
            moved[path] = (now, layers[now])
    if not moved:
        return []
    ours = ctx.ours(uuid)
    with ctx.atomic(uuid):
        delete.repoint(ctx, uuid, tree, moved)
        ctx.commit(uuid, tree)
    return [p for p in moved if p in ours]


_HANDLERS: dict[str, Callable[[Context, str, JournalEntry], Any]] = {
    "create": _create,
    "create-external": _create_external,
    "revert": _revert,
    "revert-external": _revert_external,
    "delete": _delete,
}
