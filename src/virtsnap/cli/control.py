"""The state one virtsnap invocation carries between the commands of a chain (virsh's vshControl).

Output goes through `out`/`extra`/`error` exactly where virsh uses vshPrint/vshPrintExtra/vshError.
"""

from __future__ import annotations

import errno
import os
import sys

import virtsnap
from virtsnap.conf.unsafe import terminal_text
from virtsnap.errors import ErrorCode, ErrorDomain
from virtsnap.flags import ConnectFlags, Cred

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any, TextIO

    from .parser import Opts

BY_ID, BY_UUID, BY_NAME = 1, 2, 4
BY_ANY = BY_ID | BY_UUID | BY_NAME


class CommandError(Exception):
    """Raised by a command helper after it printed its error: the command returns failure."""


class Control:
    """Connection, global options, output streams and the pending libvirt error of the chain."""

    def __init__(self, uri: str | None = None, *, quiet: bool = False, readonly: bool = False,
                 timing: bool = False, stdout: TextIO | None = None, stderr: TextIO | None = None,
                 progname: str = "virtsnap") -> None:
        self.uri = uri
        self.quiet = quiet
        self.readonly = readonly
        self.timing = timing
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self.progname = progname
        self.conn: virtsnap.virConnect | None = None
        self.last_error: virtsnap.libvirtError | None = None
        self.interactive = False
        self._utf8: bool | None = None

    # -- output -------------------------------------------------------------------------------------
    # Everything printed passes terminal_text: a name a hypervisor hands over (VirtualBox, ESX) may hold escape
    # sequences or bidi overrides, and virsh would print them raw. Tables, trees, XML and JSON escape in their
    # own syntax first (see `value`, unsafe.xml_text, unsafe.json_text); this is the net under all of them.
    def out(self, text: str) -> None:
        """vshPrint: always printed."""
        self.stdout.write(terminal_text(text, "\n\t"))

    def out_escaped(self, text: str) -> None:
        """vshPrint of text whose every variable part already passed `value`/`values` and whose layout is
        ASCII the command wrote itself: not scanned again (a tree of 100,000 snapshots prints ~40 MB)."""
        self.stdout.write(text)

    def extra(self, text: str) -> None:
        """vshPrintExtra: informational output that -q suppresses."""
        if not self.quiet:
            self.stdout.write(terminal_text(text, "\n\t"))

    def error(self, message: str) -> None:
        """vshError: `error: MESSAGE` on stderr, stdout flushed first so 2>&1 interleaves correctly."""
        self.stdout.flush()
        self.stderr.write(f"error: {terminal_text(message, chr(10) + chr(9))}\n")
        self.stderr.flush()

    @staticmethod
    def value(text: str) -> str:
        """One value (a name) printed on a line of its own or in a line: even a newline in it is escaped."""
        return terminal_text(text)

    @staticmethod
    def values(texts: list[str]) -> list[str]:
        """`value` of each text, in one scan of them all when none needs escaping (100,000 names in a tree)."""
        joined = "".join(texts)
        if terminal_text(joined) is joined:
            return texts
        return [terminal_text(text) for text in texts]

    def save_error(self, exc: virtsnap.libvirtError) -> None:
        """Remember a libvirt error; the chain runner prints it if the command fails (last_error)."""
        self.last_error = exc

    def reset_error(self) -> None:
        self.last_error = None

    def report_error(self) -> None:
        """vshReportError: print the pending libvirt error, if any, and forget it."""
        if self.last_error is not None:
            self.error(self.last_error.get_error_message())
        self.last_error = None

    def fail(self, exc: virtsnap.libvirtError, message: str) -> bool:
        """virsh's usual `vshError(...); return false;` after a failed API call: the API's own message
        follows (printed by the runner)."""
        self.save_error(exc)
        self.error(message)
        return False

    @property
    def utf8_locale(self) -> bool:
        """Whether the C library would decode multibyte UTF-8 (virsh calls setlocale(LC_ALL, ""))."""
        if self._utf8 is None:
            value = ""
            for var in ("LC_ALL", "LC_CTYPE", "LANG"):
                value = os.environ.get(var, "")
                if value:
                    break
            norm = value.lower().replace("-", "")
            self._utf8 = "utf8" in norm
        return self._utf8

    # -- connection ---------------------------------------------------------------------------------
    def connect(self, uri: str | None = None, readonly: bool | None = None) -> bool:
        """virshReconnect: (re)open the connection; prints virsh's message on failure."""
        self.close()
        ro = self.readonly if readonly is None else readonly
        target = self.uri if uri is None else uri
        try:
            self.conn = virtsnap.openAuth(target, [list(DEFAULT_CRED_TYPES), default_auth_callback, None],
                                          ConnectFlags.RO if ro else 0)
        except virtsnap.libvirtError as exc:
            self.save_error(exc)
            self.error("failed to connect to the hypervisor")
            return False
        self.uri = target
        self.readonly = ro
        return True

    def connection(self) -> virtsnap.virConnect:
        """The open connection (virshConnectionHandler); CommandError when none can be made."""
        if self.conn is None and not self.connect():
            raise CommandError()
        assert self.conn is not None
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except virtsnap.libvirtError:
                self.error("Failed to disconnect from the hypervisor")
            self.conn = None

    # -- option helpers -----------------------------------------------------------------------------
    def string(self, opts: Opts, name: str) -> str | None:
        """vshCommandOptStringReq: the value, None when absent; an empty value is an error."""
        for opt, value in opts.items:
            if opt.name == name:
                if value == "" and not opt.empty_ok:
                    self.error(f"Failed to get option '{name}': Option argument is empty")
                    raise CommandError()
                return value
        return None

    def string_quiet(self, opts: Opts, name: str) -> str | None:
        """vshCommandOptStringQuiet: as `string` but an empty value fails silently."""
        for opt, value in opts.items:
            if opt.name == name:
                if value == "" and not opt.empty_ok:
                    raise CommandError()
                return value
        return None

    def exclusive(self, opts: Opts, first: str, second: str) -> None:
        """VSH_EXCLUSIVE_OPTIONS."""
        if opts.has(first) and opts.has(second):
            self.error(f"Options --{first} and --{second} are mutually exclusive")
            raise CommandError()

    def domain(self, opts: Opts, by: int = BY_ANY, optname: str = "domain") -> tuple[virtsnap.virDomain, str]:
        """virshCommandOptDomainBy: look the domain up by ID, UUID, then name; virsh's one-line error."""
        name = self.string(opts, optname)
        if name is None:  # the parser enforces required options; only a programming error gets here
            self.error(f"command '{opts.command.name}' requires <{optname}> option")
            raise CommandError()
        conn = self.connection()
        dom: virtsnap.virDomain | None = None
        if by & BY_ID:
            ident = parse_c_int(name)
            if ident is not None and ident >= 0:
                dom = _quiet(conn.lookupByID, ident)
        if dom is None and by & BY_UUID and len(name.encode("utf-8", "surrogateescape")) == 36:
            dom = _quiet(conn.lookupByUUIDString, name)
        if dom is None and by & BY_NAME:
            dom = _quiet(conn.lookupByName, name)
        self.reset_error()
        if dom is None:
            self.error(f"failed to get domain '{name}'")
            raise CommandError()
        return dom, name


