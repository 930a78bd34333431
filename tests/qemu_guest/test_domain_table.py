"""Every element and value of the QEMU driver's domain table has an effect QEMU itself reports, on a paused
QEMU (nothing boots): devices through qom-list and HMP `info qtree`, block options through
query-named-block-nodes, machine properties through qom-get, chardevs through query-chardev. What the table
does not apply is refused, naming every item at once."""

from __future__ import annotations

import pytest

import virtsnap
from virtsnap.drivers.qemu.domain import INPUTS, NIC_MODELS, SUBSET, VALUES, VIDEO_MODELS

from .conftest import held_files
from .test_argv_injection import domain, qcow2, qemu_view, run_and_view

pytestmark = pytest.mark.qemu


def _with(xml: str, devices: str = "", features: str = "", extra: str = "", machine: str = "pc") -> str:
    xml = xml.replace("machine='pc'", f"machine='{machine}'")
    return xml.replace("</devices>", devices + "</devices>").replace("</os>", "</os>" + features + extra)


@pytest.fixture
def plain(workdir):
    qcow2(workdir / "disk")
    return domain("table", workdir / "disk")


def _qom(conn, dom, path: str, prop: str):
    from pathlib import Path

    from virtsnap.drivers.qemu.monitor import Monitor

    mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "view")
    try:
        return mon.execute("qom-get", {"path": path, "property": prop})
    finally:
        mon.close()


def _running(conn, xml: str):
    dom = conn.defineXML(xml)
    dom.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)
    return dom


def test_devices_reach_qemu(conn, plain):
    """Video, USB controller and inputs, balloon, rng, NIC model, virtio-serial, several serials."""
    xml = _with(plain, devices=(
        "<controller type='usb' index='0' model='qemu-xhci' ports='15'/>"
        "<controller type='virtio-serial' index='0'/>"
        "<input type='tablet' bus='usb'/><input type='keyboard' bus='virtio'/><input type='mouse' bus='ps2'/>"
        "<video><model type='virtio' heads='1' primary='yes'/></video>"
        "<memballoon model='virtio'/>"
        "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>"
        "<serial type='pty'/><serial type='pty'/>"
    )).replace("<model type='virtio'/></interface>", "<model type='e1000'/></interface>")
    view = run_and_view(conn, xml)
    assert isinstance(view, dict), view
    qtree = view["qtree"]
    for driver in ("qemu-xhci", "usb-tablet", "virtio-keyboard-pci", "virtio-vga", "virtio-balloon-pci",
                   "virtio-rng-pci", "virtio-serial-pci", "e1000"):
        assert f'dev: {driver}, id "' in qtree, driver
    assert 'dev: virtio-net-pci' not in qtree  # the NIC model is e1000, not the old always-virtio
    assert view["qtree"].count("dev: isa-serial") == 2
    assert {"serial0", "serial1"} <= set(view["chardevs"])
    dom = conn.defineXML(xml)
    dom.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)
    try:
        assert _qom(conn, dom, "/machine/peripheral/usb", "p2") == 15
    finally:
        dom.destroy()
        dom.undefine()


@pytest.mark.parametrize("model", sorted(NIC_MODELS))
def test_nic_models(conn, plain, model):
    view = run_and_view(conn, plain.replace("<model type='virtio'/>", f"<model type='{model}'/>"))
    assert isinstance(view, dict), view
    assert f'dev: {NIC_MODELS[model]}, id "net0"' in view["qtree"]


def test_nic_without_model_is_libvirts_default(conn, plain):
    view = run_and_view(conn, plain.replace("<model type='virtio'/>", ""))
    assert isinstance(view, dict), view
    assert 'dev: rtl8139, id "net0"' in view["qtree"]


@pytest.mark.parametrize("model", sorted(m for m in VIDEO_MODELS if m != "none"))
def test_video_models(conn, plain, model):
    extra = " vram='16384' heads='1'" if model in ("vga", "virtio", "qxl") else ""
    view = run_and_view(conn, _with(plain, devices=f"<video><model type='{model}'{extra}/></video>"))
    assert isinstance(view, dict), view
    assert f'dev: {VIDEO_MODELS[model][0]}, id "video0"' in view["qtree"]
    if model == "vga":
        assert "vgamem_mb = 16" in view["qtree"]


