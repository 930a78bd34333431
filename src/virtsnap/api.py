"""libvirt-python compatible handles: virConnect, virDomain, virDomainSnapshot.

Each entry point checks its flags exactly as libvirt does (read-only connection, exclusive and required
pairs, then the driver's accepted set) before any driver code runs; drivers then do the work.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from . import dispatch, events, surface
from .collector import collector_paused
from .conf.tree import Moment, SnapshotTree, Summary
from .dispatch import public, public_class
from .drivers import open_driver
from .drivers.base import DomainRecord, Drift, Driver, Op, SnapshotSize
from .enums import member
from .errors import ErrorCode, ErrorDomain, error, last_error, libvirtError, protected_refusal, raw_error
from .flags import (
    ConnectFlags,
    DefinedDetail,
    DomainEvent,
    DomainEventID,
    DomainState,
    DomainStats,
    DomainXML,
    FlagRule,
    ListDomains,
    ResumedDetail,
    SnapshotCheck,
    SnapshotCreate,
    SnapshotDelete,
    SnapshotList,
    SnapshotPrune,
    SnapshotRevert,
    SnapshotXML,
    StartedDetail,
    StoppedDetail,
    SuspendedDetail,
    UndefinedDetail,
)
from .locks import allocate_lock
from .records import Frozen
from .uri import parse_uri

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any, Self, TypeVar

    from .conf.prune import Candidate, Decision, Policy
    T = TypeVar("T")


VIR_DOMAIN_EVENT_ID_LIFECYCLE = int(DomainEventID.LIFECYCLE)
VIR_DOMAIN_STATS_STATE = int(DomainStats.STATE)
VIR_DOMAIN_STATS_BLOCK = int(DomainStats.BLOCK)
# (event, detail) pairs of virDomainEventLifecycle, as libvirt's drivers emit them
DEFINED_ADDED = (int(DomainEvent.DEFINED), int(DefinedDetail.ADDED))
DEFINED_UPDATED = (int(DomainEvent.DEFINED), int(DefinedDetail.UPDATED))
UNDEFINED_REMOVED = (int(DomainEvent.UNDEFINED), int(UndefinedDetail.REMOVED))
STARTED_BOOTED = (int(DomainEvent.STARTED), int(StartedDetail.BOOTED))
STARTED_FROM_SNAPSHOT = (int(DomainEvent.STARTED), int(StartedDetail.FROM_SNAPSHOT))
SUSPENDED_PAUSED = (int(DomainEvent.SUSPENDED), int(SuspendedDetail.PAUSED))
SUSPENDED_FROM_SNAPSHOT = (int(DomainEvent.SUSPENDED), int(SuspendedDetail.FROM_SNAPSHOT))
RESUMED_UNPAUSED = (int(DomainEvent.RESUMED), int(ResumedDetail.UNPAUSED))
STOPPED_SHUTDOWN = (int(DomainEvent.STOPPED), int(StoppedDetail.SHUTDOWN))
STOPPED_DESTROYED = (int(DomainEvent.STOPPED), int(StoppedDetail.DESTROYED))
STOPPED_FROM_SNAPSHOT = (int(DomainEvent.STOPPED), int(StoppedDetail.FROM_SNAPSHOT))


def revert_events(was_active: bool, now: DomainState, flags: int) -> list[tuple[int, int]]:
    """The lifecycle events of a revert, as libvirt's test driver emits them: it stops an active domain,
    starts it again when the snapshot (or a RUNNING/PAUSED flag) asks, and reports the pause."""
    out = [STOPPED_FROM_SNAPSHOT] if was_active else []
    wants = SnapshotRevert.RUNNING | SnapshotRevert.PAUSED
    if now not in (DomainState.SHUTOFF, DomainState.NOSTATE) or flags & wants:
        out.append(STARTED_FROM_SNAPSHOT)
        if now == DomainState.PAUSED or flags & SnapshotRevert.PAUSED:
            out.append(SUSPENDED_FROM_SNAPSHOT)
    return out


class EntryPoint(Frozen):
    """libvirt's public-API checks for one entry point (libvirt-domain*.c), before the driver's own."""

    _fields = ("public_name", "op", "writes", "rules", "domain")
    __slots__ = _fields

    def __init__(self, public_name: str, op: Op | None, writes: bool = False, rules: tuple[FlagRule, ...] = (),
                 domain: ErrorDomain = ErrorDomain.DOMAIN_SNAPSHOT) -> None:
        self.public_name = public_name  # e.g. virDomainSnapshotCreateXML, named in read-only errors
        self.op = op
        self.writes = writes
        self.rules = rules
        self.domain = domain


_S = ErrorDomain.DOMAIN_SNAPSHOT
_D = ErrorDomain.DOMAIN
ENTRY_POINTS: dict[str, EntryPoint] = {e.public_name: e for e in (
    EntryPoint("virDomainSnapshotCreateXML", Op.SNAPSHOT_CREATE, True, (
        FlagRule(SnapshotCreate.CURRENT, SnapshotCreate.REDEFINE, exclusive=False),
        FlagRule(SnapshotCreate.REDEFINE, SnapshotCreate.NO_METADATA),
        FlagRule(SnapshotCreate.REDEFINE, SnapshotCreate.HALT),
    )),
    EntryPoint("virDomainRevertToSnapshot", Op.REVERT, True,
               (FlagRule(SnapshotRevert.RUNNING, SnapshotRevert.PAUSED),)),
    EntryPoint("virDomainSnapshotDelete", Op.SNAPSHOT_DELETE, True,
               (FlagRule(SnapshotDelete.CHILDREN, SnapshotDelete.CHILDREN_ONLY),)),
    EntryPoint("virDomainSnapshotGetXMLDesc", Op.SNAPSHOT_XML),
    EntryPoint("virDomainSnapshotNum", Op.SNAPSHOT_NUM),
    EntryPoint("virDomainSnapshotListNames", Op.SNAPSHOT_NUM),  # libvirt-python sizes the list with Num
    EntryPoint("virDomainListAllSnapshots", Op.LIST_ALL_SNAPSHOTS),
    EntryPoint("virDomainSnapshotNumChildren", Op.SNAPSHOT_NUM_CHILDREN),
    EntryPoint("virDomainSnapshotListChildrenNames", Op.SNAPSHOT_NUM_CHILDREN),
    EntryPoint("virDomainSnapshotListAllChildren", Op.SNAPSHOT_LIST_ALL_CHILDREN),
    EntryPoint("virDomainSnapshotLookupByName", Op.SNAPSHOT_LOOKUP),
    EntryPoint("virDomainHasCurrentSnapshot", Op.HAS_CURRENT),
    EntryPoint("virDomainSnapshotGetParent", Op.SNAPSHOT_PARENT),
    EntryPoint("virDomainSnapshotCurrent", Op.SNAPSHOT_CURRENT),
    EntryPoint("virDomainSnapshotIsCurrent", Op.SNAPSHOT_IS_CURRENT),
    EntryPoint("virDomainSnapshotHasMetadata", Op.SNAPSHOT_HAS_METADATA),
    EntryPoint("virDomainGetXMLDesc", Op.DOMAIN_XML, domain=_D),
    EntryPoint("virDomainGetState", Op.DOMAIN_STATE, domain=_D),
    EntryPoint("virDomainDefineXMLFlags", Op.DOMAIN_DEFINE, True, domain=_D),
    EntryPoint("virDomainDefineXML", Op.DOMAIN_DEFINE, True, domain=_D),
    EntryPoint("virDomainUndefine", Op.DOMAIN_UNDEFINE, True, domain=_D),
    EntryPoint("virDomainCreate", Op.DOMAIN_CREATE, True, domain=_D),
    EntryPoint("virDomainShutdown", Op.DOMAIN_SHUTDOWN, True, domain=_D),
    EntryPoint("virDomainDestroy", Op.DOMAIN_DESTROY, True, domain=_D),
    EntryPoint("virDomainUndefineFlags", Op.DOMAIN_UNDEFINE, True, domain=_D),
    EntryPoint("virDomainCreateWithFlags", Op.DOMAIN_CREATE, True, domain=_D),
    EntryPoint("virDomainShutdownFlags", Op.DOMAIN_SHUTDOWN, True, domain=_D),
    EntryPoint("virDomainDestroyFlags", Op.DOMAIN_DESTROY, True, domain=_D),
    EntryPoint("virDomainSuspend", None, True, domain=_D),
    EntryPoint("virDomainResume", None, True, domain=_D),
    EntryPoint("virDomainQemuAgentCommand", None, True, domain=_D),
    EntryPoint("virConnectListAllDomains", Op.LIST_ALL_DOMAINS, domain=ErrorDomain.NONE),
)}


def _check_flags(conn: virConnect, public_name: str, flags: int) -> None:
    """Reject what libvirt rejects, in libvirt's order: read-only, flag pairs, the driver's flag set."""
    entry = ENTRY_POINTS[public_name]
    if flags < 0 or flags > 0xFFFFFFFF:
        raise raw_error(ErrorCode.INVALID_ARG, entry.domain, f"flags {flags} out of range for an unsigned int")
    if conn.read_only and entry.writes:
        raise error(ErrorCode.OPERATION_DENIED, entry.domain, f"read only access prevents {public_name}")
    for rule in entry.rules:
        rule.check(flags, entry.domain)
    caps = conn.driver.capabilities
    if entry.op is not None:
        if entry.op not in caps.flags:
            raise error(ErrorCode.NO_SUPPORT, entry.domain, public_name)
        unknown = int(flags) & ~int(caps.flags[entry.op]) & 0xFFFFFFFF  # int: IntFlag's ~ keeps known bits only
        if unknown:
            raise raw_error(ErrorCode.INVALID_ARG, caps.error_domain,
                            f"unsupported flags (0x{unknown:x}) in function {caps.function_name(entry.op)}")
        for rule in caps.rules.get(entry.op, ()):
            rule.check(flags, caps.error_domain)


def _driver_call(fn: Callable[[], T]) -> T:
    """Run a driver call; anything but libvirtError is a bug, reported as VIR_ERR_INTERNAL_ERROR."""
    try:
        return fn()
    except libvirtError:
        raise
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # a driver bug must still reach the caller as a libvirt error
        raise error(ErrorCode.INTERNAL_ERROR, ErrorDomain.NONE, f"{type(exc).__name__}: {exc}") from exc


class _ConnectionCheck:
    """A virConnect method whose connection the caller already closed fails as libvirt's does."""

    def __init__(self, fn: Callable[..., Any], key: str) -> None:
        self.fn, self.key = fn, key

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = f"virConnect.{name}"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self.fn
        if obj._user_closed:
            c_name, domain = surface.C_NAMES.get(self.key, ("virConnect", 20))
            exc = error(ErrorCode.INVALID_CONN, member(ErrorDomain, domain, ErrorDomain.DOMAIN), c_name)

            def closed(*args: Any, **kwargs: Any) -> Any:
                dispatch.report(exc)
                raise exc

            return closed
        return self.fn.__get__(obj, owner)


