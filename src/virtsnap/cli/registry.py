"""Every command virtsnap's CLI knows, grouped as `help` lists them, and lookup by name.

A command module (its option tables, and what it imports) loads only when one of its commands is looked up:
a cold `snapshot-current` never imports the domain commands. `WHERE` says which module holds each command;
tests/unit/test_cli_lazy.py checks it against the modules' own tables.
"""

from __future__ import annotations

from .parser import Command, Group

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any

# (title, keyword, ((module, table), ...)) in `help` order; last: virsh's own groups print as virsh's
_GROUPS = (
    ("Domain Management", "domain", (("cmd_domain", "MANAGEMENT"),)),
    ("Domain Monitoring", "monitor", (("cmd_domain", "MONITORING"),)),
    ("Snapshot", "snapshot", (("cmd_snapshot", "COMMANDS"),)),
    ("Virsh itself", "virsh", (("cmd_complete", "COMMANDS"), ("cmd_virsh", "COMMANDS"))),
    ("Virtsnap extensions", "virtsnap", (("cmd_check", "COMMANDS"), ("cmd_space", "COMMANDS"))),
)
WHERE = {
    **dict.fromkeys(("define", "destroy", "dumpxml", "resume", "shutdown", "start", "suspend", "undefine",
                     "dominfo", "domstate", "list"), "cmd_domain"),
    **dict.fromkeys(("snapshot-create", "snapshot-create-as", "snapshot-current", "snapshot-delete",
                     "snapshot-dumpxml", "snapshot-edit", "snapshot-info", "snapshot-list", "snapshot-parent",
                     "snapshot-revert"), "cmd_snapshot"),
    "complete": "cmd_complete",
    **dict.fromkeys(("connect", "echo", "exit", "help", "quit"), "cmd_virsh"),
    "snapshot-check": "cmd_check",
    **dict.fromkeys(("snapshot-prune", "snapshot-protect"), "cmd_space"),
}


_built: dict[str, Group] = {}  # keyword -> group, built on first use


def _table_module(module: str, table: str) -> Any:
    """virtsnap.cli.<module>, imported now. __import__ rather than importlib.import_module: importing importlib
    (and the warnings it imports) is 1.6 M instructions of a cold command; with a fromlist it returns the module."""
    return __import__(f"{__package__}.{module}", fromlist=(table,))


def _group(title: str, keyword: str, tables: tuple[tuple[str, str], ...]) -> Group:
    if keyword not in _built:
        commands: list[Command] = []
        for module, table in tables:
            commands += getattr(_table_module(module, table), table)
        _built[keyword] = Group(title, keyword, commands)
    return _built[keyword]


def find_command(name: str) -> Command | None:
    """The command `name`, importing only the module that holds it."""
    module = WHERE.get(name)
    for _, keyword, tables in _GROUPS:
        for mod, table in tables:
            if mod != module:
                continue
            for command in getattr(_table_module(mod, table), table):
                if command.name == name:
                    command.group = keyword  # what Group() sets when the whole group is built
                    return command  # type: ignore[no-any-return]
    return None


def groups() -> tuple[Group, ...]:
    """Every group with its commands (imports every command module)."""
    return tuple(_group(*spec) for spec in _GROUPS)


def __getattr__(name: str) -> Any:
    # GROUPS and COMMANDS, for the callers that need every command (help, completion, the reference pages)
    if name == "GROUPS":
        return groups()
    if name == "COMMANDS":
        return {cmd.name: cmd for group in groups() for cmd in group.commands}
    raise AttributeError(name)
