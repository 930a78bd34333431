"""The metadata store's scale paths (issue 8): XML read on first use, trees brought up to date from the rows
written since (never by reloading every snapshot), only changed columns written, schema 1 upgraded in place.

Correctness only; the timings are in bench/bench_scale.py.
"""

import random
import sqlite3

import pytest

from virtsnap.conf.snapshot_xml import SnapshotState
from virtsnap.conf.tree import Moment, SnapshotTree
from virtsnap.errors import libvirtError
from virtsnap.store import db as dbmod
from virtsnap.store.db import SCHEMA_VERSION, MetadataStore

UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"
OTHER = "6695eb01-f6a4-8304-79aa-97f2502e1940"


def xml(name, note=""):
    return f"<domainsnapshot><name>{name}</name><description>{note}</description></domainsnapshot>"


def picture(tree: SnapshotTree, listing_order=True):
    """Everything a fresh load would show: listing order, links, child order, attributes, current, XML.

    The writer's own tree lists in the order it added moments (a fresh load: in link order), hence the flag.
    """
    moments = {
        m.name: (m.parent_name, m.seq, int(m.state), m.external, m.creation_time,
                 [c.name for c in m.children], m.defn)
        for m in tree.moments()
    }
    names = tree.names() if listing_order else sorted(tree.names())
    return names, moments, [r.name for r in tree.roots()], tree.current.name if tree.current else None


def grow(tree, name, parent=None, current=True, state=SnapshotState.SHUTOFF, note=""):
    moment = tree.add(Moment(name, state, False, xml(name, note), creation_time=len(tree)))
    tree.link(moment, tree.get(parent) if parent else None)
    if current:
        tree.set_current(moment)
    return moment


def save(store, tree, calls=None):
    def xml_of(moment):
        if calls is not None:
            calls.append(moment.name)
        return moment.defn
    store.save_tree(UUID, tree, xml_of)


@pytest.fixture
def stores(tmp_path):
    """Two stores on one database: a writer and a reader, as two processes would have."""
    writer = MetadataStore(tmp_path / "qemu")
    writer.put_domain(UUID, "demo", "<domain type='qemu'/>")
    reader = MetadataStore(tmp_path / "qemu")
    yield writer, reader, tmp_path / "qemu"
    writer.close()
    reader.close()


def fresh(path):
    store = MetadataStore(path)
    try:
        tree = store.load_tree(UUID)
        return picture(tree)
    finally:
        store.close()


def random_step(tree, rng, serial):
    """One metadata change of the kinds the drivers make: create, redefine in place, delete (three ways),
    current moves, a rewrite of one definition."""
    names = tree.names()
    kind = rng.choice(["create", "create", "create", "redefine", "delete", "delete-children", "children-only",
                       "current", "touch"]) if names else "create"
    if kind == "create":
        grow(tree, f"n{serial}", rng.choice([*names, None]) if names else None, current=rng.random() < 0.5,
             state=rng.choice([SnapshotState.SHUTOFF, SnapshotState.RUNNING, SnapshotState.DISK_SNAPSHOT]))
    elif kind == "redefine":
        moment = tree.get(rng.choice(names))
        parent_name = rng.choice([*names, None])
        try:
            tree.check_cycles(moment.name, parent_name)
        except libvirtError:
            return
        tree.drop_parent(moment)
        moment.defn = xml(moment.name, f"redefined {serial}")
        tree.link(moment, tree.get(parent_name) if parent_name else None)
    elif kind == "delete":
        tree.delete(tree.get(rng.choice(names)))
    elif kind == "delete-children":
        tree.delete(tree.get(rng.choice(names)), children=True)
    elif kind == "children-only":
        tree.delete(tree.get(rng.choice(names)), children_only=True)
    elif kind == "current":
        tree.set_current(tree.get(rng.choice(names)))
    else:
        moment = tree.get(rng.choice(names))
        moment.defn = xml(moment.name, f"touched {serial}")
        tree.touch(moment)


@pytest.mark.parametrize("seed", range(8))
def test_a_reader_catches_up_in_place_and_sees_what_a_fresh_load_sees(stores, seed):
    writer, reader, path = stores
    rng = random.Random(seed)
    tree = writer.load_tree(UUID)
    view = reader.load_tree(UUID)
    serial = 0
    for _batch in range(25):
        for _ in range(rng.randint(1, 6)):
            serial += 1
            random_step(tree, rng, serial)
        save(writer, tree)
        tree.check_invariants()
        if rng.random() < 0.7:  # the reader does not look after every change
            again = reader.load_tree(UUID)
            assert again is view, "a clean tree is brought up to date in place"
            view.check_invariants()
            assert picture(view) == fresh(path)
            assert picture(view, False) == picture(writer.load_tree(UUID), False)
    assert picture(reader.load_tree(UUID)) == fresh(path)


def test_definitions_are_read_when_first_used(stores):
    writer, reader, _path = stores
    tree = writer.load_tree(UUID)
    grow(tree, "a")
    grow(tree, "b", "a")
    save(writer, tree)
    view = reader.load_tree(UUID)
    b = view.get("b")
    assert not b.loaded
    assert b.defn == xml("b") and b.loaded
    b.defn = "parsed"  # a driver replaces the XML with its parsed form
    assert b.defn == "parsed"
    # deleted by the other process after this one read the tree: a typed error, not a crash
    tree.delete(tree.get("a"))
    save(writer, tree)
    with pytest.raises(libvirtError) as info:
        _ = view.get("a").defn
    assert info.value.get_error_code() == 72  # VIR_ERR_NO_DOMAIN_SNAPSHOT


