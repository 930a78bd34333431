"""A domain's operation-lock file goes with the domain on undefine, and a waiter that held the removed file
locks the file at the path instead (two processes can never both hold "the" lock)."""

import threading
from pathlib import Path

import pytest
from qemu_offline import define_offline

import virtsnap
from virtsnap.store.lock import DomainLock


def test_undefine_removes_the_lock_file(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    conn, dom, _ = define_offline(tmp_path, "locked")
    uuid = dom.UUIDString()
    dom.snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>")  # takes the operation lock
    locks = tmp_path / "state" / "locks"
    assert (locks / f"{uuid}.lock").exists()
    dom.undefineFlags(virtsnap.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
    assert not (locks / f"{uuid}.lock").exists()
    assert [p.name for p in locks.iterdir()] == []
    del dom
    conn.close()


def test_waiter_relocks_after_the_file_is_discarded(tmp_path):
    held = DomainLock(tmp_path, "u1", timeout=5)
    held.acquire()
    got = threading.Event()
    waiter = DomainLock(tmp_path, "u1", timeout=5)

    def wait() -> None:
        waiter.acquire()
        got.set()

    thread = threading.Thread(target=wait)
    thread.start()
    held.discard()
    held.release()
    thread.join(10)
    assert got.is_set()
    # the waiter holds the file now at the path: a third locker must wait for it
    third = DomainLock(tmp_path, "u1", timeout=0)
    with pytest.raises(virtsnap.libvirtError) as info:
        third.acquire()
    assert info.value.get_error_code() == virtsnap.VIR_ERR_RESOURCE_BUSY
    waiter.release()
    assert Path(waiter.path).exists()