# virConnectAuthDefault, which virsh connects with: these credential types, asked on the terminal.
DEFAULT_CRED_TYPES = (Cred.AUTHNAME, Cred.ECHOPROMPT, Cred.REALM, Cred.PASSPHRASE, Cred.NOECHOPROMPT, Cred.EXTERNAL)


def default_auth_callback(creds: list[list[Any]], cbdata: object) -> int:
    """virConnectAuthCallbackDefault, asked on the terminal: prompts go to stderr (stdout stays the command's
    output), passwords are read without echo, and without a terminal it declines (-1) so that the driver
    falls back to its auth file or environment instead of blocking on a pipe."""
    if not sys.stdin.isatty():
        return -1
    for cred in creds:
        kind, prompt, challenge, defresult = cred[0], cred[1], cred[2], cred[3]
        answer: str | None = None
        if kind == Cred.EXTERNAL:
            if challenge != "PolicyKit":
                return -1
            continue
        if kind in (Cred.USERNAME, Cred.AUTHNAME, Cred.ECHOPROMPT, Cred.REALM):
            sys.stderr.write(f"{prompt}: ")
            sys.stderr.flush()
            line = sys.stdin.readline()
            answer = line[:-1] if line.endswith("\n") else line
        elif kind in (Cred.PASSPHRASE, Cred.NOECHOPROMPT):
            import getpass

            try:
                answer = getpass.getpass(f"{prompt}: ", stream=sys.stderr)
            except (EOFError, OSError):
                answer = ""
        else:
            return -1
        cred[4] = answer or (defresult or "")
    return 0


def _quiet(fn: Any, arg: Any) -> Any:
    try:
        return fn(arg)
    except virtsnap.libvirtError:
        return None


def parse_c_int(text: str) -> int | None:
    """virStrToLong_i with no end pointer: strtol over the whole string, in int range, else None."""
    stripped = text.lstrip(" \t\n\v\f\r")
    body = stripped[1:] if stripped[:1] in "+-" else stripped
    if not body or not body.isascii() or not body.isdigit():
        return None
    value = int(stripped)
    if not -(2**31) <= value < 2**31:
        return None
    return value


def unsupported(c_name: str) -> virtsnap.libvirtError:
    """The error libvirt gives for an entry point the connection's driver lacks (VIR_ERR_NO_SUPPORT)."""
    return virtsnap.libvirtError(f"this function is not supported by the connection driver: {c_name}",
                                 ErrorCode.NO_SUPPORT, ErrorDomain.NONE)


def call_optional(obj: object, method: str, c_name: str, *args: Any) -> Any:
    """Call a libvirt-python method the virtsnap API may not offer; absent means VIR_ERR_NO_SUPPORT,
    which virsh's commands already handle as "older server" fallbacks."""
    fn = getattr(obj, method, None)
    if fn is None:
        raise unsupported(c_name)
    return fn(*args)


def system_error(message: str, errno_value: int) -> virtsnap.libvirtError:
    """virReportSystemError: `MESSAGE: strerror(errno)` (VIR_ERR_SYSTEM_ERROR)."""
    return virtsnap.libvirtError(f"{message}: {os.strerror(errno_value)}", ErrorCode.SYSTEM_ERROR,
                                 ErrorDomain.NONE)


MAX_XML_FILE = 10 * 1024 * 1024  # VSH_MAX_XML_FILE


def read_file(path: str) -> str:
    """virFileReadAll(path, VSH_MAX_XML_FILE): the file's text, or libvirt's system error."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise system_error(f"Failed to open file '{path}'", exc.errno or 0) from exc
    try:
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError as exc:
                raise system_error(f"Failed to read file '{path}'", exc.errno or 0) from exc
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_XML_FILE:
                raise system_error(f"Failed to read file '{path}'", errno.EOVERFLOW)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape")
