"""The only writer of QEMU options: a checked QemuDomain and the descriptors of its launch become QEMU's argv.

JSON wherever QEMU 7.2 takes it (-blockdev, -device, -netdev); elsewhere a value is a checked type or has its
commas doubled (QemuOpts' escape), and files QEMU must open by name (sockets, serial file) arrive as descriptors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ...errors import ErrorCode, ErrorDomain, error
from ...records import Frozen
from .devices import SPICE_PORT
from .domain import CACHE, Disk, QemuDomain
from .firmware import CODE_NODE, NVRAM_NODE

ERR = ErrorDomain.QEMU
AGENT_PORT = "org.qemu.guest_agent.0"
# libvirt's defaults for a confined QEMU: no obsolete syscalls, no set*id, no fork/exec, no scheduler changes.
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
SERIAL_FDSET = 1
NVRAM_FDSET = 2
VNC_DISPLAYS = 100  # autoport: the first free display from 0 (port 5900) on


class Descriptors(Frozen):
    """Files virtsnap opened or bound for QEMU, passed by number (QEMU never opens these paths itself)."""

    _fields = ("monitor", "agent", "serial", "tpm", "spice_secret", "spice_port", "spice_socket", "nvram", "taps",
               "kept_monitor")
    __slots__ = _fields

    def __init__(self, monitor: int, agent: int | None = None, serial: int | None = None,
                 tpm: int | None = None, spice_secret: int | None = None, spice_port: int | None = None,
                 spice_socket: str | None = None, nvram: int | None = None,
                 taps: tuple[int, ...] = (), kept_monitor: int | None = None) -> None:
        self.nvram = nvram  # the UEFI variable store, open read-write (QEMU's user need not reach its path)
        self.monitor = monitor  # a listening unix socket: QMP
        self.kept_monitor = kept_monitor  # another one: the QMP monitor one connection keeps open (context.py)
        self.agent = agent  # a listening unix socket: the guest agent's virtio-serial port
        self.serial = serial  # a file open for writing: the serial console's output
        self.tpm = tpm  # a connected unix socket: swtpm's control channel
        self.spice_secret = spice_secret  # a memfd holding the SPICE password
        self.spice_port = spice_port  # the SPICE TCP port (autoport: the free one process.py found)
        self.spice_socket = spice_socket  # the SPICE unix socket QEMU binds, in the domain's runtime directory
        self.taps = taps  # tap devices virtsnap made, one per bridge or network NIC in document order


def opt(value: str) -> str:
    """A value inside QEMU's key=value,... syntax (QemuOpts): a comma is doubled, so it cannot start an option."""
    return value.replace(",", ",,")


