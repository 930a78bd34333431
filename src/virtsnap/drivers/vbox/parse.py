"""Readers for what VBoxManage prints (`--machinereadable` output, `list vms`, error messages) and for the
snapshot part of a machine's settings file. Pure functions over text: no process is run here.

VBoxManage's machine-readable format is `key="value"` per line, but not uniformly: most values escape
`"` and `\\` with a backslash (VBoxManageInfo.cpp's outputMachineReadableString), while the snapshot
lines (showSnapshots) and a few others print names and descriptions raw, so a value may hold quotes and
newlines. The snapshot section is therefore read with its own grammar (the hierarchical suffixes tell
which line may follow which), and everything else with an escape-aware reader whose closing quote must
be followed by a line that can start a key.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DiskAttachment",
    "Failure",
    "MachineReadable",
    "ParseError",
    "SettingsSnapshot",
    "SnapshotListing",
    "SnapshotNode",
    "VmEntry",
    "VmInfo",
    "parse_error",
    "parse_machinereadable",
    "parse_settings_snapshots",
    "parse_settings_space",
    "parse_snapshot_list",
    "parse_vm_list",
    "parse_vminfo",
]

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_QUOTED_KEY = r'"(?:[^"\\\n]|\\.)*"'
_BARE_KEY = r'[^"=\n\s][^=\n]*'  # bare keys may hold spaces: GuestAdditionsFacility_VirtualBox Base Driver=...
_KEY_START = re.compile(rf"(?:{_QUOTED_KEY}|{_BARE_KEY})=")
_QUOTED_KEY_AT = re.compile(r'"((?:[^"\\\n]|\\.)*)"=')
_BARE_KEY_AT = re.compile(r'([^"=\n][^=\n]*)=')
_SNAPSHOT_NAME_AT = re.compile(r'SnapshotName((?:-[1-9][0-9]*)*)="')
_CURRENT_NAME = 'CurrentSnapshotName="'


class ParseError(ValueError):
    """Output that does not follow VBoxManage's documented format."""


# -- snapshot tree ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SnapshotNode:
    """One snapshot as `snapshot list --machinereadable` shows it."""

    uuid: str  # lower case, no braces
    name: str
    description: str  # "" when VirtualBox has none (it prints no SnapshotDescription line then)
    parent_uuid: str | None
    suffix: str  # VirtualBox's hierarchical index: "" for the root, "-2-1" for the first child of its second


@dataclass(frozen=True, slots=True)
class SnapshotListing:
    """A machine's snapshot tree: nodes in pre-order, each node's children oldest first."""

    nodes: tuple[SnapshotNode, ...] = ()
    current_uuid: str | None = None


def parse_snapshot_list(text: str) -> SnapshotListing:
    """Read `VBoxManage snapshot VM list --machinereadable`. Raises ParseError on anything else."""
    if not text.strip():
        return SnapshotListing()
    listing, _ = _parse_snapshot_section(text, 0, lambda t, p: not t[p:].strip())
    return listing


def _successors(suffix: str) -> frozenset[str]:
    """The suffixes that may follow node `suffix` in pre-order: its first child, or the next sibling of
    it or of one of its ancestors."""
    parts = [int(p) for p in suffix.split("-")[1:]]
    out = {suffix + "-1"}
    for depth in range(len(parts)):
        sibling = [*parts[:depth], parts[depth] + 1]
        out.add("".join(f"-{p}" for p in sibling))
    return frozenset(out)


