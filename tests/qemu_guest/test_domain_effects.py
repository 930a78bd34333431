"""The domain table's remaining rows, each shown by its effect: QEMU's own view of a paused QEMU (query-uuid, the
machine's boot order, qom-get of the devices and the CPU, query-named-block-nodes, query-chardev, the kernel's view
of QEMU's files) and, where only a running guest can tell, the booted tiny guest (a read-only block device, a
reboot under on_reboot, a poweroff under on_poweroff, the TPM's PCR banks, its console output)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import virtsnap
from virtsnap.drivers.qemu import process

from .conftest import agent_for, domain_xml, guest_read, held_files, image_tags
from .test_argv_injection import domain, qcow2
from .test_domain_devices import Running
from .test_domain_table import _with

pytestmark = pytest.mark.qemu

UUID = "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0"
CPU = "/machine/unattached/device[0]"


@pytest.fixture
def plain(workdir):
    qcow2(workdir / "disk")
    return domain("effects", workdir / "disk")


def refused(conn, xml: str, *items: str) -> None:
    """define refuses the document with CONFIG_UNSUPPORTED naming every item, and defines nothing."""
    before = conn.listDefinedDomains()
    with pytest.raises(virtsnap.libvirtError) as err:
        conn.defineXML(xml)
    assert err.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED, str(err.value)
    for item in items:
        assert item in str(err.value), (item, str(err.value))
    assert conn.listDefinedDomains() == before


def test_uuid_boot_order_mac_videos_sound_address_apic_and_pae(conn, plain):
    """One paused QEMU: the <uuid> is QEMU's, <os><boot dev> is the machine's boot order, the MAC is the NIC's,
    the primary qxl has the heads/ram/vram/vgamem asked (the second is a secondary qxl), the sound card sits at
    its <address>, and the CPU has the APIC and PAE <features> name."""
    xml = plain.replace("</name>", f"</name><uuid>{UUID}</uuid>")
    xml = xml.replace("</type>", "</type><boot dev='network'/><boot dev='cdrom'/><boot dev='hd'/>")
    xml = xml.replace("52:54:00:12:34:56", "52:54:00:AB:cd:01")
    xml = _with(xml, features="<features><acpi/><apic/><pae/></features>", devices=(
        "<video><model type='qxl' ram='32768' vram='16384' vgamem='8192' heads='2' primary='yes'/></video>"
        "<video><model type='qxl' heads='3' primary='no'/></video>"
        "<sound model='ich6'><address type='pci' domain='0x0000' bus='0x00' slot='0x09' function='0x0'/></sound>"))
    with Running(conn, xml) as run:
        assert run.qmp("query-uuid")["UUID"] == UUID == run.dom.UUIDString()
        assert run.qom("/machine", "boot")["order"] == "ndc"
        assert run.qom("/machine/peripheral/net0", "mac") == "52:54:00:ab:cd:01"
        assert run.qom("/machine/peripheral/video0", "type") == "qxl-vga"
        assert run.qom("/machine/peripheral/video0", "max_outputs") == 2
        assert run.qom("/machine/peripheral/video0", "ram_size") == 32 << 20
        assert run.qom("/machine/peripheral/video0", "vram_size") == 16 << 20
        assert run.qom("/machine/peripheral/video0", "vgamem_mb") == 8
        assert run.qom("/machine/peripheral/video1", "type") == "qxl"
        assert run.qom("/machine/peripheral/video1", "max_outputs") == 3
        assert run.qom("/machine/peripheral/sound0", "addr") == 9 << 3  # devfn: slot 9, function 0
        assert run.qom(CPU, "apic") is True and run.qom(CPU, "pae") is True
    # libvirt puts the primary video first; one marked primary further down is refused, not made secondary
    refused(conn, _with(plain, devices="<video><model type='qxl'/></video><video><model type='qxl' primary='yes'/>"
                                       "</video>"), "video primary='yes' on <video> 2")


def test_cpu_match_check_migratable_and_fallback(conn, plain):
    """<cpu match='exact'> is the named model and nothing more (Westmere has no AVX, which TCG's maximum CPU
    has); check='none' lets QEMU leave out what TCG cannot give, check='partial' refuses to start such a CPU (as
    libvirt's check against the hypervisor does); migratable='on' is the maximum CPU's migratable set; a model
    QEMU lacks fails the start naming it, whatever the fallback (virtsnap has no CPU map to fall back with)."""
    def cpu(attrs: str, model: str = "", fallback: str = "forbid") -> str:
        inner = f"<model fallback='{fallback}'>{model}</model>" if model else ""
        return _with(plain, extra=f"<cpu {attrs}>{inner}</cpu>")

    with Running(conn, cpu("mode='custom' match='exact' check='none'", "Westmere", "allow")) as run:
        assert run.qom(CPU, "type") == "Westmere-x86_64-cpu"
        assert run.qom(CPU, "avx") is False
        assert run.qom(CPU, "enforce") is False
    with Running(conn, cpu("mode='custom' match='exact' check='partial'", "Westmere")) as run:
        assert run.qom(CPU, "type") == "Westmere-x86_64-cpu" and run.qom(CPU, "enforce") is True
    with Running(conn, cpu("mode='custom' match='exact' check='none'", "Cascadelake-Server")) as run:
        assert run.qom(CPU, "avx512f") is False  # asked by the model, not given by TCG: left out
    with Running(conn, cpu("mode='maximum' check='none' migratable='on'")) as run:
        assert run.qom(CPU, "type") == "max-x86_64-cpu"
        assert run.qom(CPU, "migratable") is True and run.qom(CPU, "avx") is True
    for xml, item in ((cpu("mode='custom' match='exact' check='partial'", "Cascadelake-Server"), "avx512f"),
                      (cpu("mode='custom' match='exact'", "NoSuchModel", "allow"), "NoSuchModel")):
        dom = conn.defineXML(xml)
        try:
            with pytest.raises(virtsnap.libvirtError, match=item) as err:
                dom.create()
            assert err.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_FAILED
            assert not dom.isActive()
        finally:
            dom.undefine()
    refused(conn, cpu("mode='custom' match='minimum'", "Westmere"), "match='minimum' of <domain/cpu>")
    refused(conn, cpu("mode='custom' check='full'", "Westmere"), "check='full' of <domain/cpu>")
    refused(conn, cpu("mode='maximum' migratable='off'"), "migratable='off' of <domain/cpu>")


def test_vcpu_placement_auto_is_refused(conn, plain):
    """placement='static' pins to the cpuset (test_topology_pinning_and_memfd_memory); 'auto' would ask numad,
    which virtsnap does not, so it is refused by name."""
    refused(conn, plain.replace("<vcpu>1</vcpu>", "<vcpu placement='auto'>1</vcpu>"),
            "placement='auto' of <domain/vcpu>")


def test_disk_io_modes_and_readonly_nodes(conn, workdir, plain):
    """io='io_uring' gives the disk's file node an io_uring (QEMU's fd), io='native' a Linux AIO context (its
    ring mapped into QEMU), <readonly/> read-only nodes; io='native' without O_DIRECT (cache none/directsync),
    which QEMU would fail on, is refused at define; a driver other than qemu is refused."""
    for name in ("b", "c"):
        qcow2(workdir / name)

    def second(target: str, driver: str, extra: str = "") -> str:
        return (f"<disk type='file' device='disk'><driver name='qemu' type='qcow2' {driver}/>"
                f"<source file='{workdir / target}'/><target dev='vd{target}' bus='virtio'/>{extra}</disk>")

    def held(pid: int) -> tuple[int, int]:
        rings = sum("io_uring" in target for target in held_files(pid))
        return rings, Path(f"/proc/{pid}/maps").read_text().count("/[aio]")

    with Running(conn, _with(plain, devices=second("b", "", "<readonly/>"))) as run:
        assert held(run.dom.ID()) == (0, 0)  # io threads: neither
        ro = {n["node-name"]: n["ro"] for n in run.qmp("query-named-block-nodes")}
        assert ro == {"drive-vda": False, "drive-vda-file": False, "drive-vdb": True, "drive-vdb-file": True}
    xml = _with(plain.replace("type='qcow2'/>", "type='qcow2' io='io_uring'/>", 1),
                devices=second("c", "cache='none' io='native'"))
    with Running(conn, xml) as run:
        assert held(run.dom.ID()) == (1, 1)
    refused(conn, _with(plain, devices=second("c", "io='native'")), "io='native'")
    refused(conn, plain.replace("name='qemu'", "name='tap'"), "name='tap' of <domain/devices/disk/driver>")


def test_serial_append_and_the_console_as_the_first_serial(conn, workdir, plain):
    """A serial file keeps what it held when append='on' and is emptied otherwise (as libvirt opens it); a
    serial <console> alone is the serial port its target names, with its own file and append; next to a <serial>
    it is that same port, not a second one (virsh dumpxml prints both); a console that differs from the serial it
    stands for, one on another port, or a second console is refused."""
    log = workdir / "serial.log"
    for append, kept in (("on", "earlier output\n"), ("off", ""), (None, "")):
        log.write_text("earlier output\n")
        attr = f" append='{append}'" if append else ""
        with Running(conn, _with(plain, devices=f"<serial type='file'><source path='{log}'{attr}/>"
                                                f"<target type='isa-serial' port='0'><model name='isa-serial'/>"
                                                "</target></serial>")) as run:
            assert {c["label"]: c["filename"] for c in run.qmp("query-chardev")}["serial0"] == "file"
            assert run.qtree().count("dev: isa-serial") == 1
        assert log.read_text() == kept, append
    log.write_text("earlier output\n")
    console = f"<console type='file'><source path='{log}' append='on'/><target type='serial' port='1'/></console>"
    with Running(conn, _with(plain, devices=console)) as run:
        qtree = run.qtree()
        assert qtree.count("dev: isa-serial") == 1 and "iobase = 760 (0x2f8)" in qtree  # COM2, its port
        assert str(log) in held_files(run.dom.ID())
    assert log.read_text() == "earlier output\n"
    pair = ("<serial type='pty'><target type='isa-serial' port='0'><model name='isa-serial'/></target></serial>"
            "<console type='pty'><target type='serial' port='0'/></console>")
    with Running(conn, _with(plain, devices=pair)) as run:
        assert run.qtree().count("dev: isa-serial") == 1
        assert sorted(c["label"] for c in run.qmp("query-chardev") if c["label"].startswith("serial")) == ["serial0"]
    refused(conn, _with(plain, devices="<serial type='pty'><target port='1'/></serial>" + console),
            "a serial <console> is the first <serial>")
    refused(conn, _with(plain, devices="<serial type='pty'/><console type='pty'><target type='serial' port='1'/>"
                                       "</console>"), "console target port '1'")
    refused(conn, _with(plain, devices=pair + "<console type='pty'><target type='serial'/></console>"),
            "only one <console>")


def test_per_disk_snapshot_default_is_what_create_does(conn, workdir, plain):
    """<disk snapshot='no'> leaves the disk out of a snapshot that lists no disks; snapshot='external' makes the
    snapshot of such a disk an external one (a new overlay becomes its source)."""
    qcow2(workdir / "b")
    disk_b = (f"<disk type='file' device='disk' snapshot='no'><driver name='qemu' type='qcow2'/>"
              f"<source file='{workdir / 'b'}'/><target dev='vdb' bus='virtio'/></disk>")
    dom = conn.defineXML(_with(plain, devices=disk_b))
    snap = dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>")
    assert image_tags(str(workdir / "disk")) == ["s1"] and image_tags(str(workdir / "b")) == []
    assert "<disk name='vdb' snapshot='no'/>" in snap.getXMLDesc()
    snap.delete()
    dom.undefine()
    dom = conn.defineXML(plain.replace("<disk type='file' device='disk'>",
                                       "<disk type='file' device='disk' snapshot='external'>"))
    snap = dom.snapshotCreateXML("<domainsnapshot><name>s2</name></domainsnapshot>")
    assert "snapshot='external'" in snap.getXMLDesc()
    assert image_tags(str(workdir / "disk")) == []
    source = dom.XMLDesc().split("<source file='")[1].split("'")[0]
    assert source != str(workdir / "disk") and Path(source).exists()
    info = subprocess.run(["qemu-img", "info", "-U", "--output=json", source], capture_output=True, text=True,
                          check=True).stdout
    assert f'"backing-filename": "{workdir / "disk"}"' in info


def test_spice_mouse_mode_and_gl(conn, plain):
    """<mouse mode='server'> turns SPICE's agent mouse off, 'client' leaves it on (QEMU 7.2 reports neither: the
    check is QEMU's command line, as for audio backends); <gl enable='no'> is QEMU's default, no GL, and
    enable='yes' (a render node virtsnap does not set up) is refused by name."""
    for mode, agent_mouse in (("server", b"agent-mouse=off"), ("client", b"agent-mouse=on")):
        xml = _with(plain, devices=f"<graphics type='spice' autoport='yes'><mouse mode='{mode}'/><gl enable='no'/>"
                                   "</graphics>")
        with Running(conn, xml) as run:
            assert run.qmp("query-spice")["enabled"]
            cmdline = Path(f"/proc/{run.dom.ID()}/cmdline").read_bytes().split(b"\0")
            spice = next(arg for arg in cmdline if b"disable-ticketing" in arg)
            assert agent_mouse in spice and b"gl=" not in spice
    refused(conn, _with(plain, devices="<graphics type='spice'><gl enable='yes'/></graphics>"),
            "enable='yes' of <domain/devices/graphics/gl>")
    refused(conn, _with(plain, devices="<graphics type='spice'><mouse mode='tablet'/></graphics>"),
            "mode='tablet' of <domain/devices/graphics/mouse>")


# -- booted guests ------------------------------------------------------------------------------------------------
@pytest.fixture
def loop_device(workdir):
    """A loop block device over a 16 MiB file that starts with a marker; detached at the end."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI must run as root")
        pytest.skip("a loop device needs root")
    backing = workdir / "loop.img"
    with backing.open("wb") as f:
        f.write(b"BLOCK-MARKER")
        f.truncate(16 << 20)
    dev = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "--detach", dev], check=False)


