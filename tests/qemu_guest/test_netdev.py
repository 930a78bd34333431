"""<interface type='bridge'> and <interface type='network'> on real guests: virtsnap makes a tap on a bridge the
test creates, QEMU gets its descriptor, the guest sees its NIC, the tap goes when the domain stops; a libvirt
network of the test libvirtd resolves to its bridge; bad names and missing networks are refused, nothing made."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import pytest

import virtsnap

from .conftest import domain_xml, guest_read, virsh
from .test_argv_injection import qemu_view

pytestmark = pytest.mark.qemu
MAC = "52:54:00:12:34:56"


def _with_nic(xml: str, nic: str) -> str:
    return xml.replace("</devices>", nic + "</devices>")


def _taps(bridge: str) -> list[dict]:
    out = subprocess.run(["ip", "-j", "-d", "link", "show", "master", bridge], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out or "[]")


def _all_taps() -> set[str]:
    return {n for n in os.listdir("/sys/class/net") if n.startswith("vstap")}


def test_bridge_nic_reaches_qemu_and_guest_and_goes_at_stop(conn, guest, workdir, host_bridge):
    xml = _with_nic(domain_xml(guest, workdir), f"<interface type='bridge'><mac address='{MAC}'/>"
                    f"<source bridge='{host_bridge}'/><model type='e1000'/></interface>")
    dom = conn.defineXML(xml)
    dom.create()
    view = qemu_view(conn, dom)
    assert f'dev: e1000, id "net0"' in view["qtree"] and f'mac = "{MAC}"' in view["qtree"]
    assert "type=tap" in view["netdevs"], view["netdevs"]
    taps = _taps(host_bridge)
    assert len(taps) == 1, taps
    tap = taps[0]
    assert tap["ifname"].startswith("vstap") and tap["linkinfo"]["info_kind"] == "tun"
    assert tap["address"] == "fe" + MAC[2:]  # libvirt's rule: the bridge never takes the guest's MAC
    assert "UP" in tap["flags"]
    # the guest itself: an Intel 82540EM (8086:100e) on its PCI bus
    pci = guest_read(conn, dom, "for d in /sys/bus/pci/devices/*; do echo $(cat $d/vendor):$(cat $d/device); done")
    assert "0x8086:0x100e" in pci.split(), pci
    dom.destroy()
    assert _taps(host_bridge) == []
    assert not Path("/sys/class/net", tap["ifname"]).exists()


def test_network_nic_uses_the_libvirt_networks_bridge(conn, guest, workdir, host_bridge, libvirt_network):
    xml = _with_nic(domain_xml(guest, workdir, agent=False),
                    f"<interface type='network'><mac address='{MAC}'/><source network='{libvirt_network}'/>"
                    "<model type='virtio'/></interface>")
    dom = conn.defineXML(xml)
    dom.create()
    from virtsnap.drivers.qemu.monitor import Monitor

    mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "net")
    try:
        rx = mon.execute("query-rx-filter")  # every NIC (its name is the netdev id too)
    finally:
        mon.close()
    assert rx[0]["main-mac"] == MAC
    assert [t["ifname"] for t in _taps(host_bridge)] and len(_taps(host_bridge)) == 1
    dom.destroy()
    assert _taps(host_bridge) == []


def _start_error(conn, xml: str) -> virtsnap.libvirtError:
    before = _all_taps()
    dom = conn.defineXML(xml)
    with pytest.raises(virtsnap.libvirtError) as err:
        dom.create()
    assert not dom.isActive()
    assert _all_taps() == before  # nothing made, nothing left
    dom.undefine()
    return err.value


def test_missing_and_inactive_networks_and_bridges(conn, guest, workdir, libvirtd, tmp_path):
    base = domain_xml(guest, workdir, agent=False)
    err = _start_error(conn, _with_nic(base, "<interface type='network'><source network='vs-no-such-net'/>"
                                             "</interface>"))
    assert err.get_error_code() == virtsnap.VIR_ERR_NO_NETWORK, str(err)
    assert err.get_error_domain() == virtsnap.VIR_FROM_NETWORK
    assert "no network with matching name 'vs-no-such-net'" in str(err)
    name = f"vs-off-{os.getpid()}"
    net = tmp_path / "off.xml"
    net.write_text(f"<network><name>{name}</name><forward mode='bridge'/><bridge name='vsoff0'/></network>")
    virsh("net-define", str(net))
    try:
        err = _start_error(conn, _with_nic(base, f"<interface type='network'><source network='{name}'/>"
                                                 "</interface>"))
        assert err.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID, str(err)
        assert f"network '{name}' is not active" in str(err)
    finally:
        virsh("net-undefine", name)
    err = _start_error(conn, _with_nic(base, "<interface type='bridge'><source bridge='vsnobr0'/></interface>"))
    assert err.get_error_code() == virtsnap.VIR_ERR_OPERATION_FAILED and "no bridge 'vsnobr0'" in str(err)


@pytest.mark.parametrize("nic,code", [
    ("<interface type='bridge'><source bridge='a/b'/></interface>", virtsnap.VIR_ERR_CONFIG_UNSUPPORTED),
    ("<interface type='bridge'><source bridge='br 0'/></interface>", virtsnap.VIR_ERR_CONFIG_UNSUPPORTED),
    ("<interface type='bridge'><source bridge='br,id=x'/></interface>", None),  # a valid Linux name; no parser
    ("<interface type='bridge'><source bridge='abcdefghijklmnop'/></interface>", virtsnap.VIR_ERR_CONFIG_UNSUPPORTED),
    ("<interface type='bridge'><source bridge='a:b'/></interface>", virtsnap.VIR_ERR_CONFIG_UNSUPPORTED),
    ("<interface type='bridge'><source bridge='..'/></interface>", virtsnap.VIR_ERR_CONFIG_UNSUPPORTED),
    ("<interface type='bridge'><source bridge='br&#10;0'/></interface>", virtsnap.VIR_ERR_CONFIG_UNSUPPORTED),
    ("<interface type='network'><source network='../../etc/passwd'/></interface>",
     virtsnap.VIR_ERR_CONFIG_UNSUPPORTED),
    ("<interface type='network'><source network='.hidden'/></interface>", virtsnap.VIR_ERR_CONFIG_UNSUPPORTED),
    ("<interface type='bridge'/>", virtsnap.VIR_ERR_XML_ERROR),
    ("<interface type='network'><source bridge='br0'/></interface>", virtsnap.VIR_ERR_CONFIG_UNSUPPORTED),
    ("<interface type='user'><source bridge='br0'/></interface>", virtsnap.VIR_ERR_CONFIG_UNSUPPORTED),
])
def test_names_are_checked_at_define(conn, guest, workdir, nic, code):
    xml = _with_nic(domain_xml(guest, workdir, agent=False), nic)
    if code is None:
        conn.defineXML(xml).undefine()
        return
    with pytest.raises(virtsnap.libvirtError) as err:
        conn.defineXML(xml)
    assert err.value.get_error_code() == code, str(err.value)
    assert conn.listAllDomains() == []


UNPRIVILEGED = """
import sys, virtsnap
conn = virtsnap.open("qemu:///session")
dom = conn.defineXML(sys.argv[1])
try:
    dom.create()
except virtsnap.libvirtError as exc:
    print(exc.get_error_code(), exc)
"""


def test_unprivileged_session_refuses_bridges(host_bridge):
    home = Path(tempfile.mkdtemp(prefix="vs-nobody-", dir="/tmp"))  # pytest's tmp_path is root's only
    os.chown(home, 65534, 65534)
    xml = ("<domain type='qemu'><name>u</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type>"
           f"</os><devices><interface type='bridge'><source bridge='{host_bridge}'/></interface></devices></domain>")
    src = Path(virtsnap.__file__).resolve().parent.parent
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_RUNTIME_DIR": str(home),
           "VIRTSNAP_QEMU_STATE_DIR": str(home / "state"),
           "PYTHONPATH": os.pathsep.join([str(src), sysconfig.get_paths()["purelib"]])}  # the venv is root's
    before = _all_taps()
    try:
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3",
                               "-c", UNPRIVILEGED, xml], capture_output=True, text=True, env=env, timeout=120)
    finally:
        shutil.rmtree(home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"{virtsnap.VIR_ERR_CONFIG_UNSUPPORTED} "), proc.stdout
    assert "needs virtsnap running as root" in proc.stdout
    assert _all_taps() == before
