"""The hidden `complete` command behind shell completion (virsh's cmdComplete / vshReadlineParse).

`virtsnap [-c URI] complete -- WORD...` prints one candidate per line for the last WORD (possibly empty).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable

import virtsnap
from virtsnap.flags import SnapshotList

from .control import CommandError, Control
from .parser import ARG, END, SUBCMD_END, Command, Opt, Opts, OptType, StringTokenizer, argv

# Options whose value names a domain, or a snapshot of the command's domain (virsh's completers).
DOMAIN_OPTIONS = frozenset({"domain"})
SNAPSHOT_OPTIONS = frozenset({"snapshotname", "from"})
SERVE = "serve"  # `virtsnap serve`, dispatched by main before the command tables


def _line_words(words: list[str]) -> tuple[list[str], str]:
    """virsh joins the words into one line: the tokens of its last command, and the word being completed."""
    line = " ".join(words)
    tokenizer = StringTokenizer(line)
    tokens: list[str] = []
    while True:
        kind, tok = tokenizer.next(False)
        if kind == ARG:
            tokens.append(tok)
        elif kind == SUBCMD_END:
            tokens = []
        else:  # END, or an unfinished escape: complete what is there
            break
    ends_word = not line or line[-1] in " \t;\n" or kind not in (END, ARG)
    if ends_word or not tokens:
        return tokens, ""
    return tokens[:-1], tokens[-1]


class _State:
    """What the words before the cursor gave a command: options seen, positional data, a pending option."""

    def __init__(self, command: Command, tokens: list[str]) -> None:
        self.command = command
        self.seen: set[int] = set()
        self.values: dict[str, str] = {}
        self.pending: Opt | None = None  # an option whose value is the word being completed
        need = [i for i, o in enumerate(command.opts) if o.takes_data()]
        data_only = False
        for tok in tokens:
            if self.pending is not None:
                self.values[self.pending.name] = tok
                self.pending = None
                continue
            if not data_only and tok == "--":
                data_only = True
                continue
            if not data_only and tok.startswith("--") and len(tok) > 2:
                name, eq, value = tok[2:].partition("=")
                index, opt = self._lookup(name)
                if opt is None:
                    continue
                self.seen.add(index)
                if index in need and opt.type is not OptType.ARGV:
                    need.remove(index)
                if opt.type is not OptType.BOOL:
                    if eq:
                        self.values[opt.name] = value
                    else:
                        self.pending = opt
                continue
            if need:
                opt = command.opts[need[0]]
                if opt.type is not OptType.ARGV:
                    self.seen.add(need.pop(0))
                self.values[opt.name] = tok
        # the next data word lands here (the first declared data option not given yet)
        self.next_data: Opt | None = command.opts[need[0]] if need else None

    def _lookup(self, name: str) -> tuple[int, Opt | None]:
        opts = self.command.opts
        for index, opt in enumerate(opts):
            if opt.name == name:
                if opt.type is OptType.ALIAS:
                    return self._lookup(opt.alias.partition("=")[0])
                return index, opt
        return -1, None

    def options(self) -> list[str]:
        """Options not given yet (one that takes every remaining argument may repeat), in table order."""
        return [f"--{o.name}" for i, o in enumerate(self.command.opts)
                if o.type is not OptType.ALIAS and (i not in self.seen or o.type is OptType.ARGV)]


def candidates(ctl: Control, words: list[str], commands: dict[str, Command]) -> list[str]:
    """Completion candidates for the last of `words` (virsh's rules; values come from ctl's connection)."""
    tokens, current = _line_words(words)
    if tokens[:1] == [SERVE]:  # the web server: its own options, no command table
        from .reference import serve_options

        names = [name.split()[0] for text, _ in serve_options()[1] for name in text.split(", ")]
        return [n for n in names if n.startswith("--") and n.startswith(current)] if current.startswith("-") else []
    command = commands.get(tokens[0]) if tokens else None
    if command is None:  # virsh completes a command name here, also after a word that is none
        names = [name for name, cmd in commands.items() if not cmd.hidden] + [SERVE]
        return [name for name in names if name.startswith(current)]
    state = _State(command, tokens[1:])
    if state.pending is not None:
        found = _values(ctl, state, state.pending, commands)
    elif current.startswith("-"):
        found = state.options()
    else:
        found = _values(ctl, state, state.next_data, commands) if state.next_data is not None else []
        if not current:
            found += state.options()
    return [c for c in found if c.startswith(current)]


def _values(ctl: Control, state: _State, opt: Opt | None, commands: dict[str, Command]) -> list[str]:
    if opt is None:
        return []
    if state.command.name == "help" and opt.name == "command":
        return [name for name, cmd in commands.items() if not cmd.hidden]
    lister: Callable[[virtsnap.virConnect], Iterable[str]] | None = None
    if opt.name in DOMAIN_OPTIONS:
        def lister(conn: virtsnap.virConnect) -> Iterable[str]:
            return sorted(dom.name() for dom in conn.listAllDomains())
    elif opt.name in SNAPSHOT_OPTIONS and state.values.get("domain"):
        domain = state.values["domain"]

        def lister(conn: virtsnap.virConnect) -> Iterable[str]:
            return conn.lookupByName(domain).snapshotListNames(SnapshotList.TOPOLOGICAL)
    if lister is None:
        return []
    stderr, ctl.stderr = ctl.stderr, io.StringIO()  # completion prints candidates or nothing, never an error
    try:
        return list(lister(ctl.connection()))
    except (CommandError, virtsnap.libvirtError):
        ctl.reset_error()
        return []
    finally:
        ctl.stderr = stderr


def cmd_complete(ctl: Control, opts: Opts) -> bool:
    from .registry import COMMANDS

    for candidate in candidates(ctl, opts.argv("string"), COMMANDS):
        ctl.out(candidate + "\n")
    return True


COMMANDS = (
    Command("complete", cmd_complete, (argv("string", "partial string to autocomplete"),),
            "internal command for autocompletion", "internal use only", needs_connection=False, hidden=True),
)