def _guard_closed(cls: type) -> type:
    """virConnect: every public method first checks that the caller's reference is still open."""
    for name, value in list(vars(cls).items()):
        if not name.startswith("_") and callable(value) and name != "close":
            setattr(cls, name, _ConnectionCheck(value, f"virConnect.{name}"))
    return cls


def _lifecycle_args(record: DomainRecord, event: int, detail: int, conn: virConnect) -> tuple[Any, ...]:
    return (virDomain(conn, record), event, detail)


@_guard_closed
@public_class
class virConnect(surface.virConnect):  # noqa: N801 - libvirt-python's name
    """A connection to one hypervisor, chosen by URI.

    As in libvirt, every domain handle holds a reference: close() drops the caller's and returns 1 while
    handles remain (they keep working), 0 once the connection is gone; the driver closes with the last one.
    """

    def __init__(self, uri: str | None, read_only: bool = False, auth: Any = None) -> None:
        parsed = parse_uri(uri)
        self.driver: Driver = open_driver(parsed, read_only, auth)
        self.read_only = read_only
        self._user_closed = False
        self._refs = 1
        self._lock = allocate_lock()
        self._event_scope = self.driver.uri.text

    def _drv(self) -> Driver:
        return self.driver

    def _ref(self) -> None:
        with self._lock:
            self._refs += 1

    def _unref(self) -> int:
        with self._lock:
            self._refs -= 1
            left = self._refs
        if left == 0:
            events.deregister_all(self)
            self.driver.close()
        return left

    # -- connection ---------------------------------------------------------------------------------
    def close(self) -> int:
        if self._user_closed:
            raise error(ErrorCode.INVALID_CONN, ErrorDomain.NONE, "virConnectClose")
        self._user_closed = True
        detach = getattr(self.driver, "detach", None)
        if detach is not None:
            detach()
        return 1 if self._unref() > 0 else 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._user_closed:
            self.close()

    def getURI(self) -> str:  # noqa: N802
        return self._drv().uri.text

    def getHostname(self) -> str:  # noqa: N802
        return _driver_call(self._drv().hostname)

    def getType(self) -> str:  # noqa: N802
        return self._drv().capabilities.func_prefix.upper()

    def isAlive(self) -> int:  # noqa: N802
        return 1

    def getLibVersion(self) -> int:  # noqa: N802
        return surface.LIBVIR_VERSION_NUMBER

    def getVersion(self) -> int:  # noqa: N802
        fn = getattr(self._drv(), "hypervisor_version", None)
        if fn is None:
            raise error(ErrorCode.NO_SUPPORT, ErrorDomain.DOMAIN, "virConnectGetVersion")
        return int(_driver_call(fn))

    def getCapabilities(self) -> str:  # noqa: N802
        fn = getattr(self._drv(), "capabilities_xml", None)
        if fn is None:
            raise error(ErrorCode.NO_SUPPORT, ErrorDomain.DOMAIN, "virConnectGetCapabilities")
        return str(_driver_call(fn))

    def getInfo(self) -> list[Any]:  # noqa: N802
        fn = getattr(self._drv(), "node_info", None)
        if fn is None:
            raise error(ErrorCode.NO_SUPPORT, ErrorDomain.DOMAIN, "virNodeGetInfo")
        return list(_driver_call(fn))

    def domainListGetStats(self, doms: list[virDomain], stats: int = 0, flags: int = 0) -> list[Any]:  # noqa: N802
        """The state and block groups (VIR_DOMAIN_STATS_STATE, VIR_DOMAIN_STATS_BLOCK); 0 means both."""
        return [(dom, dom._stats(stats)) for dom in doms]

    def getAllDomainStats(self, stats: int = 0, flags: int = 0) -> list[Any]:  # noqa: N802
        return self.domainListGetStats(self.listAllDomains(flags & 0xFF), stats, 0)

    # -- events -------------------------------------------------------------------------------------
    def domainEventRegisterAny(self, dom: Any, eventID: int, cb: Any, opaque: Any) -> int:  # noqa: N802, N803
        if eventID != VIR_DOMAIN_EVENT_ID_LIFECYCLE:
            raise raw_error(ErrorCode.INVALID_ARG, ErrorDomain.DOMAIN,
                            f"unsupported event ID {eventID} in function virConnectDomainEventRegisterAny")
        uuid = dom.UUIDString() if dom is not None else None
        return events.register(self, self._event_scope, uuid, eventID, cb, opaque)

    def domainEventDeregisterAny(self, callbackID: int) -> int:  # noqa: N802, N803
        if not events.deregister(self, callbackID):
            raise raw_error(ErrorCode.INVALID_ARG, ErrorDomain.DOMAIN,
                            f"callback ID {callbackID} not found")
        return 0

    def domainEventRegister(self, cb: Any, opaque: Any) -> int:  # noqa: N802
        events.register(self, self._event_scope, None, -1, cb, opaque)
        return 0

    def domainEventDeregister(self, cb: Any) -> int:  # noqa: N802
        for callback_id in events.ids_for(self, -1, cb):
            events.deregister(self, callback_id)
        return 0

    def _emit_lifecycle(self, record: DomainRecord, pairs: list[tuple[int, int]]) -> None:
        for event, detail in pairs:
            for event_id in (VIR_DOMAIN_EVENT_ID_LIFECYCLE, -1):
                events.emit(self._event_scope, record.uuid, event_id,
                            functools.partial(_lifecycle_args, record, event, detail))

    # -- domains ------------------------------------------------------------------------------------
    def _domain(self, record: DomainRecord) -> virDomain:
        return virDomain(self, record)

    def lookupByName(self, name: str) -> virDomain:  # noqa: N802
        return self._domain(_driver_call(lambda: self._drv().lookup_domain(name=name)))

    def lookupByUUIDString(self, uuidstr: str) -> virDomain:  # noqa: N802
        import uuid as uuidlib  # uuid imports platform: only the UUID calls pay for it

        try:
            normalized = str(uuidlib.UUID(uuidstr))
        except ValueError as exc:
            raise error(ErrorCode.INVALID_ARG, ErrorDomain.DOMAIN, f"uuidstr '{uuidstr}' is not a valid UUID") from exc
        return self._domain(_driver_call(lambda: self._drv().lookup_domain(uuid=normalized)))

    def lookupByUUID(self, uuid: bytes) -> virDomain:  # noqa: N802
        import uuid as uuidlib

        return self.lookupByUUIDString(str(uuidlib.UUID(bytes=bytes(uuid))))

    def lookupByID(self, id: int) -> virDomain:  # noqa: N802
        return self._domain(_driver_call(lambda: self._drv().lookup_domain(id=id)))

    def listAllDomains(self, flags: int = 0) -> list[virDomain]:  # noqa: N802
        _check_flags(self, "virConnectListAllDomains", flags)
        records = _driver_call(self._drv().list_domains)
        out = []
        for rec in records:
            active = rec.id >= 0
            if flags & (ListDomains.ACTIVE | ListDomains.INACTIVE) and not (
                (flags & ListDomains.ACTIVE and active) or (flags & ListDomains.INACTIVE and not active)
            ):
                continue
            if flags & (ListDomains.PERSISTENT | ListDomains.TRANSIENT) and not (
                (flags & ListDomains.PERSISTENT and rec.persistent)
                or (flags & ListDomains.TRANSIENT and not rec.persistent)
            ):
                continue
            state_mask = ListDomains.RUNNING | ListDomains.PAUSED | ListDomains.SHUTOFF | ListDomains.OTHER
            uuid = rec.uuid
            if flags & state_mask:
                state = _driver_call(functools.partial(self._drv().domain_state, uuid))[0]
                kind = {DomainState.RUNNING: ListDomains.RUNNING, DomainState.PAUSED: ListDomains.PAUSED,
                        DomainState.SHUTOFF: ListDomains.SHUTOFF}.get(state, ListDomains.OTHER)
                if not flags & kind:
                    continue
            if flags & (ListDomains.HAS_SNAPSHOT | ListDomains.NO_SNAPSHOT):
                count = _driver_call(functools.partial(self._drv().snapshot_query, uuid, len))
                wanted = ListDomains.HAS_SNAPSHOT if count else ListDomains.NO_SNAPSHOT
                if not flags & wanted:
                    continue
            out.append(self._domain(rec))
        return out

    def driverCapabilities(self) -> dict[str, Any]:  # noqa: N802
        """virtsnap extension (for the rpc server): the flags this connection's driver accepts per entry point,
        as plain data (its C function prefix, error domain, and {entry point: mask})."""
        caps = self._drv().capabilities
        return {"func_prefix": caps.func_prefix, "error_domain": int(caps.error_domain),
                "flags": {op.value: int(mask) for op, mask in caps.flags.items()}}

    def getSecurityModel(self) -> list[str]:  # noqa: N802
        fn = getattr(self._drv(), "security_model", None)
        if fn is None:
            raise error(ErrorCode.NO_SUPPORT, ErrorDomain.NONE, "virNodeGetSecurityModel")
        model, doi = _driver_call(fn)
        return [model, doi]

    def listDomainsID(self) -> list[int]:  # noqa: N802
        return [r.id for r in _driver_call(self._drv().list_domains) if r.id >= 0]

    def listDefinedDomains(self) -> list[str]:  # noqa: N802
        return [r.name for r in _driver_call(self._drv().list_domains) if r.id < 0]

    def numOfDomains(self) -> int:  # noqa: N802
        return len(self.listDomainsID())

    def numOfDefinedDomains(self) -> int:  # noqa: N802
        return len(self.listDefinedDomains())

    def defineXML(self, xml: str) -> virDomain:  # noqa: N802
        _check_flags(self, "virDomainDefineXML", 0)
        return self._define(xml, 0)

    def defineXMLFlags(self, xml: str, flags: int = 0) -> virDomain:  # noqa: N802
        _check_flags(self, "virDomainDefineXMLFlags", flags)
        return self._define(xml, flags)

    def _define(self, xml: str, flags: int) -> virDomain:
        listening = events.listening(self._event_scope)  # finding ADDED vs UPDATED costs a listing
        before = {r.uuid for r in _driver_call(self._drv().list_domains)} if listening else set()
        dom = self._domain(_driver_call(lambda: self._drv().define_xml(xml, flags)))
        if listening:
            dom._lifecycle(DEFINED_UPDATED if dom._uuid in before else DEFINED_ADDED)
        return dom


