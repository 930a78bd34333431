"""DomainDef: a libvirt <domain> document kept as an opaque element, with typed views of what snapshots need.

Drivers that run guests (QEMU) validate their own subset on top; this module never imports a driver.
"""

from __future__ import annotations

from ..errors import ErrorCode, ErrorDomain, error
from ..records import Frozen
from .unsafe import name_problem
from .xmlutil import Node, format_node, parse, parse_trusted

_HEX = frozenset("0123456789abcdefABCDEF")


def _is_uuid(text: str) -> bool:
    """32 hex digits in groups of 8-4-4-4-12, a '-' between groups optional (as libvirt's virUUIDParse reads
    them; a loop rather than a regular expression, whose compilation costs a cold start ~0.6 ms)."""
    pos = 0
    for size in (8, 4, 4, 4, 12):
        if pos and text[pos:pos + 1] == "-":
            pos += 1
        group = text[pos:pos + size]
        if len(group) != size or not _HEX.issuperset(group):
            return False
        pos += size
    return pos == len(text)


class DiskView(Frozen):
    """What snapshot code needs to know about one <disk> of a domain."""

    _fields = ("target", "device", "source_type", "source", "driver_type", "readonly", "snapshot", "bus")
    __slots__ = _fields

    def __init__(self, target: str, device: str, source_type: str, source: str | None, driver_type: str | None,
                 readonly: bool, snapshot: int, bus: str | None) -> None:
        self.target = target
        self.device = device  # disk, cdrom, floppy, lun
        self.source_type = source_type  # file, block, network, volume
        self.source = source
        self.driver_type = driver_type
        self.readonly = readonly
        self.snapshot = snapshot  # a snapshot_xml.Location value (0 = default)
        self.bus = bus


def _check_name(name: str, err_domain: ErrorDomain) -> None:
    if "\n" in name:
        raise error(ErrorCode.XML_DETAIL, err_domain, "invalid char in name: 0x0a")  # libvirt's check
    if "/" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        # Names become file and socket names: refused where libvirt would only refuse some drivers.
        raise error(ErrorCode.XML_ERROR, err_domain,
                    f"invalid domain name {name!r}: it must not contain '/' or control characters")
    problem = name_problem(name)  # C1 controls, bidi overrides, invisible characters: they forge listings
    if problem is not None:
        raise error(ErrorCode.XML_ERROR, err_domain, f"invalid domain name {name!r}: {problem}")


class DomainDef:
    """A <domain> definition. The element tree is the source of truth; accessors read it."""

    __slots__ = ("node",)

    def __init__(self, node: Node) -> None:
        self.node = node

    @classmethod
    def parse(cls, text: str, err_domain: ErrorDomain = ErrorDomain.DOMAIN, trusted: bool = False) -> DomainDef:
        """`trusted`: a document virtsnap wrote or ships itself (read by xmlutil.parse_trusted)."""
        reader = parse_trusted if trusted else parse
        return cls.from_node(reader(text, "domain", "domain_definition", err_domain), err_domain, trusted)

    @classmethod
    def from_node(cls, node: Node, err_domain: ErrorDomain = ErrorDomain.DOMAIN, trusted: bool = False) -> DomainDef:
        """`trusted`: a document virtsnap wrote itself (its store's, whose name an earlier virtsnap may have
        accepted) or built from what a hypervisor reports (a name VirtualBox or ESX has cannot be refused)."""
        node = node.copy()
        node.tag = "domain"
        name = node.findtext("name")
        if not name:
            raise error(ErrorCode.NO_NAME, err_domain, "domain")
        if not trusted:
            _check_name(name, err_domain)
        if node.get("type") is None:
            raise error(ErrorCode.XML_ERROR, err_domain, "missing domain type attribute")
        uuid = node.findtext("uuid")
        if uuid is None or uuid == "":
            import uuid as uuidlib  # only a definition without a uuid needs a new one

            uuid_node = Node("uuid", text=str(uuidlib.uuid4()))
            node.children.insert(_index_after(node, "name"), uuid_node)
        elif not _is_uuid(uuid.strip()):
            raise error(ErrorCode.INTERNAL_ERROR, err_domain, "malformed uuid element")
        node.attrs.pop("id", None)  # the id is live state, added back when formatting a running domain
        if any(_is_declaration(name) for name in node.attrs):  # libvirt prints <domain type=... xmlns:qemu=...>
            node.attrs = dict(sorted(node.attrs.items(), key=lambda item: _is_declaration(item[0])))
        _sanitize_metadata(node)
        return cls(node)

    def copy(self) -> DomainDef:
        return DomainDef(self.node.copy())

    @property
    def type(self) -> str:
        return self.node.get("type") or ""

    @property
    def name(self) -> str:
        return self.node.findtext("name") or ""

    @property
    def uuid(self) -> str:
        """The uuid in its canonical form (lower case, hyphenated), as uuid.UUID prints it."""
        raw = (self.node.findtext("uuid") or "").strip().lower().replace("-", "")
        if not raw:
            return ""
        if len(raw) != 32 or raw.strip("0123456789abcdef"):
            import uuid as uuidlib  # not 32 hex digits (from_node refuses those): uuid's own error

            return str(uuidlib.UUID(raw))
        return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"

    @property
    def memory_kib(self) -> int:
        return _kib(self.node.find("memory"))

    @property
    def current_memory_kib(self) -> int:
        cur = self.node.find("currentMemory")
        return _kib(cur) if cur is not None else self.memory_kib

    @property
    def vcpus(self) -> int:
        text = self.node.findtext("vcpu")
        return int(text) if text and text.strip().isdigit() else 1

    @property
    def os_type(self) -> str:
        return self.node.findtext("os/type") or "hvm"

    def disks(self) -> list[DiskView]:
        from .snapshot_xml import Location  # local: snapshot_xml imports this module

        devices = self.node.find("devices")
        views: list[DiskView] = []
        for disk in devices.findall("disk") if devices is not None else []:
            target = disk.find("target")
            source = disk.find("source")
            driver = disk.find("driver")
            stype = disk.get("type") or "file"
            path = None
            if source is not None:
                path = source.get("dev") if stype == "block" else source.get("file") or source.get("name")
            snap = disk.get("snapshot")
            loc = Location.from_xml(snap) if snap else Location.DEFAULT
            views.append(DiskView(
                target=(target.get("dev") if target is not None else None) or "",
                device=disk.get("device") or "disk",
                source_type=stype,
                source=path,
                driver_type=driver.get("type") if driver is not None else None,
                readonly=disk.find("readonly") is not None,
                snapshot=int(loc or Location.DEFAULT),
                bus=target.get("bus") if target is not None else None,
            ))
        return views

    def disk_index(self, name: str) -> int | None:
        """virDomainDiskByName: match a target dev, or a source path."""
        disks = self.disks()
        for i, disk in enumerate(disks):
            if disk.target == name:
                return i
        for i, disk in enumerate(disks):
            if disk.source is not None and disk.source == name:
                return i
        return None

    def format(self, indent: int = 0, inactive: bool = True, secure: bool = False, dom_id: int | None = None,
               root_tag: str | None = None) -> str:
        node = self.node
        if not secure or (dom_id is not None and not inactive):
            node = node.copy()
            if not secure:
                _strip_secrets(node)
            if dom_id is not None and not inactive:
                node.attrs = {"type": node.attrs.get("type", ""), "id": str(dom_id),
                              **{k: v for k, v in node.attrs.items() if k != "type"}}
        # libvirt prints <metadata> with libxml2, and <devices> open and closed even when it is empty
        return format_node(node, indent, root_tag, dumped=("metadata",), opened=("devices",))


