"""virtsnap's libvirt+qemu:///system driver on the tiny guest run by a real root libvirtd 9.0 (TCG): internal
snapshots created, listed, reverted and deleted through virtsnap, proved by a marker file on the disk and a value
in RAM (read through libvirt's guest agent channel), and checked against libvirt-python and the qcow2 tags."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu
import pytest

import virtsnap
import virtsnap.libvirt_qemu

from .conftest import domain_xml, image_tags, remove_with_libvirt

pytestmark = pytest.mark.qemu

# Per run: two runs on one host (the shared libvirtd) must not share a domain or an image
NAME = f"virtsnap-libvirt-driver-{os.getpid()}"
IMAGES = Path("/var/lib/libvirt/images") / NAME  # libvirt's QEMU runs as libvirt-qemu: its own copies


def agent(dom, command: str, arguments: dict | None = None) -> dict:
    """A guest agent command to a virtsnap domain, or to a python3-libvirt one (the oracle side of a test)."""
    cmd = json.dumps({"execute": command, **({"arguments": arguments} if arguments else {})})
    qemu: Any = libvirt_qemu if isinstance(dom, libvirt.virDomain) else virtsnap.libvirt_qemu
    return json.loads(qemu.qemuAgentCommand(dom, cmd, 30, 0))["return"]


def shell(dom, script: str) -> str:
    pid = agent(dom, "guest-exec", {"path": "/bin/sh", "arg": ["-c", script], "capture-output": True})["pid"]
    deadline = time.monotonic() + 60
    while True:  # guest-exec-status is how the agent reports an end: polled until then
        status = agent(dom, "guest-exec-status", {"pid": pid})
        if status["exited"]:
            break
        assert time.monotonic() < deadline, f"guest command did not end: {script}"
        time.sleep(0.1)
    assert status["exitcode"] == 0, status
    return base64.b64decode(status.get("out-data", "")).decode()


def wait_for_agent(dom) -> None:
    deadline = time.monotonic() + 180
    while True:
        try:
            agent(dom, "guest-ping")
            return
        except (libvirt.libvirtError, virtsnap.libvirtError):
            assert time.monotonic() < deadline, "the guest agent never answered"
            time.sleep(0.5)


@pytest.fixture
def libvirt_domain(guest, workdir, libvirtd):
    IMAGES.mkdir(parents=True, exist_ok=True)
    for name in ("kernel", "initrd"):
        shutil.copy(getattr(guest, name), IMAGES / name)
    disk = IMAGES / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", guest.data_template, str(disk)], check=True)
    xml = domain_xml(guest, workdir, name=NAME)
    xml = (xml.replace(guest.kernel, str(IMAGES / "kernel")).replace(guest.initrd, str(IMAGES / "initrd"))
           .replace(str(workdir / f"{NAME}.qcow2"), str(disk))
           .replace(f"<serial type='file'><source path='{workdir / (NAME + '.serial')}'/></serial>", ""))
    conn = virtsnap.open("libvirt+qemu:///system")
    dom = conn.defineXML(xml)
    yield conn, dom, str(disk)
    oracle = libvirt.open("qemu:///system")  # cleaned up with libvirt itself, whatever virtsnap did
    try:
        remove_with_libvirt(oracle, NAME)
    finally:
        oracle.close()
        conn.close()
        shutil.rmtree(IMAGES, ignore_errors=True)


def test_internal_snapshots_through_libvirtd(libvirt_domain):
    conn, dom, disk = libvirt_domain
    dom.create()
    wait_for_agent(dom)
    shell(dom, "echo disk-1 > /mnt/marker; echo ram-1 > /ram/value; sync")
    dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>")
    shell(dom, "echo disk-2 > /mnt/marker; echo ram-2 > /ram/value; sync")
    dom.snapshotCreateXML("<domainsnapshot><name>s2</name></domainsnapshot>")

    oracle = libvirt.openReadOnly("qemu:///system")
    theirs = oracle.lookupByName(NAME)
    assert sorted(dom.snapshotListNames()) == sorted(theirs.snapshotListNames()) == ["s1", "s2"]
    assert dom.snapshotLookupByName("s2").getParent().getName() == "s1"
    assert dom.snapshotCurrent().getName() == theirs.snapshotCurrent().getName() == "s2"
    assert sorted(image_tags(disk)) == ["s1", "s2"]
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "-f", "qcow2", "--output=json", disk],
                                     capture_output=True, text=True, check=True).stdout)
    vmstate = {s["name"]: s["vm-state-size"] for s in info["snapshots"]}
    assert dom.snapshotLookupByName("s1").getSize(0)["memory"] == vmstate["s1"] > 0  # the saved RAM, per qemu-img

    dom.revertToSnapshot(dom.snapshotLookupByName("s1"))
    wait_for_agent(dom)  # libvirt reconnects its agent channel after a revert: not always by the time it returns
    assert shell(dom, "cat /mnt/marker /ram/value").split() == ["disk-1", "ram-1"]
    assert theirs.snapshotCurrent().getName() == "s1"

    dom.snapshotLookupByName("s2").delete(0)
    assert dom.snapshotListNames() == theirs.snapshotListNames() == ["s1"]
    assert image_tags(disk) == ["s1"]

    # libvirt's own error, code, domain and message, for the same mistake through both
    with pytest.raises(virtsnap.libvirtError) as ours:
        dom.snapshotLookupByName("s2")
    with pytest.raises(libvirt.libvirtError) as direct:
        theirs.snapshotLookupByName("s2")
    assert ((ours.value.get_error_code(), ours.value.get_error_domain(), ours.value.get_error_message())
            == (direct.value.get_error_code(), direct.value.get_error_domain(), direct.value.get_error_message()))

    # snapshot-check: libvirt's metadata against the qcow2 tags (--repair: test_libvirt_check.py)
    assert dom.snapshotCheck() == []
    dom.destroy()
    subprocess.run(["qemu-img", "snapshot", "-c", "stray", disk], check=True)
    subprocess.run(["qemu-img", "snapshot", "-d", "s1", disk], check=True)
    found = [(d.kind, d.subject, d.repaired) for d in dom.snapshotCheck(0)]
    assert found == [("lost-snapshot", "s1", False), ("untracked-snapshot", "stray", False)]
    assert image_tags(disk) == ["stray"] and theirs.snapshotListNames() == ["s1"]  # nothing changed
    oracle.close()
