"""The VirtualBox driver behind vbox:///session: libvirt's domain and snapshot calls mapped onto VBoxManage.

VirtualBox owns the snapshot tree, so every call reads it afresh (`snapshot list`, `showvminfo` and the
machine's settings file) into a SnapshotTree(metadata=False); virtsnap stores nothing for this driver.
"""

from __future__ import annotations

import os
import platform
import socket
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ...conf import validate as schema
from ...conf.domain_xml import DomainDef
from ...conf.snapshot_xml import (
    DiskSnapshot,
    Location,
    ParseMode,
    SnapshotDef,
    SnapshotState,
    check_name,
    format_snapshot,
    parse_snapshot,
)
from ...conf.tree import Moment, SnapshotTree
from ...conf.xmlutil import escape
from ...errors import ErrorCode, ErrorDomain, error, libvirtError
from ...flags import (
    DomainState,
    DomainXML,
    ListDomains,
    SnapshotCreate,
    SnapshotDelete,
    SnapshotRevert,
)
from ...uri import URI
from ..base import SNAPSHOT_QUERIES, Capabilities, DomainInfo, DomainRecord, Op, SnapshotSize
from .parse import (
    DiskAttachment,
    ParseError,
    SettingsSnapshot,
    SnapshotListing,
    VmEntry,
    VmInfo,
    parse_settings_snapshots,
    parse_settings_space,
    parse_snapshot_list,
    parse_vm_list,
    parse_vminfo,
)
from .runner import CommandError, Completed, LaunchError, Runner, VBoxManageError, VBoxTimeoutError, find_vboxmanage

__all__ = ["CAPABILITIES", "VBoxDriver", "VBoxSnapshot", "open_driver"]

ERR = ErrorDomain.VBOX
T = TypeVar("T")

_QUERY_TIMEOUT = 120.0
_CONTROL_TIMEOUT = 600.0
_SNAPSHOT_TIMEOUT = 3600.0  # deleting a snapshot merges disk images: minutes for large disks
_MAX_SETTINGS_BYTES = 64 * 1024 * 1024
_UNLOCK_WAIT = 10.0  # seconds a powered-off machine may take to release its session

CAPABILITIES = Capabilities(
    func_prefix="vbox",
    error_domain=ERR,
    flags={
        # DISK_ONLY, QUIESCE, NO_METADATA and REUSE_EXT are accepted here only to be refused with a typed
        # error that says why, instead of libvirt's bare "unsupported flags".
        Op.SNAPSHOT_CREATE: SnapshotCreate(sum(SnapshotCreate)),  # every create flag libvirt defines
        **SNAPSHOT_QUERIES,
        Op.REVERT: SnapshotRevert.RUNNING | SnapshotRevert.PAUSED | SnapshotRevert.FORCE,
        Op.SNAPSHOT_DELETE: SnapshotDelete.CHILDREN | SnapshotDelete.METADATA_ONLY | SnapshotDelete.CHILDREN_ONLY,
        Op.DOMAIN_XML: DomainXML.SECURE | DomainXML.INACTIVE,
        Op.DOMAIN_STATE: 0,
        Op.DOMAIN_CREATE: 0,
        Op.DOMAIN_SHUTDOWN: 0,
        Op.DOMAIN_DESTROY: 0,
        Op.LIST_ALL_DOMAINS: (ListDomains.ACTIVE | ListDomains.INACTIVE | ListDomains.PERSISTENT
                              | ListDomains.TRANSIENT | ListDomains.RUNNING | ListDomains.PAUSED
                              | ListDomains.SHUTOFF | ListDomains.OTHER | ListDomains.HAS_SNAPSHOT
                              | ListDomains.NO_SNAPSHOT),
    },
)

# virDomainShutoffReason values used below
_SHUTOFF_CRASHED, _SHUTOFF_SAVED, _SHUTOFF_MIGRATED = 3, 4, 5

# VMState (VBoxManage's short machine-state names) -> libvirt state and reason. A saved or aborted
# machine has no process, so both are SHUTOFF (libvirt's vbox driver reports aborted as CRASHED, which
# would make isActive() claim a machine that cannot be running is active).
_STATES: dict[str, tuple[DomainState, int]] = {
    "poweroff": (DomainState.SHUTOFF, 0),
    "saved": (DomainState.SHUTOFF, _SHUTOFF_SAVED),
    "aborted": (DomainState.SHUTOFF, _SHUTOFF_CRASHED),
    "aborted-saved": (DomainState.SHUTOFF, _SHUTOFF_CRASHED),
    "teleported": (DomainState.SHUTOFF, _SHUTOFF_MIGRATED),
    "snapshotting": (DomainState.SHUTOFF, 0),
    "restoringsnapshot": (DomainState.SHUTOFF, 0),
    "deletingsnapshot": (DomainState.SHUTOFF, 0),
    "settingup": (DomainState.SHUTOFF, 0),
    "running": (DomainState.RUNNING, 0),
    "livesnapshotting": (DomainState.RUNNING, 0),
    "onlinesnapshotting": (DomainState.RUNNING, 0),
    "deletingsnapshotlive": (DomainState.RUNNING, 0),
    "teleporting": (DomainState.RUNNING, 0),
    "teleportingin": (DomainState.RUNNING, 0),
    "starting": (DomainState.RUNNING, 0),
    "restoring": (DomainState.RUNNING, 0),
    "paused": (DomainState.PAUSED, 0),
    "teleportingpausedvm": (DomainState.PAUSED, 0),
    "deletingsnapshotlivepaused": (DomainState.PAUSED, 0),
    "gurumeditation": (DomainState.BLOCKED, 0),
    "stopping": (DomainState.SHUTDOWN, 0),
    "saving": (DomainState.SHUTDOWN, 0),
}
# States in which VirtualBox is in the middle of something: every state-changing call is refused.
_BUSY = frozenset({"starting", "stopping", "saving", "restoring", "snapshotting", "restoringsnapshot",
                   "deletingsnapshot", "settingup", "livesnapshotting", "onlinesnapshotting",
                   "deletingsnapshotlive", "deletingsnapshotlivepaused", "teleporting", "teleportingin",
                   "teleportingpausedvm"})
