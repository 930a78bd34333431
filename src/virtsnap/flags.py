"""libvirt's flag and state enumerations, with libvirt's values, declared once.

`api.py` checks flags against these before any driver code runs; `__init__` exports the VIR_* names.
"""

from __future__ import annotations

from .enums import Enum, IntEnum, IntFlag
from .errors import ErrorCode, ErrorDomain, raw_error
from .records import Frozen

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any


class SnapshotCreate(IntFlag):
    REDEFINE = 1 << 0
    CURRENT = 1 << 1
    NO_METADATA = 1 << 2
    HALT = 1 << 3
    DISK_ONLY = 1 << 4
    REUSE_EXT = 1 << 5
    QUIESCE = 1 << 6
    ATOMIC = 1 << 7
    LIVE = 1 << 8
    VALIDATE = 1 << 9
    # virtsnap extension: create even when the free-space pre-flight says the snapshot may not fit
    # (a high bit, clear of the values libvirt may add next)
    NO_SPACE_CHECK = 1 << 30


class SnapshotList(IntFlag):
    ROOTS = 1 << 0  # on a domain; the same bit means DESCENDANTS on a snapshot
    LEAVES = 1 << 2
    NO_LEAVES = 1 << 3
    METADATA = 1 << 1
    NO_METADATA = 1 << 4
    INACTIVE = 1 << 5
    ACTIVE = 1 << 6
    DISK_ONLY = 1 << 7
    INTERNAL = 1 << 8
    EXTERNAL = 1 << 9
    TOPOLOGICAL = 1 << 10

    DESCENDANTS = 1 << 0


# The filter groups: OR inside a group, AND across groups, an empty group filters nothing.
LIST_FILTER_GROUPS: tuple[SnapshotList, ...] = (
    SnapshotList.LEAVES | SnapshotList.NO_LEAVES,
    SnapshotList.METADATA | SnapshotList.NO_METADATA,
    SnapshotList.INACTIVE | SnapshotList.ACTIVE | SnapshotList.DISK_ONLY,
    SnapshotList.INTERNAL | SnapshotList.EXTERNAL,
)
LIST_FILTERS_ALL = SnapshotList(0)
for _group in LIST_FILTER_GROUPS:
    LIST_FILTERS_ALL |= _group
LIST_DOMAIN_ALL = SnapshotList.ROOTS | SnapshotList.TOPOLOGICAL | LIST_FILTERS_ALL


class SnapshotRevert(IntFlag):
    RUNNING = 1 << 0
    PAUSED = 1 << 1
    FORCE = 1 << 2
    RESET_NVRAM = 1 << 3


class SnapshotDelete(IntFlag):
    CHILDREN = 1 << 0
    METADATA_ONLY = 1 << 1
    CHILDREN_ONLY = 1 << 2
    FORCE = 1 << 30  # virtsnap extension: delete protected snapshots too (snapshot-delete --force)


class SnapshotXML(IntFlag):
    SECURE = 1 << 0


class SnapshotCheck(IntFlag):
    """virtsnap extension (virDomain.snapshotCheck): libvirt has no such call."""

    REPAIR = 1 << 0


class SnapshotPrune(IntFlag):
    """virtsnap extension (virDomain.snapshotPrune): libvirt has no such call."""

    DRY_RUN = 1 << 0


class DomainXML(IntFlag):
    SECURE = 1 << 0
    INACTIVE = 1 << 1
    UPDATE_CPU = 1 << 2
    MIGRATABLE = 1 << 3


class DomainCreate(IntFlag):  # exported by surface.py as VIR_DOMAIN_START_*
    START_PAUSED = 1 << 0
    START_RESET_NVRAM = 1 << 5


class DomainUndefine(IntFlag):
    MANAGED_SAVE = 1 << 0
    SNAPSHOTS_METADATA = 1 << 1
    NVRAM = 1 << 2
    KEEP_NVRAM = 1 << 3
    CHECKPOINTS_METADATA = 1 << 4
    TPM = 1 << 5
    KEEP_TPM = 1 << 6


class ListDomains(IntFlag):
    ACTIVE = 1 << 0
    INACTIVE = 1 << 1
    PERSISTENT = 1 << 2
    TRANSIENT = 1 << 3
    RUNNING = 1 << 4
    PAUSED = 1 << 5
    SHUTOFF = 1 << 6
    OTHER = 1 << 7
    MANAGEDSAVE = 1 << 8
    NO_MANAGEDSAVE = 1 << 9
    AUTOSTART = 1 << 10
    NO_AUTOSTART = 1 << 11
    HAS_SNAPSHOT = 1 << 12
    NO_SNAPSHOT = 1 << 13
    HAS_CHECKPOINT = 1 << 14
    NO_CHECKPOINT = 1 << 15


class ConnectFlags(IntFlag):
    RO = 1 << 0
    NO_ALIASES = 1 << 1


class DomainState(IntEnum):
    """virDomainState."""

    NOSTATE = 0
    RUNNING = 1
    BLOCKED = 2
    PAUSED = 3
    SHUTDOWN = 4
    SHUTOFF = 5
    CRASHED = 6
    PMSUSPENDED = 7


