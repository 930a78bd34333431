"""The in-memory test driver behind test:///default: libvirt's test driver, call for call.

State is shared by the open connections of one process and starts fresh once the last one closes,
as in libvirt. Snapshot semantics follow libvirt's test_driver.c, including its flag set and messages.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable

from ...conf.domain_xml import DomainDef
from ...conf.redefine import redefine as redefine_snapshot
from ...conf.snapshot_xml import (
    Location,
    ParseMode,
    SnapshotDef,
    SnapshotState,
    align_disks,
    format_snapshot,
    parse_snapshot,
)
from ...conf.tree import Moment, SnapshotTree
from ...errors import ErrorCode, ErrorDomain, error
from ...flags import (
    DomainState,
    DomainUndefine,
    DomainXML,
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
from ...locks import RLock, allocate_lock
from ...uri import URI
from ..base import SNAPSHOT_QUERIES, Capabilities, DomainInfo, DomainRecord, Drift, Op, SnapshotSize

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any, TypeVar
    T = TypeVar("T")

ERR = ErrorDomain.TEST

# virDomainRunningReason / PausedReason / ShutoffReason values used here
RUNNING_BOOTED, RUNNING_FROM_SNAPSHOT, RUNNING_UNPAUSED = 1, 4, 5
PAUSED_USER, PAUSED_FROM_SNAPSHOT = 1, 7
SHUTOFF_SHUTDOWN, SHUTOFF_DESTROYED, SHUTOFF_FROM_SNAPSHOT = 1, 2, 7

CAPABILITIES = Capabilities(
    func_prefix="test",
    error_domain=ERR,
    flags={
        Op.SNAPSHOT_CREATE: C.REDEFINE | C.CURRENT | C.HALT | C.QUIESCE | C.ATOMIC | C.LIVE | C.VALIDATE,
        **SNAPSHOT_QUERIES,
        Op.REVERT: R.RUNNING | R.PAUSED | R.FORCE,
        Op.SNAPSHOT_DELETE: D.CHILDREN | D.CHILDREN_ONLY,
        Op.DOMAIN_XML: DomainXML.SECURE | DomainXML.INACTIVE | DomainXML.UPDATE_CPU | DomainXML.MIGRATABLE,
        Op.DOMAIN_UNDEFINE: DomainUndefine.MANAGED_SAVE | DomainUndefine.SNAPSHOTS_METADATA,
        Op.DOMAIN_DEFINE: 1,  # VIR_DOMAIN_DEFINE_VALIDATE
        Op.DOMAIN_CREATE: 0,
        Op.DOMAIN_STATE: 0,
        Op.LIST_ALL_DOMAINS: 0xFFFF,  # VIR_CONNECT_LIST_DOMAINS_FILTERS_ALL
        Op.DOMAIN_SHUTDOWN: 0,
        Op.DOMAIN_DESTROY: 1,  # VIR_DOMAIN_DESTROY_GRACEFUL
    },
)

# The domain libvirt's test:///default starts with, as `virsh -c test:///default dumpxml test` prints it.
# virDomainVirt's names in libvirt 9.0
VIRT_TYPES = ("none", "qemu", "kqemu", "kvm", "xen", "lxc", "uml", "openvz", "test", "vmware", "hyperv", "vbox", "phyp",
              "parallels", "bhyve", "vz", "hvf")

DEFAULT_DOMAIN_XML = """<domain type='test'>
  <name>test</name>
  <uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>
  <memory unit='KiB'>8388608</memory>
  <currentMemory unit='KiB'>2097152</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='i686'>hvm</type>
    <boot dev='hd'/>
  </os>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <source file='/guest/diskimage1'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </disk>
    <interface type='network'>
      <mac address='aa:bb:cc:dd:ee:ff'/>
      <source network='default'/>
      <target dev='testnet0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0'/>
    </interface>
    <memballoon model='virtio'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </memballoon>
  </devices>
