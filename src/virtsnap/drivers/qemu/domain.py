"""The <domain> subset the QEMU driver runs, checked against one declarative table, and its typed view.

Anything outside the table is refused with VIR_ERR_CONFIG_UNSUPPORTED naming the element or attribute,
never dropped; `virsh dumpxml` output of a guest that stays inside the subset defines as is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ...conf.domain_xml import DomainDef
from ...conf.xmlutil import Node
from ...errors import ErrorCode, ErrorDomain, error, libvirtError
from ...records import Frozen
from .devices import ARCH_BINARIES, CODECS, HYPERV, SOUND_MODELS, SPICE_COMPRESSION, SPICE_PORT, USB_COMPANIONS, Extras
from .devices import problems as device_problems
from .firmware import FEATURES as FIRMWARE_FEATURES
from .firmware import NVRAM_TARGET, Firmware
from .netdev import check_ifname, check_network_name

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any, NoReturn, TypeVar

    T = TypeVar("T")

ERR = ErrorDomain.QEMU
# libvirt's disk cache modes as QEMU block options: (cache.direct, cache.no-flush, the device's write-cache)
CACHE = {"default": (False, False, True), "writeback": (False, False, True), "none": (True, False, True),
         "writethrough": (False, False, False), "directsync": (True, False, False), "unsafe": (False, True, True)}
# interface type -> the <source> attribute naming its host side (user networking has none)
NIC_SOURCES = {"user": "", "bridge": "bridge", "network": "network"}
NIC_MODELS = {"virtio": "virtio-net-pci", "e1000": "e1000", "e1000e": "e1000e", "rtl8139": "rtl8139"}
# video model -> (QEMU device when primary, when secondary); none: no display adapter
VIDEO_MODELS = {"vga": ("VGA", None), "cirrus": ("cirrus-vga", None), "virtio": ("virtio-vga", "virtio-gpu-pci"),
                "qxl": ("qxl-vga", "qxl"), "bochs": ("bochs-display", "bochs-display"), "ramfb": ("ramfb", None),
                "none": (None, None)}
# input (type, bus) -> QEMU device; PS/2 devices are the i8042 every pc/q35 machine has, so they need none
INPUTS = {("tablet", "usb"): "usb-tablet", ("mouse", "usb"): "usb-mouse", ("keyboard", "usb"): "usb-kbd",
          ("tablet", "virtio"): "virtio-tablet-pci", ("mouse", "virtio"): "virtio-mouse-pci",
          ("keyboard", "virtio"): "virtio-keyboard-pci", ("mouse", "ps2"): None, ("keyboard", "ps2"): None}
USB_MODELS = {"qemu-xhci": "qemu-xhci", "piix3-uhci": "piix3-usb-uhci", "ich9-ehci1": "ich9-usb-ehci1"}
TPM_MODELS = {"tpm-crb": "tpm-crb", "tpm-tis": "tpm-tis"}  # <tpm model> -> QEMU device (swtpm behind it)
TPM_PCR_BANKS = ("sha1", "sha256", "sha384", "sha512")  # <active_pcr_banks> children, swtpm_setup's names
ANY = "*"  # any attribute / any content below (libvirt bookkeeping such as <address>)

# How an accepted element or attribute reaches the guest. Each one that is APPLIED or CHECKED has a test of its
# effect named in tests/unit/test_table_effects.py (which fails for a table entry without one).
APPLIED = "applied"  # written into QEMU's configuration (argv.py, or the monitor at start) or virtsnap's own
CHECKED = "checked"  # compared with what the driver runs; anything else is refused
KEPT = "kept"  # libvirt's own bookkeeping, no effect on the guest in libvirt either: stored and given back


class Spec(Frozen):
    """One element of the table: its attributes, its children ({name: Spec}, or ANY), whether it has text,
    how it is applied, and which of its attributes are bookkeeping (KEPT) while the element is applied."""

    _fields = ("attrs", "children", "text", "how", "kept")
    __slots__ = _fields

    def __init__(self, attrs: frozenset[str] | str, children: dict[str, Spec] | str, text: bool, how: str,
                 kept: frozenset[str]) -> None:
        self.attrs = attrs
        self.children = children
        self.text = text
        self.how = how
        self.kept = kept


def _s(attrs: str = "", children: dict[str, Spec] | str | None = None, text: bool = False, how: str = APPLIED,
       kept: str = "") -> Spec:
    return Spec(frozenset(attrs.split()) if attrs != ANY else ANY, children if children is not None else {}, text,
                how, frozenset(kept.split()))


_ADDRESS = _s(ANY, ANY)  # type='pci' applied (placements()); other address types are libvirt's own bookkeeping
_ALIAS = _s("name", how=KEPT)  # libvirt's device names of a running domain
_DISK = _s("type device snapshot", {
    "driver": _s("name type cache discard io"),
    "source": _s("file dev index", kept="index"),
    "backingStore": _s("type index", ANY, how=KEPT),  # the chain comes from the images, formats recorded
    "target": _s("dev bus"),
    "readonly": _s(),
    "shareable": _s(),
    "serial": _s(text=True),
    "boot": _s("order"),
    "address": _ADDRESS,
    "alias": _ALIAS,
})
SUBSET: dict[str, Spec] = {
    "domain": _s("type id", kept="id", children={
        "name": _s(text=True),
        "uuid": _s(text=True),
        "title": _s(text=True, how=KEPT),
        "description": _s(text=True, how=KEPT),
        "metadata": _s(ANY, ANY, how=KEPT),
        "memory": _s("unit", text=True),
        "currentMemory": _s("unit", text=True),
        "vcpu": _s("placement cpuset current", text=True),
        "memoryBacking": _s("", {"source": _s("type"), "access": _s("mode")}),
        "resource": _s("", {"partition": _s(text=True, how=KEPT)}, how=KEPT),  # libvirt's cgroup placement
        "os": _s("firmware", {
            "type": _s("arch machine", text=True),
            "firmware": _s("", {"feature": _s("enabled name")}),
            "loader": _s("readonly type secure", text=True),
            "nvram": _s("template format", text=True),
            "boot": _s("dev"),
            "kernel": _s(text=True),
            "initrd": _s(text=True),
            "cmdline": _s(text=True),
        }),
        "features": _s("", {"acpi": _s(), "apic": _s("eoi"), "pae": _s(), "vmport": _s("state"), "smm": _s("state"),
                            "hyperv": _s("mode", {name: _s("state retries" if name == "spinlocks" else
                                                           "state value" if name == "vendor_id" else "state",
                                                           {"direct": _s("state")} if name == "stimer" else None)
                                                  for name in HYPERV}),
                            "kvm": _s("", {"hidden": _s("state")})}),
        "cpu": _s("mode match check migratable", {"model": _s("fallback", text=True),
                                                  "topology": _s("sockets dies cores threads")}),
        "clock": _s("offset", {"timer": _s("name tickpolicy present")}),
        "on_poweroff": _s(text=True),
        "on_reboot": _s(text=True),
        "on_crash": _s(text=True),
        "pm": _s("", {"suspend-to-mem": _s("enabled"), "suspend-to-disk": _s("enabled")}),
        "devices": _s("", {
            "emulator": _s(text=True),
            "disk": _DISK,
            "controller": _s("type index model ports", {"address": _ADDRESS, "alias": _ALIAS, "model": _s("name"),
                                                         "target": _s("chassis port"), "master": _s("startport")}),
            "channel": _s("type", {
                "source": _s("mode path"),
                "target": _s("type name state", kept="state"),  # state: the guest agent's, as libvirt saw it
                "address": _ADDRESS,
                "alias": _ALIAS,
            }),
            "serial": _s("type", {"source": _s("path append"), "target": _s("type port", {"model": _s("name")}),
                                  "alias": _ALIAS}),
            "console": _s("type tty", kept="tty", children={"source": _s("path append"), "target": _s("type port"),
                                                             "alias": _ALIAS}),
            "interface": _s("type", {"mac": _s("address"), "source": _s("bridge network"), "model": _s("type"),
                                     "address": _ADDRESS, "alias": _ALIAS}),
            "graphics": _s("type port autoport listen passwd tlsPort", {
                "listen": _s("type address"), "image": _s("compression"), "clipboard": _s("copypaste"),
                "filetransfer": _s("enable"), "mouse": _s("mode"), "gl": _s("enable")}),
            "input": _s("type bus", {"address": _ADDRESS, "alias": _ALIAS}),
            "video": _s("", {"model": _s("type vram heads primary ram vgamem"), "address": _ADDRESS,
                             "alias": _ALIAS}),
            "memballoon": _s("model", {"address": _ADDRESS, "alias": _ALIAS}),
            "rng": _s("model", {"backend": _s("model", text=True), "address": _ADDRESS, "alias": _ALIAS}),
            "audio": _s("id type"),
            "tpm": _s("model", {"backend": _s("type version persistent_state", {"active_pcr_banks": _s("", {
                bank: _s() for bank in TPM_PCR_BANKS})}), "alias": _ALIAS}),
            "sound": _s("model", {"codec": _s("type"), "audio": _s("id"), "address": _ADDRESS, "alias": _ALIAS}),
            "redirdev": _s("bus type", {"address": _ADDRESS, "alias": _ALIAS}),
        }),
        "seclabel": _s("type model relabel", {"label": _s(text=True)}),
    }),
}

# Values the driver knows how to turn into QEMU options; others are refused like unknown elements.
VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("domain", "type"): frozenset({"qemu", "kvm"}),
    ("os", "firmware"): frozenset({"efi", "bios"}),  # bios: SeaBIOS, QEMU's default
    ("feature", "name"): frozenset(FIRMWARE_FEATURES),
    ("feature", "enabled"): frozenset({"yes", "no"}),
    ("loader", "type"): frozenset({"pflash"}),
    ("loader", "readonly"): frozenset({"yes", "no"}),
    ("loader", "secure"): frozenset({"yes", "no"}),
    ("nvram", "format"): frozenset({"raw", "qcow2"}),
    ("smm", "state"): frozenset({"on", "off"}),
    ("type", "arch"): frozenset(ARCH_BINARIES),  # each on its own qemu-system-*, when installed
    ("boot", "dev"): frozenset({"hd", "cdrom", "network", "fd"}),
    ("disk", "type"): frozenset({"file", "block"}),
    ("disk", "device"): frozenset({"disk", "cdrom"}),
    ("target", "bus"): frozenset({"virtio", "sata", "scsi", "ide"}),
    ("driver", "name"): frozenset({"qemu"}),
    ("driver", "type"): frozenset({"qcow2", "raw"}),
    ("driver", "cache"): frozenset(CACHE),
    ("driver", "discard"): frozenset({"unmap", "ignore"}),
    ("driver", "io"): frozenset({"threads", "native", "io_uring"}),
    ("interface", "type"): frozenset({"user", "bridge", "network"}),
    ("model", "type"): frozenset(NIC_MODELS) | frozenset(VIDEO_MODELS),
    ("graphics", "type"): frozenset({"vnc", "spice"}),
    ("serial", "type"): frozenset({"file", "pty"}),
    ("console", "type"): frozenset({"file", "pty"}),
    ("channel", "type"): frozenset({"unix", "spicevmc"}),
    ("source", "append"): frozenset({"on", "off"}),
    ("source", "mode"): frozenset({"bind"}),
    ("graphics", "autoport"): frozenset({"yes", "no"}),
    ("listen", "type"): frozenset({"address", "socket"}),
    ("image", "compression"): SPICE_COMPRESSION,
    ("clipboard", "copypaste"): frozenset({"yes", "no"}),
    ("filetransfer", "enable"): frozenset({"yes", "no"}),
    ("mouse", "mode"): frozenset({"server", "client"}),
    ("gl", "enable"): frozenset({"no"}),
    ("sound", "model"): frozenset(SOUND_MODELS),
    ("codec", "type"): frozenset(CODECS),
    ("redirdev", "bus"): frozenset({"usb"}),
    ("redirdev", "type"): frozenset({"spicevmc"}),
    ("hyperv", "mode"): frozenset({"custom", "passthrough"}),
    **{(name, "state"): frozenset({"on", "off"}) for name in (*HYPERV, "direct", "hidden")},
    ("apic", "eoi"): frozenset({"on", "off"}),
    ("vcpu", "placement"): frozenset({"static"}),  # auto asks numad for a placement: not applied
    ("source", "type"): frozenset({"memfd", "anonymous"}),
    ("access", "mode"): frozenset({"shared", "private"}),
    ("seclabel", "model"): frozenset({"dac"}),
    ("seclabel", "type"): frozenset({"static", "dynamic"}),
    ("seclabel", "relabel"): frozenset({"yes", "no"}),
    ("memballoon", "model"): frozenset({"virtio", "none"}),
    ("audio", "type"): frozenset({"none", "spice"}),
    ("tpm", "model"): frozenset(TPM_MODELS),
    ("backend", "type"): frozenset({"emulator"}),  # <tpm><backend>: swtpm (passthrough of a host TPM is not)
    ("backend", "version"): frozenset({"2.0"}),
    ("backend", "persistent_state"): frozenset({"yes", "no"}),
    ("rng", "model"): frozenset({"virtio"}),
    ("backend", "model"): frozenset({"random", "builtin"}),
    ("input", "type"): frozenset({"tablet", "mouse", "keyboard"}),
    ("input", "bus"): frozenset({"usb", "ps2", "virtio"}),
    ("controller", "type"): frozenset({"usb", "pci", "sata", "ide", "scsi", "virtio-serial"}),
    ("controller", "model"): frozenset({*USB_MODELS, *USB_COMPANIONS, "none", "pci-root", "pcie-root",
                                        "pcie-root-port", "virtio-scsi"}),
    ("clock", "offset"): frozenset({"utc", "localtime"}),
    ("timer", "name"): frozenset({"rtc", "pit", "hpet", "hypervclock"}),
    ("timer", "tickpolicy"): frozenset({"catchup", "delay"}),
    ("timer", "present"): frozenset({"yes", "no"}),
    ("vmport", "state"): frozenset({"on", "off"}),
    ("cpu", "mode"): frozenset({"host-passthrough", "maximum", "custom", "host-model"}),  # host-model: refused
    ("cpu", "check"): frozenset({"none", "partial"}),  # partial: QEMU's enforce (devices.py)
    ("cpu", "match"): frozenset({"exact"}),
    ("cpu", "migratable"): frozenset({"on"}),
    ("model", "fallback"): frozenset({"forbid", "allow"}),
    ("suspend-to-mem", "enabled"): frozenset({"yes", "no"}),
    ("suspend-to-disk", "enabled"): frozenset({"yes", "no"}),
}


def check_subset(node: Node) -> None:
    """Refuse any element, attribute or value outside SUBSET/VALUES, naming every one of them at once (a user
    fixing a `virsh dumpxml` learns the whole list from one define, not one item per try)."""
    problems = list(dict.fromkeys(subset_problems(node)))  # each item once, in document order
    if problems:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    f"not supported by the virtsnap QEMU driver: {'; '.join(problems)}")


def subset_problems(node: Node, spec: Spec | None = None, path: str = "") -> list[str]:
    """Every element, attribute and value of the document outside the table, each named by its path."""
    spec = spec or SUBSET[node.tag]
    where = f"{path}/{node.tag}" if path else node.tag
    attrs, children = spec.attrs, spec.children
    problems: list[str] = []
    if attrs != ANY:
        for attr in node.attrs:
            # A prefix declaration (e.g. xmlns:qemu on <domain>) configures nothing: what uses the prefix is
            # checked where it is. A default namespace (xmlns=) would put elements out of libvirt's vocabulary.
            if attr not in attrs and not attr.startswith("xmlns:"):
                problems.append(f"attribute '{attr}' of <{where}>")
    for attr, value in node.attrs.items():
        allowed = VALUES.get((node.tag, attr))
        if allowed is not None and value not in allowed:
            problems.append(f"{attr}='{value}' of <{where}> (supported: {', '.join(sorted(allowed))})")
    if children == ANY:
        return problems
    assert isinstance(children, dict)
    for child in node.children:
        if child.tag not in children:
            problems.append(f"element <{where}/{child.tag}>")
        else:
            problems += subset_problems(child, children[child.tag], where)
    return problems


def within_table(node: Node, spec: Spec | None = None) -> Node | None:
    """A copy of the document without what subset_problems names: attributes outside the table left out,
    elements outside it or with a value outside VALUES left out whole (None: the node itself)."""
    spec = spec or SUBSET[node.tag]
    if any(value not in VALUES.get((node.tag, attr), (value,)) for attr, value in node.attrs.items()):
        return None
    attrs = node.attrs if spec.attrs == ANY else {
        attr: value for attr, value in node.attrs.items() if attr in spec.attrs or attr.startswith("xmlns:")}
    children = node.children if spec.children == ANY else [
        kept for child in node.children if isinstance(spec.children, dict) and child.tag in spec.children
        and (kept := within_table(child, spec.children[child.tag])) is not None]
    return Node(node.tag, dict(attrs), node.text, list(children))


def _refuse(what: str, value: str, expected: str) -> Exception:
    return error(ErrorCode.CONFIG_UNSUPPORTED, ERR, f"{what} {value!r} is not {expected}")


class Refusals:
    """The CONFIG_UNSUPPORTED refusals of a table-checked document's independent parts, gathered to be raised
    as one error naming every item (a user fixing a `virsh dumpxml` learns the whole list from one define). A
    malformed document (XML_ERROR) still stops at its first fault. The table's own refusals come first and
    alone: their items are the element/attribute forms a user (and the corpus check) can take out."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def take(self, fallback: T, step: Callable[..., T], *args: Any) -> T:
        """step(*args), or `fallback` with its refusal noted."""
        try:
            return step(*args)
        except libvirtError as e:
            if e.code != ErrorCode.CONFIG_UNSUPPORTED:
                raise
            self.items.append(e.str2 or str(e))
        return fallback

    def check(self) -> None:
        """Raise the refusals gathered, if any: one alone as it was, several as one list."""
        items = list(dict.fromkeys(self.items))  # each item once, in document order
        if items:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        items[0] if len(items) == 1 else f"the virtsnap QEMU driver cannot apply: {'; '.join(items)}")


