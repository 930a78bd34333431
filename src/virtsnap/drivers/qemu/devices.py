"""The typed view of the virt-install devices and machine settings beyond the first table rows: SPICE with its
channels, audio backends and sound cards, USB redirection, ICH9 USB companions, Hyper-V, CPU topology and
pinning, memory backing. domain.py lists their elements in its table; argv.py writes their options."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ...conf.xmlutil import Node
from ...errors import ErrorCode, ErrorDomain, error
from ...records import Frozen

ERR = ErrorDomain.QEMU
SPICE_PORT = "com.redhat.spice.0"  # the virtio-serial port name of libvirt's spicevmc channel
# libvirt's <sound model> -> (QEMU controller, whether it takes an HDA codec)
SOUND_MODELS = {"ich9": ("ich9-intel-hda", True), "ich6": ("intel-hda", True), "ac97": ("AC97", False)}
CODECS = {"duplex": "hda-duplex", "micro": "hda-micro", "output": "hda-output"}
# ICH9 UHCI companions of an ich9-ehci1 master (libvirt: <controller model='ich9-uhciN'><master startport/>)
USB_COMPANIONS = {"ich9-uhci1": "ich9-usb-uhci1", "ich9-uhci2": "ich9-usb-uhci2", "ich9-uhci3": "ich9-usb-uhci3"}
SPICE_COMPRESSION = frozenset({"auto_glz", "auto_lz", "quic", "glz", "lz", "off"})
# <features><hyperv> children -> QEMU's -cpu property (spinlocks and vendor_id carry a value)
HYPERV = {"relaxed": "hv-relaxed", "vapic": "hv-vapic", "spinlocks": "hv-spinlocks", "vpindex": "hv-vpindex",
          "runtime": "hv-runtime", "synic": "hv-synic", "stimer": "hv-stimer", "reset": "hv-reset",
          "vendor_id": "hv-vendor-id", "frequencies": "hv-frequencies", "reenlightenment": "hv-reenlightenment",
          "tlbflush": "hv-tlbflush", "ipi": "hv-ipi", "evmcs": "hv-evmcs"}
# What TCG cannot give a guest: QEMU refuses hv-vpindex without KVM ("kernel doesn't allow setting HyperV
# VP_INDEX"); synic, stimer, ipi and tlbflush need vpindex (Hyper-V's dependencies, which QEMU checks under KVM),
# evmcs needs nested VMX, which TCG lacks.
HYPERV_KVM_ONLY = ("vpindex", "synic", "stimer", "ipi", "tlbflush", "evmcs")
MAX_CPUS = 4096  # libvirt's cpuset bitmap size
# os/type@arch -> the QEMU binary that runs it (the options argv.py writes are those of the x86 machines)
ARCH_BINARIES = {"x86_64": "qemu-system-x86_64", "i686": "qemu-system-i386"}


def _all(node: Node, path: str) -> list[Node]:
    found = [node]
    for part in path.split("/"):
        found = [child for parent in found for child in parent.findall(part)]
    return found


def _refuse(message: str) -> Exception:
    return error(ErrorCode.CONFIG_UNSUPPORTED, ERR, message)


def parse_cpuset(text: str) -> frozenset[int]:
    """libvirt's cpuset syntax, strictly: comma-separated CPU numbers, ranges N-M and exclusions ^N; the
    result is not empty."""
    cpus: set[int] = set()
    excluded: set[int] = set()
    for item in text.split(","):
        neg = item.startswith("^")
        body = item[1:] if neg else item
        low, dash, high = body.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()) or (neg and dash) or not low.isascii() \
                or not high.isascii():
            raise error(ErrorCode.XML_ERROR, ERR, f"cpuset {text!r}: {item!r} is not N, N-M or ^N")
        first, last = int(low), int(high) if dash else int(low)
        if first > last or last >= MAX_CPUS:
            raise error(ErrorCode.XML_ERROR, ERR, f"cpuset {text!r}: {item!r} is not a range below {MAX_CPUS}")
        (excluded if neg else cpus).update(range(first, last + 1))
    result = frozenset(cpus - excluded)
    if not result:
        raise error(ErrorCode.XML_ERROR, ERR, f"cpuset {text!r} names no CPU")
    return result


def problems(node: Node) -> list[str]:
    """Values and combinations of these elements outside what is applied, each named by its path."""
    found: list[str] = []
    tcg = node.get("type") != "kvm"
    for graphics in _all(node, "devices/graphics"):
        if graphics.get("type") != "spice":
            for child in ("image", "clipboard", "filetransfer", "mouse", "gl"):
                if graphics.find(child) is not None:
                    found.append(f"element <domain/devices/graphics/{child}> (SPICE only)")
            if graphics.get("tlsPort") is not None:
                found.append("attribute 'tlsPort' of <domain/devices/graphics> (SPICE only)")
        elif (graphics.get("tlsPort") or "-1") != "-1":
            found.append(f"tlsPort='{graphics.get('tlsPort')}' of <domain/devices/graphics> (supported: -1, no TLS)")
        for listen in graphics.findall("listen"):
            if listen.get("type") == "socket" and graphics.get("type") != "spice":
                found.append("type='socket' of <domain/devices/graphics/listen> (supported: address, socket is "
                             "SPICE only)")
    for sound in _all(node, "devices/sound"):
        if not sound.get("model"):
            found.append("element <domain/devices/sound> (without a model, supported: ac97, ich6, ich9)")
    for redir in _all(node, "devices/redirdev"):
        if redir.get("type") != "spicevmc" or redir.get("bus", "usb") != "usb":
            found.append("element <domain/devices/redirdev> (supported: bus='usb' type='spicevmc')")
    hyperv = node.find("features")
    hyperv = hyperv.find("hyperv") if hyperv is not None else None
    if hyperv is not None and tcg:
        if hyperv.get("mode") == "passthrough":
            found.append("mode='passthrough' of <domain/features/hyperv> (supported: custom, passthrough needs "
                         "a KVM domain)")
        for name in HYPERV_KVM_ONLY:
            el = hyperv.find(name)
            if el is not None and el.get("state") == "on":
                found.append(f"element <domain/features/hyperv/{name}> (QEMU gives it to KVM domains only)")
    for el in _all(node, "features/hyperv/stimer/direct"):
        if el.get("state") == "on":
            found.append("element <domain/features/hyperv/stimer/direct> (not applied)")
    for el in _all(node, "features/hyperv/vendor_id"):
        value = el.get("value") or ""
        if el.get("state") == "on" and not (0 < len(value) <= 12 and value.isascii() and value.isalnum()):
            found.append(f"value='{value}' of <domain/features/hyperv/vendor_id> (supported: 1 to 12 letters "
                         "or digits)")
    for el in _all(node, "features/hyperv/spinlocks"):
        raw = el.get("retries") or "0"
        if el.get("state") == "on" and not (raw.isdigit() and 4095 <= int(raw) <= 0xFFFFFFFF):
            found.append(f"retries='{raw}' of <domain/features/hyperv/spinlocks> (supported: 4095 and above)")
    for el in _all(node, "features/apic"):
        if el.get("eoi") == "on" and tcg:
            found.append("eoi='on' of <domain/features/apic> (supported: off, kvm-pv-eoi needs a KVM domain)")
    cpu = node.find("cpu")
    if cpu is not None and cpu.get("mode") == "host-model":
        found.append("mode='host-model' of <domain/cpu> (supported: host-passthrough (KVM), maximum, custom, "
                     "libvirt turns host-model into the model its host CPU probe finds, virtsnap does not probe)")
    backing = node.find("memoryBacking")
    if backing is not None:
        source = backing.find("source")
        access = backing.find("access")
        if access is not None and access.get("mode") == "shared" and \
                (source is None or source.get("type") != "memfd"):
            found.append("mode='shared' of <domain/memoryBacking/access> (supported: private, shared needs "
                         "<source type='memfd'/>)")
    return found


class Spice(Frozen):
    """<graphics type='spice'>: a TCP listener (port, or the first free one from 5900) or a unix socket in the
    domain's runtime directory, and a password QEMU reads from a secret object passed by descriptor."""

    _fields = ("listen", "socket", "port", "password", "compression", "copypaste", "filexfer", "mouse")
    __slots__ = _fields

    def __init__(self, listen: str | None, socket: bool, port: int | None, password: str | None,
                 compression: str | None = None, copypaste: bool = True, filexfer: bool = True,
                 mouse: str | None = None) -> None:
        self.listen = listen  # an IP address (None with a socket)
        self.socket = socket
        self.port = port  # None: autoport
        self.password = password
        self.compression = compression
        self.copypaste = copypaste
        self.filexfer = filexfer
        self.mouse = mouse  # server | client | None

    @classmethod
    def from_node(cls, node: Node, check_listen: Callable[[str], str]) -> Spice:
        listens = node.findall("listen")
        socket = any(n.get("type") == "socket" for n in listens)
        addresses = {a for a in [node.get("listen"), *(n.get("address") for n in listens)] if a}
        if socket and (addresses or len(listens) > 1):
            raise _refuse("a SPICE display listens on a socket or an address, not both")
        if len(addresses) > 1:
            raise _refuse("a SPICE display listens on one address only")
        listen = None if socket else check_listen(addresses.pop() if addresses else "127.0.0.1")
        raw = node.get("port")
        port = None
        if not socket and node.get("autoport") != "yes" and raw not in (None, "-1"):
            if not (raw and raw.isdigit() and 1024 <= int(raw) <= 65535):
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                            f"SPICE port {raw!r} is not a number from 1024 to 65535 (or autoport='yes')")
            port = int(raw)
        password = node.get("passwd")
        if password is not None and (not password or "\0" in password):
            raise _refuse("a SPICE password is not empty and has no NUL character")
        image, clip, xfer, mouse = (node.find(t) for t in ("image", "clipboard", "filetransfer", "mouse"))
        return cls(listen, socket, port, password,
                   compression=image.get("compression") if image is not None else None,
                   copypaste=clip is None or clip.get("copypaste") != "no",
                   filexfer=xfer is None or xfer.get("enable") != "no",
                   mouse=mouse.get("mode") if mouse is not None else None)


