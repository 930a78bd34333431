"""The conformance model of tests/unit/test_prop_tree.py on a VirtualBox machine (the stand-in VBoxManage), where
VirtualBox allows it: creates (named, and unnamed with virtsnap's default name), reverts, deletes with flags 0,
CHILDREN and CHILDREN_ONLY. VirtualBox cannot delete a snapshot with more than one child (refused up front,
nothing changed) and keeps no redefinable metadata (REDEFINE edits descriptions only, tested in test_driver.py).
Every VBoxManage call is a process: few, short sequences."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule, run_state_machine_as_test
from vboxfake import ALPHA, FakeVBox

import virtsnap

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit"))
from test_prop_tree import CHILDREN, CHILDREN_ONLY, SnapshotOps  # noqa: E402


def test_model_on_a_virtualbox_machine(fake_vbox: FakeVBox) -> None:
    pristine = fake_vbox.state_path.read_text(encoding="utf-8")

    class VBoxSnapshotOps(SnapshotOps):
        def open_domain(self) -> tuple[virtsnap.virConnect, virtsnap.virDomain]:
            fake_vbox.state_path.write_text(pristine, encoding="utf-8")
            conn = virtsnap.open("vbox:///session")
            return conn, conn.lookupByUUIDString(ALPHA)

        @precondition(lambda self: self.model.parent)
        @rule(data=st.data(), flags=st.sampled_from([0, CHILDREN, CHILDREN_ONLY]))
        def delete(self, data: st.DataObject, flags: int) -> None:
            name = data.draw(st.sampled_from(sorted(self.model.parent)))
            if flags == 0 and len(self.model.children(name)) > 1:
                self._expect_error(virtsnap.VIR_ERR_OPERATION_INVALID,
                                   lambda: self.dom.snapshotLookupByName(name).delete(0))
                return
            SnapshotOps.delete(self, data, flags)

        @precondition(lambda self: False)
        @rule()
        def redefine_existing(self) -> None:
            raise AssertionError("not enabled")

        @precondition(lambda self: False)
        @rule()
        def redefine_deleted(self) -> None:
            raise AssertionError("not enabled")

    run_state_machine_as_test(VBoxSnapshotOps, settings=settings(
        max_examples=3, stateful_step_count=8, deadline=None, suppress_health_check=list(HealthCheck)))