_HEX = frozenset("0123456789abcdefABCDEF")
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_DIGITS = frozenset("0123456789")


def check_mac(mac: str) -> str:
    """A unicast MAC address, six hex pairs separated by ':' (nothing else reaches QEMU's -device)."""
    parts = mac.split(":")
    if len(parts) != 6 or any(len(p) != 2 or not _HEX.issuperset(p) for p in parts):
        raise _refuse("MAC address", mac, "six hexadecimal pairs separated by ':'")
    if int(parts[0], 16) & 1:
        raise _refuse("MAC address", mac, "a unicast address (its first byte is odd)")
    return mac.lower()


def check_target(dev: str) -> str:
    """A disk target such as vda, sdb or hdc: it becomes the QEMU device id, so letters then digits only."""
    if not is_target(dev):
        raise _refuse("disk target", dev, "a name of lower-case letters and digits, such as 'vda'")
    return dev


def is_target(dev: str) -> bool:
    return 0 < len(dev) <= 32 and dev[0] in _LOWER and (_LOWER | _DIGITS).issuperset(dev)


ISA_SERIAL_PORTS = 4  # QEMU's isa-serial index: COM1 to COM4


def serial_ports(serials: list[Node], count: int) -> tuple[int, ...]:
    """The ISA index of each of `count` serial ports: <target port> where given (libvirt passes it as the
    isa-serial index), else the lowest port not yet taken; a <console> alone is read as its serial."""
    taken: list[int] = []
    for s in serials:
        target = s.find("target")
        raw = target.get("port") if target is not None else None
        if raw is None:
            free = [p for p in range(ISA_SERIAL_PORTS) if p not in taken]
            if not free:
                raise _refuse("serial port count", str(len(serials)), f"at most {ISA_SERIAL_PORTS} ISA serial ports")
            taken.append(free[0])
            continue
        if not (raw.isdigit() and int(raw) < ISA_SERIAL_PORTS) or int(raw) in taken:
            raise _refuse("serial target port", raw, f"a free ISA serial port from 0 to {ISA_SERIAL_PORTS - 1}")
        taken.append(int(raw))
    return tuple(taken) if serials else tuple(range(count))


