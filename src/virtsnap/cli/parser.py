"""virsh's command grammar: option tables (vshCmdOptDef), the tokenizer and the chain parser.

Same rules as tools/vsh.c: quoting, escapes, `;`/newline separators, `#` comments, positional fill.

Why not click (or argparse): a virsh chain such as ``'snapshot-create-as test s1; snapshot-list test'`` is
ONE argument that must be tokenized with virsh's own quoting rules and split at ``;``; every command
of the chain must be parsed (and rejected as a whole on any error) before the first one runs; data
arguments fill the declared non-boolean options in declaration order, skipping the ones already given
by name (``snapshot-create-as test n1`` sets --name, ``... test --name n1 d1`` then sets
--description), a repeated option is an error while an argv option may repeat, and the error texts
must be virsh's byte for byte. click models none of this (its positionals are separate parameters,
it has no chain separator inside a token and its messages differ), so it would only be an expensive
shell around this module. Cost matters too: importing click 8.4 takes 30-34 ms on this machine
(``python -X importtime -c 'import click'``, cumulative, 5 runs; the ~55 ms quoted in the issue was
not reproduced here), while this module needs only `collections.abc` and virtsnap's light enums, the whole cli
package imports in ~5 ms (byte-compiled) and a 41-command chain parses in ~1.5 ms (~40 us per command).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from ..enums import Enum

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from .control import Control


class OptType(Enum):
    """vshCmdOptType: how an option takes its value."""

    BOOL = "bool"      # --flag, no value
    STRING = "string"  # --opt VALUE, optional
    DATA = "data"      # required; may be given by position (VSH_OT_DATA)
    INT = "int"        # --opt NUMBER
    ARGV = "argv"      # every remaining data argument; must be last; may repeat
    ALIAS = "alias"    # another spelling: target name, or "name=value"


class Opt:
    """One option of a command (vshCmdOptDef)."""

    __slots__ = ("alias", "empty_ok", "help", "hidden", "name", "positional", "required", "type")

    def __init__(self, name: str, type: OptType, help: str = "", *, required: bool = False,
                 positional: bool = True, empty_ok: bool = False, alias: str = "", hidden: bool = False) -> None:
        self.name = name
        self.type = type
        self.help = help
        self.required = required      # VSH_OFLAG_REQ
        self.positional = positional  # False = VSH_OFLAG_REQ_OPT: only as --name VALUE
        self.empty_ok = empty_ok      # VSH_OFLAG_EMPTY_OK
        self.alias = alias
        self.hidden = hidden  # a virtsnap option on a virsh command whose help must stay virsh's, byte for byte

    def takes_data(self) -> bool:
        """Whether a bare data argument can land here (opts_need_arg in vsh.c)."""
        return self.type not in (OptType.BOOL, OptType.ALIAS) and self.positional

    def __repr__(self) -> str:
        return f"Opt({self.name!r}, {self.type.value})"


def flag(name: str, help: str) -> Opt:
    return Opt(name, OptType.BOOL, help)


def string(name: str, help: str, *, positional: bool = True, empty_ok: bool = False) -> Opt:
    return Opt(name, OptType.STRING, help, positional=positional, empty_ok=empty_ok)


def data(name: str, help: str) -> Opt:
    return Opt(name, OptType.DATA, help, required=True)


def argv(name: str, help: str) -> Opt:
    return Opt(name, OptType.ARGV, help)


def alias(name: str, target: str) -> Opt:
    return Opt(name, OptType.ALIAS, alias=target)


Handler = Callable[["Control", "Opts"], bool]


class Command:
    """A command definition (vshCmdDef): its option table, handler and help texts."""

    __slots__ = ("desc", "group", "handler", "help", "hidden", "name", "needs_connection", "opts")

    def __init__(self, name: str, handler: Handler, opts: Sequence[Opt], help: str, desc: str = "",
                 *, group: str = "", needs_connection: bool = True, hidden: bool = False) -> None:
        self.name = name
        self.handler = handler
        self.opts = tuple(opts)
        self.help = help
        self.desc = desc
        self.group = group
        self.needs_connection = needs_connection
        self.hidden = hidden  # VSH_CMD_FLAG_HIDDEN: runs and has help, but no group listing shows it
        for index, opt in enumerate(self.opts):  # the table invariants vshCmddefCheckInternals enforces
            if opt.type is OptType.ARGV and index != len(self.opts) - 1:
                raise ValueError(f"{name}: argv option {opt.name} must be listed last")

    def __repr__(self) -> str:
        return f"Command({self.name!r})"


class Group:
    """A command group as `help` lists it (vshCmdGrp)."""

    __slots__ = ("commands", "keyword", "name")

    def __init__(self, name: str, keyword: str, commands: Sequence[Command]) -> None:
        self.name = name
        self.keyword = keyword
        self.commands = tuple(commands)
        for cmd in self.commands:
            cmd.group = keyword


class Opts:
    """The options one parsed command was given, in command-line order (vshCmdOpt list)."""

    __slots__ = ("command", "items")

    def __init__(self, command: Command, items: list[tuple[Opt, str | None]]) -> None:
        self.command = command
        self.items = items

    def _find(self, name: str) -> tuple[Opt, str | None] | None:
        for item in self.items:
            if item[0].name == name:
                return item
        return None

    def has(self, name: str) -> bool:
        """vshCommandOptBool: the option was given (whatever its type)."""
        return self._find(name) is not None

    def value(self, name: str) -> str | None:
        """The raw value of a string option, or None when absent (no emptiness check)."""
        item = self._find(name)
        return None if item is None else item[1]

    def argv(self, name: str) -> list[str]:
        return [v for o, v in self.items if o.name == name and v is not None]

    def __repr__(self) -> str:
        return f"Opts({self.command.name}, {[(o.name, v) for o, v in self.items]!r})"


HELP_OPT = Opt("help", OptType.BOOL, "print help for this function")


class ParseError(Exception):
    """A syntax error; `messages` are the `error: ...` lines virsh prints (possibly none)."""

    def __init__(self, *messages: str) -> None:
        super().__init__("; ".join(messages))
        self.messages = list(messages)


# -- tokenizers ---------------------------------------------------------------------------------------
ARG, SUBCMD_END, END, ERROR = "arg", "subcmd_end", "end", "error"
Token = tuple[str, str]


class StringTokenizer:
    """vshCommandStringGetArg: virsh's shell-like splitting of one command string."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def next(self, report: bool = True) -> Token:
        text, n = self.text, len(self.text)
        p = self.pos
        while p < n and (text[p] in " \t" or (text[p] == "\\" and p + 1 < n and text[p + 1] == "\n")):
            p += 2 if text[p] == "\\" else 1
        if p >= n:
            self.pos = p
            return END, ""
        if text[p] in ";\n":
            self.pos = p + 1
            return SUBCMD_END, ""
        if text[p] == "#":  # a token starting with '#' comments out the rest of the line
            end = text.find("\n", p)
            self.pos = n if end < 0 else end + 1
            return SUBCMD_END, ""
        out: list[str] = []
        single = double = False
        while p < n:
            c = text[p]
            if not single and not double and c in " \t;\n":
                break
            if not double and c == "'":
                single = not single
                p += 1
                continue
            if not single and c == "\\":
                p += 1
                if p >= n:
                    if report:
                        raise ParseError("dangling \\")
                    return ERROR, ""  # position unchanged: the next reporting call fails here
                if text[p] == "\n":
                    p += 1
                    continue
            elif not single and c == '"':
                double = not double
                p += 1
                continue
            out.append(text[p])
            p += 1
        if double and report:
            raise ParseError('missing "')
        self.pos = p
        return ARG, "".join(out)


