"""Entry point: virsh's global options, the chain runner (vshCommandRun) and interactive mode.

`virtsnap [-c URI] [-q] [-r] [-t] 'cmd; cmd ...'` or `virtsnap [options] COMMAND ARG...`; exit status is
that of the last command, 1 on a syntax error (nothing runs then), 130 on Ctrl-C.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Sequence

import virtsnap
from virtsnap.conf.unsafe import terminal_text

from .control import CommandError, Control
from .parser import ArgvTokenizer, Invocation, ParseError, StringTokenizer, parse_chain
from .progress_display import progress_bar
from .registry import WHERE, find_command, groups

PROGNAME = "virtsnap"
# (long name, short letter, takes an argument: "required" | "optional" | "none")
LONG_OPTIONS = (
    ("connect", "c", "required"),
    ("debug", "d", "required"),
    ("escape", "e", "required"),
    ("help", "h", "none"),
    ("keepalive-interval", "k", "required"),
    ("keepalive-count", "K", "required"),
    ("log", "l", "required"),
    ("quiet", "q", "none"),
    ("readonly", "r", "none"),
    ("timing", "t", "none"),
    ("version", "v", "optional"),
)
SHORT_WITH_ARG = set("cdekKl")
SHORT_FLAGS = set("hqrtvV")


class Exit(Exception):  # noqa: N818 - a request to leave, not an error
    """Leave main() with this status (after printing whatever the option asked for)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Options:
    __slots__ = ("args", "quiet", "readonly", "timing", "uri")

    def __init__(self) -> None:
        self.uri: str | None = None
        self.quiet = False
        self.readonly = False
        self.timing = False
        self.args: list[str] = []


def _err(message: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"error: {terminal_text(message, chr(10))}\n")


def parse_global(argv: Sequence[str]) -> Options:
    """getopt_long(argc, argv, "+:c:d:e:hk:K:l:qrtvV", ...): options stop at the first non-option."""
    options = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            matches = [o for o in LONG_OPTIONS if o[0] == name] or [o for o in LONG_OPTIONS if o[0].startswith(name)]
            if len(matches) != 1:
                _err(f"unsupported option '{arg}'. See --help.")
                raise Exit(1)
            long_name, letter, kind = matches[0]
            if kind == "none" and eq:
                _err(f"unsupported option '-{letter}'. See --help.")
                raise Exit(1)
            optarg: str | None = value if eq else None
            if kind == "required" and optarg is None:
                if i + 1 >= len(argv):
                    _err(f"option '-{letter}'/'--{long_name}' requires an argument")
                    raise Exit(1)
                i += 1
                optarg = argv[i]
            i += 1
            _apply(options, letter, optarg, long_form=True)
            continue
        if arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                letter = arg[j]
                if letter in SHORT_WITH_ARG:
                    if j + 1 < len(arg):
                        optarg = arg[j + 1:]
                    elif i + 1 < len(argv):
                        i += 1
                        optarg = argv[i]
                    else:
                        long_name = next(o[0] for o in LONG_OPTIONS if o[1] == letter)
                        _err(f"option '-{letter}'/'--{long_name}' requires an argument")
                        raise Exit(1)
                    _apply(options, letter, optarg, long_form=False)
                    break
                if letter not in SHORT_FLAGS:
                    _err(f"unsupported option '-{letter}'. See --help.")
                    raise Exit(1)
                _apply(options, letter, None, long_form=False)
                j += 1
            i += 1
            continue
        break
    options.args = list(argv[i:])
    return options


