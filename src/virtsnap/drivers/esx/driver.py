"""The esx:// and vpx:// driver: domains and snapshots of one ESX host (or one host of a vCenter) via pyvmomi.

vSphere owns the snapshot tree, so nothing is stored here (hasMetadata is 0, as in libvirt). Every tree read is
one RetrievePropertiesEx call; snapshots are keyed by MoRef (tree.py); faults become libvirt codes (session.py).
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from ...conf import validate as schema
from ...conf.domain_xml import DomainDef
from ...conf.snapshot_xml import Location, ParseMode, SnapshotDef, check_name, parse_snapshot
from ...conf.tree import Moment, SnapshotTree
from ...conf.xmlutil import escape
from ...errors import ErrorCode, ErrorDomain, error
from ...flags import (
    DomainState,
    DomainXML,
    FlagRule,
    ListDomains,
    SnapshotXML,
)
from ...flags import (
    SnapshotCreate as C,
)
from ...flags import (
    SnapshotDelete as D,
)
from ...flags import (
    SnapshotRevert as R,
)
from ...uri import URI
from ..base import SNAPSHOT_QUERIES, Capabilities, DomainInfo, DomainRecord, Op, SnapshotSize
from .auth import CredentialSource
from .session import ProgressCallback, Session, endpoint_from_uri, translate
from .tree import build_tree, raw_names, snapshot_size, snapshot_xml

ERR = ErrorDomain.ESX
T = TypeVar("T")
P = ParamSpec("P")

CAPABILITIES = Capabilities(
    func_prefix="esx",
    error_domain=ERR,
    flags={
        # HALT, LIVE and REUSE_EXT are refused by the generic check (VIR_ERR_INVALID_ARG, as libvirt's
        # virCheckFlags); REDEFINE only edits an existing snapshot's description (see _redefine).
        Op.SNAPSHOT_CREATE: C.DISK_ONLY | C.QUIESCE | C.NO_METADATA | C.REDEFINE | C.CURRENT | C.ATOMIC
        | C.VALIDATE,
        **SNAPSHOT_QUERIES,
        Op.SNAPSHOT_XML: SnapshotXML.SECURE,  # nothing secret in it
        Op.REVERT: R.RUNNING | R.PAUSED | R.FORCE,  # no ESX revert is "risky" in libvirt's sense
        Op.SNAPSHOT_DELETE: D.CHILDREN | D.CHILDREN_ONLY | D.METADATA_ONLY,
        Op.DOMAIN_XML: DomainXML.SECURE | DomainXML.INACTIVE | DomainXML.MIGRATABLE,
        Op.DOMAIN_STATE: 0,
        Op.DOMAIN_CREATE: 0,
        Op.DOMAIN_SHUTDOWN: 0,
        Op.DOMAIN_DESTROY: 0,
        Op.LIST_ALL_DOMAINS: ListDomains.ACTIVE | ListDomains.INACTIVE | ListDomains.PERSISTENT
        | ListDomains.TRANSIENT | ListDomains.RUNNING | ListDomains.PAUSED | ListDomains.SHUTOFF
        | ListDomains.OTHER | ListDomains.HAS_SNAPSHOT | ListDomains.NO_SNAPSHOT,
    },
    rules={Op.SNAPSHOT_CREATE: (
        # ESX quiesces only a snapshot without memory (the vSphere client greys it out otherwise).
        FlagRule(C.QUIESCE, C.DISK_ONLY, exclusive=False),
        FlagRule(C.REDEFINE, C.DISK_ONLY),
        FlagRule(C.REDEFINE, C.QUIESCE),
    )},
)

_POWER = {"poweredOn": DomainState.RUNNING, "suspended": DomainState.PAUSED, "poweredOff": DomainState.SHUTOFF}
_TOOLS_UP = ("guestToolsRunning", "guestToolsExecutingScripts")
_LIST_PATHS = ["name", "config.uuid", "runtime.powerState"]


def open_driver(uri: URI, read_only: bool, auth: Any = None) -> EsxDriver:
    """Log in to the ESX host or vCenter the URI names (credentials: see auth.py)."""
    endpoint = endpoint_from_uri(uri)
    services = ("esx",) if uri.scheme == "esx" else ("vpx", "esx")
    creds = CredentialSource(host=endpoint.host, services=services,
                             default_user="root" if uri.scheme == "esx" else "administrator", auth=auth)
    return EsxDriver(uri, Session(endpoint, creds))


def _locked(method: Callable[P, T]) -> Callable[P, T]:
    """One call at a time per connection: the session's task-wait collector is shared."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        self = args[0]
        assert isinstance(self, EsxDriver)
        with self._lock:
            return method(*args, **kwargs)

    return wrapper


