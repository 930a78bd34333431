"""External disk-only snapshots on a real TCG guest: overlays and backing chains, QUIESCE through the guest
agent (always thawed), REUSE_EXT, raw base images, offline creation, and refusals that change nothing."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

import virtsnap
from virtsnap.drivers.qemu.agent import Agent
from virtsnap import (
    VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY as DISK_ONLY,
)
from virtsnap import (
    VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE as QUIESCE,
)
from virtsnap import (
    VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT as REUSE_EXT,
)

from .conftest import agent_for, domain_xml, guest_read

pytestmark = pytest.mark.qemu


def chain(path) -> list[str]:
    out = subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "--output=json", str(path)],
                         capture_output=True, text=True, check=True)
    return [layer["filename"] for layer in json.loads(out.stdout)]


def disk_source(dom) -> str:
    xml = dom.XMLDesc()
    return xml.split("<source file='")[1].split("'")[0]


def files(workdir) -> set[str]:
    return {p.name for p in workdir.iterdir() if p.is_file()}


def test_disk_only_snapshot_of_running_guest_switches_to_an_overlay(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    with agent_for(conn, dom) as agent:
        agent.shell("echo before > /mnt/marker; sync")
    snap = dom.snapshotCreateXML("<domainsnapshot><name>ext1</name></domainsnapshot>", DISK_ONLY)
    overlay = workdir / "demo.ext1"  # libvirt's default name: the image name without its extension + snapshot
    assert overlay.exists() and disk_source(dom) == str(overlay)
    assert chain(overlay) == [str(overlay), str(workdir / "demo.qcow2")]
    xml = snap.getXMLDesc()
    assert "<state>disk-snapshot</state>" in xml and "<memory snapshot='no'/>" in xml
    assert f"<source file='{overlay}'/>" in xml
    assert f"<source file='{workdir / 'demo.qcow2'}'/>" in xml  # the embedded domain: the image before
    with agent_for(conn, dom) as agent:
        agent.shell("echo after > /mnt/marker; sync")
    assert guest_read(conn, dom, "cat /mnt/marker").strip() == "after"
    # The guest's writes after the snapshot go to the overlay; the base image is left as it was.
    dom.destroy()
    probe = subprocess.run(["qemu-img", "compare", "-U", str(workdir / "demo.qcow2"), str(overlay)],
                           capture_output=True, text=True)
    assert probe.returncode == 1  # the images differ: the base kept the state of the snapshot


def test_quiesced_snapshot_thaws_the_guest(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    agent_for(conn, dom).close()
    dom.snapshotCreateXML("<domainsnapshot><name>q1</name></domainsnapshot>", DISK_ONLY | QUIESCE)
    with agent_for(conn, dom) as agent:
        assert agent.execute("guest-fsfreeze-status") == "thawed"
    with pytest.raises(virtsnap.libvirtError) as info:
        dom.snapshotCreateXML("<domainsnapshot><name>q2</name></domainsnapshot>", QUIESCE)
    assert info.value.get_error_code() == 8 and "is required by flag" in info.value.get_error_message()


def test_quiesce_without_agent_is_refused_and_changes_nothing(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir, agent=False))
    dom.create()
    before = (files(workdir), dom.XMLDesc(), dom.snapshotNum())
    with pytest.raises(virtsnap.libvirtError) as info:
        dom.snapshotCreateXML("<domainsnapshot><name>q</name></domainsnapshot>", DISK_ONLY | QUIESCE)
    assert info.value.get_error_code() == 55 and "guest agent" in info.value.get_error_message()
    assert (files(workdir), dom.XMLDesc(), dom.snapshotNum()) == before


def test_existing_overlay_is_refused_unless_reused(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    target = workdir / "precreated.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(workdir / "demo.qcow2"),
                    str(target)], check=True)
    spec = (f"<domainsnapshot><name>r1</name><disks><disk name='vda' snapshot='external'>"
            f"<source file='{target}'/></disk></disks></domainsnapshot>")
    before = (files(workdir), dom.XMLDesc())
    with pytest.raises(virtsnap.libvirtError) as info:
        dom.snapshotCreateXML(spec, DISK_ONLY)
    assert info.value.get_error_code() == 67 and "already exists" in info.value.get_error_message()
    assert (files(workdir), dom.XMLDesc()) == before
    snap = dom.snapshotCreateXML(spec, DISK_ONLY | REUSE_EXT)
    assert disk_source(dom) == str(target) and "<state>shutoff</state>" in snap.getXMLDesc()


def test_offline_disk_only_on_a_raw_image_then_boots_from_the_overlay(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir, fmt="raw"))
    dom.create()
    with agent_for(conn, dom) as agent:
        agent.shell("echo on-raw > /mnt/marker; sync")
    dom.destroy()
    dom.snapshotCreateXML("<domainsnapshot><name>off</name></domainsnapshot>", DISK_ONLY)
    overlay = workdir / "demo.off"
    assert chain(overlay) == [str(overlay), str(workdir / "demo.raw")]
    assert "type='qcow2'" in dom.XMLDesc()
    dom.create()
    assert guest_read(conn, dom, "cat /mnt/marker").strip() == "on-raw"
    assert os.stat(overlay).st_mode & 0o077 == 0  # created private, with O_EXCL


def write(conn, dom, text: str) -> None:
    with agent_for(conn, dom) as agent:
        agent.shell(f"echo {text} > /mnt/marker; sync")


def test_revert_and_delete_external_snapshots_anywhere(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    write(conn, dom, "A")
    s1 = dom.snapshotCreateXML("<domainsnapshot><name>S1</name></domainsnapshot>", DISK_ONLY)
    write(conn, dom, "B")
    s2 = dom.snapshotCreateXML("<domainsnapshot><name>S2</name></domainsnapshot>", DISK_ONLY)
    write(conn, dom, "C")
    dom.destroy()

    dom.revertToSnapshot(s1)  # libvirt 9.0 refuses this; a disk-only snapshot reverts to shut off
    assert dom.state()[0] == 5 and s1.isCurrent()
    assert disk_source(dom) == str(workdir / "demo.S1-revert1")
    assert not (workdir / "demo.S2").exists()  # C's overlay: no snapshot needs it any more
    assert (workdir / "demo.S1").exists()  # S2's state: needed
    dom.create()
    assert guest_read(conn, dom, "cat /mnt/marker").strip() == "A"
    dom.destroy()

    dom.revertToSnapshot(s2, virtsnap.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING | virtsnap.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE)
    assert dom.state()[0] == 1 and not (workdir / "demo.S1-revert1").exists()
    assert guest_read(conn, dom, "cat /mnt/marker").strip() == "B"
    dom.destroy()

    s1.delete()  # non-leaf, offline: S1's overlay is merged into the base; S2 keeps working
    assert dom.snapshotListNames() == ["S2"]
    with pytest.raises(virtsnap.libvirtError) as exc:
        s2.getParent()  # S1 was a root: its child is a root now
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_NO_DOMAIN_SNAPSHOT
    assert not (workdir / "demo.S1").exists()
    assert chain(workdir / "demo.S2-revert1") == [str(workdir / "demo.S2-revert1"), str(workdir / "demo.qcow2")]
    assert f"<source file='{workdir / 'demo.qcow2'}'/>" in s2.getXMLDesc()
    dom.create()
    assert guest_read(conn, dom, "cat /mnt/marker").strip() == "B"
    dom.revertToSnapshot(s2, virtsnap.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING | virtsnap.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE)
    assert guest_read(conn, dom, "cat /mnt/marker").strip() == "B"

    # A running domain: deleting the current external snapshot commits the active overlay (block-commit).
    s3 = dom.snapshotCreateXML("<domainsnapshot><name>S3</name></domainsnapshot>", DISK_ONLY)
    write(conn, dom, "D")
    overlay = disk_source(dom)
    s3.delete()
    assert dom.state()[0] == 1 and not os.path.exists(overlay)
    assert guest_read(conn, dom, "cat /mnt/marker").strip() == "D"
    assert dom.snapshotListNames() == ["S2"]


def test_internal_snapshot_inside_an_overlay_is_never_lost(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    write(conn, dom, "base")
    ext = dom.snapshotCreateXML("<domainsnapshot><name>E</name></domainsnapshot>", DISK_ONLY)
    write(conn, dom, "inside")
    internal = dom.snapshotCreateXML("<domainsnapshot><name>I</name></domainsnapshot>")  # lives in demo.E
    before = (files(workdir), dom.XMLDesc(), dom.snapshotListNames())
    with pytest.raises(virtsnap.libvirtError) as info:
        ext.delete()  # while running: refused, as merging would destroy I
    assert info.value.get_error_code() == 84 and "I" in info.value.get_error_message()
    assert (files(workdir), dom.XMLDesc(), dom.snapshotListNames()) == before
    dom.destroy()
    # Shut off too: merging demo.E away would remove I, and copying the base into demo.E would rewrite only
    # demo.E's current layer: I, which reads its unchanged clusters through to the base, would then read
    # another file.
    before = (files(workdir), dom.XMLDesc(), dom.snapshotListNames())
    with pytest.raises(virtsnap.libvirtError) as info:
        ext.delete()
    assert info.value.get_error_code() == 84 and "I" in info.value.get_error_message()
    assert (files(workdir), dom.XMLDesc(), dom.snapshotListNames()) == before
    dom.revertToSnapshot(internal)
    assert guest_read(conn, dom, "sync; echo 3 > /proc/sys/vm/drop_caches; cat /mnt/marker").strip() == "inside"
    internal.delete()
    ext.delete()  # nothing lives in demo.E any more: it is merged into the base
    assert dom.snapshotNum() == 0 and files(workdir) == {"demo.qcow2", "demo.serial"}
    assert guest_read(conn, dom, "sync; echo 3 > /proc/sys/vm/drop_caches; cat /mnt/marker").strip() == "inside"


def test_a_live_overlay_keeps_the_disks_cache_mode(workdir, conn):
    """The overlay a disk-only snapshot of a running domain switches to is opened with the disk's block options
    (cache='none': O_DIRECT, as QEMU reports it); before, it had QEMU's defaults from then on."""
    from virtsnap.drivers.qemu.monitor import Monitor

    from .test_argv_injection import domain, qcow2

    qcow2(workdir / "disk")
    dom = conn.defineXML(domain("cached", workdir / "disk").replace("type='qcow2'/>", "type='qcow2' cache='none'/>"))
    dom.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)
    dom.snapshotCreateXML("<domainsnapshot><name>E</name></domainsnapshot>", DISK_ONLY)
    mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "view")
    try:
        nodes = {(n["file"], n["drv"]): n["cache"] for n in mon.execute("query-named-block-nodes")}
    finally:
        mon.close()
    overlay = disk_source(dom)
    assert nodes[(overlay, "qcow2")]["direct"] and nodes[(overlay, "file")]["direct"]
    assert nodes[(str(workdir / "disk"), "qcow2")]["direct"]