@public_class
class virDomain(surface.virDomain):  # noqa: N801
    """A domain handle. Like libvirt's virDomainPtr it remembers the name, UUID and the ID it was found with,
    and holds a reference on its connection for as long as it lives."""

    def __init__(self, conn: virConnect, record: DomainRecord) -> None:
        self._conn = conn
        self._name = record.name
        self._uuid = record.uuid
        self._id = record.id
        conn._ref()

    def __del__(self) -> None:
        conn = self.__dict__.get("_conn")
        if conn is not None:
            try:
                conn._unref()
            except Exception:  # interpreter shutdown: nothing left to release
                pass

    def _record(self) -> DomainRecord:
        return DomainRecord(self._name, self._uuid, self._id)

    def _lifecycle(self, *pairs: tuple[int, int]) -> None:
        self._conn._emit_lifecycle(self._record(), list(pairs))

    def _stats(self, groups: int) -> dict[str, Any]:
        groups = groups or (VIR_DOMAIN_STATS_STATE | VIR_DOMAIN_STATS_BLOCK)
        out: dict[str, Any] = {}
        if groups & VIR_DOMAIN_STATS_STATE:
            state, reason = self.state()
            out.update({"state.state": state, "state.reason": reason})
        if groups & VIR_DOMAIN_STATS_BLOCK:
            fn = getattr(self._drv(), "domain_block_stats", None)
            if fn is not None:
                out.update(_driver_call(lambda: fn(self._uuid)))
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, virDomain) and other._conn is self._conn and other._uuid == self._uuid

    def __hash__(self) -> int:
        return hash(self._uuid)

    def __repr__(self) -> str:
        return f"<virtsnap.virDomain {self._name}>"

    def _drv(self) -> Driver:
        return self._conn._drv()

    def _check(self, public_name: str, flags: int) -> None:
        _check_flags(self._conn, public_name, flags)

    def connect(self) -> virConnect:
        return self._conn

    def name(self) -> str:
        return self._name

    def UUIDString(self) -> str:  # noqa: N802
        return self._uuid

    def UUID(self) -> bytes:  # noqa: N802
        import uuid as uuidlib

        return uuidlib.UUID(self._uuid).bytes

    def ID(self) -> int:  # noqa: N802
        return self._id

    def state(self, flags: int = 0) -> list[int]:
        self._check("virDomainGetState", flags)
        state, reason = _driver_call(lambda: self._drv().domain_state(self._uuid))
        return [int(state), int(reason)]

    def isActive(self) -> int:  # noqa: N802
        return 1 if self.state()[0] not in (DomainState.SHUTOFF, DomainState.NOSTATE) else 0

    def isPersistent(self) -> int:  # noqa: N802
        return 1 if _driver_call(lambda: self._drv().domain_persistent(self._uuid)) else 0

    def info(self) -> list[int]:
        info = _driver_call(lambda: self._drv().domain_info(self._uuid))
        return [int(info.state), info.max_mem_kib, info.memory_kib, info.vcpus, info.cpu_time_ns]

    def maxMemory(self) -> int:  # noqa: N802
        return self.info()[1]

    def _optional(self, method: str, public_name: str) -> Any:
        fn = getattr(self._drv(), method, None)
        if fn is None:
            raise error(ErrorCode.NO_SUPPORT, ErrorDomain.DOMAIN, public_name)
        return _driver_call(lambda: fn(self._uuid))

    def snapshotCheck(self, flags: int = 0) -> list[Drift]:  # noqa: N802
        """virtsnap extension: compare the snapshot metadata with the images and the hypervisor process.

        Returns the findings (an empty list: no drift). VIR_DOMAIN_SNAPSHOT_CHECK_REPAIR fixes what is safe
        (see `Drift.fix` for what was done or why not). Drivers whose hypervisor owns the tree (ESX,
        VirtualBox) and the in-memory test driver have nothing to compare: VIR_ERR_NO_SUPPORT.
        """
        unknown = flags & ~int(SnapshotCheck.REPAIR)
        if flags < 0 or unknown:
            raise error(ErrorCode.INVALID_ARG, ErrorDomain.DOMAIN_SNAPSHOT,
                        f"unsupported flags (0x{unknown & 0xFFFFFFFF:x}) in function virDomainSnapshotCheck")
        if flags & SnapshotCheck.REPAIR and self._conn.read_only:
            raise error(ErrorCode.OPERATION_DENIED, ErrorDomain.DOMAIN_SNAPSHOT,
                        "read only access prevents virDomainSnapshotCheck")
        fn = getattr(self._drv(), "snapshot_check", None)
        if fn is None:
            raise error(ErrorCode.NO_SUPPORT, ErrorDomain.DOMAIN_SNAPSHOT, "virDomainSnapshotCheck")
        return list(_driver_call(lambda: fn(self._uuid, flags)))

    def OSType(self) -> str:  # noqa: N802
        return str(self._optional("domain_os_type", "virDomainGetOSType"))

    def autostart(self) -> int:
        return 1 if self._optional("domain_autostart", "virDomainGetAutostart") else 0

    def hasManagedSaveImage(self, flags: int = 0) -> int:  # noqa: N802
        return 1 if self._optional("domain_managed_save", "virDomainHasManagedSaveImage") else 0

    def securityLabel(self) -> list[Any]:  # noqa: N802
        label, enforcing = self._optional("domain_security_label", "virDomainGetSecurityLabel")
        return [label, 1 if enforcing else 0]

    def XMLDesc(self, flags: int = 0) -> str:  # noqa: N802
        if self._conn.read_only and flags & DomainXML.SECURE:
            raise error(ErrorCode.OPERATION_DENIED, ErrorDomain.DOMAIN, "virDomainGetXMLDesc with secure flag")
        self._check("virDomainGetXMLDesc", flags)
        return _driver_call(lambda: self._drv().domain_xml(self._uuid, flags))

    def create(self) -> int:
        return self._start_via("virDomainCreate", 0)

    def createWithFlags(self, flags: int = 0) -> int:  # noqa: N802
        return self._start_via("virDomainCreateWithFlags", flags)

    def _start_via(self, public_name: str, flags: int) -> int:
        self._check(public_name, flags)
        _driver_call(lambda: self._drv().start(self._uuid, flags))
        self._id = _driver_call(lambda: self._drv().lookup_domain(uuid=self._uuid)).id  # as libvirt updates it
        self._lifecycle(STARTED_BOOTED)
        return 0

    def shutdown(self) -> int:
        return self._shutdown_via("virDomainShutdown", 0)

    def shutdownFlags(self, flags: int = 0) -> int:  # noqa: N802
        return self._shutdown_via("virDomainShutdownFlags", flags)

    def _shutdown_via(self, public_name: str, flags: int) -> int:
        self._check(public_name, flags)
        _driver_call(lambda: self._drv().shutdown(self._uuid, flags))
        self._lifecycle(STOPPED_SHUTDOWN)
        self._id = -1
        return 0

    def destroy(self) -> int:
        return self._destroy_via("virDomainDestroy", 0)

    def destroyFlags(self, flags: int = 0) -> int:  # noqa: N802
        return self._destroy_via("virDomainDestroyFlags", flags)

    def _destroy_via(self, public_name: str, flags: int) -> int:
        self._check(public_name, flags)
        _driver_call(lambda: self._drv().destroy(self._uuid, flags))
        self._lifecycle(STOPPED_DESTROYED)
        self._id = -1
        return 0

    def suspend(self) -> int:
        self._check("virDomainSuspend", 0)
        _driver_call(lambda: self._drv().suspend(self._uuid))
        self._lifecycle(SUSPENDED_PAUSED)
        return 0

    def resume(self) -> int:
        self._check("virDomainResume", 0)
        _driver_call(lambda: self._drv().resume(self._uuid))
        self._lifecycle(RESUMED_UNPAUSED)
        return 0

    def undefine(self) -> int:
        return self._undefine_via("virDomainUndefine", 0)

    def undefineFlags(self, flags: int = 0) -> int:  # noqa: N802
        return self._undefine_via("virDomainUndefineFlags", flags)

    def _undefine_via(self, public_name: str, flags: int) -> int:
        self._check(public_name, flags)
        _driver_call(lambda: self._drv().undefine(self._uuid, flags))
        self._lifecycle(UNDEFINED_REMOVED)
        return 0

    # -- snapshots ----------------------------------------------------------------------------------
    def _query(self, fn: Callable[[SnapshotTree], T]) -> T:
        return _driver_call(lambda: self._drv().snapshot_query(self._uuid, fn))

    def _snapshot(self, name: str) -> virDomainSnapshot:
        return virDomainSnapshot(self, name)

    def _point(self, name: str | None) -> Any:
        """The driver's reading of one snapshot alone (the current one when `name` is None), without loading
        the tree, or None when the driver has no such reading (it answers through the tree instead)."""
        fn = getattr(self._drv(), "snapshot_point", None)
        return None if fn is None else _driver_call(lambda: fn(self._uuid, name))

    def snapshotCreateXML(self, xmlDesc: str, flags: int = 0) -> virDomainSnapshot:  # noqa: N802, N803
        self._check("virDomainSnapshotCreateXML", flags)
        if xmlDesc is None:
            raise raw_error(ErrorCode.INVALID_ARG, ErrorDomain.DOMAIN_SNAPSHOT,
                            "Invalid argument: xmlDesc in virDomainSnapshotCreateXML must not be NULL")
        was_active = flags & SnapshotCreate.HALT and events.listening(self._conn._event_scope) and self.isActive()
        name = _driver_call(lambda: self._drv().snapshot_create(self._uuid, xmlDesc, flags))
        if flags & SnapshotCreate.HALT:
            self._forget_id_if_stopped()
            if was_active:
                self._lifecycle(STOPPED_FROM_SNAPSHOT)
        return self._snapshot(name)

    def snapshotNum(self, flags: int = 0) -> int:  # noqa: N802
        self._check("virDomainSnapshotNum", flags)
        return self._query(lambda tree: len(tree.select(None, flags)))

    def snapshotListNames(self, flags: int = 0) -> list[str]:  # noqa: N802
        self._check("virDomainSnapshotListNames", flags)
        return self._query(lambda tree: [m.name for m in tree.select(None, flags)])

    def listAllSnapshots(self, flags: int = 0) -> list[virDomainSnapshot]:  # noqa: N802
        self._check("virDomainListAllSnapshots", flags)
        names = self._query(lambda tree: [m.name for m in tree.select(None, flags)])
        with collector_paused():
            return [self._snapshot(n) for n in names]

    def snapshotForest(self) -> dict[str, Any]:  # noqa: N802
        """virtsnap extension (for the rpc server): the whole snapshot forest as plain data, from which
        `SnapshotTree.load_rows` rebuilds it: whether it is tracked, the current snapshot, the protected ones,
        and one (name, parent, seq, creation time, state, external) row per snapshot in listing order."""

        def rows(tree: SnapshotTree) -> dict[str, Any]:
            return {"metadata": tree.metadata, "current": tree.current.name if tree.current is not None else None,
                    "rows": [[m.name, m.parent_name, m.seq, m.creation_time, int(m.state), int(m.external)]
                             for m in tree.moments()]}

        forest = self._query(rows)
        forest["protected"] = sorted(self._protected_names())
        return forest

    def listAllSnapshotSummaries(self, flags: int = 0) -> list[Summary]:  # noqa: N802
        """virtsnap extension: what listAllSnapshots(flags) lists, as (name, parent, state, creation time) with
        the values each snapshot's XML shows (None where it has none: a root's parent, no <state>, no
        <creationTime>; the state spelled as <state> spells it).

        One driver query for the whole listing, with listAllSnapshots' flag checks and errors; virsh's
        `snapshot-list` instead reads every snapshot's XML, and for --tree asks getParent of each.
        """
        self._check("virDomainListAllSnapshots", flags)
        whole = getattr(self._drv(), "snapshot_summaries", None) if not flags else None
        if whole is not None:  # a driver that lists from its store without building the tree
            return _driver_call(lambda: whole(self._uuid))
        return self._query(lambda tree: tree.summaries(tree.select(None, flags)))

    def snapshotLookupByName(self, name: str, flags: int = 0) -> virDomainSnapshot:  # noqa: N802
        self._check("virDomainSnapshotLookupByName", flags)
        if hasattr(self._drv(), "snapshot_point"):
            return self._snapshot(self._point(name).name)
        return self._snapshot(self._query(lambda tree: self._moment(tree, name).name))

    def hasCurrentSnapshot(self, flags: int = 0) -> int:  # noqa: N802
        self._check("virDomainHasCurrentSnapshot", flags)
        if hasattr(self._drv(), "snapshot_point"):
            return 1 if self._point(None) is not None else 0
        return self._query(lambda tree: 1 if tree.current is not None else 0)

    def snapshotCurrent(self, flags: int = 0) -> virDomainSnapshot:  # noqa: N802
        self._check("virDomainSnapshotCurrent", flags)

        def current(tree: SnapshotTree) -> str:
            if tree.current is None:
                raise error(ErrorCode.NO_DOMAIN_SNAPSHOT, self._drv().capabilities.error_domain,
                            "the domain does not have a current snapshot")
            return tree.current.name

        if hasattr(self._drv(), "snapshot_point"):
            point = self._point(None)
            if point is None:
                raise error(ErrorCode.NO_DOMAIN_SNAPSHOT, self._drv().capabilities.error_domain,
                            "the domain does not have a current snapshot")
            return self._snapshot(point.name)
        return self._snapshot(self._query(current))

    def revertToSnapshot(self, snap: virDomainSnapshot, flags: int = 0) -> int:  # noqa: N802
        self._check("virDomainRevertToSnapshot", flags)
        listening = events.listening(self._conn._event_scope)  # the states cost driver calls: only for listeners
        was_active = listening and bool(self.isActive())
        _driver_call(lambda: self._drv().snapshot_revert(self._uuid, snap.getName(), flags))
        snap.getDomain()._forget_id_if_stopped()
        if listening:
            now = _driver_call(lambda: self._drv().domain_state(self._uuid))[0]
            self._lifecycle(*revert_events(was_active, now, flags))
        return 0

    def _protected_names(self) -> set[str]:
        fn = getattr(self._drv(), "snapshot_protected", None)
        return set() if fn is None else set(_driver_call(lambda: fn(self._uuid)))

    def _prune_candidates(self, tree: SnapshotTree, protected: set[str]) -> list[Candidate]:
        moments = tree.moments()  # first: a driver's view may link parents only when it lists them all
        ancestors: set[str] = set()
        node = tree.current.parent if tree.current is not None else None
        while node is not None and node.parent is not None:  # the forest's hidden root has no parent
            ancestors.add(node.name)
            node = node.parent
        # Snapshots made in the same second: in link order (`seq`), except that a parent always comes before its
        # children (a delete re-links the children it moves, giving them a later seq than their descendants)
        order: dict[str, int] = {}
        for m in sorted(moments, key=lambda m: m.seq):
            line = []
            up: Moment | None = m
            while up is not None and up.parent is not None and up.name not in order:
                line.append(up.name)
                up = up.parent
            for name in reversed(line):
                order[name] = len(order)
        from .conf.prune import Candidate  # snapshot-prune only: datetime is not for every cold start

        return [Candidate(m.name, m.creation_time, m.name in protected, m is tree.current, m.name in ancestors,
                          order[m.name]) for m in moments]

    def _prune_plan(self, policy: Policy) -> list[Decision]:
        protected = self._protected_names()
        from .conf.prune import plan as prune_plan

        return prune_plan(self._query(lambda tree: self._prune_candidates(tree, protected)), policy)

    def _still_prunable(self, name: str) -> bool:
        protected = self._protected_names()
        found = [c for c in self._query(lambda tree: self._prune_candidates(tree, protected)) if c.name == name]
        return bool(found) and not (found[0].current or found[0].ancestor or found[0].protected)

    def snapshotPrune(self, policy: dict[str, Any], flags: int = 0) -> list[dict[str, str]]:  # noqa: N802
        """virtsnap extension: delete the snapshots a retention policy does not keep (Proxmox Backup Server's rules).

        `policy` holds any of keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly
        (counts) and match (a glob: only matching names are considered). Protected snapshots, the current
        snapshot and its ancestors are always kept; a snapshot's creation time in local time is the clock.
        Returns one {"name", "action": "keep" | "remove", "reason"} per snapshot, newest first; `reason` names
        the rule or safeguard that kept it. VIR_DOMAIN_SNAPSHOT_PRUNE_DRY_RUN only reports. Removals are
        ordinary deletes (flags 0: children move to the parent), oldest first; if one fails, the error names
        how many were removed before it and the rest are left alone.
        """
        unknown = flags & ~int(SnapshotPrune.DRY_RUN)
        if flags < 0 or unknown:
            raise error(ErrorCode.INVALID_ARG, ErrorDomain.DOMAIN_SNAPSHOT,
                        f"unsupported flags (0x{unknown & 0xFFFFFFFF:x}) in function virDomainSnapshotPrune")
        from .conf.prune import parse_policy

        parsed = parse_policy(policy)
        dry_run = bool(flags & SnapshotPrune.DRY_RUN)
        if not dry_run and self._conn.read_only:
            raise error(ErrorCode.OPERATION_DENIED, ErrorDomain.DOMAIN_SNAPSHOT,
                        "read only access prevents virDomainSnapshotPrune")
        if not dry_run:
            self._check("virDomainSnapshotDelete", 0)
        decisions = self._prune_plan(parsed)
        if dry_run:
            return [d.as_dict() for d in decisions]
        doomed = [d.name for d in reversed(decisions) if d.action == "remove"]
        for done, name in enumerate(doomed):
            # Decided a moment ago: look again right before each delete, so that a snapshot that became
            # current, an ancestor of it, or protected in between is kept after all.
            if not self._still_prunable(name):
                continue
            try:
                _driver_call(lambda n=name: self._drv().snapshot_delete(self._uuid, n, 0))  # type: ignore[misc]
            except libvirtError as exc:
                raise error(ErrorCode(exc.get_error_code()), ErrorDomain(exc.get_error_domain()),
                            f"snapshot-prune removed {done} of {len(doomed)} snapshots, then could not delete "
                            f"'{name}': {exc.get_error_message()}") from exc
        return [d.as_dict() for d in decisions]

    def _forget_id_if_stopped(self) -> None:
        """libvirt clears the calling handle's ID when the call stopped the domain (even if it restarted)."""
        current = _driver_call(lambda: self._drv().lookup_domain(uuid=self._uuid)).id
        if current != self._id:
            self._id = -1

    def _moment(self, tree: SnapshotTree, name: str) -> Moment:
        moment = tree.get(name)
        if moment is None:
            raise error(ErrorCode.NO_DOMAIN_SNAPSHOT, self._drv().capabilities.error_domain,
                        f"no domain snapshot with matching name '{name}'")
        return moment