# A VM process exists (what `list runningvms` lists): snapshots taken now include memory.
_ONLINE = frozenset({"running", "paused", "gurumeditation"}) | (
    _BUSY - {"snapshotting", "restoringsnapshot", "deletingsnapshot", "settingup"})

# COM status codes (VirtualBox.xidl, winerror.h) the mapping below cares about.
_NOT_FOUND, _INVALID_VM_STATE, _INVALID_OBJECT_STATE = 0x80BB0001, 0x80BB0002, 0x80BB0007
_NOT_SUPPORTED, _INVALID_SESSION_STATE, _OBJECT_IN_USE = 0x80BB0009, 0x80BB000B, 0x80BB000C
_E_INVALIDARG = 0x80070057
_BY_NAME = {"VBOX_E_OBJECT_NOT_FOUND": _NOT_FOUND, "VBOX_E_INVALID_VM_STATE": _INVALID_VM_STATE,
            "VBOX_E_INVALID_OBJECT_STATE": _INVALID_OBJECT_STATE, "VBOX_E_NOT_SUPPORTED": _NOT_SUPPORTED,
            "VBOX_E_INVALID_SESSION_STATE": _INVALID_SESSION_STATE, "VBOX_E_OBJECT_IN_USE": _OBJECT_IN_USE,
            "E_INVALIDARG": _E_INVALIDARG, "NS_ERROR_INVALID_ARG": _E_INVALIDARG}
_RTEXITCODE_SYNTAX = 2

# storagecontrollertype -> libvirt disk bus and target prefix (libvirt's vbox driver names disks alike).
_BUSES: dict[str, tuple[str, str]] = {
    "PIIX3": ("ide", "hd"), "PIIX4": ("ide", "hd"), "ICH6": ("ide", "hd"),
    "IntelAhci": ("sata", "sd"), "LsiLogic": ("scsi", "sd"), "BusLogic": ("scsi", "sd"),
    "LsiLogicSas": ("scsi", "sd"), "VirtioSCSI": ("scsi", "sd"), "USB": ("usb", "sd"),
    "I82078": ("fdc", "fd"), "NVMe": ("nvme", "nvme"),
}


@dataclass(frozen=True, slots=True)
class VBoxSnapshot:
    """The payload of a Moment: the VirtualBox snapshot behind a virtsnap snapshot name."""

    uuid: str
    name: str  # VirtualBox's name; the Moment's name differs only when VirtualBox holds duplicates
    description: str
    online: bool | None  # None when the settings file could not be read
    timestamp: int | None


@dataclass(frozen=True, slots=True)
class _DiskView:
    target: str
    bus: str
    attachment: DiskAttachment


def open_driver(uri: URI, read_only: bool, auth: Any = None) -> VBoxDriver:
    """Connect to the local VirtualBox of this user. Raises NO_CONNECT when VBoxManage cannot be run."""
    if uri.host:
        raise error(ErrorCode.NO_CONNECT, ErrorDomain.NONE,
                    f"{uri.text} (the vbox driver manages the local VirtualBox only: use vbox:///session)")
    if uri.path != "/session":
        raise error(ErrorCode.INTERNAL_ERROR, ERR, f"unknown driver path '{uri.path}' specified (try vbox:///session)")
    try:
        runner = Runner(find_vboxmanage(), timeout=_QUERY_TIMEOUT)
        version = runner.run("--version").stdout.strip()
    except VBoxManageError as exc:
        raise error(ErrorCode.NO_CONNECT, ErrorDomain.NONE, f"{uri.text} ({exc})") from exc
    return VBoxDriver(uri, runner, version)


