"""Host network devices for <interface type='bridge'> and <interface type='network'>: the tap device virtsnap
creates on a host bridge and hands QEMU as a descriptor (as libvirt does), and the bridge of a libvirt network.

Names from the XML are checked as interface or file names before any use and reach the kernel only inside an
ioctl's fixed-size name field or as one path component; no parser ever sees them.
"""

from __future__ import annotations

import os

from ...errors import ErrorCode, ErrorDomain, error

ERR = ErrorDomain.QEMU
IFNAMSIZ = 16  # the kernel's interface name field, its terminating NUL included
TAP_NAME = "vstap%d"  # the kernel picks the number
# libvirt's network status (an active network) and configuration; status first: only an active network has
# its bridge up
NETWORK_STATUS = "/run/libvirt/network"
NETWORK_CONFIG = "/etc/libvirt/qemu/networks"
# <forward mode>s whose guests sit on the network's bridge (None: an isolated network, also a bridge)
BRIDGED_MODES = frozenset({None, "nat", "route", "open", "bridge"})

_TUNSETIFF = 0x400454CA
_IFF_TAP, _IFF_NO_PI, _IFF_UP = 0x0002, 0x1000, 0x1
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _SIOCSIFHWADDR, _SIOCBRADDIF = 0x8913, 0x8914, 0x8924, 0x89A2
_ARPHRD_ETHER = 1


def check_ifname(what: str, name: str) -> str:
    """A Linux interface name as the kernel accepts one (dev_valid_name): 1 to 15 bytes, not '.' or '..', no
    '/', ':', whitespace or control character."""
    if not (0 < len(name.encode()) < IFNAMSIZ) or name in (".", "..") or \
            any(c in "/:" or c.isspace() or ord(c) < 32 or ord(c) == 127 for c in name):
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    f"{what} {name!r} is not an interface name (1 to 15 bytes, no '/', ':' or whitespace)")
    return name


def check_network_name(name: str) -> str:
    """A libvirt network name: it names a file in libvirt's directories, so one path component without
    control characters or whitespace, not starting with '.'."""
    if not (0 < len(name) <= 200) or name.startswith(".") or \
            any(c == "/" or c.isspace() or ord(c) < 32 or ord(c) == 127 for c in name):
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    f"network name {name!r} is not a libvirt network name (no '/', whitespace or leading '.')")
    return name


def network_bridge(name: str) -> str:
    """The bridge of libvirt network `name`, read from libvirt's own files with lxml. Errors as libvirt's:
    VIR_ERR_NO_NETWORK when there is no such network, OPERATION_INVALID when it is not active,
    CONFIG_UNSUPPORTED when its guests do not attach to a bridge (macvtap, hostdev modes)."""
    from lxml import etree

    check_network_name(name)
    for directory, active in ((NETWORK_STATUS, True), (NETWORK_CONFIG, False)):
        try:
            with open(os.path.join(directory, f"{name}.xml"), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise error(ErrorCode.OPERATION_FAILED, ERR,
                        f"cannot read libvirt network '{name}': {exc.strerror or exc}") from exc
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        try:
            root = etree.fromstring(data, parser)
        except etree.XMLSyntaxError as exc:
            raise error(ErrorCode.OPERATION_FAILED, ERR, f"libvirt network '{name}' is not readable XML") from exc
        net = root if root.tag == "network" else root.find("network")  # status wraps it in <networkstatus>
        if net is None or net.findtext("name") != name:
            raise error(ErrorCode.OPERATION_FAILED, ERR, f"libvirt's file for network '{name}' describes another")
        if not active:
            raise error(ErrorCode.OPERATION_INVALID, ErrorDomain.NETWORK, f"network '{name}' is not active")
        forward = net.find("forward")
        mode = forward.get("mode") if forward is not None else None
        bridge = net.find("bridge")
        bridge_name = bridge.get("name") if bridge is not None else None
        if mode not in BRIDGED_MODES or not bridge_name:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        f"network '{name}' does not attach guests to a bridge (forward mode '{mode}'): "
                        "only bridge-based networks are supported")
        return check_ifname(f"bridge of network '{name}'", str(bridge_name))
    raise error(ErrorCode.NO_NETWORK, ErrorDomain.NETWORK, f"no network with matching name '{name}'")


def require_root(kind: str) -> None:
    """Taps are made by virtsnap itself (CAP_NET_ADMIN): an unprivileged session refuses before anything."""
    if os.geteuid() != 0:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    f"<interface type='{kind}'> needs virtsnap running as root (it creates the tap device on the "
                    "bridge); an unprivileged session cannot: use <interface type='user'>")


def _ifreq(name: str, payload: bytes = b"") -> bytes:
    """struct ifreq: the name field, then the union (24 bytes on x86_64)."""
    return name.encode().ljust(IFNAMSIZ, b"\0") + payload.ljust(24, b"\0")


def open_tap(bridge: str, mac: str | None) -> tuple[int, str]:
    """A new tap device attached to `bridge` and up, as (descriptor, name). It is not persistent: the kernel
    deletes it when its last descriptor closes, so it goes when QEMU (holding the copy) stops, and at once if
    the start fails. Its MAC is the guest's with the first byte 0xfe, as libvirt sets it (the bridge never
    takes a guest's address as its own)."""
    import fcntl  # only when a tap is made: listing commands start without these
    import socket
    import struct

    check_ifname("bridge", bridge)
    if not os.path.isdir(os.path.join("/sys/class/net", bridge, "bridge")):
        raise error(ErrorCode.OPERATION_FAILED, ERR, f"no bridge '{bridge}' on this host")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        got = fcntl.ioctl(fd, _TUNSETIFF, _ifreq(TAP_NAME, struct.pack("H", _IFF_TAP | _IFF_NO_PI)))
        name = got[:IFNAMSIZ].split(b"\0", 1)[0].decode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            if mac:
                tap_mac = bytes([0xFE]) + bytes.fromhex(mac.replace(":", ""))[1:]
                fcntl.ioctl(sock, _SIOCSIFHWADDR, _ifreq(name, struct.pack("H14s", _ARPHRD_ETHER, tap_mac)))
            fcntl.ioctl(sock, _SIOCBRADDIF, _ifreq(bridge, struct.pack("i", socket.if_nametoindex(name))))
            flags = struct.unpack("H", fcntl.ioctl(sock, _SIOCGIFFLAGS, _ifreq(name))[16:18])[0]
            fcntl.ioctl(sock, _SIOCSIFFLAGS, _ifreq(name, struct.pack("H", flags | _IFF_UP)))
    except OSError as exc:
        os.close(fd)
        raise error(ErrorCode.OPERATION_FAILED, ERR,
                    f"cannot create a tap device on bridge '{bridge}': {exc.strerror or exc}") from exc
    except BaseException:
        os.close(fd)
        raise
    return fd, name