@public_class
class virDomainSnapshot(surface.virDomainSnapshot):  # noqa: N801
    """A snapshot handle: a domain and a name, resolved again on every call (as in libvirt)."""

    def __init__(self, dom: virDomain, name: str) -> None:
        self._dom = dom
        self._name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, virDomainSnapshot) and other._dom == self._dom and other._name == self._name

    def __hash__(self) -> int:
        return hash((self._dom, self._name))

    def __repr__(self) -> str:
        return f"<virtsnap.virDomainSnapshot {self._dom.name()}/{self._name}>"

    def getName(self) -> str:  # noqa: N802
        return self._name

    def getDomain(self) -> virDomain:  # noqa: N802
        return self._dom

    def domain(self) -> virDomain:
        return self._dom

    def getConnect(self) -> virConnect:  # noqa: N802
        return self._dom.connect()

    def connect(self) -> virConnect:
        return self._dom.connect()

    def _check(self, public_name: str, flags: int) -> None:
        _check_flags(self._dom._conn, public_name, flags)

    def _with(self, fn: Callable[[SnapshotTree, Moment], T]) -> T:
        return self._dom._query(lambda tree: fn(tree, self._dom._moment(tree, self._name)))

    def getXMLDesc(self, flags: int = 0) -> str:  # noqa: N802
        if self._dom._conn.read_only and flags & SnapshotXML.SECURE:
            raise error(ErrorCode.OPERATION_DENIED, ErrorDomain.DOMAIN_SNAPSHOT,
                        "virDomainSnapshotGetXMLDesc with secure flag")
        self._check("virDomainSnapshotGetXMLDesc", flags)
        return _driver_call(lambda: self._dom._drv().snapshot_xml(self._dom._uuid, self._name, flags))

    def getParent(self, flags: int = 0) -> virDomainSnapshot:  # noqa: N802
        self._check("virDomainSnapshotGetParent", flags)

        def parent(tree: SnapshotTree, moment: Moment) -> str:
            if moment.parent_name is None:
                raise error(ErrorCode.NO_DOMAIN_SNAPSHOT, self._dom._drv().capabilities.error_domain,
                            f"snapshot '{moment.name}' does not have a parent")
            return moment.parent_name

        if hasattr(self._dom._drv(), "snapshot_point"):
            point = self._dom._point(self._name)
            if point.parent is None:
                raise error(ErrorCode.NO_DOMAIN_SNAPSHOT, self._dom._drv().capabilities.error_domain,
                            f"snapshot '{point.name}' does not have a parent")
            return virDomainSnapshot(self._dom, point.parent)
        return virDomainSnapshot(self._dom, self._with(parent))

    def isCurrent(self, flags: int = 0) -> int:  # noqa: N802
        self._check("virDomainSnapshotIsCurrent", flags)
        if hasattr(self._dom._drv(), "snapshot_point"):
            return 1 if self._dom._point(self._name).current else 0
        return self._with(lambda tree, moment: 1 if tree.current is moment else 0)

    def hasMetadata(self, flags: int = 0) -> int:  # noqa: N802
        self._check("virDomainSnapshotHasMetadata", flags)
        if hasattr(self._dom._drv(), "snapshot_point"):  # a driver that reads one snapshot keeps the metadata
            self._dom._point(self._name)
            return 1
        return self._with(lambda tree, moment: 1 if tree.metadata else 0)

    def numChildren(self, flags: int = 0) -> int:  # noqa: N802
        self._check("virDomainSnapshotNumChildren", flags)
        count = getattr(self._dom._drv(), "snapshot_children", None)
        if count is not None and flags in (0, SnapshotList.DESCENDANTS):
            return int(_driver_call(lambda: count(self._dom._uuid, self._name, bool(flags))))
        return self._with(lambda tree, moment: len(tree.select(moment, flags)))

    def listChildrenNames(self, flags: int = 0) -> list[str]:  # noqa: N802
        self._check("virDomainSnapshotListChildrenNames", flags)
        return self._with(lambda tree, moment: [m.name for m in tree.select(moment, flags)])

    def listAllChildren(self, flags: int = 0) -> list[virDomainSnapshot]:  # noqa: N802
        self._check("virDomainSnapshotListAllChildren", flags)
        names = self._with(lambda tree, moment: [m.name for m in tree.select(moment, flags)])
        with collector_paused():
            return [virDomainSnapshot(self._dom, n) for n in names]

    def listAllChildrenSummaries(self, flags: int = 0) -> list[Summary]:  # noqa: N802
        """virtsnap extension: what listAllChildren(flags) lists, as virDomain.listAllSnapshotSummaries does."""
        self._check("virDomainSnapshotListAllChildren", flags)
        return self._with(lambda tree, moment: tree.summaries(tree.select(moment, flags)))

    def rename(self, new_name: str) -> int:
        """virtsnap extension: rename in place where the hypervisor owns the tree (ESX, VirtualBox).

        libvirt has no rename; for drivers that own their metadata, `snapshot-edit --rename` redefines under
        the new name and deletes the old metadata instead, and this raises VIR_ERR_NO_SUPPORT.
        """
        if self._dom._conn.read_only:
            raise error(ErrorCode.OPERATION_DENIED, ErrorDomain.DOMAIN_SNAPSHOT,
                        "read only access prevents virDomainSnapshotRename")
        fn = getattr(self._dom._drv(), "snapshot_rename", None)
        if fn is None:
            raise error(ErrorCode.NO_SUPPORT, ErrorDomain.DOMAIN_SNAPSHOT, "virDomainSnapshotRename")
        self._name = str(_driver_call(lambda: fn(self._dom._uuid, self._name, new_name)))
        return 0

    def delete(self, flags: int = 0) -> int:
        # FORCE is virtsnap's own bit. It is checked here; a driver that also checks under its own lock (QEMU)
        # takes the bit, one that keeps marks only in this process (test) never sees it, and one without
        # protection marks refuses it as unknown.
        force = flags >= 0 and bool(flags & SnapshotDelete.FORCE)
        drv = self._dom._drv()
        accepted = drv.capabilities.flags.get(Op.SNAPSHOT_DELETE, 0)
        if force and hasattr(drv, "snapshot_set_protected") and not accepted & SnapshotDelete.FORCE:
            flags &= ~int(SnapshotDelete.FORCE)
        self._check("virDomainSnapshotDelete", flags)
        if not force:
            self._refuse_protected(flags)
        _driver_call(lambda: self._dom._drv().snapshot_delete(self._dom._uuid, self._name, flags))
        return 0

    def _refuse_protected(self, flags: int) -> None:
        """A protected snapshot (or, deleting children, a protected descendant) is deleted only with FORCE."""
        protected = self._dom._protected_names()
        if not protected:
            return

        def doomed(tree: SnapshotTree, moment: Moment) -> list[str]:
            names = [] if flags & SnapshotDelete.CHILDREN_ONLY else [moment.name]
            if flags & (SnapshotDelete.CHILDREN | SnapshotDelete.CHILDREN_ONLY):
                names += [m.name for m in moment.visit_descendants()]
            return [n for n in names if n in protected]

        hits = self._with(doomed)
        if hits:
            raise protected_refusal(hits)

    def getSize(self, flags: int = 0) -> dict[str, int | bool]:  # noqa: N802
        """virtsnap extension: {"memory": bytes, "disk": bytes, "memory_exact": bool, "disk_exact": bool}.

        `disk` is what deleting the snapshot would free; `memory` the saved guest memory. A figure that is
        not exact is an estimate (see docs/space.md for how each driver computes them).
        """
        if flags:
            raise error(ErrorCode.INVALID_ARG, ErrorDomain.DOMAIN_SNAPSHOT,
                        f"unsupported flags (0x{flags & 0xFFFFFFFF:x}) in function virDomainSnapshotGetSize")
        fn = getattr(self._dom._drv(), "snapshot_size", None)
        if fn is None:
            raise error(ErrorCode.NO_SUPPORT, ErrorDomain.DOMAIN_SNAPSHOT, "virDomainSnapshotGetSize")
        self._with(lambda tree, moment: None)  # no such snapshot: VIR_ERR_NO_DOMAIN_SNAPSHOT
        size: SnapshotSize = _driver_call(lambda: fn(self._dom._uuid, self._name))
        return size.as_dict()

    def isProtected(self, flags: int = 0) -> int:  # noqa: N802
        """virtsnap extension: 1 if the snapshot is protected from snapshot-prune and plain deletes."""
        if flags:
            raise error(ErrorCode.INVALID_ARG, ErrorDomain.DOMAIN_SNAPSHOT,
                        f"unsupported flags (0x{flags & 0xFFFFFFFF:x}) in function virDomainSnapshotIsProtected")
        self._with(lambda tree, moment: None)
        return 1 if self._name in self._dom._protected_names() else 0

    def setProtected(self, protected: bool, flags: int = 0) -> int:  # noqa: N802
        """virtsnap extension: mark (or unmark) the snapshot protected, in virtsnap's metadata."""
        if flags:
            raise error(ErrorCode.INVALID_ARG, ErrorDomain.DOMAIN_SNAPSHOT,
                        f"unsupported flags (0x{flags & 0xFFFFFFFF:x}) in function virDomainSnapshotSetProtected")
        if self._dom._conn.read_only:
            raise error(ErrorCode.OPERATION_DENIED, ErrorDomain.DOMAIN_SNAPSHOT,
                        "read only access prevents virDomainSnapshotSetProtected")
        fn = getattr(self._dom._drv(), "snapshot_set_protected", None)
        if fn is None:
            raise error(ErrorCode.NO_SUPPORT, ErrorDomain.DOMAIN_SNAPSHOT, "virDomainSnapshotSetProtected")
        _driver_call(lambda: fn(self._dom._uuid, self._name, bool(protected)))
        return 0


