"""The corpus of issue 14: guests made by `virt-install --print-xml` (debian11 ... win11; user and `default`
networks; SPICE, VNC and no graphics; BIOS and UEFI), defined in the test libvirtd 9.0 and printed by `virsh
dumpxml`, then defined in virtsnap: each guest's outcome is written down (REFUSED), each refusal names every
unsupported item at once, and each accepted guest starts under TCG with QEMU's own view showing what it asked for."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import virtsnap

from . import corpus
from .test_argv_injection import qemu_view

pytestmark = pytest.mark.qemu

TABLE_REFUSAL = "not supported by the virtsnap QEMU driver: "
NVRAM = virtsnap.VIR_DOMAIN_UNDEFINE_NVRAM  # the UEFI guests' variable stores go with them
# What virtsnap refuses of each guest (empty: accepted, started and checked below); a refusal may only
# shrink, never grow. Since UEFI landed (7 Dec 2026) every guest of the corpus is accepted.
REFUSED: dict[str, set[str]] = {
    "alpine317-default-vnc-pc": set(),
    "alpine317-user-none-bios": set(),
    "centos9-default-vnc-uefi": set(),
    "centos9-user-none-bios": set(),
    "debian11-default-none-uefi": set(),
    "debian11-user-spice-uefi": set(),
    "debian11-user-vnc-bios": set(),
    "fedora37-default-spice-bios": set(),
    "fedora37-user-vnc-pc": set(),
    "ubuntu2204-default-vnc-bios": set(),
    "ubuntu2204-user-none-bios": set(),
    "win10-default-spice-bios": set(),
    "win10-user-vnc-bios": set(),
    "win11-default-spice-uefi": set(),
}
# What the test expects QEMU to show for an element (its own literal table, not the driver's)
NIC = {"virtio": "virtio-net-pci", "e1000e": "e1000e", "e1000": "e1000", "rtl8139": "rtl8139"}
VIDEO = {"vga": "VGA", "cirrus": "cirrus-vga", "virtio": "virtio-vga", "qxl": "qxl-vga", "bochs": "bochs-display"}
DISK_BUS = {"virtio": "virtio-blk-pci", "sata": "ide-hd", "scsi": "scsi-hd", "ide": "ide-hd"}
INPUT = {("tablet", "usb"): "usb-tablet", ("mouse", "usb"): "usb-mouse", ("keyboard", "usb"): "usb-kbd"}
SOUND = {"ich9": "ich9-intel-hda", "ich6": "intel-hda", "ac97": "AC97"}


@pytest.fixture(scope="module")
def dumps(libvirtd):  # libvirtd: the conftest fixture (a daemon for virt-install and virsh)
    return corpus.build()


LATER = "; and the virtsnap QEMU driver cannot apply: "  # what the rest of a refused document cannot have


def _items(message: str, table_only: bool = False) -> list[str]:
    """The refusal's items: the table's (elements, attributes and values a user can take out), then, unless
    `table_only`, what virtsnap found it cannot apply in the rest of the document."""
    assert TABLE_REFUSAL in message, message
    table, _, later = message.split(TABLE_REFUSAL, 1)[1].partition(LATER)
    return table.split("; ") + ([] if table_only or not later else later.split("; "))


def _key(item: str) -> str:
    return re.sub(r" \(.*\)$", "", item)  # without the supported values or the reason


def _strip(xml: str, items: list[str]) -> str:
    """The document without the elements, attributes and values the refusal named."""
    root = ET.fromstring(xml)

    def at(path: str) -> list[ET.Element]:
        parts = path.split("/")
        assert parts[0] == root.tag
        return root.findall("/".join([".", *parts[1:]])) if len(parts) > 1 else [root]

    for item in items:
        if m := re.fullmatch(r"element <(.+)/([^/]+)>(?: \(.*\))?", item):  # an optional reason
            for parent in at(m[1]):
                for child in parent.findall(m[2]):
                    parent.remove(child)
        elif m := re.fullmatch(r"attribute '([^']+)' of <(.+)>(?: \(.*\))?", item):
            for el in at(m[2]):
                el.attrib.pop(m[1], None)
        elif m := re.fullmatch(r"([\w:-]+)='([^']*)' of <(.+)> \(supported.*\)", item):
            parent_path, tag = m[3].rsplit("/", 1)
            for parent in at(parent_path):
                for child in parent.findall(tag):
                    if child.get(m[1]) == m[2]:
                        parent.remove(child)
        elif m := re.fullmatch(r"<(.+)/([^/]+)> '(.*)' \(supported: .*\)", item):  # element text
            for parent in at(m[1]):
                for child in parent.findall(m[2]):
                    if (child.text or "").strip() == m[3]:
                        parent.remove(child)
        else:
            raise AssertionError(f"an item the test cannot read: {item!r}")
    return ET.tostring(root, encoding="unicode")


def test_corpus_outcomes_and_refusals_name_everything(conn, dumps):
    assert sorted(dumps) == sorted(REFUSED)
    accepted, counts, stale = [], {}, []
    for name, xml in sorted(dumps.items()):
        try:
            conn.defineXML(xml).undefineFlags(NVRAM)
        except virtsnap.libvirtError as exc:
            assert exc.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED, (name, str(exc))
            items = _items(str(exc))
            refused = {_key(i) for i in items}
            assert refused <= REFUSED[name], (name, sorted(refused - REFUSED[name]))  # nothing new refused
            if refused != REFUSED[name]:
                stale.append(name)
            for key in refused:
                counts[key] = counts.get(key, 0) + 1
            # Every unsupported item was named: without them the document passes the table (a refusal left
            # is about how the remaining pieces fit together, not an element, attribute or value outside it).
            try:
                conn.defineXML(_strip(xml, items)).undefineFlags(NVRAM)
            except virtsnap.libvirtError as again:
                assert TABLE_REFUSAL not in str(again), (name, str(again))
            continue
        accepted.append(name)
        if REFUSED[name]:
            stale.append(name)
    print(f"\ncorpus: {len(dumps)} guests, accepted {len(accepted)} (each started and checked in QEMU by "
          f"test_accepted_guests_start), refused {len(dumps) - len(accepted)}")
    for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {n:3d}  {key}")
    if stale:
        print(f"  refused less than REFUSED says (tighten it): {', '.join(stale)}")


def _startable(xml: str, guest, workdir: Path, name: str, network: str) -> str:
    """The guest with the tiny test guest's kernel, initrd and data disk in place of its installer's disk
    (copies in workdir), and the test libvirtd's active network in place of `default` (inactive there: no
    dnsmasq); nothing else changes."""
    root = ET.fromstring(xml)
    for source in root.findall("devices/interface/source[@network='default']"):
        source.set("network", network)
    os_el = root.find("os")
    assert os_el is not None
    for tag, value in (("kernel", guest.kernel), ("initrd", guest.initrd), ("cmdline", guest.cmdline)):
        ET.SubElement(os_el, tag).text = str(value)
    for n, source in enumerate(root.findall("devices/disk/source")):
        disk = workdir / f"{name}-{n}.qcow2"
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", guest.data_template, str(disk)], check=True)
        source.set("file", str(disk))
    return ET.tostring(root, encoding="unicode")


def _expected(root: ET.Element) -> dict[str, int]:
    """QEMU device type -> how many the XML asked for."""
    want: dict[str, int] = {}

    def add(dev: str | None) -> None:
        if dev:
            want[dev] = want.get(dev, 0) + 1

    for i in root.findall("devices/interface"):
        add(NIC[i.find("model").get("type")])  # type: ignore[union-attr]
    for v in root.findall("devices/video/model"):
        add(VIDEO.get(v.get("type") or ""))
    for d in root.findall("devices/disk"):
        add(DISK_BUS[d.find("target").get("bus")] if d.get("device") == "disk" else "ide-cd")  # type: ignore
    for c in root.findall("devices/controller"):
        kind, model = c.get("type"), c.get("model")
        add({"usb": model if model == "qemu-xhci" else None, "virtio-serial": "virtio-serial-pci"}.get(kind or "")
            or ("pcie-root-port" if model == "pcie-root-port" else None))
    for i in root.findall("devices/input"):
        add(INPUT.get((i.get("type") or "", i.get("bus") or "")))
    for b in root.findall("devices/memballoon"):
        add("virtio-balloon-pci" if b.get("model") == "virtio" else None)
    for r in root.findall("devices/rng"):
        add("virtio-rng-pci")
    for _ in root.findall("devices/serial"):
        add("isa-serial")
    for c in root.findall("devices/channel/target"):
        add("virtserialport" if c.get("name") in ("org.qemu.guest_agent.0", "com.redhat.spice.0") else None)
    for snd in root.findall("devices/sound"):
        add(SOUND[snd.get("model") or ""])
    for r in root.findall("devices/redirdev"):
        add("usb-redir" if r.get("bus") == "usb" else None)

    return want


def _bridge_ports(bridge: str) -> int:
    return len(list(Path("/sys/class/net", bridge, "brif").iterdir()))


def test_accepted_guests_start(conn, dumps, guest, workdir, host_bridge, libvirt_network):
    started = 0
    for name, xml in sorted(dumps.items()):
        if REFUSED[name]:
            continue
        root = ET.fromstring(xml)
        dom = conn.defineXML(_startable(xml, guest, workdir, name, libvirt_network))
        try:
            dom.create()  # running under TCG, not paused
            assert dom.state()[0] == virtsnap.VIR_DOMAIN_RUNNING
            view = qemu_view(conn, dom)
            qtree = view["qtree"]
            for dev, n in _expected(root).items():
                assert qtree.count(f"dev: {dev}, ") >= n, (name, dev, n)
            for mac in root.findall("devices/interface/mac"):
                assert f'mac = "{mac.get("address")}"' in qtree, (name, mac.get("address"))
            taps = len(root.findall("devices/interface[@type='network']"))
            assert view["netdevs"].count("type=tap") == taps, (name, view["netdevs"])
            assert _bridge_ports(host_bridge) == taps, name  # each on the network's bridge
            machine = root.find("os/type").get("machine")  # type: ignore[union-attr]
            from virtsnap.drivers.qemu.monitor import Monitor

            mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "corpus")
            try:
                machines = {m["name"]: m for m in mon.execute("query-machines")}
                assert mon.execute("qom-get", {"path": "/machine", "property": "type"}) == f"{machine}-machine"
                assert machine in machines or any(m.get("alias") == machine for m in machines.values())
                vnc = mon.execute("query-vnc")
                assert vnc["enabled"] is (root.find("devices/graphics[@type='vnc']") is not None), name
                qom = [p["type"] for p in mon.execute("qom-list", {"path": "/machine/peripheral"})]
                for t in root.findall("devices/tpm"):  # a TPM sits on no bus: qom, not the qtree
                    assert f"child<{t.get('model') or 'tpm-tis'}>" in qom, (name, qom)
                if root.find("os[@firmware='efi']") is not None:  # UEFI code and the domain's NVRAM on pflash
                    assert mon.execute("qom-get", {"path": "/machine", "property": "pflash0"}), name
                    assert mon.execute("qom-get", {"path": "/machine", "property": "pflash1"}), name
                spice = mon.execute("query-spice")
                assert spice["enabled"] is (root.find("devices/graphics[@type='spice']") is not None), name
                if root.find("features/hyperv") is not None:  # the enlightenments are CPU properties
                    cpu = mon.execute("query-cpus-fast")[0]["qom-path"]
                    assert mon.execute("qom-get", {"path": cpu, "property": "hv-relaxed"}) is True, name
            finally:
                mon.close()
            started += 1
        finally:
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(NVRAM)
    print(f"\ncorpus: {started} guests started under TCG and checked in QEMU's view")
    assert started == sum(1 for items in REFUSED.values() if not items)