def test_internal_snapshot_behind_an_overlay_is_deleted_from_its_image(workdir, conn):
    """An internal snapshot taken before an external one keeps its tag in what is now an overlay's backing file:
    delete removes it there, not only from the current image (before, the metadata went and the tag stayed for
    good). While QEMU runs, the backing node is reopened read-write for QEMU's snapshot-delete and read-only
    after; a backing file QEMU opened by itself at a later start cannot be reopened, so that delete is refused
    and changes nothing, and succeeds with the domain shut off (qemu-img)."""
    from .conftest import image_tags
    from .test_argv_injection import domain, qcow2

    base = workdir / "disk"
    qcow2(base)
    dom = conn.defineXML(domain("behind", base).replace("type='qcow2'/>", "type='qcow2' cache='unsafe'/>"))
    dom.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)  # QEMU without a guest: snapshots need no boot

    def snap(name: str, flags: int = 0):
        return dom.snapshotCreateXML(f"<domainsnapshot><name>{name}</name></domainsnapshot>", flags)

    first = snap("I1")  # in the base
    snap("E1", DISK_ONLY)
    overlay = disk_source(dom)
    second = snap("I2")  # in E1's overlay, which E2 puts behind its own
    snap("E2", DISK_ONLY)
    assert chain(disk_source(dom))[1:] == [overlay, str(base)]
    assert (image_tags(str(base)), image_tags(overlay)) == (["I1"], ["I2"])
    first.delete()  # the base: the node QEMU opened at start
    second.delete()  # E1's overlay: the node virtsnap added, with the base behind it
    assert (image_tags(str(base)), image_tags(overlay)) == ([], [])
    assert dom.isActive() and dom.snapshotListNames() == ["E1", "E2"]
    from virtsnap.drivers.qemu.monitor import Monitor

    mon = Monitor(str(Path(conn.driver.runtime) / dom.UUIDString() / "monitor.sock"), "view")
    try:  # both backing nodes are read-only again, the overlay on top writable, all with the disk's cache mode
        nodes = [n for n in mon.execute("query-named-block-nodes") if n["drv"] == "qcow2"]
    finally:
        mon.close()
    assert {n["file"]: n["ro"] for n in nodes} == {str(base): True, overlay: True, disk_source(dom): False}
    assert all(n["cache"]["no-flush"] for n in nodes)
    third = snap("I3")
    snap("E3", DISK_ONLY)
    dom.destroy()
    dom.createWithFlags(virtsnap.VIR_DOMAIN_START_PAUSED)  # now QEMU opens the backing files by itself
    behind = chain(disk_source(dom))[1]
    before = (files(workdir), dom.XMLDesc(), dom.snapshotListNames(), image_tags(behind))
    with pytest.raises(virtsnap.libvirtError) as info:
        third.delete()
    assert info.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
    assert behind in info.value.get_error_message()
    assert (files(workdir), dom.XMLDesc(), dom.snapshotListNames(), image_tags(behind)) == before
    assert before[3] == ["I3"]
    dom.destroy()
    third.delete()
    assert image_tags(behind) == [] and dom.snapshotListNames() == ["E1", "E2", "E3"]
    assert chain(disk_source(dom))[1:] == [behind, overlay, str(base)]


