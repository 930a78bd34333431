"""No domain XML string reaches QEMU's option parser: the reproduced injections (a MAC carrying romfile=, an agent
channel path carrying logfile=, name, machine and target carrying extra properties) and a property test that feeds
',' '=' newlines, leading '-' and unicode into every string that reaches the command line, then asks QEMU itself
(query-name, query-block, qom-list, query-chardev, HMP info qtree) whether anything the XML did not ask for exists.

QEMU starts with no guest to run (no kernel, a blank disk) except in the kernel test, which boots nothing either:
each example stops as soon as QEMU has been asked.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import virtsnap
from virtsnap.drivers.qemu.monitor import Monitor

pytestmark = pytest.mark.qemu

MAC = "52:54:00:12:34:56"
# Pieces of hostile strings: QemuOpts' separators and escapes, option-looking text, a newline, unicode.
FRAGMENTS = [",", "=", "\n", "-", "é", "€", "\u202e", " ", "x", ",,", "'", '"', ",romfile=x", ",logfile=x",
             ",readonly=on", ",id=e", ",debug-threads=on", ",process=evil", ",file.locking=off"]
hostile = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=3).map("".join)


def esc(text: str) -> str:
    """Text for an XML attribute or element, newlines included (as character references)."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
            .replace("'", "&apos;").replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;"))


def qcow2(path: Path) -> None:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "--", str(path), "16M"], check=True)


def domain(name: str, disk: Path, serial: Path | None = None, agent: Path | None = None, mac: str = MAC,
           machine: str = "pc", target: str = "vda", cdrom_target: str | None = None,
           kernel: str | None = None, cmdline: str | None = None) -> str:
    os_extra = ""
    if kernel:
        os_extra += f"<kernel>{esc(kernel)}</kernel>"
    if cmdline is not None:
        os_extra += f"<cmdline>{esc(cmdline)}</cmdline>"
    devices = (f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{esc(str(disk))}'/>"
               f"<target dev='{esc(target)}' bus='virtio'/></disk>")
    if cdrom_target:
        devices += f"<disk type='file' device='cdrom'><target dev='{esc(cdrom_target)}' bus='ide'/></disk>"
    if agent is not None:
        devices += (f"<channel type='unix'><source mode='bind' path='{esc(str(agent))}'/>"
                    "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>")
    if serial is not None:
        devices += f"<serial type='file'><source path='{esc(str(serial))}'/></serial>"
    devices += f"<interface type='user'><mac address='{esc(mac)}'/><model type='virtio'/></interface>"
    return (f"<domain type='qemu'><name>{esc(name)}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
            f"<os><type arch='x86_64' machine='{esc(machine)}'>hvm</type>{os_extra}</os>"
            f"<devices>{devices}</devices></domain>")


def qemu_view(conn, dom) -> dict:
    """What QEMU itself reports about the running domain."""
    uuid = dom.UUIDString()
    mon = Monitor(str(Path(conn.driver.runtime) / uuid / "monitor.sock"), "view")
    try:
        pid = dom.ID()
        return {
            "name": mon.execute("query-name").get("name"),
            "blocks": {b["qdev"].split("/")[3] if b["qdev"].startswith("/machine/peripheral/") else b["qdev"]:
                       (b.get("inserted") or {}).get("file") for b in mon.execute("query-block")},
            "nodes": sorted((n["node-name"], n["ro"], n["drv"]) for n in mon.execute("query-named-block-nodes")),
            "peripherals": sorted(p["name"] for p in mon.execute("qom-list", {"path": "/machine/peripheral"})
                                  if p["type"].startswith("child<")),
            "anonymous": sorted(p["type"] for p in mon.execute("qom-list", {"path": "/machine/peripheral-anon"})
                                if p["type"].startswith("child<")),
            "chardevs": sorted(c["label"] for c in mon.execute("query-chardev")),
            "qtree": mon.hmp("info", "qtree"),
            "netdevs": mon.hmp("info", "network"),
            "comm": Path(f"/proc/{pid}/comm").read_text().strip(),
            "kernel": mon.execute("qom-get", {"path": "/machine", "property": "kernel"}),
            "append": mon.execute("qom-get", {"path": "/machine", "property": "append"}),
        }
    finally:
        mon.close()


def run_and_view(conn, xml: str) -> dict | virtsnap.libvirtError:
    """Define and start the domain and return QEMU's view, or the libvirt error that refused it (then nothing
    runs and nothing is defined)."""
    before = {d.name() for d in conn.listAllDomains()}
    try:
        dom = conn.defineXML(xml)
    except virtsnap.libvirtError as exc:
        assert {d.name() for d in conn.listAllDomains()} == before
        return exc
    try:
        try:
            dom.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)  # asked before the firmware runs
        except virtsnap.libvirtError as exc:
            assert not dom.isActive()
            return exc
        return qemu_view(conn, dom)
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefine()


