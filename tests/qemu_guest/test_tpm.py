"""The emulated TPM (<tpm><backend type='emulator'>) on a real TCG guest: swtpm runs beside QEMU and ends with
it (destroy, a guest poweroff, QEMU killed), its state is the domain's alone, and a PCR the guest extends after
an internal or an external memory snapshot is back to its old value after the revert."""

from __future__ import annotations

import os
import signal
import stat
import struct
from pathlib import Path

import pytest

import virtsnap
from virtsnap.drivers.qemu import process, tpm

from .conftest import agent_for, domain_xml, guest_read
from .test_confine import reachable_guest, sysconn  # noqa: F401 (fixtures)

pytestmark = pytest.mark.qemu

PCR = 16  # the debug PCR: nothing in the guest extends it but the test
ZERO = "0" * 64


def tpm_domain(guest, workdir: Path, name: str, model: str = "tpm-crb", banks: str = "") -> str:
    """The tiny guest with a TPM. The compressed kernel boots through the BIOS, whose ACPI tables announce the
    TPM (the CRB interface is found through ACPI only); the PVH kernel gets no usable ACPI tables."""
    xml = domain_xml(guest, workdir, name)
    xml = xml.replace(f"<kernel>{guest.kernel}</kernel>", f"<kernel>{guest.bzimage}</kernel>")
    xml = xml.replace("</os>", "</os><features><acpi/></features>")
    backend = f"<backend type='emulator' version='2.0'>{banks}</backend>"
    return xml.replace("</devices>", f"<tpm model='{model}'>{backend}</tpm></devices>")


def extend_script(pcr: int = PCR, digest: bytes = bytes(range(1, 33))) -> str:
    """A shell script that sends TPM2_PCR_Extend (SHA-256 bank, empty password session) to /dev/tpm0 and prints
    the response code; the command is raw bytes, written and answered on one open of the device."""
    session = struct.pack(">IHBH", 0x40000009, 0, 0, 0)  # TPM_RS_PW, no nonce, no attributes, empty password
    body = struct.pack(">II", pcr, len(session)) + session + struct.pack(">IH", 1, 0x000B) + digest
    command = struct.pack(">HII", 0x8002, 10 + len(body), 0x182) + body  # TPM_ST_SESSIONS, TPM_CC_PCR_Extend
    octal = "".join(f"\\{b:03o}" for b in command)
    return f"exec 3<>/dev/tpm0; printf '{octal}' >&3; dd bs=4096 count=1 <&3 2>/dev/null | od -An -tx1 -N10"


def pcr(conn, dom) -> str:
    return guest_read(conn, dom, f"cat /sys/class/tpm/tpm0/pcr-sha256/{PCR}").strip().lower()


def extend(conn, dom) -> str:
    response = guest_read(conn, dom, extend_script()).split()
    assert response[-4:] == ["00", "00", "00", "00"], response  # TPM_RC_SUCCESS
    return pcr(conn, dom)


def gone(pid: int) -> bool:
    """No such process, not even a zombie (swtpm is this process's child: stopping it reaps it)."""
    return not Path(f"/proc/{pid}").exists()


def runtime(conn, dom) -> process.Runtime:
    return process.Runtime(Path(conn.driver.runtime) / dom.UUIDString())