def _parse_snapshot_section(text: str, pos: int, section_end: Callable[[str, int], bool],
                            known_end: Callable[[str, int], bool] | None = None) -> tuple[SnapshotListing, int]:
    """Read the snapshot lines starting at `pos`; return the tree and the offset just after them.

    `section_end` accepts any text that may follow the section; `known_end` (default: the same) what is
    known to follow it, preferred when a raw description could end in more than one place.
    """
    known = section_end if known_end is None else known_end
    nodes: list[SnapshotNode] = []
    by_suffix: dict[str, SnapshotNode] = {}
    current: str | None = None
    expected: frozenset[str] = frozenset({""})
    while True:
        start = _SNAPSHOT_NAME_AT.match(text, pos)
        if start is None:
            break
        suffix = start.group(1)
        if suffix not in expected:
            raise ParseError(f"unexpected snapshot line 'SnapshotName{suffix}' at offset {pos}")
        # A raw name ends where its own UUID line starts; nothing else can be mistaken for that line.
        uuid_line = re.compile(rf'"\nSnapshotUUID{re.escape(suffix)}="({_UUID})"(?:\n|\Z)')
        found = uuid_line.search(text, start.end())
        if found is None:
            raise ParseError(f"no SnapshotUUID{suffix} line after SnapshotName{suffix}")
        name = text[start.end():found.start()]
        uuid = found.group(1).lower()
        pos = found.end()
        successors = _successors(suffix)
        description = ""
        desc = re.compile(rf'SnapshotDescription{re.escape(suffix)}="').match(text, pos)
        if desc is not None:
            def next_is_known(p: int, succ: frozenset[str] = successors) -> bool:
                node = _SNAPSHOT_NAME_AT.match(text, p)
                return (text.startswith(_CURRENT_NAME, p) or (node is not None and node.group(1) in succ)
                        or known(text, p))

            description, pos = _raw_value(text, desc.end(), next_is_known, lambda p: section_end(text, p))
        if text.startswith(_CURRENT_NAME, pos):
            block = re.compile(rf'"\nCurrentSnapshotUUID="({_UUID})"\nCurrentSnapshotNode="SnapshotName'
                               rf'{re.escape(suffix)}"(?:\n|\Z)')
            marker = block.search(text, pos)
            if marker is None or marker.group(1).lower() != uuid:
                raise ParseError(f"malformed current-snapshot lines after SnapshotName{suffix}")
            current = uuid
            pos = marker.end()
        parent = by_suffix.get(suffix.rpartition("-")[0]) if suffix else None
        node = SnapshotNode(uuid, name, description, parent.uuid if parent else None, suffix)
        nodes.append(node)
        by_suffix[suffix] = node
        expected = successors
    if not section_end(text, pos):
        raise ParseError(f"unexpected text after the snapshot lines at offset {pos}: {text[pos:pos + 40]!r}")
    return SnapshotListing(tuple(nodes), current), pos


def _raw_value(text: str, start: int, known: Callable[[int], bool],
               possible: Callable[[int], bool]) -> tuple[str, int]:
    """An unescaped value. It ends at a `"` + newline: the first one followed by what is `known` to come
    next, else the first one followed by anything `possible`."""
    fallback: tuple[str, int] | None = None
    i = start
    while True:
        quote = text.find('"', i)
        if quote < 0:
            if fallback is None:
                raise ParseError(f"unterminated value at offset {start}")
            return fallback
        after = quote + 1
        if after == len(text):
            return text[start:quote], after
        if text[after] == "\n":
            if known(after + 1):
                return text[start:quote], after + 1
            if fallback is None and possible(after + 1):
                fallback = text[start:quote], after + 1
        i = after


# -- generic key/value output -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MachineReadable:
    """`showvminfo --machinereadable`: values by key (the first occurrence wins) and the snapshot tree."""

    values: dict[str, str]
    snapshots: SnapshotListing

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key, default)


def _plausible_line_start(text: str, pos: int) -> bool:
    """Whether a new line of machine-readable output can start at `pos`."""
    # VBoxManage also prints bare " rec_screenN" lines without '=' in machine-readable mode.
    return pos >= len(text) or text[pos] == " " or _KEY_START.match(text, pos) is not None


def parse_machinereadable(text: str) -> MachineReadable:
    """Read any `--machinereadable` listing. Lines without a key are skipped (VBoxManage prints a few)."""
    values: dict[str, str] = {}
    listing = SnapshotListing()
    pos, end = 0, len(text)
    while pos < end:
        if _SNAPSHOT_NAME_AT.match(text, pos) is not None and not listing.nodes:
            listing, pos = _parse_snapshot_section(
                text, pos, lambda t, p: _plausible_line_start(t, p) and _SNAPSHOT_NAME_AT.match(t, p) is None,
                # showvminfo prints the guest section right after the snapshots, starting with this key.
                lambda t, p: p >= len(t) or t.startswith("GuestMemoryBalloon=", p))
            continue
        key, pos_value = _read_key(text, pos)
        if key is None:
            newline = text.find("\n", pos)
            pos = end if newline < 0 else newline + 1
            continue
        value, pos = _read_value(text, pos_value)
        values.setdefault(key, value)
    return MachineReadable(values, listing)


def _unescape(raw: str) -> str:
    return re.sub(r'\\(["\\])', r"\1", raw)


def _read_key(text: str, pos: int) -> tuple[str | None, int]:
    quoted = _QUOTED_KEY_AT.match(text, pos)
    if quoted is not None:
        return _unescape(quoted.group(1)), quoted.end()
    bare = _BARE_KEY_AT.match(text, pos)
    if bare is not None:
        return bare.group(1), bare.end()
    return None, pos


