"""UEFI guests on real QEMU (TCG): OVMF boots the test kernel (Debian's EFI-stub bzImage, through fw_cfg), the
guest writes firmware variables through efivarfs, and internal and external memory snapshots bring the NVRAM
back with the disks and RAM: a variable set after the snapshot is gone after the revert, in the guest's view
and in the NVRAM image itself."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import virtsnap
from virtsnap.drivers.qemu.confine import qemu_user
from virtsnap.drivers.qemu.firmware import own_nvram

from . import test_confine
from .conftest import agent_for, domain_xml, guest_read
from .test_confine import ids
from .test_tpm import ZERO, extend, pcr

reachable_guest, sysconn = test_confine.reachable_guest, test_confine.sysconn  # qemu:///system's fixtures

pytestmark = pytest.mark.qemu
EFIVARS = "/sys/firmware/efi/efivars"
GUID = "3f1c8a52-1d7e-4a3b-9e45-6c2b0a7d9e11"  # a vendor GUID of the test's own
# OVMF under TCG takes tens of seconds to reach the kernel on a loaded 2-core machine (the BIOS guest: a few):
# the first agent connection waits for the boot to finish, up to this long.
BOOT_WAIT = 300.0


def uefi_xml(guest, workdir) -> str:
    """The tiny guest on q35 with UEFI (the plain OVMF build: a Secure Boot one would refuse a kernel that is
    not signed by an enrolled key). OVMF has no PCI IRQ routing table, so the guest routes PCI through ACPI.
    With an emulated TPM: its state comes back with the NVRAM (test_tpm.py has the BIOS guest's case)."""
    xml = domain_xml(guest, workdir, name="uefi")
    return (xml.replace("<os>", "<os firmware='efi'>").replace("machine='pc'", "machine='q35'")
            .replace("</type>", "</type><firmware><feature enabled='no' name='secure-boot'/></firmware>")
            .replace(f"<kernel>{guest.kernel}</kernel>", f"<kernel>{guest.bzimage}</kernel>")
            .replace(guest.cmdline, guest.cmdline.replace("pci=noacpi ", ""))
            .replace("</os>", "</os><features><acpi/></features>")
            .replace("</devices>", "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm></devices>"))


def variables(conn, dom) -> list[str]:
    return guest_read(conn, dom, f"ls {EFIVARS} | grep ^Virtsnap || true").split()


def set_variable(conn, dom, name: str) -> None:
    """A non-volatile, boot- and runtime-visible variable (attributes 7), as `efivar -w` writes one."""
    with agent_for(conn, dom) as agent:
        agent.shell(f"printf '\\007\\000\\000\\000{name}' > {EFIVARS}/{name}-{GUID}")


def nvram_holds(path: str, workdir, name: str) -> bool:
    """Whether the NVRAM image's content has the variable's name (UTF-16, as the variable store keeps it)."""
    out = workdir / "nvram.raw"
    out.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", path, str(out)], check=True)
    return name.encode("utf-16-le") in out.read_bytes()


def tags(path: str) -> list[str]:
    out = subprocess.run(["qemu-img", "info", "-U", "-f", "qcow2", "--output=json", path], capture_output=True,
                         text=True, check=True).stdout
    return [s["name"] for s in json.loads(out).get("snapshots", [])]


def markers(conn, dom, disk: str, ram: str) -> None:
    with agent_for(conn, dom) as agent:
        agent.shell(f"echo {disk} > /mnt/marker; echo {ram} > /ram/value; sync")


def test_internal_and_external_memory_snapshots_bring_the_nvram_back(guest, workdir, conn):
    dom = conn.defineXML(uefi_xml(guest, workdir))
    nvram = own_nvram(conn.driver.state_dir, dom.UUIDString())
    dom.create()
    with agent_for(conn, dom, timeout=BOOT_WAIT) as agent:
        assert agent.shell(f"test -d {EFIVARS}/ && echo uefi").strip() == "uefi"  # booted by OVMF
    markers(conn, dom, "disk-1", "ram-1")
    assert variables(conn, dom) == []
    assert pcr(conn, dom) == ZERO

    s1 = dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>")
    set_variable(conn, dom, "VirtsnapA")
    markers(conn, dom, "disk-2", "ram-2")
    extended = extend(conn, dom)
    assert extended != ZERO
    dom.suspend()  # QEMU flushes its images when it stops: the NVRAM file is then complete
    assert nvram_holds(nvram, workdir, "VirtsnapA")  # the variable reached the flash, not only OVMF's cache
    dom.resume()
    dom.revertToSnapshot(s1)  # snapshot-load in place, the NVRAM node among the devices
    assert guest_read(conn, dom, "cat /mnt/marker /ram/value").split() == ["disk-1", "ram-1"]
    assert variables(conn, dom) == []
    assert pcr(conn, dom) == ZERO  # the TPM too

    assert extend(conn, dom) == extended
    memory = workdir / "e1.mem"
    e1 = dom.snapshotCreateXML(f"<domainsnapshot><name>e1</name><memory snapshot='external' file='{memory}'/>"
                               "</domainsnapshot>")
    assert "<memory snapshot='external'" in e1.getXMLDesc() and tags(nvram) == ["s1", "e1"]
    set_variable(conn, dom, "VirtsnapB")
    markers(conn, dom, "disk-3", "ram-3")
    assert extend(conn, dom) not in (ZERO, extended)
    assert variables(conn, dom) == [f"VirtsnapB-{GUID}"]
    dom.suspend()
    assert nvram_holds(nvram, workdir, "VirtsnapB")
    dom.resume()
    dom.revertToSnapshot(e1)  # QEMU restarted from the memory file on new overlays, the NVRAM tag applied
    assert dom.state()[0] == 1
    assert guest_read(conn, dom, "cat /mnt/marker /ram/value").split() == ["disk-1", "ram-1"]
    assert variables(conn, dom) == []
    assert pcr(conn, dom) == extended
    dom.destroy()
    # the flash itself, not only the guest's view of it, is as it was at the snapshots
    assert not nvram_holds(nvram, workdir, "VirtsnapA") and not nvram_holds(nvram, workdir, "VirtsnapB")

    e1.delete()
    s1.delete()
    assert tags(nvram) == [] and not memory.exists() and dom.snapshotNum() == 0


def test_confined_qemu_writes_the_nvram_it_cannot_reach_by_path(reachable_guest, workdir, sysconn):
    """qemu:///system: QEMU runs as its unprivileged user, the domain's NVRAM store stays root's in virtsnap's
    0700 state directory, and QEMU still writes it (the descriptor virtsnap opened): a memory snapshot of the
    paused guest puts its tag in the store and a revert loads it."""
    xml = (domain_xml(reachable_guest, workdir).replace("<os>", "<os firmware='efi'>")
           .replace("machine='pc'", "machine='q35'")
           .replace("</type>", "</type><firmware><feature enabled='no' name='secure-boot'/></firmware>"))
    dom = sysconn.defineXML(xml)
    nvram = own_nvram(sysconn.driver.state_dir, dom.UUIDString())
    was = os.stat(nvram)
    dom.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)
    assert ids(dom.ID())["Uid"][0] == qemu_user(None).uid != 0
    s1 = dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>")
    assert tags(nvram) == ["s1"]
    dom.revertToSnapshot(s1)
    now = os.stat(nvram)
    assert (now.st_uid, now.st_gid, now.st_mode) == (was.st_uid, was.st_gid, was.st_mode) == (0, 0, 0o100600)
    assert os.stat(Path(nvram).parent).st_mode & 0o077 == 0
    dom.destroy()
    s1.delete()
    assert tags(nvram) == []
