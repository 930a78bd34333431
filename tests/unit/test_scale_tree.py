"""SnapshotTree paths changed for scale (issue 8): the cycle check of a redefinition walks only when the name
already exists, by identity; moves are recorded apart from rewrites. Correctness only."""

import pytest

from virtsnap.conf.snapshot_xml import SnapshotState
from virtsnap.conf.tree import Moment, SnapshotTree
from virtsnap.errors import libvirtError


def chain(names):
    tree = SnapshotTree()
    parent = None
    for name in names:
        moment = tree.add(Moment(name, SnapshotState.SHUTOFF))
        tree.link(moment, parent)
        parent = moment
    return tree


def cycle_error(tree, name, parent):
    with pytest.raises(libvirtError) as info:
        tree.check_cycles(name, parent)
    return info.value.get_error_code(), info.value.get_error_message()


def test_cycle_check_names_the_snapshot_whose_parent_is_the_redefined_one():
    tree = chain("abcd")
    assert cycle_error(tree, "b", "d") == (8, "invalid argument: parent c would create cycle to b")
    assert cycle_error(tree, "a", "b") == (8, "invalid argument: parent b would create cycle to a")
    assert cycle_error(tree, "c", "c") == (8, "invalid argument: cannot set moment c as its own parent")
    assert cycle_error(tree, "c", "zz") == (8, "invalid argument: parent zz for moment c not found")


def test_cycle_check_accepts_legal_parents():
    tree = chain("abcd")
    tree.check_cycles("d", "a")  # an existing moment moved up
    tree.check_cycles("b", None)
    tree.check_cycles("new", "d")  # a new name can be nobody's ancestor
    side = tree.add(Moment("x"))
    tree.link(side, tree.get("a"))
    tree.check_cycles("x", "d")
    tree.check_cycles("c", "x")


def test_deep_chain_redefinitions_do_not_recurse():
    names = [f"s{i}" for i in range(20000)]
    tree = chain(names)
    tree.check_cycles("new", names[-1])
    assert cycle_error(tree, names[0], names[-1])[1].endswith(f"parent s1 would create cycle to {names[0]}")


def test_moves_are_recorded_apart_from_rewrites():
    tree = chain("abc")
    tree.mark_clean()
    assert not tree.changed
    tree.delete(tree.get("b"))  # c moves under a
    assert tree.moved == {"c"} and tree.dirty == set() and tree.deleted == {"b"} and tree.changed
    tree.mark_clean()
    c = tree.get("c")
    tree.drop_parent(c)  # detached and not yet linked again: unsaved
    assert tree.changed
    tree.link(c, None)
    assert "c" in tree.dirty


def test_moment_definition_loads_once_and_setting_it_wins():
    calls = []

    def loader(moment):
        calls.append(moment.name)
        moment.defn = f"<xml {moment.name}>"

    moment = Moment("a")
    moment.defer(loader)
    assert not moment.loaded
    assert moment.defn == "<xml a>" and moment.defn == "<xml a>"
    assert calls == ["a"] and moment.loaded
    moment.defer(loader)
    moment.defn = "mine"
    assert moment.defn == "mine" and calls == ["a"]