class SnapshotState(IntEnum):
    """virDomainSnapshotState (a virDomainState plus disk-snapshot)."""

    NOSTATE = 0
    RUNNING = 1
    BLOCKED = 2
    PAUSED = 3
    SHUTDOWN = 4
    SHUTOFF = 5
    CRASHED = 6
    PMSUSPENDED = 7
    DISK_SNAPSHOT = 8

    @property
    def xml(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def from_xml(cls, value: str) -> SnapshotState | None:
        for member in cls:
            if member.xml == value:
                return member
        return None

    @property
    def is_active(self) -> bool:
        """Whether the snapshot holds a live guest (libvirt's LIST_ACTIVE group)."""
        return self not in (SnapshotState.SHUTOFF, SnapshotState.DISK_SNAPSHOT)

    @property
    def is_online(self) -> bool:
        return self in (SnapshotState.RUNNING, SnapshotState.PAUSED)


class Cred(IntEnum):
    """virConnectCredentialType, for openAuth callbacks."""

    USERNAME = 1
    AUTHNAME = 2
    LANGUAGE = 3
    CNONCE = 4
    PASSPHRASE = 5
    ECHOPROMPT = 6
    NOECHOPROMPT = 7
    REALM = 8
    EXTERNAL = 9


class DomainEventID(IntEnum):
    """virDomainEventID: the one virtsnap delivers."""

    LIFECYCLE = 0


class DomainEvent(IntEnum):
    """virDomainEventType, and below the details (virDomainEvent*DetailType) of the lifecycle events virtsnap
    emits, as libvirt's drivers emit them."""

    DEFINED = 0
    UNDEFINED = 1
    STARTED = 2
    SUSPENDED = 3
    RESUMED = 4
    STOPPED = 5


class DefinedDetail(IntEnum):
    ADDED = 0
    UPDATED = 1


class UndefinedDetail(IntEnum):
    REMOVED = 0


class StartedDetail(IntEnum):
    BOOTED = 0
    FROM_SNAPSHOT = 3


class SuspendedDetail(IntEnum):
    PAUSED = 0
    FROM_SNAPSHOT = 5


class ResumedDetail(IntEnum):
    UNPAUSED = 0


class StoppedDetail(IntEnum):
    SHUTDOWN = 0
    DESTROYED = 1
    FROM_SNAPSHOT = 6


class DomainStats(IntFlag):
    """virDomainStatsTypes: the groups virtsnap reports."""

    STATE = 1 << 0
    BLOCK = 1 << 5


# The VIR_* names libvirt-python exports, generated from the enums above so each value is written once.
_PREFIXES: tuple[tuple[type[Enum], str], ...] = (
    (SnapshotCreate, "VIR_DOMAIN_SNAPSHOT_CREATE_"),
    (SnapshotList, "VIR_DOMAIN_SNAPSHOT_LIST_"),
    (SnapshotRevert, "VIR_DOMAIN_SNAPSHOT_REVERT_"),
    (SnapshotDelete, "VIR_DOMAIN_SNAPSHOT_DELETE_"),
    (SnapshotXML, "VIR_DOMAIN_SNAPSHOT_XML_"),
    (SnapshotCheck, "VIR_DOMAIN_SNAPSHOT_CHECK_"),
    (SnapshotPrune, "VIR_DOMAIN_SNAPSHOT_PRUNE_"),
    (DomainXML, "VIR_DOMAIN_XML_"),
    (DomainUndefine, "VIR_DOMAIN_UNDEFINE_"),
    (ListDomains, "VIR_CONNECT_LIST_DOMAINS_"),
    (ConnectFlags, "VIR_CONNECT_"),
    (DomainState, "VIR_DOMAIN_"),
    (Cred, "VIR_CRED_"),
    (DomainEventID, "VIR_DOMAIN_EVENT_ID_"),
    (DomainEvent, "VIR_DOMAIN_EVENT_"),
    (DefinedDetail, "VIR_DOMAIN_EVENT_DEFINED_"),
    (UndefinedDetail, "VIR_DOMAIN_EVENT_UNDEFINED_"),
    (StartedDetail, "VIR_DOMAIN_EVENT_STARTED_"),
    (SuspendedDetail, "VIR_DOMAIN_EVENT_SUSPENDED_"),
    (ResumedDetail, "VIR_DOMAIN_EVENT_RESUMED_"),
    (StoppedDetail, "VIR_DOMAIN_EVENT_STOPPED_"),
    (DomainStats, "VIR_DOMAIN_STATS_"),
)


def flag_name(member: Enum) -> str:
    """libvirt's spelling of a flag, e.g. VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE."""
    for cls, prefix in _PREFIXES:
        if isinstance(member, cls):
            return prefix + str(member.name)
    raise KeyError(member)


def exported_constants() -> dict[str, int]:
    names: dict[str, int] = {}
    for cls, prefix in _PREFIXES:
        for name, member in cls.__members__.items():
            names[prefix + name] = int(member.value)
    return names


class FlagRule(Frozen):
    """A pair of flags: `exclusive` ones may not be combined; otherwise `first` requires `second`."""

    _fields = ("first", "second", "exclusive")
    __slots__ = _fields

    def __init__(self, first: Any, second: Any, exclusive: bool = True) -> None:
        self.first = first
        self.second = second
        self.exclusive = exclusive

    def check(self, flags: int, domain: ErrorDomain) -> None:
        has_first, has_second = bool(flags & self.first), bool(flags & self.second)
        if self.exclusive and has_first and has_second:
            raise raw_error(ErrorCode.INVALID_ARG, domain,
                            f"Flags '{flag_name(self.first)}' and '{flag_name(self.second)}' are mutually exclusive")
        if not self.exclusive and has_first and not has_second:
            raise raw_error(ErrorCode.INVALID_ARG, domain,
                            f"Flag '{flag_name(self.second)}' is required by flag '{flag_name(self.first)}'")