def _read_value(text: str, pos: int) -> tuple[str, int]:
    end = len(text)
    if pos < end and text[pos] == '"':
        out: list[str] = []
        i = pos + 1
        while i < end:
            char = text[i]
            if char == "\\" and i + 1 < end and text[i + 1] in '"\\':
                out.append(text[i + 1])
                i += 2
                continue
            if char == '"':
                after = i + 1
                if after == end:
                    return "".join(out), end
                if text[after] == "\n" and _plausible_line_start(text, after + 1):
                    return "".join(out), after + 1
            out.append(char)
            i += 1
        return "".join(out), end  # an unterminated value: keep what there is
    newline = text.find("\n", pos)
    if newline < 0:
        return text[pos:], end
    return text[pos:newline], newline + 1


# -- showvminfo, typed --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DiskAttachment:
    """One medium slot of a storage controller, in showvminfo order."""

    controller: str
    controller_type: str  # storagecontrollertype: IntelAhci, PIIX4, LsiLogic, I82078, NVMe, ...
    port: int
    device: int
    path: str | None  # None for an empty drive
    kind: str  # "disk", "cdrom" or "floppy"


@dataclass(frozen=True, slots=True)
class VmInfo:
    """What the driver reads from `showvminfo --machinereadable`."""

    name: str
    uuid: str
    state: str  # VMState: poweroff, running, paused, saved, aborted, ...
    memory_mb: int
    cpus: int
    cfg_file: str | None
    description: str | None
    ostype: str
    platform: str  # platformArchitecture (VirtualBox 7.1+) or "x86"
    longmode: bool
    disks: tuple[DiskAttachment, ...]
    snapshots: SnapshotListing
    accessible: bool = True


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def parse_vminfo(text: str) -> VmInfo:
    """Read `showvminfo VM --machinereadable`. Raises ParseError if name or UUID is missing."""
    info = parse_machinereadable(text)
    name, uuid = info.get("name"), info.get("UUID")
    if name is None or uuid is None or re.fullmatch(_UUID, uuid) is None:
        raise ParseError("showvminfo printed no name or UUID")
    return VmInfo(
        name=name,
        uuid=uuid.lower(),
        state=info.get("VMState", "unknown") or "unknown",
        memory_mb=_int(info.get("memory")),
        cpus=_int(info.get("cpus"), 1),
        cfg_file=info.get("CfgFile"),
        description=info.get("description"),
        ostype=info.get("ostype", "") or "",
        platform=info.get("platformArchitecture", "x86") or "x86",
        longmode=info.get("longmode") == "on",
        disks=tuple(_attachments(info)),
        snapshots=info.snapshots,
        accessible=name != "<inaccessible>",
    )


def _attachments(info: MachineReadable) -> list[DiskAttachment]:
    out: list[DiskAttachment] = []
    index = 0
    while True:
        controller = info.get(f"storagecontrollername{index}")
        if controller is None:
            return out
        ctl_type = info.get(f"storagecontrollertype{index}", "") or ""
        slot = re.compile(rf"{re.escape(controller)}-(\d+)-(\d+)")
        for key, value in info.values.items():
            match = slot.fullmatch(key)
            if match is None or value == "none":
                continue
            port, device = int(match.group(1)), int(match.group(2))
            # DVD drives alone get the IsEjected/tempeject keys (without port and device before 7.0).
            is_dvd = any(k in info.values for k in (f"{controller}-IsEjected-{port}-{device}",
                                                    f"{controller}-tempeject-{port}-{device}"))
            path = None if value == "emptydrive" else value
            if ctl_type == "I82078":
                kind = "floppy"
            elif is_dvd or path is None or path.lower().endswith(".iso"):
                kind = "cdrom"
            else:
                kind = "disk"
            out.append(DiskAttachment(controller, ctl_type, port, device, path, kind))
        index += 1


# -- list vms -----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VmEntry:
    name: str
    uuid: str

    @property
    def accessible(self) -> bool:
        return self.name != "<inaccessible>"


# Names are printed raw, so one may hold quotes or newlines; the `" {UUID}` + end of line closes it.
_VM_LINE = re.compile(rf'^"(.*?)" \{{({_UUID})\}}$', re.MULTILINE | re.DOTALL)


def parse_vm_list(text: str) -> list[VmEntry]:
    """Read `list vms` / `list runningvms`: one `"NAME" {UUID}` per machine."""
    return [VmEntry(m.group(1), m.group(2).lower()) for m in _VM_LINE.finditer(text)]


# -- errors -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Failure:
    """A VBoxManage error report (GluePrintErrorInfo): the message and, when printed, the COM status."""

    message: str
    code_name: str | None = None  # e.g. VBOX_E_OBJECT_NOT_FOUND; never translated
    hresult: int | None = None
    component: str | None = None
    interface: str | None = None
    context: str | None = None