class VBoxDriver:
    """One vbox:///session connection. Calls that change state are serialized per connection."""

    capabilities = CAPABILITIES

    def __init__(self, uri: URI, runner: Runner, version: str) -> None:
        self.uri = uri
        self.runner = runner
        self.version = version  # `VBoxManage --version`, e.g. 7.0.14r161095
        self._lock = threading.RLock()

    def close(self) -> None:
        """Nothing to release: every call runs its own VBoxManage process."""

    def hostname(self) -> str:
        return socket.gethostname()

    def hypervisor_version(self) -> int:
        from ...conf.capabilities import version_number

        return version_number(self.version)

    def capabilities_xml(self) -> str:
        import platform

        from ...conf.capabilities import format_capabilities
        from ..linuxhost import host_uuid

        return format_capabilities(platform.machine(), host_uuid(), "vbox")

    def node_info(self) -> list[object]:
        from ..linuxhost import node_info

        return node_info()  # VirtualBox runs on this host

    # -- running VBoxManage -----------------------------------------------------------------------------
    def _run(self, *args: str, timeout: float | None = None,
             not_found: ErrorCode = ErrorCode.NO_DOMAIN) -> Completed:
        """Run VBoxManage (queries use the runner's timeout); a failure becomes a libvirtError, where
        `not_found` is the code for an unknown object other than the machine itself."""
        try:
            return self.runner.run(*args, timeout=timeout)
        except VBoxManageError as exc:
            raise _translate(exc, not_found) from exc

    def _run_while_locked(self, *args: str, timeout: float | None = None,
                          not_found: ErrorCode = ErrorCode.NO_DOMAIN) -> Completed:
        """`_run`, retried for a few seconds while the machine is still locked: right after a power-off
        the VM process may not have released its session yet."""
        deadline = time.monotonic() + _UNLOCK_WAIT
        pause = 0.1
        while True:
            try:
                return self._run(*args, timeout=timeout, not_found=not_found)
            except libvirtError as exc:
                if exc.get_error_code() != ErrorCode.RESOURCE_BUSY or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _vminfo(self, uuid: str) -> VmInfo:
        out = self._run("showvminfo", uuid, "--machinereadable").stdout
        try:
            return parse_vminfo(out)
        except ParseError as exc:
            raise error(ErrorCode.INTERNAL_ERROR, ERR, f"cannot read VBoxManage showvminfo output: {exc}") from exc

    def _listing(self, uuid: str) -> SnapshotListing:
        try:
            out = self.runner.run("snapshot", uuid, "list", "--machinereadable").stdout
        except CommandError as exc:
            done = exc.completed
            # No snapshots: VBoxManage prints a (possibly translated) message on stdout and exits 1, with
            # nothing on stderr; real failures always report on stderr.
            if done.returncode == 1 and not done.stderr.strip():
                return SnapshotListing()
            raise _translate(exc, ErrorCode.NO_DOMAIN) from exc
        except VBoxManageError as exc:
            raise _translate(exc, ErrorCode.NO_DOMAIN) from exc
        try:
            return parse_snapshot_list(out)
        except ParseError as exc:
            raise error(ErrorCode.INTERNAL_ERROR, ERR, f"cannot read VBoxManage snapshot list output: {exc}") from exc

    # -- domains ----------------------------------------------------------------------------------------
    def _entries(self) -> list[tuple[int, VmEntry, bool]]:
        """(id candidate, machine, running) for every accessible machine, in VirtualBox's order."""
        machines = parse_vm_list(self._run("list", "vms").stdout)
        running = {vm.uuid for vm in parse_vm_list(self._run("list", "runningvms").stdout)}
        # Like libvirt's vbox driver, a running machine's ID is its 1-based position in `list vms`.
        return [(i + 1, vm, vm.uuid in running) for i, vm in enumerate(machines) if vm.accessible]

    def list_domains(self) -> list[DomainRecord]:
        return [DomainRecord(vm.name, vm.uuid, pos if up else -1) for pos, vm, up in self._entries()]

    def lookup_domain(self, *, name: str | None = None, uuid: str | None = None,
                      id: int | None = None) -> DomainRecord:
        """First machine matching; VirtualBox allows duplicate names and FindMachine also takes the first."""
        for record in self.list_domains():
            if (name is not None and record.name == name) or (uuid is not None and record.uuid == uuid.lower()) \
                    or (id is not None and id >= 0 and record.id == id):
                return record
        if name is not None:
            detail = f"no domain with matching name '{name}'"
        elif uuid is not None:
            detail = f"no domain with matching uuid '{uuid}'"
        else:
            detail = f"no domain with matching id {id}"
        raise error(ErrorCode.NO_DOMAIN, ERR, detail)

    def domain_state(self, uuid: str) -> tuple[DomainState, int]:
        return _STATES.get(self._vminfo(uuid).state, (DomainState.NOSTATE, 0))

    def domain_info(self, uuid: str) -> DomainInfo:
        info = self._vminfo(uuid)
        state = _STATES.get(info.state, (DomainState.NOSTATE, 0))[0]
        memory = info.memory_mb * 1024
        return DomainInfo(state, memory, memory, info.cpus, 0)  # VBoxManage reports no CPU time

    def domain_persistent(self, uuid: str) -> bool:
        self._vminfo(uuid)  # raises NO_DOMAIN for an unknown machine
        return True

    def domain_xml(self, uuid: str, flags: int) -> str:
        info = self._vminfo(uuid)
        defn = _domain_def(info)
        inactive = bool(flags & DomainXML.INACTIVE) or info.state not in _ONLINE
        dom_id = None if inactive else self.lookup_domain(uuid=uuid).id
        return defn.format(inactive=inactive, secure=bool(flags & DomainXML.SECURE), dom_id=dom_id)

    def define_xml(self, xml: str, flags: int) -> DomainRecord:
        raise error(ErrorCode.NO_SUPPORT, ERR, "defining VirtualBox machines from XML (use VBoxManage createvm)")

    def undefine(self, uuid: str, flags: int) -> None:
        raise error(ErrorCode.NO_SUPPORT, ERR, "undefining VirtualBox machines (use VBoxManage unregistervm)")

    def start(self, uuid: str, flags: int) -> None:
        """startvm --type headless. On failure the machine is as VirtualBox left it (normally stopped)."""
        with self._lock:
            info = self._vminfo(uuid)
            _refuse_busy(info)
            if info.state in _ONLINE:
                raise error(ErrorCode.OPERATION_INVALID, ERR, f"domain '{info.name}' is already running")
            self._run("startvm", uuid, "--type", "headless", timeout=_CONTROL_TIMEOUT)

    def shutdown(self, uuid: str, flags: int) -> None:
        """Press the ACPI power button; like libvirt's shutdown it returns before the guest is off."""
        with self._lock:
            info = self._vminfo(uuid)
            _refuse_busy(info)
            if info.state == "paused":
                raise error(ErrorCode.OPERATION_INVALID, ERR,
                            f"domain '{info.name}' is paused and cannot react to the ACPI power button")
            _require_running(info)
            self._run("controlvm", uuid, "acpipowerbutton", timeout=_CONTROL_TIMEOUT)

    def destroy(self, uuid: str, flags: int) -> None:
        """controlvm poweroff: the guest stops at once, unsaved guest state is lost."""
        with self._lock:
            info = self._vminfo(uuid)
            _require_running(info)
            self._run("controlvm", uuid, "poweroff", timeout=_CONTROL_TIMEOUT)

    def suspend(self, uuid: str) -> None:
        with self._lock:
            info = self._vminfo(uuid)
            if info.state == "paused":
                raise error(ErrorCode.OPERATION_INVALID, ERR, f"domain '{info.name}' is already paused")
            if info.state != "running":
                raise error(ErrorCode.OPERATION_INVALID, ERR, f"domain '{info.name}' is not running")
            self._run("controlvm", uuid, "pause", timeout=_CONTROL_TIMEOUT)

    def resume(self, uuid: str) -> None:
        with self._lock:
            info = self._vminfo(uuid)
            if info.state != "paused":
                raise error(ErrorCode.OPERATION_INVALID, ERR, f"domain '{info.name}' is not paused")
            self._run("controlvm", uuid, "resume", timeout=_CONTROL_TIMEOUT)

    # -- snapshots: reading -----------------------------------------------------------------------------
    def _load(self, uuid: str) -> tuple[VmInfo, SnapshotTree]:
        """The machine and its snapshot tree as VirtualBox has them now."""
        info = self._vminfo(uuid)
        listing = self._listing(uuid)
        return info, _build_tree(listing, _read_settings(info))

    def snapshot_query(self, uuid: str, fn: Callable[[SnapshotTree], T]) -> T:
        with self._lock:
            return fn(self._load(uuid)[1])

    def snapshot_xml(self, uuid: str, name: str, flags: int) -> str:
        info, tree = self._load(uuid)
        moment = _find(tree, name)
        snap: VBoxSnapshot = moment.defn
        defn = SnapshotDef(name=moment.name, description=snap.description or None, state=moment.state,
                           parent=moment.parent_name, creation_time=moment.creation_time)
        if snap.online is not None:
            defn.memory = Location.INTERNAL if snap.online else Location.NO
        # VirtualBox snapshots every hard disk (inside its own differencing images); drives with removable
        # or no media are left alone. The disks are the machine's current ones (see tests/vbox/README.md).
        defn.disks = [DiskSnapshot(name=view.target, snapshot=Location.INTERNAL
                                   if view.attachment.kind == "disk" and view.attachment.path else Location.NO)
                      for view in _disk_views(info)]
        return format_snapshot(defn, info.uuid)

    # -- snapshots: changing ----------------------------------------------------------------------------
    def snapshot_create(self, uuid: str, xml: str, flags: int) -> str:
        """`snapshot take`; the new snapshot becomes current, child of the previous current.

        Everything VirtualBox cannot do is refused before VBoxManage runs. If the snapshot is taken but
        HALT's power-off fails, the snapshot exists and the error says so.
        """
        _refuse_create_flags(flags)
        if flags & SnapshotCreate.VALIDATE:
            schema.validate_snapshot(xml)
        if flags & SnapshotCreate.REDEFINE:
            return self._redefine(uuid, xml, flags)
        defn = parse_snapshot(xml, ParseMode.CREATE)
        with self._lock:
            info, tree = self._load(uuid)
            _refuse_busy(info)
            if defn.name in _taken_names(tree):
                raise error(ErrorCode.OPERATION_FAILED, ErrorDomain.DOMAIN, f"domain moment {defn.name} already exists")
            online = info.state in _ONLINE or info.state == "saved"
            if flags & SnapshotCreate.LIVE and info.state != "running":
                raise error(ErrorCode.OPERATION_INVALID, ERR,
                            f"live snapshot creation needs a running domain; '{info.name}' is {info.state}")
            _check_create_memory(defn, online)
            _check_create_disks(defn, info)
            args = ["snapshot", uuid, "take", defn.name]
            if defn.description:
                args.append(f"--description={defn.description}")  # '=' keeps a value starting with '-' a value
            if flags & SnapshotCreate.LIVE:
                args.append("--live")
            self._run(*args, timeout=_SNAPSHOT_TIMEOUT)
            if flags & SnapshotCreate.HALT and info.state in _ONLINE:
                try:
                    self._run("controlvm", uuid, "poweroff", timeout=_CONTROL_TIMEOUT)
                except libvirtError as exc:
                    raise _after(exc, f"snapshot '{defn.name}' was taken, but halting the domain failed") from exc
        return defn.name

    def _redefine(self, uuid: str, xml: str, flags: int) -> str:
        """REDEFINE of an existing snapshot: only its description can change (`snapshot edit`).

        VirtualBox owns name, parent, state and time; XML that changes them is refused before anything runs.
        """
        defn = parse_snapshot(xml, ParseMode.REDEFINE)
        with self._lock:
            info, tree = self._load(uuid)
            moment = tree.get(defn.name)
            if moment is None:
                raise error(ErrorCode.NO_SUPPORT, ERR,
                            f"VirtualBox cannot define snapshot '{defn.name}' from XML, it only takes snapshots; "
                            "redefining an existing snapshot may change its description, and VBoxDriver."
                            "snapshot_edit renames one")
            snap: VBoxSnapshot = moment.defn
            if defn.parent != moment.parent_name:
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                            f"VirtualBox cannot move snapshot '{moment.name}' to parent '{defn.parent or '(none)'}'")
            if moment.state != SnapshotState.NOSTATE and defn.state.is_online != moment.state.is_online:
                raise error(ErrorCode.INVALID_ARG, ErrorDomain.DOMAIN_SNAPSHOT,
                            f"cannot change between online and offline snapshot state in snapshot {moment.name}")
            if moment.creation_time and defn.creation_time != moment.creation_time:
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                            f"VirtualBox cannot change the creation time of snapshot '{moment.name}'")
            if defn.domain is not None and defn.domain.uuid != info.uuid:
                raise error(ErrorCode.INVALID_ARG, ErrorDomain.DOMAIN_SNAPSHOT,
                            f"definition for snapshot {moment.name} must use uuid {info.uuid}")
            if flags & SnapshotCreate.CURRENT and tree.current is not moment:
                raise error(ErrorCode.NO_SUPPORT, ERR,
                            "VirtualBox makes a snapshot current only by reverting to it")
            wanted = defn.description or ""
            if wanted != snap.description:
                self._run("snapshot", uuid, "edit", snap.uuid, f"--description={wanted}",
                          not_found=ErrorCode.NO_DOMAIN_SNAPSHOT)
            return moment.name

    def snapshot_size(self, uuid: str, name: str) -> SnapshotSize:
        info, tree = self._load(uuid)
        return _space(info, _find(tree, name).defn.uuid)

    def snapshot_rename(self, uuid: str, name: str, new_name: str) -> str:
        """The generic rename hook (virDomainSnapshot.rename)."""
        return self.snapshot_edit(uuid, name, new_name=new_name)

    def snapshot_edit(self, uuid: str, name: str, *, new_name: str | None = None,
                      description: str | None = None) -> str:
        """Rename a snapshot and/or replace its description (`snapshot edit`); returns the resulting name.

        This is the rename path the generic API lacks (virsh snapshot-edit --rename would REDEFINE a new
        name, which VirtualBox cannot do). A new name must be valid and unused; on failure nothing changed.
        """
        if new_name is not None:
            check_name(new_name)
        with self._lock:
            _, tree = self._load(uuid)
            moment = _find(tree, name)
            snap: VBoxSnapshot = moment.defn
            if new_name is not None and new_name != moment.name and new_name in _taken_names(tree):
                raise error(ErrorCode.OPERATION_FAILED, ErrorDomain.DOMAIN, f"domain moment {new_name} already exists")
            args = ["snapshot", uuid, "edit", snap.uuid]
            if new_name is not None:
                args.append(f"--name={new_name}")
            if description is not None:
                args.append(f"--description={description}")
            if len(args) > 4:
                self._run(*args, not_found=ErrorCode.NO_DOMAIN_SNAPSHOT)
            return new_name if new_name is not None else moment.name

    def snapshot_revert(self, uuid: str, name: str, flags: int) -> None:
        """`snapshot restore`, then start (RUNNING) or start and pause (PAUSED) when asked.

        Without RUNNING/PAUSED the machine ends powered off, or saved for a snapshot taken online (what
        VirtualBox does). A running or paused machine is refused unless FORCE, which powers it off first.
        On failure: if the power-off or restore failed the machine is off (or unchanged when nothing ran);
        if starting or pausing failed the snapshot is restored and the error says so.
        """
        with self._lock:
            info, tree = self._load(uuid)
            moment = _find(tree, name)
            snap: VBoxSnapshot = moment.defn
            _refuse_busy(info)
            if info.state in _ONLINE:
                if not flags & SnapshotRevert.FORCE:
                    raise error(ErrorCode.SNAPSHOT_REVERT_RISKY, ERR,
                                f"domain '{info.name}' is {info.state}; reverting discards its current state, "
                                "use VIR_DOMAIN_SNAPSHOT_REVERT_FORCE to power it off first")
                self._run("controlvm", uuid, "poweroff", timeout=_CONTROL_TIMEOUT)
                restore = self._run_while_locked
            else:
                restore = self._run
            restore("snapshot", uuid, "restore", snap.uuid, timeout=_SNAPSHOT_TIMEOUT,
                    not_found=ErrorCode.NO_DOMAIN_SNAPSHOT)
            try:
                if flags & (SnapshotRevert.RUNNING | SnapshotRevert.PAUSED):
                    self._run("startvm", uuid, "--type", "headless", timeout=_CONTROL_TIMEOUT)
                if flags & SnapshotRevert.PAUSED:
                    # VBoxManage cannot start a machine paused: the guest runs for a moment first.
                    self._run("controlvm", uuid, "pause", timeout=_CONTROL_TIMEOUT)
            except libvirtError as exc:
                raise _after(exc, f"reverted to snapshot '{moment.name}', but the domain did not reach the "
                                  "requested state") from exc

    def snapshot_delete(self, uuid: str, name: str, flags: int) -> None:
        """`snapshot delete`; CHILDREN and CHILDREN_ONLY delete the descendants leaf first.

        VirtualBox merges a snapshot into its only child, so a snapshot with several children is refused
        (before anything runs) unless its subtree goes too. If one delete in a series fails, the snapshots
        deleted before it stay deleted and the error says how many there were.
        """
        if flags & SnapshotDelete.METADATA_ONLY:
            raise error(ErrorCode.NO_SUPPORT, ERR,
                        "VirtualBox keeps no snapshot metadata apart from the snapshot itself, so "
                        "VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY cannot be honoured")
        with self._lock:
            info, tree = self._load(uuid)
            moment = _find(tree, name)
            _refuse_busy(info)
            # Reversed pre-order: every snapshot comes after all of its descendants.
            below = list(reversed(list(moment.visit_descendants())))
            if flags & SnapshotDelete.CHILDREN:
                victims = [*below, moment]
            elif flags & SnapshotDelete.CHILDREN_ONLY:
                victims = below
            else:
                if len(moment.children) > 1:
                    raise error(ErrorCode.OPERATION_UNSUPPORTED, ERR,
                                f"VirtualBox cannot delete snapshot '{moment.name}': it has "
                                f"{len(moment.children)} children and VirtualBox merges a snapshot into its only "
                                "child; delete the other children first, or the whole subtree with "
                                "VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN")
                victims = [moment]
            for done, victim in enumerate(victims):
                snap: VBoxSnapshot = victim.defn
                try:
                    self._run("snapshot", uuid, "delete", snap.uuid, timeout=_SNAPSHOT_TIMEOUT,
                              not_found=ErrorCode.NO_DOMAIN_SNAPSHOT)
                except libvirtError as exc:
                    if not done:
                        raise
                    raise _after(exc, f"{done} of {len(victims)} snapshots were deleted before this "
                                      f"failure on '{victim.name}'") from exc


