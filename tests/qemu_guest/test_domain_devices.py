"""The virt-install devices beyond the first table rows, seen through QEMU's own view of a paused QEMU: SPICE
(query-spice, and a SPICE client's login with and without the password), its spicevmc channel and USB
redirection (query-chardev, info qtree), sound cards and their audio backends, ICH9 USB companions, Hyper-V
and CPU properties (qom-get), topology (query-cpus-fast), pinning (the kernel's affinity of QEMU's threads)
and the memfd memory backend (query-memdev)."""

from __future__ import annotations

import os
import re
import socket
import struct
from pathlib import Path

import pytest

import virtsnap
from virtsnap.drivers.qemu.monitor import Monitor

from .test_argv_injection import domain, qcow2
from .test_confine import reachable_guest, sysconn  # noqa: F401 (fixtures)
from .test_domain_table import _with

pytestmark = pytest.mark.qemu

SPICE_SET = ("<controller type='usb' model='qemu-xhci' ports='15'/>"
             "<channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>"
             "<graphics type='spice' autoport='yes'><listen type='address'/><image compression='off'/></graphics>"
             "<audio id='1' type='spice'/><sound model='ich9'/>"
             "<redirdev bus='usb' type='spicevmc'/><redirdev bus='usb' type='spicevmc'/>")


@pytest.fixture
def plain(workdir):
    qcow2(workdir / "disk")
    return domain("devices", workdir / "disk")


class Running:
    """A defined domain started paused, with a monitor on it; destroyed and undefined on exit."""

    def __init__(self, conn, xml: str) -> None:
        self.conn, self.dom = conn, conn.defineXML(xml)
        try:
            self.dom.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)
        except BaseException:
            self.dom.undefine()
            raise
        self.mon = Monitor(str(Path(conn.driver.runtime) / self.dom.UUIDString() / "monitor.sock"), "view")

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        self.mon.close()
        self.dom.destroy()
        self.dom.undefine()

    def qmp(self, command: str, args: dict | None = None):
        return self.mon.execute(command, args) if args else self.mon.execute(command)

    def qom(self, path: str, prop: str):
        return self.qmp("qom-get", {"path": path, "property": prop})

    def qtree(self) -> str:
        return self.mon.hmp("info", "qtree")


