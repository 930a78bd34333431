"""The sqlite metadata store: round trips of the forest, private permissions, journal, the domain lock."""

import multiprocessing
import os
import shutil
import signal
import stat

import pytest

from virtsnap.conf.snapshot_xml import SnapshotState
from virtsnap.conf.tree import Moment, SnapshotTree
from virtsnap.errors import ErrorCode, libvirtError
from virtsnap.flags import SnapshotList
from virtsnap.store.db import MetadataStore
from virtsnap.store.lock import DomainLock

UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"


def _shape(tree):
    topo = [(m.name, m.parent_name) for m in tree.select(None, SnapshotList.TOPOLOGICAL)]
    children = {m.name: [c.name for c in m.visit_children()] for m in tree.moments()}
    return topo, children, tree.current.name if tree.current else None


def _grow(tree, name, parent=None, state=SnapshotState.RUNNING):
    moment = tree.add(Moment(name, state, False, f"<domainsnapshot><name>{name}</name></domainsnapshot>"))
    tree.link(moment, tree.get(parent) if parent else None)
    tree.set_current(moment)
    return moment


@pytest.fixture
def store(tmp_path):
    s = MetadataStore(tmp_path / "state" / "qemu")
    s.put_domain(UUID, "demo", "<domain type='qemu'/>")
    yield s
    s.close()


def test_files_and_directories_are_private(store):
    assert stat.S_IMODE(os.stat(store.directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600


def test_open_while_another_process_removes_the_write_ahead_log(tmp_path, monkeypatch):
    """Finding (clean-clone CI, tests/remote/test_ansible.py): the last connection of another process to close
    deletes metadata.db-wal and -shm; when that fell between sqlite's open and the store's chmod of them, the open
    failed with 'cannot open metadata database: No such file or directory'. The window is made certain here."""
    MetadataStore(tmp_path / "qemu").close()
    real_chmod = os.chmod

    def chmod_after_removal(path, mode, *args, **kwargs):
        if str(path).endswith(("-wal", "-shm")):
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_chmod(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "chmod", chmod_after_removal)
    store = MetadataStore(tmp_path / "qemu")
    store.put_domain(UUID, "demo", "<domain type='qemu'/>")
    assert store.domain(UUID) is not None
    store.close()


def test_forest_round_trips_with_child_order_and_current(store):
    tree = store.load_tree(UUID)
    for name, parent in [("a", None), ("b", "a"), ("c", "a"), ("d", "c"), ("e", None)]:
        _grow(tree, name, parent)
    tree.delete(tree.get("c"))  # d moves in front of b under a
    tree.set_current(tree.get("b"))
    store.save_tree(UUID, tree, lambda m: m.defn)
    again = store.load_tree(UUID)
    assert _shape(again) == _shape(tree)
    assert [c.name for c in again.get("a").visit_children()] == ["d", "b"]
    again.check_invariants()


def test_only_changed_rows_are_written_and_generation_moves(store):
    tree = store.load_tree(UUID)
    _grow(tree, "a")
    before = store.generation(UUID)
    store.save_tree(UUID, tree, lambda m: m.defn)
    assert store.generation(UUID) == before + 1
    assert not tree.dirty and not tree.deleted
    tree.delete(tree.get("a"))
    store.save_tree(UUID, tree, lambda m: m.defn)
    assert store.snapshot_count(UUID) == 0


def test_journal_records_unfinished_operations(store):
    entry = store.journal_begin(UUID, "create", {"name": "a"})
    store.journal_step(entry, "overlay-created")
    [pending] = store.journal_unfinished(UUID)
    assert (pending.op, pending.intent, pending.steps) == ("create", {"name": "a"}, ["overlay-created"])
    store.journal_end(entry)
    assert store.journal_unfinished(UUID) == []


def test_an_operation_commit_is_one_transaction(store, tmp_path):
    """Definition, tree and journal written in one nested transaction: all or nothing, for every reader."""
    tree = store.load_tree(UUID)
    entry = store.journal_begin(UUID, "create", {"name": "a"})
    with pytest.raises(RuntimeError), store.transaction():
        store.put_domain(UUID, "demo", "<domain type='qemu'><name>changed</name></domain>")
        _grow(tree, "a")
        store.save_tree(UUID, tree, lambda m: m.defn)
        store.journal_end(entry)
        raise RuntimeError("killed between two writes")
    other = MetadataStore(tmp_path / "state" / "qemu")
    assert other.domain(UUID) == ("demo", "<domain type='qemu'/>")
    assert other.snapshot_count(UUID) == 0 and store.snapshot_count(UUID) == 0
    assert [e.id for e in other.journal_unfinished(UUID)] == [entry] and other.journal_pending(UUID)
    tree = store.load_tree(UUID)  # the cache of the rolled-back save is gone: a fresh, empty tree
    assert len(tree) == 0
    with store.transaction():
        _grow(tree, "a")
        store.save_tree(UUID, tree, lambda m: m.defn)
        store.journal_step(entry, "committed", unlink=["/x"])
    [pending] = other.journal_unfinished(UUID)
    assert pending.steps == ["committed"] and pending.intent == {"name": "a", "unlink": ["/x"]}
    assert other.load_tree(UUID).get("a") is not None
    other.close()


def test_lost_marks_follow_their_snapshot(store):
    tree = store.load_tree(UUID)
    _grow(tree, "a")
    store.save_tree(UUID, tree, lambda m: m.defn)
    store.mark_lost(UUID, "a", "image gone")
    assert store.lost(UUID) == {"a": "image gone"}
    tree.delete(tree.get("a"))
    store.save_tree(UUID, tree, lambda m: m.defn)
    assert store.lost(UUID) == {}
    _grow(tree, "a")  # a new snapshot of the same name is not lost
    store.save_tree(UUID, tree, lambda m: m.defn)
    assert store.lost(UUID) == {}


def _hold_lock(directory, ready):
    lock = DomainLock(directory, UUID)
    lock.acquire()
    ready.set()
    signal.pause()


def test_domain_lock_excludes_other_processes_and_dies_with_its_holder(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path, ready))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(libvirtError) as info:
            DomainLock(tmp_path, UUID, timeout=0.2, what="demo").acquire()
        assert info.value.get_error_code() == 87 and "demo is busy" in info.value.get_error_message()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
    with DomainLock(tmp_path, UUID, timeout=5):
        pass  # the kernel released the dead holder's lock: nothing to clean by hand


def test_domain_lock_excludes_threads_of_one_process(tmp_path):
    with DomainLock(tmp_path, UUID):
        with pytest.raises(libvirtError) as info:
            DomainLock(tmp_path, UUID, timeout=0.1).acquire()
        assert info.value.get_error_code() == ErrorCode.RESOURCE_BUSY


def test_domain_lock_makes_its_directory_again_when_it_went_between_operations(tmp_path):
    """The lock directory is checked once per process; removed later (a cleanup of the state directory), the next
    lock makes it again, owner-only, instead of failing."""
    with DomainLock(tmp_path, UUID):
        pass
    shutil.rmtree(tmp_path / "locks")
    with DomainLock(tmp_path, UUID):
        assert (tmp_path / "locks" / f"{UUID}.lock").exists()
    assert stat.S_IMODE((tmp_path / "locks").stat().st_mode) == 0o700