# -- helpers --------------------------------------------------------------------------------------------------
def _translate(exc: VBoxManageError, not_found: ErrorCode) -> libvirtError:
    """A VBoxManage failure as a libvirt error, classified by the COM status code (never translated)."""
    if isinstance(exc, VBoxTimeoutError):
        return error(ErrorCode.OPERATION_TIMEOUT, ERR, str(exc))
    if isinstance(exc, LaunchError) or not isinstance(exc, CommandError):
        return error(ErrorCode.OPERATION_FAILED, ERR, str(exc))
    failure, done = exc.failure, exc.completed
    status = failure.hresult if failure.hresult is not None else _BY_NAME.get(failure.code_name or "")
    if done.returncode == _RTEXITCODE_SYNTAX:
        code = ErrorCode.INTERNAL_ERROR  # our arguments did not suit this VBoxManage
    elif status == _NOT_FOUND:
        # FindMachine fails on IVirtualBox; anything found through the machine (snapshots) fails on IMachine.
        code = ErrorCode.NO_DOMAIN if failure.interface == "IVirtualBox" else not_found
    elif status == _INVALID_VM_STATE:
        code = ErrorCode.OPERATION_INVALID
    elif status in (_INVALID_OBJECT_STATE, _INVALID_SESSION_STATE, _OBJECT_IN_USE):
        code = ErrorCode.RESOURCE_BUSY  # the machine is locked by another session, or busy
    elif status == _NOT_SUPPORTED:
        code = ErrorCode.OPERATION_UNSUPPORTED
    elif status == _E_INVALIDARG:
        code = ErrorCode.INVALID_ARG
    elif status is None and "is not currently running" in failure.message:
        code = ErrorCode.OPERATION_INVALID  # controlvm's own check prints no status code
    else:
        code = ErrorCode.OPERATION_FAILED
    what = " ".join(done.args[:1] + (done.args[2:3] if done.args[:1] in (("snapshot",), ("controlvm",)) else ()))
    tag = failure.code_name or (f"0x{failure.hresult:08x}" if failure.hresult is not None
                                else f"exit {done.returncode}")
    return error(code, ERR, f"VBoxManage {what}: {failure.message} [{tag}]")


