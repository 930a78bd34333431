"""The one error type of virtsnap, with libvirt's error codes, domains and message prefixes.

Every failure that reaches a caller is a `libvirtError`; drivers translate their own errors at the edge.
"""

from __future__ import annotations

from .enums import IntEnum, member
from .locks import Later

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any, NoReturn


class ErrorCode(IntEnum):
    """virErrorNumber: the subset of libvirt's codes that virtsnap raises (same numbers)."""

    OK = 0
    INTERNAL_ERROR = 1
    NO_SUPPORT = 3
    NO_CONNECT = 5
    INVALID_CONN = 6
    INVALID_DOMAIN = 7
    INVALID_ARG = 8
    OPERATION_FAILED = 9
    NO_NAME = 21
    XML_ERROR = 27
    DOM_EXIST = 28
    OPERATION_DENIED = 29
    XML_DETAIL = 35
    SYSTEM_ERROR = 38
    NO_DOMAIN = 42
    NO_NETWORK = 43
    AUTH_FAILED = 45
    OPERATION_INVALID = 55
    CONFIG_UNSUPPORTED = 67
    OPERATION_TIMEOUT = 68
    INVALID_DOMAIN_SNAPSHOT = 71
    NO_DOMAIN_SNAPSHOT = 72
    ARGUMENT_UNSUPPORTED = 74
    SNAPSHOT_REVERT_RISKY = 77
    OPERATION_ABORTED = 78
    AUTH_CANCELLED = 79
    OPERATION_UNSUPPORTED = 84
    AGENT_UNRESPONSIVE = 86
    RESOURCE_BUSY = 87
    XML_INVALID_SCHEMA = 92
    AUTH_UNAVAILABLE = 94


class ErrorDomain(IntEnum):
    """virErrorDomain: where an error comes from (same numbers as libvirt)."""

    NONE = 0
    XML = 5
    RPC = 7
    CONF = 9
    QEMU = 10
    TEST = 12
    REMOTE = 13
    NETWORK = 19
    DOMAIN = 20
    VBOX = 25
    ESX = 28
    DOMAIN_SNAPSHOT = 35
    EVENT = 40
    AUTH = 46


class ErrorLevel(IntEnum):
    NONE = 0
    WARNING = 1
    ERROR = 2


# virErrorMsgStrings: (message without detail, message with detail); "{}" stands for the detail.
_MESSAGES: dict[ErrorCode, tuple[str, str]] = {
    ErrorCode.INTERNAL_ERROR: ("internal error", "internal error: {}"),
    ErrorCode.NO_SUPPORT: (
        "this function is not supported by the connection driver",
        "this function is not supported by the connection driver: {}",
    ),
    ErrorCode.NO_CONNECT: ("no connection driver available", "no connection driver available for {}"),
    ErrorCode.INVALID_CONN: ("invalid connection pointer in", "invalid connection pointer in {}"),
    ErrorCode.INVALID_DOMAIN: ("invalid domain pointer in", "invalid domain pointer in {}"),
    ErrorCode.INVALID_ARG: ("invalid argument", "invalid argument: {}"),
    ErrorCode.OPERATION_FAILED: ("operation failed", "operation failed: {}"),
    ErrorCode.NO_NAME: ("missing name information", "missing name information in {}"),
    ErrorCode.XML_ERROR: ("XML description is invalid or not well formed", "XML error: {}"),
    ErrorCode.DOM_EXIST: ("this domain exists already", "domain {} exists already"),
    ErrorCode.OPERATION_DENIED: ("operation forbidden for read only access", "operation forbidden: {}"),
    ErrorCode.XML_DETAIL: ("parser error", "{}"),
    ErrorCode.SYSTEM_ERROR: ("system call error", "{}"),
    ErrorCode.NO_DOMAIN: ("Domain not found", "Domain not found: {}"),
    ErrorCode.NO_NETWORK: ("Network not found", "Network not found: {}"),
    ErrorCode.AUTH_FAILED: ("authentication failed", "authentication failed: {}"),
    ErrorCode.OPERATION_INVALID: ("Requested operation is not valid", "Requested operation is not valid: {}"),
    ErrorCode.CONFIG_UNSUPPORTED: ("unsupported configuration", "unsupported configuration: {}"),
    ErrorCode.OPERATION_TIMEOUT: ("Timed out during operation", "Timed out during operation: {}"),
    ErrorCode.INVALID_DOMAIN_SNAPSHOT: ("Invalid domain snapshot", "Invalid domain snapshot: {}"),
    ErrorCode.NO_DOMAIN_SNAPSHOT: ("Domain snapshot not found", "Domain snapshot not found: {}"),
    ErrorCode.ARGUMENT_UNSUPPORTED: ("argument unsupported", "argument unsupported: {}"),
    ErrorCode.SNAPSHOT_REVERT_RISKY: ("revert requires force", "revert requires force: {}"),
    ErrorCode.OPERATION_ABORTED: ("operation aborted", "operation aborted: {}"),
    ErrorCode.AUTH_CANCELLED: ("authentication cancelled", "authentication cancelled: {}"),
    ErrorCode.OPERATION_UNSUPPORTED: ("Operation not supported", "Operation not supported: {}"),
    ErrorCode.AGENT_UNRESPONSIVE: ("Guest agent is not responding", "Guest agent is not responding: {}"),
    ErrorCode.RESOURCE_BUSY: ("resource busy", "resource busy: {}"),
    ErrorCode.XML_INVALID_SCHEMA: (
        "XML document failed to validate against schema",
        "XML document failed to validate against schema: {}",
    ),
    ErrorCode.AUTH_UNAVAILABLE: ("authentication unavailable", "authentication unavailable: {}"),
}