def test_revert_whose_image_is_missing_changes_nothing(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir, agent=False))
    snap = dom.snapshotCreateXML("<domainsnapshot><name>S</name></domainsnapshot>", DISK_ONLY)
    os.rename(workdir / "demo.qcow2", workdir / "moved.qcow2")
    before = (files(workdir), dom.XMLDesc(), snap.isCurrent())
    with pytest.raises(virtsnap.libvirtError) as info:
        dom.revertToSnapshot(snap)
    assert info.value.get_error_code() == 55 and "missing" in info.value.get_error_message()
    assert (files(workdir), dom.XMLDesc(), snap.isCurrent()) == before
    os.rename(workdir / "moved.qcow2", workdir / "demo.qcow2")
    dom.create()  # still startable
    assert dom.state()[0] == 1


@pytest.mark.parametrize("live,held", [(True, True), (True, False), (False, False)],
                         ids=["live", "live-stop-first", "paused-save"])
def test_external_memory_snapshot_restores_ram_and_disk(guest, workdir, conn, live, held, monkeypatch):
    from virtsnap.drivers.qemu import migration

    if live and not held:  # the sequence kept for QEMU releases outside HOLDABLE_QEMU (8.2 and later)
        monkeypatch.setattr(migration, "HOLDABLE_QEMU", ((0, 0), (0, 0)))
    seen: list[list[dict]] = []
    pause_ms = migration.pause_ms
    monkeypatch.setattr(migration, "pause_ms", lambda events: seen.append(events) or pause_ms(events))
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    with agent_for(conn, dom) as agent:
        agent.shell("echo disk-1 > /mnt/marker; echo ram-1 > /ram/value; sync")
    memory = workdir / "mem.save"
    flags = virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_LIVE if live else 0
    snap = dom.snapshotCreateXML(f"<domainsnapshot><name>full</name><memory snapshot='external' file='{memory}'/>"
                                 "</domainsnapshot>", flags)
    assert dom.state()[0] == 1 and memory.exists() and memory.stat().st_mode & 0o077 == 0
    # One pause, in which the disks switched and the memory was captured: the guest never ran in between.
    assert [e["event"] for e in seen[0] if e["event"] in ("STOP", "RESUME")] == ["STOP", "RESUME"]
    xml = snap.getXMLDesc()
    assert "<state>running</state>" in xml and f"<memory snapshot='external' file='{memory}'/>" in xml
    with agent_for(conn, dom) as agent:
        agent.shell("echo disk-2 > /mnt/marker; echo ram-2 > /ram/value; sync")
    dom.revertToSnapshot(snap)  # QEMU restarted on fresh overlays and fed the memory file
    assert dom.state()[0] == 1
    assert guest_read(conn, dom, "cat /mnt/marker /ram/value").split() == ["disk-1", "ram-1"]
    dom.destroy()
    snap.delete()
    assert not memory.exists() and dom.snapshotNum() == 0
    dom.create()
    assert guest_read(conn, dom, "cat /mnt/marker").strip() == "disk-1"


