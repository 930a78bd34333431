"""The qcow2 metadata reader (drivers/qemu/qcow2.py) on images qemu-img and qemu-io wrote with known content,
checked against what `qemu-img snapshot -d` really frees (it discards freed clusters: the file's allocation
drops), and against hostile images; then getSize, protection and prune through the QEMU driver, offline."""

from __future__ import annotations

import os
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qemu_offline import define_offline

import virtsnap
from virtsnap.drivers.qemu import qcow2

MiB = 1 << 20
CLUSTER = 64 * 1024


def qemu_io(path, command) -> None:
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, str(path)], check=True, capture_output=True)


def qemu_img(*args) -> None:
    subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True)


def allocated(path) -> int:
    return os.stat(path).st_blocks * 512


@pytest.fixture
def image(tmp_path):
    """4 MiB written, snapshot s1, the first 2 MiB overwritten, snapshot s2, 1 MiB written elsewhere."""
    path = tmp_path / "k.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", path, "64M")
    qemu_io(path, "write -P 0xaa 0 4M")
    qemu_img("snapshot", "-c", "s1", path)
    qemu_io(path, "write -P 0xbb 0 2M")
    qemu_img("snapshot", "-c", "s2", path)
    qemu_io(path, "write -P 0xcc 8M 1M")
    return path


def test_known_content(image):
    s1, _ = qcow2.exclusive_bytes(str(image), "s1")
    s2, _ = qcow2.exclusive_bytes(str(image), "s2")
    assert (s1.data, s1.vmstate, s1.exact) == (2 * MiB, 0, True)  # the overwritten 2 MiB live only in s1
    assert (s2.data, s2.vmstate) == (0, 0)  # everything s2 references, the active image does too
    assert s1.metadata >= CLUSTER  # at least its own L1 table


@pytest.mark.parametrize("victim", ["s1", "s2"])
def test_matches_what_qemu_img_frees(image, victim):
    found, _ = qcow2.exclusive_bytes(str(image), victim)
    before = allocated(image)
    qemu_img("snapshot", "-d", victim, image)
    freed = before - allocated(image)
    # qemu-img rewrites the snapshot table into a cluster it may take from the freed ones: one cluster slack
    predicted = found.data + found.metadata
    assert predicted - CLUSTER - 4096 <= freed <= predicted + 4096, (predicted, freed)
    check = subprocess.run(["qemu-img", "check", "-f", "qcow2", str(image)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout  # the reader never wrote anything


def test_compressed_clusters(tmp_path):
    raw, comp = tmp_path / "r.qcow2", tmp_path / "c.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", raw, "8M")
    qemu_io(raw, "write -P 0x11 0 1M")
    qemu_img("convert", "-q", "-c", "-f", "qcow2", "-O", "qcow2", raw, comp)
    qemu_img("snapshot", "-c", "s", comp)
    qemu_io(comp, "write -P 0x22 0 1M")
    found, _ = qcow2.exclusive_bytes(str(comp), "s")
    # sixteen compressed clusters of one repeated byte share one host cluster, referenced sixteen times
    assert found.data == CLUSTER
    before = allocated(comp)
    qemu_img("snapshot", "-d", "s", comp)
    assert 0 < before - allocated(comp) <= found.data + found.metadata + 4096  # (a compressed cluster is sparse)


def test_missing_name_and_non_qcow2(tmp_path, image):
    with pytest.raises(qcow2.Qcow2Error, match="0 snapshots named 'nope'"):
        qcow2.exclusive_bytes(str(image), "nope")
    raw = tmp_path / "raw.img"
    raw.write_bytes(b"\0" * 65536)
    with pytest.raises(qcow2.Qcow2Error, match="bad magic"):
        qcow2.exclusive_bytes(str(raw), "s1")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(qcow2.Qcow2Error, match="not a regular file"):
        qcow2.exclusive_bytes(str(fifo), "s1")


def _patch(path, offset, fmt, value) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, value))


@pytest.mark.parametrize(("offset", "fmt", "value", "words"), [
    (48, ">Q", 1 << 40, "outside the file"),       # refcount table beyond the end
    (56, ">I", 0xFFFFFFFF, "outside the file"),    # refcount table of 4 G clusters
    (64, ">Q", 1 << 45, "outside the file"),       # snapshot table beyond the end
    (60, ">I", 1 << 20, "too many snapshots"),
    (20, ">I", 40, "cluster_bits"),
    (72, ">Q", 1 << 40, "incompatible features"),  # an unknown incompatible feature
])
def test_hostile_headers(image, offset, fmt, value, words):
    _patch(image, offset, fmt, value)
    with pytest.raises(qcow2.Qcow2Error, match=words):
        qcow2.exclusive_bytes(str(image), "s1")


