"""libvirt's error reporting at the public-API edge: the last error per thread, registerErrorHandler's
callback, and without one libvirt's default line on stderr ("libvirt: <Domain> error : <message>").

Every public entry point runs under `public`; only the outermost call reports, as libvirt's virDispatchError.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from types import FunctionType

from .errors import libvirtError, set_last_error
from .errors import not_supported as unsupported
from .locks import get_ident

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any, TypeVar
    F = TypeVar("F", bound=Callable[..., Any])


# virErrorDomain's names (virerror.c), indexed by the VIR_FROM_* number, as libvirt's default handler prints them.
DOMAIN_NAMES = (
    "", "Xen Driver", "Xen Daemon", "Xen Store", "S-Expression",
    "XML Util", "Domain", "XML-RPC", "Proxy Daemon", "Config File",
    "QEMU Driver", "Network", "Test Driver", "Remote Driver", "OpenVZ Driver",
    "Xen XM Driver", "Linux Statistics", "LXC Driver", "Storage Driver", "Network Driver",
    "Domain Config", "User Mode Linux Driver", "Node Device Driver", "Xen Inotify Driver", "Security Driver",
    "VirtualBox Driver", "Network Interface Driver", "Open Nebula Driver", "ESX Driver", "Power Hypervisor Driver",
    "Secrets Driver", "CPU Driver", "XenAPI Driver", "Network Filter Driver", "Lifecycle Hook",
    "Domain Snapshot", "Audit Utils", "Sysinfo Utils", "I/O Stream Utils", "VMware Driver",
    "Event Loop", "Xen Light Driver", "Lock Driver", "Hyper-V Driver", "Capabilities Utils",
    "URI Utils", "Authentication Utils", "DBus Utils", "Parallels Cloud Server", "Device Config",
    "SSH transport layer", "Lock Space", "Init control", "Identity", "Cgroup",
    "Access Manager", "Systemd", "Bhyve", "Crypto", "Firewall",
    "Polkit", "Thread jobs", "Admin Interface", "Log Manager", "Xen XL Config",
    "Perf", "Libssh transport layer", "Resource control", "FirewallD", "Domain Checkpoint",
    "TPM", "BPF", "Cloud-Hypervisor Driver",
)
_LEVELS = {0: "", 1: "warning", 2: "error"}

_handler: list[Any] = [None, None]  # [callback, ctx] as registerErrorHandler set them
# Per thread, how many public calls are under way on it (none: no entry). A dict by thread id, not a
# threading.local (the module costs a cold command ~4 M instructions): each thread writes its own key only, and
# removes it when its outermost call returns, so no id outlives its calls and a new thread reusing an id starts at 0.
_depth: dict[int, int] = {}


def _forget_other_threads() -> None:
    """In a forked child, only the forking thread runs on: the calls other threads had under way are gone."""
    mine = _depth.get(get_ident())
    _depth.clear()
    if mine is not None:
        _depth[get_ident()] = mine


os.register_at_fork(after_in_child=_forget_other_threads)


def register_handler(f: Any, ctx: Any) -> int:
    """libvirt.registerErrorHandler: f(ctx, err) for every failed call; None restores the default line."""
    if f is not None and not callable(f):
        raise TypeError("registerErrorHandler: f must be callable or None")
    _handler[:] = [f, ctx]
    return 1


def default_line(err: tuple[Any, ...]) -> str:
    """The line libvirt's virDefaultErrorFunc writes for `err` (code, domain, message, level, ...)."""
    domain, message, level = err[1], err[2] or "", err[3]
    name = DOMAIN_NAMES[domain] if 0 <= domain < len(DOMAIN_NAMES) else "Unknown"
    end = "" if message.endswith("\n") else "\n"
    return f"libvirt: {name} {_LEVELS.get(level, '')} : {message}{end}"


def report(exc: libvirtError) -> None:
    """virDispatchError: remember `exc` as this thread's last error and hand it to the handler."""
    err = exc.err or (int(exc.code), int(exc.domain), exc.message, int(exc.level), None, None, None, 0, 0)
    set_last_error(err)
    f, ctx = _handler
    if f is None:
        sys.stderr.write(default_line(err))
        sys.stderr.flush()
    else:
        f(ctx, list(err))


def reset_last_error() -> None:
    set_last_error(None)


def public(fn: F) -> F:
    """Report a libvirtError escaping a public entry point once, at the outermost call."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        me = get_ident()
        depth = _depth.get(me, 0) + 1
        _depth[me] = depth
        try:
            return fn(*args, **kwargs)
        except libvirtError as exc:
            if depth == 1 and not getattr(exc, "_reported", False):
                exc._reported = True  # type: ignore[attr-defined]
                report(exc)
            raise
        finally:
            if depth == 1:
                del _depth[me]
            else:
                _depth[me] = depth - 1

    return wrapper  # type: ignore[return-value]


def public_class(cls: type) -> type:
    """Run every public method the class itself defines under `public`."""
    for name, value in list(vars(cls).items()):
        if not name.startswith("_") and isinstance(value, FunctionType):
            setattr(cls, name, public(value))
    return cls


def not_supported(function: str, domain: int) -> libvirtError:
    """The error of a generated method virtsnap does not implement, reported when called directly."""
    exc = unsupported(function, domain)
    if get_ident() not in _depth:
        exc._reported = True  # type: ignore[attr-defined]
        report(exc)
    return exc