def test_children_that_only_move_are_not_rewritten(stores):
    writer, _reader, path = stores
    tree = writer.load_tree(UUID)
    grow(tree, "a")
    grow(tree, "b", "a")
    for kid in ("c", "d", "e"):
        grow(tree, kid, "b")
    save(writer, tree)
    calls = []
    tree.delete(tree.get("b"))  # c, d, e move under a
    save(writer, tree, calls)
    assert calls == []
    assert [c.name for c in MetadataStore(path).load_tree(UUID).get("a").visit_children()] == ["e", "d", "c"]


def test_a_tree_with_unsaved_changes_is_not_patched(stores):
    writer, reader, _path = stores
    tree = writer.load_tree(UUID)
    grow(tree, "a")
    save(writer, tree)
    view = reader.load_tree(UUID)
    grow(view, "local")  # never saved
    grow(tree, "b", "a")
    save(writer, tree)
    again = reader.load_tree(UUID)
    assert again is not view and "local" not in again and "b" in again


def test_generations_are_never_reused_across_undefine_and_define(stores):
    writer, reader, _path = stores
    tree = writer.load_tree(UUID)
    for name in ("a", "b", "c"):
        grow(tree, name)
        save(writer, tree)
    view = reader.load_tree(UUID)
    seen = reader.generation(UUID)
    writer.delete_domain(UUID)
    writer.put_domain(UUID, "demo", "<domain type='qemu'/>")
    tree = writer.load_tree(UUID)
    grow(tree, "z")
    save(writer, tree)
    assert writer.generation(UUID) > seen
    again = reader.load_tree(UUID)
    assert again is not view and again.names() == ["z"]


def test_a_reader_far_behind_reloads_everything(stores, monkeypatch):
    monkeypatch.setattr(dbmod, "TOMBSTONE_GENERATIONS", 3)
    writer, reader, path = stores
    tree = writer.load_tree(UUID)
    for i in range(6):
        grow(tree, f"s{i}")
        save(writer, tree)
    view = reader.load_tree(UUID)
    for i in range(6):  # each save deletes one: tombstones older than 3 generations are dropped
        tree.delete(tree.get(f"s{i}"))
        grow(tree, f"t{i}")
        save(writer, tree)
    again = reader.load_tree(UUID)
    assert again is not view
    assert picture(again) == fresh(path)


def test_other_domains_do_not_disturb(stores):
    writer, reader, _path = stores
    writer.put_domain(OTHER, "other", "<domain type='qemu'/>")
    tree = writer.load_tree(UUID)
    grow(tree, "a")
    save(writer, tree)
    view = reader.load_tree(UUID)
    other = writer.load_tree(OTHER)
    grow(other, "x")
    writer.save_tree(OTHER, other, lambda m: m.defn)
    assert reader.load_tree(UUID) is view and view.names() == ["a"]
    assert reader.load_tree(OTHER).names() == ["x"]


SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE domains (uuid TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, xml TEXT NOT NULL, current TEXT,
    generation INTEGER NOT NULL DEFAULT 0);
CREATE TABLE snapshots (domain TEXT NOT NULL REFERENCES domains(uuid) ON DELETE CASCADE, name TEXT NOT NULL,
    parent TEXT, seq INTEGER NOT NULL, creation_time INTEGER NOT NULL, state INTEGER NOT NULL,
    external INTEGER NOT NULL, xml TEXT NOT NULL, PRIMARY KEY (domain, name)) WITHOUT ROWID;
CREATE INDEX snapshots_parent ON snapshots(domain, parent);
CREATE TABLE journal (id INTEGER PRIMARY KEY AUTOINCREMENT, domain TEXT NOT NULL, op TEXT NOT NULL,
    intent TEXT NOT NULL, steps TEXT NOT NULL DEFAULT '[]', started REAL NOT NULL, pid INTEGER NOT NULL);
INSERT INTO meta VALUES ('schema', '1');
"""


def test_schema_1_is_upgraded_in_place(tmp_path):
    path = tmp_path / "qemu"
    path.mkdir()
    old = sqlite3.connect(path / "metadata.db")
    old.executescript(SCHEMA_1)
    old.execute("INSERT INTO domains VALUES (?, 'demo', '<domain/>', 'b', 7)", (UUID,))
    old.executemany("INSERT INTO snapshots VALUES (?, ?, ?, ?, 0, 5, 0, ?)",
                    [(UUID, "a", None, 1, xml("a")), (UUID, "b", "a", 2, xml("b")), (UUID, "c", "a", 3, xml("c"))])
    old.commit()
    old.close()
    store = MetadataStore(path)
    tree = store.load_tree(UUID)
    assert [m.name for m in tree.get("a").visit_children()] == ["c", "b"]
    assert tree.current.name == "b" and tree.get("c").defn == xml("c")
    assert store.generation(UUID) == 7
    reader = MetadataStore(path)
    view = reader.load_tree(UUID)
    grow(tree, "d", "c")
    store.save_tree(UUID, tree, lambda m: m.defn)
    assert store.generation(UUID) == 8
    assert reader.load_tree(UUID) is view and picture(view) == picture(MetadataStore(path).load_tree(UUID))
    assert sqlite3.connect(path / "metadata.db").execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
