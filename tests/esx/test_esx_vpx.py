"""vpx://vcenter/datacenter/cluster/host against vcsim's vCenter model (DC0, cluster DC0_C0, host DC0_H0)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import pyVmomi  # noqa: F401  (the esx extra: a missing pyVmomi is an error, not a skip)

import virtsnap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest_vcsim import make_vcsim_fixture
from esxutil import create, current, open_auth, raw_si, raw_vm

vcsim = make_vcsim_fixture(scope="module", model="vpx")


def host_vms(srv: Any, inventory_path: str) -> set[str]:
    with raw_si(srv) as si:
        host = si.RetrieveContent().searchIndex.FindByInventoryPath(inventory_path)
        return {vm.name for vm in host.vm}


@pytest.mark.parametrize("path, inventory", [
    ("/DC0/DC0_C0/DC0_C0_H0", "DC0/host/DC0_C0/DC0_C0_H0"),
    ("/DC0/DC0_C0/DC0_C0_H1", "DC0/host/DC0_C0/DC0_C0_H1"),
    ("/DC0/DC0_H0", "DC0/host/DC0_H0/DC0_H0"),  # a standalone host: its compute resource has one host
    ("/DC0/DC0_H0/DC0_H0", "DC0/host/DC0_H0/DC0_H0"),
])
def test_paths_select_one_host(vcsim: Any, path: str, inventory: str) -> None:
    conn = open_auth(vcsim, scheme="vpx", path=path)
    try:
        assert conn.getType() == "ESX"
        assert {d.name() for d in conn.listAllDomains()} == host_vms(vcsim, inventory)
        assert conn.getHostname() == inventory.rsplit("/", 1)[1]
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["/DC9/DC0_C0/DC0_C0_H0", "/DC0/nocluster/x", "/DC0/DC0_C0",
                                  "/DC0/DC0_C0/nohost", "/DC0/DC0_C0/DC0_C0_H0/extra"])
def test_bad_paths(vcsim: Any, path: str) -> None:
    with pytest.raises(virtsnap.libvirtError) as exc:
        open_auth(vcsim, scheme="vpx", path=path)
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_INVALID_ARG


def test_esx_uri_against_vcenter(vcsim: Any) -> None:
    with pytest.raises(virtsnap.libvirtError) as exc:
        open_auth(vcsim)
    assert exc.value.get_error_code() == virtsnap.VIR_ERR_NO_CONNECT
    assert "vpx://" in str(exc.value)


def test_snapshots_through_vcenter(vcsim: Any) -> None:
    conn = open_auth(vcsim, scheme="vpx", path="/DC0/DC0_H0")
    try:
        dom = conn.lookupByName("DC0_H0_VM0")
        a = create(dom, "a")
        create(dom, "b")
        dom.revertToSnapshot(a, virtsnap.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED)
        assert current(dom) == "a" and dom.state()[0] == virtsnap.VIR_DOMAIN_PAUSED
        a.delete(virtsnap.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)
        assert dom.snapshotNum() == 0
        with raw_si(vcsim) as si:
            assert raw_vm(si, "DC0_H0_VM0").snapshot is None
    finally:
        conn.close()
