"""SnapshotDef and its <domainsnapshot> XML: create-mode and redefine-mode parsing, libvirt's formatting.

Follows libvirt's snapshot_conf.c semantics (element order, defaults, error codes); the embedded
<domain> travels as an opaque element.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..enums import Enum, IntEnum
from ..errors import ErrorCode, ErrorDomain, error
from ..flags import SnapshotState as SnapshotState  # defined with the other enums; re-exported for callers
from ..records import Record
from .domain_xml import DomainDef
from .unsafe import name_problem, terminal_text
from .xmlutil import Node, detached, escape, format_node, parse, parse_trusted

ERR_DOMAIN = ErrorDomain.DOMAIN_SNAPSHOT
MAX_NAME_BYTES = 255


class Location(IntEnum):
    """virDomainSnapshotLocation."""

    DEFAULT = 0
    NO = 1
    INTERNAL = 2
    EXTERNAL = 3
    MANUAL = 4

    @property
    def xml(self) -> str:
        return self.name.lower()

    @classmethod
    def from_xml(cls, value: str) -> Location | None:
        for member in cls:
            if member.xml == value:
                return member
        return None


class SourceType(Enum):
    FILE = "file"
    BLOCK = "block"
    NETWORK = "network"


DISK_FORMATS = ("raw", "dir", "bochs", "cloop", "dmg", "iso", "vpc", "vdi", "fat", "vhd", "ploop",
                "cow", "qcow", "qcow2", "qed", "vmdk")


class ParseMode(Enum):
    """What a parse reads: CREATE reads name, description, memory, disks; REDEFINE reads everything."""

    CREATE = "create"
    REDEFINE = "redefine"


class DiskSnapshot(Record):
    _fields = ("name", "snapshot", "source_type", "source", "driver_type", "explicit_type", "source_node",
               "driver_node")
    __slots__ = _fields

    def __init__(self, name: str, snapshot: Location = Location.DEFAULT, source_type: SourceType = SourceType.FILE,
                 source: str | None = None, driver_type: str | None = None, explicit_type: bool = False,
                 source_node: Node | None = None, driver_node: Node | None = None) -> None:
        self.name = name
        self.snapshot = snapshot
        self.source_type = source_type
        self.source = source  # file path or block device
        self.driver_type = driver_type
        self.explicit_type = explicit_type  # whether type='' was given (it is printed only with a source)
        # <source> / <driver> as given, kept when they say more than the fields above (a network source, a
        # <seclabel>, <metadata_cache>): libvirt keeps and prints them; only a driver that applies them may
        # accept them on a real create (the others refuse: `extra_settings`).
        self.source_node = source_node
        self.driver_node = driver_node

    def copy(self) -> DiskSnapshot:
        return DiskSnapshot(self.name, self.snapshot, self.source_type, self.source, self.driver_type,
                            self.explicit_type, self.source_node, self.driver_node)

    def extra_settings(self) -> list[str]:
        """What this disk asks for beyond a file or block overlay of a format, as libvirt's element names."""
        out = []
        if self.source_type == SourceType.NETWORK:
            out.append("<source protocol=...> (a network overlay)")
        if self.source_node is not None:
            out += [f"<source><{child.tag}>" for child in self.source_node.children]
        if self.driver_node is not None:
            out += [f"<driver><{child.tag}>" for child in self.driver_node.children]
        return out


class SnapshotDef(Record):
    _fields = ("name", "description", "state", "parent", "creation_time", "memory", "memory_file", "disks",
               "domain", "inactive_domain", "cookie")
    __slots__ = _fields

    def __init__(self, name: str, description: str | None = None, state: SnapshotState = SnapshotState.NOSTATE,
                 parent: str | None = None, creation_time: int = 0, memory: Location = Location.DEFAULT,
                 memory_file: str | None = None, disks: list[DiskSnapshot] | None = None,
                 domain: DomainDef | None = None, inactive_domain: DomainDef | None = None,
                 cookie: Node | None = None) -> None:
        self.name = name
        self.description = description
        self.state = state
        self.parent = parent
        self.creation_time = creation_time
        self.memory = memory
        self.memory_file = memory_file
        self.disks: list[DiskSnapshot] = disks if disks is not None else []
        self.domain = domain
        self.inactive_domain = inactive_domain
        self.cookie = cookie

    @property
    def is_external(self) -> bool:
        """libvirt's virDomainSnapshotIsExternal: external memory or any external disk."""
        return self.memory == Location.EXTERNAL or any(d.snapshot == Location.EXTERNAL for d in self.disks)

    def copy(self) -> SnapshotDef:
        """A copy whose disk list and disks can change apart (the domains and cookie are shared, as before)."""
        return SnapshotDef(self.name, self.description, self.state, self.parent, self.creation_time, self.memory,
                           self.memory_file, [d.copy() for d in self.disks], self.domain, self.inactive_domain,
                           self.cookie)


