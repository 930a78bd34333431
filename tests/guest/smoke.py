#!/usr/bin/env python3
"""Smoke test of the test guest: boot it under QEMU TCG and exercise qemu-ga.

Each run boots a fresh copy of the data disk, waits for the agent, writes and reads
back a marker in /mnt with guest-exec, freezes and thaws /mnt, writes a value to the
/ram tmpfs, checks QMP answers, prints the boot-to-agent time, and always kills QEMU.

    python3 tests/guest/smoke.py [--runs 3] [--memory 128 256] [--bzimage]

``qemu_command()`` is the reference command line for tests that boot the guest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_guest
from qga import Agent, AgentError

AGENT_PORT = "org.qemu.guest_agent.0"
# qboot (Debian's qemu-system-data) reaches the kernel ~0.4 s sooner than SeaBIOS under TCG.
QBOOT = "/usr/share/qemu/qboot.rom"


def qemu_command(guest: build_guest.Guest, workdir: Path, memory_mib: int = 256,
                 kernel: str | None = None, append: str | None = None) -> list[str]:
    """QEMU argv booting ``guest`` with its data disk ``workdir/data.qcow2`` and sockets in ``workdir``."""
    firmware = ["-bios", QBOOT] if Path(QBOOT).exists() else []
    return [
        "qemu-system-x86_64",
        "-nodefaults", "-nographic", "-no-user-config",
        # qemu64 (QEMU's default model) booted 0.1-0.2 s faster than -cpu max in A/B runs.
        "-machine", "pc", "-accel", "tcg", "-cpu", "qemu64", "-smp", "1", "-m", str(memory_mib),
        *firmware,
        "-no-reboot",  # with panic=-1 a guest panic ends QEMU, so a broken guest fails fast
        "-kernel", kernel or guest.kernel, "-initrd", guest.initrd,
        "-append", append if append is not None else guest.cmdline,
        "-serial", f"file:{workdir / 'serial.log'}",
        "-qmp", f"unix:{workdir / 'qmp.sock'},server=on,wait=off",
        "-blockdev", f"driver=file,filename={workdir / 'data.qcow2'},node-name=data0-file",
        "-blockdev", "driver=qcow2,file=data0-file,node-name=data0",
        "-device", "virtio-blk-pci,drive=data0,id=vda",
        "-device", "virtio-serial-pci,id=vser0",
        "-chardev", f"socket,id=qga0,path={workdir / 'qga.sock'},server=on,wait=off",
        "-device", f"virtserialport,bus=vser0.0,chardev=qga0,name={AGENT_PORT}",
    ]


def qmp_query_status(path: Path, timeout: float = 10.0) -> str:
    """The VM run state from QMP (greeting, qmp_capabilities, query-status)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        reader = sock.makefile("rb")

        def reply(command: str | None):
            if command:
                sock.sendall(json.dumps({"execute": command}).encode())
            while True:
                msg = json.loads(reader.readline())
                if "event" not in msg:  # events may arrive between replies
                    return msg

        reply(None)  # greeting
        reply("qmp_capabilities")
        return reply("query-status")["return"]["status"]


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process, to tell guest work from waiting on a busy host."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(none)"


class SmokeError(Exception):
    """A check on the booted guest failed."""


def smoke_once(guest: build_guest.Guest, memory_mib: int, kernel: str | None = None,
               append: str | None = None, timeout: float = 60.0) -> tuple[float, float]:
    """One boot and check; returns (seconds from QEMU start to the first agent answer,
    QEMU's CPU seconds by then)."""
    with tempfile.TemporaryDirectory(prefix="virtsnap-smoke-") as tmp:
        workdir = Path(tmp)
        shutil.copyfile(guest.data_template, workdir / "data.qcow2")
        argv = qemu_command(guest, workdir, memory_mib, kernel, append)
        with open(workdir / "qemu.log", "wb") as log:
            start = time.monotonic()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            try:
                agent = Agent.connect(str(workdir / "qga.sock"), timeout, alive=lambda: proc.poll() is None)
            except AgentError as exc:
                raise SmokeError(f"{exc}\n--- qemu.log\n{tail(workdir / 'qemu.log')}"
                                 f"\n--- serial.log\n{tail(workdir / 'serial.log')}") from None
            timing = time.monotonic() - start, cpu_seconds(proc.pid)
            with agent:
                check_guest(agent)
            status = qmp_query_status(workdir / "qmp.sock")
            if status != "running":
                raise SmokeError(f"QMP query-status: {status}")
            return timing
        finally:
            proc.kill()  # a leftover QEMU would keep the image's write lock
            proc.wait()


def check_guest(agent: Agent) -> None:
    """Disk write/read through guest-exec, fsfreeze round trip, a value kept in /ram."""
    agent.ping()
    marker = f"virtsnap-{time.time_ns()}"
    agent.sh(f"echo {marker} > /mnt/marker && sync")
    got = agent.exec(["/bin/cat", "/mnt/marker"]).stdout.decode().strip()
    if got != marker:
        raise SmokeError(f"/mnt/marker reads {got!r}, wrote {marker!r}")
    try:
        frozen = agent.fsfreeze_freeze()
        if frozen < 1 or agent.fsfreeze_status() != "frozen":
            raise SmokeError(f"fsfreeze froze {frozen} filesystems")
    finally:
        agent.fsfreeze_thaw()  # QEMU 7.2's agent never thaws by itself
    if agent.fsfreeze_status() != "thawed":
        raise SmokeError("fsfreeze-thaw left the guest frozen")
    agent.sh(f"echo {marker} > /ram/value")
    if agent.sh("cat /ram/value").stdout.decode().strip() != marker:
        raise SmokeError("/ram/value does not read back")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--memory", type=int, nargs="+", default=[128, 256], help="MiB")
    parser.add_argument("--bzimage", action="store_true", help="boot the bzImage instead of vmlinux")
    parser.add_argument("--append", help="kernel command line instead of the default")
    parser.add_argument("--print-command", action="store_true", help="print the QEMU argv and exit")
    args = parser.parse_args(argv)
    try:
        guest = build_guest.build()
    except build_guest.BuildError as exc:
        print(f"smoke: guest build failed: {exc}", file=sys.stderr)
        return 1
    kernel = guest.bzimage if args.bzimage else guest.kernel
    if args.print_command:
        print(qemu_command(guest, Path("WORKDIR"), args.memory[0], kernel, args.append))
        return 0
    failed = False
    for memory in args.memory:
        for run in range(1, args.runs + 1):
            try:
                boot, cpu = smoke_once(guest, memory, kernel, args.append)
                print(f"{memory} MiB run {run}: boot-to-agent {boot:.2f} s (QEMU CPU {cpu:.2f} s), "
                      "checks passed", flush=True)
            except (SmokeError, AgentError, OSError, ValueError) as exc:  # ValueError: bad QMP JSON
                failed = True
                print(f"{memory} MiB run {run}: FAILED: {exc}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