def _after(exc: libvirtError, what: str) -> libvirtError:
    """The same error, its message prefixed with what had already happened."""
    detail = exc.str2 if exc.str2 is not None else exc.message
    return error(ErrorCode(int(exc.code)), ERR, f"{what}: {detail}")


def _refuse_busy(info: VmInfo) -> None:
    if info.state in _BUSY:
        raise error(ErrorCode.RESOURCE_BUSY, ERR, f"domain '{info.name}' is busy (VirtualBox state {info.state})")


def _require_running(info: VmInfo) -> None:
    if info.state not in _ONLINE:
        raise error(ErrorCode.OPERATION_INVALID, ERR, f"domain '{info.name}' is not running")


def _refuse_create_flags(flags: int) -> None:
    if flags & SnapshotCreate.DISK_ONLY:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    "VirtualBox cannot take disk-only snapshots: its snapshots of a running machine always "
                    "include memory, and its disk snapshots are never external files")
    if flags & SnapshotCreate.QUIESCE:
        raise error(ErrorCode.NO_SUPPORT, ERR, "VirtualBox cannot quiesce guest file systems for a snapshot")
    if flags & SnapshotCreate.NO_METADATA:
        raise error(ErrorCode.NO_SUPPORT, ERR,
                    "VirtualBox keeps every snapshot in its own tree: a snapshot without metadata cannot exist")
    if flags & SnapshotCreate.REUSE_EXT:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, "VirtualBox snapshots have no external files to reuse")