class Extras(Frozen):
    """What argv.py and process.py apply for these elements."""

    _fields = ("spice", "spice_channels", "redirdevs", "audio", "sounds", "usb_companions", "cpu_props",
               "topology", "cpuset", "memfd", "current")
    __slots__ = _fields

    def __init__(self, spice: Spice | None = None, spice_channels: int = 0, redirdevs: int = 0,
                 audio: Sequence[tuple[int, str]] = (), sounds: Sequence[tuple[str, str | None, int]] = (),
                 usb_companions: Sequence[tuple[str, int]] = (), cpu_props: Sequence[tuple[str, str]] = (),
                 topology: tuple[int, int, int, int] | None = None, cpuset: frozenset[int] | None = None,
                 memfd: bool | None = None, current: int | None = None) -> None:
        self.current = current  # vCPUs present at start when fewer than the maximum (<vcpu current>)
        self.spice = spice
        self.spice_channels = spice_channels  # spicevmc virtio-serial ports (com.redhat.spice.0)
        self.redirdevs = redirdevs  # usb-redir devices over spicevmc
        self.audio = audio  # (id, backend driver): none | spice
        self.sounds = sounds  # (QEMU controller, its HDA codec device or None, audio id)
        self.usb_companions = usb_companions  # (QEMU device, first port on the master EHCI)
        self.cpu_props = cpu_props  # -cpu properties: Hyper-V, kvm=off, enforce (check=partial)
        self.topology = topology  # sockets, dies, cores, threads
        self.cpuset = cpuset  # host CPUs every QEMU thread may run on
        self.memfd = memfd  # None: plain RAM; else a memfd backend, shared or not

    @classmethod
    def from_node(cls, node: Node, vcpus: int, check_listen: Callable[[str], str]) -> Extras:
        devices = node.find("devices") or Node("devices")
        graphics = [g for g in devices.findall("graphics") if g.get("type") == "spice"]
        spice = Spice.from_node(graphics[0], check_listen) if graphics else None
        channels = [c for c in devices.findall("channel") if c.get("type") == "spicevmc"]
        for c in channels:
            target = c.find("target")
            if target is None or target.get("type") != "virtio" or (target.get("name") or SPICE_PORT) != SPICE_PORT:
                raise _refuse(f"a spicevmc channel is the virtio port {SPICE_PORT} only")
        if len(channels) > 1:
            raise _refuse("only one spicevmc channel is supported")
        redirdevs = devices.findall("redirdev")
        audio: list[tuple[int, str]] = []
        for a in devices.findall("audio"):
            raw = a.get("id") or "1"
            if not (raw.isdigit() and 0 < int(raw) < 1000):
                raise _refuse(f"audio id {raw!r} is not a number from 1 to 999")
            audio.append((int(raw), a.get("type") or "none"))
        if len({i for i, _ in audio}) != len(audio):
            raise error(ErrorCode.XML_ERROR, ERR, "two <audio> backends have the same id")
        sound_nodes = devices.findall("sound")
        if sound_nodes and not audio:  # libvirt adds the default backend: SPICE's with a SPICE display
            audio.append((1, "spice" if spice else "none"))
        sounds = []
        for s in sound_nodes:
            controller, hda = SOUND_MODELS[s.get("model") or ""]
            codecs = s.findall("codec")
            if len(codecs) > 1 or (codecs and not hda):
                raise _refuse("a sound card takes at most one <codec>, and only an HDA one (ich6, ich9)")
            codec = CODECS[codecs[0].get("type") or "duplex"] if codecs else CODECS["duplex"] if hda else None
            ref = s.find("audio")
            raw = (ref.get("id") if ref is not None else None) or str(audio[0][0])
            if not raw.isdigit() or int(raw) not in {i for i, _ in audio}:
                raise error(ErrorCode.XML_ERROR, ERR, f"a <sound> uses audio id {raw!r}, which is not defined")
            sounds.append((controller, codec, int(raw)))
        if spice is None and (channels or redirdevs or any(kind == "spice" for _, kind in audio)):
            raise _refuse("spicevmc channels, USB redirection and <audio type='spice'> need a SPICE display")
        companions = []
        controllers = devices.findall("controller")
        masters = [c for c in controllers if c.get("type") == "usb" and c.find("master") is None]
        for c in controllers:
            master = c.find("master")
            if master is None:
                if c.get("model") in USB_COMPANIONS:
                    raise _refuse(f"a {c.get('model')} controller is a companion: it needs <master startport=.../>")
                continue
            if c.get("model") not in USB_COMPANIONS:
                raise _refuse(f"only ich9-uhci1/2/3 controllers take a <master>, not {c.get('model')!r}")
            index = c.get("index") or "0"
            if not any((m.get("index") or "0") == index and m.get("model") == "ich9-ehci1" for m in masters):
                raise _refuse(f"USB companion {c.get('model')} needs an ich9-ehci1 controller with index {index}")
            raw = master.get("startport") or ""
            if not (raw.isdigit() and int(raw) < 6):  # the EHCI has six ports
                raise _refuse(f"USB companion startport {raw!r} is not a number from 0 to 5")
            companions.append((USB_COMPANIONS[c.get("model") or ""], int(raw)))
        props = cls._cpu_props(node)
        topology = None
        cpu = node.find("cpu")
        topo = cpu.find("topology") if cpu is not None else None
        if topo is not None:
            values = []
            for name in ("sockets", "dies", "cores", "threads"):
                raw = topo.get(name) or "1"
                if not (raw.isdigit() and 0 < int(raw) <= 4096):
                    raise error(ErrorCode.XML_ERROR, ERR, f"CPU topology {name} {raw!r} is not a positive number")
                values.append(int(raw))
            if values[0] * values[1] * values[2] * values[3] != vcpus:
                raise error(ErrorCode.XML_ERROR, ERR,
                            f"CPU topology {'x'.join(map(str, values))} does not match the {vcpus} vCPUs")
            topology = (values[0], values[1], values[2], values[3])
        vcpu = node.find("vcpu")
        raw_set = vcpu.get("cpuset") if vcpu is not None else None
        raw_current = vcpu.get("current") if vcpu is not None else None
        if raw_current is not None and not (raw_current.isdigit() and 0 < int(raw_current) <= vcpus):
            raise error(ErrorCode.XML_ERROR, ERR, f"vcpu current {raw_current!r} is not a number from 1 to {vcpus}")
        backing = node.find("memoryBacking")
        memfd = None
        if backing is not None:
            source, access = backing.find("source"), backing.find("access")
            if source is not None and source.get("type") == "memfd":
                memfd = access is not None and access.get("mode") == "shared"
        return cls(spice=spice, spice_channels=len(channels), redirdevs=len(redirdevs), audio=audio,
                   sounds=sounds, usb_companions=companions, cpu_props=props, topology=topology,
                   cpuset=parse_cpuset(raw_set) if raw_set is not None else None, memfd=memfd,
                   current=int(raw_current) if raw_current is not None and int(raw_current) < vcpus else None)

    @staticmethod
    def _cpu_props(node: Node) -> list[tuple[str, str]]:
        """-cpu properties in libvirt's order: Hyper-V enlightenments (hypervclock first, as hv-time), then
        kvm=off for <kvm><hidden state='on'/>."""
        props: list[tuple[str, str]] = []
        clock = node.find("clock")
        for timer in clock.findall("timer") if clock is not None else []:
            if timer.get("name") == "hypervclock" and timer.get("present") != "no":
                props.append(("hv-time", "on"))
        features = node.find("features") or Node("features")
        hyperv = features.find("hyperv")
        if hyperv is not None and hyperv.get("mode") == "passthrough":
            props.append(("hv-passthrough", "on"))
        for child in hyperv.children if hyperv is not None else []:
            if child.get("state") != "on":
                continue
            if child.tag == "spinlocks":
                props.append((HYPERV[child.tag], f"0x{int(child.get('retries') or '0'):x}"))
            elif child.tag == "vendor_id":
                props.append((HYPERV[child.tag], child.get("value") or ""))
            else:
                props.append((HYPERV[child.tag], "on"))
        kvm = features.find("kvm")
        hidden = kvm.find("hidden") if kvm is not None else None
        if hidden is not None and hidden.get("state") == "on":
            props.append(("kvm", "off"))
        apic = features.find("apic")
        if apic is not None and apic.get("eoi") in ("on", "off"):
            props.append(("kvm-pv-eoi", apic.get("eoi") or "off"))
        cpu = node.find("cpu")
        if cpu is not None and cpu.get("check") == "partial":
            # libvirt refuses to start a CPU the hypervisor cannot give whole; QEMU's enforce is that check
            props.append(("enforce", "on"))
        return props


