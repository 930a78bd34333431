"""The conformance model of tests/unit/test_prop_tree.py on a vSphere VM (vcsim), where vSphere allows it.

vSphere owns the tree, so only the rules it can carry run: creates (named, and unnamed with virtsnap's default
name), reverts, and deletes with flags 0, CHILDREN and CHILDREN_ONLY; REDEFINE only edits descriptions on ESX
(tested in test_esx_snapshots.py) and is left out. Where the current snapshot goes when it is deleted with a
subtree is vSphere's choice; on vcsim it follows virtsnap's patch 4 (see README), so that part of the model is
checked against vcsim-with-our-patch, not against ESX.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.stateful import precondition, rule, run_state_machine_as_test

import virtsnap

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "unit"))
from conftest_vcsim import make_vcsim_fixture  # noqa: E402
from esxutil import VM0, open_auth, raw_si, reset_vm  # noqa: E402
from test_prop_tree import SnapshotOps  # noqa: E402

vcsim = make_vcsim_fixture(scope="module")


def test_model_on_a_vsphere_vm(vcsim: Any) -> None:
    with raw_si(vcsim) as si:

        class EsxSnapshotOps(SnapshotOps):
            def open_domain(self) -> tuple[virtsnap.virConnect, virtsnap.virDomain]:
                reset_vm(si, VM0, "poweredOff")
                conn = open_auth(vcsim)
                return conn, conn.lookupByName(VM0)

            # vSphere keeps no redefinable metadata: these rules never run here.
            @precondition(lambda self: False)
            @rule()
            def redefine_existing(self) -> None:
                raise AssertionError("not enabled")

            @precondition(lambda self: False)
            @rule()
            def redefine_deleted(self) -> None:
                raise AssertionError("not enabled")

        run_state_machine_as_test(EsxSnapshotOps, settings=settings(
            max_examples=15, stateful_step_count=15, deadline=None, suppress_health_check=list(HealthCheck)))
