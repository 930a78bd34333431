"""Connection URIs as libvirt spells them (test:///default, qemu:///session, esx://host/?no_verify=1, ...).

Parsing only: which driver a scheme selects is decided in `drivers/__init__.py`.
"""

from __future__ import annotations

import os

from .errors import ErrorCode, ErrorDomain, error
from .errors import redact as redact_secrets
from .records import Frozen


class URI(Frozen):
    _fields = ("scheme", "transport", "user", "host", "port", "path", "params", "text")
    __slots__ = _fields

    def __init__(self, scheme: str, transport: str | None, user: str | None, host: str | None, port: int | None,
                 path: str, params: dict[str, str], text: str) -> None:
        self.scheme = scheme  # the driver part: test, qemu, esx, vpx, vbox
        self.transport = transport
        self.user = user
        self.host = host
        self.port = port
        self.path = path
        self.params = params
        self.text = text

    def __str__(self) -> str:
        return self.text

    def flag(self, name: str) -> bool:
        return self.params.get(name, "0") not in ("0", "", "no", "false")


def redact(text: str) -> str:
    """A URI fit for messages: any password in it replaced (errors.redact), and at most 200 characters."""
    text = redact_secrets(text)
    return text if len(text) <= 200 else text[:200] + "..."


def default_uri() -> str:
    for var in ("VIRTSNAP_DEFAULT_URI", "LIBVIRT_DEFAULT_URI"):
        value = os.environ.get(var)
        if value:
            return value
    return "qemu:///system" if os.geteuid() == 0 else "qemu:///session"


def parse_uri(text: str | None) -> URI:
    """Parse a connection URI; a malformed one is VIR_ERR_INVALID_ARG, as in libvirt."""
    if text is None or text == "":
        text = default_uri()
    if any(ord(c) < 32 for c in text):
        raise error(ErrorCode.INVALID_ARG, ErrorDomain.NONE, "URI contains control characters")
    local = _local_uri(text)
    if local is not None:
        return local
    # urllib.parse (and the ipaddress module it loads) costs ~2 ms of a command's cold start: only URIs
    # with a host, a query or escapes need it
    from urllib.parse import parse_qsl, unquote, urlsplit

    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise error(ErrorCode.INVALID_ARG, ErrorDomain.NONE, f"Unable to parse URI {redact(text)}") from exc
    if not parts.scheme:
        raise error(ErrorCode.INVALID_ARG, ErrorDomain.NONE, f"Unable to parse URI {redact(text)}")
    scheme, _, transport = parts.scheme.partition("+")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    return URI(
        scheme=scheme.lower(),
        transport=transport or None,
        user=unquote(parts.username) if parts.username else None,
        host=parts.hostname or None,
        port=port,
        path=parts.path or "/",
        params=params,
        text=text,
    )


_SCHEME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_SCHEME_REST = _SCHEME_FIRST | frozenset("0123456789+-.")
_PATH_SPECIAL = frozenset(" ?#%@[]\\")


def _local_uri(text: str) -> URI | None:
    """`scheme:///path` (no host, user, port, query, fragment or escape: qemu:///session, test:///default) as
    urlsplit would split it, or None for any other text."""
    scheme, sep, path = text.partition(":///")
    if (not sep or not scheme or scheme[0] not in _SCHEME_FIRST or not _SCHEME_REST.issuperset(scheme)
            or not _PATH_SPECIAL.isdisjoint(path)):
        return None
    driver, _, transport = scheme.partition("+")
    return URI(scheme=driver.lower(), transport=transport or None, user=None, host=None, port=None,
               path="/" + path, params={}, text=text)