class ArgvTokenizer:
    """vshCommandArgvGetArg: several shell arguments form one command, taken verbatim."""

    def __init__(self, args: Sequence[str]) -> None:
        self.args = list(args)
        self.pos = 0

    def next(self, report: bool = True) -> Token:
        if self.pos >= len(self.args):
            return END, ""
        self.pos += 1
        return ARG, self.args[self.pos - 1]


# -- the parser ---------------------------------------------------------------------------------------
class Invocation:
    """One parsed command of a chain."""

    __slots__ = ("command", "opts")

    def __init__(self, command: Command, opts: Opts) -> None:
        self.command = command
        self.opts = opts

    def __repr__(self) -> str:
        return f"Invocation({self.command.name}, {self.opts.items!r})"


def _lookup_option(command: Command, name: str, seen: set[int], inline: str | None,
                   report: bool) -> tuple[Opt, int, str | None]:
    """vshCmddefGetOption: resolve --NAME (following aliases); returns (opt, index, inline value)."""
    if name == HELP_OPT.name:
        return HELP_OPT, -1, inline
    index = 0
    opts = command.opts
    while index < len(opts):
        opt = opts[index]
        if opt.name == name:
            if opt.type is OptType.ALIAS:
                target, eq, value = opt.alias.partition("=")
                if eq:
                    if inline is not None:
                        raise ParseError(f"invalid '=' after option --{opt.name}" if report else "")
                    inline = value
                name = target
                index += 1
                continue
            if index in seen and opt.type is not OptType.ARGV:
                raise ParseError(f"option --{name} already seen")
            seen.add(index)
            return opt, index, inline
        index += 1
    if command.name == "help":
        raise _Skip()
    raise ParseError(f"command '{command.name}' doesn't support option --{name}")


