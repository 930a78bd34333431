"""USB devices sit at their <address type='usb' bus='0' port='N'/>, as libvirt passes it (QEMU's port property on
the one controller, usb.0); a device without one takes QEMU's first free port. A port the controller does not
have (libvirt's count for its model), a port behind a hub, another bus, a port given twice, or a USB address on an
element that is not a USB device is refused, naming each at once, and nothing is defined."""

from __future__ import annotations

import re

import pytest

import virtsnap

from .test_argv_injection import domain, qcow2
from .test_domain_devices import Running
from .test_domain_table import _with

pytestmark = pytest.mark.qemu


@pytest.fixture
def plain(workdir):
    qcow2(workdir / "disk")
    return domain("devices", workdir / "disk")


def _usb(port: str, bus: str = "0") -> str:
    return f"<address type='usb' bus='{bus}' port='{port}'/>"


def test_usb_inputs_and_redirection_sit_at_their_ports(conn, plain):
    devices = ("<controller type='usb' model='qemu-xhci' ports='8'/>"
               f"<input type='tablet' bus='usb'>{_usb('3')}</input>"
               f"<input type='keyboard' bus='usb'>{_usb('1')}</input>"
               "<input type='mouse' bus='usb'/>"  # no address: QEMU's first free port
               "<graphics type='spice' autoport='yes'><listen type='address'/></graphics>"
               f"<redirdev bus='usb' type='spicevmc'>{_usb('7')}</redirdev>")
    with Running(conn, _with(plain, devices=devices, machine="q35")) as run:
        # QEMU's own list of the devices attached to the USB ports: "Device 0.0, Port 3, ..., ID: input0"
        ports = {dev: port for port, dev in re.findall(r"Port (\S+), .*, ID: (\S+)", run.mon.hmp("info", "usb"))}
        buses = {dev: run.qom(f"/machine/peripheral/{dev}", "parent_bus").rsplit("/", 1)[1]
                 for dev in ("input0", "redir0")}
    assert ports == {"input0": "3", "input1": "1", "input2": "2", "redir0": "7"}  # the mouse: first free port
    assert buses == {"input0": "usb.0", "redir0": "usb.0"}


def test_ehci_ports_as_libvirt_counts_them(conn, plain):
    devices = ("<controller type='usb' index='0' model='ich9-ehci1'/>"
               f"<input type='tablet' bus='usb'>{_usb('6')}</input>")
    with Running(conn, _with(plain, devices=devices)) as run:
        assert re.findall(r"Port (\S+), .*, ID: (\S+)", run.mon.hmp("info", "usb")) == [("6", "input0")]


def test_usb_addresses_that_cannot_be_applied_are_refused_all_at_once(conn, plain):
    devices = ("<controller type='usb' model='piix3-uhci'/>"
               f"<input type='tablet' bus='usb'>{_usb('3')}</input>"  # piix3-uhci has 2 ports
               f"<input type='mouse' bus='usb'>{_usb('1.2')}</input>"  # behind a hub
               f"<input type='keyboard' bus='usb'>{_usb('1', bus='1')}</input>"  # a second controller
               f"<input type='tablet' bus='usb'>{_usb('2')}</input><input type='mouse' bus='usb'>{_usb('2')}</input>"
               f"<input type='mouse' bus='ps2'>{_usb('1')}</input>")  # PS/2 is no USB device
    with pytest.raises(virtsnap.libvirtError) as refused:
        conn.defineXML(_with(plain, devices=devices))
    assert refused.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    message = str(refused.value)
    for item in ("USB port of <input> 1 '3' is not a port of the USB controller (1 to 2",
                 "USB port of <input> 2 '1.2'", "USB bus of <input> 3 '1' is not 0",
                 "USB port '2' is given to <input> 4 and <input> 5",
                 "USB address of <input> 6 is not applied to this element"):
        assert item in message
    assert "devices" not in conn.listDefinedDomains()