def test_video_none_and_balloon_none_add_nothing(conn, plain):
    base = run_and_view(conn, plain)
    view = run_and_view(conn, _with(plain, devices="<video><model type='none'/></video><memballoon model='none'/>"))
    assert isinstance(view, dict) and isinstance(base, dict)
    assert view["peripherals"] == base["peripherals"] and view["anonymous"] == base["anonymous"]


@pytest.mark.parametrize("key", sorted(k for k, v in INPUTS.items() if v))
def test_inputs(conn, plain, key):
    kind, bus = key
    usb = "<controller type='usb' model='piix3-uhci'/>" if bus == "usb" else ""
    view = run_and_view(conn, _with(plain, devices=f"{usb}<input type='{kind}' bus='{bus}'/>"))
    assert isinstance(view, dict), view
    assert f'dev: {INPUTS[key]}, id "input0"' in view["qtree"]


def test_machine_features_clock_pm_and_cpu(conn, plain):
    xml = _with(plain, features="<features><vmport state='off'/></features>",
                extra="<cpu mode='custom' match='exact'><model fallback='forbid'>Westmere</model></cpu>"
                      "<clock offset='localtime'><timer name='rtc' tickpolicy='catchup'/>"
                      "<timer name='hpet' present='no'/></clock>"
                      "<pm><suspend-to-mem enabled='no'/><suspend-to-disk enabled='yes'/></pm>")
    dom = _running(conn, xml)
    try:
        assert _qom(conn, dom, "/machine", "acpi") == "off"  # no <acpi/>: libvirt gives no ACPI
        assert _qom(conn, dom, "/machine", "vmport") == "off"
        assert _qom(conn, dom, "/machine", "hpet") is False
        assert _qom(conn, dom, "/machine/unattached/device[0]", "type") == "Westmere-x86_64-cpu"
    finally:
        dom.destroy()
        dom.undefine()
    dom = _running(conn, _with(plain, features="<features><acpi/><apic/><pae/></features>",
                               extra="<pm><suspend-to-mem enabled='no'/><suspend-to-disk enabled='no'/></pm>"))
    try:
        assert _qom(conn, dom, "/machine", "acpi") == "on"
        assert "disable_s3 = 1" in qemu_view(conn, dom)["qtree"]
    finally:
        dom.destroy()
        dom.undefine()


def test_disk_cache_discard_io_and_boot_order(conn, workdir, plain):
    qcow2(workdir / "second")
    xml = plain.replace("<driver name='qemu' type='qcow2'/>",
                        "<driver name='qemu' type='qcow2' cache='unsafe' discard='unmap' io='threads'/>")
    xml = xml.replace("<target dev='vda' bus='virtio'/>", "<target dev='vda' bus='virtio'/><boot order='2'/>")
    xml = _with(xml, devices=(f"<disk type='file' device='disk'><driver name='qemu' type='qcow2' "
                              f"cache='writethrough'/><source file='{workdir / 'second'}'/>"
                              "<target dev='sda' bus='sata'/><boot order='1'/></disk>"))
    dom = _running(conn, xml)
    try:
        from pathlib import Path

        from virtsnap.drivers.qemu.monitor import Monitor

        mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "view")
        try:
            nodes = {n["node-name"]: n for n in mon.execute("query-named-block-nodes")}
            qtree = mon.hmp("info", "qtree")
        finally:
            mon.close()
        assert nodes["drive-vda"]["cache"]["no-flush"] is True
        assert nodes["drive-sda"]["cache"]["no-flush"] is False
        assert _qom(conn, dom, "/machine/peripheral/sda", "write-cache") == "off"  # writethrough
        assert _qom(conn, dom, "/machine/peripheral/vda", "write-cache") == "on"
        assert _qom(conn, dom, "/machine/peripheral/vda", "bootindex") == 2
        assert _qom(conn, dom, "/machine/peripheral/sda", "bootindex") == 1
        assert "discard_granularity" in qtree
    finally:
        dom.destroy()
        dom.undefine()


