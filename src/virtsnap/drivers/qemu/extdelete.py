"""Deleting external snapshots: one plan for every snapshot a delete removes, decided on a model of the image
files (and of QEMU's block graph when the domain runs) before anything changes.

An external snapshot's point in time is its state image B (the file its <domain> names; the overlay made
at the snapshot holds what changed afterwards). Deleting it removes that point: B stops being a separate
image unless something else still names it.

- B has one dependent C still needed: C is merged into B (``commit``) and every reference to C now names B.
  Running: QEMU's ``block-commit``, active (C is the image the guest writes: READY, then job-complete) or
  intermediate (C inside the active chain: top-node/base-node, it completes by itself); qemu-img commit for
  an image QEMU does not have open.
- B has several dependents (branches, e.g. after a revert): each gets B's data and B's backing instead
  (``stream``: QEMU's block-stream for the branch in QEMU's active chain; ``rebase``: qemu-img rebase for
  the images QEMU does not have open), then B is removed if virtsnap made it.
- Internal snapshots never lost: a commit removes C with its internal snapshots, and a rebase or stream
  rewrites an image's active layer only, so that image's internal snapshots, which read unallocated
  clusters through to B, would then read another backing. Either case is refused before any change.

Snapshots are taken leaf first, so a chain deleted with CHILDREN merges down once per level, never
copying a base into a branch that is itself about to go.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...conf.domain_xml import DomainDef
from ...errors import ErrorCode, ErrorDomain, error, libvirtError
from . import external, images

if TYPE_CHECKING:
    from .monitor import Monitor

ERR = ErrorDomain.QEMU


@dataclass(slots=True)
class Image:
    backing: str | None
    format: str
    tags: tuple[str, ...]  # internal snapshots stored in the file


@dataclass(slots=True)
class Snapshot:
    """What the planner needs of one snapshot on record."""

    name: str
    domain: DomainDef | None  # its <domain>: the state images
    external_disks: list[str]  # targets with snapshot='external'
    overlays: list[str]  # files the snapshot created
    going: bool


@dataclass(frozen=True, slots=True)
class Step:
    """One change. kind: 'commit' (image merged into base), 'stream' / 'rebase' (image gets base's data and
    backing `below`), 'set-backing' (header only: image now backed by base, same data).
    how: 'active' / 'intermediate' (QEMU block-commit), 'stream' (QEMU block-stream), 'qemu-img'."""

    kind: str
    image: str
    base: str
    below: str | None = None
    format: str = ""  # format of the new backing
    how: str = "qemu-img"
    image_format: str = "qcow2"  # format of `image`, named to qemu-img (never probed)
    target: str = ""  # the disk whose QEMU chain holds the image (QEMU steps)


@dataclass(slots=True)
class Plan:
    steps: list[Step] = field(default_factory=list)
    moved: dict[str, tuple[str, str]] = field(default_factory=dict)  # merged file -> (file it went into, format)
    remove: list[str] = field(default_factory=list)  # files unlinked at the end
    released: set[str] = field(default_factory=set)  # files that leave QEMU's graph
    done: bool = False  # one plan serves every snapshot of the delete: run once


@dataclass(slots=True)
class QemuView:
    """QEMU's block graph: each disk's chain (top first) and every file any node has open."""

    chains: dict[str, list[str]]
    open_files: dict[str, list[str]]  # file -> format-level node names


def qemu_view(mon: Monitor) -> QemuView:
    chains: dict[str, list[str]] = {}
    for target, inserted in mon.block_devices().items():
        files = []
        image: dict[str, Any] | None = inserted.get("image")
        while image:
            files.append(str(image["filename"]))
            image = image.get("backing-image")
        chains[target] = files
    open_files: dict[str, list[str]] = {}
    for node in mon.execute("query-named-block-nodes", {"flat": True}):
        names = open_files.setdefault(str(node["file"]), [])
        if node.get("drv") not in ("file", "host_device"):
            names.append(str(node["node-name"]))
    return QemuView(chains, open_files)


def moved_by(steps: Iterable[Step]) -> dict[str, tuple[str, str]]:
    """merged file -> (file it went into, format) after these steps, merges of merges followed through."""
    moved: dict[str, tuple[str, str]] = {}
    for step in steps:
        if step.kind == "commit":
            for old, (new, _fmt) in list(moved.items()):
                if new == step.image:
                    moved[old] = (step.base, step.format)
            moved[step.image] = (step.base, step.format)
    return moved


def operation_plan(key: object) -> Plan | None:
    """The plan already made for this delete in this operation (see external.operation_memo)."""
    plan = external.operation_memo().get(("extdelete", key))
    return plan if isinstance(plan, Plan) else None


def remember_plan(key: object, plan: Plan) -> None:
    external.operation_memo()[("extdelete", key)] = plan


def plan_delete(domain: DomainDef, snapshots: list[Snapshot], order: list[str], qemu: QemuView | None,
                ours: set[str]) -> Plan:
    """The plan for deleting the snapshots named in `order` (leaf first); raises, changing nothing, when a
    file is missing, an internal snapshot would be lost, or QEMU's graph is not what the definitions say."""
    return _Planner(domain, snapshots, qemu).plan(order, ours)


