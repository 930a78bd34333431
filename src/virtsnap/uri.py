"""Connection URIs as libvirt spells them (test:///default, qemu:///session, esx://host/?no_verify=1, ...).

Parsing only: which driver a scheme selects is decided in `drivers/__init__.py`.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, unquote, urlsplit

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