def _apply(options: Options, letter: str, optarg: str | None, long_form: bool) -> None:
    if letter == "c":
        options.uri = optarg
    elif letter == "d":
        name = "--debug" if long_form else "-d"
        level = _c_int(optarg or "")
        if level is None:
            _err(f"option {name} takes a numeric argument")
            raise Exit(1)
        if not 0 <= level <= 4:
            _err(f"ignoring debug level {level} out of range [0-4]")
    elif letter == "e":
        value = optarg or ""
        if not ((len(value) == 2 and value[0] == "^" and ("a" <= value[1] <= "z" or "@" <= value[1] <= "_"))
                or (len(value) == 1 and value != "^")):
            _err(f"Invalid string '{value}' for escape sequence")
            raise Exit(1)
    elif letter in "kK":
        name = ("--keepalive-interval" if letter == "k" else "--keepalive-count") if long_form else f"-{letter}"
        number = _c_int(optarg or "", base0=True)
        if number is None:
            _err(f"Invalid value for option {name}")
            raise Exit(1)
        if number < 0:
            _err(f"option {name} requires a positive integer argument")
            raise Exit(1)
    elif letter == "l":
        pass  # virsh's own debug log; virtsnap logs nothing (accepted for compatibility)
    elif letter == "h":
        sys.stdout.write(usage())
        raise Exit(0)
    elif letter == "q":
        options.quiet = True
    elif letter == "r":
        options.readonly = True
    elif letter == "t":
        options.timing = True
    elif letter == "v" and (optarg == "short" or (optarg is None and not long_form)):
        sys.stdout.write(virtsnap.__version__ + "\n")
        raise Exit(0)
    elif letter in "vV":
        sys.stdout.write(long_version())
        raise Exit(0)


def _c_int(text: str, base0: bool = False) -> int | None:
    try:
        return int(text.strip(), 0 if base0 else 10)
    except ValueError:
        return None


def long_version() -> str:
    api = virtsnap.getVersion()
    return (f"Virtsnap command line tool of virtsnap {virtsnap.__version__}\n"
            f"Implements the libvirt API of libvirt {api // 1_000_000}.{api // 1000 % 1000}.{api % 1000}\n"
            "A virsh-compatible front end to virtsnap's domain snapshot API.\n\n"
            " Drivers: test qemu esx vpx vbox\n"
            " Commands: " + " ".join(sorted(WHERE)) + "\n")


def usage() -> str:
    lines = [
        f"\n{PROGNAME} [options]... [<command_string>]\n{PROGNAME} [options]... <command> [args...]\n\n",
        "  options:\n",
        "    -c | --connect=URI      hypervisor connection URI\n",
        "    -d | --debug=NUM        debug level [0-4] (accepted, ignored)\n",
        "    -e | --escape <char>    set escape sequence for console (accepted, ignored)\n",
        "    -h | --help             this help\n",
        "    -k | --keepalive-interval=NUM\n",
        "                            keepalive interval in seconds (accepted, ignored)\n",
        "    -K | --keepalive-count=NUM\n",
        "                            number of possible missed keepalive messages (accepted, ignored)\n",
        "    -l | --log=FILE         output logging to file (accepted, ignored)\n",
        "    -q | --quiet            quiet mode\n",
        "    -r | --readonly         connect readonly\n",
        "    -t | --timing           print timing information\n",
        "    -v                      short version\n",
        "    -V                      long version\n",
        "         --version[=TYPE]   version, TYPE is short or long (default long)\n",
        "  commands (non interactive mode):\n\n",
    ]
    for group in groups():
        lines.append(f" {group.name} (help keyword '{group.keyword}')\n")
        lines += [f"    {cmd.name:<30} {cmd.help}\n" for cmd in group.commands if not cmd.hidden]
        lines.append("\n")
    lines.append("\n  (specify help <group> for details about the commands in the group)\n")
    lines.append("\n  (specify help <command> for details about the command)\n\n")
    return "".join(lines)


# -- running ------------------------------------------------------------------------------------------
def parse(args: Sequence[str]) -> list[Invocation]:
    """virsh's rule: one argument is a command string (`;`, quotes...), several are one command's words."""
    tokenizer = StringTokenizer(args[0]) if len(args) == 1 else ArgvTokenizer(args)
    return parse_chain(tokenizer, find_command, "help")


def run_command(ctl: Control, invocation: Invocation) -> bool:
    """One command; any failure becomes False with its messages printed or pending in ctl.last_error."""
    command = invocation.command
    if command.needs_connection and ctl.conn is None and not ctl.connect():
        return False
    try:
        with progress_bar(ctl.quiet):
            return bool(command.handler(ctl, invocation.opts))
    except CommandError:
        return False
    except virtsnap.libvirtError as exc:
        ctl.save_error(exc)
        return False
    except (KeyboardInterrupt, SystemExit, BrokenPipeError):
        raise
    except Exception as exc:  # a bug must not print a traceback; virsh-style one-liner instead
        ctl.error(f"internal error: {type(exc).__name__}: {exc}")
        return False