def spice_login(address: tuple[str, int] | str, password: str) -> int:
    """A SPICE client's link to the main channel with ticket authentication: the server's link error code
    (0: logged in, 7: permission denied). The ticket is the password with its NUL, RSA-OAEP encrypted with
    the key the server sends, as spice-gtk does it."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(address)
        mess = struct.pack("<IBBIII", 0, 1, 0, 0, 0, 18)  # connection 0, main channel 0, no capabilities
        sock.sendall(b"REDQ" + struct.pack("<III", 2, 2, len(mess)) + mess)

        def read(n: int) -> bytes:
            data = b""
            while len(data) < n:
                chunk = sock.recv(n - len(data))
                assert chunk, "the SPICE server closed the link"
                data += chunk
            return data

        magic, major, _minor, size = struct.unpack("<4sIII", read(16))
        assert (magic, major) == (b"REDQ", 2)
        reply = read(size)
        (link_error,) = struct.unpack("<I", reply[:4])
        assert link_error == 0
        key = serialization.load_der_public_key(reply[4:166])
        ticket = key.encrypt(password.encode() + b"\0",  # type: ignore[union-attr]
                             padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
        sock.sendall(ticket)
        return int(struct.unpack("<I", read(4))[0])


def test_spice_set_reaches_qemu(conn, plain):
    """virt-install's SPICE guest: display on localhost at the first free port, no password, the agent's
    spicevmc port, two USB redirection channels, an ICH9 HD audio card playing to the SPICE audio backend."""
    with Running(conn, _with(plain, devices=SPICE_SET, machine="q35")) as run:
        spice = run.qmp("query-spice")
        assert spice["enabled"] and spice["host"] == "127.0.0.1" and spice["port"] >= 5900
        assert spice["auth"] == "none"
        assert spice_login(("127.0.0.1", spice["port"]), "anything") == 0
        chardevs = {c["label"]: c["filename"] for c in run.qmp("query-chardev")}
        assert {"charchannel0", "charredir0", "charredir1"} <= set(chardevs)
        qtree = run.qtree()
        assert 'name = "com.redhat.spice.0"' in qtree
        assert qtree.count("dev: usb-redir") == 2 and 'chardev = "charredir1"' in qtree
        assert 'dev: ich9-intel-hda, id "sound0"' in qtree
        assert 'dev: hda-duplex, id "sound0-codec0"' in qtree and 'audiodev = "audio1"' in qtree
        cmdline = Path(f"/proc/{run.dom.ID()}/cmdline").read_bytes().split(b"\0")
        assert b'{"driver": "spice", "id": "audio1"}' in cmdline  # 7.2 has no query-audiodevs


def test_spice_password_comes_through_a_secret_not_argv(conn, plain):
    from virtsnap.drivers.qemu.devices import free_port

    password = "s3cret,with=options"
    port = free_port("127.0.0.1", 6100)  # a fixed port, as written in the XML
    xml = _with(plain, devices=f"<graphics type='spice' port='{port}' autoport='no' passwd='{password}'>"
                               "<listen type='address' address='127.0.0.1'/></graphics>")
    with Running(conn, xml) as run:
        spice = run.qmp("query-spice")
        assert spice["port"] == port and spice["auth"] == "spice"
        assert spice_login(("127.0.0.1", port), "wrong") == 7  # SPICE_LINK_ERR_PERMISSION_DENIED
        assert spice_login(("127.0.0.1", port), password) == 0
        assert password.encode() not in Path(f"/proc/{run.dom.ID()}/cmdline").read_bytes()
        assert password not in run.dom.XMLDesc()  # libvirt's rule: only with VIR_DOMAIN_XML_SECURE
        assert password.encode() not in (Path(conn.driver.runtime) / run.dom.UUIDString() / "qemu.log").read_bytes()


def test_spice_on_a_unix_socket(conn, plain):
    xml = _with(plain, devices="<graphics type='spice'><listen type='socket'/><clipboard copypaste='no'/>"
                               "<filetransfer enable='no'/><mouse mode='client'/><gl enable='no'/></graphics>")
    with Running(conn, xml) as run:
        path = Path(conn.driver.runtime) / run.dom.UUIDString() / "spice.sock"
        assert run.qmp("query-spice")["enabled"]
        assert spice_login(str(path), "") == 0
        cmdline = Path(f"/proc/{run.dom.ID()}/cmdline").read_bytes().split(b"\0")
        spice = next(arg for arg in cmdline if b"unix=on" in arg)
        assert b"disable-copy-paste=on" in spice and b"disable-agent-file-xfer=on" in spice
    assert not path.exists()


def test_spice_pieces_are_refused_where_they_cannot_apply(conn, plain):
    cases = {
        "<channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>": "need a SPICE display",
        "<graphics type='spice'><listen type='socket' socket='/etc/x.sock'/></graphics>": "attribute 'socket'",
        "<graphics type='spice' tlsPort='5902'/>": "tlsPort='5902'",
        "<graphics type='vnc'><listen type='socket'/></graphics>": "type='socket'",
        "<graphics type='vnc'><image compression='off'/></graphics>": "graphics/image> (SPICE only)",
        "<graphics type='spice'/><redirdev bus='usb' type='spicevmc'/>": "needs a USB controller",
        "<graphics type='spice'/><sound model='sb16'/>": "model='sb16'",
        "<audio id='1' type='none'/><sound model='ich6'><audio id='2'/></sound>": "audio id '2'",
        "<sound model='ac97'><codec type='duplex'/></sound>": "only an HDA one",
        "<controller type='usb' index='0' model='ich9-uhci1'><master startport='0'/></controller>":
            "needs an ich9-ehci1",
    }
    for devices, message in cases.items():
        with pytest.raises(virtsnap.libvirtError, match=re.escape(message)) as err:
            conn.defineXML(_with(plain, devices=devices))
        assert err.value.get_error_code() in (virtsnap.VIR_ERR_CONFIG_UNSUPPORTED, virtsnap.VIR_ERR_XML_ERROR)
    assert conn.listAllDomains() == []


@pytest.mark.parametrize("model", ["ich6", "ac97"])
def test_sound_models(conn, plain, model):
    codec = "<codec type='micro'/>" if model == "ich6" else ""
    xml = _with(plain, devices=f"<audio id='3' type='none'/><sound model='{model}'>{codec}<audio id='3'/></sound>")
    with Running(conn, xml) as run:
        qtree = run.qtree()
        device = {"ich6": "intel-hda", "ac97": "AC97"}[model]
        assert f'dev: {device}, id "sound0"' in qtree
        assert 'audiodev = "audio3"' in qtree
        if model == "ich6":
            assert 'dev: hda-micro, id "sound0-codec0"' in qtree


def test_ich9_ehci_with_uhci_companions(conn, plain):
    usb = ("<controller type='usb' index='0' model='ich9-ehci1'/>"
           + "".join(f"<controller type='usb' index='0' model='ich9-uhci{n}'><master startport='{2 * (n - 1)}'/>"
                     "</controller>" for n in (1, 2, 3))
           + "<input type='tablet' bus='usb'/>")
    with Running(conn, _with(plain, devices=usb)) as run:
        qtree = run.qtree()
        assert 'dev: ich9-usb-ehci1, id "usb"' in qtree
        for n in (1, 2, 3):
            assert f"dev: ich9-usb-uhci{n}," in qtree
        assert qtree.count('masterbus = "usb.0"') == 3
        assert "firstport = 4 (0x4)" in qtree
        assert 'dev: usb-tablet, id "input0"' in qtree


def test_hyperv_kvm_hidden_and_hypervclock(conn, plain):
    """virt-install's Windows set (relaxed, vapic, spinlocks 8191, hypervclock) and the rest TCG can take."""
    features = ("<features><acpi/><apic/><hyperv mode='custom'><relaxed state='on'/><vapic state='on'/>"
                "<spinlocks state='on' retries='8191'/><runtime state='on'/><reset state='on'/>"
                "<frequencies state='on'/><reenlightenment state='on'/><vendor_id state='on' value='KVMKVMKVM'/><synic state='off'/></hyperv>"
                "<kvm><hidden state='on'/></kvm></features>")
    clock = "<clock offset='localtime'><timer name='hypervclock' present='yes'/></clock>"
    with Running(conn, _with(plain, features=features, extra=clock)) as run:
        cpu = "/machine/unattached/device[0]"
        for prop in ("hv-relaxed", "hv-vapic", "hv-runtime", "hv-reset", "hv-frequencies", "hv-reenlightenment", "hv-time"):
            assert run.qom(cpu, prop) is True, prop
        assert run.qom(cpu, "hv-synic") is False
        assert run.qom(cpu, "hv-spinlocks") == 8191
        assert run.qom(cpu, "hv-vendor-id") == "KVMKVMKVM"
        assert run.qom(cpu, "kvm") is False