def _check_create_memory(defn: SnapshotDef, online: bool) -> None:
    if defn.memory == Location.EXTERNAL:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    "VirtualBox keeps memory inside its snapshots; an external memory file is not supported")
    if defn.memory == Location.NO and online:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    "VirtualBox always saves the memory of a running, paused or saved machine in its snapshot")
    if defn.memory == Location.INTERNAL and not online:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, "the domain is not running: there is no memory state to save")


def _check_create_disks(defn: SnapshotDef, info: VmInfo) -> None:
    views = _disk_views(info)
    for disk in defn.disks:
        view = next((v for v in views if disk.name in (v.target, v.attachment.path)), None)
        if view is None:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, f"no disk named '{disk.name}'")
        if disk.snapshot in (Location.EXTERNAL, Location.MANUAL) or disk.source or disk.extra_settings():
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        f"disk '{disk.name}': VirtualBox snapshots disks internally only, not with snapshot mode "
                        f"'{(disk.snapshot if disk.snapshot != Location.DEFAULT else Location.EXTERNAL).xml}'")
        if disk.snapshot == Location.NO and view.attachment.kind == "disk":
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        f"VirtualBox cannot leave disk '{disk.name}' out of a snapshot")


def _find(tree: SnapshotTree, name: str) -> Moment:
    moment = tree.get(name)
    if moment is None:
        raise error(ErrorCode.NO_DOMAIN_SNAPSHOT, ERR, f"no domain snapshot with matching name '{name}'")
    return moment


