"""The typed interface every hypervisor driver implements, and the records it returns.

`api.py` checks flags generically (from each driver's capability table) before calling a driver; a driver
only does what its hypervisor needs. A method a driver lacks means VIR_ERR_NO_SUPPORT.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from ..enums import Enum
from ..errors import ErrorDomain
from ..flags import DomainState, FlagRule
from ..records import Frozen

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Protocol, TypeVar

    from ..conf.tree import SnapshotTree
    from ..uri import URI

    T = TypeVar("T")
else:
    Protocol = object  # Driver is a protocol for the checker; at run time nothing tests isinstance against it


class Op(Enum):
    """API entry points whose flags are checked against a driver's table; value = libvirt's C name tail."""

    SNAPSHOT_CREATE = "DomainSnapshotCreateXML"
    SNAPSHOT_NUM = "DomainSnapshotNum"
    SNAPSHOT_LIST_NAMES = "DomainSnapshotListNames"
    LIST_ALL_SNAPSHOTS = "DomainListAllSnapshots"
    SNAPSHOT_NUM_CHILDREN = "DomainSnapshotNumChildren"
    SNAPSHOT_LIST_CHILDREN = "DomainSnapshotListChildrenNames"
    SNAPSHOT_LIST_ALL_CHILDREN = "DomainSnapshotListAllChildren"
    SNAPSHOT_LOOKUP = "DomainSnapshotLookupByName"
    HAS_CURRENT = "DomainHasCurrentSnapshot"
    SNAPSHOT_PARENT = "DomainSnapshotGetParent"
    SNAPSHOT_CURRENT = "DomainSnapshotCurrent"
    SNAPSHOT_XML = "DomainSnapshotGetXMLDesc"
    SNAPSHOT_IS_CURRENT = "DomainSnapshotIsCurrent"
    SNAPSHOT_HAS_METADATA = "DomainSnapshotHasMetadata"
    REVERT = "DomainRevertToSnapshot"
    SNAPSHOT_DELETE = "DomainSnapshotDelete"
    DOMAIN_XML = "DomainGetXMLDesc"
    DOMAIN_STATE = "DomainGetState"
    DOMAIN_UNDEFINE = "DomainUndefineFlags"
    DOMAIN_DEFINE = "DomainDefineXMLFlags"
    DOMAIN_CREATE = "DomainCreateWithFlags"
    DOMAIN_SHUTDOWN = "DomainShutdownFlags"
    DOMAIN_DESTROY = "DomainDestroyFlags"
    LIST_ALL_DOMAINS = "ConnectListAllDomains"


def _snapshot_queries() -> dict[Op, int]:
    from ..flags import LIST_DOMAIN_ALL, LIST_FILTERS_ALL, SnapshotList, SnapshotXML

    children = int(SnapshotList.DESCENDANTS | SnapshotList.TOPOLOGICAL | LIST_FILTERS_ALL)
    return {
        Op.SNAPSHOT_NUM: int(LIST_DOMAIN_ALL), Op.SNAPSHOT_LIST_NAMES: int(LIST_DOMAIN_ALL),
        Op.LIST_ALL_SNAPSHOTS: int(LIST_DOMAIN_ALL), Op.SNAPSHOT_NUM_CHILDREN: children,
        Op.SNAPSHOT_LIST_CHILDREN: children, Op.SNAPSHOT_LIST_ALL_CHILDREN: children,
        Op.SNAPSHOT_LOOKUP: 0, Op.HAS_CURRENT: 0, Op.SNAPSHOT_PARENT: 0, Op.SNAPSHOT_CURRENT: 0,
        Op.SNAPSHOT_XML: int(SnapshotXML.SECURE), Op.SNAPSHOT_IS_CURRENT: 0, Op.SNAPSHOT_HAS_METADATA: 0,
    }


# The read-only snapshot entry points every driver answers from its SnapshotTree, with libvirt's flag sets.
SNAPSHOT_QUERIES: dict[Op, int] = _snapshot_queries()


class Capabilities(Frozen):
    """What a driver accepts: per-entry-point flag masks and the prefix of its C-style function names."""

    _fields = ("func_prefix", "error_domain", "flags", "rules")
    __slots__ = _fields

    def __init__(self, func_prefix: str, error_domain: ErrorDomain, flags: Mapping[Op, int],
                 rules: Mapping[Op, tuple[FlagRule, ...]] = MappingProxyType({})) -> None:
        self.func_prefix = func_prefix  # "test", "qemu", "esx", "vbox": messages name e.g. testDomainSnapshotNum
        self.error_domain = error_domain
        self.flags = flags
        self.rules = rules  # driver-specific flag pairs

    def function_name(self, op: Op) -> str:
        return self.func_prefix + op.value


class DomainRecord(Frozen):
    """A domain as a lookup returns it: enough to build a handle."""

    _fields = ("name", "uuid", "id", "persistent")
    __slots__ = _fields

    def __init__(self, name: str, uuid: str, id: int, persistent: bool = True) -> None:
        self.name = name
        self.uuid = uuid
        self.id = id  # -1 when not running
        self.persistent = persistent


class DomainInfo(Frozen):
    _fields = ("state", "max_mem_kib", "memory_kib", "vcpus", "cpu_time_ns")
    __slots__ = _fields

    def __init__(self, state: DomainState, max_mem_kib: int, memory_kib: int, vcpus: int, cpu_time_ns: int) -> None:
        self.state = state
        self.max_mem_kib = max_mem_kib
        self.memory_kib = memory_kib
        self.vcpus = vcpus
        self.cpu_time_ns = cpu_time_ns


class Drift(Frozen):
    """One finding of snapshot-check: metadata and reality disagree (or, with drift=False, a note)."""

    _fields = ("kind", "subject", "detail", "fix", "repaired", "drift")
    __slots__ = _fields

    def __init__(self, kind: str, subject: str, detail: str, fix: str, repaired: bool = False,
                 drift: bool = True) -> None:
        self.kind = kind  # untracked-snapshot, lost-snapshot, marked-lost, orphaned-overlay, broken-chain, ...
        self.subject = subject  # the snapshot, file or process concerned
        self.detail = detail  # what is wrong
        self.fix = fix  # what --repair did, would do, or why it leaves it alone
        self.repaired = repaired
        self.drift = drift

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self._fields}


class SnapshotSize(Frozen):
    """What a snapshot takes (virDomainSnapshot.getSize): bytes of saved memory and of disk data that deleting
    the snapshot would free, each marked exact or an estimate."""

    _fields = ("memory", "disk", "memory_exact", "disk_exact")
    __slots__ = _fields

    def __init__(self, memory: int, disk: int, memory_exact: bool = True, disk_exact: bool = True) -> None:
        self.memory = memory
        self.disk = disk
        self.memory_exact = memory_exact
        self.disk_exact = disk_exact

    def as_dict(self) -> dict[str, int | bool]:
        return {name: getattr(self, name) for name in self._fields}


class Driver(Protocol):
    """One hypervisor connection. Every method may raise libvirtError; none may raise anything else."""

    capabilities: Capabilities
    uri: URI

    def close(self) -> None: ...

    def hostname(self) -> str: ...

    # domains
    def list_domains(self) -> list[DomainRecord]: ...

    def lookup_domain(self, *, name: str | None = None, uuid: str | None = None,
                      id: int | None = None) -> DomainRecord: ...

    def domain_state(self, uuid: str) -> tuple[DomainState, int]: ...

    def domain_info(self, uuid: str) -> DomainInfo: ...

    def domain_xml(self, uuid: str, flags: int) -> str: ...

    def domain_persistent(self, uuid: str) -> bool: ...

    def define_xml(self, xml: str, flags: int) -> DomainRecord: ...

    def undefine(self, uuid: str, flags: int) -> None: ...

    def start(self, uuid: str, flags: int) -> None: ...

    def shutdown(self, uuid: str, flags: int) -> None: ...

    def destroy(self, uuid: str, flags: int) -> None: ...

    def suspend(self, uuid: str) -> None: ...

    def resume(self, uuid: str) -> None: ...

    # snapshots
    def snapshot_query(self, uuid: str, fn: Callable[[SnapshotTree], T]) -> T:
        """Run `fn` on the domain's snapshot forest as it is now, under the driver's read lock."""
        ...

    def snapshot_create(self, uuid: str, xml: str, flags: int) -> str:
        """Create (or redefine) a snapshot; returns its name."""
        ...

    def snapshot_xml(self, uuid: str, name: str, flags: int) -> str: ...

    def snapshot_revert(self, uuid: str, name: str, flags: int) -> None: ...

    def snapshot_delete(self, uuid: str, name: str, flags: int) -> None: ...

    # Optional (virtsnap extensions; a driver without them answers VIR_ERR_NO_SUPPORT):
    #   snapshot_size(uuid, name) -> SnapshotSize
    #   snapshot_protected(uuid) -> set[str]             names of the domain's protected snapshots
    #   snapshot_set_protected(uuid, name, on: bool) -> None
    # Optional (speed: one snapshot read without the tree; a driver without them is answered through the tree):
    #   snapshot_point(uuid, name | None) -> store.db.PointRow | None    one snapshot, or the current (None: none)
    #   snapshot_children(uuid, name, descendants: bool) -> int          numChildren with flags 0 / DESCENDANTS