def test_hyperv_that_tcg_cannot_do_is_refused_by_name(conn, plain):
    features = ("<features><hyperv><vpindex state='on'/><synic state='on'/><stimer state='on'/>"
                "<ipi state='on'/><tlbflush state='on'/><evmcs state='on'/><relaxed state='on'/></hyperv>"
                "<apic eoi='on'/></features>")
    with pytest.raises(virtsnap.libvirtError) as err:
        conn.defineXML(_with(plain, features=features, extra="<cpu mode='host-model'/>"))
    assert err.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    for item in ("hyperv/vpindex>", "hyperv/synic>", "hyperv/stimer>", "hyperv/ipi>", "hyperv/tlbflush>",
                 "hyperv/evmcs>", "eoi='on'",
                 "mode='host-model'"):
        assert item in str(err.value), item
    assert "relaxed" not in str(err.value)
    with pytest.raises(virtsnap.libvirtError, match="stimer/direct"):
        conn.defineXML(_with(plain, features="<features><hyperv><stimer state='off'><direct state='on'/></stimer>"
                                             "</hyperv></features>", extra=""))
    with pytest.raises(virtsnap.libvirtError, match=r"<domain/features/hap>"):
        conn.defineXML(_with(plain, features="<features><hap state='on'/></features>"))


