"""The <domain> subset the QEMU driver runs, checked against one declarative table, and its typed view.

Anything outside the table is refused with VIR_ERR_CONFIG_UNSUPPORTED naming the element or attribute,
never dropped; `virsh dumpxml` output of a guest that stays inside the subset defines as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...conf.domain_xml import DomainDef
from ...conf.xmlutil import Node
from ...errors import ErrorCode, ErrorDomain, error
from ...records import Frozen

ERR = ErrorDomain.QEMU
ANY = "*"  # any attribute / any content below (libvirt bookkeeping such as <address>)

# element -> (allowed attributes, allowed children {name: spec} or ANY, text allowed)
Spec = tuple[frozenset[str] | str, dict[str, Any] | str, bool]


def _s(attrs: str = "", children: dict[str, Any] | str | None = None, text: bool = False) -> Spec:
    return (frozenset(attrs.split()) if attrs != ANY else ANY, children if children is not None else {}, text)


_ADDRESS = _s(ANY, ANY)
_ALIAS = _s("name")
_DISK = _s("type device snapshot", {
    "driver": _s("name type cache discard io"),
    "source": _s("file dev index"),
    "backingStore": _s("type index", ANY),
    "target": _s("dev bus"),
    "readonly": _s(),
    "shareable": _s(),
    "serial": _s(text=True),
    "boot": _s("order"),
    "address": _ADDRESS,
    "alias": _ALIAS,
})
SUBSET: dict[str, Spec] = {
    "domain": _s("type id", {
        "name": _s(text=True),
        "uuid": _s(text=True),
        "title": _s(text=True),
        "description": _s(text=True),
        "metadata": _s(ANY, ANY),
        "memory": _s("unit", text=True),
        "currentMemory": _s("unit", text=True),
        "vcpu": _s("placement current", text=True),
        "resource": _s("", {"partition": _s(text=True)}),
        "os": _s("", {
            "type": _s("arch machine", text=True),
            "boot": _s("dev"),
            "kernel": _s(text=True),
            "initrd": _s(text=True),
            "cmdline": _s(text=True),
        }),
        "features": _s("", {"acpi": _s(), "apic": _s("eoi"), "pae": _s(), "vmport": _s("state")}),
        "cpu": _s("mode match check migratable", {"model": _s("fallback", text=True)}),
        "clock": _s("offset", {"timer": _s("name tickpolicy present")}),
        "on_poweroff": _s(text=True),
        "on_reboot": _s(text=True),
        "on_crash": _s(text=True),
        "pm": _s("", {"suspend-to-mem": _s("enabled"), "suspend-to-disk": _s("enabled")}),
        "devices": _s("", {
            "emulator": _s(text=True),
            "disk": _DISK,
            "controller": _s("type index model ports vectors", {"address": _ADDRESS, "alias": _ALIAS,
                                                               "model": _s("name"), "target": _s(ANY)}),
            "channel": _s("type", {
                "source": _s("mode path"),
                "target": _s("type name state"),
                "address": _ADDRESS,
                "alias": _ALIAS,
            }),
            "serial": _s("type", {"source": _s("path append"), "target": _s("type port", {"model": _s("name")}),
                                  "alias": _ALIAS}),
            "console": _s("type tty", {"source": _s("path append"), "target": _s("type port"), "alias": _ALIAS}),
            "interface": _s("type", {"mac": _s("address"), "model": _s("type"), "address": _ADDRESS,
                                     "alias": _ALIAS}),
            "graphics": _s("type port autoport listen passwd", {"listen": _s("type address")}),
            "input": _s("type bus", {"address": _ADDRESS, "alias": _ALIAS}),
            "video": _s("", {"model": _s("type vram heads primary"), "address": _ADDRESS, "alias": _ALIAS}),
            "memballoon": _s("model", {"address": _ADDRESS, "alias": _ALIAS}),
            "rng": _s("model", {"backend": _s("model", text=True), "address": _ADDRESS, "alias": _ALIAS}),
        }),
        "seclabel": _s("type model relabel", {"label": _s(text=True)}),
    }),
}

# Values the driver knows how to turn into QEMU options; others are refused like unknown elements.
VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("domain", "type"): frozenset({"qemu", "kvm"}),
    ("disk", "type"): frozenset({"file", "block"}),
    ("disk", "device"): frozenset({"disk", "cdrom"}),
    ("target", "bus"): frozenset({"virtio", "sata", "scsi", "ide"}),
    ("driver", "type"): frozenset({"qcow2", "raw"}),
    ("interface", "type"): frozenset({"user"}),
    ("graphics", "type"): frozenset({"vnc"}),
    ("serial", "type"): frozenset({"file", "pty"}),
    ("console", "type"): frozenset({"file", "pty"}),
    ("channel", "type"): frozenset({"unix"}),
    ("source", "append"): frozenset({"on", "off"}),
    ("source", "mode"): frozenset({"bind"}),
    ("graphics", "autoport"): frozenset({"yes", "no"}),
    ("listen", "type"): frozenset({"address"}),
    ("seclabel", "model"): frozenset({"dac"}),
    ("seclabel", "type"): frozenset({"static", "dynamic"}),
    ("seclabel", "relabel"): frozenset({"yes", "no"}),
}


def check_subset(node: Node, spec: Spec | None = None, path: str = "") -> None:
    """Refuse any element or attribute outside SUBSET, naming it by its path."""
    spec = spec or SUBSET[node.tag]
    where = f"{path}/{node.tag}" if path else node.tag
    attrs, children, _text = spec
    if attrs != ANY:
        for attr in node.attrs:
            # A prefix declaration (e.g. xmlns:qemu on <domain>) configures nothing: what uses the prefix is
            # checked where it is. A default namespace (xmlns=) would put elements out of libvirt's vocabulary.
            if attr not in attrs and not attr.startswith("xmlns:"):
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                            f"attribute '{attr}' of <{where}> is not supported by the virtsnap QEMU driver")
    for attr, value in node.attrs.items():
        allowed = VALUES.get((node.tag, attr))
        if allowed is not None and value not in allowed:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        f"{attr}='{value}' of <{where}> is not supported (supported: {', '.join(sorted(allowed))})")
    if children == ANY:
        return
    assert isinstance(children, dict)
    for child in node.children:
        if child.tag not in children:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        f"element <{where}/{child.tag}> is not supported by the virtsnap QEMU driver")
        check_subset(child, children[child.tag], where)


def _refuse(what: str, value: str, expected: str) -> Exception:
    return error(ErrorCode.CONFIG_UNSUPPORTED, ERR, f"{what} {value!r} is not {expected}")


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
    if not (0 < len(dev) <= 32 and dev[0] in _LOWER and (_LOWER | _DIGITS).issuperset(dev)):
        raise _refuse("disk target", dev, "a name of lower-case letters and digits, such as 'vda'")
    return dev


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


class Disk(Frozen):
    _fields = ("target", "device", "source_type", "path", "format", "bus", "readonly", "snapshot")
    __slots__ = _fields

    def __init__(self, target: str, device: str, source_type: str, path: str | None, format: str, bus: str,
                 readonly: bool, snapshot: str | None) -> None:
        self.target = target
        self.device = device  # disk | cdrom
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


class QemuDomain(Frozen):
    """What the command line needs, read from a checked DomainDef; every string argv.py writes into an
    option of QEMU's own key=value syntax is checked here first (the JSON options need no such care)."""

    _fields = ("defn", "kvm", "machine", "memory_mib", "vcpus", "kernel", "initrd", "cmdline", "boot_dev", "disks",
               "agent_socket", "serial", "user_net", "vnc", "seclabel")
    __slots__ = _fields

    def __init__(self, defn: DomainDef, kvm: bool, machine: str, memory_mib: int, vcpus: int, kernel: str | None,
                 initrd: str | None, cmdline: str | None, boot_dev: str | None, disks: Sequence[Disk] = (),
                 agent_socket: str | None = None, serial: tuple[str, str | None, bool] | None = None,
                 user_net: Sequence[str | None] = (), vnc: Vnc | None = None,
                 seclabel: SecLabel | None = None) -> None:
        self.defn = defn
        self.kvm = kvm
        self.machine = machine
        self.memory_mib = memory_mib
        self.vcpus = vcpus
        self.kernel = kernel
        self.initrd = initrd
        self.cmdline = cmdline
        self.boot_dev = boot_dev
        self.disks = disks
        self.agent_socket = agent_socket  # None: no agent channel; "": one on the runtime directory's socket
        self.serial = serial  # ("file", path, append) or ("pty", None, False)
        self.user_net = user_net  # MAC addresses
        self.vnc = vnc
        self.seclabel = seclabel

    @classmethod
    def from_def(cls, defn: DomainDef) -> QemuDomain:
        node = defn.node
        check_subset(node)
        os_node = node.find("os")
        os_type = os_node.find("type") if os_node is not None else None
        boot = os_node.find("boot") if os_node is not None else None
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
            disks.append(Disk(target=check_target(target.get("dev") or ""), device=device, source_type=stype,
                              path=check_path("disk source", path), format=fmt, bus=target.get("bus") or "virtio",
                              readonly=d.find("readonly") is not None or device == "cdrom",
                              snapshot=d.get("snapshot")))
        targets = [d.target for d in disks]
        if len(set(targets)) != len(targets):
            raise error(ErrorCode.XML_ERROR, ERR, "two disks use the same target dev")
        agent = None
        for ch in devices.findall("channel"):
            tgt, src = ch.find("target"), ch.find("source")
            if tgt is not None and tgt.get("name") == "org.qemu.guest_agent.0" and agent is None:
                agent = check_path("agent socket", src.get("path") if src is not None else None) or ""  # "": ours
            else:
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                            "only one guest agent channel (org.qemu.guest_agent.0) is supported")
        serial = None
        chardevs = devices.findall("serial") + devices.findall("console")
        for s in chardevs[:1]:
            src = s.find("source")
            kind = s.get("type") or "pty"
            path = check_path("serial file", src.get("path") if src is not None else None)
            if kind == "file" and not path:
                raise error(ErrorCode.XML_ERROR, ERR, "a <serial type='file'> needs <source path='...'/>")
            serial = (kind, path if kind == "file" else None,
                      src is not None and src.get("append") == "on")
        graphics = devices.findall("graphics")
        if len(graphics) > 1:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, "only one <graphics> device is supported")
        seclabels = node.findall("seclabel")
        if len(seclabels) > 1:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, "only one <seclabel> (model='dac') is supported")
        machine = (os_type.get("machine") if os_type is not None else None) or "pc"
        initrd = check_path("initrd", os_node.findtext("initrd") if os_node is not None else None)
        if initrd and "," in initrd:  # QEMU's multiboot loader splits -initrd at commas into several modules
            raise _refuse("initrd path", initrd, "a path without ','")
        macs = []
        for i in devices.findall("interface"):
            mac = i.find("mac")
            macs.append(check_mac(mac.get("address") or "") if mac is not None else None)
        return cls(
            defn=defn,
            kvm=defn.type == "kvm",
            machine=check_machine_name(machine),
            memory_mib=max(defn.memory_kib // 1024, 16),
            vcpus=defn.vcpus,
            kernel=check_path("kernel", os_node.findtext("kernel") if os_node is not None else None),
            initrd=initrd,
            cmdline=os_node.findtext("cmdline") if os_node is not None else None,
            boot_dev=boot.get("dev") if boot is not None else None,
            disks=disks,
            agent_socket=agent,
            serial=serial,
            user_net=macs,
            vnc=Vnc.from_node(graphics[0]) if graphics else None,
            seclabel=SecLabel.from_node(seclabels[0]) if seclabels else None,
        )
