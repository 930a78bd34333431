"""Domains on vcsim through the public API: list, lookups, state, info, XML, power operations."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import pyVmomi  # noqa: F401  (the esx extra: a missing pyVmomi is an error, not a skip)

import virtsnap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest_vcsim import make_vcsim_fixture
from esxutil import VM0, VM1, open_auth, raw_si, raw_vm, reset_vm, run

vcsim = make_vcsim_fixture(scope="module")
L = virtsnap


@pytest.fixture(scope="module")
def conn(vcsim: Any) -> Any:
    conn = open_auth(vcsim)
    yield conn
    conn.close()


@pytest.fixture
def si(vcsim: Any) -> Any:
    with raw_si(vcsim) as si:
        yield si


@pytest.fixture
def dom(conn: Any, si: Any) -> Any:
    reset_vm(si, VM0, "poweredOn")
    return conn.lookupByName(VM0)


def test_list_and_lookups(conn: Any, si: Any) -> None:
    reset_vm(si, VM1, "poweredOff")
    doms = {d.name(): d for d in conn.listAllDomains()}
    assert set(doms) == {VM0, VM1}
    vm0 = raw_vm(si, VM0)
    assert doms[VM0].UUIDString() == vm0.config.uuid
    assert doms[VM0].ID() == int(vm0._moId.split("-")[1])  # libvirt: the number in the MoRef
    assert doms[VM1].ID() == -1
    assert conn.lookupByUUIDString(vm0.config.uuid).name() == VM0
    assert conn.lookupByUUIDString(vm0.config.uuid.upper()).name() == VM0
    assert conn.lookupByID(doms[VM0].ID()).name() == VM0
    assert [d.name() for d in conn.listAllDomains(L.VIR_CONNECT_LIST_DOMAINS_ACTIVE)] == [VM0]
    assert [d.name() for d in conn.listAllDomains(L.VIR_CONNECT_LIST_DOMAINS_SHUTOFF)] == [VM1]
    assert conn.listDefinedDomains() == [VM1]
    assert conn.numOfDomains() == 1
    for bad in (lambda: conn.lookupByName("nope"), lambda: conn.lookupByID(424242),
                lambda: conn.lookupByUUIDString("00000000-0000-0000-0000-000000000001")):
        with pytest.raises(virtsnap.libvirtError) as exc:
            bad()
        assert exc.value.get_error_code() == L.VIR_ERR_NO_DOMAIN
    reset_vm(si, VM1, "poweredOn")


def test_state_info_xml(dom: Any) -> None:
    assert dom.state() == [L.VIR_DOMAIN_RUNNING, 0]
    assert dom.isActive() == 1 and dom.isPersistent() == 1
    state, max_mem, mem, vcpus, _ = dom.info()
    assert (state, max_mem, mem, vcpus) == (L.VIR_DOMAIN_RUNNING, 32 * 1024, 32 * 1024, 1)
    xml = dom.XMLDesc()
    assert f"<name>{VM0}</name>" in xml and f"<uuid>{dom.UUIDString()}</uuid>" in xml
    assert f"<domain type='vmware' id='{dom.ID()}'>" in xml
    assert "<memory unit='KiB'>32768</memory>" in xml and "<vcpu placement='static'>1</vcpu>" in xml
    assert f"<source file='[LocalDS_0] {VM0}/disk1.vmdk'/>" in xml and "<target dev='sda' bus='scsi'/>" in xml
    assert "id=" not in dom.XMLDesc(L.VIR_DOMAIN_XML_INACTIVE).splitlines()[0]


def test_power_cycle(conn: Any, dom: Any) -> None:
    dom.suspend()
    assert dom.state()[0] == L.VIR_DOMAIN_PAUSED
    dom.resume()
    assert dom.state()[0] == L.VIR_DOMAIN_RUNNING
    dom.destroy()
    assert dom.state()[0] == L.VIR_DOMAIN_SHUTOFF and dom.ID() == -1
    dom.create()
    assert dom.state()[0] == L.VIR_DOMAIN_RUNNING and dom.ID() > 0
    dom.shutdown()  # VMware Tools' ShutdownGuest (vcsim powers off at once)
    assert dom.state()[0] == L.VIR_DOMAIN_SHUTOFF


@pytest.mark.parametrize("op, power", [
    ("create", "poweredOn"), ("create", "suspended"), ("resume", "poweredOn"), ("resume", "poweredOff"),
    ("suspend", "poweredOff"), ("suspend", "suspended"), ("shutdown", "poweredOff"), ("destroy", "poweredOff"),
])
def test_power_ops_in_wrong_state(conn: Any, si: Any, op: str, power: str) -> None:
    reset_vm(si, VM0, power)
    dom = conn.lookupByName(VM0)
    with pytest.raises(virtsnap.libvirtError) as exc:
        getattr(dom, op)()
    assert exc.value.get_error_code() == L.VIR_ERR_OPERATION_INVALID
    assert raw_vm(si, VM0).runtime.powerState == power


def test_destroy_suspended(conn: Any, si: Any) -> None:
    reset_vm(si, VM0, "suspended")
    conn.lookupByName(VM0).destroy()
    assert raw_vm(si, VM0).runtime.powerState == "poweredOff"


def test_define_undefine_unsupported(conn: Any, dom: Any) -> None:
    with pytest.raises(virtsnap.libvirtError) as exc:
        conn.defineXML("<domain type='vmware'><name>x</name></domain>")
    assert exc.value.get_error_code() == L.VIR_ERR_NO_SUPPORT
    with pytest.raises(virtsnap.libvirtError) as exc:
        dom.undefine()
    assert exc.value.get_error_code() == L.VIR_ERR_NO_SUPPORT


def test_domain_removed_behind_our_back(conn: Any, si: Any) -> None:
    # Last test of the module: it destroys VM1.
    dom = conn.lookupByName(VM1)
    vm = reset_vm(si, VM1, "poweredOff")
    run(vm.Destroy_Task())
    with pytest.raises(virtsnap.libvirtError) as exc:
        dom.state()
    assert exc.value.get_error_code() == L.VIR_ERR_NO_DOMAIN
    assert [d.name() for d in conn.listAllDomains()] == [VM0]
