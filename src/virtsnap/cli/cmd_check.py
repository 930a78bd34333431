"""snapshot-check (virtsnap extension): the snapshot metadata compared with the images and processes."""

from __future__ import annotations

import virtsnap
from virtsnap.flags import SnapshotCheck

from .cmd_snapshot import DOMAIN_OPT, JSON_OPT, print_json
from .control import Control
from .parser import Command, Opts, flag
from .table import Table


def cmd_snapshot_check(ctl: Control, opts: Opts) -> bool:
    """Report drift between a domain's snapshot metadata and its images, QEMU process and guest.

    --repair fixes what is safe and says what it left. Exit status: 0 when no drift remains (repaired or
    none found), 1 when some remains or on error. With --json prints ``{"domain": str, "drift": bool,
    "findings": [{"kind", "subject", "detail", "fix", "repaired", "drift"}]}``.
    """
    repair = opts.has("repair")
    dom, _domname = ctl.domain(opts)
    try:
        findings = dom.snapshotCheck(SnapshotCheck.REPAIR if repair else 0)
    except virtsnap.libvirtError as exc:
        ctl.save_error(exc)
        ctl.report_error()
        return False
    remaining = [f for f in findings if f.drift and not f.repaired]
    if opts.has("json"):
        print_json(ctl, {"domain": dom.name(), "drift": bool(remaining),
                         "findings": [f.as_dict() for f in findings]})
        return not remaining
    if not findings:
        ctl.out(f"Domain '{dom.name()}': snapshot metadata, images and processes agree\n")
        return True
    table = Table("Kind", "Subject", "Detail", "Action")
    for f in findings:
        table.add(f.kind, f.subject, f.detail, f.fix)
    ctl.out(table.render())
    fixed = sum(1 for f in findings if f.repaired)
    ctl.out(f"{len([f for f in findings if f.drift])} drift found, {fixed} repaired, {len(remaining)} left\n")
    return not remaining


COMMANDS = (
    Command("snapshot-check", cmd_snapshot_check, (
        DOMAIN_OPT,
        flag("repair", "fix what is safe to fix (import untracked snapshots, mark lost ones, thaw, resume, "
                       "remove empty orphaned overlays, finish unfinished operations)"),
        JSON_OPT,
    ), "Check snapshot metadata against images (virtsnap)",
        "Compare the snapshot metadata with the images, the QEMU process and the guest; --repair fixes what is safe"),
)