def _json(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _placed(dom: QemuDomain, key: str, n: int, device: dict[str, Any]) -> str:
    """A -device value with the placement its element's <address type='pci'> (or type='usb': its port) asked for
    (domain.py)."""
    return _json({**device, **dom.hw.pci.get((key, n), {})})


def _port_nr(dom: QemuDomain, name: str) -> dict[str, int]:
    """The nr a virtserialport's <address type='virtio-serial' port> gives it; {}: QEMU's first free one."""
    return {"nr": dom.channel_ports[name]} if name in dom.channel_ports else {}


def build(dom: QemuDomain, fds: Descriptors, binary: str, *, incoming: bool = False,
          sandbox: bool = True) -> list[str]:
    """QEMU's argument list. It always starts paused (-S): the caller finishes setting it up through the
    monitor (VNC password, incoming memory) and then lets the guest run."""
    check_machine(binary, dom.machine)
    hw = dom.hw
    argv = [binary, "-name", f"guest={opt(dom.defn.name)}", "-uuid", dom.defn.uuid,
            "-nodefaults", "-no-user-config", "-machine", _machine(dom),
            "-accel", "kvm" if dom.kvm else "tcg", "-cpu", _cpu(dom),
            "-m", str(int(dom.memory_mib)), "-smp", _smp(dom),
            "-chardev", f"socket,id=monitor,fd={int(fds.monitor)},server=on,wait=off",
            "-mon", "chardev=monitor,mode=control"]
    if fds.kept_monitor is not None:
        argv += ["-chardev", f"socket,id=monitor-kept,fd={int(fds.kept_monitor)},server=on,wait=off",
                 "-mon", "chardev=monitor-kept,mode=control"]
    argv.append("-S")
    if sandbox:
        argv += ["-sandbox", SANDBOX]
    # -kernel, -initrd and -append take their value whole (no key=value parsing); an initrd with commas, which
    # QEMU's multiboot loader would split, was refused by domain.py.
    if dom.kernel:
        argv += ["-kernel", dom.kernel]
    if dom.initrd:
        argv += ["-initrd", dom.initrd]
    if dom.cmdline:
        argv += ["-append", dom.cmdline]
    if dom.boot_dev:
        argv += ["-boot", "order=" + "".join(BOOT_LETTERS[d] for d in dom.boot_dev.split(","))]
    argv += ["-rtc", f"base={hw.rtc_base}" + (",driftfix=slew" if hw.rtc_slew else "")]
    if hw.pit_delay and dom.kvm:  # libvirt's tickpolicy='delay': KVM's in-kernel PIT only (TCG's has no choice)
        argv += ["-global", "kvm-pit.lost_tick_policy=delay"]
    pm_device = "ICH9-LPC" if "q35" in dom.machine else "PIIX4_PM"
    for prop, off in (("disable_s3", hw.disable_s3), ("disable_s4", hw.disable_s4)):
        if off is not None:
            argv += ["-global", f"{pm_device}.{prop}={int(off)}"]
    argv += _firmware(dom, fds) + _root_ports(dom) + _disks(dom)
    if dom.agent_socket is not None or hw.virtio_serial or hw.extra.spice_channels:
        argv += ["-device", _placed(dom, "virtio_serial", 0, {"driver": "virtio-serial-pci", "id": "vser0"})]
    if dom.agent_socket is not None:
        if fds.agent is None:
            raise error(ErrorCode.INTERNAL_ERROR, ERR, "the guest agent channel has no socket")
        argv += ["-chardev", f"socket,id=qga0,fd={int(fds.agent)},server=on,wait=off",
                 "-device", _json({"driver": "virtserialport", "bus": "vser0.0", "chardev": "qga0",
                                   "name": AGENT_PORT, **_port_nr(dom, AGENT_PORT)})]
    if dom.serial is not None:
        kind = dom.serial[0]
        if kind == "file":
            if fds.serial is None:
                raise error(ErrorCode.INTERNAL_ERROR, ERR, "the serial file was not opened")
            argv += ["-add-fd", f"fd={int(fds.serial)},set={SERIAL_FDSET}",
                     "-chardev", f"file,id=serial0,path=/dev/fdset/{SERIAL_FDSET},append=on"]
        else:
            argv += ["-chardev", "pty,id=serial0"]
        argv += ["-device", _json({"driver": "isa-serial", "chardev": "serial0", "index": hw.serials[0]})]
    for n in range(1, len(hw.serials)):  # further serial ports: pseudo-terminals (domain.py refused files)
        argv += ["-chardev", f"pty,id=serial{n}",
                 "-device", _json({"driver": "isa-serial", "chardev": f"serial{n}", "index": hw.serials[n]})]
    taps = iter(fds.taps)
    for i, (mac, model, (kind, _source)) in enumerate(zip(dom.user_net, hw.nic_models, dom.nets, strict=True)):
        device: dict[str, Any] = {"driver": model, "netdev": f"net{i}", "id": f"net{i}"}
        if mac:
            device["mac"] = mac
        netdev: dict[str, Any] = {"type": "user", "id": f"net{i}"}
        if kind != "user":
            tap = next(taps, None)
            if tap is None:
                raise error(ErrorCode.INTERNAL_ERROR, ERR, f"interface {i} has no tap device")
            netdev = {"type": "tap", "id": f"net{i}", "fd": str(int(tap))}
        argv += ["-netdev", _json(netdev), "-device", _placed(dom, "nics", i, device)]
    if dom.hw.tpm is not None:
        if fds.tpm is None:
            raise error(ErrorCode.INTERNAL_ERROR, ERR, "the TPM has no swtpm control channel")
        # libvirt's ids; the chardev is swtpm's control channel, already connected (fd=: no socket file)
        argv += ["-chardev", f"socket,id=chrtpm,fd={int(fds.tpm)}",
                 "-tpmdev", "emulator,id=tpm-tpm0,chardev=chrtpm",
                 "-device", _json({"driver": dom.hw.tpm.device, "tpmdev": "tpm-tpm0", "id": "tpm0"})]
    argv += _display(dom) + _devices(dom) + _spice(dom, fds)
    if (dom.defn.node.findtext("on_reboot") or "restart") == "destroy":
        argv.append("-no-reboot")  # libvirt's on_reboot=destroy: a guest reboot (or panic) ends QEMU
    if incoming:
        argv += ["-incoming", "defer"]  # memory comes later through migrate-incoming
    return argv


BOOT_LETTERS = {"hd": "c", "cdrom": "d", "network": "n", "fd": "a"}


def _machine(dom: QemuDomain) -> str:
    """-machine: the checked type name, then libvirt's <features> that are machine properties."""
    # libvirt gives a guest ACPI only when <features><acpi/> asks for it
    value = f"{dom.machine},acpi={'on' if dom.hw.acpi else 'off'}"
    if not dom.hw.hpet:
        value += ",hpet=off"
    if dom.firmware is not None and dom.firmware.smm:
        value += ",smm=on"
    if dom.hw.vmport is not None:
        value += f",vmport={'on' if dom.hw.vmport == 'on' else 'off'}"
    if dom.hw.extra.memfd is not None:
        value += f",memory-backend={RAM_ID}"
    return value


RAM_ID = "pc.ram"  # the x86 machines' own RAM id: a memory snapshot taken without the backend still loads


def _cpu(dom: QemuDomain) -> str:
    """-cpu: the model (checked by domain.py), then its properties from fixed names and checked values."""
    value = dom.hw.cpu or ("host" if dom.kvm else "max")
    return value + "".join(f",{name}={opt(prop)}" for name, prop in dom.hw.extra.cpu_props)


def _smp(dom: QemuDomain) -> str:
    """-smp as libvirt writes it: the vCPUs present, the maximum, and always a topology (without <topology>,
    one socket per vCPU: QEMU's own default for 6.2+ machine types would make them cores of one socket)."""
    vcpus = max(int(dom.vcpus), 1)
    extra = dom.hw.extra
    value = f"{int(extra.current)},maxcpus={vcpus}" if extra.current is not None else str(vcpus)
    if extra.topology is None:
        return value + f",sockets={vcpus},cores=1,threads=1"
    sockets, dies, cores, threads = (int(n) for n in extra.topology)
    return value + f",sockets={sockets},dies={dies},cores={cores},threads={threads}"


def _devices(dom: QemuDomain) -> list[str]:
    """Video, USB and its inputs, other inputs, the balloon and random number generators."""
    hw = dom.hw
    argv: list[str] = []
    for n, (driver, props) in enumerate(hw.videos):
        argv += ["-device", _placed(dom, "videos", n, {"driver": driver, "id": f"video{n}", **props})]
    if hw.usb is not None:
        usb: dict[str, Any] = {"driver": hw.usb, "id": "usb"}
        if hw.usb_ports and hw.usb == "qemu-xhci":
            usb["p2"] = usb["p3"] = int(hw.usb_ports)
        argv += ["-device", _placed(dom, "usb", 0, usb)]
    for k, (driver, port) in enumerate(hw.extra.usb_companions):  # ICH9 UHCIs of the EHCI (libvirt: no id)
        argv += ["-device", _placed(dom, "usb_companions", k, {"driver": driver, "masterbus": "usb.0",
                                                               "firstport": int(port)})]
    for n, driver in enumerate(hw.inputs):
        device: dict[str, Any] = {"driver": driver, "id": f"input{n}"}
        if driver.startswith("usb-"):
            device["bus"] = "usb.0"
        argv += ["-device", _placed(dom, "inputs", n, device)]
    for audio_id, kind in hw.extra.audio:  # none: a backend that plays nothing; spice: to the SPICE client
        argv += ["-audiodev", _json({"driver": kind, "id": f"audio{int(audio_id)}"})]
    for n, (controller, codec, audio_id) in enumerate(hw.extra.sounds):
        device = {"driver": controller, "id": f"sound{n}"}
        if codec is None:
            argv += ["-device", _placed(dom, "sounds", n, {**device, "audiodev": f"audio{int(audio_id)}"})]
        else:
            argv += ["-device", _placed(dom, "sounds", n, device), "-device", _json({
                "driver": codec, "id": f"sound{n}-codec0", "bus": f"sound{n}.0", "cad": 0,
                "audiodev": f"audio{int(audio_id)}"})]
    if hw.balloon:
        argv += ["-device", _placed(dom, "balloon", 0, {"driver": "virtio-balloon-pci", "id": "balloon0"})]
    if hw.extra.memfd is not None:
        argv += ["-object", _json({"qom-type": "memory-backend-memfd", "id": RAM_ID, "share": bool(hw.extra.memfd),
                                   "size": int(dom.memory_mib) << 20,
                                   "x-use-canonical-path-for-ramblock-id": False})]
    for n, path in enumerate(hw.rngs):
        backend: dict[str, Any] = ({"qom-type": "rng-builtin", "id": f"objrng{n}"} if path is None
                                   else {"qom-type": "rng-random", "id": f"objrng{n}", "filename": path})
        argv += ["-object", _json(backend),
                 "-device", _placed(dom, "rngs", n, {"driver": "virtio-rng-pci", "rng": f"objrng{n}", "id": f"rng{n}"})]
    return argv


def _root_ports(dom: QemuDomain) -> list[str]:
    """libvirt's pcie-root-port controllers, named as libvirt names them (pci.<index>), before any device: a
    device placed on the bus behind one needs it to exist already."""
    argv: list[str] = []
    for k, (index, chassis, port) in enumerate(dom.hw.root_ports):
        port_device = {"driver": "pcie-root-port", "id": f"pci.{int(index)}", "bus": "pcie.0", "chassis": int(chassis),
                       "port": int(port)}
        argv += ["-device", _placed(dom, "root_ports", k, port_device)]
    return argv


def _firmware(dom: QemuDomain, fds: Descriptors) -> list[str]:
    """UEFI: the read-only code as pflash0, the NVRAM image's node (made by _disks on the descriptor virtsnap
    opened: the domain's own store lies in virtsnap's private directory) as pflash1; SMM-secured flash as
    libvirt sets it up for secure boot."""
    fw = dom.firmware
    if fw is None:
        return []
    if fw.nvram is not None and fds.nvram is None:
        raise error(ErrorCode.INTERNAL_ERROR, ERR, "the NVRAM was not opened")
    argv = ["-add-fd", f"fd={int(fds.nvram)},set={NVRAM_FDSET}"] if fds.nvram is not None else []
    argv += ["-blockdev", _json({"driver": "file", "filename": fw.code, "node-name": f"{CODE_NODE}-file",
                                "read-only": True}),
            "-blockdev", _json({"driver": "raw", "file": f"{CODE_NODE}-file", "node-name": CODE_NODE,
                                "read-only": True}),
            "-machine", f"pflash0={CODE_NODE},pflash1={NVRAM_NODE}"]
    if fw.secure:
        argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
    return argv


def block_options(disk: Disk) -> tuple[dict[str, Any], dict[str, Any]]:
    """The block options of every image node of a disk, as libvirt gives each image of the disk's chain (the
    image at start here, an overlay a live external snapshot adds in create.py): (the file node's, the format
    node's). Cache mode and discard on both, the I/O mode on the file node."""
    direct, no_flush, _ = CACHE[disk.cache]
    common: dict[str, Any] = {"cache": {"direct": direct, "no-flush": no_flush},
                              "discard": "unmap" if disk.discard == "unmap" else "ignore"}
    return ({**common, "aio": disk.io} if disk.io else dict(common)), dict(common)


def _disks(dom: QemuDomain) -> list[str]:
    argv: list[str] = []
    controllers: set[str] = set()
    q35 = "q35" in dom.machine
    for n, disk in enumerate(dom.disks):
        device: dict[str, Any] = {"id": disk.target}
        if disk.path:
            write_cache = CACHE[disk.cache][2]
            file_options, fmt_options = block_options(disk)
            file_node: dict[str, Any] = {"driver": "host_device" if disk.source_type == "block" else "file",
                                         "filename": f"/dev/fdset/{NVRAM_FDSET}" if disk.device == "nvram"
                                         else disk.path, "node-name": f"{disk.node_name}-file",
                                         "read-only": disk.readonly, **file_options}
            fmt_node = {"driver": disk.format, "file": f"{disk.node_name}-file", "node-name": disk.node_name,
                        "read-only": disk.readonly, **fmt_options}
            argv += ["-blockdev", _json(file_node), "-blockdev", _json(fmt_node)]
            if disk.device == "nvram":
                continue  # a pflash node (see _firmware), no device of its own
            device["drive"] = disk.node_name
            device["write-cache"] = "on" if write_cache else "off"  # libvirt's writethrough/directsync
            if disk.device == "disk":
                # A guest whose disk fails (its host filesystem full) pauses on the error and never sees it:
                # domstate says "paused (I/O error)", snapshot-check names the image, resume retries the request.
                device["werror"] = device["rerror"] = "stop"
        if disk.bus == "virtio" and disk.device == "disk":
            device["driver"] = "virtio-blk-pci"
        elif disk.bus in ("sata", "ide"):
            if disk.bus == "sata" and "sata" not in controllers and not q35:
                argv += ["-device", _placed(dom, "sata", 0, {"driver": "ahci", "id": "sata0"})]
                controllers.add("sata")
            assert disk.drive is not None  # domain.py places every ide/sata disk
            _, bus, _, unit = disk.drive
            if disk.bus == "ide":  # pc's PIIX IDE: buses ide.0-1, units 0-1 (domain.py refuses IDE on q35)
                device["bus"], device["unit"] = f"ide.{bus}", unit
            else:  # an AHCI's ports are its buses, one unit each: q35's own ICH9 AHCI (ide.0-5), as libvirt uses it
                device["bus"] = f"ide.{unit}" if q35 else f"sata0.{unit}"
            device["driver"] = "ide-cd" if disk.device == "cdrom" else "ide-hd"
        else:  # scsi, or a virtio cdrom, which QEMU offers only on SCSI
            if "scsi" not in controllers:
                argv += ["-device", _placed(dom, "scsi", 0, {"driver": "virtio-scsi-pci", "id": "scsi0"})]
                controllers.add("scsi")
            device["bus"] = "scsi0.0"
            if disk.drive is not None:  # libvirt's channel, scsi-id and lun (a virtio cdrom: QEMU's first free)
                _, device["channel"], device["scsi-id"], device["lun"] = disk.drive
            device["driver"] = "scsi-cd" if disk.device == "cdrom" else "scsi-hd"
        if disk.boot_order is not None:
            device["bootindex"] = int(disk.boot_order)
        if disk.serial is not None:
            device["serial"] = disk.serial
        if disk.shareable:
            device["share-rw"] = True
        argv += ["-device", _placed(dom, "disks", n, device)]
    if dom.hw.scsi and "scsi" not in controllers:
        argv += ["-device", _placed(dom, "scsi", 0, {"driver": "virtio-scsi-pci", "id": "scsi0"})]
    return argv


def _display(dom: QemuDomain) -> list[str]:
    """-vnc has no JSON form in QEMU 7.2: its only values are an IP address and numbers, checked by domain.py."""
    vnc = dom.vnc
    if vnc is None:
        return ["-display", "none"]
    host = f"[{vnc.listen}]" if ":" in vnc.listen else vnc.listen
    if vnc.port is None:
        value = f"{host}:0,to={VNC_DISPLAYS - 1}"
    else:
        value = f"{host}:{int(vnc.port) - 5900}"
    if vnc.password is not None:
        value += ",password=on"  # the password itself goes through the monitor (set_password), never argv
    return ["-vnc", value]


# -- what the QEMU binary offers -----------------------------------------------------------------------
class Facts(Frozen):
    _fields = ("version", "machines")
    __slots__ = _fields

    def __init__(self, version: tuple[int, ...], machines: frozenset[str]) -> None:
        self.version = version
        self.machines = machines


_facts: dict[str, Facts] = {}


def facts(binary: str) -> Facts:
    """The version and machine types (aliases included) of a QEMU binary, from `--version` and `-machine
    help`; cached on disk keyed by the binary's identity (path, size, mtime), since asking costs QEMU starts."""
    st = os.stat(binary)
    key = f"{os.path.realpath(binary)}:{st.st_size}:{st.st_mtime_ns}"
    if key in _facts:
        return _facts[key]
    import hashlib

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "virtsnap" / "qemu-binaries"
    path = cache / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
    try:
        raw = json.loads(path.read_text())
        found = Facts(tuple(int(x) for x in raw["version"]), frozenset(str(m) for m in raw["machines"]))
    except (OSError, ValueError, KeyError, TypeError):
        found = _ask(binary)
        try:
            cache.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"version": list(found.version), "machines": sorted(found.machines)}))
            tmp.replace(path)
        except OSError:
            pass  # no cache: asked again next time
    _facts[key] = found
    return found