def _taken_names(tree: SnapshotTree) -> set[str]:
    """Names a new snapshot may not use: the exposed ones and VirtualBox's own (which may repeat)."""
    return set(tree.names()) | {m.defn.name for m in tree.moments()}


def _alias(name: str, uuid: str) -> str:
    return f"{name}@{{{uuid}}}"


def _read_settings(info: VmInfo) -> dict[str, SettingsSnapshot]:
    """Timestamps and online flags from the machine's settings file (VBoxManage prints neither).

    An unreadable file is not an error: the snapshots then lack state and creation time.
    """
    data = _settings_bytes(info)
    try:
        return parse_settings_snapshots(data) if data is not None else {}
    except ParseError:
        return {}


def _settings_bytes(info: VmInfo) -> bytes | None:
    """The machine's settings file, or None when it cannot be read or is too large. A path that is not a
    regular file (a FIFO, a device) is refused: it is opened non-blocking and checked before any read, so a
    FIFO planted there cannot hang the command."""
    if not info.cfg_file:
        return None
    try:
        fd = os.open(info.cfg_file, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(ErrorCode.OPERATION_FAILED, ERR,
                        f"settings file '{info.cfg_file}' of domain '{info.name}' is not a regular file")
        with os.fdopen(fd, "rb") as handle:
            fd = -1  # the file object closes it now
            data = handle.read(_MAX_SETTINGS_BYTES + 1)
        return data if len(data) <= _MAX_SETTINGS_BYTES else None
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)


def _on_disk(path: str) -> int | None:
    try:
        return os.stat(path).st_blocks * 512
    except OSError:
        return None


