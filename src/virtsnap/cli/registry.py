"""Every command virtsnap's CLI knows, grouped as `help` lists them, and lookup by name."""

from __future__ import annotations

from . import cmd_check, cmd_complete, cmd_domain, cmd_snapshot, cmd_space, cmd_virsh
from .parser import Command, Group

GROUPS = (
    Group("Domain Management", "domain", cmd_domain.MANAGEMENT),
    Group("Domain Monitoring", "monitor", cmd_domain.MONITORING),
    Group("Snapshot", "snapshot", cmd_snapshot.COMMANDS),
    Group("Virsh itself", "virsh", cmd_complete.COMMANDS + cmd_virsh.COMMANDS),
    # last: virsh's own groups print as virsh's
    Group("Virtsnap extensions", "virtsnap", cmd_check.COMMANDS + cmd_space.COMMANDS),
)

COMMANDS: dict[str, Command] = {cmd.name: cmd for group in GROUPS for cmd in group.commands}


def find_command(name: str) -> Command | None:
    return COMMANDS.get(name)