class _Skip(Exception):  # noqa: N818 - control flow, not an error
    """`help` ignores options and data it does not know."""


def parse_chain(tokenizer: StringTokenizer | ArgvTokenizer, find: Callable[[str], Command | None],
                help_name: str | None = None) -> list[Invocation]:
    """vshCommandParse: the whole chain, or ParseError before anything may run. A command given `--help` becomes
    the command `help_name` (looked up then: its table is not loaded for a chain that does not ask)."""
    chain: list[Invocation] = []
    while True:
        command: Command | None = None
        items: list[tuple[Opt, str | None]] = []
        need: list[int] = []
        seen: set[int] = set()
        data_only = False
        kind = END
        while True:
            kind, tok = tokenizer.next(True)
            if kind != ARG:
                break
            if command is None:
                if tok.startswith("#"):  # a quoted '#word' (or an argv word) starts a comment
                    while tokenizer.next(False)[0] == ARG:
                        pass
                    kind = SUBCMD_END
                    break
                command = find(tok)
                if command is None:
                    raise ParseError(f"unknown command: '{tok}'")
                need = [i for i, o in enumerate(command.opts) if o.takes_data()]
                continue
            opt: Opt | None
            value: str | None
            if not data_only and tok.startswith("--") and len(tok) > 2 and tok[2].isascii() and tok[2].isalnum():
                name, eq, inline_value = tok[2:].partition("=")
                try:
                    opt, index, inline = _lookup_option(command, name, seen, inline_value if eq else None, True)
                except _Skip:
                    continue
                if opt.type is not OptType.BOOL:
                    if inline is not None:
                        value = inline
                    else:
                        kind, value = tokenizer.next(True)
                        if kind != ARG:
                            what = "number" if opt.type is OptType.INT else "string"
                            raise ParseError(f"expected syntax: --{opt.name} <{what}>")
                    if opt.type is not OptType.ARGV and index in need:
                        need.remove(index)
                else:
                    if inline is not None:
                        raise ParseError(f"invalid '=' after option --{opt.name}")
                    value = None
            elif not data_only and tok == "--":
                data_only = True
                continue
            else:
                if not need:
                    if command.name == "help":
                        continue
                    raise ParseError(f"unexpected data '{tok}'")
                index = need[0]
                opt = command.opts[index]
                if opt.type is not OptType.ARGV:
                    need.pop(0)
                seen.add(index)
                value = tok
            items.append((opt, value))
        if command is not None:
            help_command = find(help_name) if help_name and any(o is HELP_OPT for o, _ in items) else None
            if help_command is not None:
                chain.append(Invocation(help_command,
                                        Opts(help_command, [(help_command.opts[0], command.name)])))
            else:
                missing = [o for i, o in enumerate(command.opts) if o.required and i not in seen]
                if missing:
                    raise ParseError(*(
                        f"command '{command.name}' requires <{o.name}> option"
                        if o.type in (OptType.DATA, OptType.ARGV)
                        else f"command '{command.name}' requires --{o.name} option"
                        for o in missing))
                chain.append(Invocation(command, Opts(command, items)))
        if kind == END:
            return chain


def tokenize(text: str) -> Iterator[Token]:
    """All tokens of a command string (a debugging and testing aid)."""
    tokenizer = StringTokenizer(text)
    while True:
        token = tokenizer.next()
        yield token
        if token[0] == END:
            return