def _space(info: VmInfo, snapshot_uuid: str) -> SnapshotSize:
    """The snapshot's saved-state file (memory) and the differencing images its hardware attaches (disk: the
    data written between its parent and it, which deleting it merges away), by their size on disk. Paths
    in the settings file are relative to the machine's folder."""
    data = _settings_bytes(info)
    try:
        space = parse_settings_space(data) if data is not None else None
    except ParseError:
        space = None
    if space is None or snapshot_uuid not in space.snapshots:
        return SnapshotSize(0, 0, memory_exact=False, disk_exact=False)
    folder = os.path.dirname(info.cfg_file or "")
    state_file, images = space.snapshots[snapshot_uuid]
    memory, memory_exact = 0, True
    if state_file:
        size = _on_disk(os.path.join(folder, state_file))
        memory, memory_exact = (size, True) if size is not None else (0, False)
    disk, disk_exact = 0, True
    for image in images:
        location, parent = space.disks.get(image, ("", None))
        if parent is None:
            continue  # a base image: deleting a snapshot never frees it
        size = _on_disk(os.path.join(folder, location))
        if size is None:
            disk_exact = False
        else:
            disk += size
    return SnapshotSize(memory, disk, memory_exact, disk_exact)


def _build_tree(listing: SnapshotListing, settings: dict[str, SettingsSnapshot]) -> SnapshotTree:
    """The SnapshotTree for a listing. Names VirtualBox holds more than once are exposed as NAME@{UUID}."""
    tree = SnapshotTree(metadata=False)
    counts = Counter(node.name for node in listing.nodes)
    by_uuid: dict[str, Moment] = {}
    for node in listing.nodes:  # pre-order: a parent is linked before its children, oldest child first
        name = node.name if counts[node.name] == 1 else _alias(node.name, node.uuid)
        if name in tree:
            name = _alias(node.name, node.uuid)
        extra = settings.get(node.uuid)
        state = SnapshotState.NOSTATE
        if extra is not None:
            state = SnapshotState.RUNNING if extra.online else SnapshotState.SHUTOFF
        payload = VBoxSnapshot(node.uuid, node.name, node.description, extra.online if extra else None,
                               extra.timestamp if extra else None)
        moment = tree.add(Moment(name, state=state, defn=payload,
                                 creation_time=(extra.timestamp or 0) if extra else 0))
        tree.link(moment, by_uuid.get(node.parent_uuid) if node.parent_uuid else None)
        by_uuid[node.uuid] = moment
    if listing.current_uuid is not None:
        tree.set_current(by_uuid.get(listing.current_uuid))
    return tree


def _disk_letters(index: int) -> str:
    """virIndexToDiskName's suffix: 0 -> a, 25 -> z, 26 -> aa."""
    out = ""
    while True:
        out = chr(ord("a") + index % 26) + out
        index = index // 26 - 1
        if index < 0:
            return out


def _disk_views(info: VmInfo) -> list[_DiskView]:
    counters: Counter[str] = Counter()
    views: list[_DiskView] = []
    for att in info.disks:
        bus, prefix = _BUSES.get(att.controller_type, ("scsi", "sd"))
        if bus == "ide":
            index = att.port * 2 + att.device  # hda/hdb primary, hdc/hdd secondary, as libvirt names them
        else:
            index = counters[prefix]
            counters[prefix] += 1
        target = f"nvme0n{index + 1}" if prefix == "nvme" else prefix + _disk_letters(index)
        views.append(_DiskView(target, bus, att))
    return views


def _arch(info: VmInfo) -> str:
    if info.platform.upper() == "ARM":
        return "aarch64"
    if info.longmode or "64" in info.ostype:
        return "x86_64"
    machine = platform.machine()
    return "i686" if machine in ("x86_64", "AMD64", "i686", "i386") else machine


def _domain_def(info: VmInfo) -> DomainDef:
    """The <domain type='vbox'> document for a machine: name, uuid, description, memory, vcpus, disks."""
    memory = info.memory_mb * 1024
    lines = ["<domain type='vbox'>", f"  <name>{escape(info.name)}</name>", f"  <uuid>{info.uuid}</uuid>"]
    if info.description:
        lines.append(f"  <description>{escape(info.description)}</description>")
    lines += [f"  <memory unit='KiB'>{memory}</memory>", f"  <currentMemory unit='KiB'>{memory}</currentMemory>",
              f"  <vcpu placement='static'>{info.cpus}</vcpu>", "  <os>", f"    <type arch='{_arch(info)}'>hvm</type>",
              "  </os>", "  <devices>"]
    for view in _disk_views(info):
        att = view.attachment
        lines.append(f"    <disk type='file' device='{att.kind}'>")
        if att.path:
            lines.append(f"      <source file='{escape(att.path)}'/>")
        lines.append(f"      <target dev='{view.target}' bus='{view.bus}'/>")
        if att.kind == "cdrom":
            lines.append("      <readonly/>")
        lines.append("    </disk>")
    lines += ["  </devices>", "</domain>"]
    return DomainDef.parse("\n".join(lines), ERR, trusted=True)  # the name is VirtualBox's: never refused
