"""virtsnap: libvirt's domain snapshot API for QEMU, ESX, VirtualBox and a test driver, in Python.

`import virtsnap as libvirt` gives libvirt-python 9.0's whole surface (surface.py, generated): the calls
virtsnap implements work, every other one raises libvirt's VIR_ERR_NO_SUPPORT error.
"""

from __future__ import annotations

from . import flags as _flags
from . import surface
from .api import (
    VIR_DOMAIN_QEMU_AGENT_COMMAND_BLOCK,
    VIR_DOMAIN_QEMU_AGENT_COMMAND_DEFAULT,
    getVersion,
    open,
    openAuth,
    openReadOnly,
    qemuAgentCommand,
    registerErrorHandler,
    virConnect,
    virDomain,
    virDomainSnapshot,
    virGetLastError,
    virGetLastErrorCode,
    virGetLastErrorDomain,
    virGetLastErrorMessage,
    virInitialize,
    virResetLastError,
)
from .errors import ErrorCode, ErrorDomain, libvirtError
from .events import (
    virEventAddHandle,
    virEventAddTimeout,
    virEventRegisterDefaultImpl,
    virEventRemoveHandle,
    virEventRemoveTimeout,
    virEventRunDefaultImpl,
    virEventUpdateHandle,
    virEventUpdateTimeout,
)

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any

_filled = False


def _fill() -> None:
    """libvirt-python's VIR_* constants (generated), then virtsnap's own declarations, which must agree with them;
    then libvirt-python's classes and functions virtsnap does not implement (calls raise VIR_ERR_NO_SUPPORT).
    Made at the first use of one of them: a CLI command uses none (surface_more and these tables are about
    2 ms of its cold start)."""
    global _filled
    if _filled:
        return
    names = globals()  # a thread that comes in meanwhile fills it again, with the same values
    names.update(surface.CONSTANTS)
    names.update(_flags.exported_constants())
    names.update({f"VIR_ERR_{m.name}": int(m) for m in ErrorCode})
    names.update({f"VIR_FROM_{m.name}": int(m) for m in ErrorDomain})
    for name in (*surface.CLASSES, *surface.FUNCTIONS):
        names.setdefault(name, getattr(surface, name))
    _filled = True


def __getattr__(name: str) -> Any:
    # importlib.metadata costs ~10 ms: only `__version__` readers pay for it.
    if name == "__version__":
        from importlib import metadata

        try:
            return metadata.version("virtsnap")
        except metadata.PackageNotFoundError:  # a source tree that was never installed
            return "0+unknown"
    if not _filled and (name.startswith("VIR_") or name in surface.CLASSES or name in surface.FUNCTIONS):
        _fill()
        if name in globals():
            return globals()[name]
    raise AttributeError(f"module 'virtsnap' has no attribute {name!r}")


def __dir__() -> list[str]:
    _fill()
    return sorted(globals())


__all__ = [
    "VIR_DOMAIN_QEMU_AGENT_COMMAND_BLOCK",
    "VIR_DOMAIN_QEMU_AGENT_COMMAND_DEFAULT",
    "ErrorCode",
    "ErrorDomain",
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
    "virEventAddHandle",
    "virEventAddTimeout",
    "virEventRegisterDefaultImpl",
    "virEventRemoveHandle",
    "virEventRemoveTimeout",
    "virEventRunDefaultImpl",
    "virEventUpdateHandle",
    "virEventUpdateTimeout",
    "virGetLastError",
    "virGetLastErrorCode",
    "virGetLastErrorDomain",
    "virGetLastErrorMessage",
    "virInitialize",
    "virResetLastError",
]