def _sanitize_metadata(node: Node) -> None:
    """Keep <metadata> as libvirt does: its first one only, and in it (virXMLNodeSanitizeNamespaces) only
    elements in a namespace, the first one of each namespace. libvirt copies <metadata> out of the document, so
    a prefix declared above it (on <domain>) does not count: an element using one is dropped, as there."""
    found = False
    kept: list[Node] = []
    for child in node.children:
        if child.tag == "metadata":
            if found:
                continue
            found = True
            child.text = None
            scope = _declared(child, {})
            seen: set[str] = set()
            entries = []
            for entry in child.children:
                uri = _namespace(entry, scope)
                if uri and uri not in seen:
                    seen.add(uri)
                    entries.append(entry)
            child.children = entries
        kept.append(child)
    node.children = kept


def _is_declaration(name: str) -> bool:
    return name == "xmlns" or name.startswith("xmlns:")


def _declared(node: Node, scope: dict[str, str]) -> dict[str, str]:
    """Prefixes in scope at `node` ("" for the default namespace), given those in scope at its parent."""
    mine = {name[6:]: uri for name, uri in node.attrs.items() if _is_declaration(name)}
    return {**scope, **mine} if mine else scope


def _namespace(node: Node, scope: dict[str, str]) -> str:
    prefix = node.tag.partition(":")[0] if ":" in node.tag else ""
    return _declared(node, scope).get(prefix, "")


def _strip_secrets(node: Node) -> None:
    """Remove what libvirt hides without VIR_DOMAIN_XML_SECURE (graphics passwords)."""
    devices = node.find("devices")
    for graphics in devices.findall("graphics") if devices is not None else []:
        graphics.attrs.pop("passwd", None)


def _index_after(node: Node, tag: str) -> int:
    for i, child in enumerate(node.children):
        if child.tag == tag:
            return i + 1
    return 0


_UNITS = {"b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "kb": 1000 / 1024, "m": 1024, "mib": 1024,
          "mb": 1000 * 1000 / 1024, "g": 1024 * 1024, "gib": 1024 * 1024, "gb": 1000 ** 3 / 1024,
          "t": 1024 ** 3, "tib": 1024 ** 3, "tb": 1000 ** 4 / 1024}


def _kib(node: Node | None) -> int:
    if node is None or not node.text or not node.text.strip().isdigit():
        return 0
    factor = _UNITS.get((node.get("unit") or "KiB").lower(), 1)
    return int(int(node.text.strip()) * factor)
