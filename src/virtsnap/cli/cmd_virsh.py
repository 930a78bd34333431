"""virsh's own commands: echo, help, quit/exit and connect (vsh.c, virsh.c)."""

from __future__ import annotations

from .control import Control
from .parser import Command, Group, Opt, Opts, OptType, alias, argv, flag, string


def cmd_echo(ctl: Control, opts: Opts) -> bool:
    shell, xml, split, err = (opts.has(n) for n in ("shell", "xml", "split", "err"))
    ctl.exclusive(opts, "shell", "xml")
    ctl.exclusive(opts, "shell", "split")
    ctl.exclusive(opts, "xml", "split")
    from .cmd_snapshot import shell_escape, split_commas, xml_escape

    parts: list[str] = []
    for word in opts.argv("string"):
        if xml:
            parts.append(xml_escape(word))
        elif shell:
            parts.append(shell_escape(word))
        elif split:
            parts.append("".join(piece + "\n" for piece in split_commas(word)))
        else:
            parts.append(word)
    if not parts:
        return True
    text = " ".join(parts)
    if err:
        ctl.error(text)
    else:
        ctl.out(text)
    return True


def cmd_quit(ctl: Control, opts: Opts) -> bool:
    ctl.interactive = False
    return True


def cmd_connect(ctl: Control, opts: Opts) -> bool:
    name = ctl.string(opts, "name")
    return ctl.connect(name, opts.has("readonly"))


def cmd_help(ctl: Control, opts: Opts) -> bool:
    from .registry import GROUPS, find_command

    try:
        name = ctl.string_quiet(opts, "command")
    except Exception:
        name = None
    if not name:
        ctl.out("Grouped commands:\n\n")
        for group in GROUPS:
            ctl.out(group_listing(group) + "\n")
        return True
    command = find_command(name)
    if command is not None:
        ctl.out(command_help(command))
        return True
    for group in GROUPS:
        if name in (group.name, group.keyword):
            ctl.out(group_listing(group))
            return True
    ctl.error(f"command or command group '{name}' doesn't exist")
    return False


def group_listing(group: Group) -> str:
    lines = [f" {group.name} (help keyword '{group.keyword}'):\n"]
    lines += [f"    {cmd.name:<30} {cmd.help}\n" for cmd in group.commands if not cmd.hidden]
    return "".join(lines)


def synopsis(command: Command) -> tuple[str, bool]:
    """vshCmddefHelp's SYNOPSIS line, and whether data options may also be given by position (shortopt)."""
    out = [command.name]
    shortopt = False
    for opt in command.opts:
        if opt.type is OptType.ALIAS or opt.hidden:
            continue
        if opt.type is OptType.BOOL:
            text = f"[--{opt.name}]"
        elif opt.type is OptType.INT:
            text = f"<{opt.name}>" if opt.required else f"[--{opt.name} <number>]"
            shortopt = shortopt or opt.positional
        elif opt.type is OptType.STRING:
            text = f"[--{opt.name} <string>]"
            shortopt = shortopt or opt.positional
        elif opt.type is OptType.DATA:
            text = f"<{opt.name}>" if opt.required else f"[<{opt.name}>]"
            shortopt = shortopt or opt.positional
        elif shortopt:
            text = f"{{[--{opt.name}] <string>}}..." if opt.required else f"[[--{opt.name}] <string>]..."
        else:
            text = f"<{opt.name}>..." if opt.required else f"[<{opt.name}>]..."
        out.append(text)
    return " ".join(out), shortopt


def option_rows(command: Command) -> list[tuple[str, str]]:
    """vshCmddefHelp's OPTIONS section: (how the option is written, its help) per option, aliases left out."""
    shortopt = synopsis(command)[1]
    rows = []
    for opt in command.opts:
        if opt.type is OptType.ALIAS or opt.hidden:
            continue
        if opt.type is OptType.BOOL:
            text = f"--{opt.name}"
        elif opt.type is OptType.INT:
            text = f"[--{opt.name}] <number>" if opt.required else f"--{opt.name} <number>"
        elif opt.type is OptType.STRING:
            text = f"--{opt.name} <string>"
        elif opt.type is OptType.DATA:
            text = f"[--{opt.name}] <string>"
        else:
            text = f"[--{opt.name}] <string>" if shortopt else f"<{opt.name}>"
        rows.append((text, opt.help))
    return rows


def command_help(command: Command) -> str:
    """vshCmddefHelp: NAME, SYNOPSIS, DESCRIPTION and OPTIONS sections."""
    out = ["  NAME\n", f"    {command.name} - {command.help}\n", "\n  SYNOPSIS\n", f"    {synopsis(command)[0]}\n"]
    if command.desc:
        out.append(f"\n  DESCRIPTION\n    {command.desc}\n")
    if command.opts:
        out.append("\n  OPTIONS\n")
        out += [f"    {text:<15}  {help}\n" for text, help in option_rows(command)]
    out.append("\n")
    return "".join(out)


COMMANDS = (
    Command("connect", cmd_connect, (
        string("name", "hypervisor connection URI", empty_ok=True),
        flag("readonly", "read-only connection"),
    ), "(re)connect to hypervisor", "Connect to local hypervisor. This is built-in command after shell start up.",
        needs_connection=False),
    Command("echo", cmd_echo, (
        flag("shell", "escape for shell use"),
        flag("xml", "escape for XML use"),
        flag("split", "split each argument on ','; ',,' is an escape sequence"),
        flag("err", "output to stderr"),
        alias("str", "string"),
        alias("hi", "string=hello"),
        argv("string", "arguments to echo"),
    ), "echo arguments. Used for internal testing.",
        "Echo back arguments, possibly with quoting. Used for internal testing.", needs_connection=False),
    Command("exit", cmd_quit, (), "quit this interactive terminal", "", needs_connection=False),
    Command("help", cmd_help, (
        Opt("command", OptType.STRING,
            "Prints global help, command specific help, or help for a group of related commands"),
    ), "print help", "Prints global help, command specific help, or help for a\n    group of related commands",
        needs_connection=False),
    Command("quit", cmd_quit, (), "quit this interactive terminal", "", needs_connection=False),
)
