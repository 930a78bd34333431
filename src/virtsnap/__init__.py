"""virtsnap: libvirt's domain snapshot API for QEMU, ESX, VirtualBox and a test driver, in Python.

`import virtsnap as libvirt` runs libvirt-python scripts that use the snapshot and domain calls below.
"""

from __future__ import annotations

from typing import Any

from .api import (
    VIR_DOMAIN_QEMU_AGENT_COMMAND_BLOCK,
    VIR_DOMAIN_QEMU_AGENT_COMMAND_DEFAULT,
    open,
    openAuth,
    openReadOnly,
    qemuAgentCommand,
    virConnect,
    virDomain,
    virDomainSnapshot,
)
from .errors import ErrorCode, ErrorDomain, libvirtError
from .flags import exported_constants

__version__ = "0.1.0"

# libvirt-python's VIR_* constants, each defined once in flags.py / errors.py.
globals().update(exported_constants())
globals().update({f"VIR_ERR_{m.name}": int(m) for m in ErrorCode})
globals().update({f"VIR_FROM_{m.name}": int(m) for m in ErrorDomain})
VIR_ERR_NONE = 0
VIR_ERR_WARNING = 1
VIR_ERR_ERROR = 2

_error_handler: list[Any] = [None, None]


def registerErrorHandler(f: Any, ctx: Any) -> int:  # noqa: N802 - libvirt-python's name
    """Accepted for compatibility; virtsnap reports errors only by raising libvirtError."""
    _error_handler[:] = [f, ctx]
    return 1


def getVersion(name: str | None = None) -> int:  # noqa: N802
    major, minor, micro = (int(x) for x in __version__.split("."))
    return major * 1_000_000 + minor * 1000 + micro


__all__ = [
    "VIR_DOMAIN_QEMU_AGENT_COMMAND_BLOCK",
    "VIR_DOMAIN_QEMU_AGENT_COMMAND_DEFAULT",
    "getVersion",
    "libvirtError",
    "open",
    "openAuth",
    "openReadOnly",
    "qemuAgentCommand",
    "registerErrorHandler",
    "virConnect",
    "virDomain",
    "virDomainSnapshot",
]
