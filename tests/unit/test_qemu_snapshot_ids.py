"""qcow2 snapshots have numeric IDs besides their names, and QEMU's apply and load look a snapshot up by ID
before name. A snapshot named "5" must never revert to another snapshot whose ID happens to be 5: the
offline revert applies by the snapshot's own ID, a name that already is an ID is refused at create, and a
load that QEMU would get wrong is refused before anything changes. (qemu-img on real images; no guest.)"""

from __future__ import annotations

import json
import subprocess

import pytest
from qemu_offline import define_offline

import virtsnap


def pattern(disk) -> str:
    out = subprocess.run(["qemu-io", "-r", "-c", "read -v 0 4", str(disk)], capture_output=True, text=True,
                         check=True).stdout
    return out.split()[1]  # the first byte, in hex


def tags(disk) -> list[str]:
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(disk)], capture_output=True,
                                     text=True, check=True).stdout)
    return [snap["name"] for snap in info.get("snapshots", [])]


def write(disk, byte: int) -> None:
    subprocess.run(["qemu-io", "-c", f"write -P {byte:#x} 0 4k", str(disk)], capture_output=True, check=True)


@pytest.fixture
def dom(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    conn, d, disk = define_offline(tmp_path, "ids", size="1M")
    yield d, disk
    conn.close()


def test_a_numeric_name_reverts_to_its_own_snapshot(dom):
    d, disk = dom
    for i, name in enumerate(["3", "a", "b", "c"]):  # "3" gets ID 1; "b" gets ID 3
        write(disk, 0x10 + i)
        d.snapshotCreateXML(f"<domainsnapshot><name>{name}</name></domainsnapshot>")
    write(disk, 0xff)
    d.revertToSnapshot(d.snapshotLookupByName("3"))
    assert pattern(disk) == "10"  # qemu-img snapshot -a 3 would have applied "b" (0x12)
    d.revertToSnapshot(d.snapshotLookupByName("b"))
    assert pattern(disk) == "12"


def test_a_name_that_is_another_snapshots_id_is_refused(dom):
    d, disk = dom
    d.snapshotCreateXML("<domainsnapshot><name>a</name></domainsnapshot>")  # ID 1
    with pytest.raises(virtsnap.libvirtError) as exc:
        d.snapshotCreateXML("<domainsnapshot><name>1</name></domainsnapshot>")
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    assert "is the ID of snapshot 'a'" in exc.value.get_error_message()
    assert d.snapshotListNames() == ["a"] and tags(disk) == ["a"]


def test_a_load_qemu_would_get_wrong_is_refused_before_any_change(dom):
    d, disk = dom
    for name in ("2", "a"):  # "2" has ID 1, "a" has ID 2: a load of "2" would load "a"
        subprocess.run(["qemu-img", "snapshot", "-c", name, str(disk)], check=True)
        d.snapshotCreateXML(
            f"<domainsnapshot><name>{name}</name><state>running</state><creationTime>1700000000</creationTime>"
            f"<memory snapshot='internal'/>"
            f"<disks><disk name='vda' snapshot='internal'/></disks>{d.XMLDesc()}</domainsnapshot>",
            virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
    with pytest.raises(virtsnap.libvirtError) as exc:
        d.revertToSnapshot(d.snapshotLookupByName("2"))
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_UNSUPPORTED
    assert "QEMU would load 'a' instead" in exc.value.get_error_message()
    assert not d.isActive() and not d.hasCurrentSnapshot()