_ERROR_LINE = re.compile(r"^[^:\n]+: error: ?(.*)$")
_DETAILS = re.compile(r"Details: code (\S+) \((0x[0-9A-Fa-f]+)\)(?:, component ([^,\s]+))?(?:, interface ([^,\s]+))?")


def parse_error(stderr: str, stdout: str = "") -> Failure:
    """Read the `VBoxManage: error: ...` lines; fall back to the last line printed when there are none."""
    message: list[str] = []
    code_name = component = interface = context = None
    hresult: int | None = None
    for line in stderr.splitlines():
        match = _ERROR_LINE.match(line)
        if match is None:
            continue
        body = match.group(1)
        details = _DETAILS.match(body)
        if details is not None:
            code_name, hresult = details.group(1), int(details.group(2), 16)
            component, interface = details.group(3), details.group(4)
        elif body.startswith("Context: "):
            context = body[len("Context: "):]
        elif body:
            message.append(body)
    if not message:
        lines = [line for line in (stderr + "\n" + stdout).splitlines() if line.strip()]
        message = lines[-1:] or ["VBoxManage failed without a message"]
    return Failure("\n".join(message), code_name, hresult, component, interface, context)


# -- settings file (.vbox) ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SettingsSnapshot:
    """What only the settings file tells about a snapshot: when it was taken and whether it is online."""

    uuid: str
    timestamp: int | None  # Unix seconds
    online: bool  # a saved-state file belongs to it: it was taken of a running, paused or saved machine


_TIMESTAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?Z")


def _settings_parser() -> Any:
    from lxml import etree  # heavy: imported only when a settings file is read

    # The file is VirtualBox's, but treat it like any input: no entities, DTDs or network.
    return etree, etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False)


def parse_settings_snapshots(data: bytes) -> dict[str, SettingsSnapshot]:
    """Read every <Snapshot uuid= timeStamp= stateFile=> of a machine settings file, by UUID.

    Raises ParseError if the file is not well-formed XML.
    """
    etree, parser = _settings_parser()
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise ParseError(f"settings file is not well-formed: {exc}") from exc
    out: dict[str, SettingsSnapshot] = {}
    for element in root.iter():
        if not isinstance(element.tag, str) or etree.QName(element).localname != "Snapshot":
            continue
        uuid = (element.get("uuid") or "").strip("{}").lower()
        if re.fullmatch(_UUID, uuid) is None:
            continue
        stamp = _TIMESTAMP.fullmatch(element.get("timeStamp") or "")
        timestamp = calendar.timegm((*(int(g) for g in stamp.groups()), 0, 0, 0)) if stamp else None
        out[uuid] = SettingsSnapshot(uuid, timestamp, bool(element.get("stateFile")))
    return out


@dataclass(frozen=True, slots=True)
class SettingsSpace:
    """What a settings file says about space: per snapshot its saved-state file and the images its hardware
    attaches; per hard disk of the media registry its location and its parent (None: a base image)."""

    snapshots: dict[str, tuple[str | None, tuple[str, ...]]]
    disks: dict[str, tuple[str, str | None]]


def parse_settings_space(data: bytes) -> SettingsSpace:
    """Read <Snapshot stateFile=> with the <Image uuid=> of its own <Hardware>, and <MediaRegistry>'s nested
    <HardDisk uuid= location=>. Raises ParseError if the file is not well-formed XML."""
    etree, parser = _settings_parser()
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise ParseError(f"settings file is not well-formed: {exc}") from exc

    def local(element: Any) -> str:
        return str(etree.QName(element).localname) if isinstance(element.tag, str) else ""

    def uuid_of(element: Any) -> str | None:
        uuid = (element.get("uuid") or "").strip("{}").lower()
        return uuid if re.fullmatch(_UUID, uuid) else None

    snapshots: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    disks: dict[str, tuple[str, str | None]] = {}
    for element in root.iter():
        kind = local(element)
        if kind == "Snapshot" and (sid := uuid_of(element)) is not None:
            images: list[str] = []
            for child in element:
                if local(child) == "Hardware":  # its own hardware, not that of the snapshots below it
                    images += [u for image in child.iter() if local(image) == "Image" and (u := uuid_of(image))]
            snapshots[sid] = (element.get("stateFile") or None, tuple(images))
        elif kind == "HardDisk" and (did := uuid_of(element)) is not None:
            parent = element.getparent()
            parent_id = uuid_of(parent) if parent is not None and local(parent) == "HardDisk" else None
            disks[did] = (element.get("location") or "", parent_id)
    return SettingsSpace(snapshots, disks)
