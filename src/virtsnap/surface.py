"""libvirt 9.0's surface, generated: every VIR_* constant, class and method with its signature.

Written by scripts/gen_libvirt_surface.py from libvirt-api.xml and python3-libvirt's libvirt.py; do not edit.
A method that virtsnap does not implement raises libvirt's VIR_ERR_NO_SUPPORT error naming the C function.
"""

# ruff: noqa: E501, N801, N816
from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any

    from .surface_more import virConnectStubs, virDomainSnapshotStubs, virDomainStubs
else:
    def _made(owner: Any, name: str) -> Any:
        """`name` of a class or an instance once the methods are made, else the AttributeError."""
        if _fill_stubs():
            return getattr(owner, name)
        is_class = isinstance(owner, type)
        what = f"type object {owner.__name__!r}" if is_class else f"{type(owner).__name__!r} object"
        raise AttributeError(f"{what} has no attribute {name!r}", name=name, obj=owner)

    class _Stubbed(type):
        __getattr__ = _made

        def __dir__(cls) -> list[str]:
            _fill_stubs()
            return type.__dir__(cls)

    class _Stubs(metaclass=_Stubbed):
        __getattr__ = _made

        def __dir__(self) -> list[str]:
            _fill_stubs()
            return object.__dir__(self)

    virConnectStubs = virDomainStubs = virDomainSnapshotStubs = _Stubs

_filled = False

LIBVIR_VERSION_NUMBER = 9000000


class virDomain(virDomainStubs):
    """libvirt.virDomain's methods; the unimplemented ones raise (made from surface_more.virDomainStubs at the first use of a name the class lacks)."""


class virConnect(virConnectStubs):
    """libvirt.virConnect's methods; the unimplemented ones raise (made from surface_more.virConnectStubs at the first use of a name the class lacks)."""


class virDomainSnapshot(virDomainSnapshotStubs):
    """libvirt.virDomainSnapshot's methods; the unimplemented ones raise (made from surface_more.virDomainSnapshotStubs at the first use of a name the class lacks)."""


FUNCTIONS = ('registerErrorHandler', 'openAuth', 'getVersion', 'virEventAddHandle', 'virEventAddTimeout', 'virEventInvokeFreeCallback', 'open', 'openReadOnly', 'virEventRegisterDefaultImpl', 'virEventRegisterImpl', 'virEventRemoveHandle', 'virEventRemoveTimeout', 'virEventRunDefaultImpl', 'virEventUpdateHandle', 'virEventUpdateTimeout', 'virGetLastError', 'virGetLastErrorCode', 'virGetLastErrorDomain', 'virGetLastErrorMessage', 'virInitialize', 'virResetLastError')
CLASSES = ('virDomain', 'virNetwork', 'virNetworkPort', 'virInterface', 'virStoragePool', 'virStorageVol', 'virConnect', 'virNodeDevice', 'virSecret', 'virNWFilter', 'virNWFilterBinding', 'virStream', 'virDomainCheckpoint', 'virDomainSnapshot')


def __getattr__(name: str) -> Any:
    """CONSTANTS, C_NAMES and the classes and functions virtsnap does not implement, from surface_more
    at their first use: a cold CLI command needs none of them (about 1.5 ms of its start)."""
    from . import surface_more

    try:
        value = globals()[name] = getattr(surface_more, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return value


def _fill_stubs() -> bool:
    """Copies the methods of the implemented classes from surface_more (a class's own, and so a
    subclass's, are kept); True if this call did."""
    global _filled
    if _filled:
        return False
    from . import surface_more

    for cls in (virConnect, virDomain, virDomainSnapshot):
        for name, fn in vars(getattr(surface_more, cls.__name__ + "Stubs")).items():
            if not name.startswith("__") and name not in vars(cls):
                fn.__qualname__ = f"{cls.__name__}.{name}"
                type.__setattr__(cls, name, fn)
    _filled = True
    return True
