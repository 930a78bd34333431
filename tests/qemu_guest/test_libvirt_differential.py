"""Seeded differential on a real libvirtd 9.0 (root, TCG, the tiny guest): the same operation sequence through
python3-libvirt on one domain and through virtsnap's libvirt+qemu:///system on an identical second domain gives
the same result, op by op (value or libvirt error code and message), and the same tree, current snapshot and
domain state after each op. Only operations libvirt 9.0 implements itself: internal snapshots (created,
reverted, deleted with every delete flag, running and shut off), lookups, lists and lifecycle. Fewer seeds and
ops than the test-driver differential: every op runs on a real guest."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import libvirt
import pytest

import virtsnap

from .conftest import domain_xml

pytestmark = pytest.mark.qemu

SEEDS = int(os.environ.get("VIRTSNAP_DIFF_LIBVIRTD_GUEST_SEEDS", "3"))
OPS = int(os.environ.get("VIRTSNAP_DIFF_LIBVIRTD_GUEST_OPS", "20"))
BASE = f"virtsnap-libvirt-diff-{os.getpid()}"
IMAGES = Path("/var/lib/libvirt/images") / BASE

REVERT_FLAGS = [0, 0, "VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING", "VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED", 3]
DELETE_FLAGS = [0, 0, "VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN", "VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY",
                "VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY"]


def generate(seed: int, count: int) -> list[dict]:
    """Ops for one seed; names are drawn from those the sequence made (now and then one that never exists)."""
    rng = random.Random(seed)
    ops: list[dict] = [{"op": "start"}]
    made = 0
    for _ in range(count):
        kind = rng.choice(["create", "create", "create", "revert", "revert", "delete", "delete", "parent",
                           "children", "lifecycle", "lookup"])
        names = [f"s{i}" for i in range(made)] if rng.random() > 0.15 else ["nosuch"]
        if kind == "create" or made == 0:
            ops.append({"op": "create", "name": f"s{made}"})
            made += 1
        elif kind in ("revert", "delete"):
            flags = rng.choice(REVERT_FLAGS if kind == "revert" else DELETE_FLAGS)
            ops.append({"op": kind, "name": rng.choice(names), "flags": flags})
        else:
            ops.append({"op": kind, "name": rng.choice(names)})
    return ops


def _flags(module, value) -> int:
    return getattr(module, value) if isinstance(value, str) else int(value)


def run(module, dom, op: dict, other_names: tuple[str, str]):
    """One op on one side: ('ok', value) or ('err', code, domain, message with the domain's name neutral)."""
    try:
        kind = op["op"]
        if kind == "start":
            return ("ok", dom.create())
        if kind == "create":
            return ("ok", dom.snapshotCreateXML(f"<domainsnapshot><name>{op['name']}</name></domainsnapshot>")
                    .getName())
        if kind == "revert":
            return ("ok", dom.revertToSnapshot(dom.snapshotLookupByName(op["name"]), _flags(module, op["flags"])))
        if kind == "delete":
            return ("ok", dom.snapshotLookupByName(op["name"]).delete(_flags(module, op["flags"])))
        if kind == "parent":
            return ("ok", dom.snapshotLookupByName(op["name"]).getParent().getName())
        if kind == "children":
            snap = dom.snapshotLookupByName(op["name"])
            return ("ok", sorted(snap.listChildrenNames(0)), snap.numChildren(0), snap.isCurrent())
        if kind == "lookup":
            return ("ok", dom.snapshotLookupByName(op["name"]).getName())
        if kind == "lifecycle":
            return ("ok", dom.destroy() if dom.isActive() else dom.create())
        raise AssertionError(kind)
    except (libvirt.libvirtError, virtsnap.libvirtError) as exc:
        message = (exc.get_error_message() or "").replace(other_names[0], "DOM").replace(other_names[1], "DOM")
        return ("err", exc.get_error_code(), exc.get_error_domain(), message)


def picture(dom) -> tuple:
    current = dom.snapshotCurrent().getName() if dom.hasCurrentSnapshot() else None
    tree = sorted((s.getName(), _parent(s)) for s in dom.listAllSnapshots())
    return tree, current, dom.state()[0]


def _parent(snap) -> str | None:
    try:
        return snap.getParent().getName()
    except (libvirt.libvirtError, virtsnap.libvirtError):
        return None


def define(guest, workdir: Path, name: str, conn) -> object:
    images = IMAGES / name
    images.mkdir(parents=True, exist_ok=True)
    for item in ("kernel", "initrd"):
        shutil.copy(getattr(guest, item), images / item)
    disk = images / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", guest.data_template, str(disk)], check=True)
    xml = domain_xml(guest, workdir, name=name, agent=False)
    xml = (xml.replace(guest.kernel, str(images / "kernel")).replace(guest.initrd, str(images / "initrd"))
           .replace(str(workdir / f"{name}.qcow2"), str(disk))
           .replace(f"<serial type='file'><source path='{workdir / (name + '.serial')}'/></serial>", ""))
    return conn.defineXML(xml)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_same_results_as_libvirt_python(seed, guest, workdir, libvirtd, monkeypatch):
    monkeypatch.setenv("VIRTSNAP_LIBVIRT_STATE_DIR", str(workdir / "state"))
    names = (f"{BASE}-{seed}-a", f"{BASE}-{seed}-b")
    direct = libvirt.open("qemu:///system")
    ours = virtsnap.open("libvirt+qemu:///system")
    try:
        theirs_dom = define(guest, workdir, names[0], direct)
        ours_dom = define(guest, workdir, names[1], ours)
        for i, op in enumerate(generate(seed, OPS)):
            expected = run(libvirt, theirs_dom, op, names)
            actual = run(virtsnap, ours_dom, op, names)
            assert actual == expected, f"seed {seed}, op #{i} {op}"
            assert picture(ours_dom) == picture(theirs_dom), f"seed {seed}, after op #{i} {op}"
    finally:
        for name in names:
            try:
                left = direct.lookupByName(name)
            except libvirt.libvirtError:
                continue
            if left.isActive():
                left.destroy()
            for snap in left.listAllSnapshots():
                snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
            left.undefine()
        direct.close()
        ours.close()
        shutil.rmtree(IMAGES, ignore_errors=True)
