"""Helpers shared by the ESX driver tests: open virtsnap on a vcsim, and reach the same vcsim with raw pyvmomi.

Raw pyvmomi is used only to set the scene and to check what vSphere holds; assertions about behaviour go
through virtsnap's public API.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim

import virtsnap

VM0 = "ha-host_VM0"
VM1 = "ha-host_VM1"


def uri(srv: Any, params: str = "no_verify=1", scheme: str = "esx", path: str = "/", user: bool = True) -> str:
    who = f"{srv.user}@" if user else ""
    query = f"?{params}" if params else ""
    return f"{scheme}://{who}{srv.host}:{srv.port}{path}{query}"


def open_conn(srv: Any, monkeypatch: Any, params: str = "no_verify=1", **kw: Any) -> virtsnap.virConnect:
    """virtsnap.open with the password from $VIRTSNAP_ESX_PASSWORD (and no auth file)."""
    isolate_auth(monkeypatch)
    monkeypatch.setenv("VIRTSNAP_ESX_PASSWORD", srv.password)
    return virtsnap.open(uri(srv, params, **kw))


def isolate_auth(monkeypatch: Any) -> None:
    """No auth file, no CA override from the caller's environment."""
    for var in ("VIRTSNAP_AUTH_CONFIG", "LIBVIRT_AUTH_FILE", "VIRTSNAP_ESX_CACERT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent")


@contextmanager
def raw_si(srv: Any) -> Iterator[Any]:
    si = SmartConnect(**srv.connect_kwargs())
    try:
        yield si
    finally:
        Disconnect(si)


def raw_vm(si: Any, name: str) -> Any:
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        return next(vm for vm in view.view if vm.name == name)
    finally:
        view.Destroy()


def run(task: Any) -> Any:
    WaitForTask(task)
    return task.info.result


def reset_vm(si: Any, name: str = VM0, power: str = "poweredOn") -> Any:
    """No snapshots, the given power state."""
    vm = raw_vm(si, name)
    run(vm.RemoveAllSnapshots_Task())
    state = vm.runtime.powerState
    if state != power:
        if power == "poweredOff":
            run(vm.PowerOffVM_Task())
        elif power == "poweredOn":
            run(vm.PowerOnVM_Task())
        else:  # suspended
            if state == "poweredOff":
                run(vm.PowerOnVM_Task())
            run(vm.SuspendVM_Task())
    return vm


def raw_tree(vm: Any) -> list[Any]:
    """vSphere's tree as nested (name, [children]) tuples."""
    def walk(nodes: Any) -> list[Any]:
        return [(n.name, walk(n.childSnapshotList)) for n in nodes]
    return walk(vm.snapshot.rootSnapshotList) if vm.snapshot else []


def raw_current(vm: Any) -> str | None:
    """The name of vSphere's own current snapshot (vm.snapshot.currentSnapshot), read without virtsnap."""
    if not vm.snapshot or vm.snapshot.currentSnapshot is None:
        return None
    todo = list(vm.snapshot.rootSnapshotList)
    while todo:
        node = todo.pop()
        if node.snapshot == vm.snapshot.currentSnapshot:
            return str(node.name)
        todo.extend(node.childSnapshotList)
    raise AssertionError("vSphere's current snapshot is not in its tree")


def create(dom: Any, name: str, flags: int = 0, description: str | None = None) -> Any:
    desc = f"<description>{description}</description>" if description else ""
    return dom.snapshotCreateXML(f"<domainsnapshot><name>{name}</name>{desc}</domainsnapshot>", flags)


def current(dom: Any) -> str | None:
    return dom.snapshotCurrent().getName() if dom.hasCurrentSnapshot() else None


def code(exc_info: Any) -> int:
    return int(exc_info.value.get_error_code())


def password_callback(password: str, user: str | None = None) -> list[Any]:
    """An openAuth credential list answering PASSPHRASE (and AUTHNAME when `user` is given)."""
    def callback(creds: list[list[Any]], cbdata: Any) -> int:
        for cred in creds:
            if cred[0] == virtsnap.VIR_CRED_PASSPHRASE:
                cred[4] = password
            elif cred[0] == virtsnap.VIR_CRED_AUTHNAME:
                cred[4] = user
        return 0
    return [[virtsnap.VIR_CRED_AUTHNAME, virtsnap.VIR_CRED_PASSPHRASE], callback, None]


def open_auth(srv: Any, params: str = "no_verify=1", **kw: Any) -> virtsnap.virConnect:
    """openAuth with the password from a callback: needs no environment, so module fixtures can use it."""
    return virtsnap.openAuth(uri(srv, params, **kw), password_callback(srv.password), 0)