def test_hostile_snapshot_entry(image):
    with qcow2.Image(str(image)) as img:
        table = img.snapshots_offset
    _patch(image, table, ">Q", 1 << 47)  # s1's L1 table beyond the end
    with pytest.raises(qcow2.Qcow2Error, match="outside the file"):
        qcow2.exclusive_bytes(str(image), "s1")
    _patch(image, table + 8, ">I", 0x7FFFFFFF)  # and two billion L1 entries
    with pytest.raises(qcow2.Qcow2Error, match="maps more than"):
        qcow2.exclusive_bytes(str(image), "s1")
    _patch(image, table + 8, ">I", 2)  # one L1 entry more than a 64 MiB disk needs: accepted, then bounded
    with pytest.raises(qcow2.Qcow2Error, match="outside the file"):
        qcow2.exclusive_bytes(str(image), "s1")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(min_value=0, max_value=511), st.integers(min_value=0, max_value=255)),
                      min_size=1, max_size=8))
def test_random_header_damage_only_refuses(image, edits):
    """Whatever bytes of the header and snapshot table a guest or an attacker changes, the reader answers or
    refuses with Qcow2Error; it never raises anything else and never reads outside the file (pread would)."""
    pristine = image.read_bytes()
    with qcow2.Image(str(image)) as img:
        table = img.snapshots_offset
    data = bytearray(pristine)
    for position, byte in edits:
        at = position if position < 256 else table + position - 256
        data[at] = byte
    damaged = image.with_suffix(".damaged")
    damaged.write_bytes(bytes(data))
    try:
        qcow2.exclusive_bytes(str(damaged), "s1")
    except qcow2.Qcow2Error:
        pass


