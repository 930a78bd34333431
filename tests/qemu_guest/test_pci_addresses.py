"""<address type='pci'> on devices is applied as libvirt applies it: the device sits at that slot and function
on that bus, where bus 0 is the machine's root bus and bus N the one behind the pcie-root-port of index N
(QEMU's query-pci on a paused QEMU, so nothing boots). A PCI address that cannot be applied is refused,
naming the element, and nothing is defined."""

from __future__ import annotations

from pathlib import Path

import pytest

import virtsnap
from virtsnap.drivers.qemu.monitor import Monitor

from .test_argv_injection import domain, qcow2

pytestmark = pytest.mark.qemu


def _pci(bus: int, slot: int, function: int = 0, multifunction: bool = False) -> str:
    extra = " multifunction='on'" if multifunction else ""
    return (f"<address type='pci' domain='0x0000' bus='0x{bus:02x}' slot='0x{slot:02x}' "
            f"function='0x{function:x}'{extra}/>")


def _layout(conn, dom, ids: list[str]) -> dict[str, tuple[str, int, int, bool]]:
    """qdev id -> (the bus it sits on, slot, function, multifunction), as QEMU's object model has them."""
    mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "pci")
    try:
        def get(dev: str, prop: str):
            return mon.execute("qom-get", {"path": f"/machine/peripheral/{dev}", "property": prop})

        return {dev: (get(dev, "parent_bus").rsplit("/", 1)[1], get(dev, "addr") >> 3, get(dev, "addr") & 7,
                      get(dev, "multifunction")) for dev in ids}
    finally:
        mon.close()


def _peripherals(conn, dom) -> set[str]:
    mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "pci")
    try:
        return {p["name"] for p in mon.execute("qom-list", {"path": "/machine/peripheral"})}
    finally:
        mon.close()


def _started(conn, xml: str):
    dom = conn.defineXML(xml)
    dom.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)
    return dom


def test_q35_devices_sit_where_their_addresses_say(conn, workdir):
    qcow2(workdir / "disk")
    xml = domain("q35pci", workdir / "disk", machine="q35").replace(
        "<target dev='vda' bus='virtio'/>", "<target dev='vda' bus='virtio'/>" + _pci(2, 0)).replace(
        "<model type='virtio'/></interface>", "<model type='virtio'/>" + _pci(1, 0) + "</interface>")
    ports = "".join(f"<controller type='pci' index='{i}' model='pcie-root-port'><model name='pcie-root-port'/>"
                    f"<target chassis='{i}' port='0x{0x10 + i - 1:x}'/>{_pci(0, 2, i - 1, i == 1)}</controller>"
                    for i in (1, 2, 3))
    xml = xml.replace("</devices>", "<controller type='pci' index='0' model='pcie-root'/>" + ports
                      + "<controller type='sata' index='0'>" + _pci(0, 0x1F, 2) + "</controller>"
                      + "<disk type='file' device='cdrom'><target dev='sda' bus='sata'/></disk>"
                      + "<memballoon model='virtio'>" + _pci(3, 0) + "</memballoon>"
                      + "<rng model='virtio'><backend model='random'>/dev/urandom</backend>" + _pci(0, 9)
                      + "</rng></devices>")
    dom = _started(conn, xml)
    try:
        layout = _layout(conn, dom, ["pci.1", "pci.2", "pci.3", "net0", "vda", "balloon0", "rng0"])
        peripherals = _peripherals(conn, dom)
        mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "pci")
        try:
            cdrom_bus = mon.execute("qom-get", {"path": "/machine/peripheral/sda", "property": "parent_bus"})
        finally:
            mon.close()
    finally:
        dom.destroy()
    assert layout == {"pci.1": ("pcie.0", 2, 0, True), "pci.2": ("pcie.0", 2, 1, False),
                      "pci.3": ("pcie.0", 2, 2, False), "net0": ("pci.1", 0, 0, False),
                      "vda": ("pci.2", 0, 0, False), "balloon0": ("pci.3", 0, 0, False),
                      "rng0": ("pcie.0", 9, 0, False)}
    # the machine's own AHCI at 00:1f.2 is the sata controller, as in libvirt: no second one, the disk on it
    assert "sata0" not in peripherals and cdrom_bus.endswith("/ide.0")


def test_pc_devices_sit_at_their_slots(conn, workdir):
    qcow2(workdir / "disk")
    xml = domain("pcpci", workdir / "disk").replace(
        "<target dev='vda' bus='virtio'/>", "<target dev='vda' bus='virtio'/>" + _pci(0, 7)).replace(
        "<model type='virtio'/></interface>", "<model type='virtio'/>" + _pci(0, 5) + "</interface>")
    xml = xml.replace("</devices>", "<controller type='usb' index='0' model='piix3-uhci'>" + _pci(0, 1, 2)
                      + "</controller><controller type='ide' index='0'>" + _pci(0, 1, 1) + "</controller>"
                      + "<video><model type='vga'/>" + _pci(0, 2) + "</video>"
                      + "<input type='keyboard' bus='virtio'>" + _pci(0, 0xA) + "</input></devices>")
    dom = _started(conn, xml)
    try:
        layout = _layout(conn, dom, ["vda", "net0", "usb", "video0", "input0"])
    finally:
        dom.destroy()
    assert layout == {"vda": ("pci.0", 7, 0, False), "net0": ("pci.0", 5, 0, False), "usb": ("pci.0", 1, 2, False),
                      "video0": ("pci.0", 2, 0, False), "input0": ("pci.0", 0xA, 0, False)}


@pytest.mark.parametrize(("device", "named"), [
    ("<interface type='user'><model type='virtio'/>" + _pci(4, 0) + "</interface>", "<interface> 2"),
    ("<disk type='file' device='cdrom'><target dev='sda' bus='sata'/>" + _pci(0, 6) + "</disk>", "<disk> 2"),
    ("<input type='tablet' bus='usb'>" + _pci(0, 6) + "</input><controller type='usb' model='qemu-xhci'/>",
     "<input> 1"),
    ("<controller type='ide' index='0'>" + _pci(0, 6) + "</controller>", "<controller type='ide'> 1"),
    ("<memballoon model='virtio'><address type='pci' domain='0x0001' bus='0x00' slot='0x06' function='0x0'/>"
     "</memballoon>", "<memballoon> 1"),
])
def test_an_address_that_cannot_be_applied_is_refused(conn, workdir, device, named):
    qcow2(workdir / "disk")
    xml = domain("badpci", workdir / "disk").replace("</devices>", device + "</devices>")
    with pytest.raises(virtsnap.libvirtError) as err:
        conn.defineXML(xml)
    assert err.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    assert f"PCI address of {named}" in str(err.value)
    assert conn.listAllDomains() == []