def test_disk_serial_and_shareable(conn, workdir, plain):
    """<serial> is the serial number the guest reads (QEMU's serial=), <shareable/> lets other writers in
    (share-rw=on, as libvirt); a serial with characters libvirt calls unsafe is refused, naming it."""
    qcow2(workdir / "second")
    xml = plain.replace("<target dev='vda' bus='virtio'/>", "<target dev='vda' bus='virtio'/>"
                        "<serial>VS-0001 a.b+c_d</serial><shareable/>")
    xml = _with(xml, devices=(f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                              f"<source file='{workdir / 'second'}'/><target dev='sda' bus='sata'/>"
                              "<serial>SATA7</serial></disk>"))
    dom = _running(conn, xml)
    try:
        assert _qom(conn, dom, "/machine/peripheral/vda", "serial") == "VS-0001 a.b+c_d"
        assert _qom(conn, dom, "/machine/peripheral/vda", "share-rw") is True
        assert _qom(conn, dom, "/machine/peripheral/sda", "serial") == "SATA7"
        assert _qom(conn, dom, "/machine/peripheral/sda", "share-rw") is False
    finally:
        dom.destroy()
        dom.undefine()
    bad = plain.replace("<target dev='vda' bus='virtio'/>", "<target dev='vda' bus='virtio'/>"
                        "<serial>x,drive=other</serial>")
    with pytest.raises(virtsnap.libvirtError) as refused:
        conn.defineXML(bad)
    assert refused.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    assert "x,drive=other" in str(refused.value)
    assert conn.listDefinedDomains().count("table") == 0


def test_serial_target_port_is_the_isa_index(conn, plain):
    """<target port='N'> is the COM port QEMU gives the serial device (isa-serial index, as libvirt passes it);
    a port outside COM1-COM4 or given twice is refused, naming it."""
    serials = "<serial type='pty'><target port='2'/></serial><serial type='pty'/>"
    dom = _running(conn, _with(plain, devices=serials))
    try:
        from pathlib import Path

        from virtsnap.drivers.qemu.monitor import Monitor

        mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "view")
        try:
            qtree = mon.hmp("info", "qtree")
        finally:
            mon.close()
        # COM3 is at 0x3e8, COM1 at 0x3f8: the first serial asked for port 2, the second took the lowest free
        assert "iobase = 1000 (0x3e8)" in qtree and "iobase = 1016 (0x3f8)" in qtree
        assert qtree.count("dev: isa-serial") == 2
    finally:
        dom.destroy()
        dom.undefine()
    for bad in ("<serial type='pty'><target port='4'/></serial>",
                "<serial type='pty'><target port='1'/></serial><serial type='pty'><target port='1'/></serial>"):
        with pytest.raises(virtsnap.libvirtError) as refused:
            conn.defineXML(_with(plain, devices=bad))
        assert refused.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
        assert "serial target port" in str(refused.value)


def test_audio_none_is_a_silent_backend(conn, plain):
    """<audio type='none'>: QEMU gets an audio backend that plays nothing (7.2 has no query-audiodevs, so the
    check is that QEMU runs with it on its command line); other backends are refused."""
    dom = _running(conn, _with(plain, devices="<audio id='1' type='none'/>"))
    try:
        cmdline = open(f"/proc/{dom.ID()}/cmdline").read().split("\0")
        assert '{"driver": "none", "id": "audio1"}' in cmdline
    finally:
        dom.destroy()
        dom.undefine()
    with pytest.raises(virtsnap.libvirtError, match="type='pa' of <domain/devices/audio>"):
        conn.defineXML(_with(plain, devices="<audio id='1' type='pa'/>"))


def test_pcie_root_ports_on_q35(conn, plain):
    ports = "".join(f"<controller type='pci' index='{i}' model='pcie-root-port'><model name='pcie-root-port'/>"
                    f"<target chassis='{i}' port='0x{0x10 + i:x}'/></controller>" for i in (1, 2))
    xml = _with(plain, devices="<controller type='pci' index='0' model='pcie-root'/>" + ports, machine="q35")
    dom = _running(conn, xml)
    try:
        assert _qom(conn, dom, "/machine/peripheral/pci.2", "chassis") == 2
        assert _qom(conn, dom, "/machine/peripheral/pci.2", "port") == 0x12
        assert 'dev: pcie-root-port, id "pci.1"' in qemu_view(conn, dom)["qtree"]
    finally:
        dom.destroy()
        dom.undefine()