def free_port(address: str, first: int = 5900) -> int:
    """The first TCP port from `first` nobody listens on at `address` (libvirt's SPICE autoport range). QEMU
    binds it a moment later: a process taking it in between makes the start fail with QEMU's own message."""
    import socket

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for port in range(first, 65536):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((address, port))
            except OSError:
                continue
            return port
    raise error(ErrorCode.OPERATION_FAILED, ERR, f"no free TCP port from {first} on {address} for SPICE")


def secret_fd(password: str) -> int:
    """A memfd holding the password (no file on disk, nothing on argv), for QEMU's secret object."""
    import os

    fd = os.memfd_create("virtsnap-spice-secret", os.MFD_CLOEXEC)
    try:
        os.write(fd, password.encode())
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def pin(pid: int, cpus: frozenset[int]) -> None:
    """Every thread of QEMU (its vCPUs, the main loop, the I/O workers) on `cpus`, as libvirt's <vcpu cpuset>
    without <vcpupin>; threads started later inherit the mask from the thread that starts them."""
    import os

    try:
        threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        for tid in threads:
            os.sched_setaffinity(tid, cpus)
    except OSError as exc:
        raise error(ErrorCode.OPERATION_FAILED, ERR,
                    f"cannot pin QEMU to host CPUs {sorted(cpus)}: {exc.strerror or exc}") from exc
