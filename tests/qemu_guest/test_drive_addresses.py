"""ide, sata and scsi disks sit where libvirt puts them: at their <address type='drive'>, else where libvirt's
default for the target name places them (hdb is the primary IDE bus's second unit, sdc the third AHCI port or the
third SCSI LUN), as QEMU's object model reports on a paused QEMU. An address one controller cannot hold is
refused, naming every such disk at once, and nothing is defined."""

from __future__ import annotations

from pathlib import Path

import pytest

import virtsnap
from virtsnap.drivers.qemu.monitor import Monitor

from .test_argv_injection import domain, qcow2
from .test_domain_table import _running

pytestmark = pytest.mark.qemu


def _drive(controller: int, bus: int, target: int, unit: int) -> str:
    return f"<address type='drive' controller='{controller}' bus='{bus}' target='{target}' unit='{unit}'/>"


def _disk(target: str, bus: str, path: Path | None = None, address: str = "") -> str:
    if path is None:
        return f"<disk type='file' device='cdrom'><target dev='{target}' bus='{bus}'/>{address}</disk>"
    qcow2(path)
    return (f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{path}'/>"
            f"<target dev='{target}' bus='{bus}'/>{address}</disk>")


def _props(conn, dom, ids: dict[str, tuple[str, ...]]) -> dict[str, tuple]:
    """qdev id -> (the bus it sits on, then each named property), as QEMU's object model has them."""
    mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "drives")
    try:
        def get(dev: str, prop: str):
            return mon.execute("qom-get", {"path": f"/machine/peripheral/{dev}", "property": prop})

        return {dev: (get(dev, "parent_bus").rsplit("/", 1)[1], *(get(dev, p) for p in props))
                for dev, props in ids.items()}
    finally:
        mon.close()


def test_pc_disks_sit_at_libvirts_drive_addresses(conn, workdir):
    qcow2(workdir / "disk")
    extra = (_disk("hda", "ide", workdir / "a") + _disk("hdb", "ide")  # hdb: bus 0 unit 1, not the second bus
             + _disk("hdc", "ide", address=_drive(0, 1, 0, 1))  # the address wins over the name (hdc: bus 1 unit 0)
             + _disk("sdb", "sata", workdir / "b")  # pc's AHCI (sata0), port 1
             + _disk("sdc", "scsi", workdir / "c")  # virtio-scsi: target 0, LUN 2
             + _disk("sdz", "scsi", workdir / "z", address=_drive(0, 0, 3, 5)))
    xml = domain("drives", workdir / "disk").replace("</devices>", extra + "</devices>")
    dom = _running(conn, xml)
    try:
        seen = _props(conn, dom, {"hda": ("unit",), "hdb": ("unit",), "hdc": ("unit",), "sdb": (),
                                  "sdc": ("channel", "scsi-id", "lun"), "sdz": ("channel", "scsi-id", "lun")})
    finally:
        dom.destroy()
        dom.undefine()
    assert seen == {"hda": ("ide.0", 0), "hdb": ("ide.0", 1), "hdc": ("ide.1", 1), "sdb": ("sata0.1",),
                    "sdc": ("scsi0.0", 0, 0, 2), "sdz": ("scsi0.0", 0, 3, 5)}


def test_q35_sata_disks_take_the_port_their_name_or_address_gives(conn, workdir):
    qcow2(workdir / "disk")
    extra = _disk("sda", "sata") + _disk("sdc", "sata", workdir / "c") + _disk("sdq", "sata", workdir / "q",
                                                                               address=_drive(0, 0, 0, 4))
    xml = domain("drives35", workdir / "disk", machine="q35").replace("</devices>", extra + "</devices>")
    dom = _running(conn, xml)
    try:
        seen = _props(conn, dom, {"sda": (), "sdc": (), "sdq": ()})
    finally:
        dom.destroy()
        dom.undefine()
    assert seen == {"sda": ("ide.0",), "sdc": ("ide.2",), "sdq": ("ide.4",)}


def test_drive_addresses_one_controller_cannot_hold_are_refused_all_at_once(conn, workdir):
    qcow2(workdir / "disk")
    extra = (_disk("hdb", "ide", address=_drive(0, 0, 0, 2)) + _disk("sdg", "sata")  # unit 2; AHCI port 6
             + _disk("sdh", "scsi", address=_drive(1, 0, 0, 0))  # a second SCSI controller
             + _disk("sdi", "sata", address=_drive(0, 0, 0, 1)) + _disk("sdb", "sata")  # both on port 1
             + _disk("vdb", "virtio", workdir / "v", address=_drive(0, 0, 0, 0)))
    with pytest.raises(virtsnap.libvirtError) as refused:
        conn.defineXML(domain("badrives", workdir / "disk").replace("</devices>", extra + "</devices>"))
    assert refused.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    message = str(refused.value)
    for item in ("disk 'hdb' 'controller 0 bus 0 target 0 unit 2'", "disk 'sdg' 'controller 1 bus 0 target 0 unit 0'",
                 "disk 'sdh' 'controller 1 bus 0 target 0 unit 0'", "disks 'sdi' and 'sdb' have the same sata",
                 "drive address of disk 'vdb' on bus 'virtio'"):
        assert item in message
    with pytest.raises(virtsnap.libvirtError) as on_q35:
        conn.defineXML(domain("badrives", workdir / "disk", machine="q35").replace(
            "</devices>", _disk("hda", "ide") + "</devices>"))
    assert on_q35.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    assert "an IDE disk on a q35 machine" in str(on_q35.value)
    with pytest.raises(virtsnap.libvirtError) as unnamed:
        conn.defineXML(domain("badrives", workdir / "disk").replace("</devices>",
                                                                     _disk("disk1", "sata") + "</devices>"))
    assert unnamed.value.get_error_code() == virtsnap.VIR_ERR_XML_ERROR
    assert "Unknown disk name 'disk1' and no address specified" in str(unnamed.value)
    assert "badrives" not in conn.listDefinedDomains()