def redact(text: str) -> str:
    """`text` with the password of every URI in it replaced by `***` (`scheme://user:***@host`, also when the
    password holds `/` or `@`, and `password=***` in a query). Every libvirtError message passes through it,
    so no driver can echo a URI's password into an error or a log line."""
    if "@" not in text and "=" not in text:
        return text  # the common case: no user part, no query
    import re

    text = re.sub(r"(?i)\b([a-z][a-z0-9+.-]*:(?://)?[^\s/@:'\"]*):[^\s'\"]*@", r"\1:***@", text)
    return re.sub(r"(?i)([?&;](?:password|passwd|pass|pwd|secret)=)[^&#;\s'\"]*", r"\1***", text)


def format_message(code: ErrorCode, detail: str | None) -> str:
    """The message libvirt's virErrorMsg builds for `code` with an optional detail."""
    bare, with_detail = _MESSAGES.get(code, ("unknown error", "{}"))
    return bare if detail is None else with_detail.format(detail)


def _thread_local() -> Any:
    import threading  # at the first error: a command that fails nothing does without it (issue 21)

    return threading.local()


_local = Later(_thread_local)  # .last: the thread's last reported error


def last_error() -> tuple[Any, ...] | None:
    """This thread's last reported error, as libvirt's virGetLastError keeps it (set at the API edge)."""
    local = _local.made
    last: tuple[Any, ...] | None = None if local is None else getattr(local, "last", None)
    return last


def set_last_error(err: tuple[Any, ...] | None) -> None:
    if err is None and _local.made is None:
        return  # no thread has had an error: there is none to reset
    _local.get().last = err


class libvirtError(Exception):  # noqa: N801 - the libvirt-python name
    """A failed call: libvirt's code, domain and message, read with libvirt-python's getters."""

    def __init__(
        self,
        message: str,
        code: int | None = None,
        domain: int = ErrorDomain.NONE,
        level: int = ErrorLevel.ERROR,
        str1: str | None = None,
        str2: str | None = None,
        str3: str | None = None,
    ) -> None:
        message = redact(message)
        str1, str2, str3 = (None if x is None else redact(x) for x in (str1, str2, str3))
        # libvirtError(defmsg), as programs raise it: libvirt-python's, which carries the thread's last error
        # (its message wins) or, without one, no error at all (the getters return None).
        err: tuple[Any, ...] | None
        if code is None:
            err = last_error()
            if err is not None:
                message, domain, level, str1, str2, str3 = err[2], err[1], err[3], err[4], err[5], err[6]
                code = int(err[0])
        else:
            err = (int(code), int(domain), message, int(level), str1, str2, str3, 0, 0)
        super().__init__(message)
        code = ErrorCode.INTERNAL_ERROR if code is None else code
        self.message = message
        self.code = member(ErrorCode, code, code)
        self.domain = member(ErrorDomain, domain, domain)
        self.level = level
        self.str1, self.str2, self.str3 = str1, str2, str3
        self.err = err

    def get_error_code(self) -> Any:
        return None if self.err is None else int(self.code)

    def get_error_domain(self) -> Any:
        return None if self.err is None else int(self.domain)

    def get_error_message(self) -> Any:
        return None if self.err is None else self.message

    def get_error_level(self) -> Any:
        return None if self.err is None else int(self.level)

    def get_str1(self) -> str | None:
        return self.str1

    def get_str2(self) -> str | None:
        return self.str2

    def get_str3(self) -> str | None:
        return self.str3

    def get_int1(self) -> Any:
        return None if self.err is None else 0

    def get_int2(self) -> Any:
        return None if self.err is None else 0

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"libvirtError(code={int(self.code)}, domain={int(self.domain)}, message={self.message!r})"


def error(code: ErrorCode, domain: ErrorDomain, detail: str | None = None) -> libvirtError:
    """An error whose message carries libvirt's standard prefix for `code` (virReportError)."""
    return libvirtError(format_message(code, detail), code, domain, str2=detail)


def raw_error(code: ErrorCode, domain: ErrorDomain, message: str) -> libvirtError:
    """An error whose message is used as is (libvirt's virReportInvalidArg and friends)."""
    return libvirtError(message, code, domain)


def fail(code: ErrorCode, domain: ErrorDomain, detail: str | None = None) -> NoReturn:
    raise error(code, domain, detail)


def protected_refusal(names: list[str]) -> libvirtError:
    """The refusal to delete protected snapshots without FORCE (api.py, the QEMU engine and libvirt+ say the same)."""
    return error(ErrorCode.OPERATION_INVALID, ErrorDomain.DOMAIN_SNAPSHOT,
                 "snapshot " + ", ".join(f"'{n}'" for n in names) + " is protected: unprotect it "
                 "(snapshot-protect --off) or delete with --force (VIR_DOMAIN_SNAPSHOT_DELETE_FORCE)")


def not_supported(function: str, domain: int) -> libvirtError:
    """libvirt's virReportUnsupportedError for a driver that lacks `function` (a C name, e.g. virDomainBlockCommit)."""
    return libvirtError(format_message(ErrorCode.NO_SUPPORT, function), ErrorCode.NO_SUPPORT, domain, str1=None,
                        str2=function)