def _unescape_name(name: str) -> str:
    """vSphere escapes '%', '/' and '\\' in inventory names."""
    return re.sub(r"%(25|2[fF]|5[cC])", lambda m: {"25": "%", "2f": "/", "5c": "\\"}[m.group(1).lower()], name)


def _power(value: Any) -> str:
    return str(value) if value is not None else "poweredOff"


class EsxDriver:
    capabilities = CAPABILITIES

    def __init__(self, uri: URI, session: Session) -> None:
        self.uri = uri
        self.session = session
        self.progress: ProgressCallback | None = None  # called as progress(what, percent) while tasks run
        self._lock = threading.RLock()
        self._vms: dict[str, Any] = {}  # uuid -> vim.VirtualMachine, refreshed on a miss
        self._closed = False

    def set_progress_callback(self, callback: ProgressCallback | None) -> None:
        """Report task progress (e.g. a CLI progress bar): callback(what, percent), 100 when done."""
        self.progress = callback

    @_locked
    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.session.close()

    @_locked
    def hypervisor_version(self) -> int:
        from ...conf.capabilities import version_number

        return version_number(str(self.session.content.about.version))

    @_locked
    def capabilities_xml(self) -> str:
        from ...conf.capabilities import format_capabilities

        try:
            info = self.session.props(self.session.host, ["hardware.systemInfo"])["hardware.systemInfo"]
        except Exception as exc:
            raise translate(exc, "cannot read the host's hardware") from exc
        return format_capabilities("x86_64", str(getattr(info, "uuid", "") or "") or None, "vmware")

    @_locked
    def node_info(self) -> list[object]:
        """virNodeGetInfo as libvirt's ESX driver fills it from the host's hardware properties."""
        import re

        names = ["hardware.cpuInfo", "hardware.memorySize", "hardware.numaInfo", "summary.hardware"]
        try:
            props = self.session.props(self.session.host, names)
        except Exception as exc:
            raise translate(exc, "cannot read the host's hardware") from exc
        cpu, numa, summary = props["hardware.cpuInfo"], props.get("hardware.numaInfo"), props["summary.hardware"]
        model = re.sub(r"\((R|C|TM)\)", "", str(getattr(summary, "cpuModel", "") or ""))
        model = re.sub(r" {2,}", " ", model)[:31]  # libvirt strips these to fit its 32-byte field
        packages, cores, threads = int(cpu.numCpuPackages), int(cpu.numCpuCores), int(cpu.numCpuThreads)
        nodes = int(getattr(numa, "numNodes", 0) or 0) or 1
        return [model, int(props["hardware.memorySize"]) // (1024 * 1024), threads, int(cpu.hz) // 1_000_000, nodes,
                packages, cores // packages if packages else 0, threads // cores if cores else 0]

    @_locked
    def hostname(self) -> str:
        try:
            return str(self.session.props(self.session.host, ["name"])["name"])
        except Exception as exc:
            raise translate(exc, "cannot read the host name") from exc

    # -- domains ------------------------------------------------------------------------------------
    def _record(self, obj: Any, props: dict[str, Any]) -> DomainRecord | None:
        raw_uuid = props.get("config.uuid")
        if not raw_uuid:
            return None  # an inaccessible VM has no config: libvirt cannot address it either
        uuid = _norm_uuid(str(raw_uuid))
        if uuid is None:
            return None
        self._vms[uuid] = obj
        running = _power(props.get("runtime.powerState")) != "poweredOff"
        return DomainRecord(_unescape_name(str(props.get("name", ""))), uuid, _dom_id(obj) if running else -1)

    def _list(self) -> list[DomainRecord]:
        try:
            found = self.session.host_vms(_LIST_PATHS)
        except Exception as exc:
            raise translate(exc, "cannot list domains") from exc
        self._vms.clear()
        records = [self._record(obj, props) for obj, props in found]
        return sorted((r for r in records if r is not None), key=lambda r: r.name)

    def _vm(self, uuid: str) -> Any:
        obj = self._vms.get(uuid)
        if obj is None:
            self._list()
            obj = self._vms.get(uuid)
        if obj is None:
            raise error(ErrorCode.NO_DOMAIN, ERR, f"no domain with matching uuid '{uuid}'")
        return obj

    def _props(self, uuid: str, paths: list[str], what: str) -> tuple[Any, dict[str, Any]]:
        """The VM and `paths` of it, one round trip; a VM gone meanwhile is VIR_ERR_NO_DOMAIN."""
        vm = self._vm(uuid)
        try:
            return vm, self.session.props(vm, paths)
        except Exception as exc:
            raise self._vm_error(uuid, exc, what) from exc

    def _vm_error(self, uuid: str, exc: Exception, what: str) -> Exception:
        err = translate(exc, what, ErrorCode.NO_DOMAIN)
        if err.code == ErrorCode.NO_DOMAIN:
            self._vms.pop(uuid, None)  # gone: the next lookup lists the host again
        return err

    @_locked
    def list_domains(self) -> list[DomainRecord]:
        return self._list()

    @_locked
    def lookup_domain(self, *, name: str | None = None, uuid: str | None = None,
                      id: int | None = None) -> DomainRecord:
        if uuid is not None:
            vm, props = self._props(uuid, _LIST_PATHS, f"cannot look up domain {uuid}")
            record = self._record(vm, props)
            if record is not None:
                return record
        else:
            for record in self._list():
                if (name is not None and record.name == name) or (id is not None and id >= 0 and record.id == id):
                    return record
        detail = f"no domain with matching name '{name}'" if name is not None else \
            f"no domain with matching uuid '{uuid}'" if uuid is not None else f"no domain with matching id {id}"
        raise error(ErrorCode.NO_DOMAIN, ERR, detail)

    @_locked
    def domain_state(self, uuid: str) -> tuple[DomainState, int]:
        _, props = self._props(uuid, ["runtime.powerState"], "cannot read the domain state")
        return _POWER.get(_power(props.get("runtime.powerState")), DomainState.NOSTATE), 0

    @_locked
    def domain_info(self, uuid: str) -> DomainInfo:
        _, props = self._props(uuid, ["runtime.powerState", "config.hardware.memoryMB", "config.hardware.numCPU"],
                               "cannot read the domain info")
        mem_kib = int(props.get("config.hardware.memoryMB") or 0) * 1024
        state = _POWER.get(_power(props.get("runtime.powerState")), DomainState.NOSTATE)
        return DomainInfo(state, mem_kib, mem_kib, int(props.get("config.hardware.numCPU") or 0), 0)

    @_locked
    def domain_xml(self, uuid: str, flags: int) -> str:
        vm, props = self._props(uuid, ["name", "config.uuid", "config.hardware", "config.guestId",
                                       "runtime.powerState"], "cannot read the domain definition")
        defn = self._domain_def(props, uuid)
        running = _power(props.get("runtime.powerState")) != "poweredOff"
        inactive = bool(flags & DomainXML.INACTIVE) or not running
        return defn.format(inactive=inactive, secure=bool(flags & DomainXML.SECURE),
                           dom_id=None if inactive else _dom_id(vm))

    def _domain_def(self, props: dict[str, Any], uuid: str) -> DomainDef:
        from .session import load_pyvmomi

        vim, _ = load_pyvmomi()
        hw = props.get("config.hardware")
        mem_kib = int(getattr(hw, "memoryMB", 0) or 0) * 1024
        vcpus = int(getattr(hw, "numCPU", 1) or 1)
        arch = "x86_64" if "64" in str(props.get("config.guestId") or "") else "i686"
        lines = [
            "<domain type='vmware'>",
            f"  <name>{escape(_unescape_name(str(props.get('name', ''))))}</name>",
            f"  <uuid>{uuid}</uuid>",
            f"  <memory unit='KiB'>{mem_kib}</memory>",
            f"  <currentMemory unit='KiB'>{mem_kib}</currentMemory>",
            f"  <vcpu placement='static'>{vcpus}</vcpu>",
            f"  <os>\n    <type arch='{arch}'>hvm</type>\n  </os>",
            "  <devices>",
        ]
        devices = list(getattr(hw, "device", None) or ())
        controllers = {d.key: d for d in devices}
        for dev in devices:
            if not isinstance(dev, vim.vm.device.VirtualDisk):
                continue
            target, bus = _disk_target(vim, controllers.get(dev.controllerKey), int(dev.unitNumber or 0))
            source = getattr(dev.backing, "fileName", None)
            lines.append("    <disk type='file' device='disk'>")
            if source:
                lines.append(f"      <source file='{escape(str(source))}'/>")
            lines.append(f"      <target dev='{target}' bus='{bus}'/>")
            lines.append("    </disk>")
        lines += ["  </devices>", "</domain>"]
        return DomainDef.parse("\n".join(lines) + "\n", ERR, trusted=True)  # vSphere's name: never refused

    def domain_persistent(self, uuid: str) -> bool:
        return True  # ESX has no transient domains

    def define_xml(self, xml: str, flags: int) -> DomainRecord:
        raise error(ErrorCode.NO_SUPPORT, ERR, "virDomainDefineXML")

    def undefine(self, uuid: str, flags: int) -> None:
        raise error(ErrorCode.NO_SUPPORT, ERR, "virDomainUndefineFlags")

    def _power_task(self, uuid: str, allowed: tuple[str, ...], refusal: str, verb: str,
                    start: Callable[[Any], Any]) -> None:
        vm, props = self._props(uuid, ["name", "runtime.powerState"], f"cannot {verb} the domain")
        if _power(props.get("runtime.powerState")) not in allowed:
            raise error(ErrorCode.OPERATION_INVALID, ERR, refusal)
        self.session.run_task(lambda: start(vm), f"cannot {verb} domain '{props.get('name')}'",
                              ErrorCode.NO_DOMAIN, self.progress)

    @_locked
    def start(self, uuid: str, flags: int) -> None:
        self._power_task(uuid, ("poweredOff",), "Domain is not powered off", "start", lambda vm: vm.PowerOnVM_Task())

    @_locked
    def shutdown(self, uuid: str, flags: int) -> None:
        """Ask VMware Tools to shut the guest down (ShutdownGuest); returns before the guest is off."""
        vm, props = self._props(uuid, ["name", "runtime.powerState"], "cannot shut down the domain")
        if _power(props.get("runtime.powerState")) != "poweredOn":
            raise error(ErrorCode.OPERATION_INVALID, ERR, "Domain is not powered on")
        try:
            vm.ShutdownGuest()
        except Exception as exc:
            raise translate(exc, f"cannot shut down domain '{props.get('name')}'", ErrorCode.NO_DOMAIN) from exc

    @_locked
    def destroy(self, uuid: str, flags: int) -> None:
        self._power_task(uuid, ("poweredOn", "suspended"), "Domain is not powered on", "destroy",
                         lambda vm: vm.PowerOffVM_Task())

    @_locked
    def suspend(self, uuid: str) -> None:
        self._power_task(uuid, ("poweredOn",), "Domain is not powered on", "suspend", lambda vm: vm.SuspendVM_Task())

    @_locked
    def resume(self, uuid: str) -> None:
        self._power_task(uuid, ("suspended",), "Domain is not suspended", "resume", lambda vm: vm.PowerOnVM_Task())

    # -- snapshots ----------------------------------------------------------------------------------
    def _tree(self, uuid: str, extra: tuple[str, ...] = ()) -> tuple[Any, SnapshotTree, dict[str, Any]]:
        """The VM, its snapshot forest and `extra` properties: one RetrievePropertiesEx call."""
        vm = self._vm(uuid)
        try:
            props = self.session.props_fast(vm, ["snapshot", *extra])
        except Exception as exc:
            raise self._vm_error(uuid, exc, "cannot read the snapshot tree") from exc
        return vm, build_tree(props.get("snapshot")), props

    @staticmethod
    def _moment(tree: SnapshotTree, name: str) -> Moment:
        moment = tree.get(name)
        if moment is None:
            raise error(ErrorCode.NO_DOMAIN_SNAPSHOT, ERR, f"no domain snapshot with matching name '{name}'")
        return moment

    @_locked
    def snapshot_query(self, uuid: str, fn: Callable[[SnapshotTree], T]) -> T:
        return fn(self._tree(uuid)[1])

    @_locked
    def snapshot_size(self, uuid: str, name: str) -> SnapshotSize:
        """From config.layoutEx, as govc computes it (tree.snapshot_size); one property read."""
        vm = self._vm(uuid)
        try:
            props = self.session.props(vm, ["snapshot", "layoutEx"])
        except Exception as exc:
            raise self._vm_error(uuid, exc, "cannot read the file layout") from exc
        tree = build_tree(props.get("snapshot"))
        moment = self._moment(tree, name)
        parent = moment.parent.defn.moref if moment.parent_name is not None and moment.parent is not None else None
        return snapshot_size(props.get("layoutEx"), moment.defn.moref, parent, tree.current is moment)

    @_locked
    def snapshot_xml(self, uuid: str, name: str, flags: int) -> str:
        return snapshot_xml(self._moment(self._tree(uuid)[1], name), uuid)

    @_locked
    def snapshot_create(self, uuid: str, xml: str, flags: int) -> str:
        """CreateSnapshot_Task: memory unless DISK_ONLY (and only of a powered-on VM), quiesce if QUIESCE.

        Names are unique here although vSphere allows duplicates. NO_METADATA changes nothing: vSphere keeps
        the tree either way. On failure ESX leaves no snapshot behind.
        """
        if flags & C.VALIDATE:
            schema.validate_snapshot(xml)
        if flags & C.REDEFINE:
            return self._redefine(uuid, xml, flags)
        defn = parse_snapshot(xml, ParseMode.CREATE)
        self._check_create(uuid, defn, flags)
        vm, tree, props = self._tree(uuid, ("name", "runtime.powerState", "guest.toolsRunningStatus"))
        if defn.name in tree or defn.name in raw_names(tree):
            raise error(ErrorCode.OPERATION_FAILED, ErrorDomain.DOMAIN, f"domain moment {defn.name} already exists")
        power = _power(props.get("runtime.powerState"))
        memory = not flags & C.DISK_ONLY and defn.memory != Location.NO and power == "poweredOn"
        quiesce = bool(flags & C.QUIESCE)
        dom_name = props.get("name")
        if quiesce and power == "poweredOn" and props.get("guest.toolsRunningStatus") not in _TOOLS_UP:
            raise error(ErrorCode.AGENT_UNRESPONSIVE, ERR,
                        f"VMware Tools is not running in domain '{dom_name}': cannot quiesce its file systems")
        self.session.run_task(
            lambda: vm.CreateSnapshot_Task(name=defn.name, description=defn.description or "", memory=memory,
                                           quiesce=quiesce),
            f"cannot create snapshot '{defn.name}' of domain '{dom_name}'", ErrorCode.NO_DOMAIN, self.progress)
        return defn.name

    def _check_create(self, uuid: str, defn: SnapshotDef, flags: int) -> None:
        """What ESX cannot do, refused before anything changes."""
        if defn.memory == Location.EXTERNAL:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        "ESX keeps a snapshot's memory with the VM: external memory snapshots are not supported")
        if flags & C.DISK_ONLY and defn.memory == Location.INTERNAL:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, "a disk-only snapshot cannot include the memory state")
        if not defn.disks:
            return
        for disk in defn.disks:
            if (disk.snapshot not in (Location.DEFAULT, Location.INTERNAL) or disk.source or disk.driver_type
                    or disk.extra_settings()):
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                            f"disk '{disk.name}': per-disk snapshot selection is not supported by ESX, which "
                            "snapshots every disk internally")
        _, props = self._props(uuid, ["name", "config.uuid", "config.hardware", "config.guestId"],
                               "cannot read the domain definition")
        domain = self._domain_def(props, uuid)
        for disk in defn.disks:
            if domain.disk_index(disk.name) is None:
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, f"no disk named '{disk.name}'")

    def _redefine(self, uuid: str, xml: str, flags: int) -> str:
        """REDEFINE of an existing snapshot that changes only its description (virsh snapshot-edit).

        vSphere owns the tree, so a redefinition can change nothing else: another name, parent, state or
        creation time is VIR_ERR_OPERATION_UNSUPPORTED, as is CURRENT on a snapshot that is not current.
        An unchanged definition is accepted without a call; a changed description goes through
        RenameSnapshot, which is VIR_ERR_NO_SUPPORT where the endpoint lacks it.
        """
        defn = parse_snapshot(xml, ParseMode.REDEFINE)
        _, tree, props = self._tree(uuid, ("name",))
        moment = tree.get(defn.name)
        if moment is None:
            raise error(ErrorCode.OPERATION_UNSUPPORTED, ERR,
                        f"snapshot '{defn.name}' does not exist and ESX cannot import snapshot metadata: "
                        "a redefinition may only change an existing snapshot's description")
        if defn.domain is not None and defn.domain.uuid != uuid:
            raise error(ErrorCode.INVALID_ARG, ErrorDomain.DOMAIN_SNAPSHOT,
                        f"definition for snapshot {defn.name} must use uuid {uuid}")
        for what, wanted, actual in (("parent", defn.parent, moment.parent_name),
                                     ("state", defn.state.xml, moment.state.xml),
                                     ("creationTime", defn.creation_time, moment.creation_time)):
            if wanted != actual:
                raise error(ErrorCode.OPERATION_UNSUPPORTED, ERR,
                            f"cannot change the {what} of ESX snapshot '{defn.name}' ({actual} to {wanted}); "
                            "only its description can be edited")
        if flags & C.CURRENT and tree.current is not moment:
            raise error(ErrorCode.OPERATION_UNSUPPORTED, ERR,
                        f"ESX makes snapshot '{defn.name}' current only by reverting to it")
        description = defn.description or ""
        if description != moment.defn.description:
            self._rename(moment, None, description, str(props.get("name")))
        return defn.name

    def _rename(self, moment: Moment, new_name: str | None, description: str | None, dom_name: str) -> None:
        try:
            moment.defn.ref.RenameSnapshot(name=new_name, description=description)
        except Exception as exc:
            err = translate(exc, f"cannot edit snapshot '{moment.name}' of domain '{dom_name}'",
                            ErrorCode.NO_DOMAIN_SNAPSHOT)
            if err.code == ErrorCode.NO_SUPPORT:
                err = error(ErrorCode.NO_SUPPORT, ERR,
                            f"RenameSnapshot: {self.session.endpoint.address} ({self.session.api_type}) cannot "
                            "rename snapshots or edit their descriptions")
            raise err from exc

    @_locked
    def snapshot_rename(self, uuid: str, name: str, new_name: str | None = None,
                        description: str | None = None) -> str:
        """Rename a snapshot and/or set its description (RenameSnapshot); returns the name it now has.

        Not yet reachable from api.py (libvirt has no rename call; virsh snapshot-edit --rename redefines
        under the new name, which ESX cannot do): exposed for a CLI `snapshot-rename`.
        """
        _, tree, props = self._tree(uuid, ("name",))
        moment = self._moment(tree, name)
        if new_name is not None and new_name != moment.name:
            check_name(new_name)
            if new_name in tree or new_name in raw_names(tree):
                raise error(ErrorCode.OPERATION_FAILED, ErrorDomain.DOMAIN, f"domain moment {new_name} already exists")
        else:
            new_name = None
        if new_name is None and (description is None or description == moment.defn.description):
            return name
        self._rename(moment, new_name, description, str(props.get("name")))
        return new_name or name

    @_locked
    def snapshot_revert(self, uuid: str, name: str, flags: int) -> None:
        """RevertToSnapshot_Task. Without flags the VM ends as ESX leaves it (a memory snapshot restores its
        power state, one without memory leaves the VM off). RUNNING / PAUSED then power on or suspend it.

        If the revert succeeds but the power change fails, the VM is at the snapshot in ESX's state.
        """
        vm, tree, props = self._tree(uuid, ("name",))
        moment = self._moment(tree, name)
        dom_name = props.get("name")
        suppress = True if flags & R.PAUSED else False if flags & R.RUNNING else None
        self.session.run_task(lambda: moment.defn.ref.RevertToSnapshot_Task(suppressPowerOn=suppress),
                              f"cannot revert domain '{dom_name}' to snapshot '{name}'",
                              ErrorCode.NO_DOMAIN_SNAPSHOT, self.progress)
        if flags & (R.RUNNING | R.PAUSED):
            self._settle_power(vm, uuid, DomainState.PAUSED if flags & R.PAUSED else DomainState.RUNNING,
                               f"reverted domain '{dom_name}' to snapshot '{name}' but cannot")

    def _settle_power(self, vm: Any, uuid: str, wanted: DomainState, what: str) -> None:
        _, props = self._props(uuid, ["runtime.powerState"], what + " read its power state")
        power = _power(props.get("runtime.powerState"))
        run = self.session.run_task
        if wanted == DomainState.RUNNING:
            if power != "poweredOn":
                run(vm.PowerOnVM_Task, what + " start it", ErrorCode.NO_DOMAIN, self.progress)
            return
        if power == "poweredOff":
            run(vm.PowerOnVM_Task, what + " start it", ErrorCode.NO_DOMAIN, self.progress)
            power = "poweredOn"
        if power == "poweredOn":
            run(vm.SuspendVM_Task, what + " suspend it", ErrorCode.NO_DOMAIN, self.progress)

    @_locked
    def snapshot_delete(self, uuid: str, name: str, flags: int) -> None:
        """RemoveSnapshot_Task; CHILDREN via removeChildren; CHILDREN_ONLY removes each child's subtree in turn
        (if one fails, the subtrees before it are gone); METADATA_ONLY succeeds without a change, as in libvirt,
        since vSphere keeps no metadata apart from the snapshot."""
        _, tree, props = self._tree(uuid, ("name",))
        moment = self._moment(tree, name)
        if flags & D.METADATA_ONLY:
            return
        what = f"cannot delete snapshot '{{}}' of domain '{props.get('name')}'"
        if flags & D.CHILDREN_ONLY:
            for child in list(moment.visit_children()):
                remove: Callable[[], Any] = functools.partial(child.defn.ref.RemoveSnapshot_Task, removeChildren=True)
                self.session.run_task(remove, what.format(child.name), ErrorCode.NO_DOMAIN_SNAPSHOT, self.progress)
            return
        self.session.run_task(lambda: moment.defn.ref.RemoveSnapshot_Task(removeChildren=bool(flags & D.CHILDREN)),
                              what.format(name), ErrorCode.NO_DOMAIN_SNAPSHOT, self.progress)