</domain>
"""


class TestDomain:
    __slots__ = ("defn", "has_managed_save", "id", "persistent", "protected", "reason", "snapshots", "state")

    def __init__(self, defn: DomainDef, persistent: bool = True) -> None:
        self.defn = defn
        self.state = DomainState.SHUTOFF
        self.reason = 0
        self.id = -1
        self.persistent = persistent
        self.has_managed_save = False
        self.snapshots = SnapshotTree()
        self.protected: set[str] = set()  # virtsnap's protected mark, in memory like everything here

    @property
    def active(self) -> bool:
        return self.id >= 0

    def record(self) -> DomainRecord:
        return DomainRecord(self.defn.name, self.defn.uuid, self.id, self.persistent)


class TestState:
    """One hypervisor's worth of domains (libvirt's testDriver)."""

    def __init__(self) -> None:
        self.lock = RLock()
        self.domains: dict[str, TestDomain] = {}  # by uuid, in definition order
        self.next_id = 1
        dom = TestDomain(DomainDef.parse(DEFAULT_DOMAIN_XML, trusted=True))
        self.domains[dom.defn.uuid] = dom
        self.start_state(dom, 0)  # libvirt's default domain reports reason 0 (unknown)

    def start_state(self, dom: TestDomain, reason: int) -> None:
        dom.id = self.next_id
        self.next_id += 1
        dom.state, dom.reason = DomainState.RUNNING, reason

    def shutdown_state(self, dom: TestDomain, reason: int) -> None:
        dom.id = -1
        dom.state, dom.reason = DomainState.SHUTOFF, reason
        if not dom.persistent:
            self.domains.pop(dom.defn.uuid, None)


# test:///default state lives as long as at least one connection of this process is open.
_shared_lock = allocate_lock()
_shared: TestState | None = None
_shared_refs = 0


def open_driver(uri: URI, read_only: bool, auth: Any = None) -> TestDriver:
    global _shared, _shared_refs
    if uri.path != "/default" or uri.host:
        raise error(ErrorCode.NO_SUPPORT, ErrorDomain.TEST,
                    f"only test:///default is provided by virtsnap's test driver, not {uri.text}")
    with _shared_lock:
        if _shared is None:
            _shared = TestState()
        _shared_refs += 1
        return TestDriver(uri, _shared)


class TestDriver:
    capabilities = CAPABILITIES

    def __init__(self, uri: URI, state: TestState) -> None:
        self.uri = uri
        self._state = state
        self._closed = False

    def close(self) -> None:
        self.detach()

    def detach(self) -> None:
        """The caller closed its connection: a later open starts fresh once no other connection is open.
        This connection's remaining handles keep the state they see (libvirt instead keeps sharing it)."""
        global _shared, _shared_refs
        if self._closed:
            return
        self._closed = True
        with _shared_lock:
            _shared_refs -= 1
            if _shared_refs == 0:
                _shared = None

    def hostname(self) -> str:
        import socket

        return socket.gethostname()

    def hypervisor_version(self) -> int:
        return 2  # libvirt's test driver reports hypervisor version 0.0.2

    def capabilities_xml(self) -> str:
        from .hostcaps import CAPABILITIES

        return CAPABILITIES

    def node_info(self) -> list[object]:
        from .hostcaps import NODE_INFO

        return list(NODE_INFO)

    # -- domains ------------------------------------------------------------------------------------
    def _dom(self, uuid: str) -> TestDomain:
        dom = self._state.domains.get(uuid)
        if dom is None:
            raise error(ErrorCode.NO_DOMAIN, ERR, f"no domain with matching uuid '{uuid}'")
        return dom

    def list_domains(self) -> list[DomainRecord]:
        with self._state.lock:
            return [d.record() for d in self._state.domains.values()]

    def lookup_domain(self, *, name: str | None = None, uuid: str | None = None,
                      id: int | None = None) -> DomainRecord:
        with self._state.lock:
            for dom in self._state.domains.values():
                if (name is not None and dom.defn.name == name) or (uuid is not None and dom.defn.uuid == uuid) \
                        or (id is not None and dom.id == id and id >= 0):
                    return dom.record()
        raise error(ErrorCode.NO_DOMAIN, ERR)

    def domain_state(self, uuid: str) -> tuple[DomainState, int]:
        with self._state.lock:
            dom = self._dom(uuid)
            return dom.state, dom.reason

    def domain_persistent(self, uuid: str) -> bool:
        with self._state.lock:
            return self._dom(uuid).persistent

    def domain_os_type(self, uuid: str) -> str:
        with self._state.lock:
            self._dom(uuid)
            return "linux"  # what libvirt's test driver reports for every domain

    def domain_autostart(self, uuid: str) -> bool:
        with self._state.lock:
            self._dom(uuid)
            return False

    def domain_managed_save(self, uuid: str) -> bool:
        with self._state.lock:
            return self._dom(uuid).has_managed_save

    def security_model(self) -> tuple[str, str]:
        return "testSecurity", ""

    def domain_security_label(self, uuid: str) -> tuple[str, bool]:
        with self._state.lock:
            self._dom(uuid)
            return "libvirt-test", True

    def domain_info(self, uuid: str) -> DomainInfo:
        with self._state.lock:
            dom = self._dom(uuid)
            # libvirt's test driver reports the wall clock as CPU time.
            return DomainInfo(dom.state, dom.defn.memory_kib, dom.defn.current_memory_kib, dom.defn.vcpus,
                              time.time_ns())

    def domain_xml(self, uuid: str, flags: int) -> str:
        with self._state.lock:
            dom = self._dom(uuid)
            inactive = bool(flags & DomainXML.INACTIVE) or not dom.active
            return dom.defn.format(inactive=inactive, secure=bool(flags & DomainXML.SECURE),
                                   dom_id=None if inactive else dom.id)

    def define_xml(self, xml: str, flags: int) -> DomainRecord:
        defn = DomainDef.parse(xml)
        if defn.type not in VIRT_TYPES:  # libvirt's test driver takes any type libvirt knows (virDomainVirt)
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ErrorDomain.DOMAIN, f"invalid domain type {defn.type}")
        with self._state.lock:
            for dom in self._state.domains.values():
                if dom.defn.name == defn.name:
                    if dom.defn.uuid != defn.uuid:
                        raise error(ErrorCode.OPERATION_FAILED, ErrorDomain.DOMAIN,
                                    f"domain '{defn.name}' already exists with uuid {dom.defn.uuid}")
                    dom.defn = defn
                    dom.persistent = True
                    return dom.record()
                if dom.defn.uuid == defn.uuid:
                    raise error(ErrorCode.OPERATION_FAILED, ErrorDomain.DOMAIN,
                                f"domain '{dom.defn.name}' is already defined with uuid {defn.uuid}")
            dom = TestDomain(defn)
            self._state.domains[defn.uuid] = dom
            return dom.record()

    def undefine(self, uuid: str, flags: int) -> None:
        with self._state.lock:
            dom = self._dom(uuid)
            if dom.has_managed_save and not flags & DomainUndefine.MANAGED_SAVE:
                raise error(ErrorCode.OPERATION_INVALID, ERR,
                            "Refusing to undefine while domain managed save image exists")
            count = len(dom.snapshots)
            # libvirt only refuses for an inactive domain; an active one just becomes transient.
            if not dom.active and count and not flags & DomainUndefine.SNAPSHOTS_METADATA:
                raise error(ErrorCode.OPERATION_INVALID, ERR, f"cannot delete inactive domain with {count} snapshots")
            dom.has_managed_save = False
            if dom.active:
                dom.persistent = False
            else:
                del self._state.domains[uuid]

    def start(self, uuid: str, flags: int) -> None:
        with self._state.lock:
            dom = self._dom(uuid)
            if dom.state != DomainState.SHUTOFF:
                raise error(ErrorCode.INTERNAL_ERROR, ERR, f"Domain '{dom.defn.name}' is already running")
            self._state.start_state(dom, RUNNING_BOOTED)

    def shutdown(self, uuid: str, flags: int) -> None:
        with self._state.lock:
            dom = self._dom(uuid)
            if dom.state == DomainState.SHUTOFF:
                raise error(ErrorCode.INTERNAL_ERROR, ERR, f"domain '{dom.defn.name}' not running")
            self._state.shutdown_state(dom, SHUTOFF_SHUTDOWN)

    def destroy(self, uuid: str, flags: int) -> None:
        with self._state.lock:
            dom = self._dom(uuid)
            _check_active(dom)
            self._state.shutdown_state(dom, SHUTOFF_DESTROYED)

    def suspend(self, uuid: str) -> None:
        with self._state.lock:
            dom = self._dom(uuid)
            if dom.state in (DomainState.SHUTOFF, DomainState.PAUSED):
                raise error(ErrorCode.INTERNAL_ERROR, ERR, f"domain '{dom.defn.name}' not running")
            dom.state, dom.reason = DomainState.PAUSED, PAUSED_USER

    def resume(self, uuid: str) -> None:
        with self._state.lock:
            dom = self._dom(uuid)
            if dom.state != DomainState.PAUSED:
                raise error(ErrorCode.INTERNAL_ERROR, ERR, f"domain '{dom.defn.name}' not paused")
            dom.state, dom.reason = DomainState.RUNNING, RUNNING_UNPAUSED

    # -- snapshots ----------------------------------------------------------------------------------
    def snapshot_query(self, uuid: str, fn: Callable[[SnapshotTree], T]) -> T:
        with self._state.lock:
            return fn(self._dom(uuid).snapshots)

    def snapshot_check(self, uuid: str, flags: int) -> list[Drift]:
        """snapshot-check: the test driver's snapshots are their own data (in memory), so the only possible
        drift is a tree that breaks its invariants."""
        with self._state.lock:
            try:
                self._dom(uuid).snapshots.check_invariants()
            except AssertionError as exc:
                return [Drift("tree", "metadata", str(exc), "report this: the tree breaks an invariant")]
        return []

    def _snap(self, dom: TestDomain, name: str) -> Moment:
        moment = dom.snapshots.get(name)
        if moment is None:
            raise error(ErrorCode.NO_DOMAIN_SNAPSHOT, ERR, f"no domain snapshot with matching name '{name}'")
        return moment

    def snapshot_xml(self, uuid: str, name: str, flags: int) -> str:
        with self._state.lock:
            dom = self._dom(uuid)
            moment = self._snap(dom, name)
            defn: SnapshotDef = moment.defn
            defn.parent = moment.parent_name
            return format_snapshot(defn, dom.defn.uuid, secure=bool(flags & SnapshotXML.SECURE))

    def snapshot_create(self, uuid: str, xml: str, flags: int) -> str:
        """testDomainSnapshotCreateXML: the new snapshot becomes current, child of the previous current."""
        redefine = bool(flags & C.REDEFINE)
        update_current = not redefine or bool(flags & C.CURRENT)
        with self._state.lock:
            dom = self._dom(uuid)
            if not dom.persistent and flags & C.HALT:
                raise error(ErrorCode.OPERATION_INVALID, ERR, "cannot halt after transient domain snapshot")
            if flags & C.VALIDATE:
                from ...conf import validate as schema  # RelaxNG: only when asked for

                schema.validate_snapshot(xml)
            defn = parse_snapshot(xml, ParseMode.REDEFINE if redefine else ParseMode.CREATE)
            tree = dom.snapshots
            if redefine:
                moment = redefine_snapshot(tree, dom.defn, defn, _regular_file)
                parent = tree.get(defn.parent) if defn.parent else None
            else:
                defn.domain = dom.defn.copy()
                _align_disks(dom, defn)
                moment = tree.add(Moment(defn.name))
                parent = tree.current
                if flags & C.HALT and dom.active:
                    self._state.shutdown_state(dom, SHUTOFF_FROM_SNAPSHOT)
            moment.defn, moment.state, moment.external = defn, defn.state, defn.is_external
            moment.creation_time = defn.creation_time
            if update_current:
                tree.set_current(moment)
            tree.link(moment, parent)
            return str(moment.name)

    def snapshot_delete(self, uuid: str, name: str, flags: int) -> None:
        with self._state.lock:
            dom = self._dom(uuid)
            moment = self._snap(dom, name)
            dom.snapshots.delete(moment, children=bool(flags & D.CHILDREN),
                                 children_only=bool(flags & D.CHILDREN_ONLY))
            # a deleted snapshot's mark goes with it (O(marks), not O(snapshots): flat at 100,000)
            dom.protected -= {n for n in dom.protected if n not in dom.snapshots}

    def snapshot_size(self, uuid: str, name: str) -> SnapshotSize:
        """The test driver's snapshots hold no data: nothing to free, exactly."""
        with self._state.lock:
            self._snap(self._dom(uuid), name)
            return SnapshotSize(0, 0)

    def snapshot_protected(self, uuid: str) -> set[str]:
        with self._state.lock:
            return set(self._dom(uuid).protected)

    def snapshot_set_protected(self, uuid: str, name: str, on: bool) -> None:
        with self._state.lock:
            dom = self._dom(uuid)
            self._snap(dom, name)
            if on:
                dom.protected.add(name)
            else:
                dom.protected.discard(name)

    def snapshot_revert(self, uuid: str, name: str, flags: int) -> None:
        """testDomainRevertToSnapshot of libvirt 9.0: an online snapshot restarts the domain (new id);
        an offline one stops it and, even with RUNNING or PAUSED, leaves it stopped."""
        with self._state.lock:
            dom = self._dom(uuid)
            moment = self._snap(dom, name)
            defn: SnapshotDef = moment.defn
            if not dom.persistent and not defn.state.is_online and not flags & (R.RUNNING | R.PAUSED):
                raise error(ErrorCode.OPERATION_INVALID, ERR,
                            "transient domain needs to request run or pause to revert to inactive snapshot")
            if defn.domain is None:
                raise error(ErrorCode.SNAPSHOT_REVERT_RISKY, ERR,
                            f"snapshot '{defn.name}' lacks domain '{dom.defn.name}' rollback info")
            tree = dom.snapshots
            tree.set_current(None)
            config = defn.domain.copy()
            if defn.state.is_online:
                if dom.active:
                    self._state.shutdown_state(dom, SHUTOFF_FROM_SNAPSHOT)
                dom.defn = config
                self._state.start_state(dom, RUNNING_FROM_SNAPSHOT)
                if not flags & R.RUNNING and (defn.state == SnapshotState.PAUSED or flags & R.PAUSED):
                    dom.state, dom.reason = DomainState.PAUSED, PAUSED_FROM_SNAPSHOT
            else:
                dom.defn = config
                if dom.active:
                    self._state.shutdown_state(dom, SHUTOFF_FROM_SNAPSHOT)
            tree.set_current(moment)


def _check_active(dom: TestDomain) -> None:
    if not dom.active:
        raise error(ErrorCode.OPERATION_INVALID, ErrorDomain.DOMAIN, "domain is not running")


def _align_disks(dom: TestDomain, defn: SnapshotDef) -> None:
    """testDomainSnapshotAlignDisks: the state comes from the domain; memory is internal unless external."""
    if any(d.snapshot == Location.MANUAL for d in defn.disks):
        raise error(ErrorCode.OPERATION_UNSUPPORTED, ERR, "'manual' snapshot mode is not supported by the test driver")
    defn.state = SnapshotState(int(dom.state))
    if defn.memory == Location.EXTERNAL:
        default = Location.EXTERNAL
    else:
        defn.memory = Location.NO if defn.state == SnapshotState.SHUTOFF else Location.INTERNAL
        default = Location.INTERNAL
    align_disks(defn, default, uniform_internal=True, is_regular_file=_regular_file)


def _regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