def check_name(name: str, domain: ErrorDomain = ERR_DOMAIN, trusted: bool = False) -> None:
    """Refuse names that cannot be file names or that hide characters; libvirt's check is weaker. `trusted`:
    a name virtsnap stored itself, kept readable even if an earlier virtsnap accepted it (C1, bidi)."""
    if "\n" in name:
        # libvirt's own message for this one (virXMLCheckIllegalChars).
        raise error(ErrorCode.XML_DETAIL, domain, "invalid char in name: 0x0a")
    problem = None
    if name == "":
        problem = "it is empty"
    elif "/" in name:
        problem = "it contains '/'"
    elif name.startswith("."):
        problem = "it starts with '.'"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        problem = "it contains control characters"
    elif not trusted and (unsafe := name_problem(name)) is not None:
        problem = unsafe  # C1 controls, bidi overrides, invisible characters: they forge listings
    elif len(name.encode("utf-8")) > MAX_NAME_BYTES:
        problem = f"it is longer than {MAX_NAME_BYTES} bytes"
    if problem:
        shown = name if len(name) <= 64 else name[:64] + "..."
        raise error(ErrorCode.XML_ERROR, domain, f"invalid snapshot name '{escape_for_message(shown)}': {problem}")


def escape_for_message(text: str) -> str:
    return terminal_text(text)


def parse_snapshot(text: str, mode: ParseMode, now: float | None = None,
                   domain_parser: type[DomainDef] = DomainDef, trusted: bool = False) -> SnapshotDef:
    """Parse <domainsnapshot> XML. CREATE fills name and creationTime from the clock when absent. `trusted`: a
    document virtsnap wrote itself, e.g. read back from its metadata store (xmlutil.parse_trusted)."""
    root = (parse_trusted if trusted else parse)(text, "domainsnapshot", "domain_snapshot", ERR_DOMAIN)
    return snapshot_from_node(root, mode, now, domain_parser, trusted)


def snapshot_from_node(root: Node, mode: ParseMode, now: float | None = None,
                       domain_parser: type[DomainDef] = DomainDef, trusted: bool = False) -> SnapshotDef:
    redefine = mode is ParseMode.REDEFINE
    name = root.findtext("name") or None  # an empty <name/> counts as absent, as in libvirt
    if name is None and redefine:
        raise error(ErrorCode.XML_ERROR, ERR_DOMAIN, "a redefined snapshot must have a name")
    if name is not None:
        check_name(name, trusted=trusted)
    description = root.findtext("description") or None  # libvirt: an empty string reads as absent
    defn = SnapshotDef(name=name or "", description=description)
    offline = False
    if redefine:
        ctime = root.findtext("creationTime")
        if ctime is None or not _is_int(ctime):
            raise error(ErrorCode.INTERNAL_ERROR, ERR_DOMAIN, "missing creationTime from existing snapshot")
        defn.creation_time = int(ctime)
        parent = root.findtext("parent/name")
        defn.parent = parent if parent else None
        state_text = root.findtext("state")
        if state_text is None:
            raise error(ErrorCode.XML_ERROR, ERR_DOMAIN, "missing state from existing snapshot")
        state = SnapshotState.from_xml(state_text)
        if state is None or state == SnapshotState.NOSTATE:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR_DOMAIN,
                        f"Invalid state '{state_text}' in domain snapshot XML")
        defn.state = state
        offline = state in (SnapshotState.SHUTOFF, SnapshotState.DISK_SNAPSHOT)
        dom = root.find("domain")
        if dom is not None and dom.get("type"):
            defn.domain = domain_parser.from_node(detached(dom, root), ERR_DOMAIN, trusted)
        inactive = root.find("inactiveDomain")
        if inactive is not None:
            defn.inactive_domain = domain_parser.from_node(detached(inactive, root), ERR_DOMAIN, trusted)
    else:
        clock = time.time() if now is None else now
        defn.creation_time = int(clock)
        if not defn.name:
            defn.name = str(int(clock))

    memory = root.find("memory")
    mem_snapshot = memory.get("snapshot") if memory is not None else None
    mem_file = memory.get("file") if memory is not None else None
    if mem_snapshot is not None:
        loc = Location.from_xml(mem_snapshot)
        if loc is None or loc == Location.DEFAULT:
            raise _invalid_attr("snapshot", "memory", mem_snapshot)
        if loc == Location.MANUAL:
            raise error(ErrorCode.XML_ERROR, ERR_DOMAIN, "'manual' memory snapshot mode not supported")
        defn.memory = loc
        if mem_file and loc != Location.EXTERNAL:
            raise error(ErrorCode.XML_ERROR, ERR_DOMAIN, f"memory filename '{mem_file}' requires external snapshot")
        if not mem_file and loc == Location.EXTERNAL:
            raise error(ErrorCode.XML_ERROR, ERR_DOMAIN, "external memory snapshots require a filename")
    elif mem_file:
        defn.memory = Location.EXTERNAL
    elif redefine:
        defn.memory = Location.NO if offline else Location.INTERNAL
    if offline and defn.memory not in (Location.DEFAULT, Location.NO):
        raise error(ErrorCode.XML_ERROR, ERR_DOMAIN, "memory state cannot be saved with offline or disk-only snapshot")
    if mem_file:
        if not mem_file.startswith("/"):
            raise error(ErrorCode.XML_ERROR, ERR_DOMAIN, f"memory snapshot file path ({mem_file}) must be absolute")
        _check_path(mem_file)
        defn.memory_file = mem_file

    disks = root.find("disks")
    for disk_node in disks.children if disks is not None else []:
        defn.disks.append(_parse_disk(disk_node))

    if redefine and not offline:
        cookie = root.find("cookie")
        defn.cookie = detached(cookie, root) if cookie is not None else None
    return defn


