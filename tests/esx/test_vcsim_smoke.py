"""Smoke tests: the patched vcsim serves what virtsnap's ESX driver needs.

They talk to vcsim with plain pyvmomi (no virtsnap code), so a failure here
points at the simulator or its build (tests/esx/vcsim/), not at the driver.
Tests named *_vcsim_gap pin behaviour where vcsim differs from real ESX; the
driver's tests must not rely on it (DESIGN.md section 6).
"""

from __future__ import annotations

import ssl
import sys
from pathlib import Path

import pytest

from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim, vmodl

# conftest_vcsim is a plain module beside this file; make it importable under
# any pytest import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest_vcsim import make_vcsim_fixture

# One fresh simulator for this module (DESIGN.md: fresh vcsim per module).
vcsim = make_vcsim_fixture(scope="module")

VM_NAMES = {"ha-host_VM0", "ha-host_VM1"}


@pytest.fixture(scope="module")
def si(vcsim):
    si = SmartConnect(**vcsim.connect_kwargs())
    yield si
    Disconnect(si)


def all_vms(si) -> dict:
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        return {vm.name: vm for vm in view.view}
    finally:
        view.Destroy()


def run(task):
    """Wait for a task (WaitForTask raises the task's fault) and return it."""
    WaitForTask(task)
    return task


@pytest.fixture
def vm(si):
    """ha-host_VM0, powered on, without snapshots (tests share one vcsim)."""
    vm = all_vms(si)["ha-host_VM0"]
    run(vm.RemoveAllSnapshots_Task())
    if vm.runtime.powerState != vim.VirtualMachinePowerState.poweredOn:
        run(vm.PowerOnVM_Task())
    return vm


def snap(vm, name, memory=False, quiesce=False):
    return run(vm.CreateSnapshot_Task(name=name, description=name, memory=memory,
                                      quiesce=quiesce)).info.result


def tree(vm):
    """The snapshot tree as nested (name, [children]) tuples; [] if none."""
    def walk(nodes):
        return [(n.name, walk(n.childSnapshotList)) for n in nodes]
    return walk(vm.snapshot.rootSnapshotList) if vm.snapshot else []


def current(vm):
    return vm.snapshot.currentSnapshot if vm.snapshot else None


def test_inventory(si):
    about = si.RetrieveContent().about
    assert about.apiType == "HostAgent"  # the ESX model, not vCenter
    vms = all_vms(si)
    assert set(vms) == VM_NAMES
    for vm in vms.values():
        assert vm.runtime.powerState == vim.VirtualMachinePowerState.poweredOn
        assert vm.runtime.host.name == "localhost.localdomain"
        assert vm.snapshot is None


def test_wrong_password_rejected(vcsim):
    with pytest.raises(vim.fault.InvalidLogin):
        SmartConnect(host=vcsim.host, port=vcsim.port, user=vcsim.user, pwd="wrong",
                     disableSslCertValidation=True)


def test_unset_snapshot_property(si, vm):
    # RetrieveContents reports an unset property as absent: no propSet entry
    # and no missingSet fault.
    pc = si.RetrieveContent().propertyCollector
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=vm)],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.VirtualMachine,
                                                           pathSet=["snapshot"])])
    [content] = pc.RetrieveContents([spec])
    assert content.obj == vm
    assert list(content.propSet) == [] and list(content.missingSet) == []
    # Attribute access goes through PropertyCollector.Fetch, which panicked
    # on MissingSet[0] before patch hunk 1.
    assert vm.snapshot is None


def test_create_memory_and_quiesce(vm):
    task = run(vm.CreateSnapshot_Task(name="mem", description="d", memory=True, quiesce=False))
    s_mem = task.info.result
    assert isinstance(s_mem, vim.vm.Snapshot)
    assert task.info.entity == vm
    s_q = snap(vm, "quiesced", memory=False, quiesce=True)
    [root] = vm.snapshot.rootSnapshotList
    assert (root.name, root.description, root.quiesced, root.snapshot) == ("mem", "d", False, s_mem)
    [child] = root.childSnapshotList
    assert (child.name, child.quiesced, child.snapshot) == ("quiesced", True, s_q)
    assert current(vm) == s_q
    assert s_q.vm == vm


def test_nested_tree(vm):
    a = snap(vm, "a")
    snap(vm, "b")
    snap(vm, "c")
    run(a.RevertToSnapshot_Task())
    d = snap(vm, "d")  # new snapshots hang below the current one
    assert tree(vm) == [("a", [("b", [("c", [])]), ("d", [])])]
    assert current(vm) == d
    assert [s.config is not None for s in a.childSnapshot] == [True, True]