def run_chain(ctl: Control, chain: Sequence[Invocation]) -> bool:
    """vshCommandRun: run every command; the result is the last one's."""
    ok = True
    for invocation in chain:
        started = time.perf_counter()
        ok = run_command(ctl, invocation)
        if not ok:
            ctl.report_error()
        if invocation.command.name in ("quit", "exit"):
            return ok
        if ctl.timing:
            ctl.out(f"\n(Time: {(time.perf_counter() - started) * 1000:.3f} ms)\n\n")
        else:
            ctl.extra("\n")
    return ok


def interactive(ctl: Control) -> None:
    """virsh's shell: one command line at a time until EOF or quit; syntax errors skip the line."""
    ctl.interactive = True
    tty = sys.stdin.isatty()
    if tty:
        try:
            import readline  # noqa: F401 - line editing for input()
        except ImportError:
            pass
    if not ctl.quiet:
        ctl.out(f"Welcome to {PROGNAME}, the virtualization interactive terminal.\n\n"
                "Type:  'help' for help with commands\n       'quit' to quit\n\n")
    prompt = f"{PROGNAME} > " if ctl.readonly else f"{PROGNAME} # "
    while ctl.interactive:
        ctl.stdout.flush()
        if tty:
            try:
                line: str | None = input(prompt)
            except EOFError:
                line = None
        else:
            ctl.out(prompt)
            ctl.stdout.flush()
            raw = sys.stdin.readline()
            line = raw.rstrip("\n") if raw else None
            if line is not None:
                ctl.out(line + "\n")
        if line is None:
            ctl.out("\n")
            break
        if not line:
            continue
        try:
            chain = parse_chain(StringTokenizer(line), find_command, "help")
        except ParseError as exc:
            for message in exc.messages:
                ctl.error(message)
            continue
        run_chain(ctl, chain)


def _quiet(ctx: object, err: object) -> None:
    pass


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    ctl: Control | None = None
    virtsnap.registerErrorHandler(_quiet, None)  # virsh prints errors itself, never libvirt's default line
    try:
        try:
            options = parse_global(args)
        except Exit as exc:
            return exc.status
        if options.args[:1] == ["serve"]:  # the web view is a long-running server, not a virsh command
            from virtsnap.web.serve import main as serve

            return serve(options.args[1:], uri=options.uri, readonly=options.readonly)
        if options.args[:1] == ["rpc"]:  # the far end of an ssh connection: protocol lines, not a virsh command
            from virtsnap.rpc.server import main as rpc

            return rpc(options.args[1:], readonly=options.readonly)
        chain: list[Invocation] = []
        if options.args:
            if options.args == [""]:
                return 1  # vshCommandStringParse refuses an empty string silently
            try:
                chain = parse(options.args)
            except ParseError as exc:
                for message in exc.messages:
                    _err(message)
                return 1
        uri = options.uri
        ctl = Control(uri if uri is not None else os.environ.get("VIRSH_DEFAULT_CONNECT_URI") or None,
                      quiet=options.quiet, readonly=options.readonly, timing=options.timing, progname=PROGNAME)
        if uri is not None and not ctl.connect():  # a named connection must work before anything runs
            ctl.report_error()
            return 1
        if not options.args:
            interactive(ctl)
            return 0
        ok = run_chain(ctl, chain)
        ctl.close()
        sys.stdout.flush()
        return 0 if ok else 1
    except KeyboardInterrupt:
        try:
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass
        sys.stderr.write("error: interrupted\n")
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): stop quietly, and keep the interpreter's final flush silent
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    finally:
        if ctl is not None:
            try:
                ctl.close()
            except Exception:  # closing must never turn into a traceback
                pass
        if argv is None:
            # Called as the program: the interpreter exits next, and its shutdown would walk every object the
            # imports created looking for cycles (~13 ms of a cold command). Frozen objects are skipped; the
            # process frees them all anyway. Callers passing argv (tests, benchmarks) keep their collector.
            gc.freeze()


if __name__ == "__main__":
    raise SystemExit(main())