def check_console(console: Node, serial: Node) -> None:
    """A serial <console> next to a <serial> is libvirt's second view of that first serial port (virsh dumpxml
    prints both): the same type, source and port, or it would name a port that does not exist."""
    def view(el: Node) -> tuple[str, str | None, str | None]:
        source, target = el.find("source"), el.find("target")
        return (el.get("type") or "pty", source.get("path") if source is not None and el.get("type") == "file"
                else None, (target.get("port") if target is not None else None))

    kind, path, port = view(console)
    first = view(serial)
    if port not in (None, first[2] or "0"):
        raise _refuse("console target port", port, f"the first serial's port ({first[2] or '0'})")
    if (kind, path) != first[:2]:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, "a serial <console> is the first <serial>: its type and "
                    f"source must be that serial's (console type='{kind}', serial type='{first[0]}')")


VIRTIO_SERIAL_PORTS = 31  # virtio-serial-pci's max_ports: nr 1 to 30 (0 is kept for a virtconsole)


def channel_port(ch: Node) -> int | None:
    """A channel's <address type='virtio-serial' controller bus port>: the virtserialport's nr, as libvirt
    passes it (virtsnap makes the one controller, bus 0); None without a port (QEMU takes the first free
    one). A PCI address is placements()' to refuse."""
    address = ch.find("address")
    if address is None or address.get("type") == "pci":
        return None
    if address.get("type") != "virtio-serial":
        raise _refuse("channel address type", address.get("type") or "", "'virtio-serial'")
    controller, bus, port = address.get("controller") or "0", address.get("bus") or "0", address.get("port")
    if (controller, bus) != ("0", "0"):
        raise _refuse("virtio-serial controller/bus", f"{controller}/{bus}",
                      "0/0 (virtsnap makes one virtio-serial controller)")
    if port is None:
        return None
    if not (port.isdigit() and 0 < int(port) < VIRTIO_SERIAL_PORTS):
        raise _refuse("virtio-serial port", port, f"a number from 1 to {VIRTIO_SERIAL_PORTS - 1}")
    return int(port)


# libvirt's QEMU_SERIAL_PARAM_ACCEPTED_CHARS: what a disk serial may hold
_SERIAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_.+")


def check_disk_serial(serial: str | None) -> str | None:
    """A disk's <serial>: the characters libvirt accepts, as a string property of the JSON -device."""
    if serial is None:
        return None
    if not serial or not _SERIAL_CHARS.issuperset(serial):
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, f"driver serial '{serial}' contains unsafe characters")
    return serial


def check_machine_name(machine: str) -> str:
    """A machine type spelled as QEMU names them (pc, q35, pc-i440fx-7.2); argv.py checks QEMU lists it."""
    allowed = _LOWER | _DIGITS | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ._-")
    if not (0 < len(machine) <= 64 and machine[0] not in "-." and allowed.issuperset(machine)):
        raise _refuse("machine type", machine, "a QEMU machine type name")
    return machine


def check_path(what: str, path: str | None) -> str | None:
    """A file path with no control character: XML attribute values do not keep a newline or tab through a
    store round trip (they read back as a space), so QEMU would open another file than the one written."""
    if path is not None and any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise _refuse(what, path, "a path without control characters")
    return path