def _norm_uuid(text: str) -> str | None:
    import uuid as uuidlib

    try:
        return str(uuidlib.UUID(text))
    except ValueError:
        return None


_synthetic_ids: dict[str, int] = {}


def _dom_id(vm: Any) -> int:
    """libvirt's ESX driver: the number in the VM's MoRef ("vm-42" -> 42, "42" -> 42)."""
    match = re.search(r"(\d+)$", str(vm._moId))
    if match:
        return int(match.group(1))
    return _synthetic_ids.setdefault(str(vm._moId), 1_000_000 + len(_synthetic_ids))


def _disk_name(prefix: str, index: int) -> str:
    """virDiskNameFromIndex: 0 -> a, 25 -> z, 26 -> aa."""
    letters = ""
    index += 1
    while index > 0:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return prefix + letters


def _disk_target(vim: Any, controller: Any, unit: int) -> tuple[str, str]:
    """libvirt's VMX naming: scsiB:U -> sd (15 units a bus, unit 7 is the controller), ide -> hd, sata -> sd."""
    bus_number = int(getattr(controller, "busNumber", 0) or 0)
    device = vim.vm.device
    if isinstance(controller, device.VirtualIDEController):
        return _disk_name("hd", bus_number * 2 + unit), "ide"
    if isinstance(controller, device.VirtualAHCIController):
        return _disk_name("sd", bus_number * 30 + unit), "sata"
    if isinstance(controller, device.VirtualNVMEController):
        return f"nvme{bus_number}n{unit + 1}", "nvme"
    return _disk_name("sd", bus_number * 15 + (unit if unit < 7 else unit - 1)), "scsi"
