"""The same snapshot scenario on the same kind of QEMU guest, run by libvirt 9.0 (libvirtd, qemu:///system)
and by virtsnap: after every step the snapshot tree, each snapshot's state, the current snapshot and the
domain state must agree."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import virtsnap

from .conftest import domain_xml

pytestmark = pytest.mark.qemu

# (operation, argument): the scenario, written once for both sides
SCENARIO = [
    ("create", "s1"), ("create", "s2"), ("revert", "s1"), ("create", "s3"),
    ("suspend", None), ("create", "s4"), ("resume", None), ("destroy", None), ("create", "s5"),
    ("revert", "s2"), ("create", "s6"), ("delete", "s1"), ("revert", "s4"), ("revert", "s5"),
    ("delete_children", "s3"), ("delete", "s6"),
]

RUNNER = r"""
import json, sys, libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
xml, scenario = sys.argv[1], json.loads(sys.argv[2])
conn = libvirt.open("qemu:///system")
dom = conn.defineXML(xml)
dom.create()
out = []
def observe():
    tree = [(s.getName(), s.getParent().getName() if _has_parent(s) else None, _state(s))
            for s in dom.listAllSnapshots(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)]
    current = dom.snapshotCurrent().getName() if dom.hasCurrentSnapshot() else None
    return {"tree": tree, "current": current, "state": dom.state()[0]}
def _has_parent(s):
    try:
        s.getParent(); return True
    except libvirt.libvirtError:
        return False
def _state(s):
    x = s.getXMLDesc(); return x.split("<state>")[1].split("</state>")[0]
try:
    for op, arg in scenario:
        if op == "create": dom.snapshotCreateXML("<domainsnapshot><name>%s</name></domainsnapshot>" % arg)
        elif op == "revert": dom.revertToSnapshot(dom.snapshotLookupByName(arg))
        elif op == "delete": dom.snapshotLookupByName(arg).delete(0)
        elif op == "delete_children": dom.snapshotLookupByName(arg).delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)
        else: getattr(dom, op)()
        out.append(observe())
finally:
    if dom.isActive(): dom.destroy()
    for s in dom.listAllSnapshots(): s.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
    dom.undefine()
print(json.dumps(out))
"""


def _observe(dom) -> dict:
    tree = []
    for snap in dom.listAllSnapshots(virtsnap.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL):
        try:
            parent = snap.getParent().getName()
        except virtsnap.libvirtError:
            parent = None
        state = snap.getXMLDesc().split("<state>")[1].split("</state>")[0]
        tree.append([snap.getName(), parent, state])
    current = dom.snapshotCurrent().getName() if dom.hasCurrentSnapshot() else None
    return {"tree": tree, "current": current, "state": dom.state()[0]}


def test_same_scenario_same_tree_states_and_current(guest, workdir, conn, libvirtd):
    # libvirt's QEMU runs as libvirt-qemu: give it its own copies where it may read and write.
    images = Path("/var/lib/libvirt/images/virtsnap-test")
    images.mkdir(parents=True, exist_ok=True)
    for name in ("kernel", "initrd"):
        shutil.copy(getattr(guest, name), images / name)
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", guest.data_template, str(images / "disk.qcow2")],
                   check=True)
    lv_xml = domain_xml(guest, workdir, name="virtsnap-oracle", agent=False)
    lv_xml = (lv_xml.replace(guest.kernel, str(images / "kernel")).replace(guest.initrd, str(images / "initrd"))
              .replace(str(workdir / "virtsnap-oracle.qcow2"), str(images / "disk.qcow2")))
    lv_xml = lv_xml.replace(f"<serial type='file'><source path='{workdir / 'virtsnap-oracle.serial'}'/></serial>",
                            "")
    proc = subprocess.run(["/usr/bin/python3", "-c", RUNNER, lv_xml, json.dumps(SCENARIO)], capture_output=True,
                          text=True, timeout=600, env={"PATH": "/usr/bin:/bin", "LIBVIRT_DEBUG": "4"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = json.loads(proc.stdout)

    dom = conn.defineXML(domain_xml(guest, workdir, agent=False))
    dom.create()
    ours = []
    for op, arg in SCENARIO:
        if op == "create":
            dom.snapshotCreateXML(f"<domainsnapshot><name>{arg}</name></domainsnapshot>")
        elif op == "revert":
            dom.revertToSnapshot(dom.snapshotLookupByName(arg))
        elif op == "delete":
            dom.snapshotLookupByName(arg).delete(0)
        elif op == "delete_children":
            dom.snapshotLookupByName(arg).delete(virtsnap.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)
        else:
            getattr(dom, op)()
        ours.append(_observe(dom))
    for step, (op, mine, libvirt_says) in enumerate(zip(SCENARIO, ours, theirs, strict=True)):
        libvirt_says["tree"] = [list(t) for t in libvirt_says["tree"]]
        assert mine == libvirt_says, f"step {step} {op}"
