"""The vbox driver through the public API (`virtsnap.open('vbox:///session')`) against the fake VBoxManage.

Each test checks the result and, where it matters, the exact VBoxManage argument lists that ran.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from vboxfake import ALPHA, BETA, BETA_DESCRIPTION, BETA_NAME, GAMMA, FakeVBox, install_fake

import virtsnap
from virtsnap.conf.domain_xml import DomainDef
from virtsnap.conf.snapshot_xml import ParseMode, parse_snapshot
from virtsnap.drivers.vbox.driver import VBoxDriver, _build_tree, _translate
from virtsnap.drivers.vbox.parse import SnapshotListing, SnapshotNode
from virtsnap.drivers.vbox.runner import CommandError, Runner, VBoxTimeoutError
from virtsnap.errors import ErrorCode

F = virtsnap  # flag constants: virtsnap.VIR_DOMAIN_SNAPSHOT_*


@pytest.fixture
def conn(fake_vbox: FakeVBox) -> Iterator[virtsnap.virConnect]:
    connection = virtsnap.open("vbox:///session")
    fake_vbox.clear_log()
    yield connection
    connection.close()


def snap_xml(name: str, description: str | None = None, extra: str = "") -> str:
    desc = f"<description>{description}</description>" if description is not None else ""
    return f"<domainsnapshot><name>{name}</name>{desc}{extra}</domainsnapshot>"


def code_of(exc: pytest.ExceptionInfo[virtsnap.libvirtError]) -> int:
    return exc.value.get_error_code()


def driver(conn: virtsnap.virConnect) -> VBoxDriver:
    drv = conn.driver
    assert isinstance(drv, VBoxDriver)
    return drv


# -- connection and domains ---------------------------------------------------------------------------------
def test_open_lists_accessible_machines_with_ids(conn: virtsnap.virConnect) -> None:
    doms = conn.listAllDomains()
    assert [(d.name(), d.UUIDString(), d.ID()) for d in doms] == [
        ("alpha", ALPHA, -1), (BETA_NAME, BETA, 2), ("gamma", GAMMA, -1)]
    assert conn.getType() == "VBOX"
    assert conn.getURI() == "vbox:///session"
    assert [d.name() for d in conn.listAllDomains(F.VIR_CONNECT_LIST_DOMAINS_ACTIVE)] == [BETA_NAME]
    assert driver(conn).version == "7.0.14r161095"
    assert conn.getVersion() == 7_000_014  # VirtualBox's version in libvirt's numbering, as libvirt's vbox driver
    caps = ET.fromstring(conn.getCapabilities())
    assert [(g.findtext("os_type"), g.find("arch").get("name"), g.find("arch/domain").get("type"))
            for g in caps.findall("guest")] == [("hvm", "i686", "vbox"), ("hvm", "x86_64", "vbox")]
    model, _mib, cpus, *_ = conn.getInfo()  # the host VirtualBox runs on: this one
    assert (model, cpus) == (os.uname().machine, os.cpu_count())


def test_lookups_by_name_and_uuid(conn: virtsnap.virConnect) -> None:
    assert conn.lookupByName(BETA_NAME).UUIDString() == BETA
    assert conn.lookupByUUIDString(ALPHA.upper()).name() == "alpha"
    assert conn.lookupByID(2).name() == BETA_NAME
    with pytest.raises(virtsnap.libvirtError) as exc:
        conn.lookupByName("nope")
    assert code_of(exc) == virtsnap.VIR_ERR_NO_DOMAIN
    assert exc.value.get_error_domain() == virtsnap.VIR_FROM_VBOX


def test_states_and_info(conn: virtsnap.virConnect) -> None:
    assert conn.lookupByName("alpha").state() == [virtsnap.VIR_DOMAIN_SHUTOFF, 0]
    assert conn.lookupByName(BETA_NAME).state() == [virtsnap.VIR_DOMAIN_RUNNING, 0]
    assert conn.lookupByName("gamma").state() == [virtsnap.VIR_DOMAIN_SHUTOFF, 3]  # aborted: crashed
    assert conn.lookupByName(BETA_NAME).info() == [virtsnap.VIR_DOMAIN_RUNNING, 2048 * 1024, 2048 * 1024, 4, 0]
    assert conn.lookupByName(BETA_NAME).isActive() == 1


def test_dumpxml_name_uuid_memory_vcpus_disks(conn: virtsnap.virConnect) -> None:
    alpha = DomainDef.parse(conn.lookupByName("alpha").XMLDesc())
    assert (alpha.type, alpha.name, alpha.uuid, alpha.memory_kib, alpha.vcpus) == ("vbox", "alpha", ALPHA,
                                                                                   1024 * 1024, 2)
    disks = [(d.target, d.device, d.bus, d.source, d.readonly) for d in alpha.disks()]
    assert disks == [("sda", "disk", "sata", f"{os.environ['VBOX_FAKE_STATE'].rsplit('/', 1)[0]}/{ALPHA}.vdi", False),
                     ("hdc", "cdrom", "ide", "/srv/iso/debian-12.iso", True),
                     ("hdd", "cdrom", "ide", None, True)]
    beta_xml = conn.lookupByName(BETA_NAME).XMLDesc()
    assert beta_xml.startswith("<domain type='vbox' id='2'>")
    beta = DomainDef.parse(beta_xml)
    assert beta.name == BETA_NAME and beta.node.findtext("description") == BETA_DESCRIPTION
    assert "id=" not in conn.lookupByName(BETA_NAME).XMLDesc(virtsnap.VIR_DOMAIN_XML_INACTIVE)


def test_lifecycle_start_shutdown_destroy_suspend_resume(conn: virtsnap.virConnect, fake_vbox: FakeVBox) -> None:
    alpha = conn.lookupByName("alpha")
    alpha.create()
    assert alpha.state()[0] == virtsnap.VIR_DOMAIN_RUNNING and alpha.ID() == 1
    alpha.suspend()
    assert alpha.state()[0] == virtsnap.VIR_DOMAIN_PAUSED
    with pytest.raises(virtsnap.libvirtError) as exc:
        alpha.shutdown()  # a paused guest cannot see the ACPI button
    assert code_of(exc) == virtsnap.VIR_ERR_OPERATION_INVALID
    alpha.resume()
    alpha.shutdown()
    assert alpha.state()[0] == virtsnap.VIR_DOMAIN_SHUTOFF
    alpha.create()
    alpha.destroy()
    assert alpha.state()[0] == virtsnap.VIR_DOMAIN_SHUTOFF
    calls = [c for c in fake_vbox.calls() if c[0] in ("startvm", "controlvm")]
    assert calls == [["startvm", ALPHA, "--type", "headless"], ["controlvm", ALPHA, "pause"],
                     ["controlvm", ALPHA, "resume"], ["controlvm", ALPHA, "acpipowerbutton"],
                     ["startvm", ALPHA, "--type", "headless"], ["controlvm", ALPHA, "poweroff"]]


@pytest.mark.parametrize(("call", "name"), [
    ("create", BETA_NAME), ("shutdown", "alpha"), ("destroy", "alpha"), ("suspend", "alpha"), ("resume", BETA_NAME),
])
def test_lifecycle_in_the_wrong_state_is_operation_invalid(conn: virtsnap.virConnect, fake_vbox: FakeVBox,
                                                           call: str, name: str) -> None:
    with pytest.raises(virtsnap.libvirtError) as exc:
        getattr(conn.lookupByName(name), call)()
    assert code_of(exc) == virtsnap.VIR_ERR_OPERATION_INVALID
    assert not [c for c in fake_vbox.calls() if c[0] in ("startvm", "controlvm")]


def test_machine_removed_behind_our_back_is_no_domain(conn: virtsnap.virConnect, fake_vbox: FakeVBox) -> None:
    gamma = conn.lookupByName("gamma")
    fake_vbox.update(lambda s: s.update(vms=[vm for vm in s["vms"] if vm["uuid"] != GAMMA]))
    with pytest.raises(virtsnap.libvirtError) as exc:
        gamma.state()
    assert code_of(exc) == virtsnap.VIR_ERR_NO_DOMAIN
    assert "VBOX_E_OBJECT_NOT_FOUND" in str(exc.value)


# -- snapshot creation ---------------------------------------------------------------------------------------
def test_create_passes_name_and_description_as_single_arguments(conn: virtsnap.virConnect,
                                                                fake_vbox: FakeVBox) -> None:
    alpha = conn.lookupByName("alpha")
    description = '-leading dash, "quotes", \\ and\na newline'
    snap = alpha.snapshotCreateXML(snap_xml("first ✓", description.replace("&", "&amp;").replace('"', "&quot;")))
    assert snap.getName() == "first ✓"
    takes = [c for c in fake_vbox.calls() if c[:1] == ["snapshot"] and c[2] == "take"]
    assert takes == [["snapshot", ALPHA, "take", "first ✓", f"--description={description}"]]
    parsed = parse_snapshot(snap.getXMLDesc(), ParseMode.REDEFINE)
    assert parsed.description == description
    assert parsed.state.xml == "shutoff"
    assert abs(parsed.creation_time - time.time()) < 60
    assert all(e["LC_ALL"] == "C.UTF-8" for e in fake_vbox.log_entries())


def test_create_in_create_mode_ignores_redefine_fields(conn: virtsnap.virConnect) -> None:
    alpha = conn.lookupByName("alpha")
    extra = "<state>running</state><parent><name>ghost</name></parent><creationTime>5</creationTime>"
    snap = alpha.snapshotCreateXML(snap_xml("s1", extra=extra))
    xml = snap.getXMLDesc()
    assert "<state>shutoff</state>" in xml and "ghost" not in xml and "<creationTime>5<" not in xml


def test_default_name_is_the_creation_time(conn: virtsnap.virConnect) -> None:
    snap = conn.lookupByName("alpha").snapshotCreateXML("<domainsnapshot/>")
    assert abs(int(snap.getName()) - time.time()) < 60


def test_live_snapshot_of_running_machine(conn: virtsnap.virConnect, fake_vbox: FakeVBox) -> None:
    beta = conn.lookupByName(BETA_NAME)
    snap = beta.snapshotCreateXML(snap_xml("live"), F.VIR_DOMAIN_SNAPSHOT_CREATE_LIVE)
    assert ["snapshot", BETA, "take", "live", "--live"] in fake_vbox.calls()
    xml = snap.getXMLDesc()
    assert "<state>running</state>" in xml and "<memory snapshot='internal'/>" in xml
    assert f"<domain>\n    <uuid>{BETA}</uuid>\n  </domain>" in xml
    assert beta.state()[0] == virtsnap.VIR_DOMAIN_RUNNING


def test_halt_powers_off_after_the_snapshot(conn: virtsnap.virConnect, fake_vbox: FakeVBox) -> None:
    beta = conn.lookupByName(BETA_NAME)
    snap = beta.snapshotCreateXML(snap_xml("halted"), F.VIR_DOMAIN_SNAPSHOT_CREATE_HALT)
    assert beta.state()[0] == virtsnap.VIR_DOMAIN_SHUTOFF
    assert "<state>running</state>" in snap.getXMLDesc()
    changes = [c for c in fake_vbox.calls() if c[0] == "controlvm" or "take" in c]
    assert changes == [["snapshot", BETA, "take", "halted"], ["controlvm", BETA, "poweroff"]]


@pytest.mark.parametrize(("flags", "code"), [
    (F.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY, virtsnap.VIR_ERR_CONFIG_UNSUPPORTED),
    (F.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE, virtsnap.VIR_ERR_NO_SUPPORT),
    (F.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY | F.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE,
     virtsnap.VIR_ERR_CONFIG_UNSUPPORTED),
    (F.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA, virtsnap.VIR_ERR_NO_SUPPORT),
    (F.VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT, virtsnap.VIR_ERR_CONFIG_UNSUPPORTED),
])
def test_impossible_create_flags_are_refused_before_anything_runs(conn: virtsnap.virConnect, fake_vbox: FakeVBox,
                                                                  flags: int, code: int) -> None:
    dom = conn.lookupByName(BETA_NAME)
    fake_vbox.clear_log()
    with pytest.raises(virtsnap.libvirtError) as exc:
        dom.snapshotCreateXML(snap_xml("nope"), flags)
    assert code_of(exc) == code
    assert "VirtualBox" in exc.value.get_error_message()
    assert fake_vbox.calls() == []


@pytest.mark.parametrize(("name", "extra", "flags"), [
    ("alpha", "<memory snapshot='external' file='/tmp/m'/>", 0),
    (BETA_NAME, "<memory snapshot='no'/>", 0),
    ("alpha", "<memory snapshot='internal'/>", 0),
    ("alpha", "<disks><disk name='sda' snapshot='external'/></disks>", 0),
    ("alpha", "<disks><disk name='sda' snapshot='no'/></disks>", 0),
    ("alpha", "<disks><disk name='vdz'/></disks>", 0),
])
def test_unsupported_create_xml_is_refused_before_take(conn: virtsnap.virConnect, fake_vbox: FakeVBox,
                                                       name: str, extra: str, flags: int) -> None:
    with pytest.raises(virtsnap.libvirtError) as exc:
        conn.lookupByName(name).snapshotCreateXML(snap_xml("s", extra=extra), flags)
    assert code_of(exc) == virtsnap.VIR_ERR_CONFIG_UNSUPPORTED
    assert not [c for c in fake_vbox.calls() if "take" in c]


def test_live_on_a_stopped_machine_is_invalid(conn: virtsnap.virConnect, fake_vbox: FakeVBox) -> None:
    with pytest.raises(virtsnap.libvirtError) as exc:
        conn.lookupByName("alpha").snapshotCreateXML(snap_xml("s"), F.VIR_DOMAIN_SNAPSHOT_CREATE_LIVE)
    assert code_of(exc) == virtsnap.VIR_ERR_OPERATION_INVALID
    assert not [c for c in fake_vbox.calls() if "take" in c]


def test_names_are_unique_at_our_api(conn: virtsnap.virConnect, fake_vbox: FakeVBox) -> None:
    alpha = conn.lookupByName("alpha")
    alpha.snapshotCreateXML(snap_xml("s1"))
    with pytest.raises(virtsnap.libvirtError) as exc:
        alpha.snapshotCreateXML(snap_xml("s1"))
    assert code_of(exc) == virtsnap.VIR_ERR_OPERATION_FAILED
    assert exc.value.get_error_message() == "operation failed: domain moment s1 already exists"
    assert len([c for c in fake_vbox.calls() if "take" in c]) == 1


def test_duplicate_names_made_outside_are_exposed_by_uuid(conn: virtsnap.virConnect, fake_vbox: FakeVBox) -> None:
    for _ in range(2):
        assert fake_vbox.run("snapshot", ALPHA, "take", "dup").returncode == 0
    alpha = conn.lookupByName("alpha")
    names = alpha.snapshotListNames()
    assert len(names) == 2 and all(n.startswith("dup@{") and n.endswith("}") for n in names)
    with pytest.raises(virtsnap.libvirtError) as exc:
        alpha.snapshotLookupByName("dup")
    assert code_of(exc) == virtsnap.VIR_ERR_NO_DOMAIN_SNAPSHOT
    with pytest.raises(virtsnap.libvirtError) as exc:
        alpha.snapshotCreateXML(snap_xml("dup"))
    assert code_of(exc) == virtsnap.VIR_ERR_OPERATION_FAILED
    # Renaming one resolves the clash: both get their plain names back.
    driver(conn).snapshot_edit(ALPHA, names[0], new_name="dup-1")
    assert sorted(alpha.snapshotListNames()) == ["dup", "dup-1"]


def test_locked_machine_is_resource_busy(conn: virtsnap.virConnect, fake_vbox: FakeVBox) -> None:
    fake_vbox.set_vm(ALPHA, locked=True)
    with pytest.raises(virtsnap.libvirtError) as exc:
        conn.lookupByName("alpha").snapshotCreateXML(snap_xml("s"))
    assert code_of(exc) == virtsnap.VIR_ERR_RESOURCE_BUSY
    assert "VBOX_E_INVALID_OBJECT_STATE" in str(exc.value)
    assert exc.value.__cause__ is not None  # raised from the VBoxManage failure


def test_busy_machine_is_refused_before_anything_runs(conn: virtsnap.virConnect, fake_vbox: FakeVBox) -> None:
    fake_vbox.set_vm(ALPHA, state="snapshotting")
    with pytest.raises(virtsnap.libvirtError) as exc:
        conn.lookupByName("alpha").snapshotCreateXML(snap_xml("s"))
    assert code_of(exc) == virtsnap.VIR_ERR_RESOURCE_BUSY
    assert not [c for c in fake_vbox.calls() if "take" in c]


# -- the tree ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tree_state(tmp_path_factory: pytest.TempPathFactory, fake_pycache: Path) -> tuple[str, str]:
    """The fake's state after building alpha's tree through the API once: (state JSON, its root dir)."""
    root = tmp_path_factory.mktemp("tree")
    with pytest.MonkeyPatch.context() as patch:
        fake = install_fake(root, patch, fake_pycache)
        with virtsnap.open("vbox:///session") as connection:
            alpha = connection.lookupByName("alpha")
            s1 = alpha.snapshotCreateXML(snap_xml("s1"))
            alpha.snapshotCreateXML(snap_xml("s2"))
            alpha.revertToSnapshot(s1)
            alpha.create()
            alpha.snapshotCreateXML(snap_xml("s3", "online one"))
            alpha.destroy()
        return fake.state_path.read_text(encoding="utf-8"), str(root)


@pytest.fixture
def tree(conn: virtsnap.virConnect, fake_vbox: FakeVBox, tree_state: tuple[str, str]) -> virtsnap.virDomain:
    """alpha with  s1 (offline) -> s2 (offline) ; s1 -> s3 (online, current), alpha powered off."""
    text, root = tree_state
    fake_vbox.state_path.write_text(text.replace(root, str(fake_vbox.root)), encoding="utf-8")
    alpha = conn.lookupByName("alpha")
    fake_vbox.clear_log()
    return alpha


def test_tree_current_parent_children_and_filters(tree: virtsnap.virDomain, fake_vbox: FakeVBox) -> None:
    alpha = tree
    assert sorted(alpha.snapshotListNames()) == ["s1", "s2", "s3"]
    assert alpha.snapshotListNames(F.VIR_DOMAIN_SNAPSHOT_LIST_ROOTS) == ["s1"]
    assert alpha.snapshotListNames(F.VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL) == ["s1", "s3", "s2"]
    assert sorted(alpha.snapshotListNames(F.VIR_DOMAIN_SNAPSHOT_LIST_LEAVES)) == ["s2", "s3"]
    assert alpha.snapshotListNames(F.VIR_DOMAIN_SNAPSHOT_LIST_NO_LEAVES) == ["s1"]
    assert alpha.snapshotListNames(F.VIR_DOMAIN_SNAPSHOT_LIST_ACTIVE) == ["s3"]
    assert sorted(alpha.snapshotListNames(F.VIR_DOMAIN_SNAPSHOT_LIST_INACTIVE)) == ["s1", "s2"]
    assert alpha.snapshotListNames(F.VIR_DOMAIN_SNAPSHOT_LIST_METADATA) == []
    assert alpha.snapshotNum(F.VIR_DOMAIN_SNAPSHOT_LIST_NO_METADATA) == 3
    assert alpha.snapshotNum(F.VIR_DOMAIN_SNAPSHOT_LIST_EXTERNAL) == 0
    assert alpha.snapshotCurrent().getName() == "s3"
    s1 = alpha.snapshotLookupByName("s1")
    assert s1.listChildrenNames() == ["s3", "s2"]  # newest first, as libvirt visits them
    assert s1.numChildren(F.VIR_DOMAIN_SNAPSHOT_LIST_DESCENDANTS) == 2
    assert alpha.snapshotLookupByName("s2").getParent().getName() == "s1"
    assert alpha.snapshotLookupByName("s3").isCurrent() == 1 and s1.isCurrent() == 0
    assert s1.hasMetadata() == 0 and alpha.hasCurrentSnapshot() == 1
    # Every query is one showvminfo and one `snapshot list`.
    fake_vbox.clear_log()
    alpha.listAllSnapshots(F.VIR_DOMAIN_SNAPSHOT_LIST_LEAVES | F.VIR_DOMAIN_SNAPSHOT_LIST_ACTIVE)
    assert fake_vbox.calls() == [["showvminfo", ALPHA, "--machinereadable"],
                                 ["snapshot", ALPHA, "list", "--machinereadable"]]


def test_snapshot_xml(tree: virtsnap.virDomain) -> None:
    xml = tree.snapshotLookupByName("s3").getXMLDesc()
    defn = parse_snapshot(xml, ParseMode.REDEFINE)
    assert (defn.name, defn.description, defn.parent, defn.state.xml) == ("s3", "online one", "s1", "running")
    assert "<memory snapshot='internal'/>" in xml
    assert "<disk name='sda' snapshot='internal'/>" in xml and "<disk name='hdc' snapshot='no'/>" in xml
    assert xml.index("<name>") < xml.index("<description>") < xml.index("<state>") < xml.index("<parent>") \
        < xml.index("<creationTime>") < xml.index("<memory") < xml.index("<disks>") < xml.index("<domain>")


def test_summaries_are_what_the_xml_says(tree: virtsnap.virDomain) -> None:
    """listAllSnapshotSummaries (what snapshot-list prints) agrees with every snapshot's XML."""
    from xml.etree import ElementTree

    expected = []
    for snap in tree.listAllSnapshots():
        root = ElementTree.fromstring(snap.getXMLDesc())
        created = root.findtext("creationTime")
        expected.append((snap.getName(), root.findtext("parent/name"), root.findtext("state"),
                         int(created) if created is not None else None))
    assert tree.listAllSnapshotSummaries() == expected and len(expected) == 3


