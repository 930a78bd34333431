"""Random snapshot operations on every driver that owns a tree, mirrored in a tiny model written here (hypothesis):
test:///default, and an offline QEMU domain (metadata plus real qemu-img internal snapshots, no guest).

Operations: create (named or not), revert, delete with flags 0 / CHILDREN / CHILDREN_ONLY, redefine of an
existing snapshot's own XML (with and without CURRENT), and redefine of a deleted snapshot's saved XML. The model
is a dict name -> parent plus the current name; it encodes libvirt's rules independently of virtsnap's tree code.
After every step the public API must agree with the model, and the tree invariants must hold: at most one
current snapshot, no cycles, every parent exists, TOPOLOGICAL lists parents before children, and
numChildren / listChildrenNames (with and without DESCENDANTS) are consistent.
On QEMU a snapshot redefined after its delete has metadata but no data in the image: a revert to it is refused
(VIR_ERR_OPERATION_INVALID) and changes nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import virtsnap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qemu_offline import define_offline  # noqa: E402  (a plain helper module beside this file)

REDEFINE = virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
CURRENT = virtsnap.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT
CHILDREN = virtsnap.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN
CHILDREN_ONLY = virtsnap.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY
TOPOLOGICAL = virtsnap.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL
DESCENDANTS = virtsnap.VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS
ROOTS = virtsnap.VIR_DOMAIN_SNAPSHOT_LIST_ROOTS
LEAVES = virtsnap.VIR_DOMAIN_SNAPSHOT_LIST_LEAVES

# Few names, so that collisions, re-creations and case-only differences happen often.
NAMES = ["a", "b", "c", "d", "A", "B", "é", "x y"]


class Model:
    """libvirt's snapshot forest semantics, as plainly as possible."""

    def __init__(self) -> None:
        self.parent: dict[str, str | None] = {}
        self.current: str | None = None

    def children(self, name: str | None) -> set[str]:
        return {n for n, p in self.parent.items() if p == name}

    def descendants(self, name: str) -> set[str]:
        out: set[str] = set()
        todo = [name]
        while todo:
            for child in self.children(todo.pop()):
                out.add(child)
                todo.append(child)
        return out

    def create(self, name: str) -> None:
        self.parent[name] = self.current
        self.current = name

    def delete(self, name: str, flags: int) -> list[str]:
        parent = self.parent[name]
        gone = self.descendants(name) if flags & (CHILDREN | CHILDREN_ONLY) else set()
        if not flags & CHILDREN_ONLY:
            gone.add(name)
        if flags == 0:
            for child in self.children(name):
                self.parent[child] = parent
        if self.current in gone:
            self.current = name if flags & CHILDREN_ONLY else parent
        for n in gone:
            del self.parent[n]
        return sorted(gone)