def test_topology_pinning_and_memfd_memory(conn, plain):
    cpus = sorted(os.sched_getaffinity(0))
    xml = _with(plain.replace("<vcpu>1</vcpu>", f"<vcpu placement='static' cpuset='{cpus[-1]}'>4</vcpu>"),
                extra="<cpu mode='maximum'><topology sockets='2' dies='1' cores='2' threads='1'/></cpu>"
                      "<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>")
    with Running(conn, xml) as run:
        vcpus = run.qmp("query-cpus-fast")
        assert sorted((c["props"]["socket-id"], c["props"]["core-id"]) for c in vcpus) == \
            [(0, 0), (0, 1), (1, 0), (1, 1)]
        for c in vcpus:
            status = Path(f"/proc/{run.dom.ID()}/task/{c['thread-id']}/status").read_text()
            assert f"Cpus_allowed_list:\t{cpus[-1]}\n" in status
        assert os.sched_getaffinity(run.dom.ID()) == {cpus[-1]}
        memdevs = run.qmp("query-memdev")
        assert [(m["id"], m["size"], m["share"]) for m in memdevs] == [("pc.ram", 64 << 20, True)]
        assert run.qom("/objects/pc.ram", "type") == "memory-backend-memfd"


def test_vcpu_current_and_libvirts_default_topology(conn, plain):
    """<vcpu current='1'>3</vcpu>: one vCPU present, three possible; without <topology> each vCPU is a socket
    of its own, as libvirt writes -smp (QEMU 7.2's own default would make them cores of one socket)."""
    with Running(conn, plain.replace("<vcpu>1</vcpu>", "<vcpu current='1'>3</vcpu>")) as run:
        assert len(run.qmp("query-cpus-fast")) == 1
        assert len(run.qmp("query-hotpluggable-cpus")) == 3
    with Running(conn, plain.replace("<vcpu>1</vcpu>", "<vcpu>2</vcpu>")) as run:
        assert sorted((c["props"]["socket-id"], c["props"]["core-id"]) for c in run.qmp("query-cpus-fast")) == \
            [(0, 0), (1, 0)]
    with pytest.raises(virtsnap.libvirtError, match="vcpu current '4' is not a number from 1 to 3"):
        conn.defineXML(plain.replace("<vcpu>1</vcpu>", "<vcpu current='4'>3</vcpu>"))


@pytest.mark.parametrize("cpuset, message", [("1-", "not N, N-M or ^N"), ("0,^0", "names no CPU"),
                                             ("a", "not N, N-M or ^N"), ("0-4096", "below 4096")])
def test_bad_cpuset_and_topology_are_refused(conn, plain, cpuset, message):
    with pytest.raises(virtsnap.libvirtError, match=re.escape(message)):
        conn.defineXML(plain.replace("<vcpu>1</vcpu>", f"<vcpu cpuset='{cpuset}'>1</vcpu>"))
    with pytest.raises(virtsnap.libvirtError, match="does not match the 1 vCPUs"):
        conn.defineXML(_with(plain, extra="<cpu><model>qemu64</model><topology sockets='2' cores='1' "
                                          "threads='1'/></cpu>"))
    assert conn.listAllDomains() == []


def test_i686_runs_on_its_own_qemu(conn, plain):
    xml = _with(plain.replace("arch='x86_64'", "arch='i686'"), devices="<emulator>/usr/bin/qemu-system-i386</emulator>")
    with Running(conn, xml) as run:
        assert run.qmp("query-target")["arch"] == "i386"
        assert os.path.basename(os.readlink(f"/proc/{run.dom.ID()}/exe")) == "qemu-system-i386"


def test_emulator_must_be_the_qemu_virtsnap_runs(conn, plain, workdir, monkeypatch):
    with Running(conn, _with(plain, devices="<emulator>/usr/bin/qemu-system-x86_64</emulator>")) as run:
        assert run.qmp("query-target")["arch"] == "x86_64"
    with pytest.raises(virtsnap.libvirtError, match="<emulator> '/usr/libexec/qemu-kvm' is not supported"):
        conn.defineXML(_with(plain, devices="<emulator>/usr/libexec/qemu-kvm</emulator>"))
    with pytest.raises(virtsnap.libvirtError, match="for arch='x86_64'"):
        conn.defineXML(_with(plain, devices="<emulator>/usr/bin/qemu-system-i386</emulator>"))
    bin_dir = workdir / "bin"  # a host where only qemu-system-x86_64 is installed
    bin_dir.mkdir()
    (bin_dir / "qemu-system-x86_64").symlink_to("/usr/bin/qemu-system-x86_64")
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(virtsnap.libvirtError, match="arch='i686' runs on qemu-system-i386, which is not installed") \
            as err:
        conn.defineXML(plain.replace("arch='x86_64'", "arch='i686'"))
    assert err.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    with pytest.raises(virtsnap.libvirtError, match="arch='aarch64'"):
        conn.defineXML(plain.replace("arch='x86_64'", "arch='aarch64'"))
    assert conn.listAllDomains() == []