@pytest.fixture
def baseline(conn, workdir):
    """QEMU's view of the same domain with plain strings everywhere."""
    base = workdir / "base"
    base.mkdir()
    qcow2(base / "disk")
    view = run_and_view(conn, domain("plain", base / "disk", base / "serial", base / "agent"))
    assert isinstance(view, dict), view
    return view


def same_devices(view: dict, baseline: dict) -> None:
    for key in ("nodes", "peripherals", "anonymous", "chardevs", "qtree", "netdevs", "comm", "kernel", "append"):
        assert view[key] == baseline[key], key


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile, disk_name=hostile, serial_name=hostile, agent_name=hostile, mac_tail=st.sampled_from(
    ["", ",romfile=x", ",x", "\n", "-", ",id=e"]))
def test_hostile_strings_reach_qemu_as_data(conn, workdir, baseline, name, disk_name, serial_name, agent_name,
                                            mac_tail):
    example = Path(tempfile.mkdtemp(dir=workdir))
    for sub in ("d", "s", "a"):
        (example / sub).mkdir()
    disk, serial, agent = example / "d" / disk_name, example / "s" / serial_name, example / "a" / agent_name
    qcow2(disk)
    view = run_and_view(conn, domain(name, disk, serial, agent, mac=MAC + mac_tail))
    if isinstance(view, virtsnap.libvirtError):
        # Refused: only for what cannot be data (a control character in a name or path, which an XML attribute
        # does not keep; a MAC that is not a MAC; a socket path longer than unix sockets allow); one line, a code.
        message = view.get_error_message()
        assert "\n" not in message
        assert ("\n" in name + disk_name + serial_name + agent_name or "\u202e" in name or mac_tail
                or len(str(agent).encode()) >= 108), message
    else:
        assert not mac_tail
        assert view["name"] == name
        assert view["blocks"] == {"vda": str(disk)}
        same_devices(view, baseline)
        assert stat.S_ISREG(os.stat(serial).st_mode)
    assert sorted(p.name for p in example.rglob("*")) == sorted(
        ["d", "s", "a", disk_name] + ([serial_name] if serial.exists() else []))  # nothing else was made
    shutil.rmtree(example)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kernel_name=hostile, cmdline=hostile)
def test_hostile_kernel_path_and_cmdline_are_data(conn, workdir, guest, kernel_name, cmdline):
    example = Path(tempfile.mkdtemp(dir=workdir))
    kernel = example / kernel_name
    kernel.symlink_to(guest.kernel)
    qcow2(example / "disk")
    view = run_and_view(conn, domain("k", example / "disk", kernel=str(kernel), cmdline=cmdline))
    if "\n" in kernel_name:  # a control character in a path is refused
        assert isinstance(view, virtsnap.libvirtError)
        assert view.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    else:
        assert isinstance(view, dict), view
        assert view["kernel"] == str(kernel) and view["append"] == cmdline
    shutil.rmtree(example)


# -- the findings as reported -----------------------------------------------------------------------------------
def test_mac_with_romfile_is_refused(conn, workdir):
    secret = workdir / "secret"
    secret.write_text("host data the guest must not see")
    qcow2(workdir / "disk")
    for mac in (f"{MAC},romfile={secret}", "52:54:00:12:34", "01:00:5e:00:00:01", "52-54-00-12-34-56"):
        view = run_and_view(conn, domain("mac", workdir / "disk", mac=mac))
        assert isinstance(view, virtsnap.libvirtError), mac
        assert view.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    view = run_and_view(conn, domain("mac", workdir / "disk", mac=MAC.upper()))
    assert isinstance(view, dict)
    assert f'mac = "{MAC}"' in view["qtree"] and 'romfile = "efi-virtio.rom"' in view["qtree"]
    assert str(secret) not in view["qtree"]


def test_agent_path_with_logfile_creates_no_log(conn, workdir):
    victim = workdir / "victim"
    victim.write_text("precious")
    agent = Path(f"{workdir}/X,logfile={victim}")  # as QemuOpts would read it: path=.../X and logfile=victim
    agent.parent.mkdir(parents=True)
    qcow2(workdir / "disk")
    dom = conn.defineXML(domain("chan", workdir / "disk", agent=agent))
    dom.create()
    try:
        assert stat.S_ISSOCK(os.lstat(agent).st_mode)  # the socket is at the path as written
        assert victim.read_text() == "precious"
    finally:
        dom.destroy()
    assert victim.read_text() == "precious"