def test_read_only_block_device_console_file_and_on_reboot(guest, workdir, conn, loop_device):
    """A booted guest reads the host's block device (<disk type='block'><source dev>) and cannot write to it
    (<readonly/>: the kernel's ro flag, a write fails); its console (a serial <console> alone, file, append='on')
    is where its output lands, across starts. on_reboot='destroy': the guest's reboot ends the domain;
    on_reboot='restart': the guest reboots and the domain runs on (the same QEMU)."""
    console = workdir / "console.log"
    xml = domain_xml(guest, workdir, "reboots", memory_mib=128)
    xml = xml.replace(f"<serial type='file'><source path='{workdir / 'reboots.serial'}'/></serial>",
                      f"<console type='file'><source path='{console}' append='on'/>"
                      "<target type='serial' port='0'/></console>")
    xml = xml.replace("</devices>", "<disk type='block' device='disk'><driver name='qemu' type='raw'/>"
                                    f"<source dev='{loop_device}'/><target dev='vdb' bus='virtio'/><readonly/>"
                                    "</disk></devices>")
    dom = conn.defineXML(xml.replace("</devices>", "</devices><on_poweroff>destroy</on_poweroff>"
                                                   "<on_reboot>destroy</on_reboot>"))
    dom.create()
    rt = process.Runtime(Path(conn.driver.runtime) / dom.UUIDString())
    assert guest_read(conn, dom, "head -c 12 /dev/vdb") == "BLOCK-MARKER"
    assert guest_read(conn, dom, "cat /sys/block/vdb/ro").strip() == "1"
    written = guest_read(conn, dom, "echo changed | dd of=/dev/vdb conv=notrunc 2>&1; echo rc=$?")
    assert "rc=0" not in written, written
    assert Path(workdir / "loop.img").read_bytes()[:12] == b"BLOCK-MARKER"
    assert console.read_text().count("init: starting qemu-ga") == 1
    qemu = rt.pid()
    assert qemu is not None
    with agent_for(conn, dom) as agent:
        agent.execute("guest-shutdown", {"mode": "reboot"}, reply=False)
    assert process.wait_gone(qemu, 120)
    assert dom.state()[0] == virtsnap.VIR_DOMAIN_SHUTOFF
    dom.undefine()

    dom = conn.defineXML(xml.replace("</devices>", "</devices><on_reboot>restart</on_reboot>"))
    dom.create()
    rt = process.Runtime(Path(conn.driver.runtime) / dom.UUIDString())
    guest_read(conn, dom, "echo before > /ram/boot")
    qemu = rt.pid()
    with agent_for(conn, dom) as agent:
        agent.execute("guest-shutdown", {"mode": "reboot"}, reply=False)
    # the guest comes back in the same QEMU: /ram (guest memory only) is empty again
    assert guest_read(conn, dom, "cat /ram/boot 2>/dev/null; echo end").split() == ["end"]
    assert rt.pid() == qemu and dom.isActive()
    assert console.read_text().count("init: starting qemu-ga") == 3  # two boots of this start, one before
    dom.destroy()