def _is_int(text: str) -> bool:
    digits = text[1:] if text[:1] in "+-" else text
    return digits.isascii() and digits.isdigit()


def _invalid_attr(attr: str, element: str, value: str) -> Exception:
    """virXMLPropEnum's error (raised from virxml.c, hence the XML error domain)."""
    return error(ErrorCode.XML_ERROR, ErrorDomain.XML,
                 f"Invalid value for attribute '{attr}' in element '{element}': '{value}'.")


STORAGE_TYPES = ("file", "block", "dir", "network", "volume", "nvme", "vhostuser", "vhostvdpa")


def _parse_disk(node: Node) -> DiskSnapshot:
    name = node.get("name")
    if name is None:
        raise error(ErrorCode.INTERNAL_ERROR, ERR_DOMAIN, "missing name from disk snapshot element")
    disk = DiskSnapshot(name=name)
    snap = node.get("snapshot")
    if snap is not None:
        loc = Location.from_xml(snap)
        if loc is None or loc == Location.DEFAULT:
            raise _invalid_attr("snapshot", "disk", snap)
        disk.snapshot = loc
    stype = node.get("type")
    if stype is not None:
        if stype not in STORAGE_TYPES:
            raise _invalid_attr("type", "disk", stype)
        if stype in ("dir", "volume"):
            raise error(ErrorCode.XML_ERROR, ERR_DOMAIN, f"unsupported disk snapshot type '{stype}'")
        if stype not in ("file", "block", "network"):
            # libvirt parses network sources in either mode; each driver refuses, by disk name, what it cannot
            # apply (QEMU: any network disk; the test driver keeps one as libvirt's does).
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR_DOMAIN, f"disk snapshot type '{stype}' is not supported")
        disk.source_type = SourceType(stype)
        disk.explicit_type = True
    source = node.find("source")
    if source is not None:
        if disk.source_type == SourceType.NETWORK:
            if not source.get("protocol"):
                raise error(ErrorCode.XML_ERROR, ERR_DOMAIN, "missing network source protocol type")
            disk.source_node = source
        else:
            attr = "dev" if disk.source_type == SourceType.BLOCK else "file"
            disk.source = source.get(attr) or None
            if source.children:
                disk.source_node = source
    driver = node.find("driver")
    if driver is not None and driver.children:
        disk.driver_node = driver
    if driver is not None and driver.get("type") is not None:
        fmt = driver.get("type") or ""
        if fmt not in DISK_FORMATS:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR_DOMAIN, f"unknown disk snapshot driver '{fmt}'")
        disk.driver_type = fmt
    if disk.source is not None and not disk.source.startswith("/"):
        raise error(ErrorCode.XML_ERROR, ERR_DOMAIN, f"disk snapshot image path '{disk.source}' must be absolute")
    if disk.source is not None:
        _check_path(disk.source)
    if disk.snapshot == Location.DEFAULT and (disk.source or disk.driver_type or disk.source_node is not None):
        disk.snapshot = Location.EXTERNAL
    return disk


