"""The guest corpus of issue 14: `virt-install --print-xml` guests defined in libvirt and printed back by
`virsh dumpxml`, cached under ~/.cache/virtsnap/corpus keyed by the virtinst and libvirt versions."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

URI = "qemu:///system"
FORMAT = 2
# (name, osinfo, network, graphics, firmware, machine): the guests a new user makes with virt-install
GUESTS = [
    ("debian11-user-vnc-bios", "debian11", "user", "vnc", "bios", None),
    ("fedora37-default-spice-bios", "fedora37", "default", "spice", "bios", None),
    ("ubuntu2204-user-none-bios", "ubuntu22.04", "user", "none", "bios", None),
    ("centos9-default-vnc-uefi", "centos-stream9", "default", "vnc", "uefi", None),
    ("alpine317-user-none-bios", "alpinelinux3.17", "user", "none", "bios", None),
    ("win10-default-spice-bios", "win10", "default", "spice", "bios", None),
    ("win11-default-spice-uefi", "win11", "default", "spice", "uefi", None),
    ("debian11-user-spice-uefi", "debian11", "user", "spice", "uefi", None),
    ("fedora37-user-vnc-pc", "fedora37", "user", "vnc", "bios", "pc"),
    ("ubuntu2204-default-vnc-bios", "ubuntu22.04", "default", "vnc", "bios", None),
    ("alpine317-default-vnc-pc", "alpinelinux3.17", "default", "vnc", "bios", "pc"),
    ("centos9-user-none-bios", "centos-stream9", "user", "none", "bios", None),
    ("win10-user-vnc-bios", "win10", "user", "vnc", "bios", None),
    ("debian11-default-none-uefi", "debian11", "default", "none", "uefi", None),
]


def _version(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def cache_dir() -> Path:
    # FORMAT: bumped when the way the corpus is made changes (2: a TCG-only libvirtd, so type='qemu')
    key = json.dumps([FORMAT, _version("virt-install", "--version"), _version("virsh", "--version"),
                      _version("virsh", "-c", URI, "version", "--daemon"), GUESTS])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "virtsnap" / "corpus"
    return base / hashlib.sha256(key.encode()).hexdigest()[:16]


def _virt_install(name: str, osinfo: str, net: str, graphics: str, firmware: str, machine: str | None,
                  disk: Path) -> str:
    argv = ["virt-install", "--connect", URI, "--print-xml", "--name", f"vs-corpus-{name}", "--osinfo", osinfo,
            "--memory", "1024", "--vcpus", "2", "--import",
            "--disk", f"path={disk},format=qcow2", "--network", "user" if net == "user" else "network=default",
            "--graphics", graphics, "--noautoconsole"]
    if firmware == "uefi":
        argv += ["--boot", "uefi"]
    if machine:
        argv += ["--machine", machine]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300).stdout


def _dumpxml(name: str, xml: str, where: Path) -> str:
    src = where / f"{name}.install.xml"
    src.write_text(xml)
    dom = f"vs-corpus-{name}"
    subprocess.run(["virsh", "-q", "-c", URI, "define", str(src)], capture_output=True, check=True, text=True,
                   timeout=600)
    try:
        return subprocess.run(["virsh", "-c", URI, "dumpxml", dom], capture_output=True, check=True,
                              text=True).stdout
    finally:
        subprocess.run(["virsh", "-q", "-c", URI, "undefine", dom, "--nvram"], capture_output=True, check=False)


def build() -> dict[str, str]:
    """{guest name: libvirt's dumpxml}, generated once per virtinst/libvirt version pair."""
    where = cache_dir()
    done = where / "corpus.json"
    if done.exists():
        return dict(json.loads(done.read_text()))
    where.mkdir(parents=True, exist_ok=True)
    disk = where / "disk.qcow2"
    if not disk.exists():
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "1G"], check=True)

    def one(guest: tuple[str, str, str, str, str, str | None]) -> tuple[str, str]:
        name = guest[0]
        dump = where / f"{name}.dump.xml"  # each guest kept as it is made: a define can take minutes
        if not dump.exists():
            tmp = dump.with_suffix(".tmp")
            tmp.write_text(_dumpxml(name, _virt_install(*guest, disk=disk), where))
            tmp.replace(dump)
        return name, dump.read_text()

    corpus = dict(one(guest) for guest in GUESTS)
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(corpus, indent=1))
    tmp.replace(done)
    return corpus