def test_unapplied_items_are_refused_all_at_once(conn, plain):
    xml = _with(plain, devices="<audio id='1' type='pa'/><sound model='sb16'/><input type='tablet' bus='ps2'/>"
                               "<video><model type='vga'><acceleration accel3d='no'/></model></video>",
                extra="<on_crash>restart</on_crash>").replace("arch='x86_64'", "arch='aarch64'")
    with pytest.raises(virtsnap.libvirtError) as err:
        conn.defineXML(xml)
    assert err.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    message = str(err.value)
    for item in ("type='pa' of <domain/devices/audio>", "model='sb16' of <domain/devices/sound>", "<domain/devices/video/model/acceleration>",
                 "arch='aarch64'", "<domain/on_crash> 'restart'", "type='tablet' of <domain/devices/input>"):
        assert item in message, item
    assert conn.listAllDomains() == []


def test_refusals_of_every_kind_come_in_one_error(conn, plain):
    """Refusals found past the table (placements, counts, values, memory) are gathered into one
    CONFIG_UNSUPPORTED error naming each item, and the document defines nothing. The table's own refusals
    come first (in the forms the corpus check takes out), in the same error: one define names everything."""
    xml = _with(plain.replace("<interface type='user'>", "<interface type='user'><address type='pci' domain='0' "
                              "bus='7' slot='3' function='0'/>")
                .replace("</memory>", "</memory><currentMemory unit='MiB'>32</currentMemory>"),
                devices="<graphics type='vnc'/><graphics type='vnc'/>"
                        "<serial type='pty'/><serial type='file'><source path='/tmp/s'/></serial>"
                        "<video><model type='vga' vram='0'/></video>"
                        "<controller type='pci' index='1' model='pcie-root-port'/><sound model='sb16'/>",
                extra="<seclabel type='dynamic' model='dac'/><seclabel type='dynamic' model='dac'/>")
    later = ("PCI address of <interface> 1",  # a placement
             "only one <graphics> device", "only one <seclabel>",  # counts
             "only the first serial port may be a file", "video vram '0' is not a positive number",  # values
             "pcie-root-port controllers need a q35 machine",  # the machine
             "<currentMemory> 32768 KiB below <memory> 65536 KiB needs <memballoon model='virtio'>")  # memory
    with pytest.raises(virtsnap.libvirtError) as err:
        conn.defineXML(xml)
    assert err.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    message = str(err.value)
    assert message.index("model='sb16' of <domain/devices/sound>") < message.index("cannot apply: ")  # the table's
    for item in later:
        assert item in message.split("cannot apply: ", 1)[1], item
    assert conn.listAllDomains() == []
    with pytest.raises(virtsnap.libvirtError) as err:
        conn.defineXML(xml.replace("<sound model='sb16'/>", ""))
    assert err.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    message = str(err.value)
    assert message.count("\n") == 0
    for item in ("PCI address of <interface> 1",  # a placement
                 "only one <graphics> device", "only one <seclabel>",  # counts
                 "only the first serial port may be a file", "video vram '0' is not a positive number",  # values
                 "pcie-root-port controllers need a q35 machine",  # the machine
                 "<currentMemory> 32768 KiB below <memory> 65536 KiB needs <memballoon model='virtio'>"):  # memory
        assert item in message, item
    assert conn.listAllDomains() == []


def test_channel_virtio_serial_address_is_the_ports_nr(conn, workdir):
    """libvirt's <address type='virtio-serial' controller='0' bus='0' port='N'/> on a channel is the
    virtserialport's nr in QEMU; a channel without one takes QEMU's first free nr (1), as before."""
    qcow2(workdir / "disk")
    xml = domain("chan", workdir / "disk", agent=workdir / "qga.sock")

    def agent_nr(view: dict) -> str:
        block = view["qtree"].split('name = "org.qemu.guest_agent.0"')[0].rsplit("dev: virtserialport", 1)[1]
        return block.split("nr = ")[1].split()[0]

    view = run_and_view(conn, xml)
    assert isinstance(view, dict), view
    assert agent_nr(view) == "1"
    view = run_and_view(conn, xml.replace("</channel>", "<address type='virtio-serial' controller='0' bus='0' "
                                                        "port='3'/></channel>"))
    assert isinstance(view, dict), view
    assert agent_nr(view) == "3"
    for address, item in (("controller='1' bus='0' port='1'", "virtio-serial controller/bus '1/0'"),
                          ("controller='0' bus='0' port='31'", "virtio-serial port '31'"),
                          ("controller='0' bus='0' port='0'", "virtio-serial port '0'")):
        refused = run_and_view(conn, xml.replace("</channel>", f"<address type='virtio-serial' {address}/></channel>"))
        assert isinstance(refused, virtsnap.libvirtError), address
        assert refused.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
        assert item in str(refused), (item, str(refused))


