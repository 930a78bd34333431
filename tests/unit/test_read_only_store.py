"""A read-only connection changes nothing on disk, not even to create or upgrade virtsnap's own store: a state
directory with no store, or with one older than any read-only reader understands, stays exactly as it was."""

from __future__ import annotations

import os
import sqlite3

import pytest

import virtsnap
from virtsnap import libvirtError


def listing(root):
    # sqlite's -wal/-shm side files appear whenever a WAL database is read at all, even read-only: they are
    # sqlite's shared-memory index, not content, and are left out.
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*")
                  if not p.name.endswith(("-wal", "-shm")))


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRTSNAP_QEMU_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def test_a_read_only_connection_creates_no_store(state):
    ro = virtsnap.openReadOnly("qemu:///session")
    assert ro.listAllDomains() == [] and ro.listDefinedDomains() == []
    with pytest.raises(libvirtError) as err:
        ro.lookupByName("nothing")
    assert err.value.get_error_code() == virtsnap.VIR_ERR_NO_DOMAIN
    ro.close()
    assert not (state / "metadata.db").exists()
    assert not state.exists() or listing(state) == []


def test_a_read_only_connection_reads_an_old_store_without_upgrading_it(state):
    rw = virtsnap.open("qemu:///session")  # a current store with one domain in it
    rw.defineXML("<domain type='qemu'><name>old</name><memory unit='MiB'>64</memory>"
                 "<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>")
    rw.close()
    db = sqlite3.connect(state / "metadata.db")
    db.execute("PRAGMA user_version = 2")  # as a store from before schema 3 says of itself
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    before = (state / "metadata.db").read_bytes(), listing(state)
    ro = virtsnap.openReadOnly("qemu:///session")
    assert [d.name() for d in ro.listAllDomains()] == ["old"]
    ro.close()
    assert ((state / "metadata.db").read_bytes(), listing(state)) == before
    assert os.stat(state / "metadata.db").st_mode & 0o777 == 0o600