def test_tpm_state_comes_back_with_internal_and_external_memory_snapshots(guest, workdir, conn):
    banks = "<active_pcr_banks><sha1/><sha256/></active_pcr_banks>"
    dom = conn.defineXML(tpm_domain(guest, workdir, "tpm", banks=banks))
    dom.create()
    rt = runtime(conn, dom)
    swtpm = rt.swtpm_pid()
    assert swtpm is not None
    assert pcr(conn, dom) == ZERO
    # the definition's PCR banks are the ones the guest's TPM has
    assert guest_read(conn, dom, "ls /sys/class/tpm/tpm0/").split().count("pcr-sha1") == 1

    # the state is the domain's only: one owner-only directory, recorded in the ledger, no socket file anywhere
    state = Path(tpm.state_path(Path(conn.driver.state_dir), dom.UUIDString()))
    st = os.lstat(state)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
    for entry in state.iterdir():
        assert stat.S_IMODE(entry.lstat().st_mode) & 0o077 == 0, entry
    assert (state / tpm.STATE_FILE).exists()
    rows = [r for r in conn.driver.store.ledger(dom.UUIDString()) if r.purpose == tpm.PURPOSE]
    assert [r.path for r in rows] == [str(state)]
    sockets = [p.name for d in (state, Path(rt.directory)) for p in d.iterdir() if stat.S_ISSOCK(p.lstat().st_mode)]
    assert sorted(sockets) == ["agent.sock", "monitor-kept.sock", "monitor.sock"]

    dom.snapshotCreateXML("<domainsnapshot><name>internal</name></domainsnapshot>")
    extended = extend(conn, dom)
    assert extended != ZERO
    dom.revertToSnapshot(dom.snapshotLookupByName("internal"))
    assert pcr(conn, dom) == ZERO

    assert extend(conn, dom) == extended  # the same extend from the same value
    dom.snapshotCreateXML(f"<domainsnapshot><name>external</name><memory snapshot='external' "
                          f"file='{workdir}/external.mem'/><disks><disk name='vda' snapshot='external' "
                          f"file='{workdir}/external.qcow2'/></disks></domainsnapshot>")
    assert extend(conn, dom) not in (ZERO, extended)
    dom.revertToSnapshot(dom.snapshotLookupByName("external"))
    assert pcr(conn, dom) == extended
    assert rt.swtpm_pid() is not None and rt.swtpm_pid() != swtpm  # the revert started QEMU and swtpm anew

    # a --live memory snapshot (background-snapshot: the guest runs while its memory is written) as well
    twice = extend(conn, dom)
    dom.snapshotCreateXML(f"<domainsnapshot><name>live</name><memory snapshot='external' "
                          f"file='{workdir}/live.mem'/><disks><disk name='vda' snapshot='external' "
                          f"file='{workdir}/live.qcow2'/></disks></domainsnapshot>",
                          virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_LIVE)
    assert extend(conn, dom) != twice
    dom.revertToSnapshot(dom.snapshotLookupByName("live"))
    assert pcr(conn, dom) == twice

    # snapshot-check takes the recorded TPM state for the domain's own, not for an orphan
    assert [d for d in conn.driver.snapshot_check(dom.UUIDString(), 0) if str(state) in d.subject] == []
    last = rt.swtpm_pid()
    assert last is not None
    dom.destroy()
    assert rt.swtpm_pid() is None and gone(last)  # stopped before destroy returned


def test_swtpm_ends_with_qemu(guest, workdir, conn):
    dom = conn.defineXML(tpm_domain(guest, workdir, "tis", model="tpm-tis"))
    # QEMU killed from outside (a crash): swtpm sees its control channel close and ends by itself
    dom.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)
    rt = runtime(conn, dom)
    qemu, swtpm = rt.pid(), rt.swtpm_pid()
    assert qemu is not None and swtpm is not None
    os.kill(qemu, signal.SIGKILL)
    assert process.wait_gone(qemu, 30)
    assert process.wait_gone(swtpm, 30), "swtpm outlived a killed QEMU"
    assert not dom.isActive()

    # the guest powers itself off: QEMU exits, swtpm with it
    dom.create()
    swtpm = rt.swtpm_pid()
    assert swtpm is not None
    assert pcr(conn, dom) == ZERO  # tpm-tis found through ACPI too
    qemu = rt.pid()
    assert qemu is not None
    with agent_for(conn, dom) as agent:
        agent.execute("guest-shutdown", reply=False)
    assert process.wait_gone(qemu, 120)
    assert process.wait_gone(swtpm, 30), "swtpm outlived a QEMU that exited"

    # destroy: both gone when it returns
    dom.create()
    swtpm = rt.swtpm_pid()
    assert swtpm is not None
    dom.destroy()
    assert rt.swtpm_pid() is None and gone(swtpm)