def test_serial_target_model_is_isa_serial_only(conn, plain):
    """virsh dumpxml's <target type='isa-serial'><model name='isa-serial'/> is what QEMU gets; another serial
    device (which virtsnap does not build) is refused by name, not turned into an isa-serial."""
    ok = _with(plain, devices="<serial type='pty'><target type='isa-serial' port='1'><model name='isa-serial'/>"
                              "</target></serial>")
    view = run_and_view(conn, ok)
    assert isinstance(view, dict), view
    assert view["qtree"].count("dev: isa-serial") == 1
    bad = _with(plain, devices="<serial type='pty'><target type='usb-serial'><model name='usb-serial'/></target>"
                               "</serial>")
    with pytest.raises(virtsnap.libvirtError) as err:
        conn.defineXML(bad)
    assert err.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    for item in ("name='usb-serial' of <domain/devices/serial/target/model>",
                 "type='usb-serial' of <domain/devices/serial/target>"):
        assert item in str(err.value), item


def test_the_table_is_walked():
    """Every element of the table is named in this file or test_domain_devices.py (its effect is asserted there
    or it is bookkeeping)."""
    from pathlib import Path

    text = open(__file__).read() + (Path(__file__).parent / "test_domain_devices.py").read_text()
    bookkeeping = {"name", "uuid", "title", "description", "metadata", "memory", "currentMemory", "vcpu",
                   "resource", "partition", "os", "type", "kernel", "initrd", "cmdline", "devices",
                   "disk", "source", "backingStore", "target", "readonly", "shareable", "serial", "address",
                   "alias", "channel", "console", "interface", "mac", "graphics", "listen", "seclabel", "label",
                   "on_poweroff", "on_reboot", "boot", "driver", "backend"}

    def walk(spec, out):
        children = spec.children
        if isinstance(children, dict):
            for tag, sub in children.items():
                out.add(tag)
                walk(sub, out)
        return out

    tags = walk(SUBSET["domain"], set())
    missing = sorted(t for t in tags - bookkeeping if f"<{t}" not in text)
    assert missing == []
    assert ("cpu", "mode") in VALUES


@pytest.mark.parametrize("model", ["tpm-crb", "tpm-tis"])
def test_tpm_emulator(conn, plain, model):
    """<tpm> with an emulator backend: QEMU's own query-tpm shows the model on swtpm (whose PCR banks,
    <active_pcr_banks>, a booted guest reads in test_tpm.py); everything else about a TPM is refused."""
    banks = "<active_pcr_banks><sha1/><sha256/><sha384/><sha512/></active_pcr_banks>"
    dom = _running(conn, _with(plain, devices=f"<tpm model='{model}'><backend type='emulator' version='2.0'>"
                                              f"{banks}</backend></tpm>"))
    try:
        from pathlib import Path

        from virtsnap.drivers.qemu.monitor import Monitor

        mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "view")
        try:
            tpms = mon.execute("query-tpm")
        finally:
            mon.close()
        assert [(t["id"], t["model"], t["options"]["type"]) for t in tpms] == [("tpm-tpm0", model, "emulator")]
    finally:
        dom.destroy()
        dom.undefine()