def _check_path(path: str) -> None:
    """Overlay and memory paths: no '..' components and no control characters (stricter than libvirt)."""
    if ".." in path.split("/") or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise error(ErrorCode.XML_ERROR, ERR_DOMAIN,
                    f"path '{escape_for_message(path)}' must not contain '..' components or control characters")


def align_disks(defn: SnapshotDef, default: Location, uniform_internal: bool = True,
                existing: DomainDef | None = None,
                is_regular_file: Callable[[str], bool] | None = None) -> None:
    """virDomainSnapshotAlignDisks: check requested disks, list every domain disk in domain order, and
    name external overlays. `existing` is the domain to align against when the XML carries none."""
    dom = defn.domain or existing
    require_match = uniform_internal and default == Location.INTERNAL
    if dom is None:
        raise error(ErrorCode.INTERNAL_ERROR, ERR_DOMAIN, "missing domain in snapshot")
    domain_disks = dom.disks()
    if len(defn.disks) > len(domain_disks):
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR_DOMAIN, "too many disk snapshot requests for domain")
    if not domain_disks:
        return
    # virDomainDiskByName (a target, else a source path) through two maps built once: one lookup per
    # requested disk instead of a scan of every domain disk (2,000 disks took half a minute)
    index_by_target: dict[str, int] = {}
    index_by_source: dict[str, int] = {}
    for i, dom_disk in enumerate(domain_disks):
        index_by_target.setdefault(dom_disk.target, i)
        if dom_disk.source is not None:
            index_by_source.setdefault(dom_disk.source, i)
    by_target: dict[str, tuple[int, DiskSnapshot]] = {}
    for disk in defn.disks:
        index = index_by_target.get(disk.name)
        if index is None:
            index = index_by_source.get(disk.name)
        if index is None:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR_DOMAIN, f"no disk named '{disk.name}'")
        dom_disk = domain_disks[index]
        if dom_disk.target in by_target:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR_DOMAIN, f"disk '{disk.name}' specified twice")
        by_target[dom_disk.target] = (index, disk)
        if disk.snapshot == Location.DEFAULT:
            if dom_disk.snapshot != Location.DEFAULT and (not require_match or dom_disk.snapshot == Location.NO):
                disk.snapshot = Location(dom_disk.snapshot)
            else:
                disk.snapshot = default
        elif require_match and disk.snapshot != default and not (
            disk.snapshot == Location.NO and dom_disk.snapshot == Location.NO
        ):
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR_DOMAIN,
                        f"disk '{disk.name}' must use snapshot mode '{default.xml}'")
        if disk.source and disk.snapshot != Location.EXTERNAL:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR_DOMAIN,
                        f"file '{disk.source}' for disk '{disk.name}' requires use of external snapshot mode")
        disk.name = dom_disk.target
    aligned: list[tuple[int, DiskSnapshot]] = list(by_target.values())
    for index, dom_disk in enumerate(domain_disks):
        if dom_disk.target in by_target:
            continue
        if dom_disk.source is None:
            loc = Location.NO  # libvirt never snapshots an empty drive
        elif dom_disk.snapshot != Location.DEFAULT:
            loc = Location(dom_disk.snapshot)
        else:
            loc = default
        aligned.append((index, DiskSnapshot(name=dom_disk.target, snapshot=loc)))
    aligned.sort(key=lambda pair: pair[0])
    defn.disks = [disk for _, disk in aligned]
    assign_external_names(defn, dom, is_regular_file or _never_regular)


def _never_regular(path: str) -> bool:
    return False