def check_listen(address: str) -> str:
    """A VNC listen address: an IP address, nothing QEMU's -vnc parser could read as an option."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise _refuse("graphics listen address", address, "an IP address") from None


def pci_buses(devices: Node, machine: str) -> dict[int, str]:
    """libvirt's PCI bus numbers -> QEMU bus ids: 0 is the machine's root bus (pcie.0 on q35, pci.0 on pc),
    and a pcie-root-port's index is the number of the bus behind it, which QEMU knows by the port's id."""
    buses = {0: "pcie.0" if "q35" in machine else "pci.0"}
    for position, c in enumerate(c for c in devices.findall("controller") if c.get("type") == "pci"):
        index = c.get("index") or str(position)
        if c.get("model") == "pcie-root-port" and index.isdigit():
            buses[int(index)] = f"pci.{int(index)}"
    return buses


def _number(raw: str | None, top: int) -> int | None:
    try:
        value = int(raw or "", 0)
    except ValueError:
        return None
    return value if 0 <= value <= top else None


def pci_placement(el: Node, buses: dict[int, str], what: str) -> dict[str, Any]:
    """A device's <address type='pci'> as QEMU -device properties (bus, addr, multifunction); {} when it has
    none (QEMU places it as libvirt would have). Any other part of a PCI address is refused, not dropped."""
    address = el.find("address")
    if address is None or address.get("type") != "pci":
        return {}
    domain, bus = _number(address.get("domain") or "0", 0xFFFF), _number(address.get("bus") or "0", 0xFF)
    slot, function = _number(address.get("slot") or "0", 31), _number(address.get("function") or "0", 7)
    multifunction = address.get("multifunction") or "off"
    raw = " ".join(f"{k}='{v}'" for k, v in address.attrs.items())
    if domain != 0 or bus is None or slot is None or function is None or multifunction not in ("on", "off"):
        raise _refuse(f"PCI address of {what}", raw, "domain 0, bus 0-255, slot 0-31, function 0-7")
    if bus not in buses:
        raise _refuse(f"PCI address of {what}", raw, "on the root bus or behind a pcie-root-port (its index)")
    props: dict[str, Any] = {"bus": buses[bus], "addr": f"0x{slot:x}.0x{function:x}"}
    if multifunction == "on":
        props["multifunction"] = True
    return props


class Vnc(Frozen):
    """<graphics type='vnc'>: a TCP listener (libvirt's default 127.0.0.1), a fixed port or the first free
    one, and a password that reaches QEMU through the monitor only."""

    _fields = ("listen", "port", "password")
    __slots__ = _fields

    def __init__(self, listen: str, port: int | None, password: str | None) -> None:
        self.listen = listen
        self.port = port  # None: autoport
        self.password = password

    @classmethod
    def from_node(cls, node: Node) -> Vnc:
        listens = [n.get("address") for n in node.findall("listen") if n.get("address")]
        addresses = {a for a in [node.get("listen"), *listens] if a}
        if len(addresses) > 1:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, "a VNC display listens on one address only")
        listen = check_listen(addresses.pop() if addresses else "127.0.0.1")
        raw = node.get("port")
        port = None
        if node.get("autoport") != "yes" and raw not in (None, "-1"):
            if not (raw and raw.isdigit() and 5900 <= int(raw) <= 65535):
                raise _refuse("VNC port", raw or "", "a number from 5900 to 65535 (or autoport='yes')")
            port = int(raw)
        return cls(listen, port, node.get("passwd"))


class SecLabel(Frozen):
    """<seclabel model='dac'>: who QEMU runs as under qemu:///system (None: the configured user) and whether
    virtsnap hands the images to that user (relabel)."""

    _fields = ("user", "relabel")
    __slots__ = _fields

    def __init__(self, user: str | None, relabel: bool) -> None:
        self.user = user  # "user:group" as libvirt writes it (names, or +uid:+gid)
        self.relabel = relabel

    @classmethod
    def from_node(cls, node: Node) -> SecLabel:
        if node.get("model") != "dac":
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        "only <seclabel model='dac'> is supported (the virtsnap QEMU driver has no SELinux or "
                        "AppArmor labelling)")
        label = node.findtext("label")
        kind = node.get("type") or ("static" if label else "dynamic")
        if kind == "static" and not label:
            raise error(ErrorCode.XML_ERROR, ERR,
                        "<seclabel type='static' model='dac'> needs a <label>user:group</label>")
        if kind == "dynamic" and label:
            raise error(ErrorCode.XML_ERROR, ERR, "a dynamic DAC <seclabel> takes no <label>")
        if label is not None and (label.count(":") != 1 or any(not part.strip() for part in label.split(":"))
                                  or any(c.isspace() or ord(c) < 32 for c in label)):
            raise _refuse("DAC label", label, "'user:group'")
        return cls(label, node.get("relabel") != "no")


class Tpm(Frozen):
    """<tpm model='tpm-crb|tpm-tis'><backend type='emulator' version='2.0'/>: a TPM 2.0 that swtpm emulates
    (drivers/qemu/tpm.py), with the PCR banks swtpm_setup activates (None: swtpm_setup's default, sha256)."""

    _fields = ("device", "pcr_banks", "persistent")
    __slots__ = _fields

    def __init__(self, device: str, pcr_banks: tuple[str, ...] | None = None, persistent: bool = False) -> None:
        self.device = device  # QEMU's device: tpm-crb or tpm-tis
        self.pcr_banks = pcr_banks
        # <backend persistent_state='yes'>: undefine keeps the state unless asked (--tpm) to remove it
        self.persistent = persistent

    @classmethod
    def from_node(cls, node: Node) -> Tpm:
        backend = node.find("backend")
        if backend is None or backend.get("type") != "emulator":  # the type is checked by VALUES when given
            raise error(ErrorCode.XML_ERROR, ERR, "a <tpm> needs <backend type='emulator' version='2.0'/>")
        banks_node = backend.find("active_pcr_banks")
        banks = None
        if banks_node is not None:
            banks = tuple(b for b in TPM_PCR_BANKS if banks_node.find(b) is not None)
            if not banks:
                raise error(ErrorCode.XML_ERROR, ERR, "<active_pcr_banks> names no PCR bank")
        # libvirt's default model on x86 is tpm-tis; an absent version is 2.0 (swtpm's TPM 1.2 is not offered)
        return cls(TPM_MODELS[node.get("model") or "tpm-tis"], banks, backend.get("persistent_state") == "yes")


# A drive address's ranges per disk bus (controller, bus, target, unit), one controller of each kind: PIIX's IDE has
# two buses of two units; an AHCI six ports of one unit; virtio-scsi one channel of 256 targets of 16,384 LUNs.
DRIVE_RANGES = {"ide": (0, 1, 0, 1), "sata": (0, 0, 0, 5), "scsi": (0, 0, 255, 16383)}
DISK_PREFIXES = ("hd", "sd", "vd", "xvd", "ubd", "fd")  # libvirt's virDiskNameParse


def disk_index(dev: str) -> int | None:
    """libvirt's index of a disk name: the letters after its prefix in bijective base 26 (hda 0, hdz 25, hdaa
    26); None for a name libvirt cannot place (no known prefix, or anything but letters after it)."""
    prefix = next((p for p in DISK_PREFIXES if dev.startswith(p)), None)
    letters = dev[len(prefix):] if prefix else ""
    if not letters or not _LOWER.issuperset(letters):
        return None
    index = -1
    for c in letters:
        index = (index + 1) * 26 + ord(c) - ord("a")
    return index


def drive_address(disk: Node, dev: str, bus: str) -> tuple[int, int, int, int] | None:
    """Where an ide/sata/scsi disk sits: its <address type='drive'>, else libvirt's default from the target name
    (virDomainDiskDefAssignAddress: IDE 2 units per bus and 2 buses per controller, SATA 6 units per controller,
    SCSI 7 units per controller); None on a virtio bus. An address outside one controller's ranges is refused."""
    address = disk.find("address")
    kind = address.get("type") if address is not None else None
    if bus not in DRIVE_RANGES:
        if kind == "drive":
            raise _refuse(f"drive address of disk '{dev}' on bus", bus, "ide, sata or scsi")
        return None
    if kind not in (None, "drive", "pci"):  # a PCI address is placements()' to refuse
        raise _refuse(f"address type of disk '{dev}'", kind or "", "'drive'")
    if address is not None and kind == "drive":
        unknown = sorted(set(address.attrs) - {"type", "controller", "bus", "target", "unit"})
        if unknown:
            raise _refuse(f"drive address of disk '{dev}' attribute", unknown[0], "controller, bus, target or unit")
        raw = tuple(address.get(k) or "0" for k in ("controller", "bus", "target", "unit"))
        if not all(v.isdigit() for v in raw):
            raise _refuse(f"drive address of disk '{dev}'", " ".join(raw), "four numbers")
        where = (int(raw[0]), int(raw[1]), int(raw[2]), int(raw[3]))
    else:
        index = disk_index(dev)
        if index is None and not is_target(dev):
            return None  # check_target's refusal names it
        if index is None:
            raise error(ErrorCode.XML_ERROR, ERR, f"Unknown disk name '{dev}' and no address specified")
        where = {"ide": (index // 4, (index % 4) // 2, 0, index % 2), "sata": (index // 6, 0, 0, index % 6),
                 "scsi": (index // 7, 0, 0, index % 7)}[bus]
    if any(v > top for v, top in zip(where, DRIVE_RANGES[bus], strict=True)):
        ranges = ", ".join(f"{k} 0-{top}" if top else f"{k} 0" for k, top in
                           zip(("controller", "bus", "target", "unit"), DRIVE_RANGES[bus], strict=True))
        raise _refuse(f"{bus} drive address of disk '{dev}'", "controller {} bus {} target {} unit {}".format(*where),
                      f"within one controller ({ranges})")
    return where


class Disk(Frozen):
    _fields = ("target", "device", "source_type", "path", "format", "bus", "readonly", "snapshot", "cache",
               "discard", "io", "boot_order", "serial", "shareable", "drive")
    __slots__ = _fields

    def __init__(self, target: str, device: str, source_type: str, path: str | None, format: str, bus: str,
                 readonly: bool, snapshot: str | None, cache: str = "default", discard: str = "ignore",
                 io: str | None = None, boot_order: int | None = None, serial: str | None = None,
                 shareable: bool = False, drive: tuple[int, int, int, int] | None = None) -> None:
        # (controller, bus, target, unit) of an ide/sata/scsi disk, as libvirt's <address type='drive'>
        self.drive = drive
        self.serial = serial  # the disk's serial number as the guest reads it (QEMU's serial= property)
        self.shareable = shareable  # other writers allowed on the image (QEMU's share-rw=on, as libvirt)
        self.cache = cache  # a key of CACHE
        self.discard = discard  # unmap | ignore
        self.io = io  # threads | native | io_uring (None: QEMU's default, threads)
        self.boot_order = boot_order
        self.target = target
        self.device = device  # disk | cdrom | nvram (the UEFI variable store: a pflash node, no device)
        self.source_type = source_type  # file | block
        self.path = path
        self.format = format  # qcow2 | raw
        self.bus = bus
        self.readonly = readonly
        self.snapshot = snapshot  # the per-disk default: internal, external, no

    @property
    def node_name(self) -> str:
        """The -blockdev format node this disk is addressed by (the storage node adds '-file')."""
        return f"drive-{self.target}"


def _all(node: Node, path: str) -> list[Node]:
    """Every element at a '/'-separated path (Node.findall looks at direct children only)."""
    found = [node]
    for part in path.split("/"):
        found = [child for parent in found for child in parent.findall(part)]
    return found


def _text_problems(node: Node) -> list[str]:
    """Element contents and combinations outside what is applied (VALUES covers single attributes)."""
    problems = []
    texts = {"os/type": {"hvm"}, "on_poweroff": {"destroy"}, "on_crash": {"destroy"},
             "on_reboot": {"restart", "destroy"}}
    for path, allowed in texts.items():
        for el in _all(node, path):
            value = (el.text or "").strip()
            if value not in allowed:
                problems.append(f"<domain/{path}> {value!r} (supported: {', '.join(sorted(allowed))})")
    for rng in _all(node, "devices/rng"):
        backend = rng.find("backend")
        if backend is not None and backend.get("model") == "random" and \
                (backend.text or "/dev/urandom").strip() not in ("/dev/urandom", "/dev/random"):
            problems.append(f"<domain/devices/rng/backend> {backend.text!r} (supported: /dev/random, /dev/urandom)")
    for inp in _all(node, "devices/input"):
        key = (inp.get("type") or "", inp.get("bus") or "ps2")
        if key not in INPUTS:
            buses = sorted(b for t, b in INPUTS if t == key[0])
            problems.append(f"type='{key[0]}' of <domain/devices/input> (supported on buses: {', '.join(buses)})")
    for ctl in _all(node, "devices/controller"):
        kind, model = ctl.get("type"), ctl.get("model")
        models: dict[str, set[str | None]] = {"usb": {*USB_MODELS, *USB_COMPANIONS, "none", None},
                                              "pci": {"pci-root", "pcie-root", "pcie-root-port"},
                                              "scsi": {"virtio-scsi", None}}
        fits = models.get(kind or "")
        if (fits is not None and model not in fits) or (fits is None and model is not None):
            problems.append(f"model='{model}' of <domain/devices/controller> (supported for type='{kind}': "
                            f"{', '.join(sorted(str(m) for m in fits or ()))})")
    # <model name>: a controller's model under <controller>, the serial device under <serial><target>
    for path, name in (("devices/controller/model", "pcie-root-port"), ("devices/serial/target/model", "isa-serial")):
        for el in _all(node, path):
            if el.get("name") not in (None, name):
                problems.append(f"name='{el.get('name')}' of <domain/{path}> (supported: {name})")
    for path in ("devices/serial/target", "devices/console/target"):
        for el in _all(node, path):
            if el.get("type") not in (None, "isa-serial", "serial"):
                problems.append(f"type='{el.get('type')}' of <domain/{path}> (supported: isa-serial, serial)")
    for iface in _all(node, "devices/interface"):  # a source attribute the interface's type does not use
        kind = iface.get("type") or ""
        for source in iface.findall("source"):
            for attr, value in source.attrs.items():
                if attr != kind and kind in NIC_SOURCES:
                    problems.append(f"{attr}='{value}' of <domain/devices/interface/source> (supported for "
                                    f"type='{kind}': {NIC_SOURCES[kind] or 'no source'})")
    cpu = node.find("cpu")
    if cpu is not None:
        named = (cpu.findtext("model") or "").strip()
        if (cpu.get("mode") or "custom") == "custom" and not named:
            problems.append("<domain/cpu> '' (supported: a custom CPU names its <model>)")
        elif named and not all(c.isalnum() or c in "-_." for c in named):
            problems.append(f"<domain/cpu/model> {named!r} (supported: a QEMU CPU model name)")
    return problems


# Devices QEMU's machine has built in, at the PCI address libvirt's dumpxml gives them (nothing to create):
# q35's ICH9 AHCI (sata index 0) and pc's PIIX IDE (ide index 0).
BUILT_IN = {("sata", True): "0x1f.0x2", ("ide", False): "0x1.0x1"}


# The ports libvirt gives a USB controller model (virDomainUSBAddressControllerModelToPorts); qemu-xhci: its
# ports attribute, else 4
USB_PORTS = {"piix3-uhci": 2, "ich9-ehci1": 6, "qemu-xhci": 4}


def usb_controllers(devices: Node) -> list[Node]:
    """The domain's USB controllers; an ICH9 UHCI companion (<master>) is part of its EHCI, not one of them."""
    return [c for c in devices.findall("controller") if c.get("type") == "usb" and c.find("master") is None]


def usb_model(ctl: Node, machine: str) -> str:
    """A USB controller's model, libvirt's default for the machine when it names none."""
    return ctl.get("model") or ("qemu-xhci" if "q35" in machine else "piix3-uhci")


def usb_port_count(devices: Node, machine: str) -> int:
    """How many ports the domain's USB controller has, as libvirt counts them (0 without one)."""
    usbs = usb_controllers(devices)
    if not usbs:
        return 0
    model, raw = usb_model(usbs[0], machine), usbs[0].get("ports") or ""
    return int(raw) if model == "qemu-xhci" and raw.isdigit() else USB_PORTS.get(model, 0)


def placements(node: Node, machine: str, refusals: Refusals | None = None) -> dict[tuple[str, int], dict[str, Any]]:
    """Each device's PCI placement (or USB port), keyed by the typed list it lands in and its index there
    (("nics", 0), ("videos", 1), ("usb", 0)...), for argv.py to add to that device's -device. A PCI or USB address
    on an element that makes no such device of its own is refused, naming it (every refusal gathered in
    `refusals`)."""
    own = refusals is None
    gathered = refusals or Refusals()
    no_props: dict[str, Any] = {}
    devices = node.find("devices") or Node("devices")
    buses = pci_buses(devices, machine)
    q35 = "q35" in machine
    found: dict[tuple[str, int], dict[str, Any]] = {}

    def place(key: tuple[str, int] | None, el: Node, what: str) -> None:
        props = gathered.take(no_props, pci_placement, el, buses, what)
        if props and key is None:
            gathered.items.append(f"PCI address of {what} {props['addr']!r} is not applied to this element by virtsnap")
        if props and key is not None:
            found[key] = props

    for n, d in enumerate(devices.findall("disk")):
        target = d.find("target")
        virtio = (target.get("bus") if target is not None else None) in (None, "virtio")
        place(("disks", n) if virtio and (d.get("device") or "disk") == "disk" else None, d, f"<disk> {n + 1}")
    for n, i in enumerate(devices.findall("interface")):
        place(("nics", n), i, f"<interface> {n + 1}")
    shown = 0
    for n, v in enumerate(devices.findall("video")):
        model = v.find("model")
        on = (model.get("type") if model is not None else None) != "none"
        place(("videos", shown) if on else None, v, f"<video> {n + 1}")
        shown += on
    made = 0
    usb_taken: dict[int, str] = {}
    usb_count = usb_port_count(devices, machine)

    def place_usb(key: tuple[str, int] | None, el: Node, what: str) -> None:
        """<address type='usb' bus port>: the device's port on the one USB controller (QEMU's bus usb.0)."""
        address = el.find("address")
        if address is None or address.get("type") != "usb":
            return
        bus, port = address.get("bus") or "0", address.get("port")
        if key is None:
            gathered.items.append(f"USB address of {what} is not applied to this element by virtsnap")
        elif bus != "0":
            gathered.items.append(f"USB bus of {what} {bus!r} is not 0 (virtsnap makes one USB controller)")
        elif port is not None and not (port.isdigit() and 0 < int(port) <= usb_count):
            gathered.items.append(f"USB port of {what} {port!r} is not a port of the USB controller (1 to "
                                  f"{usb_count}; ports behind a hub need a USB hub)")
        elif port is not None and usb_taken.setdefault(int(port), what) != what:
            gathered.items.append(f"USB port {port!r} is given to {usb_taken[int(port)]} and {what}")
        elif port is not None:
            found[key] = {**found.get(key, {}), "port": str(int(port))}

    for n, i in enumerate(devices.findall("input")):
        device = INPUTS.get((i.get("type") or "", i.get("bus") or "ps2"))
        place(("inputs", made) if device and not device.startswith("usb-") else None, i, f"<input> {n + 1}")
        place_usb(("inputs", made) if device and device.startswith("usb-") else None, i, f"<input> {n + 1}")
        made += device is not None
    for n, r in enumerate(devices.findall("redirdev")):
        place(None, r, f"<redirdev> {n + 1}")
        place_usb(("redirdevs", n), r, f"<redirdev> {n + 1}")
    for n, r in enumerate(devices.findall("rng")):
        place(("rngs", n), r, f"<rng> {n + 1}")
    for n, balloon in enumerate(devices.findall("memballoon")):
        place(("balloon", 0) if balloon.get("model") == "virtio" and n == 0 else None, balloon,
              f"<memballoon> {n + 1}")
    for n, sound in enumerate(devices.findall("sound")):
        place(("sounds", n), sound, f"<sound> {n + 1}")
    ports = companions = 0
    for n, ctl in enumerate(devices.findall("controller")):
        kind, ctl_model = ctl.get("type") or "", ctl.get("model")
        what = f"<controller type='{kind}'> {n + 1}"
        if kind == "pci" and ctl_model == "pcie-root-port":
            place(("root_ports", ports), ctl, what)
            ports += 1
        elif kind == "usb" and ctl.find("master") is not None:  # an ICH9 UHCI companion of the EHCI
            place(("usb_companions", companions), ctl, what)
            companions += 1
        elif (kind, q35) in BUILT_IN and (ctl.get("index") or "0") == "0":
            props = gathered.take(no_props, pci_placement, ctl, buses, what)
            if props and (props["bus"], props["addr"]) != (buses[0], BUILT_IN[(kind, q35)]):
                gathered.items.append(f"PCI address of {what} {props['addr']!r} is not {BUILT_IN[(kind, q35)]} on the "
                                      "root bus, where the machine has it built in")
        elif kind in ("usb", "virtio-serial", "scsi", "sata") and ctl_model != "none":
            key = (kind.replace("-", "_"), 0)
            place(key if key not in found else None, ctl, what)
        else:
            place(None, ctl, what)
    handled = {"disk", "interface", "video", "input", "rng", "memballoon", "controller", "sound", "redirdev"}
    for tag in dict.fromkeys(el.tag for el in devices.children if el.tag not in handled):
        for n, el in enumerate(devices.findall(tag)):
            place(None, el, f"<{tag}> {n + 1}")  # a device the placements above do not cover: never dropped
            place_usb(None, el, f"<{tag}> {n + 1}")
    if own:
        gathered.check()
    return found


class Hardware(Frozen):
    """The devices and machine settings beyond disks, NICs, serial, agent and VNC, as QEMU is to get them."""

    _fields = ("nic_models", "videos", "balloon", "rngs", "inputs", "usb", "usb_ports", "virtio_serial", "scsi",
               "rtc_base", "rtc_slew", "pit_delay", "hpet", "acpi", "vmport", "cpu", "disable_s3", "disable_s4",
               "serials", "root_ports", "extra", "tpm", "pci")
    __slots__ = _fields

    def __init__(self, nic_models: Sequence[str] = (), videos: Sequence[tuple[str, dict[str, int]]] = (),
                 balloon: bool = False, rngs: Sequence[str | None] = (), inputs: Sequence[str] = (),
                 usb: str | None = None, usb_ports: int | None = None, virtio_serial: bool = False,
                 scsi: bool = False, rtc_base: str = "utc", rtc_slew: bool = False, pit_delay: bool = False,
                 hpet: bool = True, acpi: bool = True, vmport: str | None = None, cpu: str | None = None,
                 disable_s3: bool | None = None, disable_s4: bool | None = None, serials: tuple[int, ...] = (),
                 root_ports: Sequence[tuple[int, int, int]] = (), extra: Extras | None = None,
                 tpm: Tpm | None = None, pci: dict[tuple[str, int], dict[str, Any]] | None = None) -> None:
        self.pci = pci or {}  # placements(): ("nics", 0) -> {"bus": ..., "addr": ...}, ("inputs", 1) -> {"port": ...}
        self.tpm = tpm  # the emulated TPM (swtpm), or None
        self.extra = extra or Extras()  # SPICE, sound, USB companions, Hyper-V, topology, pinning, memory
        self.root_ports = root_ports  # (controller index, chassis, port) of each pcie-root-port
        self.nic_models = nic_models  # QEMU device names, one per <interface>
        self.videos = videos  # (QEMU device, its properties)
        self.balloon = balloon
        self.rngs = rngs  # the random backend's file, or None for rng-builtin
        self.inputs = inputs  # QEMU devices (PS/2 needs none)
        self.usb = usb  # the USB controller's QEMU device, or None
        self.usb_ports = usb_ports
        self.virtio_serial = virtio_serial
        self.scsi = scsi
        self.rtc_base = rtc_base
        self.rtc_slew = rtc_slew
        self.pit_delay = pit_delay
        self.hpet = hpet
        self.acpi = acpi
        self.vmport = vmport
        self.cpu = cpu  # QEMU's -cpu model, or None: host under KVM, max under TCG
        self.disable_s3 = disable_s3
        self.disable_s4 = disable_s4
        self.serials = serials  # each serial port's ISA index (COM1 = 0), in order; the first is QemuDomain.serial

    @staticmethod
    def problems(node: Node) -> list[str]:
        return _text_problems(node) + device_problems(node)

    @classmethod
    def from_node(cls, node: Node, serials: tuple[int, ...], machine: str, vcpus: int = 1,
                  refusals: Refusals | None = None) -> Hardware:
        """The hardware of a table-checked document; its refusals gathered in `refusals` (raised here without)."""
        own = refusals is None
        refusals = refusals or Refusals()
        hw = cls._gather(node, serials, machine, vcpus, refusals)
        if own:
            refusals.check()
        return hw

    @classmethod
    def _gather(cls, node: Node, serials: tuple[int, ...], machine: str, vcpus: int, refusals: Refusals) -> Hardware:
        devices = node.find("devices") or Node("devices")
        nics = []
        for i in devices.findall("interface"):
            model = i.find("model")
            kind = (model.get("type") if model is not None else None) or "rtl8139"  # libvirt's x86 default
            if kind not in NIC_MODELS:
                refusals.items.append(f"NIC model {kind!r} is not one of {', '.join(sorted(NIC_MODELS))}")
            nics.append(NIC_MODELS.get(kind, ""))
        videos: list[tuple[str, dict[str, int]]] = []
        for n, v in enumerate(devices.findall("video")):
            m = v.find("model") or Node("model")
            kind = m.get("type") or "vga"
            if kind not in VIDEO_MODELS:
                refusals.items.append(f"video model {kind!r} is not one of {', '.join(sorted(VIDEO_MODELS))}")
                continue
            if kind == "none":
                continue
            if n > 0 and m.get("primary") == "yes":  # libvirt moves the primary video first; dumpxml has it so
                refusals.items.append(f"video primary='yes' on <video> {n + 1} (the primary video is the first)")
                continue
            dev = VIDEO_MODELS[kind][0 if n == 0 else 1]
            if dev is None:
                refusals.items.append(f"a {kind} video device can only be the primary one")
                continue
            nums = {}
            for k in ("vram", "heads", "ram", "vgamem"):
                raw = m.get(k)
                if raw is not None:
                    if not (raw.isdigit() and 0 < int(raw) <= 1 << 22):
                        refusals.items.append(f"video {k} {raw!r} is not a positive number")
                        continue
                    nums[k] = int(raw)
            props: dict[str, int] = {}
            if kind in ("vga", "cirrus") and "vram" in nums:
                props["vgamem_mb"] = max(nums["vram"] // 1024, 1)
            if kind in ("virtio", "qxl") and "heads" in nums:
                props["max_outputs"] = nums["heads"]
            if kind == "qxl":
                for attr, prop in (("ram", "ram_size"), ("vram", "vram_size")):
                    if attr in nums:
                        props[prop] = nums[attr] * 1024
                if "vgamem" in nums:
                    props["vgamem_mb"] = max(nums["vgamem"] // 1024, 1)
            videos.append((dev, props))
        rngs: list[str | None] = []
        for r in devices.findall("rng"):
            backend = r.find("backend")
            rngs.append(None if backend is not None and backend.get("model") == "builtin"
                        else ((backend.text if backend is not None else None) or "/dev/urandom").strip())
        inputs = [d for d in (INPUTS[(i.get("type") or "", i.get("bus") or "ps2")]
                              for i in devices.findall("input")) if d]
        usb, usb_ports = None, None
        usbs = usb_controllers(devices)
        if len(usbs) > 1:
            refusals.items.append("only one USB controller is supported")
        if usbs:
            usb = USB_MODELS.get(usb_model(usbs[0], machine))
            raw = usbs[0].get("ports")
            if raw is not None and not (raw.isdigit() and 0 < int(raw) <= 15):
                refusals.items.append(f"USB ports {raw!r} is not a number from 1 to 15")
                raw = None
            usb_ports = int(raw) if raw else None
        if (any(i.startswith("usb-") for i in inputs) or devices.findall("redirdev")) and usb is None:
            refusals.items.append("a USB input or redirection device needs a USB controller")
        root_ports = []
        pci = [c for c in devices.findall("controller") if c.get("type") == "pci"]
        for position, c in enumerate(pci):
            if c.get("model") == "pcie-root-port":
                target = c.find("target") or Node("target")
                index = c.get("index") or str(position)  # libvirt numbers unindexed PCI controllers in order
                values: list[int] = []
                for raw in (index, target.get("chassis") or index, target.get("port") or "0"):
                    try:
                        value = int(raw, 0)
                    except ValueError:
                        value = -1
                    if not 0 <= value <= 255:
                        refusals.items.append(f"pcie-root-port index/chassis/port {raw!r} is not a number from 0 "
                                              "to 255")
                    values.append(value)
                if values[0] == 0:
                    refusals.items.append("pcie-root-port index '0' is not above 0 (index 0 is the root bus)")
                root_ports.append((values[0], values[1], values[2]))
        if root_ports and "q35" not in machine:
            refusals.items.append("pcie-root-port controllers need a q35 machine")
        tpms = devices.findall("tpm")
        if len(tpms) > 1:
            refusals.items.append("only one <tpm> device is supported")
        clock = node.find("clock")
        timers = {t.get("name"): t for t in clock.findall("timer")} if clock is not None else {}
        features = node.find("features")
        vmport = features.find("vmport") if features is not None else None
        cpu = node.find("cpu")
        mode = (cpu.get("mode") or "custom") if cpu is not None else None
        cpu_model = None
        if mode == "host-passthrough":
            if node.get("type") != "kvm":
                refusals.items.append("<cpu mode='host-passthrough'> needs a KVM domain")
            cpu_model = "host"
        elif mode == "maximum":
            cpu_model = "max"
        elif mode == "custom" and cpu is not None:
            cpu_model = (cpu.findtext("model") or "").strip()
        pm = node.find("pm")

        def pm_off(name: str) -> bool | None:
            el = pm.find(name) if pm is not None else None
            return None if el is None else el.get("enabled") == "no"

        return cls(
            nic_models=nics, videos=videos,
            balloon=any(b.get("model") == "virtio" for b in devices.findall("memballoon")),
            rngs=rngs, inputs=inputs, usb=usb, usb_ports=usb_ports,
            virtio_serial=any(c.get("type") == "virtio-serial" for c in devices.findall("controller")),
            scsi=any(c.get("type") == "scsi" for c in devices.findall("controller")),
            rtc_base=(clock.get("offset") if clock is not None else None) or "utc",
            rtc_slew="rtc" in timers and timers["rtc"].get("tickpolicy") == "catchup",
            pit_delay="pit" in timers and timers["pit"].get("tickpolicy") == "delay",
            hpet=not ("hpet" in timers and timers["hpet"].get("present") == "no"),
            acpi=features is not None and features.find("acpi") is not None,
            vmport=vmport.get("state") if vmport is not None else None,
            cpu=cpu_model, disable_s3=pm_off("suspend-to-mem"), disable_s4=pm_off("suspend-to-disk"),
            serials=serials, root_ports=root_ports,
            extra=refusals.take(Extras(), Extras.from_node, node, vcpus, check_listen),
            tpm=refusals.take(None, Tpm.from_node, tpms[0]) if tpms else None,
            pci=placements(node, machine, refusals),
        )


class QemuDomain(Frozen):
    """What the command line needs, read from a checked DomainDef; every string argv.py writes into an
    option of QEMU's own key=value syntax is checked here first (the JSON options need no such care)."""

    _fields = ("defn", "kvm", "machine", "memory_mib", "vcpus", "kernel", "initrd", "cmdline", "boot_dev", "disks",
               "agent_socket", "serial", "user_net", "vnc", "seclabel", "hw", "arch", "emulator", "firmware",
               "balloon_bytes", "nets", "channel_ports")
    __slots__ = _fields

    def __init__(self, defn: DomainDef, kvm: bool, machine: str, memory_mib: int, vcpus: int, kernel: str | None,
                 initrd: str | None, cmdline: str | None, boot_dev: str | None, disks: Sequence[Disk] = (),
                 agent_socket: str | None = None, serial: tuple[str, str | None, bool] | None = None,
                 user_net: Sequence[str | None] = (), vnc: Vnc | None = None,
                 seclabel: SecLabel | None = None, hw: Hardware | None = None, arch: str = "x86_64",
                 emulator: str | None = None, firmware: Firmware | None = None,
                 balloon_bytes: int | None = None,
                 nets: Sequence[tuple[str, str | None]] = (),
                 channel_ports: dict[str, int] | None = None) -> None:
        # virtio-serial port name -> the nr its <address> gives; a port not in it takes QEMU's first free nr
        self.channel_ports = channel_ports or {}
        self.firmware = firmware  # UEFI (pflash); None: the default BIOS. Its NVRAM is among `disks`.
        self.balloon_bytes = balloon_bytes  # <currentMemory> below <memory>: the balloon's target at start
        self.arch = arch  # a key of devices.ARCH_BINARIES
        self.emulator = emulator  # <emulator>: must be the binary virtsnap runs for the arch
        self.hw = hw or Hardware()
        # each NIC's host side: ("user", None), ("bridge", bridge name) or ("network", libvirt network name)
        self.nets = nets or [("user", None)] * len(user_net)
        self.defn = defn
        self.kvm = kvm
        self.machine = machine
        self.memory_mib = memory_mib
        self.vcpus = vcpus
        self.kernel = kernel
        self.initrd = initrd
        self.cmdline = cmdline
        self.boot_dev = boot_dev  # the os/boot devices in order, joined by commas
        self.disks = disks
        self.agent_socket = agent_socket  # None: no agent channel; "": one on the runtime directory's socket
        self.serial = serial  # ("file", path, append) or ("pty", None, False)
        self.user_net = user_net  # every NIC's MAC address (their models: hw.nic_models, host sides: nets)
        self.vnc = vnc
        self.seclabel = seclabel

    @classmethod
    def from_def(cls, defn: DomainDef, filled: bool = True) -> QemuDomain:
        """The typed view of a checked definition; `filled=False` for one whose UEFI firmware is not yet
        written out (firmware.fill, at define)."""
        node = defn.node
        problems = list(dict.fromkeys(subset_problems(node) + Hardware.problems(node)))
        refusals = Refusals()
        if problems:
            # What the rest of the document would be refused for once the table's items are taken out, in the
            # same error: the remainder within the table is built for its refusals only. A remainder that cannot
            # be built (an element a refused value took with it was required, or a combination Hardware.problems
            # named is still in it) adds nothing: the table's items are then the answer, as before.
            rest = within_table(node)
            try:
                if rest is not None:
                    cls._build(DomainDef(rest), filled, refusals)
            except Exception:  # only enriches the refusal raised below
                pass
            cls._refuse_all(problems, refusals)
        qdom = cls._build(defn, filled, refusals)
        refusals.check()
        return qdom

    @staticmethod
    def _refuse_all(problems: list[str], refusals: Refusals) -> NoReturn:
        """One refusal naming every item at once: the table's (elements, attributes, values outside it: a user
        can take them out) first, then what the build of the rest found it cannot apply."""
        later = [item for item in dict.fromkeys(refusals.items) if item not in problems]
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    f"not supported by the virtsnap QEMU driver: {'; '.join(problems)}"
                    + (f"; and the virtsnap QEMU driver cannot apply: {'; '.join(later)}" if later else ""))

    @classmethod
    def _build(cls, defn: DomainDef, filled: bool, refusals: Refusals) -> QemuDomain:
        """from_def's work: each independent part's refusal noted in `refusals` and a stand-in taken, so that
        the caller names them all at once."""
        node = defn.node
        os_node = node.find("os")
        os_type = os_node.find("type") if os_node is not None else None
        devices = node.find("devices") or Node("devices")
        disks = []
        for d in devices.findall("disk"):
            target, source, driver = d.find("target"), d.find("source"), d.find("driver")
            stype = d.get("type") or "file"
            path = (source.get("dev") if stype == "block" else source.get("file")) if source is not None else None
            device = d.get("device") or "disk"
            fmt = (driver.get("type") if driver is not None else None) or "raw"
            if target is None or not target.get("dev"):
                raise error(ErrorCode.XML_ERROR, ERR, "a <disk> needs <target dev='...'/>")
            if device == "disk" and not path:
                raise error(ErrorCode.XML_ERROR, ERR, f"disk '{target.get('dev')}' has no source")
            order = d.find("boot")
            raw_order = order.get("order") if order is not None else None
            if raw_order is not None and not (raw_order.isdigit() and 0 < int(raw_order) < 1000):
                refusals.items.append(f"boot order {raw_order!r} is not a number from 1 to 999")
                raw_order = None
            dev = target.get("dev") or ""
            io, cache = (driver.get("io"), driver.get("cache")) if driver is not None else (None, None)
            if io == "native" and cache not in ("none", "directsync"):  # Linux AIO needs O_DIRECT: QEMU fails
                refusals.items.append(f"io='native' of disk '{dev}' needs cache='none' or 'directsync'")
            disks.append(Disk(target=refusals.take(dev, check_target, dev), device=device, source_type=stype,
                              path=refusals.take(path, check_path, "disk source", path), format=fmt,
                              bus=target.get("bus") or "virtio",
                              readonly=d.find("readonly") is not None or device == "cdrom",
                              snapshot=d.get("snapshot"),
                              cache=cache or "default",
                              discard=(driver.get("discard") if driver is not None else None) or "ignore",
                              io=io,
                              boot_order=int(raw_order) if raw_order else None,
                              serial=refusals.take(None, check_disk_serial, d.findtext("serial")),
                              shareable=d.find("shareable") is not None,
                              drive=refusals.take(None, drive_address, d, dev, target.get("bus") or "virtio")))
        machine = (os_type.get("machine") if os_type is not None else None) or "pc"
        if "q35" in machine and any(disk.bus == "ide" for disk in disks):
            refusals.items.append("an IDE disk on a q35 machine (it has no IDE controller: use bus='sata')")
        taken: dict[tuple[str, tuple[int, int, int, int]], str] = {}
        for disk in disks:
            if disk.drive is not None:
                other = taken.setdefault((disk.bus, disk.drive), disk.target)
                if other != disk.target:
                    refusals.items.append(f"disks '{other}' and '{disk.target}' have the same {disk.bus} drive address")
        firmware = refusals.take(None, Firmware.from_node, node, machine, filled)
        if firmware is not None:
            refusals.take(None, check_path, "loader", firmware.code)
            refusals.take(None, check_path, "nvram template", firmware.template)
            if NVRAM_TARGET in (d.target for d in disks):
                refusals.items.append(f"disk target {NVRAM_TARGET!r} is not the name of a disk (it is the NVRAM's)")
            elif firmware.nvram is not None:
                # the NVRAM is an image like a disk's: a block node QEMU writes, snapshots include, hand-over covers
                disks.append(Disk(target=NVRAM_TARGET, device="nvram", source_type="file",
                                  path=refusals.take(None, check_path, "nvram", firmware.nvram),
                                  format=firmware.nvram_format,
                                  bus="pflash", readonly=False, snapshot=None))
        targets = [d.target for d in disks]
        if len(set(targets)) != len(targets):
            raise error(ErrorCode.XML_ERROR, ERR, "two disks use the same target dev")
        agent = None
        channel_ports: dict[str, int] = {}
        for ch in devices.findall("channel"):
            nr = refusals.take(None, channel_port, ch)
            port_name = (ch.find("target") or Node("target")).get("name") or ""
            if ch.get("type") == "spicevmc":
                port_name = port_name or SPICE_PORT
            if nr is not None:
                if nr in channel_ports.values():
                    refusals.items.append(f"virtio-serial port {nr} is given to two channels")
                channel_ports[port_name] = nr
            if ch.get("type") == "spicevmc":
                continue  # SPICE's agent port: devices.Extras
            tgt, src = ch.find("target"), ch.find("source")
            if tgt is not None and tgt.get("name") == "org.qemu.guest_agent.0" and agent is None:
                raw_agent = src.get("path") if src is not None else None
                agent = refusals.take(None, check_path, "agent socket", raw_agent) or ""  # "": ours
            else:
                refusals.items.append("only one guest agent channel (org.qemu.guest_agent.0) is supported")
        serial = None
        # A <console> with a serial target is libvirt's second view of the first <serial>: the first of them
        # is serial port 0; further serials (pty only: their files would need descriptors) are ports 1, 2...
        chardevs = devices.findall("serial") or devices.findall("console")
        for s in chardevs[1:]:
            if (s.get("type") or "pty") != "pty":
                refusals.items.append("only the first serial port may be a file")
        for s in chardevs[:1]:
            src = s.find("source")
            kind = s.get("type") or "pty"
            raw_path = src.get("path") if src is not None else None
            path = refusals.take(None, check_path, "serial file", raw_path)
            if kind == "file" and not path:
                raise error(ErrorCode.XML_ERROR, ERR, "a <serial type='file'> needs <source path='...'/>")
            serial = (kind, path if kind == "file" else None,
                      src is not None and src.get("append") == "on")
        graphics = devices.findall("graphics")
        if len(graphics) > 1:
            refusals.items.append("only one <graphics> device is supported")
        seclabels = node.findall("seclabel")
        if len(seclabels) > 1:
            refusals.items.append("only one <seclabel> (model='dac') is supported")
        raw_initrd = os_node.findtext("initrd") if os_node is not None else None
        initrd = refusals.take(None, check_path, "initrd", raw_initrd)
        if initrd and "," in initrd:  # QEMU's multiboot loader splits -initrd at commas into several modules
            refusals.items.append(f"initrd path {initrd!r} is not a path without ','")
        macs = []
        nets: list[tuple[str, str | None]] = []
        for i in devices.findall("interface"):
            mac = i.find("mac")
            address = (mac.get("address") or "") if mac is not None else None
            macs.append(refusals.take(None, check_mac, address) if address is not None else None)
            kind = i.get("type") or "user"
            source = i.find("source")
            named = source.get(kind) if source is not None and NIC_SOURCES.get(kind) else None
            if kind != "user" and not named:
                raise error(ErrorCode.XML_ERROR, ERR, f"an <interface type='{kind}'> needs <source {kind}='...'/>")
            raw_name = named or ""
            if kind == "bridge":
                named = refusals.take(None, check_ifname, "bridge", raw_name)
            elif kind == "network":
                named = refusals.take(None, check_network_name, raw_name)
            nets.append((kind, named))
        consoles = devices.findall("console")
        for c in consoles:
            ctarget = c.find("target")
            if ctarget is not None and ctarget.get("type") not in (None, "serial"):
                refusals.items.append("only serial consoles are supported")
        if len(consoles) > 1:
            refusals.items.append("only one <console> (the first serial port's) is supported")
        if consoles and devices.findall("serial"):
            refusals.take(None, check_console, consoles[0], devices.findall("serial")[0])
        boot_devs = [b.get("dev") or "hd" for b in os_node.findall("boot")] if os_node is not None else []
        if boot_devs and any(d.find("boot") is not None for d in devices.findall("disk")):
            raise error(ErrorCode.XML_ERROR, ERR, "per-device boot elements cannot be used together with os/boot")
        no_ports: tuple[int, ...] = ()
        ports = refusals.take(no_ports, serial_ports, chardevs[:1] if chardevs == consoles else chardevs,
                              len(chardevs))
        hw = Hardware.from_node(node, ports, machine, defn.vcpus, refusals)
        return cls(
            defn=defn,
            kvm=defn.type == "kvm",
            machine=refusals.take(machine, check_machine_name, machine),
            memory_mib=max(defn.memory_kib // 1024, 16),
            vcpus=defn.vcpus,
            kernel=refusals.take(None, check_path, "kernel",
                                  os_node.findtext("kernel") if os_node is not None else None),
            initrd=initrd,
            cmdline=os_node.findtext("cmdline") if os_node is not None else None,
            boot_dev=",".join(boot_devs) or None,
            disks=disks,
            agent_socket=agent,
            serial=serial,
            user_net=macs,
            vnc=refusals.take(None, Vnc.from_node, graphics[0])
            if graphics and graphics[0].get("type") != "spice" else None,
            seclabel=refusals.take(None, SecLabel.from_node, seclabels[0]) if seclabels else None,
            hw=hw,
            arch=(os_type.get("arch") if os_type is not None else None) or "x86_64",
            emulator=refusals.take(None, check_path, "emulator",
                                    (devices.findtext("emulator") or "").strip() or None),
            firmware=firmware,
            balloon_bytes=refusals.take(None, _balloon_target, defn, hw),
            nets=nets,
            channel_ports=channel_ports,
        )


def _balloon_target(defn: DomainDef, hw: Hardware) -> int | None:
    """libvirt's <currentMemory>: the guest starts with its balloon inflated to leave that much (QMP
    `balloon` at start). Without a virtio balloon nothing could apply it, so it is refused."""
    current = defn.current_memory_kib
    if current >= defn.memory_kib:
        return None  # libvirt too lets it be at most <memory>
    if not hw.balloon:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    f"<currentMemory> {current} KiB below <memory> {defn.memory_kib} KiB needs "
                    "<memballoon model='virtio'> (the balloon is what gives the guest less)")
    if current < 16 * 1024:
        raise _refuse("currentMemory", f"{current} KiB", "at least 16 MiB")
    return current * 1024
