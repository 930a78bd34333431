"""Hostile overlay paths on the QEMU driver (shut-off domain: no guest needed): into virtsnap's own state
or runtime directories (directly or through a symlink), a dangling symlink, a symlink onto another domain's
image. Each is refused with a libvirt code before anything changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import virtsnap
from virtsnap import VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY as DISK_ONLY

from .conftest import domain_xml

pytestmark = pytest.mark.qemu


def snap_xml(path: str) -> str:
    return (f"<domainsnapshot><name>evil</name><disks><disk name='vda' snapshot='external'>"
            f"<source file='{path}'/></disk></disks></domainsnapshot>")


def test_hostile_overlay_paths_change_nothing(guest, workdir, conn):
    dom = conn.defineXML(domain_xml(guest, workdir))
    other = conn.defineXML(domain_xml(guest, workdir, name="other"))
    other_image = str(workdir / "other.qcow2")
    state = Path(conn.driver.state_dir)
    os.symlink(state, workdir / "to-state")
    os.symlink(workdir / "nowhere.qcow2", workdir / "dangling")
    os.symlink(other_image, workdir / "to-other")
    cases = {
        "state dir": (str(state / "x.qcow2"), "private directory"),
        "runtime dir": (str(Path(conn.driver.runtime) / other.UUIDString() / "x.qcow2"), "private directory"),
        "symlink into state dir": (str(workdir / "to-state" / "x.qcow2"), "private directory"),
        "dangling symlink": (str(workdir / "dangling"), "symbolic link"),
        "symlink onto another domain's image": (str(workdir / "to-other"), "symbolic link"),
    }
    before = (dom.XMLDesc(), os.listdir(workdir), os.path.getsize(other_image), os.listdir(state))
    for case, (path, why) in cases.items():
        with pytest.raises(virtsnap.libvirtError) as exc:
            dom.snapshotCreateXML(snap_xml(path), DISK_ONLY)
        assert exc.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED, case
        assert why in exc.value.get_error_message(), case
        assert (dom.XMLDesc(), os.listdir(workdir), os.path.getsize(other_image), os.listdir(state)) == before
        assert dom.snapshotNum() == 0 and not os.path.exists(workdir / "nowhere.qcow2")
    assert dom.snapshotCheck(0) == []
