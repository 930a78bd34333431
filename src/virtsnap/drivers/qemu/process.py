"""QEMU processes: the command line for a domain, launching it detached, finding and stopping it.

QEMU runs daemonized (it outlives the CLI that started it); its pid file and monitor socket live in a
private runtime directory per domain, which is how a later process reconnects.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ...errors import ErrorCode, ErrorDomain, error
from ...records import Frozen
from ...store.db import private_dir
from .domain import QemuDomain

ERR = ErrorDomain.QEMU
AGENT_PORT = "org.qemu.guest_agent.0"


def qemu_binary() -> str:
    import shutil  # shutil and subprocess: only for starting QEMU

    path = os.environ.get("VIRTSNAP_QEMU") or shutil.which("qemu-system-x86_64")
    if not path:
        raise error(ErrorCode.OPERATION_FAILED, ERR,
                    "qemu-system-x86_64 not found (install Debian's qemu-system-x86, or set VIRTSNAP_QEMU)")
    return path


def runtime_root(system: bool) -> Path:
    if system:
        return Path("/run/virtsnap/qemu")
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/virtsnap-{os.getuid()}"
    return Path(base) / "virtsnap" / "qemu"


class Runtime(Frozen):
    """The per-domain runtime files."""

    _fields = ("directory",)
    __slots__ = _fields

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def for_domain(cls, root: Path, uuid: str) -> Runtime:
        private_dir(root)
        return cls(private_dir(root / uuid))

    @property
    def monitor(self) -> Path:
        return self.directory / "monitor.sock"

    @property
    def agent(self) -> Path:
        return self.directory / "agent.sock"

    @property
    def pidfile(self) -> Path:
        return self.directory / "qemu.pid"

    @property
    def log(self) -> Path:
        return self.directory / "qemu.log"

    def pid(self) -> int | None:
        """The QEMU pid if that process is alive and really is our QEMU."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if str(self.monitor).encode() not in b" ".join(cmdline):
            return None  # a recycled pid
        return pid


def build_argv(dom: QemuDomain, rt: Runtime, paused: bool = False, incoming: bool = False) -> list[str]:
    """The QEMU argument list for a domain: -blockdev node names per disk, QMP on a unix socket."""
    import json  # json, shutil, subprocess and signal: only for starting and stopping QEMU

    argv = [qemu_binary(), "-name", f"guest={dom.defn.name}", "-uuid", dom.defn.uuid,
            "-nodefaults", "-no-user-config", "-machine", dom.machine,
            "-accel", "kvm" if dom.kvm else "tcg", "-cpu", "host" if dom.kvm else "max",
            "-m", str(dom.memory_mib), "-smp", str(max(dom.vcpus, 1)),
            "-qmp", f"unix:{rt.monitor},server=on,wait=off",
            "-pidfile", str(rt.pidfile), "-daemonize", "-D", str(rt.log)]
    if dom.kernel:
        argv += ["-kernel", dom.kernel]
    if dom.initrd:
        argv += ["-initrd", dom.initrd]
    if dom.cmdline:
        argv += ["-append", dom.cmdline]
    if dom.boot_dev == "cdrom":
        argv += ["-boot", "d"]
    controllers: set[str] = set()
    ide_index = {"sata": 0, "ide": 0}
    for disk in dom.disks:
        if disk.path:
            file_node = {"driver": "host_device" if disk.source_type == "block" else "file",
                         "filename": disk.path, "node-name": f"{disk.node_name}-file",
                         "read-only": disk.readonly}
            fmt_node = {"driver": disk.format, "file": f"{disk.node_name}-file", "node-name": disk.node_name,
                        "read-only": disk.readonly}
            argv += ["-blockdev", json.dumps(file_node), "-blockdev", json.dumps(fmt_node)]
        drive = f"drive={disk.node_name}," if disk.path else ""
        if disk.bus == "virtio" and disk.device == "disk":
            argv += ["-device", f"virtio-blk-pci,{drive}id={disk.target}"]
        elif disk.bus in ("sata", "ide"):
            if disk.bus == "sata" and "sata" not in controllers:
                argv += ["-device", "ahci,id=sata0"]
                controllers.add("sata")
            bus = f"sata0.{ide_index['sata']}" if disk.bus == "sata" else f"ide.{ide_index['ide']}"
            ide_index[disk.bus] += 1
            kind = "ide-cd" if disk.device == "cdrom" else "ide-hd"
            argv += ["-device", f"{kind},{drive}bus={bus},id={disk.target}"]
        else:  # scsi, or a virtio cdrom, which QEMU offers only on SCSI
            if "scsi" not in controllers:
                argv += ["-device", "virtio-scsi-pci,id=scsi0"]
                controllers.add("scsi")
            kind = "scsi-cd" if disk.device == "cdrom" else "scsi-hd"
            argv += ["-device", f"{kind},{drive}bus=scsi0.0,id={disk.target}"]
    if dom.agent_socket is not None:
        agent = dom.agent_socket or str(rt.agent)
        argv += ["-chardev", f"socket,id=qga0,path={agent},server=on,wait=off",
                 "-device", "virtio-serial-pci,id=vser0",
                 "-device", f"virtserialport,bus=vser0.0,chardev=qga0,name={AGENT_PORT}"]
    if dom.serial is not None:
        kind, path = dom.serial
        argv += ["-serial", f"file:{path}" if kind == "file" and path else "pty"]
    for i, mac in enumerate(dom.user_net):
        argv += ["-netdev", f"user,id=net{i}",
                 "-device", f"virtio-net-pci,netdev=net{i}" + (f",mac={mac}" if mac else "")]
    argv += ["-vnc", f"unix:{rt.directory / 'vnc.sock'}"] if dom.vnc else ["-display", "none"]
    if (dom.defn.node.findtext("on_reboot") or "restart") == "destroy":
        argv.append("-no-reboot")  # libvirt's on_reboot=destroy: a guest reboot (or panic) ends QEMU
    if paused:
        argv.append("-S")
    if incoming:
        argv += ["-incoming", "defer"]  # memory comes later through migrate-incoming
    return argv


def launch(argv: list[str], rt: Runtime, timeout: float = 60.0) -> int:
    """Start QEMU detached; returns its pid. Its own error output becomes the error message."""
    import subprocess

    for stale in (rt.monitor, rt.pidfile):
        stale.unlink(missing_ok=True)
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False,
                          start_new_session=True)
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        raise error(ErrorCode.OPERATION_FAILED, ERR, f"QEMU failed to start: {message}")
    pid = rt.pid()
    if pid is None:
        raise error(ErrorCode.OPERATION_FAILED, ERR, "QEMU started but wrote no pid file")
    return pid


def kill(rt: Runtime, timeout: float = 10.0) -> None:
    """Stop QEMU: SIGTERM, then SIGKILL; wait until the process is gone (its image locks with it)."""
    import signal

    pid = rt.pid()
    if pid is None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        if wait_gone(pid, wait):
            break
    rt.pidfile.unlink(missing_ok=True)
    rt.monitor.unlink(missing_ok=True)


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.002
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a daemonized QEMU is not our child: poll for its exit (no waitpid), backing off to 50 ms
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
            if state == "Z":
                return True
        except OSError:
            return True
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return False