# -- module-level entry points ------------------------------------------------------------------------
VIR_DOMAIN_QEMU_AGENT_COMMAND_BLOCK = -2
VIR_DOMAIN_QEMU_AGENT_COMMAND_DEFAULT = -1


@public
def qemuAgentCommand(domain: virDomain, cmd: str, timeout: int = VIR_DOMAIN_QEMU_AGENT_COMMAND_DEFAULT,  # noqa: N802
                     flags: int = 0) -> str:
    """libvirt_qemu.qemuAgentCommand: send a JSON command to the domain's guest agent, return the reply."""
    _check_flags(domain._conn, "virDomainQemuAgentCommand", flags)
    seconds = 5.0 if timeout == VIR_DOMAIN_QEMU_AGENT_COMMAND_DEFAULT else 600.0 if timeout < 0 else float(timeout)
    drv = domain._drv()
    command = getattr(drv, "agent_command", None)
    if command is None:
        raise error(ErrorCode.NO_SUPPORT, ErrorDomain.NONE, "virDomainQemuAgentCommand")
    return _driver_call(lambda: str(command(domain._uuid, cmd, seconds)))



@public
def open(name: str | None = None) -> virConnect:
    """Open a read-write connection (libvirt.open)."""
    return virConnect(name)


@public
def openReadOnly(name: str | None = None) -> virConnect:  # noqa: N802
    return virConnect(name, read_only=True)


