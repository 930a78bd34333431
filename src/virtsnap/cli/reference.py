"""The CLI reference written from the command tables: Markdown for the documentation site, roff for virtsnap(1).

Both read the same GROUPS, option tables and `help` texts the CLI prints, so neither can drift from the CLI.
"""

from __future__ import annotations

import re

from .cmd_virsh import option_rows, synopsis
from .main import LONG_OPTIONS, usage
from .registry import GROUPS

# What the man page says around the tables (the rest comes from them).
DESCRIPTION = (
    "virtsnap is libvirt's domain snapshot API and a virsh-style command line for QEMU/KVM, VMware ESX and "
    "vCenter, VirtualBox and libvirt's in-memory test hypervisor. Commands, options, output, error messages "
    "and exit status follow virsh's. Given one argument, virtsnap runs it as a command string: commands "
    "separated by ';' or newlines, quoted as virsh quotes. Given several, they are one command and its "
    "arguments. Without any, it reads commands from standard input.")
URIS = (
    ("test:///default", "libvirt's test hypervisor, in memory, shared by the connections of one process"),
    ("qemu:///session, qemu:///system", "QEMU processes managed directly over QMP, no daemon"),
    ("esx://HOST/?no_verify=1, vpx://VCENTER/DC/CLUSTER/HOST", "VMware vSphere (pip install 'virtsnap[esx]')"),
    ("vbox:///session", "VirtualBox through VBoxManage"),
)
ENVIRONMENT = (
    ("VIRSH_DEFAULT_CONNECT_URI", "the connection URI when -c is not given"),
    ("VIRTSNAP_QEMU_STATE_DIR", "where the QEMU driver keeps its metadata (default $XDG_STATE_HOME/virtsnap/qemu)"),
    ("VIRTSNAP_VBOXMANAGE", "the VBoxManage program the vbox driver runs"),
)


def global_option_names() -> list[str]:
    """Every global option as written on the command line: -c and --connect, ..."""
    return [name for long, short, _ in LONG_OPTIONS for name in (f"-{short}", f"--{long}")] + ["-V"]


def serve_options() -> tuple[str, list[tuple[str, str]]]:
    """`virtsnap serve` (the web view, a server outside the command tables): its description and its options as
    (how they are written, help), from its own argparse parser."""
    from virtsnap.web.serve import parser

    p = parser()
    rows = []
    for action in p._actions:
        if not action.option_strings or action.dest == "help":
            continue
        value = f" {action.metavar}" if action.metavar else ""
        rows.append((", ".join(f"{o}{value}" for o in action.option_strings), action.help or ""))
    return p.description or "", rows


def visible_commands() -> list[tuple[str, list[str]]]:
    """(group name, command names) as `help` lists them."""
    return [(g.name, [c.name for c in g.commands if not c.hidden]) for g in GROUPS]


# -- Markdown -----------------------------------------------------------------------------------------
_MD_ESCAPES = str.maketrans({"[": "\\[", "]": "\\]", "|": "\\|", "*": "\\*", "_": "\\_", "<": "&lt;", ">": "&gt;"})


def _md_escape(text: str) -> str:
    """Help text as Markdown shows it literally (no links, emphasis, tables cells split or HTML tags)."""
    return text.translate(_MD_ESCAPES)


