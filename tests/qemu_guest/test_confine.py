"""qemu:///system confined as libvirt's: QEMU runs as an unprivileged user with the seccomp sandbox, its images are
handed to that user while it runs and back after, its sockets, log and pid file live in a root-owned 0700
directory, a DAC <seclabel> is honoured (others refused), and a LIVE snapshot is refused with the host setting
named where userfaultfd is denied to unprivileged users."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

import virtsnap
from virtsnap.drivers.qemu.argv import SANDBOX
from virtsnap.drivers.qemu.confine import qemu_user

from .conftest import domain_xml, guest_read

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module")
def reachable_guest(guest):
    """The tiny guest's kernel and initrd where an unprivileged QEMU can read them (root's cache is 0700)."""
    where = Path(tempfile.mkdtemp(prefix="vsg-", dir="/tmp"))
    os.chmod(where, 0o711)
    for name in ("kernel", "initrd"):
        shutil.copy(getattr(guest, name), where / name)
    yield SimpleNamespace(kernel=str(where / "kernel"), initrd=str(where / "initrd"), cmdline=guest.cmdline,
                          data_template=guest.data_template)
    shutil.rmtree(where)


@pytest.fixture
def sysconn(workdir, monkeypatch):
    os.chmod(workdir, 0o711)  # QEMU's user must reach the images (as for libvirt's qemu:///system)
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(workdir / "state"))
    c = virtsnap.open("qemu:///system")
    yield c
    for dom in c.listAllDomains():
        if dom.isActive():
            dom.destroy()
    c.close()


def owner(path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def ids(pid: int) -> dict[str, list[int]]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups", "Seccomp"):
            fields[key] = [int(v) for v in value.split()]
    return fields


def with_channel(xml: str, element: str) -> str:
    return xml.replace("</devices>", f"{element}</devices>")


def test_system_qemu_is_unprivileged_and_sandboxed(reachable_guest, workdir, sysconn):
    user = qemu_user(None)
    assert user.uid != 0
    image = workdir / "demo.qcow2"
    dom = sysconn.defineXML(domain_xml(reachable_guest, workdir))
    os.chmod(image, 0o640)
    before = {p: owner(p) for p in (image, reachable_guest.kernel, reachable_guest.initrd)}
    dom.create()
    pid = dom.ID()
    status = ids(pid)
    assert status["Uid"] == [user.uid] * 4 and status["Gid"] == [user.gid] * 4
    assert status["Seccomp"] == [2]  # filter mode: the sandbox is on
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert argv[argv.index(b"-sandbox") + 1] == SANDBOX.encode()
    assert b"-runas" not in argv  # never started as root: the user is set before QEMU's first instruction
    for path in before:  # handed over for the domain's lifetime
        assert owner(path)[:2] == (user.uid, user.gid), path
    runtime = Path(sysconn.driver.runtime) / dom.UUIDString()
    assert owner(runtime) == (0, 0, 0o700)
    for name in ("monitor.sock", "agent.sock", "qemu.pid", "qemu.log"):
        assert os.lstat(runtime / name).st_uid == 0, name
    # The confined QEMU still does everything snapshots need: the agent, an internal snapshot with memory,
    # an external overlay it opens itself (handed over first), a revert.
    assert guest_read(sysconn, dom, "echo one > /mnt/marker && sync && cat /mnt/marker").strip() == "one"
    dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>")
    overlay = workdir / "demo.ovl"
    dom.snapshotCreateXML(f"<domainsnapshot><name>e1</name><disks><disk name='vda' snapshot='external'>"
                          f"<source file='{overlay}'/></disk></disks></domainsnapshot>",
                          virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
    assert owner(overlay)[:2] == (user.uid, user.gid)
    assert guest_read(sysconn, dom, "echo two > /mnt/marker && sync && cat /mnt/marker").strip() == "two"
    dom.destroy()
    for path, was in before.items():  # handed back, mode included
        assert owner(path) == was, path
    assert owner(overlay)[:2] == (0, 0)
    # demo.qcow2 is e1's disk now: s1 cannot be applied to it until e1 is merged away
    with pytest.raises(virtsnap.libvirtError) as refused:
        dom.revertToSnapshot(dom.snapshotLookupByName("s1"), virtsnap.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING)
    assert "external snapshot 'e1'" in str(refused.value)
    dom.snapshotLookupByName("e1").delete()
    dom.revertToSnapshot(dom.snapshotLookupByName("s1"), virtsnap.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING)
    assert ids(sysconn.lookupByName("demo").ID())["Uid"][0] == user.uid
    assert guest_read(sysconn, dom, "cat /mnt/marker").strip() == "one"
    dom.destroy()
    assert owner(image) == before[image]


def test_existing_files_are_never_replaced(reachable_guest, workdir, sysconn):
    """A regular file at the agent socket path is left alone (QEMU used to unlink it); a serial file QEMU's user
    could not write is not truncated. Both refuse the start, and the images go back to their owner."""
    image = workdir / "demo.qcow2"
    precious = workdir / "precious"
    precious.write_text("data")
    xml = domain_xml(reachable_guest, workdir, agent=False)
    dom = sysconn.defineXML(with_channel(xml, f"<channel type='unix'><source mode='bind' path='{precious}'/>"
                                              "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>"))
    with pytest.raises(virtsnap.libvirtError) as exc:
        dom.create()
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
    assert precious.read_text() == "data" and stat.S_ISREG(os.lstat(precious).st_mode)
    assert not dom.isActive() and owner(image)[:2] == (0, 0)
    dom.undefine()

    # a dead socket someone else bound there (no one listens) is not virtsnap's to remove either
    rendezvous = workdir / "rendezvous"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(rendezvous))
    before = os.lstat(rendezvous)
    dom = sysconn.defineXML(with_channel(xml, f"<channel type='unix'><source mode='bind' path='{rendezvous}'/>"
                                              "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>"))
    with pytest.raises(virtsnap.libvirtError) as exc:
        dom.create()
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
    assert "did not create it" in exc.value.get_error_message()
    after = os.lstat(rendezvous)
    assert stat.S_ISSOCK(after.st_mode) and (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    assert not dom.isActive() and owner(image)[:2] == (0, 0)
    dom.undefine()

    serial = workdir / "demo.serial"  # the serial file domain_xml names
    serial.write_text("root's log")
    os.chmod(serial, 0o644)
    dom = sysconn.defineXML(domain_xml(reachable_guest, workdir))
    with pytest.raises(virtsnap.libvirtError) as exc:
        dom.create()
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_DENIED
    assert "not writable by QEMU's user" in exc.value.get_error_message()
    assert serial.read_text() == "root's log"
    assert not dom.isActive() and owner(image)[:2] == (0, 0)


def test_dac_seclabel_is_honoured_and_others_refused(reachable_guest, workdir, sysconn, monkeypatch):
    nobody = pwd.getpwnam("nobody")
    image = workdir / "demo.qcow2"
    xml = domain_xml(reachable_guest, workdir)
    label = f"<seclabel type='static' model='dac' relabel='yes'><label>+{nobody.pw_uid}:+{nobody.pw_gid}</label>" \
            "</seclabel>"
    dom = sysconn.defineXML(xml.replace("</devices>", "</devices>" + label))
    dom.create()
    assert ids(dom.ID())["Uid"] == [nobody.pw_uid] * 4
    assert owner(image)[:2] == (nobody.pw_uid, nobody.pw_gid)
    dom.destroy()
    assert owner(image)[:2] == (0, 0)
    # relabel='no': QEMU runs as the label's user and the files keep their owner (the user's own arrangement).
    os.chmod(image, 0o666)
    dom.undefine()
    dom = sysconn.defineXML(xml.replace("</devices>", "</devices>" + label.replace("'yes'", "'no'")))
    dom.create()
    assert ids(dom.ID())["Uid"] == [nobody.pw_uid] * 4
    assert owner(image) == (0, 0, 0o666)
    dom.destroy()
    dom.undefine()
    refused = {
        "<seclabel type='dynamic' model='selinux'/>": virtsnap.VIR_ERR_CONFIG_UNSUPPORTED,
        "<seclabel type='none'/>": virtsnap.VIR_ERR_CONFIG_UNSUPPORTED,
        "<seclabel type='static' model='dac'><label>+0:+0</label></seclabel>": virtsnap.VIR_ERR_CONFIG_UNSUPPORTED,
        "<seclabel type='static' model='dac'><label>no-such-user:x</label></seclabel>":
            virtsnap.VIR_ERR_CONFIG_UNSUPPORTED,
        "<seclabel type='static' model='dac'><imagelabel>x</imagelabel></seclabel>":
            virtsnap.VIR_ERR_CONFIG_UNSUPPORTED,
    }
    for element, code in refused.items():
        with pytest.raises(virtsnap.libvirtError) as exc:
            sysconn.defineXML(xml.replace("</devices>", "</devices>" + element))
        assert exc.value.get_error_code() == code, element
    # qemu:///session runs QEMU as the caller: a seclabel there is refused, not ignored.
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(workdir / "session-state"))
    session = virtsnap.open("qemu:///session")
    with pytest.raises(virtsnap.libvirtError) as exc:
        session.defineXML(xml.replace("<name>demo</name>", "<name>s</name>").replace("</devices>",
                                                                                       "</devices>" + label))
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    session.close()


def test_live_snapshot_follows_the_host_userfaultfd_setting(reachable_guest, workdir, sysconn):
    dom = sysconn.defineXML(domain_xml(reachable_guest, workdir))
    dom.create()
    guest_read(sysconn, dom, "true")
    memory, overlay = workdir / "mem", workdir / "ovl"
    xml = (f"<domainsnapshot><name>live</name><memory snapshot='external' file='{memory}'/><disks>"
           f"<disk name='vda' snapshot='external'><source file='{overlay}'/></disk></disks></domainsnapshot>")
    allowed = Path("/proc/sys/vm/unprivileged_userfaultfd").read_text().strip() == "1"
    if allowed:
        dom.snapshotCreateXML(xml, virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_LIVE)
        assert dom.snapshotNum() == 1 and memory.exists()
    else:  # refused before any change, naming the host setting; QEMU never runs as root to get it
        with pytest.raises(virtsnap.libvirtError) as exc:
            dom.snapshotCreateXML(xml, virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_LIVE)
        assert exc.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_UNSUPPORTED
        assert "vm.unprivileged_userfaultfd=1" in exc.value.get_error_message()
        assert dom.snapshotNum() == 0 and not memory.exists() and not overlay.exists()
        assert ids(dom.ID())["Uid"][0] != 0
        dom.snapshotCreateXML(xml)  # without LIVE it works confined
        assert dom.snapshotNum() == 1 and memory.exists()


def test_the_agent_socket_of_a_killed_run_is_removed_at_the_next_start(reachable_guest, workdir, sysconn):
    """The one socket that may be removed is the one virtsnap bound and recorded: after QEMU is killed, the
    next start replaces it, and a clean stop removes it."""
    path = workdir / "agent.sock"
    xml = domain_xml(reachable_guest, workdir, agent=False)
    dom = sysconn.defineXML(with_channel(xml, f"<channel type='unix'><source mode='bind' path='{path}'/>"
                                              "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>"))
    dom.create()
    os.kill(dom.ID(), signal.SIGKILL)
    dom.create() if not dom.isActive() else pytest.fail("a killed QEMU still counts as running")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.connect(str(path))  # the new QEMU's agent socket listens there
    dom.destroy()
    assert not os.path.lexists(path)
    dom.undefine()