def test_empty_tree(conn: virtsnap.virConnect) -> None:
    gamma = conn.lookupByName("gamma")
    assert gamma.snapshotNum() == 0 and gamma.hasCurrentSnapshot() == 0
    with pytest.raises(virtsnap.libvirtError) as exc:
        gamma.snapshotCurrent()
    assert code_of(exc) == virtsnap.VIR_ERR_NO_DOMAIN_SNAPSHOT
    assert [d.name() for d in conn.listAllDomains(F.VIR_CONNECT_LIST_DOMAINS_NO_SNAPSHOT)] == [
        "alpha", BETA_NAME, "gamma"]


def test_translated_messages_do_not_change_results(tree: virtsnap.virDomain, conn: virtsnap.virConnect,
                                                   fake_vbox: FakeVBox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VBOX_FAKE_TRANSLATE", "1")
    translated = virtsnap.open("vbox:///session")
    assert translated.lookupByName("gamma").snapshotNum() == 0  # the empty list, whatever its message
    assert translated.lookupByName("alpha").snapshotNum() == 3
    fake_vbox.set_vm(ALPHA, locked=True)
    with pytest.raises(virtsnap.libvirtError) as exc:
        translated.lookupByName("alpha").snapshotLookupByName("s2").delete()
    assert code_of(exc) == virtsnap.VIR_ERR_RESOURCE_BUSY and "Übersetzt" in str(exc.value)


def test_settings_file_missing_leaves_state_and_time_out(fake_vbox: FakeVBox) -> None:
    listing = SnapshotListing((SnapshotNode("aaaaaaaa-0000-4000-8000-000000000001", "a", "", None, ""),),
                              "aaaaaaaa-0000-4000-8000-000000000001")
    built = _build_tree(listing, {})
    moment = built.get("a")
    assert moment is not None and moment.state.xml == "nostate" and moment.creation_time == 0
    assert built.current is moment


# -- revert --------------------------------------------------------------------------------------------------
def test_revert_offline_snapshot(tree: virtsnap.virDomain, fake_vbox: FakeVBox) -> None:
    s2 = tree.snapshotLookupByName("s2")
    tree.revertToSnapshot(s2)
    assert tree.state() == [virtsnap.VIR_DOMAIN_SHUTOFF, 0] and tree.snapshotCurrent().getName() == "s2"
    s2_uuid = fake_vbox.vm(ALPHA)["current"]
    assert ["snapshot", ALPHA, "restore", s2_uuid] in fake_vbox.calls()


def test_revert_online_snapshot_leaves_the_machine_saved(tree: virtsnap.virDomain) -> None:
    tree.revertToSnapshot(tree.snapshotLookupByName("s3"))
    assert tree.state() == [virtsnap.VIR_DOMAIN_SHUTOFF, 4]  # VIR_DOMAIN_SHUTOFF_SAVED
    tree.create()  # resumes the saved state
    assert tree.state()[0] == virtsnap.VIR_DOMAIN_RUNNING


@pytest.mark.parametrize(("snapshot", "flag", "state"), [
    ("s3", F.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING, virtsnap.VIR_DOMAIN_RUNNING),
    ("s2", F.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING, virtsnap.VIR_DOMAIN_RUNNING),
    ("s3", F.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED, virtsnap.VIR_DOMAIN_PAUSED),
    ("s2", F.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED, virtsnap.VIR_DOMAIN_PAUSED),
])
def test_revert_running_or_paused_gives_what_was_asked(tree: virtsnap.virDomain, snapshot: str, flag: int,
                                                       state: int) -> None:
    tree.revertToSnapshot(tree.snapshotLookupByName(snapshot), flag)
    assert tree.state()[0] == state


def test_revert_of_a_running_machine_needs_force(tree: virtsnap.virDomain, fake_vbox: FakeVBox) -> None:
    tree.create()
    fake_vbox.clear_log()
    s2 = tree.snapshotLookupByName("s2")
    with pytest.raises(virtsnap.libvirtError) as exc:
        tree.revertToSnapshot(s2)
    assert code_of(exc) == virtsnap.VIR_ERR_SNAPSHOT_REVERT_RISKY
    assert not [c for c in fake_vbox.calls() if c[0] != "showvminfo" and "list" not in c]
    tree.revertToSnapshot(s2, F.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE | F.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING)
    changes = [c for c in fake_vbox.calls() if c[0] in ("controlvm", "startvm") or "restore" in c]
    assert [c[:3] for c in changes] == [["controlvm", ALPHA, "poweroff"], ["snapshot", ALPHA, "restore"],
                                        ["startvm", ALPHA, "--type"]]
    assert tree.state()[0] == virtsnap.VIR_DOMAIN_RUNNING


def test_revert_after_forced_power_off_waits_for_the_session(tree: virtsnap.virDomain, fake_vbox: FakeVBox) -> None:
    tree.create()
    # Right after a power-off the VM process may still hold the machine's session for a moment.
    fake_vbox.update(lambda s: s.update(inject=[{"argv": ["snapshot", "*", "restore"], "times": 2,
                                                 "kind": "locked"}]))
    tree.revertToSnapshot(tree.snapshotLookupByName("s2"), F.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE)
    assert tree.snapshotCurrent().getName() == "s2"
    assert len([c for c in fake_vbox.calls() if "restore" in c]) == 3


def test_locked_restore_without_power_off_is_not_retried(tree: virtsnap.virDomain, fake_vbox: FakeVBox) -> None:
    fake_vbox.update(lambda s: s.update(inject=[{"argv": ["snapshot", "*", "restore"], "kind": "locked"}]))
    with pytest.raises(virtsnap.libvirtError) as exc:
        tree.revertToSnapshot(tree.snapshotLookupByName("s2"))
    assert code_of(exc) == virtsnap.VIR_ERR_RESOURCE_BUSY
    assert len([c for c in fake_vbox.calls() if "restore" in c]) == 1


def test_revert_restores_the_configuration(conn: virtsnap.virConnect, fake_vbox: FakeVBox) -> None:
    alpha = conn.lookupByName("alpha")
    snap = alpha.snapshotCreateXML(snap_xml("small"))
    fake_vbox.set_vm(ALPHA, memory=4096)
    assert alpha.info()[1] == 4096 * 1024
    alpha.revertToSnapshot(snap)
    assert DomainDef.parse(alpha.XMLDesc()).memory_kib == 1024 * 1024


def test_revert_running_and_paused_are_exclusive(tree: virtsnap.virDomain) -> None:
    with pytest.raises(virtsnap.libvirtError) as exc:
        tree.revertToSnapshot(tree.snapshotLookupByName("s2"), F.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING
                              | F.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED)
    assert code_of(exc) == virtsnap.VIR_ERR_INVALID_ARG


# -- delete --------------------------------------------------------------------------------------------------
def test_delete_leaf_and_current(tree: virtsnap.virDomain) -> None:
    tree.snapshotLookupByName("s3").delete()
    assert sorted(tree.snapshotListNames()) == ["s1", "s2"]
    assert tree.snapshotCurrent().getName() == "s1"  # the deleted current's parent


def test_delete_with_one_child_reparents_it(tree: virtsnap.virDomain) -> None:
    tree.snapshotLookupByName("s3").delete()
    tree.snapshotLookupByName("s1").delete()
    assert tree.snapshotListNames(F.VIR_DOMAIN_SNAPSHOT_LIST_ROOTS) == ["s2"]


def test_delete_with_two_children_is_refused_before_anything_runs(tree: virtsnap.virDomain,
                                                                   fake_vbox: FakeVBox) -> None:
    with pytest.raises(virtsnap.libvirtError) as exc:
        tree.snapshotLookupByName("s1").delete()
    assert code_of(exc) == virtsnap.VIR_ERR_OPERATION_UNSUPPORTED
    assert not [c for c in fake_vbox.calls() if "delete" in c]


def test_delete_children_leaf_first(tree: virtsnap.virDomain, fake_vbox: FakeVBox) -> None:
    uuids = {s["name"]: sid for sid, s in fake_vbox.vm(ALPHA)["snapshots"].items()}
    tree.snapshotLookupByName("s1").delete(F.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)
    deletes = [c[3] for c in fake_vbox.calls() if c[:1] == ["snapshot"] and c[2] == "delete"]
    assert deletes == [uuids["s2"], uuids["s3"], uuids["s1"]]
    assert tree.snapshotNum() == 0 and tree.hasCurrentSnapshot() == 0


def test_delete_children_only(tree: virtsnap.virDomain) -> None:
    s1 = tree.snapshotLookupByName("s1")
    s1.delete(F.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY)
    assert tree.snapshotListNames() == ["s1"] and tree.snapshotCurrent().getName() == "s1"


def test_delete_metadata_only_is_no_support(tree: virtsnap.virDomain, fake_vbox: FakeVBox) -> None:
    s2 = tree.snapshotLookupByName("s2")
    fake_vbox.clear_log()
    with pytest.raises(virtsnap.libvirtError) as exc:
        s2.delete(F.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
    assert code_of(exc) == virtsnap.VIR_ERR_NO_SUPPORT
    assert fake_vbox.calls() == [] and tree.snapshotNum() == 3


def test_failure_in_a_series_says_what_was_deleted(tree: virtsnap.virDomain, fake_vbox: FakeVBox) -> None:
    fake_vbox.update(lambda s: s.update(inject=[{"argv": ["snapshot", "*", "delete"], "skip": 1, "times": 1,
                                                 "kind": "file_error"}]))
    with pytest.raises(virtsnap.libvirtError) as exc:
        tree.snapshotLookupByName("s1").delete(F.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)
    assert code_of(exc) == virtsnap.VIR_ERR_OPERATION_FAILED
    assert "1 of 3 snapshots were deleted" in str(exc.value) and "VBOX_E_FILE_ERROR" in str(exc.value)
    assert sorted(tree.snapshotListNames()) == ["s1", "s3"]


def test_snapshot_gone_behind_our_back(tree: virtsnap.virDomain, fake_vbox: FakeVBox) -> None:
    s2 = tree.snapshotLookupByName("s2")
    assert fake_vbox.run("snapshot", ALPHA, "delete", "s2").returncode == 0
    with pytest.raises(virtsnap.libvirtError) as exc:
        s2.getXMLDesc()
    assert code_of(exc) == virtsnap.VIR_ERR_NO_DOMAIN_SNAPSHOT


def test_vboxmanage_not_found_errors_are_classified(conn: virtsnap.virConnect) -> None:
    runner = driver(conn).runner
    with pytest.raises(CommandError) as snap_missing:
        runner.run("snapshot", ALPHA, "restore", "no such snapshot")
    assert _translate(snap_missing.value, ErrorCode.NO_DOMAIN_SNAPSHOT).code == ErrorCode.NO_DOMAIN_SNAPSHOT
    with pytest.raises(CommandError) as vm_missing:
        runner.run("snapshot", "no such vm", "restore", "x")
    assert _translate(vm_missing.value, ErrorCode.NO_DOMAIN_SNAPSHOT).code == ErrorCode.NO_DOMAIN
    with pytest.raises(CommandError) as syntax:
        runner.run("frobnicate")
    assert _translate(syntax.value, ErrorCode.NO_DOMAIN).code == ErrorCode.INTERNAL_ERROR


# -- edit ----------------------------------------------------------------------------------------------------
def test_redefine_changes_the_description(tree: virtsnap.virDomain, fake_vbox: FakeVBox) -> None:
    s2 = tree.snapshotLookupByName("s2")
    xml = s2.getXMLDesc()
    assert tree.snapshotCreateXML(xml, F.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE).getName() == "s2"
    assert not [c for c in fake_vbox.calls() if "edit" in c]  # an unchanged round trip edits nothing
    edited = xml.replace("<state>", "<description>new \"text\"</description>\n  <state>", 1)
    tree.snapshotCreateXML(edited, F.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
    s2_uuid = next(sid for sid, s in fake_vbox.vm(ALPHA)["snapshots"].items() if s["name"] == "s2")
    assert ["snapshot", ALPHA, "edit", s2_uuid, '--description=new "text"'] in fake_vbox.calls()
    assert parse_snapshot(s2.getXMLDesc(), ParseMode.REDEFINE).description == 'new "text"'


@pytest.mark.parametrize(("change", "code"), [
    (lambda x: x.replace("<name>s1</name>\n  </parent>", "<name>s3</name>\n  </parent>"),
     virtsnap.VIR_ERR_CONFIG_UNSUPPORTED),
    (lambda x: x.replace("<state>shutoff</state>", "<state>running</state>").replace(
        "<memory snapshot='no'/>", ""), virtsnap.VIR_ERR_INVALID_ARG),
    (lambda x: x.replace("<name>s2</name>", "<name>brand-new</name>", 1), virtsnap.VIR_ERR_NO_SUPPORT),
])
def test_redefine_refuses_what_virtualbox_owns(tree: virtsnap.virDomain, fake_vbox: FakeVBox,
                                               change: Any, code: int) -> None:
    xml = change(tree.snapshotLookupByName("s2").getXMLDesc())
    with pytest.raises(virtsnap.libvirtError) as exc:
        tree.snapshotCreateXML(xml, F.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
    assert code_of(exc) == code
    assert not [c for c in fake_vbox.calls() if "edit" in c]


def test_redefine_current_only_for_the_current_snapshot(tree: virtsnap.virDomain) -> None:
    flags = F.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE | F.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT
    tree.snapshotCreateXML(tree.snapshotLookupByName("s3").getXMLDesc(), flags)
    with pytest.raises(virtsnap.libvirtError) as exc:
        tree.snapshotCreateXML(tree.snapshotLookupByName("s2").getXMLDesc(), flags)
    assert code_of(exc) == virtsnap.VIR_ERR_NO_SUPPORT


def test_rename_through_the_driver(tree: virtsnap.virDomain, conn: virtsnap.virConnect) -> None:
    drv = driver(conn)
    assert drv.snapshot_edit(ALPHA, "s2", new_name="renamed ✓", description="d") == "renamed ✓"
    assert sorted(tree.snapshotListNames()) == ["renamed ✓", "s1", "s3"]
    assert "<description>d</description>" in tree.snapshotLookupByName("renamed ✓").getXMLDesc()
    with pytest.raises(virtsnap.libvirtError) as exc:
        drv.snapshot_edit(ALPHA, "s1", new_name="s3")
    assert code_of(exc) == virtsnap.VIR_ERR_OPERATION_FAILED
    with pytest.raises(virtsnap.libvirtError) as bad:
        drv.snapshot_edit(ALPHA, "s1", new_name="a/b")
    assert code_of(bad) == virtsnap.VIR_ERR_XML_ERROR


# -- the executable, the locale, timeouts ---------------------------------------------------------------------
def test_vboxmanage_missing_is_no_connect(fake_vbox: FakeVBox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTSNAP_VBOXMANAGE", str(fake_vbox.root / "nowhere" / "VBoxManage"))
    with pytest.raises(virtsnap.libvirtError) as exc:
        virtsnap.open("vbox:///session")
    assert code_of(exc) == virtsnap.VIR_ERR_NO_CONNECT and "VIRTSNAP_VBOXMANAGE" in str(exc.value)
    monkeypatch.delenv("VIRTSNAP_VBOXMANAGE")
    monkeypatch.setenv("PATH", str(fake_vbox.root / "nowhere"))
    with pytest.raises(virtsnap.libvirtError) as exc:
        virtsnap.open("vbox:///session")
    assert code_of(exc) == virtsnap.VIR_ERR_NO_CONNECT and "PATH" in str(exc.value)


def test_vboxmanage_found_on_path(fake_vbox: FakeVBox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIRTSNAP_VBOXMANAGE")
    monkeypatch.setenv("PATH", f"{fake_vbox.exe.parent}{os.pathsep}{os.environ['PATH']}")
    with virtsnap.open("vbox:///session") as connection:
        assert driver(connection).runner.executable == str(fake_vbox.exe)
        assert len(connection.listAllDomains()) == 3


def test_other_uris_are_refused(fake_vbox: FakeVBox) -> None:
    with pytest.raises(virtsnap.libvirtError) as exc:
        virtsnap.open("vbox:///system")
    assert exc.value.get_error_code() == ErrorCode.INTERNAL_ERROR
    assert "try vbox:///session" in str(exc.value)


def test_why_the_locale_is_c_utf8(fake_vbox: FakeVBox) -> None:
    # IPRT prints in the locale's code set; plain C would turn every non-ASCII character into '?'.
    ascii_out = fake_vbox.run("list", "vms", env={"LC_ALL": "C"}).stdout.decode()
    assert '"b?ta "?n?" \\ vm"' in ascii_out
    utf8_out = fake_vbox.run("list", "vms", env={"LC_ALL": "C.UTF-8"}).stdout.decode()
    assert f'"{BETA_NAME}"' in utf8_out


def test_timeout_is_operation_timeout(conn: virtsnap.virConnect, fake_vbox: FakeVBox) -> None:
    fake_vbox.update(lambda s: s.update(inject=[{"argv": ["list"], "kind": "sleep", "seconds": 5}]))
    driver(conn).runner.timeout = 0.5
    with pytest.raises(virtsnap.libvirtError) as exc:
        conn.listAllDomains()
    assert code_of(exc) == virtsnap.VIR_ERR_OPERATION_TIMEOUT
    assert isinstance(exc.value.__cause__, VBoxTimeoutError)


def test_runner_never_uses_a_shell(fake_vbox: FakeVBox) -> None:
    runner = Runner(str(fake_vbox.exe))
    out = runner.run("showvminfo", "$(touch pwned); `id`", check=False)
    assert out.returncode == 1 and "Could not find a registered machine named '$(touch pwned); `id`'" in out.stderr
    assert not (fake_vbox.root / "pwned").exists()


def test_read_only_connection_cannot_snapshot(fake_vbox: FakeVBox) -> None:
    with virtsnap.openReadOnly("vbox:///session") as ro:
        alpha = ro.lookupByName("alpha")
        with pytest.raises(virtsnap.libvirtError) as exc:
            alpha.snapshotCreateXML(snap_xml("s"))
        assert code_of(exc) == virtsnap.VIR_ERR_OPERATION_DENIED
        assert alpha.snapshotNum() == 0


# -- sizes (issue 17) -----------------------------------------------------------------------------------------
def test_sizes_are_the_differencing_images_and_the_saved_state(conn: virtsnap.virConnect,
                                                               fake_vbox: FakeVBox) -> None:
    dom = conn.lookupByName(BETA_NAME)  # running, 2048 MiB
    first = dom.snapshotCreateXML(snap_xml("first"))
    size = first.getSize()
    # its hardware holds the base image only: deleting it frees no image; the saved state is its memory
    sav = Path(fake_vbox.vm(BETA)["dir"]) / "Snapshots"
    state_files = list(sav.glob("*.sav"))
    assert len(state_files) == 1
    assert size == {"memory": state_files[0].stat().st_blocks * 512, "disk": 0,
                    "memory_exact": True, "disk_exact": True}
    assert size["memory"] >= 2048 * 1024
    # the guest writes 3 MiB to the differencing image the machine now runs on; the next snapshot keeps it
    diff = Path(next(a for a in fake_vbox.vm(BETA)["controllers"][0]["attachments"] if a["type"] == "hdd")["path"])
    diff.write_bytes(os.urandom(3 << 20))
    second = dom.snapshotCreateXML(snap_xml("second"))
    assert second.getSize()["disk"] == diff.stat().st_blocks * 512 >= 3 << 20
    assert first.getSize()["disk"] == 0
    with pytest.raises(virtsnap.libvirtError) as info:
        first.setProtected(True)
    assert code_of(info) == ErrorCode.NO_SUPPORT