@public
def openAuth(uri: str | None, auth: list[Any] | None, flags: int = 0) -> virConnect:  # noqa: N802
    """libvirt.openAuth: `auth` is [credtypes, callback(creds, cbdata) -> 0, cbdata]."""
    if flags & ~int(ConnectFlags.RO | ConnectFlags.NO_ALIASES):
        raise raw_error(ErrorCode.INVALID_ARG, ErrorDomain.NONE,
                        f"unsupported flags (0x{flags & ~3:x}) in function virConnectOpenAuth")
    return virConnect(uri, read_only=bool(flags & ConnectFlags.RO), auth=auth)


@public
def getVersion(name: str | None = None) -> Any:  # noqa: N802
    """The libvirt API level virtsnap implements, in libvirt's numbering (major * 1,000,000 + minor * 1000 +
    micro); with a driver name, libvirt's (library version, driver version) pair."""
    if name is None:
        return surface.LIBVIR_VERSION_NUMBER
    return (surface.LIBVIR_VERSION_NUMBER, surface.LIBVIR_VERSION_NUMBER)


def registerErrorHandler(f: Any, ctx: Any) -> int:  # noqa: N802
    """f(ctx, err) is called with libvirt's error list for every failed call; None restores libvirt's default
    line on stderr."""
    return dispatch.register_handler(f, ctx)


def virGetLastError() -> list[Any] | None:  # noqa: N802
    last = last_error()
    return None if last is None else list(last)


def virGetLastErrorCode() -> int:  # noqa: N802
    last = last_error()
    return 0 if last is None else int(last[0])


def virGetLastErrorDomain() -> int:  # noqa: N802
    last = last_error()
    return 0 if last is None else int(last[1])


def virGetLastErrorMessage() -> str:  # noqa: N802
    last = last_error()
    return "no error" if last is None else str(last[2])


def virResetLastError() -> None:  # noqa: N802
    dispatch.reset_last_error()


def virInitialize() -> int:  # noqa: N802
    return 0