def test_name_with_options_is_just_a_name(conn, workdir, baseline):
    qcow2(workdir / "disk")
    for name in ("vm,process=evil", "vm,debug-threads=on", "-vm,,guest=x"):
        view = run_and_view(conn, domain(name, workdir / "disk", workdir / "serial", workdir / "agent"))
        assert isinstance(view, dict), view
        assert view["name"] == name and view["comm"] == baseline["comm"]
        (workdir / "serial").unlink()


def test_machine_and_targets_with_options_are_refused(conn, workdir):
    qcow2(workdir / "disk")
    cases = [{"machine": "pc,dump-guest-core=on"}, {"machine": "pc,accel=kvm"}, {"machine": "no-such-machine"},
             {"machine": "-pc"}, {"target": "vda,serial=evil"}, {"target": "vda\n"}, {"target": "VDA"},
             {"cdrom_target": "hdc,drive=drive-vda"}, {"cdrom_target": "hdc,bootindex=1"}]
    for case in cases:
        view = run_and_view(conn, domain("m", workdir / "disk", **case))
        assert isinstance(view, virtsnap.libvirtError), case
        assert view.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED, case
        assert "\n" not in view.get_error_message()
    view = run_and_view(conn, domain("m", workdir / "disk", machine="pc-i440fx-7.2", cdrom_target="hdc"))
    assert isinstance(view, dict)
    assert view["peripherals"] == ["hdc", "net0", "vda"]


def test_disk_path_with_options_is_one_file(conn, workdir):
    disk = workdir / "d,file.locking=off,read-only=on.qcow2"
    qcow2(disk)
    view = run_and_view(conn, domain("p", disk))
    assert isinstance(view, dict)
    assert view["blocks"]["vda"] == str(disk)
    assert ("drive-vda", False, "qcow2") in view["nodes"]


def test_vnc_listen_port_and_password_are_honoured(conn, workdir):
    """<graphics> as written: QEMU listens where the XML says, and asks for the password, which never appears
    on its command line; what QEMU's -vnc parser could misread is refused."""
    qcow2(workdir / "disk")
    plain = domain("vnc", workdir / "disk")
    graphics = "<graphics type='vnc' port='6543' autoport='no' listen='127.0.0.1' passwd='s3cret,to=9'/>"
    dom = conn.defineXML(plain.replace("</devices>", graphics + "</devices>"))
    dom.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)
    try:
        mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "vnc")
        try:
            vnc = mon.execute("query-vnc")
        finally:
            mon.close()
        assert (vnc["enabled"], vnc["host"], vnc["service"], vnc["auth"]) == (True, "127.0.0.1", "6543", "vnc")
        assert b"s3cret" not in Path(f"/proc/{dom.ID()}/cmdline").read_bytes()
    finally:
        dom.destroy()
        dom.undefine()
    dom = conn.defineXML(plain.replace("</devices>", "<graphics type='vnc' autoport='yes'>"
                                       "<listen type='address' address='::1'/></graphics></devices>"))
    dom.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)
    try:
        mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "vnc")
        try:
            vnc = mon.execute("query-vnc")
        finally:
            mon.close()
        assert (vnc["host"], vnc["auth"]) == ("::1", "none") and int(vnc["service"]) >= 5900
    finally:
        dom.destroy()
        dom.undefine()
    for bad in ("<graphics type='vnc' listen='0.0.0.0,password=off'/>", "<graphics type='vnc' port='80'/>",
                "<graphics type='vnc' port='5901,to=99'/>", "<graphics type='vnc'><listen type='network' "
                "network='default'/></graphics>", "<graphics type='spice' autoport='no' port='5901,to=99'/>"):
        view = run_and_view(conn, plain.replace("</devices>", bad + "</devices>"))
        assert isinstance(view, virtsnap.libvirtError), bad
        assert view.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED, bad


def test_hmp_takes_plain_words_only(conn, workdir):
    """HMP splits at spaces and reads quotes: a part that is not one plain word is refused, never sent."""
    qcow2(workdir / "disk")
    dom = conn.defineXML(domain("hmp", workdir / "disk"))
    dom.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)
    try:
        mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "hmp")
        try:
            for args in (("info", "status\nquit"), ("info", "status quit"), ("info", '"x'), ("info", "")):
                with pytest.raises(virtsnap.libvirtError) as exc:
                    mon.hmp(*args)
                assert exc.value.get_error_code() == virtsnap.VIR_ERR_INVALID_ARG
            assert "paused" in mon.hmp("info", "status")
        finally:
            mon.close()
        assert dom.isActive()
    finally:
        dom.destroy()