def markdown() -> str:
    """The CLI reference page: global options, then every command of every group with its options."""
    out = ["# Command line reference\n\n",
           "Generated from virtsnap's own command tables (`virtsnap help COMMAND` prints the same).\n\n",
           _md_escape(DESCRIPTION) + "\n\n",
           "## Global options\n\n```text\n", usage().split("  commands (non interactive mode)")[0].strip("\n"),
           "\n```\n\n"]
    for group in GROUPS:
        out.append(f"## {group.name}\n\n")
        for command in group.commands:
            if command.hidden:
                continue
            out.append(f"### {command.name}\n\n{_md_escape(command.help)}\n\n")
            if command.desc:
                desc = " ".join(line.strip() for line in command.desc.splitlines())
                out.append(_md_escape(desc) + "\n\n")
            out.append(f"```text\n{synopsis(command)[0]}\n```\n\n")
            rows = option_rows(command)
            if rows:
                out.append("| option | meaning |\n|---|---|\n")
                out += [f"| `{text}` | {_md_escape(help) or ' '} |\n" for text, help in rows]
                out.append("\n")
    description, rows = serve_options()
    out.append(f"## virtsnap serve\n\n{_md_escape(description)} A server rather than a command: it takes its own "
               "options after `serve` (see [the web view](../web.md)).\n\n```text\nvirtsnap serve [options]\n```\n\n"
               "| option | meaning |\n|---|---|\n")
    out += [f"| `{text}` | {_md_escape(help)} |\n" for text, help in rows]
    return "".join(out)


# -- roff (man 7 man) ---------------------------------------------------------------------------------
def _roff(text: str) -> str:
    """Text as roff reads it literally: backslashes and hyphens escaped, no line starting with . or '."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return re.sub(r"(?m)^([.'])", r"\\&\1", text)


def roff(date: str = "") -> str:
    """virtsnap(1)."""
    from virtsnap import __version__

    out = [f'.TH VIRTSNAP 1 "{date}" "virtsnap {__version__}" "User Commands"\n',
           ".SH NAME\nvirtsnap \\- libvirt's domain snapshot API and a virsh\\-style command line\n",
           ".SH SYNOPSIS\n.B virtsnap\n[\\fIOPTION\\fR]... [\\fICOMMAND_STRING\\fR]\n.br\n",
           ".B virtsnap\n[\\fIOPTION\\fR]... \\fICOMMAND\\fR [\\fIARG\\fR]...\n",
           ".SH DESCRIPTION\n", _roff(DESCRIPTION), "\n",
           ".SH OPTIONS\n"]
    for line in usage().splitlines():
        match = re.match(r"\s+(-\S+(?: \| --\S+(?: <\S+>)?)?|--\S+)\s{2,}(.*)$", line)
        if match:
            out.append(f".TP\n.B {_roff(match.group(1))}\n{_roff(match.group(2))}\n")
        elif re.match(r"\s+-\S+ \| --\S+$", line):  # an option whose help is on the next line
            out.append(f".TP\n.B {_roff(line.strip())}\n")
        elif line.startswith(" " * 20) and line.strip():
            out.append(_roff(line.strip()) + "\n")
    out.append(".SH URIS\n")
    out += [f".TP\n.B {_roff(uri)}\n{_roff(what)}\n" for uri, what in URIS]
    out.append(".SH COMMANDS\n")
    for group in GROUPS:
        out.append(f".SS {_roff(group.name)}\n")
        for command in group.commands:
            if command.hidden:
                continue
            out.append(f".TP\n.B {_roff(synopsis(command)[0])}\n{_roff(command.help)}\n")
            if command.desc:
                out.append(".br\n" + _roff(" ".join(line.strip() for line in command.desc.splitlines())) + "\n")
            for text, help in option_rows(command):
                out.append(f".RS\n.TP\n.B {_roff(text)}\n{_roff(help)}\n.RE\n")
    description, rows = serve_options()
    out.append(".SS virtsnap serve\n" + _roff(description) + "\n")
    out += [f".TP\n.B {_roff(text)}\n{_roff(help)}\n" for text, help in rows]
    out.append(".SH ENVIRONMENT\n")
    out += [f".TP\n.B {name}\n{_roff(what)}\n" for name, what in ENVIRONMENT]
    out.append(".SH EXIT STATUS\n0 when the last command succeeded, 1 when it failed or the command line could "
               "not be parsed (nothing runs then), 130 after an interrupt.\n")
    out.append(".SH SEE ALSO\n.BR virsh (1)\n")
    return "".join(out)
