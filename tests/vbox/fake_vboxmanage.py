#!/usr/bin/env python3
"""A stand-in for VBoxManage, used only by the vbox driver's tests: a few machines and their snapshot trees
in a JSON file ($VBOX_FAKE_STATE), printed in the formats VBoxManage 7.0 prints.

Formats follow VirtualBox's sources (VBoxManageInfo.cpp, VBoxManageSnapshot.cpp, VBoxManageList.cpp,
VBoxManageControlVM.cpp, errorprint.cpp) and its manual: escaped values where VBoxManage escapes, raw ones
(snapshot names and descriptions, VMStateFile, `list vms`) where it does not, the `cpuid=` line without a
newline, the bare " rec_screen0" line, "This machine does not have any snapshots" on stdout with exit 1,
`VBoxManage: error:` reports with a Details line carrying the COM status, exit 2 for syntax errors, and
IPRT's conversion of all output to the locale's code set ('?' for what ASCII cannot hold).

Test hooks (not VBoxManage behaviour): $VBOX_FAKE_LOG gets one JSON line per call (argv and LC_ALL);
$VBOX_FAKE_TRANSLATE=1 translates messages (as `VBoxManage setproperty language` would, whatever the
locale); a machine's "locked" makes every session-taking command fail as if another session held it; the
state's "inject" list makes matching calls fail or hang.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the fake runs hundreds of times per test run: import only what it needs at run time
    from typing import Any, NoReturn
    from xml.etree import ElementTree as ET

PROG = "VBoxManage"
ONLINE = {"running", "paused", "gurumeditation", "starting", "stopping", "saving", "restoring",
          "livesnapshotting", "onlinesnapshotting", "deletingsnapshotlive", "deletingsnapshotlivepaused",
          "teleporting", "teleportingin", "teleportingpausedvm"}
TRANSIENT = {"starting", "stopping", "saving", "restoring", "snapshotting", "restoringsnapshot",
             "deletingsnapshot", "settingup", "livesnapshotting", "onlinesnapshotting"}
# Global::stringifyMachineState, for messages
STATE_WORDS = {"poweroff": "PoweredOff", "saved": "Saved", "aborted": "Aborted", "running": "Running",
               "paused": "Paused", "gurumeditation": "Stuck", "snapshotting": "Snapshotting",
               "restoringsnapshot": "RestoringSnapshot", "deletingsnapshot": "DeletingSnapshot"}
GERMAN = {
    "This machine does not have any snapshots": "Diese Maschine hat keine Sicherungspunkte",
}

_out: list[str] = []
_err: list[str] = []


class ExitError(Exception):
    """Ends the command with an exit status (what VBoxManage's handlers return)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def out(text: str = "") -> None:
    _out.append(text + "\n")


def err(text: str) -> None:
    _err.append(text + "\n")


def tr(message: str) -> str:
    if os.environ.get("VBOX_FAKE_TRANSLATE") != "1":
        return message
    return GERMAN.get(message, "Übersetzt: " + message[::-1])


def com_error(message: str, code_name: str, hresult: int, component: str, interface: str, context: str,
              source: str = "VBoxManageSnapshot.cpp") -> NoReturn:
    """GluePrintErrorInfo + GluePrintErrorContext, then RTEXITCODE_FAILURE."""
    err(f"{PROG}: error: {tr(message)}")
    err(f"{PROG}: error: Details: code {code_name} (0x{hresult:08x}), component {component}, "
        f"interface {interface}, callee nsISupports")
    err(f'{PROG}: error: Context: "{context}" at line 420 of file {source}')
    raise ExitError(1)


def msg_error(message: str, code: int = 1) -> NoReturn:
    """RTMsgError: one line, no COM status."""
    err(f"{PROG}: error: {tr(message)}")
    raise ExitError(code)


def syntax_error(message: str, code: int = 2) -> NoReturn:
    err("Usage:\n\nVBoxManage snapshot <uuid|vmname> take <snapshot-name> [--description=description]\n")
    msg_error(message, code)


def progress() -> None:
    err("0%...10%...20%...30%...40%...50%...60%...70%...80%...90%...100%")


def escape(value: str) -> str:
    """outputMachineReadableString's escaping: backslash before '"' and '\\'."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def iso(ts: float, nanos: bool = False) -> str:
    """Settings files use seconds (stringifyTimestamp); VMStateChangeTime nanoseconds (RTTimeSpecToString)."""
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    return base + (".000000000Z" if nanos else "Z")


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def is_uuid(text: str) -> bool:
    return _UUID.fullmatch(text.strip("{}")) is not None


def new_uuid() -> str:
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def deepcopy(value: Any) -> Any:
    return json.loads(json.dumps(value))


# -- state ------------------------------------------------------------------------------------------------
def find_vm(state: dict[str, Any], ref: str) -> dict[str, Any]:
    """IVirtualBox::FindMachine: a UUID (with or without braces) or the first machine with that name."""
    vms: list[dict[str, Any]] = state["vms"]
    for vm in vms:
        if is_uuid(ref) and vm["uuid"] == ref.strip("{}").lower():
            return vm
    for vm in vms:
        if not vm.get("inaccessible") and vm["name"] == ref:
            return vm
    if is_uuid(ref):
        message = f"Could not find a registered machine with UUID {{{ref.strip('{}').lower()}}}"
    else:
        message = f"Could not find a registered machine named '{ref}'"
    com_error(message, "VBOX_E_OBJECT_NOT_FOUND", 0x80BB0001, "VirtualBoxWrap", "IVirtualBox",
              "FindMachine(Bstr(a->argv[0]).raw(), machine.asOutParam())")


def preorder(vm: dict[str, Any]) -> list[str]:
    order: list[str] = []

    def walk(sid: str) -> None:
        order.append(sid)
        for child in vm["snapshots"][sid]["children"]:
            walk(child)

    if vm.get("first"):
        walk(vm["first"])
    return order


def find_snapshot(vm: dict[str, Any], ref: str) -> str:
    """IMachine::FindSnapshot: by UUID, else the first snapshot of that name in the tree."""
    if is_uuid(ref) and ref.strip("{}").lower() in vm["snapshots"]:
        return ref.strip("{}").lower()
    for sid in preorder(vm):
        if vm["snapshots"][sid]["name"] == ref:
            return sid
    if is_uuid(ref):
        message = f"Could not find a snapshot with UUID {{{ref.strip('{}').lower()}}}"
    else:
        message = f"Could not find a snapshot named '{ref}'"
    com_error(message, "VBOX_E_OBJECT_NOT_FOUND", 0x80BB0001, "SessionMachine", "IMachine",
              "FindSnapshot(Bstr(a->argv[2]).raw(), pSnapshot.asOutParam())")


def lock_session(vm: dict[str, Any], kind: str = "Shared") -> None:
    if vm.get("locked"):
        com_error(f"The machine '{vm['name']}' is already locked for a session (or being unlocked)",
                  "VBOX_E_INVALID_OBJECT_STATE", 0x80BB0007, "MachineWrap", "IMachine",
                  f"LockMachine(a->session, LockType_{kind})")


def set_state(vm: dict[str, Any], new: str) -> None:
    vm["state"] = new
    vm["state_change"] = time.time()


def settings_path(vm: dict[str, Any]) -> str:
    return os.path.join(str(vm["dir"]), str(vm["name"]).replace("/", "_") + ".vbox")


def write_settings(vm: dict[str, Any]) -> None:
    """The machine settings file, with the attributes the driver reads (uuid, timeStamp, stateFile)."""
    from xml.etree import ElementTree as ET
    root = ET.Element("VirtualBox", {"xmlns": "http://www.virtualbox.org/", "version": "1.19-linux"})
    machine = ET.SubElement(root, "Machine", {"uuid": f"{{{vm['uuid']}}}", "name": vm["name"],
                                              "OSType": vm.get("ostype_id", "Other"),
                                              "snapshotFolder": "Snapshots",
                                              "lastStateChange": iso(vm.get("state_change", 0))})
    if vm.get("current"):
        machine.set("currentSnapshot", f"{{{vm['current']}}}")
    if vm.get("state_file"):
        machine.set("stateFile", vm["state_file"])
    if vm.get("description"):
        ET.SubElement(machine, "Description").text = vm["description"]
    hardware = ET.SubElement(machine, "Hardware")
    ET.SubElement(hardware, "Memory", {"RAMSize": str(vm["memory"])})

    def build(parent: ET.Element, sid: str) -> None:
        snap = vm["snapshots"][sid]
        element = ET.SubElement(parent, "Snapshot", {"uuid": f"{{{sid}}}", "name": snap["name"],
                                                      "timeStamp": iso(snap["timestamp"])})
        if snap["online"]:
            element.set("stateFile", f"Snapshots/{{{sid}}}.sav")
        if snap["description"]:
            ET.SubElement(element, "Description").text = snap["description"]
        hw = ET.SubElement(element, "Hardware")
        controllers = ET.SubElement(hw, "StorageControllers")
        for ctl in snap.get("hardware", {}).get("controllers", []):
            controller = ET.SubElement(controllers, "StorageController", {"name": ctl["name"]})
            for att in ctl["attachments"]:
                if att["type"] == "hdd" and att.get("uuid"):
                    device = ET.SubElement(controller, "AttachedDevice", {"type": "HardDisk", "port": str(att["port"]),
                                                                          "device": str(att["device"])})
                    ET.SubElement(device, "Image", {"uuid": f"{{{att['uuid']}}}"})
        if snap["children"]:
            container = ET.SubElement(element, "Snapshots")
            for child in snap["children"]:
                build(container, child)

    media = vm.get("media", {})
    if media:  # VirtualBox's registry: each differencing image nested under its parent
        disks = ET.SubElement(ET.SubElement(machine, "MediaRegistry"), "HardDisks")
        elements: dict[str, ET.Element] = {}

        def place(uuid: str) -> ET.Element:
            if uuid in elements:
                return elements[uuid]
            entry = media.get(uuid)
            if entry is None:  # a base image, outside the machine folder
                element = ET.SubElement(disks, "HardDisk", {"uuid": f"{{{uuid}}}", "location": f"../../{uuid}.vdi"})
            else:
                element = ET.SubElement(place(entry["parent"]), "HardDisk",
                                        {"uuid": f"{{{uuid}}}", "location": entry["location"]})
            elements[uuid] = element
            return element

        for uuid in media:
            place(uuid)
    if vm.get("first"):
        build(machine, vm["first"])
    os.makedirs(vm["dir"], exist_ok=True)
    path = settings_path(vm)
    tmp = path + "-tmp"
    ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)


# -- commands -----------------------------------------------------------------------------------------------
def cmd_list(state: dict[str, Any], args: list[str]) -> None:
    if not args or args[0] not in ("vms", "runningvms"):
        syntax_error(f"Unknown subcommand '{args[0] if args else ''}'")
    for vm in state["vms"]:
        if args[0] == "runningvms" and vm["state"] not in ONLINE:
            continue
        name = "<inaccessible>" if vm.get("inaccessible") else vm["name"]
        out(f'"{name}" {{{vm["uuid"]}}}')  # VMINFO_COMPACT prints the name raw


def showvminfo(vm: dict[str, Any]) -> None:
    if vm.get("inaccessible"):
        out('name="<inaccessible>"')
        out(f'UUID="{vm["uuid"]}"')
        return
    lines = [
        f'name="{escape(vm["name"])}"',
        'groups="/"',
        f'ostype="{escape(vm.get("ostype", "Other/Unknown"))}"',
        f'UUID="{vm["uuid"]}"',
        f'CfgFile="{escape(settings_path(vm))}"',
        f'SnapFldr="{escape(os.path.join(vm["dir"], "Snapshots"))}"',
        f'LogFldr="{escape(os.path.join(vm["dir"], "Logs"))}"',
        f'hardwareuuid="{vm["uuid"]}"',
        f'memory={vm["memory"]}',
        'pagefusion="off"',
        "vram=16",
        "cpuexecutioncap=100",
        'chipset="piix3"',
        'firmware="BIOS"',
        f'cpus={vm["cpus"]}',
        'hpet="off"',
        'pae="on"',
        f'longmode="{"on" if "64" in vm.get("ostype", "") else "off"}"',
        'triplefaultreset="off"',
        'apic="on"',
        'x2apic="on"',
        'nested-hw-virt="off"',
    ]
    text = "".join(line + "\n" for line in lines)
    if vm.get("cpuid_override"):
        # VBoxManageInfo.cpp prints each CPUID override without a newline.
        text += "cpuid=00000001,00000000,000306a9,00100800,7fbae3ff,bfebfbff"
    lines = [
        'hwvirtex="on"',
        'nestedpaging="on"',
        'largepages="off"',
        'vtxvpid="on"',
        'vtxux="on"',
        'paravirtprovider="default"',
        'effparavirtprovider="kvm"',
        f'VMState="{vm["state"]}"',
        f'VMStateChangeTime="{iso(vm.get("state_change", 0), nanos=True)}"',
    ]
    if vm.get("state_file"):
        lines.append(f'VMStateFile="{vm["state_file"]}"')  # printed raw
    lines += ['graphicscontroller="vmsvga"', "monitorcount=1", 'accelerate3d="off"']
    for i, ctl in enumerate(vm["controllers"]):
        lines += [f'storagecontrollername{i}="{escape(ctl["name"])}"', f'storagecontrollertype{i}="{ctl["type"]}"',
                  f'storagecontrollerinstance{i}="0"', f'storagecontrollermaxportcount{i}="{ctl.get("ports", 1)}"',
                  f'storagecontrollerportcount{i}="{ctl.get("ports", 1)}"', f'storagecontrollerbootable{i}="on"']
    for ctl in vm["controllers"]:
        name = escape(ctl["name"])
        devices = 2 if ctl["type"] in ("PIIX3", "PIIX4", "ICH6", "I82078") else 1
        for port in range(ctl.get("ports", 1)):
            for device in range(devices):
                att = next((a for a in ctl["attachments"] if a["port"] == port and a["device"] == device), None)
                slot = f"{port}-{device}"
                if att is None:
                    lines.append(f'"{name}-{slot}"="none"')
                    continue
                if att.get("path"):
                    lines.append(f'"{name}-{slot}"="{escape(att["path"])}"')
                    lines.append(f'"{name}-ImageUUID-{slot}"="{att.get("uuid", vm["uuid"])}"')
                    if att["type"] == "dvd":
                        lines.append(f'"{name}-tempeject-{slot}"="off"')
                        lines.append(f'"{name}-IsEjected-{slot}"="off"')
                    if ctl["name"].upper() in ("SATA", "USB"):
                        lines.append(f'"{name}-hot-pluggable-{slot}"="off"')
                    lines.append(f'"{name}-nonrotational-{slot}"="off"')
                    lines.append(f'"{name}-discard-{slot}"="off"')
                else:
                    lines.append(f'"{name}-{slot}"="emptydrive"')
                    if att["type"] == "dvd":
                        lines.append(f'"{name}-IsEjected-{slot}"="off"')
    lines += ['natnet1="nat"', 'macaddress1="080027A1B2C3"', 'cableconnected1="on"', 'nic1="nat"',
              'nictype1="82540EM"', 'nicspeed1="0"', 'mtu="0"', 'sockSnd="64"', 'sockRcv="64"',
              'tcpWndSnd="64"', 'tcpWndRcv="64"', 'Forwarding(0)="ssh,tcp,,2222,,22"', 'nic2="none"',
              'hidpointing="ps2mouse"', 'hidkeyboard="ps2kbd"', 'recording_enabled="off"', "recording_screens=1",
              " rec_screen0", 'rec_screen_enabled="on"', "rec_screen_id=0"]
    if vm.get("description"):
        lines.append(f'description="{escape(vm["description"])}"')
    text += "".join(line + "\n" for line in lines)
    text += snapshot_lines(vm)
    text += "GuestMemoryBalloon=0\n"
    if vm["state"] == "running":
        text += 'GuestOSType="Linux26_64"\nGuestAdditionsRunLevel=1\n'
        text += "GuestAdditionsFacility_VirtualBox Base Driver=50,1714557600000\n"
    _out.append(text)


def snapshot_lines(vm: dict[str, Any]) -> str:
    """showSnapshots(VMINFO_MACHINEREADABLE): hierarchical suffixes, names and descriptions raw."""
    parts: list[str] = []

    def walk(sid: str, suffix: str) -> None:
        snap = vm["snapshots"][sid]
        parts.append(f'SnapshotName{suffix}="{snap["name"]}"\n')
        parts.append(f'SnapshotUUID{suffix}="{sid}"\n')
        if snap["description"]:
            parts.append(f'SnapshotDescription{suffix}="{snap["description"]}"\n')
        if vm.get("current") == sid:
            parts.append(f'CurrentSnapshotName="{snap["name"]}"\n')
            parts.append(f'CurrentSnapshotUUID="{sid}"\n')
            parts.append(f'CurrentSnapshotNode="SnapshotName{suffix}"\n')
        for index, child in enumerate(snap["children"]):
            walk(child, f"{suffix}-{index + 1}")

    if vm.get("first"):
        walk(vm["first"], "")
    return "".join(parts)


def cmd_showvminfo(state: dict[str, Any], args: list[str]) -> None:
    refs = [a for a in args if not a.startswith("-")]
    if len(refs) != 1:
        syntax_error("VM name or UUID required")
    vm = find_vm(state, refs[0])
    if "--machinereadable" not in args and "-machinereadable" not in args:
        out(f"Name:                        {vm['name']}")
        out(f"UUID:                        {vm['uuid']}")
        out(f"State:                       {vm['state']}")
        return
    showvminfo(vm)


def option_values(args: list[str], names: tuple[str, ...]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """RTGetOpt-like: `--opt value`, `--opt=value`; returns (options in order, non-options)."""
    opts: list[tuple[str, str | None]] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        key, eq, value = arg.partition("=")
        if key in names:
            if eq:
                opts.append((key, value))
            elif i + 1 < len(args):
                opts.append((key, args[i + 1]))
                i += 1
            else:
                msg_error(f"Option '{key}' requires a value", 1)
        elif arg.startswith("-"):
            opts.append((arg, None))
        else:
            rest.append(arg)
        i += 1
    return opts, rest


def cmd_snapshot(state: dict[str, Any], args: list[str]) -> None:
    if len(args) < 2:
        syntax_error("Not enough parameters")
    vm = find_vm(state, args[0])
    sub, rest = args[1], args[2:]
    if sub != "list":
        lock_session(vm)  # a session held by another client blocks changes (reads are left to work)
    if sub == "take":
        snapshot_take(vm, rest)
    elif sub in ("restore", "restorecurrent", "delete"):
        snapshot_restore_delete(vm, sub, rest)
    elif sub == "edit":
        snapshot_edit(vm, rest)
    elif sub == "list":
        if not vm.get("first"):
            out(tr("This machine does not have any snapshots"))
            raise ExitError(1)
        if "--machinereadable" in rest:
            _out.append(snapshot_lines(vm))
        else:
            for sid in preorder(vm):
                mark = " *" if vm.get("current") == sid else ""
                out(f"   Name: {vm['snapshots'][sid]['name']} (UUID: {sid}){mark}")
    else:
        syntax_error(f"Invalid parameter '{sub}'", 1)


def hardware(vm: dict[str, Any]) -> dict[str, Any]:
    return {"memory": vm["memory"], "cpus": vm["cpus"], "controllers": deepcopy(vm["controllers"])}


def snapshot_take(vm: dict[str, Any], rest: list[str]) -> None:
    if not rest:
        syntax_error("Missing snapshot name", 1)
    name = rest[0]
    opts, extra = option_values(rest[1:], ("--description", "-description", "-desc", "--uniquename"))
    if extra:
        syntax_error(f"Invalid parameter '{extra[0]}'", 1)
    description = ""
    for key, value in opts:
        if key in ("--description", "-description", "-desc"):
            description = value or ""
        elif key not in ("--live", "--pause", "--uniquename"):
            syntax_error(f"Unknown option: {key}", 1)
    if vm["state"] in TRANSIENT:
        com_error(f"Cannot take a snapshot of the machine while it is changing the state (machine state: "
                  f"{STATE_WORDS.get(vm['state'], vm['state'])})", "VBOX_E_INVALID_VM_STATE", 0x80BB0002,
                  "SessionMachine", "IMachine", "TakeSnapshot(name.raw(), desc.raw(), fPause, snapId.asOutParam(), "
                  "progress.asOutParam())")
    sid = new_uuid()
    online = vm["state"] in ONLINE or vm["state"] == "saved"
    snap: dict[str, Any] = {"name": name, "description": description, "parent": vm.get("current"), "children": [],
            "timestamp": int(time.time()), "online": online, "hardware": hardware(vm)}
    vm["snapshots"][sid] = snap
    if vm.get("current"):
        vm["snapshots"][vm["current"]]["children"].append(sid)
    else:
        vm["first"] = sid
    vm["current"] = sid
    # The current state continues on new differencing images in the snapshot folder (real, empty files that
    # a test may write to as the guest would), children of the images the snapshot keeps.
    folder = os.path.join(vm["dir"], "Snapshots")
    os.makedirs(folder, exist_ok=True)
    for ctl in vm["controllers"]:
        for att in ctl["attachments"]:
            if att["type"] == "hdd":
                diff = new_uuid()
                path = os.path.join(folder, f"{{{diff}}}.vdi")
                open(path, "wb").close()
                vm.setdefault("media", {})[diff] = {"location": f"Snapshots/{{{diff}}}.vdi", "parent": att["uuid"]}
                att["path"], att["uuid"] = path, diff
    if online:  # the saved state: a stand-in of 1 KiB per MiB of guest memory
        with open(os.path.join(folder, f"{{{sid}}}.sav"), "wb") as f:
            f.write(b"\x5a" * 1024 * int(vm["memory"]))
    progress()
    out(f"Snapshot taken. UUID: {sid}")


def snapshot_restore_delete(vm: dict[str, Any], sub: str, rest: list[str]) -> None:
    if sub == "restorecurrent":
        if rest:
            syntax_error("Too many arguments", 1)
        if not vm.get("current"):
            out(tr("This machine does not have any snapshots"))
            raise ExitError(1)
        sid = vm["current"]
    else:
        if len(rest) != 1:
            syntax_error("Expecting snapshot name only", 1)
        sid = find_snapshot(vm, rest[0])
    snap = vm["snapshots"][sid]
    out(f"{'Deleting' if sub == 'delete' else 'Restoring'} snapshot '{snap['name']}' ({sid})")
    if sub == "delete":
        if len(snap["children"]) > 1:
            com_error(f"Snapshot '{snap['name']}' of the machine '{vm['name']}' has more than one child snapshot "
                      f"({len(snap['children'])})", "VBOX_E_INVALID_OBJECT_STATE", 0x80BB0007, "SessionMachine",
                      "IMachine", "DeleteSnapshot(bstrSnapGuid.raw(), pProgress.asOutParam())")
        progress()
        parent = snap["parent"]
        for child in snap["children"]:
            vm["snapshots"][child]["parent"] = parent
            if parent:
                vm["snapshots"][parent]["children"].append(child)
        if parent:
            vm["snapshots"][parent]["children"].remove(sid)
        else:
            vm["first"] = snap["children"][0] if snap["children"] else None
        if vm.get("current") == sid:
            vm["current"] = parent
        del vm["snapshots"][sid]
        return
    if vm["state"] in ONLINE or vm["state"] in TRANSIENT:
        com_error(f"Cannot delete the current state of the running machine (machine state: "
                  f"{STATE_WORDS.get(vm['state'], vm['state'])})", "VBOX_E_INVALID_VM_STATE", 0x80BB0002,
                  "SessionMachine", "IMachine", "RestoreSnapshot(pSnapshot, pProgress.asOutParam())")
    progress()
    saved = snap["hardware"]
    vm["memory"], vm["cpus"], vm["controllers"] = saved["memory"], saved["cpus"], deepcopy(saved["controllers"])
    vm["current"] = sid
    if snap["online"]:
        set_state(vm, "saved")
        vm["state_file"] = os.path.join(vm["dir"], "Snapshots", f"{{{sid}}}.sav")
    else:
        set_state(vm, "poweroff")
        vm["state_file"] = None


def snapshot_edit(vm: dict[str, Any], rest: list[str]) -> None:
    if not rest:
        syntax_error("Missing snapshot name", 1)
    target: str | None = None
    i = 0
    # Options apply in order, to the snapshot selected before them (as RTGetOpt hands them out).
    while i < len(rest):
        arg = rest[i]
        key, eq, value = arg.partition("=")
        if key in ("--current", "-current"):
            if not vm.get("current"):
                out(tr("This machine does not have any snapshots"))
                raise ExitError(1)
            target = vm["current"]
        elif key in ("--name", "-name", "-newname", "--description", "-description", "-desc"):
            if not eq:
                if i + 1 >= len(rest):
                    msg_error(f"Option '{key}' requires a value", 1)
                i += 1
                value = rest[i]
            if target is None:
                syntax_error("Missing snapshot name", 1)
            field = "name" if "name" in key else "description"
            vm["snapshots"][target][field] = value
        elif arg.startswith("-"):
            syntax_error(f"Unknown option: {arg}", 1)
        else:
            target = find_snapshot(vm, arg)
        i += 1


def cmd_startvm(state: dict[str, Any], args: list[str]) -> None:
    opts, refs = option_values(args, ("--type",))
    if len(refs) != 1:
        syntax_error("Invalid parameter")
    vm = find_vm(state, refs[0])
    for key, value in opts:
        if key == "--type" and value not in ("gui", "headless", "sdl", "separate"):
            msg_error(f"Invalid session type '{value}'")
    if vm.get("locked") or vm["state"] in ONLINE or vm["state"] in TRANSIENT:
        com_error(f"The machine '{vm['name']}' is already locked by a session (or being locked or unlocked)",
                  "VBOX_E_INVALID_OBJECT_STATE", 0x80BB0007, "MachineWrap", "IMachine",
                  "LaunchVMProcess(a->session, sessionType.raw(), ComSafeArrayAsInParam(aBstrEnv), "
                  "progress.asOutParam())", "VBoxManageMisc.cpp")
    out(f'Waiting for VM "{vm["name"]}" to power on...')
    set_state(vm, "running")
    vm["state_file"] = None
    out(f'VM "{vm["name"]}" has been successfully started.')


def cmd_controlvm(state: dict[str, Any], args: list[str]) -> None:
    if len(args) < 2:
        syntax_error("Not enough parameters")
    vm = find_vm(state, args[0])
    lock_session(vm)
    if vm["state"] not in ONLINE:
        msg_error(f"Machine '{args[0]}' is not currently running")
    action = args[1]
    console = ("ConsoleWrap", "IConsole")
    if action == "pause":
        if vm["state"] != "running":
            com_error(f"Invalid machine state: {STATE_WORDS.get(vm['state'], vm['state'])}",
                      "VBOX_E_INVALID_VM_STATE", 0x80BB0002, *console, "Pause()", "VBoxManageControlVM.cpp")
        set_state(vm, "paused")
    elif action == "resume":
        if vm["state"] != "paused":
            com_error(f"Cannot resume the machine as it is not paused (machine state: "
                      f"{STATE_WORDS.get(vm['state'], vm['state'])})", "VBOX_E_INVALID_VM_STATE", 0x80BB0002,
                      *console, "Resume()", "VBoxManageControlVM.cpp")
        set_state(vm, "running")
    elif action == "poweroff":
        progress()
        set_state(vm, "poweroff")
    elif action == "acpipowerbutton":
        if vm["state"] != "running":
            com_error(f"Invalid machine state: {STATE_WORDS.get(vm['state'], vm['state'])}",
                      "VBOX_E_INVALID_VM_STATE", 0x80BB0002, *console, "PowerButton()", "VBoxManageControlVM.cpp")
        if not vm.get("ignores_acpi"):
            set_state(vm, "poweroff")  # a cooperative guest, shut down at once
    else:
        syntax_error(f"Invalid parameter '{action}'")


def injected(state: dict[str, Any], argv: list[str]) -> None:
    """Test hook: state["inject"] entries {"argv": [... "*" ...], "skip": N, "times": N, "kind": ...}."""
    for entry in state.get("inject", []):
        pattern = entry["argv"]
        if len(argv) < len(pattern) or any(p != "*" and p != a for p, a in zip(pattern, argv, strict=False)):
            continue
        if entry.get("skip", 0) > 0:
            entry["skip"] -= 1
            continue
        if entry.get("times", 1) <= 0:
            continue
        entry["times"] = entry.get("times", 1) - 1
        if entry["kind"] == "sleep":
            time.sleep(entry.get("seconds", 30))
        elif entry["kind"] == "locked":
            com_error("The machine is already locked for a session (or being unlocked)",
                      "VBOX_E_INVALID_OBJECT_STATE", 0x80BB0007, "MachineWrap", "IMachine",
                      "LockMachine(a->session, LockType_Shared)")
        else:
            com_error("Could not merge the medium 'disk.vdi' to its parent (VERR_DISK_FULL)", "VBOX_E_FILE_ERROR",
                      0x80BB0004, "MediumWrap", "IMedium", "DeleteSnapshot(bstrSnapGuid.raw(), "
                      "pProgress.asOutParam())")


def dispatch(state: dict[str, Any], argv: list[str]) -> None:
    if not argv:
        syntax_error("No command given")
    command, args = argv[0], argv[1:]
    if command in ("--version", "-v", "-version"):
        out(state.get("version", "7.0.14r161095"))
        return
    injected(state, argv)
    handlers = {"list": cmd_list, "showvminfo": cmd_showvminfo, "snapshot": cmd_snapshot,
                "startvm": cmd_startvm, "controlvm": cmd_controlvm}
    handler = handlers.get(command)
    if handler is None:
        syntax_error(f"Invalid command '{command}'")
    handler(state, args)


def codeset() -> str:
    """IPRT prints in the locale's code set: with LC_ALL=C (ASCII) non-ASCII text becomes '?'."""
    for var in ("LC_ALL", "LC_CTYPE", "LANG"):
        value = os.environ.get(var)
        if value:
            return "utf-8" if value.lower().replace("-", "").endswith("utf8") else "ascii"
    return "ascii"


def main(argv: list[str]) -> int:
    state_path = os.environ["VBOX_FAKE_STATE"]
    log = os.environ.get("VBOX_FAKE_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"argv": argv, "LC_ALL": os.environ.get("LC_ALL")}) + "\n")
    with open(state_path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # VBoxSVC serializes calls; so does this file lock
        with open(state_path, encoding="utf-8") as handle:
            state = json.load(handle)
        before = json.dumps(state, sort_keys=True)
        try:
            dispatch(state, argv)
            code = 0
        except ExitError as exc:
            code = exc.code
        changed = json.dumps(state, sort_keys=True) != before
        if changed:
            with open(state_path + ".tmp", "w", encoding="utf-8") as handle:
                json.dump(state, handle, indent=1)
            os.replace(state_path + ".tmp", state_path)
        state_mtime = os.stat(state_path).st_mtime_ns
        for vm in state["vms"]:
            # VBoxSVC saves a machine's settings after every change; tests may also edit the state file.
            path = settings_path(vm)
            if not vm.get("inaccessible") and (changed or not os.path.exists(path)
                                               or os.stat(path).st_mtime_ns < state_mtime):
                write_settings(vm)
    encoding = codeset()
    sys.stdout.buffer.write("".join(_out).encode(encoding, errors="replace"))
    sys.stderr.buffer.write("".join(_err).encode(encoding, errors="replace"))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