def test_system_swtpm_runs_as_qemus_user(reachable_guest, workdir, sysconn):
    """qemu:///system: swtpm is confined like QEMU (its unprivileged user from the first instruction), the TPM
    state is that user's alone while the driver's state directory stays root's, and swtpm ends with QEMU."""
    from virtsnap.drivers.qemu.confine import qemu_user

    user = qemu_user(None)
    xml = domain_xml(reachable_guest, workdir, "systpm")
    dom = sysconn.defineXML(xml.replace("</devices>", "<tpm model='tpm-crb'><backend type='emulator' "
                                                      "version='2.0'/></tpm></devices>"))
    dom.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)
    rt = runtime(sysconn, dom)
    swtpm = rt.swtpm_pid()
    assert swtpm is not None
    status = {k: v.split() for k, _, v in (line.partition(":") for line in
                                           Path(f"/proc/{swtpm}/status").read_text().splitlines())}
    assert status["Uid"] == [str(user.uid)] * 4 and status["Gid"] == [str(user.gid)] * 4
    state = Path(tpm.state_path(Path(sysconn.driver.state_dir), dom.UUIDString()))
    st = os.lstat(state)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (user.uid, user.gid, 0o700)
    assert (state / tpm.STATE_FILE).stat().st_uid == user.uid  # swtpm_setup ran as that user too
    parent = os.lstat(state.parent)
    assert (parent.st_uid, stat.S_IMODE(parent.st_mode)) == (0, 0o700)
    dom.destroy()
    assert rt.swtpm_pid() is None and gone(swtpm)


def test_a_planted_state_directory_is_refused(guest, workdir, conn):
    """A symbolic link where the domain's TPM state directory goes (someone else's directory behind it) is
    refused at start: nothing runs, nothing there is created, chowned or chmodded."""
    dom = conn.defineXML(tpm_domain(guest, workdir, "planted"))
    state = Path(tpm.state_path(Path(conn.driver.state_dir), dom.UUIDString()))
    state.parent.mkdir(parents=True, exist_ok=True)
    victim = workdir / "victim"
    victim.mkdir(mode=0o755)
    state.symlink_to(victim)
    with pytest.raises(virtsnap.libvirtError) as err:
        dom.create()
    assert err.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_FAILED
    assert "is not a directory virtsnap made" in str(err.value)
    assert not dom.isActive() and list(victim.iterdir()) == [] and stat.S_IMODE(victim.stat().st_mode) == 0o755
    assert [r for r in conn.driver.store.ledger(dom.UUIDString()) if r.purpose == tpm.PURPOSE] == []


def test_undefine_removes_the_tpm_state_unless_kept(guest, workdir, conn):
    """As libvirt: undefine removes an emulated TPM's state; --keep-tpm keeps it, and a domain defined again
    with the same uuid gets the same TPM back; --tpm with --keep-tpm is refused, changing nothing."""
    xml = tpm_domain(guest, workdir, "gone")
    dom = conn.defineXML(xml)
    uuid = dom.UUIDString()
    state = Path(tpm.state_path(Path(conn.driver.state_dir), uuid))
    dom.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)
    dom.destroy()
    made = (state / tpm.STATE_FILE).read_bytes()
    with pytest.raises(virtsnap.libvirtError) as err:
        dom.undefineFlags(virtsnap.VIR_DOMAIN_UNDEFINE_TPM | virtsnap.VIR_DOMAIN_UNDEFINE_KEEP_TPM)
    assert err.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
    assert conn.lookupByUUIDString(uuid) and (state / tpm.STATE_FILE).exists()

    dom.undefineFlags(virtsnap.VIR_DOMAIN_UNDEFINE_KEEP_TPM)
    assert (state / tpm.STATE_FILE).read_bytes() == made
    (state / "kept").write_text("the same directory")
    again = conn.defineXML(xml.replace("<name>gone</name>", f"<name>gone</name><uuid>{uuid}</uuid>"))
    again.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)
    again.destroy()
    assert (state / "kept").exists() and (state / tpm.STATE_FILE).exists()  # the kept TPM, not a new one
    assert [r.path for r in conn.driver.store.ledger(uuid) if r.purpose == tpm.PURPOSE] == [str(state)]

    again.undefine()
    assert not state.exists()
    assert conn.driver.store.ledger(uuid) == []