def test_revert_task_info(vm):
    a = snap(vm, "a")
    snap(vm, "b")
    task = run(a.RevertToSnapshot_Task())
    # pyvmomi rejected task.info before patch hunk 2 (entity was the snapshot).
    assert task.info.entity == vm
    assert task.info.state == vim.TaskInfo.State.success
    assert task.info.error is None
    assert current(vm) == a


def test_remove_keep_children(vm):
    snap(vm, "a")
    b = snap(vm, "b")
    c = snap(vm, "c")
    task = run(b.RemoveSnapshot_Task(removeChildren=False))
    assert task.info.entity == vm
    assert tree(vm) == [("a", [("c", [])])]
    assert current(vm) == c
    with pytest.raises(vmodl.fault.ManagedObjectNotFound):
        _ = b.config


def test_remove_with_children(vm):
    a = snap(vm, "a")
    b = snap(vm, "b")
    snap(vm, "c")
    run(b.RemoveSnapshot_Task(removeChildren=True))
    assert tree(vm) == [("a", [])]
    # The current snapshot (c) was in the removed subtree: it moves to b's
    # parent (patch hunk 4), and creating a snapshot afterwards works.
    assert current(vm) == a
    snap(vm, "d")
    assert tree(vm) == [("a", [("d", [])])]


def test_remove_current_root(vm):
    a = snap(vm, "a")
    b = snap(vm, "b")
    run(a.RevertToSnapshot_Task())
    # Current is a root: panicked before patch hunk 3.
    run(a.RemoveSnapshot_Task(removeChildren=False))
    assert tree(vm) == [("b", [])]
    assert vm.snapshot.rootSnapshotList[0].snapshot == b
    assert current(vm) is None
    # Removing the only, current snapshot clears vm.snapshot entirely.
    run(vm.RemoveAllSnapshots_Task())
    c = snap(vm, "c")
    run(c.RemoveSnapshot_Task(removeChildren=False))
    assert vm.snapshot is None


def test_remove_all(vm):
    a = snap(vm, "a")
    snap(vm, "b")
    task = run(vm.RemoveAllSnapshots_Task())
    assert task.info.entity == vm
    assert vm.snapshot is None
    with pytest.raises(vmodl.fault.ManagedObjectNotFound):
        _ = a.config


def test_rename_snapshot_missing_vcsim_gap(vm):
    # Real ESX implements RenameSnapshot; govmomi 0.24.2 does not.
    a = snap(vm, "a")
    with pytest.raises(vmodl.fault.MethodNotFound):
        a.RenameSnapshot(name="renamed")


def test_power_state_vcsim_gaps(vm):
    # memory=False still records the VM's power state (real ESX: poweredOff).
    snap(vm, "disk-only", memory=False)
    assert vm.snapshot.rootSnapshotList[0].state == vim.VirtualMachinePowerState.poweredOn
    # Revert never changes power state (real ESX powers off for a disk-only
    # snapshot, and restores a memory snapshot's power state).
    run(vm.PowerOffVM_Task())
    mem = snap(vm, "off")
    run(vm.PowerOnVM_Task())
    run(mem.RevertToSnapshot_Task())
    assert vm.runtime.powerState == vim.VirtualMachinePowerState.poweredOn


def test_remove_children_leaves_objects_vcsim_gap(vm):
    snap(vm, "a")
    b = snap(vm, "b")
    c = snap(vm, "c")
    run(b.RemoveSnapshot_Task(removeChildren=True))
    assert tree(vm) == [("a", [])]
    # Real ESX deletes c too; vcsim keeps the object reachable by MoRef.
    assert c.config is not None


def test_certificate_verification(vcsim):
    login = dict(host=vcsim.host, port=vcsim.port, user=vcsim.user, pwd=vcsim.password)
    # Default trust store: the self-signed certificate is rejected.
    with pytest.raises(ssl.SSLCertVerificationError):
        SmartConnect(sslContext=ssl.create_default_context(), **login)
    # Trusting exactly the served certificate (it has IP SAN 127.0.0.1, so
    # hostname checking stays on) succeeds.
    si = SmartConnect(**vcsim.connect_kwargs(verify=True))
    try:
        assert si.RetrieveContent().about.apiType == "HostAgent"
    finally:
        Disconnect(si)
    # Beware: with no sslContext at all, pyvmomi's SmartConnect silently
    # disables verification for localhost/127.0.0.1/::1, so "default settings"
    # do not fail here. The driver must pass its own context to verify.
    si = SmartConnect(**login)
    Disconnect(si)