class _Planner:
    """The image files as a graph, changed step by step as the plan would change them."""

    def __init__(self, domain: DomainDef, snapshots: list[Snapshot], qemu: QemuView | None) -> None:
        self.snapshots = snapshots
        self.by_name = {s.name: s for s in snapshots}
        self.going = {s.name for s in snapshots if s.going}
        self.qemu = qemu
        self.tops = {t: path for t, (path, _) in external.disk_sources(domain).items()}
        self.states = {s.name: ({t: p for t, (p, _) in external.disk_sources(s.domain).items()} if s.domain else {})
                       for s in snapshots}
        # The format of every file a definition names (an overlay a snapshot made is qcow2): never probed.
        self.formats = {p: f for d in [domain, *(s.domain for s in snapshots if s.domain)]
                        for p, f in external.disk_sources(d).values()}
        self.graph: dict[str, Image] = {}
        for path in list(self.tops.values()) + [p for s in snapshots if not s.going
                                                 for p in self.states[s.name].values()]:
            self._load(path, required=True)
        for s in snapshots:
            if s.going:
                for path in list(self.states[s.name].values()) + s.overlays:
                    self._load(path, required=False)
        if qemu is not None:
            for target, top in self.tops.items():
                if qemu.chains.get(target, []) != self.chain_of(top):
                    raise error(ErrorCode.OPERATION_INVALID, ERR,
                                f"QEMU's images for disk '{target}' "
                                f"({' <- '.join(qemu.chains.get(target, [])) or 'none'}) are not the domain's "
                                f"({' <- '.join(self.chain_of(top))}); nothing was changed")

    def _load(self, path: str, required: bool) -> None:
        if path in self.graph:
            return
        if not os.path.exists(path):
            if required:
                raise error(ErrorCode.OPERATION_INVALID, ERR, f"image {path} is missing; nothing was changed")
            return
        try:
            layers = external.chain(path, self.formats.get(path, "qcow2"))
        except libvirtError:
            if required:
                raise
            return  # an overlay on record that is not a qcow2 file (a REDEFINE can name anything): not modelled
        for layer in layers:
            self.graph.setdefault(layer.path, Image(layer.backing, layer.format, layer.internal))

    # -- queries on the model --------------------------------------------------------------------------
    def live_tags(self, path: str) -> list[str]:
        """Internal snapshots in the file that this delete does not remove."""
        return [t for t in self.graph[path].tags if t not in self.going]

    def chain_of(self, top: str) -> list[str]:
        files: list[str] = []
        cur: str | None = top
        while cur is not None and cur in self.graph and cur not in files:
            files.append(cur)
            cur = self.graph[cur].backing
        return files

    def reachable(self, roots: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        for root in roots:
            seen.update(self.chain_of(root))
        return seen

    def qemu_target(self, path: str) -> str:
        """The disk whose QEMU chain holds `path` ('' when QEMU does not run or has no such chain)."""
        if self.qemu is None:
            return ""
        return next((t for t, top in self.tops.items() if path in self.chain_of(top)), "")

    def check_single_node(self, path: str) -> None:
        if self.qemu is not None and len(self.qemu.open_files.get(path, [])) > 1:
            raise error(ErrorCode.OPERATION_INVALID, ERR, f"QEMU has {path} open more than once; nothing was changed")

    def check_not_open(self, path: str, name: str) -> None:
        """An image qemu-img will rewrite while the domain runs: QEMU must not have it open at all."""
        if self.qemu is not None and path in self.qemu.open_files:
            raise error(ErrorCode.OPERATION_INVALID, ERR,
                        f"deleting snapshot '{name}' would rewrite {path}, which QEMU has open outside the disk's "
                        "chain; nothing was changed")

    # -- the plan --------------------------------------------------------------------------------------
    def plan(self, order: list[str], ours: set[str]) -> Plan:
        plan = Plan()
        initial = set(self.graph)
        qemu_files = self.reachable(self.tops.values()) if self.qemu is not None else set()
        pending = set(order)  # snapshots whose images still count as points in time
        for name in order:
            pending.discard(name)
            for target in self.by_name[name].external_disks:
                base = self.states[name].get(target)
                if base is None or base not in self.graph:
                    continue  # its image is gone already: nothing to merge
                roots = set(self.tops.values()) | {p for s in self.snapshots if not s.going or s.name in pending
                                                   for p in self.states[s.name].values()}
                if base in roots:
                    continue  # still another snapshot's point in time, or the image the domain uses
                live = self.reachable(roots)
                dependents = sorted(p for p, image in self.graph.items() if image.backing == base and p in live)
                if len(dependents) == 1:
                    self.commit(plan, dependents[0], base, name)
                elif dependents:
                    self.rebase(plan, dependents, base, name)
                # no dependent: nothing needs the image any more; it is collected below
        final = self.reachable(set(self.tops.values()) | {p for s in self.snapshots if not s.going
                                                          for p in self.states[s.name].values()})
        merged = set(plan.moved)
        for path in sorted(initial - merged - final):
            if path in ours:  # the ledger's files only: never one a definition or a chain merely names
                if self.live_tags(path):
                    raise error(ErrorCode.OPERATION_INVALID, ERR,
                                f"internal snapshots {', '.join(self.live_tags(path))} live in {path}, which deleting "
                                "would remove; delete them first. Nothing was changed")
                plan.remove.append(path)
        plan.remove = sorted(merged & ours) + plan.remove  # a merged file not in the ledger stays where it is
        if self.qemu is not None:
            plan.released = qemu_files - self.reachable(self.tops.values())
        return plan

    def commit(self, plan: Plan, child: str, base: str, name: str) -> None:
        """Merge the one image that depends on `base` into it; references to `child` then name `base`."""
        lost = self.live_tags(child)
        if lost:
            raise error(ErrorCode.OPERATION_UNSUPPORTED, ERR,
                        f"internal snapshots {', '.join(lost)} live in {child}, which deleting snapshot '{name}' "
                        f"would merge into {base} and remove; delete them first. Nothing was changed")
        target = self.qemu_target(child)
        how = ("active" if child == self.tops[target] else "intermediate") if target else "qemu-img"
        if target:
            self.check_single_node(child)
            self.check_single_node(base)
        else:
            self.check_not_open(child, name)
            self.check_not_open(base, name)
        base_format = self.graph[base].format
        plan.steps.append(Step("commit", child, base, format=base_format, how=how, target=target,
                               image_format=self.graph[child].format))
        above = sorted(p for p, image in self.graph.items() if image.backing == child)
        qemu_chain = self.chain_of(self.tops[target]) if target else []
        for path in above:
            if how == "intermediate" and path in qemu_chain:
                continue  # QEMU rewrites the header of the image above the one it merged
            self.check_not_open(path, name)
            plan.steps.append(Step("set-backing", path, base, format=base_format, image_format=self.graph[path].format))
        for path in above:
            self.graph[path].backing = base
        del self.graph[child]
        for sources in [self.tops, *self.states.values()]:
            for tgt, path in list(sources.items()):
                if path == child:
                    sources[tgt] = base
        plan.moved = moved_by(plan.steps)

    def rebase(self, plan: Plan, dependents: list[str], base: str, name: str) -> None:
        """Give each image that depends on `base` its data and its backing; `base` is then needed no more."""
        lost = self.live_tags(base)
        if lost:
            raise error(ErrorCode.OPERATION_INVALID, ERR,
                        f"internal snapshots {', '.join(lost)} live in {base}, which deleting snapshot '{name}' would "
                        "remove; delete them first. Nothing was changed")
        for child in dependents:
            lost = self.live_tags(child)
            if lost:
                raise error(ErrorCode.OPERATION_UNSUPPORTED, ERR,
                            f"internal snapshots {', '.join(lost)} live in {child} and read unchanged data from "
                            f"{base}; deleting snapshot '{name}' would rewrite {child} under them: delete them "
                            "first. Nothing was changed")
        below = self.graph[base].backing
        below_format = self.graph[below].format if below else ""
        in_qemu = [(child, self.qemu_target(child)) for child in dependents if self.qemu_target(child)]
        if len(in_qemu) > 1:
            raise error(ErrorCode.OPERATION_UNSUPPORTED, ERR,
                        f"several disks of the running domain use {base}; shut the domain down to delete snapshot "
                        f"'{name}'. Nothing was changed")
        streamed = {child for child, _ in in_qemu}
        for child in dependents:  # images QEMU does not have open first: qemu-img, even while the domain runs
            if child not in streamed:
                self.check_not_open(child, name)
                plan.steps.append(Step("rebase", child, base, below, below_format,
                                       image_format=self.graph[child].format))
        for child, target in in_qemu:
            self.check_single_node(child)
            if below:
                self.check_single_node(below)
            plan.steps.append(Step("stream", child, base, below, below_format, how="stream", target=target))
        for child in dependents:
            self.graph[child].backing = below


def refuse_unwritable(steps: list[Step], domain: ErrorDomain) -> None:
    """Refuse, before any change, a plan whose qemu-img steps would write a file that cannot be written now (a
    read-only mount, no permission; a commit writes the image it merges into, a rebase the image's header and
    data): a merge done cannot be taken back when a later one fails. The QEMU engine and the libvirt+ driver
    both run these steps; one message for both."""
    written = {step.base if step.kind == "commit" else step.image for step in steps if step.how == "qemu-img"}
    blocked = sorted(path for path in written if not os.access(path, os.W_OK))
    if blocked:
        raise error(ErrorCode.OPERATION_INVALID, domain, "deleting would merge data into " + ", ".join(blocked)
                    + ", which cannot be written (a read-only file system or no permission). Nothing was changed")


def image_step(step: Step) -> None:
    """Carry out a qemu-img step of a plan on the files (QEMU does not have them open), formats named."""
    if step.kind == "commit":
        images.run(["commit", "-q", "-f", step.image_format, "-d", "--", step.image])
    elif step.kind == "set-backing":  # header only: the same data through another file
        images.run(["rebase", "-u", "-f", step.image_format, "-F", step.format, "-b", step.base, "--", step.image])
    else:  # rebase: the image gets the old backing's data, so it reads the same through the new one
        images.run(["rebase", "-q", "-f", step.image_format, "-b", step.below or ""]
                   + (["-F", step.format] if step.below else []) + ["--", step.image])


# -- QEMU's side -------------------------------------------------------------------------------------------
_jobs = itertools.count(1)


def job_id(kind: str) -> str:
    """A job id never used before by this process: a dismissed job's late events must not match a new one."""
    return f"{kind}-{os.getpid()}x{next(_jobs)}"


def format_nodes(mon: Monitor) -> dict[str, str]:
    """file -> the format-level node QEMU has open on it (the planner made sure there is one)."""
    return {str(n["file"]): str(n["node-name"]) for n in mon.execute("query-named-block-nodes", {"flat": True})
            if n.get("drv") not in ("file", "host_device")}


def block_stream(mon: Monitor, step: Step, job: str) -> None:
    """Copy the data of the image's backing chain down to `step.below` into it: it then stands on `below`."""
    nodes = format_nodes(mon)
    if step.image not in nodes or (step.below and step.below not in nodes):
        raise error(ErrorCode.INTERNAL_ERROR, ERR, f"QEMU does not have {step.image} and {step.below} open")
    args: dict[str, Any] = {"job-id": job, "device": nodes[step.image], "auto-dismiss": False}
    if step.below:
        args["base-node"] = nodes[step.below]
    mon.execute("block-stream", args)
    mon.wait_job(job)


def release_nodes(mon: Monitor, files: set[str]) -> None:
    """blockdev-del the nodes still open on those of `files` that are in no disk's chain any more. Nodes QEMU
    opened by itself (backing files) went with their last user; those virtsnap added (a disk's first image,
    overlays) belong to the monitor until deleted, and keep their backing node from being a root (a later
    block-commit would refuse it): format node first, then its protocol node."""
    in_chains = {f for chain in qemu_view(mon).chains.values() for f in chain}
    gone = files - in_chains
    for _ in range(3):
        stale = [n for n in mon.execute("query-named-block-nodes", {"flat": True}) if n["file"] in gone]
        if not stale:
            return
        stale.sort(key=lambda n: n.get("drv") in ("file", "host_device"))
        for node in stale:
            with contextlib.suppress(libvirtError):
                mon.execute("blockdev-del", {"node-name": node["node-name"]})
    left = sorted({str(n["node-name"]) for n in mon.execute("query-named-block-nodes", {"flat": True})
                   if n["file"] in gone})
    if left:
        raise error(ErrorCode.INTERNAL_ERROR, ERR, f"QEMU still holds nodes {', '.join(left)} on images it left")