def _ask(binary: str) -> Facts:
    import re
    import subprocess

    def run(*args: str) -> list[str]:
        proc = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0 or not proc.stdout.strip():
            raise error(ErrorCode.OPERATION_FAILED, ERR,
                        f"{binary} {' '.join(args)} failed: {proc.stderr.strip()[:200] or proc.returncode}")
        return proc.stdout.splitlines()

    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", run("--version")[0])
    version = tuple(int(x) for x in match.groups()) if match else (0, 0, 0)
    machines = frozenset(line.split()[0] for line in run("-machine", "help")[1:] if line.strip())
    return Facts(version, machines)


def check_machine(binary: str, machine: str) -> None:
    """Refuse a machine type this QEMU does not offer, before it reaches the command line."""
    if machine not in facts(binary).machines:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    f"machine type {machine!r} is not offered by {binary} (see '{binary} -machine help')")


def _spice(dom: QemuDomain, fds: Descriptors) -> list[str]:
    """-spice (QemuOpts only in 7.2: its values are an IP address, numbers, fixed words and the runtime
    directory's socket path with its commas doubled), the password as a secret object read from a descriptor,
    then SPICE's agent channel and USB redirection over spicevmc chardevs."""
    spice = dom.hw.extra.spice
    if spice is None:
        return []
    argv: list[str] = []
    if spice.socket:
        if fds.spice_socket is None:
            raise error(ErrorCode.INTERNAL_ERROR, ERR, "the SPICE socket has no path")
        value = f"unix=on,addr={opt(fds.spice_socket)}"
    else:
        port = spice.port if spice.port is not None else fds.spice_port
        if port is None or spice.listen is None:
            raise error(ErrorCode.INTERNAL_ERROR, ERR, "the SPICE display has no port")
        value = f"port={int(port)},addr={spice.listen}"
    if spice.password is None:
        value += ",disable-ticketing=on"
    else:
        if fds.spice_secret is None:
            raise error(ErrorCode.INTERNAL_ERROR, ERR, "the SPICE password has no descriptor")
        argv += ["-object", _json({"qom-type": "secret", "id": "graphics0-secret", "format": "raw",
                                   "file": f"/proc/self/fd/{int(fds.spice_secret)}"})]
        value += ",password-secret=graphics0-secret"
    if spice.compression is not None:
        value += f",image-compression={spice.compression}"  # a word from devices.SPICE_COMPRESSION
    if not spice.copypaste:
        value += ",disable-copy-paste=on"
    if not spice.filexfer:
        value += ",disable-agent-file-xfer=on"
    if spice.mouse is not None:
        value += f",agent-mouse={'on' if spice.mouse == 'client' else 'off'}"
    argv += ["-spice", value + ",seamless-migration=on"]
    if dom.hw.extra.spice_channels:
        argv += ["-chardev", "spicevmc,id=charchannel0,name=vdagent",
                 "-device", _json({"driver": "virtserialport", "bus": "vser0.0", "chardev": "charchannel0",
                                   "id": "channel0", "name": SPICE_PORT, **_port_nr(dom, SPICE_PORT)})]
    for n in range(int(dom.hw.extra.redirdevs)):
        argv += ["-chardev", f"spicevmc,id=charredir{n},name=usbredir",
                 "-device", _placed(dom, "redirdevs", n, {"driver": "usb-redir", "chardev": f"charredir{n}",
                                                          "id": f"redir{n}", "bus": "usb.0"})]
    return argv
