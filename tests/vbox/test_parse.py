"""The VBoxManage output parsers against formats written from VirtualBox's documentation and source (not
recorded from a real VBoxManage; see README.md), including the awkward cases.

The samples follow what VBoxManage 7.0 prints (VBoxManageInfo.cpp, VBoxManageSnapshot.cpp): escaped values
for most keys, raw snapshot names and descriptions, the `cpuid=` line without a newline, bare lines.
"""

from __future__ import annotations

import pytest

from virtsnap.drivers.vbox.parse import (
    ParseError,
    SnapshotListing,
    parse_error,
    parse_machinereadable,
    parse_settings_snapshots,
    parse_snapshot_list,
    parse_vm_list,
    parse_vminfo,
)

U1 = "aaaaaaaa-0000-4000-8000-000000000001"
U2 = "aaaaaaaa-0000-4000-8000-000000000002"
U3 = "aaaaaaaa-0000-4000-8000-000000000003"
U4 = "aaaaaaaa-0000-4000-8000-000000000004"

SHOWVMINFO = (
    'name="Win \\"11\\" \\\\ ünï"\n'
    'groups="/"\n'
    'ostype="Windows 11 (64-bit)"\n'
    f'UUID="{U1.upper()}"\n'
    'CfgFile="C:\\\\VMs\\\\Win \\"11\\"\\\\Win.vbox"\n'
    "memory=4096\n"
    "cpus=2\n"
    'longmode="on"\n'
    "cpuid=00000001,00000000,000306a9,00100800,7fbae3ff,bfebfbffhwvirtex=\"on\"\n"
    'VMState="saved"\n'
    'VMStateChangeTime="2024-05-01T10:00:00.123456789Z"\n'
    'VMStateFile="/vms/odd"name/Snapshots/x.sav"\n'
    'storagecontrollername0="SATA \\"main\\""\n'
    'storagecontrollertype0="IntelAhci"\n'
    'storagecontrollerportcount0="2"\n'
    'storagecontrollername1="IDE"\n'
    'storagecontrollertype1="PIIX4"\n'
    '"SATA \\"main\\"-0-0"="/vms/disk \\"a\\".vdi"\n'
    f'"SATA \\"main\\"-ImageUUID-0-0"="{U2}"\n'
    '"SATA \\"main\\"-nonrotational-0-0"="off"\n'
    '"SATA \\"main\\"-1-0"="none"\n'
    '"IDE-0-0"="none"\n'
    '"IDE-1-0"="emptydrive"\n'
    '"IDE-IsEjected-1-0"="off"\n'
    'Forwarding(0)="ssh,tcp,,2222,,22"\n'
    " rec_screen0\n"
    'rec_screen_enabled="on"\n'
    'description="line one\nline \\"two\\"\n"\n'
    'SnapshotName="base "install"\nwith newline"\n'
    f'SnapshotUUID="{U3}"\n'
    'SnapshotDescription="tricky: ends with quote"\n'
    'and a fake key line="x"\n'
    'done"\n'
    'CurrentSnapshotName="base "install"\nwith newline"\n'
    f'CurrentSnapshotUUID="{U3}"\n'
    'CurrentSnapshotNode="SnapshotName"\n'
    'GuestMemoryBalloon=0\n'
    "GuestAdditionsFacility_VirtualBox Base Driver=50,1714557600000\n"
)


def test_showvminfo_values_escaped_raw_and_odd_lines() -> None:
    info = parse_vminfo(SHOWVMINFO)
    assert info.name == 'Win "11" \\ ünï'
    assert info.uuid == U1  # lower-cased
    assert info.cfg_file == 'C:\\VMs\\Win "11"\\Win.vbox'
    assert (info.memory_mb, info.cpus, info.state, info.longmode) == (4096, 2, "saved", True)
    assert info.description == 'line one\nline "two"\n'
    disk, dvd = info.disks
    assert (disk.controller, disk.port, disk.device, disk.path, disk.kind) == ('SATA "main"', 0, 0,
                                                                                '/vms/disk "a".vdi', "disk")
    assert (dvd.controller, dvd.port, dvd.device, dvd.path, dvd.kind) == ("IDE", 1, 0, None, "cdrom")
    values = parse_machinereadable(SHOWVMINFO).values
    # The cpuid line has no newline: its value swallows the next key, as any reader of this output must.
    assert values["cpuid"].endswith('bfebfbffhwvirtex="on"')
    assert values["VMStateFile"] == '/vms/odd"name/Snapshots/x.sav'
    assert values["GuestAdditionsFacility_VirtualBox Base Driver"] == "50,1714557600000"
    assert values["GuestMemoryBalloon"] == "0"
    assert "and a fake key line" not in values  # it is part of the raw snapshot description


def test_showvminfo_snapshot_section_is_read_with_its_own_grammar() -> None:
    listing = parse_vminfo(SHOWVMINFO).snapshots
    (node,) = listing.nodes
    assert node.name == 'base "install"\nwith newline'
    assert node.description == 'tricky: ends with quote"\nand a fake key line="x"\ndone'
    assert listing.current_uuid == U3


def test_unescaped_quotes_of_older_versions_are_kept() -> None:
    # Before VirtualBox escaped values, a quote inside a value was printed as is.
    values = parse_machinereadable('description="He said "hi" twice"\nmemory=1\n').values
    assert values == {"description": 'He said "hi" twice', "memory": "1"}


def test_windows_line_ends_are_not_part_of_values() -> None:
    assert parse_machinereadable('name="a"\nmemory=2\n').values == {"name": "a", "memory": "2"}