def test_tpm_refusals(conn, plain):
    cases = {
        "<tpm model='tpm-tis'><backend type='passthrough'><device path='/dev/tpm0'/></backend></tpm>":
            ["type='passthrough' of <domain/devices/tpm/backend>", "element <domain/devices/tpm/backend/device>"],
        "<tpm model='tpm-crb'><backend type='emulator' version='1.2'/></tpm>":
            ["version='1.2' of <domain/devices/tpm/backend>"],
        "<tpm model='tpm-spapr'><backend type='emulator' version='2.0' debug='1' persistent_state='maybe'/></tpm>":
            ["model='tpm-spapr' of <domain/devices/tpm>", "attribute 'debug' of <domain/devices/tpm/backend>",
             "persistent_state='maybe' of <domain/devices/tpm/backend>"],
        "<tpm model='tpm-crb'><backend type='emulator' version='2.0'><encryption secret='x'/></backend></tpm>":
            ["element <domain/devices/tpm/backend/encryption>"],
        "<tpm model='tpm-crb'><backend type='emulator'/></tpm><tpm model='tpm-tis'><backend type='emulator'/></tpm>":
            ["only one <tpm> device"],
        "<tpm model='tpm-crb'/>": ["needs <backend type='emulator'"],
    }
    for devices, items in cases.items():
        with pytest.raises(virtsnap.libvirtError) as err:
            conn.defineXML(_with(plain, devices=devices))
        assert err.value.get_error_code() in (virtsnap.VIR_ERR_CONFIG_UNSUPPORTED, virtsnap.VIR_ERR_XML_ERROR)
        for item in items:
            assert item in str(err.value), (devices, item)
    assert conn.listAllDomains() == []


OVMF = "/usr/share/OVMF"


@pytest.mark.parametrize(("os_extra", "features", "code", "secure"), [
    ("", "", "OVMF_CODE_4M.ms.fd", True),  # libvirt's pick on Debian 12: Secure Boot, MS keys, SMM
    ("<firmware><feature enabled='no' name='secure-boot'/></firmware>", "", "OVMF_CODE_4M.fd", False),
    (f"<loader readonly='yes' type='pflash' secure='yes'>{OVMF}/OVMF_CODE_4M.secboot.fd</loader>"
     f"<nvram template='{OVMF}/OVMF_VARS_4M.fd'/>", "<smm state='on'/>", "OVMF_CODE_4M.secboot.fd", True),
])
def test_uefi_firmware_reaches_qemu_as_pflash_with_smm_for_secure_boot(conn, plain, os_extra, features, code,
                                                                        secure):
    """<os firmware='efi'>, <firmware><feature>, <loader>, <nvram> and <features><smm>: the code read-only on
    pflash0, the domain's NVRAM store on pflash1, SMM and the secure flash exactly for Secure Boot builds
    (snapshots of booted UEFI guests: test_uefi.py)."""
    from pathlib import Path

    from virtsnap.drivers.qemu.firmware import own_nvram
    from virtsnap.drivers.qemu.monitor import Monitor

    efi = "" if "<loader" in os_extra else " firmware='efi'"
    xml = _with(plain, machine="q35").replace("<os>", f"<os{efi}>").replace("</type>", "</type>" + os_extra)
    if features:
        xml = xml.replace("</os>", f"</os><features>{features}</features>")
    dom = _running(conn, xml)
    try:
        mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "view")
        try:
            flash = {b["qdev"]: b["inserted"] for b in mon.execute("query-block") if "flash" in b.get("qdev", "")}
            smm = mon.execute("qom-get", {"path": "/machine", "property": "smm"})
            secure_flash = mon.execute("qom-get", {"path": "/machine/system.flash1", "property": "secure"})
        finally:
            mon.close()
        assert flash["/machine/system.flash0"]["file"] == f"{OVMF}/{code}" and flash["/machine/system.flash0"]["ro"]
        nvram = own_nvram(conn.driver.state_dir, dom.UUIDString())
        assert flash["/machine/system.flash1"]["file"] == "/dev/fdset/2" and not flash["/machine/system.flash1"]["ro"]
        held = set(held_files(dom.ID()))  # the test's monitor connection may still be closing on QEMU's side
        assert nvram in held  # the domain's store, opened by virtsnap and passed to QEMU as a descriptor
        assert flash["/machine/system.flash1"]["drv"] == "qcow2"
        assert (smm == "on", secure_flash) == (secure, secure)
        assert ("<smm state='on'/>" in dom.XMLDesc()) == secure
    finally:
        dom.destroy()
        dom.undefineFlags(virtsnap.VIR_DOMAIN_UNDEFINE_NVRAM)
    assert not Path(nvram).exists()
