"""`virsh start --reset-nvram` (VIR_DOMAIN_START_RESET_NVRAM): the NVRAM's content is its template's again when
the domain starts, while the snapshots taken before keep theirs (the domain's own qcow2 store keeps its internal
snapshot tags), so a revert still brings the old variables back. An NVRAM virtsnap did not make is never written
over, and a domain without UEFI has nothing to reset: both refused, nothing started, nothing changed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import virtsnap
from virtsnap.drivers.qemu.firmware import own_nvram

from .conftest import domain_xml
from .test_uefi import tags

pytestmark = pytest.mark.qemu
START_PAUSED, START_RESET_NVRAM = virtsnap.VIR_DOMAIN_START_PAUSED, virtsnap.VIR_DOMAIN_START_RESET_NVRAM


def _uefi(guest, workdir, name: str, nvram: str = "") -> str:
    return (domain_xml(guest, workdir, name=name).replace("<os>", "<os firmware='efi'>")
            .replace("machine='pc'", "machine='q35'")
            .replace("</type>", "</type><firmware><feature enabled='no' name='secure-boot'/></firmware>" + nvram))


def _content(path: str, fmt: str, workdir: Path) -> bytes:
    """What the guest's firmware sees: the image's active layer as raw bytes."""
    out = workdir / "content.raw"
    out.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "convert", "-U", "-f", fmt, "-O", "raw", path, str(out)], check=True)
    return out.read_bytes()


def _write(path: str, fmt: str, byte: int) -> None:
    """A firmware variable store changed as a guest changes it: a pattern over its first 4 KiB."""
    subprocess.run(["qemu-io", "-f", fmt, "-c", f"write -P {byte} 0 4k", path], check=True, capture_output=True)


def test_reset_nvram_starts_from_the_template_and_snapshots_keep_their_variables(guest, workdir, conn):
    dom = conn.defineXML(_uefi(guest, workdir, "resetnv"))
    nvram = own_nvram(conn.driver.state_dir, dom.UUIDString())
    template = dom.XMLDesc().split("template='", 1)[1].split("'", 1)[0]
    try:
        _write(nvram, "qcow2", 0x5A)
        dom.snapshotCreateXML("<domainsnapshot><name>before</name></domainsnapshot>")  # shut off: internal
        _write(nvram, "qcow2", 0xA5)
        dom.createWithFlags(START_PAUSED | START_RESET_NVRAM)
        dom.destroy()
        assert _content(nvram, "qcow2", workdir) == Path(template).read_bytes()
        assert "before" in tags(nvram)
        dom.revertToSnapshot(dom.snapshotLookupByName("before"))
        assert _content(nvram, "qcow2", workdir)[:4096] == b"\x5a" * 4096
        dom.createWithFlags(START_PAUSED)  # without the flag the NVRAM is left as it is
        dom.destroy()
        assert _content(nvram, "qcow2", workdir)[:4096] == b"\x5a" * 4096
    finally:
        for snap in dom.listAllSnapshots():
            snap.delete()
        dom.undefineFlags(virtsnap.VIR_DOMAIN_UNDEFINE_NVRAM)


def test_reset_nvram_never_writes_a_users_nvram_and_needs_uefi(guest, workdir, conn):
    users = workdir / "users_VARS.fd"
    dom = conn.defineXML(_uefi(guest, workdir, "usersnv"))
    template = dom.XMLDesc().split("template='", 1)[1].split("'", 1)[0]
    dom.undefineFlags(virtsnap.VIR_DOMAIN_UNDEFINE_NVRAM)
    users.write_bytes(b"\x33" * Path(template).stat().st_size)
    dom = conn.defineXML(_uefi(guest, workdir, "usersnv", nvram=f"<nvram template='{template}'>{users}</nvram>"))
    plain = conn.defineXML(domain_xml(guest, workdir, name="biosnv"))
    try:
        for d, message in ((dom, f"NVRAM {users} was not made by virtsnap and is never written over by it"),
                           (plain, "the domain has no NVRAM to reset")):
            with pytest.raises(virtsnap.libvirtError) as refused:
                d.createWithFlags(START_PAUSED | START_RESET_NVRAM)
            assert refused.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
            assert message in str(refused.value)
            assert d.isActive() == 0
        assert users.read_bytes() == b"\x33" * Path(template).stat().st_size
    finally:
        dom.undefineFlags(virtsnap.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
        plain.undefine()