def test_quiesce_with_a_hung_agent_changes_nothing_unless_fallback(guest, workdir, conn, monkeypatch):
    dom = conn.defineXML(domain_xml(guest, workdir))
    dom.create()
    with agent_for(conn, dom) as agent:
        agent.execute("guest-exec", {"path": "/bin/sh", "arg": ["-c", "kill -STOP $(pidof qemu-ga)"]})
    for _ in range(50):  # wait until the agent no longer answers (each probe waits up to 1 s)
        try:
            with Agent(str(Path(conn.driver.runtime) / dom.UUIDString() / "agent.sock"), timeout=1.0) as probe:
                probe.connect(time.monotonic() + 1.0)
        except virtsnap.libvirtError:
            break
    before = (files(workdir), dom.XMLDesc(), dom.snapshotNum())
    with pytest.raises(virtsnap.libvirtError) as info:
        dom.snapshotCreateXML("<domainsnapshot><name>q</name></domainsnapshot>", DISK_ONLY | QUIESCE)
    assert info.value.get_error_code() == 86 and "nothing was changed" in info.value.get_error_message()
    assert (files(workdir), dom.XMLDesc(), dom.snapshotNum()) == before
    monkeypatch.setenv("VIRTSNAP_QUIESCE_FALLBACK", "1")
    snap = dom.snapshotCreateXML("<domainsnapshot><name>q</name></domainsnapshot>", DISK_ONLY | QUIESCE)
    assert "crash-consistent: the guest could not be quiesced" in snap.getXMLDesc()