def test_each_refusal_item_is_one_the_corpus_check_can_take_out(conn, plain):
    """The refusals of these rows use the table's item forms: once taken out, the document passes the table."""
    from .test_corpus import _items, _strip

    xml = _with(plain,
                devices="<graphics type='vnc' tlsPort='5901'><listen type='socket'/><image compression='off'/>"
                        "</graphics><sound/><redirdev bus='usb' type='tcp'/>",
                features="<features><hyperv mode='passthrough'><vpindex state='on'/><stimer state='off'>"
                         "<direct state='on'/></stimer><vendor_id state='on' value='x y'/>"
                         "<spinlocks state='on' retries='10'/></hyperv><apic eoi='on'/></features>",
                extra="<cpu mode='host-model'/><memoryBacking><access mode='shared'/></memoryBacking>")
    with pytest.raises(virtsnap.libvirtError) as err:
        conn.defineXML(xml)
    items = _items(str(err.value), table_only=True)
    assert len(items) >= 12, items
    conn.defineXML(_strip(xml, items)).undefine()


def test_a_guest_with_these_devices_boots_snapshots_and_reverts(guest, workdir, conn):
    """A booted guest with the SPICE set, sound, Hyper-V, topology, pinning and memfd RAM: a memory snapshot
    (QEMU saves each device's state) and its in-place revert bring the disk marker and the RAM value back."""
    from .conftest import domain_xml, guest_read
    from .test_internal_snapshots import snap_xml, write_markers

    cpu = sorted(os.sched_getaffinity(0))[0]
    xml = _with(domain_xml(guest, workdir).replace("<vcpu>1</vcpu>", f"<vcpu cpuset='{cpu}'>2</vcpu>"),
                devices=SPICE_SET,
                features="<features><acpi/><apic/><hyperv><relaxed state='on'/><vapic state='on'/>"
                         "<spinlocks state='on' retries='8191'/></hyperv></features>",
                extra="<cpu mode='maximum'><topology sockets='1' dies='1' cores='2' threads='1'/></cpu>"
                      "<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>")
    dom = conn.defineXML(xml)
    dom.create()
    try:
        write_markers(conn, dom, "disk-1", "ram-1")
        s1 = dom.snapshotCreateXML(snap_xml("s1"))
        write_markers(conn, dom, "disk-2", "ram-2")
        pid = dom.ID()
        dom.revertToSnapshot(s1)
        assert dom.ID() == pid
        assert guest_read(conn, dom, "cat /mnt/marker /ram/value; nproc").split() == ["disk-1", "ram-1", "2"]
    finally:
        dom.destroy()


def test_spice_password_under_qemu_system(reachable_guest, workdir, sysconn):
    """Under qemu:///system QEMU runs unprivileged and sandboxed: it still reads the password from the memfd
    virtsnap passed (its own /proc/self/fd), and the display asks for it."""
    from .conftest import domain_xml

    xml = _with(domain_xml(reachable_guest, workdir), devices="<graphics type='spice' autoport='yes' passwd='pw1'/>")
    dom = sysconn.defineXML(xml)
    dom.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)
    try:
        mon = Monitor(str(Path(sysconn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "view")
        try:
            spice = mon.execute("query-spice")
        finally:
            mon.close()
        assert spice["auth"] == "spice"
        assert spice_login(("127.0.0.1", spice["port"]), "wrong") == 7
        assert spice_login(("127.0.0.1", spice["port"]), "pw1") == 0
        assert Path(f"/proc/{dom.ID()}/status").read_text().count("Uid:\t0\t") == 0  # not root
    finally:
        dom.destroy()