# -- through the QEMU driver, offline ---------------------------------------------------------------------
@pytest.fixture
def dom(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    conn, d, disk = define_offline(tmp_path, "space", size="32M")
    yield d, disk
    conn.close()


def test_driver_size_protect_prune(dom, tmp_path):
    d, disk = dom
    qemu_io(disk, "write -P 0x01 0 3M")
    first = d.snapshotCreateXML("<domainsnapshot><name>first</name></domainsnapshot>")
    qemu_io(disk, "write -P 0x02 0 3M")  # COW: the old 3 MiB now belong to `first` alone
    second = d.snapshotCreateXML("<domainsnapshot><name>second</name></domainsnapshot>")
    size = first.getSize()
    assert size["memory"] == 0 and size["memory_exact"] and size["disk_exact"]
    assert 3 * MiB <= size["disk"] <= 3 * MiB + 3 * CLUSTER  # data plus its L1 and L2 tables
    assert second.getSize()["disk"] <= 3 * CLUSTER  # nothing of its data is its own yet
    first.setProtected(True)
    assert first.isProtected() == 1
    with pytest.raises(virtsnap.libvirtError) as info:
        first.delete()
    assert info.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
    assert "first" in qemu_tags(disk)
    # the mark is durable: another connection (a fresh store) sees it
    other = virtsnap.open("qemu:///session")
    try:
        assert other.lookupByName("space").snapshotLookupByName("first").isProtected() == 1
    finally:
        other.close()
    result = d.snapshotPrune({"keep_last": 0})
    assert {r["name"]: r["reason"] for r in result} == {"second": "current", "first": "protected"}
    first.setProtected(False)
    d.revertToSnapshot(first)
    d.snapshotCreateXML("<domainsnapshot><name>branch</name></domainsnapshot>")  # first -> {second, branch}
    result = d.snapshotPrune({"keep_last": 1})
    assert [(r["name"], r["action"], r["reason"]) for r in result] == [
        ("branch", "keep", "keep-last"), ("second", "remove", ""), ("first", "keep", "ancestor-of-current")]
    assert sorted(qemu_tags(disk)) == ["branch", "first"]  # removed through the normal delete, image and all
    assert sorted(d.snapshotListNames()) == ["branch", "first"]


def qemu_tags(disk) -> list[str]:
    import json

    out = subprocess.run(["qemu-img", "info", "-f", "qcow2", "--output=json", str(disk)], capture_output=True,
                         text=True, check=True).stdout
    return [s["name"] for s in json.loads(out).get("snapshots", [])]


# -- the free-space pre-flight, on a nearly full tmpfs ------------------------------------------------------
@pytest.fixture
def full_fs(tmp_path):
    """A 4 MiB tmpfs with about 512 KiB left free."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4M,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def _fill(mnt, leave: int) -> None:
    st = os.statvfs(mnt)
    (mnt / "filler").write_bytes(b"\1" * (st.f_bavail * st.f_frsize - leave))


def test_preflight_refuses_then_override_goes_ahead(tmp_path, monkeypatch, full_fs):
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    disk = full_fs / "d.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", disk, "16M")
    conn = virtsnap.open("qemu:///session")
    try:
        d = conn.defineXML(
            "<domain type='qemu'><name>pf</name><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
            f"<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>"
            "<target dev='vda' bus='virtio'/></disk></devices></domain>")
        _fill(full_fs, 512 * 1024)
        with pytest.raises(virtsnap.libvirtError) as info:
            d.snapshotCreateXML("<domainsnapshot><name>in</name></domainsnapshot>")
        message = info.value.get_error_message()
        assert info.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
        assert "needs about 1.0 MiB (disk vda 1.0 MiB)" in message and str(full_fs) in message
        assert "free" in message and "--no-space-check" in message
        assert qemu_tags(disk) == [] and d.snapshotNum() == 0  # nothing changed
        overlay = full_fs / "o.qcow2"
        ext = (f"<domainsnapshot><name>ex</name><disks><disk name='vda' snapshot='external'>"
               f"<source file='{overlay}'/></disk></disks></domainsnapshot>")
        with pytest.raises(virtsnap.libvirtError, match="overlay of vda"):
            d.snapshotCreateXML(ext, virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
        assert not overlay.exists() and d.snapshotNum() == 0
        d.snapshotCreateXML("<domainsnapshot><name>in</name></domainsnapshot>",
                            virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_NO_SPACE_CHECK)
        assert qemu_tags(disk) == ["in"]
        d.snapshotCreateXML(ext, virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
                            | virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_NO_SPACE_CHECK)
        assert overlay.exists() and d.snapshotNum() == 2
    finally:
        conn.close()


def test_protected_delete_under_the_driver_lock_and_force(dom):
    d, disk = dom
    snap = d.snapshotCreateXML("<domainsnapshot><name>keep</name></domainsnapshot>")
    snap.setProtected(True)
    # the QEMU driver checks again under its own lock, whoever calls it
    with pytest.raises(virtsnap.libvirtError) as info:
        d.connect().driver.snapshot_delete(d.UUIDString(), "keep", 0)
    assert info.value.get_error_code() == virtsnap.VIR_ERR_OPERATION_INVALID
    assert qemu_tags(disk) == ["keep"]
    snap.delete(virtsnap.VIR_DOMAIN_SNAPSHOT_DELETE_FORCE)
    assert qemu_tags(disk) == [] and d.snapshotNum() == 0


def test_store_from_before_protection_read_only_then_upgraded(dom, tmp_path):
    """A schema 4 store (no protection marks): a read-only connection reads no marks and upgrades nothing; a
    read-write one upgrades it to schema 5 and marks work."""
    import sqlite3

    d, _disk = dom
    d.snapshotCreateXML("<domainsnapshot><name>old</name></domainsnapshot>")
    path = tmp_path / "state" / "metadata.db"
    db = sqlite3.connect(path)
    db.execute("DROP TABLE protected")
    db.execute("PRAGMA user_version = 4")
    db.commit()
    db.close()
    ro = virtsnap.openReadOnly("qemu:///session")
    try:
        rodom = ro.lookupByName("space")
        assert rodom.snapshotLookupByName("old").isProtected() == 0
        assert rodom.snapshotPrune({"keep_last": 0}, virtsnap.VIR_DOMAIN_SNAPSHOT_PRUNE_DRY_RUN) == [
            {"name": "old", "action": "keep", "reason": "current"}]
    finally:
        ro.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 4
    db.close()
    rw = virtsnap.open("qemu:///session")
    try:
        snap = rw.lookupByName("space").snapshotLookupByName("old")
        snap.setProtected(True)
        assert snap.isProtected() == 1
    finally:
        rw.close()
