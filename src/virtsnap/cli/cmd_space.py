"""snapshot-prune and snapshot-protect (virtsnap extensions): retention and its safeguard.

Retention by Proxmox Backup Server's keep-* rules over the public API (virDomain.snapshotPrune).
"""

from __future__ import annotations

import virtsnap
from virtsnap.flags import SnapshotPrune

from .cmd_snapshot import DOMAIN_OPT, JSON_OPT, SNAPSHOTNAME, lookup_snapshot, print_json
from .control import CommandError, Control, parse_c_int
from .parser import Command, Opt, Opts, OptType, flag, string
from .table import Table

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any

KEEP_OPTS = ("keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly")


def cmd_snapshot_prune(ctl: Control, opts: Opts) -> bool:
    """Delete the snapshots a keep-* policy does not keep (Proxmox Backup Server's rules, local time).

    Protected snapshots, the current snapshot and its ancestors are always kept. --dry-run only reports.
    With --json prints the API's list: ``[{"name": str, "action": "keep" | "remove", "reason": str}]``,
    newest first.
    """
    policy: dict[str, Any] = {}
    for option in KEEP_OPTS:
        text = ctl.string(opts, option)
        if text is None:
            continue
        value = parse_c_int(text)
        if value is None:
            ctl.error(f"Numeric value '{text}' for <{option}> option is malformed or out of range")
            raise CommandError()
        policy[option.replace("-", "_")] = value
    match = ctl.string(opts, "match")
    if match is not None:
        policy["match"] = match
    dry_run = opts.has("dry-run")
    dom, _ = ctl.domain(opts)
    try:
        decisions = dom.snapshotPrune(policy, SnapshotPrune.DRY_RUN if dry_run else 0)
    except virtsnap.libvirtError as exc:
        return ctl.fail(exc, f"Failed to prune snapshots of domain '{dom.name()}'")
    if opts.has("json"):
        print_json(ctl, decisions)
        return True
    table = Table("Name", "Action", "Reason")
    for d in decisions:
        table.add(d["name"], d["action"], d["reason"])
    ctl.out(table.render(header=not ctl.quiet, utf8=ctl.utf8_locale))
    removed = sum(1 for d in decisions if d["action"] == "remove")
    verb = "would be removed" if dry_run else "removed"
    ctl.extra(f"{len(decisions) - removed} kept, {removed} {verb}\n")
    return True


def cmd_snapshot_protect(ctl: Control, opts: Opts) -> bool:
    """Mark a snapshot protected (never pruned, deleted only with --force), or unmark it with --off."""
    dom, _ = ctl.domain(opts)
    snap, name = lookup_snapshot(ctl, opts, "snapshotname", True, dom)
    on = not opts.has("off")
    try:
        snap.setProtected(on, 0)
    except virtsnap.libvirtError as exc:
        return ctl.fail(exc, f"Failed to {'protect' if on else 'unprotect'} snapshot {name}")
    ctl.extra(f"Domain snapshot {name} {'protected' if on else 'unprotected'}\n")
    return True


def _count(name: str, help: str) -> Opt:
    return Opt(name, OptType.INT, help, positional=False)


COMMANDS = (
    Command("snapshot-prune", cmd_snapshot_prune, (
        DOMAIN_OPT,
        _count("keep-last", "keep the N newest snapshots"),
        _count("keep-hourly", "keep the newest snapshot of each of the last N hours with snapshots"),
        _count("keep-daily", "keep the newest snapshot of each of the last N days with snapshots"),
        _count("keep-weekly", "keep the newest snapshot of each of the last N ISO weeks with snapshots"),
        _count("keep-monthly", "keep the newest snapshot of each of the last N months with snapshots"),
        _count("keep-yearly", "keep the newest snapshot of each of the last N years with snapshots"),
        string("match", "consider only snapshots whose name matches this glob", positional=False),
        flag("dry-run", "only show what would be kept and removed, and why"),
        JSON_OPT,
    ), "Delete snapshots by a retention policy (virtsnap)",
        "Keep snapshots by keep-last/hourly/daily/weekly/monthly/yearly (Proxmox Backup Server's rules) "
        "and delete the rest; protected, current and its ancestors are always kept"),
    Command("snapshot-protect", cmd_snapshot_protect, (
        DOMAIN_OPT,
        SNAPSHOTNAME,
        flag("current", "protect the current snapshot"),
        flag("off", "remove the protection"),
    ), "Protect a snapshot from prune and delete (virtsnap)",
        "Mark a snapshot protected: snapshot-prune keeps it and snapshot-delete needs --force"),
)
