"""External disk-only snapshots on a real TCG guest: overlays and backing chains, QUIESCE through the guest
agent (always thawed), REUSE_EXT, raw base images, offline creation, and refusals that change nothing."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

import virtsnap
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