class SnapshotOps(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.conn, self.dom = self.open_domain()
        assert self.dom.snapshotNum() == 0, "state leaked from another connection"
        self.model = Model()
        self.graveyard: dict[str, str] = {}  # name -> XML saved just before it was deleted
        self.without_data: set[str] = set()  # QEMU: redefined after a delete, so the image has no such snapshot
        self.clock = 1700000000

    def open_domain(self) -> tuple[virtsnap.virConnect, virtsnap.virDomain]:
        conn = virtsnap.open("test:///default")
        return conn, conn.lookupByName("test")

    def teardown(self) -> None:
        self.conn.close()

    def _expect_error(self, code: int, fn) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(virtsnap.libvirtError) as info:
            fn()
        assert info.value.get_error_code() == code, info.value.get_error_message()

    # -- operations ---------------------------------------------------------------------------------
    @rule(name=st.sampled_from(NAMES))
    def create_named(self, name: str) -> None:
        xml = f"<domainsnapshot><name>{name}</name><description>d</description></domainsnapshot>"
        if name in self.model.parent:
            self._expect_error(9, lambda: self.dom.snapshotCreateXML(xml))  # domain moment NAME already exists
            return
        assert self.dom.snapshotCreateXML(xml).getName() == name
        self.model.create(name)
        self.without_data.discard(name)

    @rule(tick=st.booleans())
    def create_unnamed(self, tick: bool) -> None:
        """The default name is the creation second; the clock is ours, so that replays are deterministic:
        without a tick, a second unnamed snapshot in the same second collides."""
        if tick:
            self.clock += 1
        name = str(self.clock)
        with mock.patch("time.time", return_value=self.clock + 0.5):
            if name in self.model.parent:
                self._expect_error(9, lambda: self.dom.snapshotCreateXML("<domainsnapshot/>"))
                return
            assert self.dom.snapshotCreateXML("<domainsnapshot/>").getName() == name
        self.model.create(name)
        self.without_data.discard(name)

    @precondition(lambda self: self.model.parent)
    @rule(data=st.data())
    def revert(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.model.parent)))
        if name in self.without_data:
            self._expect_error(55, lambda: self.dom.revertToSnapshot(self.dom.snapshotLookupByName(name)))
            return
        self.dom.revertToSnapshot(self.dom.snapshotLookupByName(name))
        self.model.current = name

    @precondition(lambda self: self.model.parent)
    @rule(data=st.data(), flags=st.sampled_from([0, CHILDREN, CHILDREN_ONLY]))
    def delete(self, data: st.DataObject, flags: int) -> None:
        name = data.draw(st.sampled_from(sorted(self.model.parent)))
        doomed = self.model.descendants(name) if flags else set()
        if not flags & CHILDREN_ONLY:
            doomed.add(name)
        saved = {n: self.dom.snapshotLookupByName(n).getXMLDesc() for n in doomed}
        self.dom.snapshotLookupByName(name).delete(flags)
        assert self.model.delete(name, flags) == sorted(doomed)
        self.graveyard.update(saved)

    @precondition(lambda self: self.model.parent)
    @rule(data=st.data(), make_current=st.booleans())
    def redefine_existing(self, data: st.DataObject, make_current: bool) -> None:
        name = data.draw(st.sampled_from(sorted(self.model.parent)))
        xml = self.dom.snapshotLookupByName(name).getXMLDesc()
        flags = REDEFINE | (CURRENT if make_current else 0)
        assert self.dom.snapshotCreateXML(xml, flags).getName() == name
        assert self.dom.snapshotLookupByName(name).getXMLDesc() == xml  # redefining its own XML changes nothing
        if make_current:
            self.model.current = name

    @precondition(lambda self: any(n not in self.model.parent for n in self.graveyard))
    @rule(data=st.data(), make_current=st.booleans())
    def redefine_deleted(self, data: st.DataObject, make_current: bool) -> None:
        name = data.draw(st.sampled_from(sorted(n for n in self.graveyard if n not in self.model.parent)))
        xml = self.graveyard[name]
        start = xml.find("<parent>\n    <name>")
        parent = xml[start + 19:xml.index("</name>", start)] if start >= 0 else None
        flags = REDEFINE | (CURRENT if make_current else 0)
        if parent is not None and parent not in self.model.parent:
            self._expect_error(8, lambda: self.dom.snapshotCreateXML(xml, flags))  # parent ... not found
            return
        assert self.dom.snapshotCreateXML(xml, flags).getName() == name
        self.model.parent[name] = parent
        if self.has_data:
            self.without_data.add(name)
        if make_current:
            self.model.current = name

    # -- invariants ---------------------------------------------------------------------------------
    @invariant()
    def api_matches_model_and_tree_is_sound(self) -> None:
        dom, model = self.dom, self.model
        snaps = {s.getName(): s for s in dom.listAllSnapshots()}
        assert set(snaps) == set(model.parent)
        assert sorted(dom.snapshotListNames()) == sorted(model.parent) and dom.snapshotNum() == len(model.parent)

        parents: dict[str, str | None] = {}
        for name, snap in snaps.items():
            try:
                parents[name] = snap.getParent().getName()
            except virtsnap.libvirtError as exc:
                assert exc.get_error_code() == 72  # "does not have a parent"
                parents[name] = None
        assert parents == model.parent
        assert all(p is None or p in snaps for p in parents.values()), "a parent does not exist"
        for name in parents:  # no cycles: every chain of parents ends within len(parents) steps
            seen, node = set(), name
            while node is not None:
                assert node not in seen, f"cycle through {node}"
                seen.add(node)
                node = parents[node]

        currents = [n for n, s in snaps.items() if s.isCurrent()]
        assert len(currents) <= 1
        assert currents == ([model.current] if model.current else [])
        assert dom.hasCurrentSnapshot() == (1 if model.current else 0)
        if model.current:
            assert dom.snapshotCurrent().getName() == model.current
        else:
            with pytest.raises(virtsnap.libvirtError) as info:
                dom.snapshotCurrent()
            assert info.value.get_error_code() == 72

        order = [s.getName() for s in dom.listAllSnapshots(TOPOLOGICAL)]
        assert sorted(order) == sorted(model.parent)
        position = {n: i for i, n in enumerate(order)}
        assert all(p is None or position[p] < position[n] for n, p in parents.items()), order
        assert sorted(dom.snapshotListNames(ROOTS)) == sorted(model.children(None))
        assert sorted(dom.snapshotListNames(LEAVES)) == sorted(n for n in parents if not model.children(n))

        for name, snap in snaps.items():
            children = snap.listChildrenNames()
            assert snap.numChildren() == len(children) and sorted(children) == sorted(model.children(name))
            descendants = snap.listChildrenNames(DESCENDANTS)
            assert snap.numChildren(DESCENDANTS) == len(descendants)
            assert sorted(descendants) == sorted(model.descendants(name))
            assert [c.getName() for c in snap.listAllChildren()] == children


    has_data = False  # the test driver keeps no snapshot data


class QemuOfflineSnapshotOps(SnapshotOps):
    """The same rules on a QEMU domain that is never started: metadata in the store, internal snapshots made,
    applied and deleted by qemu-img in a real qcow2 image."""

    has_data = True

    def open_domain(self) -> tuple[virtsnap.virConnect, virtsnap.virDomain]:
        self.work = Path(tempfile.mkdtemp(prefix="vs-prop-"))
        self.env = mock.patch.dict("os.environ", {"VIRTSNAP_QEMU_STATE_DIR": str(self.work / "state")})
        self.env.start()
        conn, dom, self.disk = define_offline(self.work, "prop")
        return conn, dom

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            self.env.stop()
            shutil.rmtree(self.work, ignore_errors=True)

    @invariant()
    def image_holds_the_snapshots_with_data(self) -> None:
        """Every snapshot with data is a tag in the image, and no tag outlives its snapshot."""
        out = subprocess.run(["qemu-img", "info", "-U", "--output=json", "-f", "qcow2", str(self.disk)],
                             capture_output=True, text=True, check=True).stdout
        tags = {snap["name"] for snap in json.loads(out).get("snapshots", [])}
        assert tags == set(self.model.parent) - self.without_data


SnapshotOps.TestCase.settings = settings(max_examples=100, stateful_step_count=25, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
test_random_operation_sequences = SnapshotOps.TestCase
# Every step forks qemu-img: fewer examples, the same depth.
QemuOfflineSnapshotOps.TestCase.settings = settings(max_examples=30, stateful_step_count=25, deadline=None,
                                                    suppress_health_check=[HealthCheck.too_slow])
test_random_operation_sequences_on_offline_qemu = QemuOfflineSnapshotOps.TestCase