def test_pcr_banks_sha384_and_sha512_and_on_poweroff(guest, workdir, conn):
    """<active_pcr_banks><sha384/><sha512/>: the guest's TPM has exactly those banks; on_poweroff='destroy':
    the guest's poweroff ends the domain (shut off, QEMU and swtpm gone)."""
    from .test_tpm import tpm_domain

    banks = "<active_pcr_banks><sha384/><sha512/></active_pcr_banks>"
    xml = tpm_domain(guest, workdir, "banks", banks=banks).replace("</devices>",
                                                                   "</devices><on_poweroff>destroy</on_poweroff>")
    dom = conn.defineXML(xml)
    dom.create()
    rt = process.Runtime(Path(conn.driver.runtime) / dom.UUIDString())
    found = guest_read(conn, dom, "ls /sys/class/tpm/tpm0/").split()
    assert sorted(b for b in found if b.startswith("pcr-")) == ["pcr-sha384", "pcr-sha512"]
    assert len(guest_read(conn, dom, "cat /sys/class/tpm/tpm0/pcr-sha512/0").strip()) == 128
    qemu, swtpm = rt.pid(), rt.swtpm_pid()
    assert qemu is not None and swtpm is not None
    with agent_for(conn, dom) as agent:
        agent.execute("guest-shutdown", reply=False)
    assert process.wait_gone(qemu, 120) and process.wait_gone(swtpm, 30)
    assert dom.state()[0] == virtsnap.VIR_DOMAIN_SHUTOFF
