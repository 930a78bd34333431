"""Driver registry: a URI scheme names a driver module, imported only when a connection asks for it.

Each module exposes `open_driver(uri, read_only, auth) -> Driver`.
"""

from __future__ import annotations

from ..errors import ErrorCode, ErrorDomain, error
from ..uri import redact

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any

    from ..uri import URI
    from .base import Driver

# scheme -> (module, extra to install when its import fails)
_DRIVERS: dict[str, tuple[str, str | None]] = {
    "test": ("virtsnap.drivers.test.driver", None),
    "qemu": ("virtsnap.drivers.qemu.driver", "qemu"),
    "esx": ("virtsnap.drivers.esx.driver", "esx"),
    "vpx": ("virtsnap.drivers.esx.driver", "esx"),
    "vbox": ("virtsnap.drivers.vbox.driver", None),
    # libvirt+<any libvirt URI>: the part after "+" is libvirt's URI, not a transport
    "libvirt": ("virtsnap.drivers.libvirtd.driver", "libvirt"),
}


def open_driver(uri: URI, read_only: bool, auth: Any = None) -> Driver:
    entry = _DRIVERS.get(uri.scheme)
    if uri.transport == "ssh" and uri.scheme != "libvirt":  # virtsnap on another host, over the system's ssh
        entry = ("virtsnap.drivers.remote", None)
    elif entry is None or (uri.transport not in (None, "unix") and uri.scheme != "libvirt"):
        raise error(ErrorCode.NO_CONNECT, ErrorDomain.NONE, redact(uri.text))
    module_name, extra = entry
    try:
        # not importlib.import_module, which a cold command would import for this alone (1.6 M instructions,
        # with the warnings it imports); with a fromlist, __import__ returns the named module itself
        module = __import__(module_name, fromlist=("open_driver",))
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("virtsnap"):
            raise error(ErrorCode.NO_CONNECT, ErrorDomain.NONE,
                        f"{redact(uri.text)} (the {uri.scheme} driver is not available in this build)") from exc
        hint = f"; install it with: pip install 'virtsnap[{extra}]'" if extra else ""
        raise error(ErrorCode.NO_CONNECT, ErrorDomain.NONE,
                    f"{redact(uri.text)} (missing Python package '{exc.name}'{hint})") from exc
    driver: Driver = module.open_driver(uri, read_only, auth)
    return driver