def pattern(path, byte: int, check: bool = False) -> bool:
    """Write (or check) a byte pattern at 40 MiB of an image with qemu-io; the domain never boots here."""
    op = "read" if check else "write"
    proc = subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"{op} -P {byte:#x} 40M 64k", str(path)],
                          capture_output=True, text=True)
    return proc.returncode == 0 and "Pattern verification failed" not in proc.stdout


def test_offline_branches_delete_by_rebase_and_each_branch_keeps_its_data(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir, agent=False))
    base = workdir / "demo.qcow2"
    assert pattern(base, 0x11)
    e1 = dom.snapshotCreateXML("<domainsnapshot><name>E1</name></domainsnapshot>", DISK_ONLY)
    assert pattern(disk_source(dom), 0x22)
    e2 = dom.snapshotCreateXML("<domainsnapshot><name>E2</name></domainsnapshot>", DISK_ONLY)
    assert pattern(disk_source(dom), 0x33)
    dom.revertToSnapshot(e1)
    assert pattern(disk_source(dom), 0x11, check=True)
    assert pattern(disk_source(dom), 0x44)
    e3 = dom.snapshotCreateXML("<domainsnapshot><name>E3</name></domainsnapshot>", DISK_ONLY)
    assert sorted(e1.listChildrenNames()) == ["E2", "E3"]
    e1.delete()  # two branches stand on E1's image: each is given its own copy, then nothing needs it
    assert sorted(dom.snapshotListNames()) == ["E2", "E3"]
    dom.revertToSnapshot(e2)
    assert pattern(disk_source(dom), 0x22, check=True)
    dom.revertToSnapshot(e3)
    assert pattern(disk_source(dom), 0x44, check=True)
    e2.delete(virtsnap.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)
    assert dom.snapshotListNames() == ["E3"] and pattern(disk_source(dom), 0x44, check=True)
    assert base.exists()  # the user's own image is never removed


def test_offline_delete_with_a_merge_target_on_a_read_only_mount_changes_nothing(guest, workdir, conn):
    ro = workdir / "ro"  # vdb's image; bind-mounted read-only for the refused delete (a mode bit stops no root)
    ro.mkdir()
    data = ro / "data.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(data), "64M"], check=True)
    xml = domain_xml(guest, workdir, agent=False).replace(
        "</disk>", f"</disk><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                   f"<source file='{data}'/><target dev='vdb' bus='virtio'/></disk>", 1)
    dom = conn.defineXML(xml)
    overlays = {d: workdir / f"E1-{d}.qcow2" for d in ("vda", "vdb")}
    disks = "".join(f"<disk name='{d}' snapshot='external'><source file='{p}'/></disk>" for d, p in overlays.items())
    e1 = dom.snapshotCreateXML(f"<domainsnapshot><name>E1</name><disks>{disks}</disks></domainsnapshot>", DISK_ONLY)
    assert pattern(overlays["vda"], 0x55) and pattern(overlays["vdb"], 0x66)
    bases = [workdir / "demo.qcow2", data]

    def sums() -> dict[str, str]:
        return {str(p): subprocess.run(["sha256sum", str(p)], capture_output=True, text=True, check=True).stdout
                for p in [*bases, *overlays.values()]}

    before = (sums(), dom.XMLDesc(), e1.getXMLDesc(), dom.snapshotListNames(), files(workdir))
    subprocess.run(["mount", "--bind", str(ro), str(ro)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        with pytest.raises(virtsnap.libvirtError) as refused:
            e1.delete()
    finally:
        subprocess.run(["umount", str(ro)], check=True)
    # vda's merge (which could be done) was not done either: a merge cannot be taken back
    assert (sums(), dom.XMLDesc(), e1.getXMLDesc(), dom.snapshotListNames(), files(workdir)) == before
    assert refused.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
    assert f"merge data into {data}, which cannot be written" in refused.value.get_error_message()
    e1.delete()  # the same delete once the file can be written: both overlays merged into their bases
    assert dom.snapshotListNames() == [] and disk_source(dom) == str(bases[0])
    assert f"<source file='{data}'/>" in dom.XMLDesc()
    assert pattern(bases[0], 0x55, check=True) and pattern(data, 0x66, check=True)