SNAPSHOT_LIST = (
    'SnapshotName="root"\n'
    f'SnapshotUUID="{U1}"\n'
    'SnapshotName-1="child "one""\n'
    f'SnapshotUUID-1="{U2}"\n'
    'SnapshotDescription-1="mentions\nSnapshotName-9="nothing"\nat all"\n'
    'CurrentSnapshotName="child "one""\n'
    f'CurrentSnapshotUUID="{U2}"\n'
    'CurrentSnapshotNode="SnapshotName-1"\n'
    'SnapshotName-1-1="grandchild ✓"\n'
    f'SnapshotUUID-1-1="{U3}"\n'
    'SnapshotName-2="second child"\n'
    f'SnapshotUUID-2="{U4}"\n'
    'SnapshotDescription-2="last one ends the output"\n'
)


def test_snapshot_list_tree_current_and_raw_text() -> None:
    listing = parse_snapshot_list(SNAPSHOT_LIST)
    names = [(n.name, n.parent_uuid, n.suffix) for n in listing.nodes]
    assert names == [("root", None, ""), ('child "one"', U1, "-1"), ("grandchild ✓", U2, "-1-1"),
                     ("second child", U1, "-2")]
    assert listing.nodes[1].description == 'mentions\nSnapshotName-9="nothing"\nat all'
    assert listing.nodes[3].description == "last one ends the output"
    assert listing.current_uuid == U2


def test_empty_snapshot_list() -> None:
    assert parse_snapshot_list("") == SnapshotListing()


@pytest.mark.parametrize("text", [
    'SnapshotName="a"\n',  # no UUID line
    f'SnapshotName="a"\nSnapshotUUID="{U1}"\nSnapshotName-2="b"\nSnapshotUUID-2="{U2}"\n',  # skips child 1
    f'SnapshotName="a"\nSnapshotUUID="{U1}"\ngarbage\n',
    f'SnapshotName="a"\nSnapshotUUID="{U1}"\nCurrentSnapshotName="a"\nCurrentSnapshotUUID="{U2}"\n'
    'CurrentSnapshotNode="SnapshotName"\n',  # current block names another snapshot
])
def test_malformed_snapshot_lists_are_refused(text: str) -> None:
    with pytest.raises(ParseError):
        parse_snapshot_list(text)


def test_list_vms_names_with_quotes_newlines_and_inaccessible() -> None:
    text = (f'"plain" {{{U1}}}\n'
            f'"with "quotes" {{and}} braces" {{{U2}}}\n'
            f'"two\nlines ünï" {{{U3.upper()}}}\n'
            f'"<inaccessible>" {{{U4}}}\n')
    entries = parse_vm_list(text)
    assert [(e.name, e.uuid, e.accessible) for e in entries] == [
        ("plain", U1, True), ('with "quotes" {and} braces', U2, True), ("two\nlines ünï", U3, True),
        ("<inaccessible>", U4, False)]
    assert parse_vm_list("") == []


def test_error_report_with_com_status() -> None:
    stderr = ("VBoxManage: error: Could not find a registered machine named 'nope'\n"
              "VBoxManage: error: Details: code VBOX_E_OBJECT_NOT_FOUND (0x80bb0001), component VirtualBoxWrap, "
              "interface IVirtualBox, callee nsISupports\n"
              'VBoxManage: error: Context: "FindMachine(Bstr(a->argv[0]).raw(), machine.asOutParam())" at line '
              "2930 of file VBoxManageInfo.cpp\n")
    failure = parse_error(stderr)
    assert failure.message == "Could not find a registered machine named 'nope'"
    assert (failure.code_name, failure.hresult, failure.component, failure.interface) == (
        "VBOX_E_OBJECT_NOT_FOUND", 0x80BB0001, "VirtualBoxWrap", "IVirtualBox")
    assert failure.context is not None and failure.context.startswith('"FindMachine')


def test_error_report_without_status_and_without_prefix() -> None:
    assert parse_error("VBoxManage: error: Machine 'x' is not currently running\n").hresult is None
    usage = parse_error("Usage:\n\nVBoxManage snapshot ...\n", "")
    assert usage.message == "VBoxManage snapshot ..." and usage.code_name is None
    assert parse_error("", "").message == "VBoxManage failed without a message"


SETTINGS = f"""<?xml version="1.0"?>
<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux">
  <Machine uuid="{{{U1}}}" name="vm" currentSnapshot="{{{U3}}}">
    <Hardware/>
    <Snapshot uuid="{{{U2}}}" name="off" timeStamp="2024-05-01T10:00:00Z">
      <Snapshots>
        <Snapshot uuid="{{{U3.upper()}}}" name="on" timeStamp="2024-05-01T10:00:05Z" stateFile="Snapshots/x.sav">
          <Description>d</Description>
        </Snapshot>
      </Snapshots>
    </Snapshot>
  </Machine>
</VirtualBox>
""".encode()


def test_settings_file_timestamps_and_online_flags() -> None:
    snaps = parse_settings_snapshots(SETTINGS)
    assert set(snaps) == {U2, U3}
    assert (snaps[U2].timestamp, snaps[U2].online) == (1714557600, False)
    assert (snaps[U3].timestamp, snaps[U3].online) == (1714557605, True)


def test_settings_file_that_is_not_xml() -> None:
    with pytest.raises(ParseError):
        parse_settings_snapshots(b"<VirtualBox><Machine>")
    hostile = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><VirtualBox>&e;</VirtualBox>'
    assert parse_settings_snapshots(hostile) == {}