def format_snapshot(defn: SnapshotDef, domain_uuid: str | None = None, secure: bool = False,
                    internal_current: bool | None = None) -> str:
    """virDomainSnapshotDefFormat. `internal_current` adds the private <active> element."""
    out = ["<domainsnapshot>\n"]
    if defn.name:  # libvirt prints none for a nameless definition (its harness makes them)
        out.append(f"  <name>{escape(defn.name)}</name>\n")
    if defn.description is not None:
        out.append(f"  <description>{escape(defn.description)}</description>\n")
    if defn.state != SnapshotState.NOSTATE:
        out.append(f"  <state>{defn.state.xml}</state>\n")
    if defn.parent:
        out.append(f"  <parent>\n    <name>{escape(defn.parent)}</name>\n  </parent>\n")
    if defn.creation_time:
        out.append(f"  <creationTime>{defn.creation_time}</creationTime>\n")
    if defn.memory != Location.DEFAULT:
        file_attr = f" file='{escape(defn.memory_file)}'" if defn.memory_file else ""
        out.append(f"  <memory snapshot='{defn.memory.xml}'{file_attr}/>\n")
    if defn.disks:
        out.append("  <disks>\n")
        for disk in defn.disks:
            out.append(_format_disk(disk))
        out.append("  </disks>\n")
    if defn.domain is not None:
        out.append(defn.domain.format(indent=2, inactive=True, secure=secure))
    elif domain_uuid:
        out.append(f"  <domain>\n    <uuid>{domain_uuid}</uuid>\n  </domain>\n")
    if defn.inactive_domain is not None:
        out.append(defn.inactive_domain.format(indent=2, inactive=True, secure=secure, root_tag="inactiveDomain"))
    if defn.cookie is not None:
        out.append(format_node(defn.cookie, 2))
    if internal_current is not None:
        out.append(f"  <active>{1 if internal_current else 0}</active>\n")
    out.append("</domainsnapshot>\n")
    return "".join(out)


def _format_disk(disk: DiskSnapshot) -> str:
    attrs = f" name='{escape(disk.name)}'"
    if disk.snapshot != Location.DEFAULT:
        attrs += f" snapshot='{disk.snapshot.xml}'"
    if not (disk.source or disk.driver_type or disk.source_node is not None):
        return f"    <disk{attrs}/>\n"
    attrs += f" type='{disk.source_type.value}'"
    children = ""
    if disk.driver_node is not None:
        children += format_node(disk.driver_node, 6)
    elif disk.driver_type:
        children += f"      <driver type='{escape(disk.driver_type)}'/>\n"
    if disk.source_node is not None:
        children += format_node(disk.source_node, 6)
    elif disk.source:
        attr = "dev" if disk.source_type == SourceType.BLOCK else "file"
        children += f"      <source {attr}='{escape(disk.source)}'/>\n"
    if not children:
        return f"    <disk{attrs}/>\n"
    return f"    <disk{attrs}>\n{children}    </disk>\n"


def without_extension(path: str) -> str:
    """An image path minus the extension of its last component, as libvirt names overlays after it."""
    head, sep, tail = path.rpartition(".")
    return head if sep and "/" not in tail else path


def assign_external_names(defn: SnapshotDef, dom: DomainDef, is_regular_file: Callable[[str], bool]) -> None:
    """virDomainSnapshotDefAssignExternalNames: default overlay names derived from the disk's file."""
    domain_disks = {d.target: d for d in dom.disks()}
    claimed: dict[str, str] = {}  # path -> the first disk before this one that has it (libvirt's j < i scan)
    for disk in defn.disks:
        if disk.source_type == SourceType.NETWORK and disk.source_node is not None:
            continue  # named by its network source (libvirt: src->path is the volume name)
        if disk.snapshot != Location.EXTERNAL or disk.source:
            if disk.source:
                claimed.setdefault(disk.source, disk.name)
            continue
        if disk.source_type != SourceType.FILE:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR_DOMAIN,
                        f"cannot generate external snapshot name for disk '{disk.name}' on a "
                        f"'{disk.source_type.value}' device")
        origin = domain_disks[disk.name].source if disk.name in domain_disks else None
        if not origin:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR_DOMAIN,
                        f"cannot generate external snapshot name for disk '{disk.name}' without source")
        if not is_regular_file(origin):
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR_DOMAIN,
                        f"source for disk '{disk.name}' is not a regular file; refusing to generate external "
                        "snapshot name")
        disk.source = f"{without_extension(origin)}.{defn.name}"
        other = claimed.get(disk.source)
        if other is not None:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR_DOMAIN,
                        f"cannot generate external snapshot name for disk '{disk.name}': collision with disk "
                        f"'{other}'")
        claimed[disk.source] = disk.name
