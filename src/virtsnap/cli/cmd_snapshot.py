"""The snapshot-* commands, one function each, as tools/virsh-snapshot.c behaves.

Each takes (ctl, opts), uses only the public virtsnap API and returns True on success; libvirt errors
that escape a command are printed by the chain runner after the command's own messages (as virsh does).
"""

from __future__ import annotations

import os
import sys
import time

import virtsnap
from virtsnap.conf.unsafe import json_text, terminal_text, xml_text
from virtsnap.errors import ErrorCode, ErrorDomain
from virtsnap.flags import SnapshotCreate, SnapshotDelete, SnapshotList, SnapshotRevert, SnapshotXML

from .control import CommandError, Control, read_file
from .parser import Command, Opt, Opts, OptType, argv, data, flag, string
from .table import Table, render_forest

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any

    from virtsnap.conf.tree import Summary
    from virtsnap.conf.xmlutil import Node

DOMAIN_OPT = Opt("domain", OptType.DATA, "domain name, id or uuid", required=True)
JSON_OPT = flag("json", "print the result as JSON (virtsnap extension)")

FILTERS_STATUS = SnapshotList.INACTIVE | SnapshotList.ACTIVE | SnapshotList.DISK_ONLY
FILTERS_LOCATION = SnapshotList.INTERNAL | SnapshotList.EXTERNAL


# -- helpers ------------------------------------------------------------------------------------------
def xml_escape(text: str) -> str:
    """virBufferEscapeString: escape markup, silently drop the control characters libvirt forbids."""
    out: list[str] = []
    for c in text:
        if c == "<":
            out.append("&lt;")
        elif c == ">":
            out.append("&gt;")
        elif c == "&":
            out.append("&amp;")
        elif c == '"':
            out.append("&quot;")
        elif c == "'":
            out.append("&apos;")
        elif "\x01" <= c <= "\x19" and c not in "\t\n\r":
            continue  # libvirt's table stops at 0x19: 0x1a-0x1f pass through
        else:
            out.append(c)
    return "".join(out)


def split_commas(text: str) -> list[str]:
    """vshStringToArray: split at ',' where ',,' stands for a literal comma."""
    if not text:
        return []  # g_strsplit("") has no element at all
    parts = text.split(",")
    out = [parts[0]]
    concat = False
    for part in parts[1:]:
        if concat:
            out[-1] = out[-1] + "," + part
            concat = False
            continue
        if part == "":
            concat = True
        else:
            out.append(part)
    if concat:
        out.append("")
    return out


def parse_xml(xml: str) -> Node | None:
    """The snapshot XML as a tree, or None when it does not parse (virsh then skips or fails). Read with the
    parser the drivers use for virtsnap's own documents (expat, already loaded): ElementTree alone cost a cold
    snapshot-info 3.8 ms."""
    from virtsnap.conf.xmlutil import parse_trusted

    try:
        return parse_trusted(xml, "domainsnapshot", "", ErrorDomain.NONE)
    except virtsnap.libvirtError:
        return None


def _find_all(root: Node, path: str) -> list[Node]:
    """The elements at a '/'-separated path below `root`, in document order (ElementTree's findall)."""
    nodes = [root]
    for part in path.split("/"):
        nodes = [child for node in nodes for child in node.children if child.tag == part]
    return nodes


def _text(node: Node) -> str:
    """XPath's string() of an element: the text of all its descendants, in document order."""
    return (node.text or "") if not node.children else "".join(_text(child) for child in node.children)


def xpath_string(root: Node, path: str) -> str | None:
    """XPath string(/domainsnapshot/PATH) as virXPathString returns it: None when empty."""
    found = _find_all(root, path)
    return (_text(found[0]) or None) if found else None


def is_external(root: Node, state: str) -> bool:
    """snapshot-info's Location rule: <memory snapshot='external'> or an external disk, else by state."""
    memory = _find_all(root, "memory")
    if not memory:
        return state == "disk-snapshot"
    if any(m.get("snapshot") == "external" for m in memory):
        return True
    return any(d.get("snapshot") == "external" for d in _find_all(root, "disks/disk"))


def parse_c_longlong(text: str) -> int | None:
    """virStrToLong_ll on a whole string."""
    stripped = text.lstrip(" \t\n\v\f\r")
    body = stripped[1:] if stripped[:1] in "+-" else stripped
    if not body or not body.isascii() or not body.isdigit():
        return None
    value = int(stripped)
    return value if -(2**63) <= value < 2**63 else None


def format_time(seconds: int) -> str | None:
    """g_date_time_format(local time, "%Y-%m-%d %H:%M:%S %z"), None when out of range."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(seconds))
    except (OverflowError, OSError, ValueError):
        return None


def print_json(ctl: Control, value: Any) -> None:
    import json  # only --json needs it

    ctl.out(json_text(json.dumps(value, indent=2, ensure_ascii=False)) + "\n")


def lookup_snapshot(ctl: Control, opts: Opts, arg: str, exclusive: bool,
                    dom: virtsnap.virDomain) -> tuple[virtsnap.virDomainSnapshot, str]:
    """virshLookupSnapshot: {--ARG name | --current}; errors are printed here."""
    current = opts.has("current")
    name = ctl.string(opts, arg)
    if exclusive and current and name is not None:
        ctl.error(f"--{arg} and --current are mutually exclusive")
        raise CommandError()
    try:
        if name is not None:
            snap = dom.snapshotLookupByName(name, 0)
        elif current:
            snap = dom.snapshotCurrent(0)
        else:
            ctl.error(f"--{arg} or --current is required")
            raise CommandError()
    except virtsnap.libvirtError as exc:
        ctl.save_error(exc)
        ctl.report_error()
        raise CommandError() from exc
    return snap, snap.getName()


def snapshot_parent(ctl: Control, snap: virtsnap.virDomainSnapshot) -> str | None:
    """virshGetSnapshotParent: the parent's name, None for a root; falls back to the XML."""
    try:
        return snap.getParent(0).getName()
    except virtsnap.libvirtError as exc:
        if exc.get_error_code() == ErrorCode.NO_DOMAIN_SNAPSHOT:
            ctl.reset_error()
            return None
    try:
        root = parse_xml(snap.getXMLDesc(0))
    except virtsnap.libvirtError as exc:
        ctl.save_error(exc)
        ctl.report_error()
        ctl.error("unable to determine if snapshot has parent")
        raise CommandError() from exc
    ctl.reset_error()
    return None if root is None else xpath_string(root, "parent/name")


# -- snapshot-create / snapshot-create-as ---------------------------------------------------------------
CREATE_FLAGS = (
    ("redefine", SnapshotCreate.REDEFINE),
    ("current", SnapshotCreate.CURRENT),
    ("no-metadata", SnapshotCreate.NO_METADATA),
    ("halt", SnapshotCreate.HALT),
    ("disk-only", SnapshotCreate.DISK_ONLY),
    ("reuse-external", SnapshotCreate.REUSE_EXT),
    ("quiesce", SnapshotCreate.QUIESCE),
    ("atomic", SnapshotCreate.ATOMIC),
    ("live", SnapshotCreate.LIVE),
    ("validate", SnapshotCreate.VALIDATE),
    ("no-space-check", SnapshotCreate.NO_SPACE_CHECK),
)


def _create(ctl: Control, dom: virtsnap.virDomain, xml: str, flags: int, source: str | None) -> bool:
    """virshSnapshotCreate, with virsh's retries for servers without VALIDATE or HALT."""
    halt = False
    snap: virtsnap.virDomainSnapshot | None = None
    error: virtsnap.libvirtError | None = None
    try:
        snap = dom.snapshotCreateXML(xml, flags)
    except virtsnap.libvirtError as exc:
        error = exc
    if snap is None and error is not None and error.get_error_code() == ErrorCode.NO_SUPPORT and source is None:
        flags &= ~SnapshotCreate.VALIDATE
        try:
            snap = dom.snapshotCreateXML(xml, flags)
        except virtsnap.libvirtError as exc:
            error = exc
    # virsh retries without HALT on any invalid-argument error; only a driver lacking HALT warrants it
    # (after e.g. a refused REDEFINE|HALT pair the retry would change what the refusal protected).
    if (snap is None and error is not None and error.get_error_code() == ErrorCode.INVALID_ARG
            and error.get_error_message().startswith("unsupported flags") and flags & SnapshotCreate.HALT):
        ctl.reset_error()
        try:
            persistent = dom.isPersistent()
        except virtsnap.libvirtError as exc:
            ctl.save_error(exc)
            ctl.report_error()
            return False
        if not persistent:
            ctl.error("cannot halt after snapshot of transient domain")
            return False
        try:
            halt = dom.isActive() == 1
        except virtsnap.libvirtError:
            halt = False
        flags &= ~SnapshotCreate.HALT
        try:
            snap = dom.snapshotCreateXML(xml, flags)
        except virtsnap.libvirtError as exc:
            error = exc
    if snap is None:
        if error is not None:
            ctl.save_error(error)
        return False
    if halt:
        try:
            dom.destroy()
        except virtsnap.libvirtError as exc:
            ctl.save_error(exc)
            ctl.report_error()
            return False
    name = snap.getName()
    if source is not None:
        ctl.extra(f"Domain snapshot {name} created from '{source}'")
    else:
        ctl.extra(f"Domain snapshot {name} created")
    return True


def cmd_snapshot_create(ctl: Control, opts: Opts) -> bool:
    flags = 0
    for name, value in CREATE_FLAGS:
        if opts.has(name):
            flags |= value
    dom, _ = ctl.domain(opts)
    source = ctl.string(opts, "xmlfile")
    if source is None:
        xml = "<domainsnapshot/>"
    else:
        try:
            xml = read_file(source)
        except virtsnap.libvirtError as exc:
            ctl.save_error(exc)
            return False
    return _create(ctl, dom, xml, flags, source)


def _memspec(ctl: Control, spec: str) -> str:
    """virshParseSnapshotMemspec: `[file=]PATH[,snapshot=TYPE]` as a <memory/> line."""
    snapshot = file = None
    for item in split_commas(spec):
        if snapshot is None and item.startswith("snapshot="):
            snapshot = item[len("snapshot="):]
        elif file is None and item.startswith("file="):
            file = item[len("file="):]
        elif file is None and item.startswith("/"):
            file = item
        else:
            ctl.error(f"unable to parse memspec: {spec}")
            raise CommandError()
    line = "  <memory"
    if snapshot is not None:
        line += f" snapshot='{xml_escape(snapshot)}'"
    if file is not None:
        line += f" file='{xml_escape(file)}'"
    return line + "/>\n"


def _diskspec(ctl: Control, spec: str) -> str:
    """virshParseSnapshotDiskspec: `disk[,snapshot=T][,driver=T][,stype=file|block][,file=P]`."""
    items = split_commas(spec)
    fields: dict[str, str] = {}
    name = items[0] if items else None
    for item in items[1:]:
        for key in ("snapshot", "driver", "stype", "file"):
            if key not in fields and item.startswith(key + "="):
                fields[key] = item[len(key) + 1:]
                break
        else:
            ctl.error(f"unable to parse diskspec: {spec}")
            raise CommandError()
    # g_strsplit("") yields no element at all: virsh then omits the name and its attribute
    text = f"    <disk name='{xml_escape(name)}'" if name is not None else "    "
    if "snapshot" in fields:
        text += f" snapshot='{fields['snapshot']}'"  # virsh does not escape these three
    is_file = True
    if "stype" in fields:
        stype = fields["stype"]
        if stype == "block":
            is_file = False
        elif stype != "file":
            ctl.error(f"Unknown storage type: '{stype}'")
            ctl.error(f"unable to parse diskspec: {spec}")
            raise CommandError()
        text += f" type='{stype}'"
    if "driver" in fields or "file" in fields:
        text += ">\n"
        if "driver" in fields:
            text += f"      <driver type='{fields['driver']}'/>\n"
        if "file" in fields:
            attr = "file" if is_file else "dev"
            text += f"      <source {attr}='{xml_escape(fields['file'])}'/>\n"
        text += "    </disk>\n"
    else:
        text += "/>\n"
    return text


def cmd_snapshot_create_as(ctl: Control, opts: Opts) -> bool:
    flags = 0
    for option, value in CREATE_FLAGS[2:]:
        if opts.has(option):
            flags |= value
    dom, _ = ctl.domain(opts)
    name = ctl.string(opts, "name")
    desc = ctl.string(opts, "description")
    parts = ["<domainsnapshot>\n"]
    if name is not None:
        parts.append(f"  <name>{xml_escape(name)}</name>\n")
    if desc is not None:
        parts.append(f"  <description>{xml_escape(desc)}</description>\n")
    memspec = ctl.string(opts, "memspec")
    if memspec is not None:
        parts.append(_memspec(ctl, memspec))
    if opts.has("diskspec"):
        parts.append("  <disks>\n")
        for spec in opts.argv("diskspec"):
            parts.append(_diskspec(ctl, spec))
        parts.append("  </disks>\n")
    parts.append("</domainsnapshot>\n")
    xml = "".join(parts)
    if opts.has("print-xml"):
        ctl.out(xml + "\n")
        return True
    return _create(ctl, dom, xml, flags, None)


# -- snapshot-current ---------------------------------------------------------------------------------
def cmd_snapshot_current(ctl: Control, opts: Opts) -> bool:
    """Print or set the current snapshot.

    With --json (virtsnap) prints ``{"domain": str, "name": str | null}`` plus ``"xml": str`` when a
    current snapshot exists and --name is not given; no current snapshot is ``"name": null`` and
    success. Setting one (``snapshot-current D NAME --json``) prints ``{"domain": D, "name": NAME}``.
    """
    as_json = opts.has("json")
    xml_flags = SnapshotXML.SECURE if opts.has("security-info") else 0
    ctl.exclusive(opts, "name", "snapshotname")
    dom, domname = ctl.domain(opts)
    try:
        target = ctl.string(opts, "snapshotname")
        if target is not None:
            snap = dom.snapshotLookupByName(target, 0)
            xml = snap.getXMLDesc(SnapshotXML.SECURE)
            flags = SnapshotCreate.REDEFINE | SnapshotCreate.CURRENT
            if "<state>disk-snapshot</state>" in xml:
                flags |= SnapshotCreate.DISK_ONLY
            dom.snapshotCreateXML(xml, flags)
            if as_json:
                print_json(ctl, {"domain": dom.name(), "name": target})
            else:
                ctl.extra(f"Snapshot {target} set as current")
            return True
        current = dom.hasCurrentSnapshot(0)
        if not current:
            if as_json:
                print_json(ctl, {"domain": dom.name(), "name": None})
                return True
            ctl.error(f"domain '{domname}' has no current snapshot")
            return False
        snap = dom.snapshotCurrent(0)
        if as_json:
            result: dict[str, Any] = {"domain": dom.name(), "name": snap.getName()}
            if not opts.has("name"):
                result["xml"] = snap.getXMLDesc(xml_flags)
            print_json(ctl, result)
        elif opts.has("name"):
            ctl.out(ctl.value(snap.getName()))
        else:
            ctl.out(xml_text(snap.getXMLDesc(xml_flags)))
        return True
    except virtsnap.libvirtError as exc:
        ctl.save_error(exc)
        ctl.report_error()
        return False


# -- snapshot-info ------------------------------------------------------------------------------------
def cmd_snapshot_info(ctl: Control, opts: Opts) -> bool:
    """Basic information about a snapshot.

    With --json (virtsnap) prints one object: ``{"name": str, "domain": str, "current": bool,
    "state": str, "location": "internal" | "external", "parent": str | null, "children": int,
    "descendants": int, "metadata": bool | null}``; with --size also ``"size": {"memory": int, "disk": int,
    "memory_exact": bool, "disk_exact": bool}`` (bytes) and ``"protected": bool``.
    """
    as_json = opts.has("json")
    dom, _ = ctl.domain(opts)
    snap, name = lookup_snapshot(ctl, opts, "snapshotname", True, dom)
    info: dict[str, Any] = {"name": name, "domain": dom.name()}
    lines: list[str] = []

    def emit(label: str, value: object) -> None:
        line = f"{label:<15} {ctl.value(str(value))}\n"
        if as_json:
            lines.append(line)
        else:
            ctl.out(line)

    emit("Name:", name)
    emit("Domain:", dom.name())
    try:
        current = snap.isCurrent(0)
    except virtsnap.libvirtError:
        ctl.reset_error()
        current = 0
    info["current"] = current > 0
    emit("Current:", "yes" if current > 0 else "no")
    doc = snap.getXMLDesc(0)  # a failure is printed by the runner
    root = parse_xml(doc)
    if root is None:
        ctl.error("unexpected problem reading snapshot xml")
        return False
    state = xpath_string(root, "state")
    if state is None:
        ctl.error("unexpected problem reading snapshot xml")
        return False
    info["state"] = state
    emit("State:", state)
    location = "external" if is_external(root, state) else "internal"
    info["location"] = location
    emit("Location:", location)
    parent = xpath_string(root, "parent/name")
    info["parent"] = parent
    emit("Parent:", parent if parent is not None else "-")
    try:
        children = snap.numChildren(0)
    except virtsnap.libvirtError as exc:
        if exc.get_error_code() == ErrorCode.NO_SUPPORT:
            if as_json:
                print_json(ctl, info)
            return True
        raise
    info["children"] = children
    emit("Children:", children)
    descendants = snap.numChildren(SnapshotList.DESCENDANTS)
    info["descendants"] = descendants
    emit("Descendants:", descendants)
    try:
        metadata = snap.hasMetadata(0)
    except virtsnap.libvirtError:
        try:
            metadata = dom.snapshotNum(SnapshotList.METADATA)
        except virtsnap.libvirtError:
            metadata = -1
        ctl.reset_error()
    info["metadata"] = bool(metadata) if metadata >= 0 else None
    if metadata >= 0:
        emit("Metadata:", "yes" if metadata else "no")
    if opts.has("size"):
        size = snap.getSize(0)  # a failure is printed by the runner
        info["size"] = size
        emit("Memory size:", size_text(size["memory"], bool(size["memory_exact"])))
        emit("Disk size:", size_text(size["disk"], bool(size["disk_exact"])))
        protected = snap.isProtected(0)
        info["protected"] = bool(protected)
        emit("Protected:", "yes" if protected else "no")
    if as_json:
        print_json(ctl, info)
    return True


# -- snapshot-list ------------------------------------------------------------------------------------
def _name_key(entry: Summary) -> bytes:
    # strcasecmp in the C locale: bytes, ASCII letters folded to lower case
    return entry[0].encode("utf-8", "surrogateescape").lower()


def _fallback_filter(state: str | None, flags: int) -> bool:
    """virshSnapshotFilter: status/location filtering by the XML's state, for drivers that reject the flags."""
    if state is None:
        raise CommandError("unable to perform snapshot filtering")
    if state == "disk-snapshot":
        return bool(flags & SnapshotList.DISK_ONLY and flags & SnapshotList.EXTERNAL)
    if not flags & SnapshotList.INTERNAL:
        return False
    if state == "shutoff":
        return bool(flags & SnapshotList.INACTIVE)
    return bool(flags & SnapshotList.ACTIVE)


def _collect(ctl: Control, dom: virtsnap.virDomain, start: virtsnap.virDomainSnapshot | None,
             flags: int, tree: bool) -> list[Summary]:
    """virshSnapshotListCollect (the ListAll path), sorted by name unless --topological: each snapshot's name
    with the parent, state and creation time its XML shows, in one query (virsh reads the XML of every
    snapshot, and for --tree asks getParent of each). For --tree with --from/--current, the start snapshot
    is added as the root."""
    orig_flags = flags
    fallback = False

    def list_all(list_flags: int) -> list[Summary]:
        if start is not None:
            return start.listAllChildrenSummaries(list_flags)
        return dom.listAllSnapshotSummaries(list_flags)

    try:
        entries = list_all(flags)
    except virtsnap.libvirtError as exc:
        if exc.get_error_code() != ErrorCode.INVALID_ARG or not flags & (FILTERS_STATUS | FILTERS_LOCATION):
            raise
        flags &= ~(FILTERS_STATUS | FILTERS_LOCATION)
        fallback = True
        entries = list_all(flags)
    if tree and start is not None:
        entries.append((start.getName(), None, None, None))
    if fallback:
        orig_flags |= FILTERS_STATUS | FILTERS_LOCATION
        try:
            entries = [e for e in entries if _fallback_filter(e[2], orig_flags)]
        except CommandError as exc:
            if exc.args:
                ctl.error(str(exc.args[0]))
            raise CommandError() from exc
    if not orig_flags & SnapshotList.TOPOLOGICAL:
        entries.sort(key=_name_key)
    return entries


LIST_FILTER_OPTS = (
    ("leaves", SnapshotList.LEAVES),
    ("no-leaves", SnapshotList.NO_LEAVES),
    ("inactive", SnapshotList.INACTIVE),
    ("active", SnapshotList.ACTIVE),
    ("disk-only", SnapshotList.DISK_ONLY),
    ("internal", SnapshotList.INTERNAL),
    ("external", SnapshotList.EXTERNAL),
)


def cmd_snapshot_list(ctl: Control, opts: Opts) -> bool:
    """List a domain's snapshots: table, --name, --tree, or --json.

    With --json (virtsnap) prints an array in the same order and with the same filters as the table:
    ``[{"name": str, "parent": str | null, "current": bool, "state": str | null,
    "location": "internal" | "external" | null, "creation_time": int | null,
    "description": str | null}]`` (with --size also ``"size": {"memory", "disk", "memory_exact",
    "disk_exact"}``; state, location and creation time are null when the snapshot's
    XML lacks them; ``creation_time`` is Unix seconds). With --name and --json it is an array of names.
    --json cannot be combined with --tree.
    """
    tree, name_only, parent = opts.has("tree"), opts.has("name"), opts.has("parent")
    roots, current, from_ = opts.has("roots"), opts.has("current"), opts.has("from")
    as_json = opts.has("json")
    for first, second in (("tree", "name"), ("parent", "roots"), ("parent", "tree"), ("roots", "tree"),
                          ("roots", "from"), ("roots", "current"), ("tree", "json")):
        ctl.exclusive(opts, first, second)
    flags = 0
    for option, value in LIST_FILTER_OPTS:
        if opts.has(option):
            if tree:
                ctl.error(f"--{option} and --tree are mutually exclusive")
                return False
            flags |= value
    if opts.has("topological"):
        flags |= SnapshotList.TOPOLOGICAL
    if roots:
        flags |= SnapshotList.ROOTS
    if opts.has("metadata"):
        flags |= SnapshotList.METADATA
    if opts.has("no-metadata"):
        flags |= SnapshotList.NO_METADATA
    if opts.has("descendants"):
        if not from_ and not current:
            ctl.error("--descendants requires either --from or --current")
            return False
        flags |= SnapshotList.DESCENDANTS
    dom, _ = ctl.domain(opts)
    start = None
    if from_ or current:
        start, _ = lookup_snapshot(ctl, opts, "from", True, dom)
    entries = _collect(ctl, dom, start, flags, tree)
    if tree:
        names = [e[0] for e in entries]
        ctl.out_escaped(render_forest(names, [e[1] for e in entries], ctl.values(names)))
        return True
    if name_only:
        if as_json:
            print_json(ctl, [e[0] for e in entries])
        else:
            ctl.out("".join(ctl.value(e[0]) + "\n" for e in entries))
        return True
    with_size = opts.has("size")
    sizes = {e[0]: virtsnap.virDomainSnapshot(dom, e[0]).getSize(0) for e in entries} if with_size else {}
    if as_json:
        return _list_json(ctl, dom, [e[0] for e in entries], sizes)
    header = ("Name", "Creation Time", "State") + (("Parent",) if parent else ()) + (("Size",) if with_size else ())
    table = Table(*header)
    for name, parent_name, state, created in entries:
        # virsh prints a row only when the XML has a state and a creationTime that fits a long long
        if state is None or created is None or not -(2**63) <= created < 2**63:
            continue
        when = format_time(created)
        if when is None:
            continue
        row = [name, when, state] + ([parent_name or ""] if parent else [])
        if with_size:
            size = sizes[name]
            row.append(size_text(int(size["memory"]) + int(size["disk"]),
                                  bool(size["memory_exact"] and size["disk_exact"])))
        table.add(*row)
    ctl.out(table.render(header=not ctl.quiet, utf8=ctl.utf8_locale))
    if with_size:
        total = sum(int(s["memory"]) + int(s["disk"]) for s in sizes.values())
        exact = all(s["memory_exact"] and s["disk_exact"] for s in sizes.values())
        ctl.extra(f"Total: {size_text(total, exact)} in {len(sizes)} snapshots\n")
    return True


def size_text(size: int, exact: bool) -> str:
    """Bytes in binary units ('1.5 KiB'); an estimate is marked with '~'."""
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    text = f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
    return text if exact else "~" + text


def _list_json(ctl: Control, dom: virtsnap.virDomain, names: list[str],
               sizes: dict[str, dict[str, int | bool]]) -> bool:
    current_name = dom.snapshotCurrent(0).getName() if dom.hasCurrentSnapshot(0) else None
    result = []
    for name in names:
        root = parse_xml(virtsnap.virDomainSnapshot(dom, name).getXMLDesc(0))
        item: dict[str, Any] = {"name": name, "parent": None, "current": name == current_name,
                                "state": None, "location": None, "creation_time": None, "description": None}
        if root is not None:
            state = xpath_string(root, "state")
            item["parent"] = xpath_string(root, "parent/name")
            item["state"] = state
            if state is not None:
                item["location"] = "external" if is_external(root, state) else "internal"
            item["creation_time"] = parse_c_longlong(xpath_string(root, "creationTime") or "")
            item["description"] = xpath_string(root, "description")
        if name in sizes:
            item["size"] = sizes[name]
        result.append(item)
    print_json(ctl, result)
    return True


# -- snapshot-dumpxml / snapshot-parent ---------------------------------------------------------------
def dump_xml(ctl: Control, xml: str, xpath: str | None, wrap: bool) -> bool:
    """virshDumpXML: the document, or the nodes an --xpath selects (one per line, or wrapped)."""
    if xpath is None:
        ctl.out(xml_text(xml))
        return True
    from lxml import etree

    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)
    try:
        doc = etree.fromstring(xml.encode("utf-8", "surrogateescape"), parser)
    except etree.XMLSyntaxError as exc:
        ctl.save_error(virtsnap.libvirtError(str(exc), ErrorCode.XML_DETAIL))
        return False
    try:
        result = doc.xpath(xpath)
    except etree.XPathError as exc:
        # libxml2 reports a bad expression on stderr itself; libvirt then sees no nodes at all
        for entry in getattr(exc, "error_log", ()):
            ctl.stderr.write(terminal_text(f"XPath error : {entry.message}\n{xpath}\n{' ' * entry.column}^\n", "\n"))
        result = []
    if not isinstance(result, list):
        ctl.save_error(virtsnap.libvirtError(f"internal error: Incorrect xpath '{xpath}'", ErrorCode.INTERNAL_ERROR))
        return False

    def text(node: Any) -> str:
        if isinstance(node, etree._Element):
            return str(etree.tostring(node, encoding="unicode", pretty_print=True)).rstrip("\n")
        if getattr(node, "is_attribute", False):
            value = str(node).replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
            return f' {node.attrname}="{value}"'
        return str(node)

    if wrap:
        wrapper = etree.Element("nodes")
        for node in result:
            if isinstance(node, etree._Element):
                wrapper.append(etree.fromstring(etree.tostring(node), parser))
            elif getattr(node, "is_attribute", False):
                wrapper.set(node.attrname, str(node))
            elif len(wrapper):
                wrapper[-1].tail = (wrapper[-1].tail or "") + str(node)
            else:
                wrapper.text = (wrapper.text or "") + str(node)
        ctl.out(text(wrapper) + "\n")
    else:
        for node in result:
            ctl.out(text(node) + "\n")
    return True


def cmd_snapshot_dumpxml(ctl: Control, opts: Opts) -> bool:
    flags = SnapshotXML.SECURE if opts.has("security-info") else 0
    name = ctl.string(opts, "snapshotname")
    dom, _ = ctl.domain(opts)
    assert name is not None
    snap = dom.snapshotLookupByName(name, 0)
    xpath = ctl.string_quiet(opts, "xpath")
    xml = snap.getXMLDesc(flags)
    return dump_xml(ctl, xml, xpath, opts.has("wrap"))


def cmd_snapshot_parent(ctl: Control, opts: Opts) -> bool:
    dom, _ = ctl.domain(opts)
    snap, name = lookup_snapshot(ctl, opts, "snapshotname", True, dom)
    parent = snapshot_parent(ctl, snap)
    if parent is None:
        ctl.error(f"snapshot '{name}' has no parent")
        return False
    ctl.out(ctl.value(parent))
    return True


# -- snapshot-revert / snapshot-delete ----------------------------------------------------------------
def cmd_snapshot_revert(ctl: Control, opts: Opts) -> bool:
    flags = 0
    if opts.has("running"):
        flags |= SnapshotRevert.RUNNING
    if opts.has("paused"):
        flags |= SnapshotRevert.PAUSED
    if opts.has("reset-nvram"):
        flags |= SnapshotRevert.RESET_NVRAM
    force = opts.has("force")
    dom, _ = ctl.domain(opts)
    snap, name = lookup_snapshot(ctl, opts, "snapshotname", True, dom)
    try:
        dom.revertToSnapshot(snap, flags)
    except virtsnap.libvirtError as exc:
        if not (force and exc.get_error_code() == ErrorCode.SNAPSHOT_REVERT_RISKY):
            return ctl.fail(exc, f"Failed to revert snapshot {name}")
        try:
            dom.revertToSnapshot(snap, flags | SnapshotRevert.FORCE)
        except virtsnap.libvirtError as exc2:
            return ctl.fail(exc2, f"Failed to revert snapshot {name}")
    ctl.extra(f"Domain snapshot {name} reverted\n")
    return True


def cmd_snapshot_delete(ctl: Control, opts: Opts) -> bool:
    dom, _ = ctl.domain(opts)
    snap, name = lookup_snapshot(ctl, opts, "snapshotname", True, dom)
    flags = 0
    if opts.has("children"):
        flags |= SnapshotDelete.CHILDREN
    if opts.has("children-only"):
        flags |= SnapshotDelete.CHILDREN_ONLY
    if opts.has("metadata"):
        flags |= SnapshotDelete.METADATA_ONLY
    if opts.has("force"):
        flags |= SnapshotDelete.FORCE
    try:
        snap.delete(flags)
    except virtsnap.libvirtError as exc:
        return ctl.fail(exc, f"Failed to delete snapshot {name}")
    if flags & SnapshotDelete.CHILDREN_ONLY:
        ctl.extra(f"Domain snapshot {name} children deleted\n")
    else:
        ctl.extra(f"Domain snapshot {name} deleted\n")
    return True


# -- snapshot-edit ------------------------------------------------------------------------------------
ACCEPTED_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-/_.:@")


def shell_escape(text: str) -> str:
    """virBufferEscapeShell: quote for sh only when needed."""
    if not text:
        return "''"
    if not any(c in "\r\t\n !\"#$&'()*;<>?[\\]^`{|}~" for c in text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


def run_editor(ctl: Control, path: str) -> bool:
    """vshEditFile: $VISUAL, $EDITOR or vi on PATH; a shell runs editors with arguments or metacharacters."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    if not set(editor) <= ACCEPTED_CHARS:
        if not set(path) <= ACCEPTED_CHARS:
            ctl.error(f"{path}: temporary filename contains shell meta or other unacceptable characters "
                      "(is $TMPDIR wrong?)")
            return False
        args = ["sh", "-c", f"{editor} {path}"]
    else:
        args = [editor, path]
    import subprocess  # only snapshot-edit runs a child

    ctl.stdout.flush()
    try:
        proc = subprocess.run(args, check=False)
        status = proc.returncode
    except OSError as exc:
        sys.stderr.write(f"libvirt:  error : cannot execute binary {args[0]}: {os.strerror(exc.errno or 0)}\n")
        status = 127
    if status != 0:
        shown = " ".join(shell_escape(a) for a in args)
        how = f"exit status {status}" if status > 0 else f"fatal signal {-status}"
        ctl.save_error(virtsnap.libvirtError(f"internal error: Child process ({shown}) unexpected {how}",
                                             ErrorCode.INTERNAL_ERROR))
        ctl.report_error()
        return False
    return True


def _ask_reedit(ctl: Control, message: str) -> str:
    """vshAskReedit: on a terminal ask what to do after a failed redefinition; otherwise give up."""
    if not sys.stdin.isatty():
        return ""
    ctl.report_error()
    while True:
        ctl.stdout.write(f"\r{message} Try again? [y,n,f,?]: ")
        ctl.stdout.flush()
        answer = sys.stdin.readline()
        if not answer:
            return "n"
        choice = answer.strip().lower()[:1]
        if choice == "?":
            ctl.out("\ny - yes, start editor again\nn - no, throw away my changes\n"
                    "f - force, try to redefine again\n? - print this help\n")
        elif choice in ("y", "n", "f"):
            return choice


def cmd_snapshot_edit(ctl: Control, opts: Opts) -> bool:
    rename_ok, clone_ok = opts.has("rename"), opts.has("clone")
    ctl.exclusive(opts, "rename", "clone")
    define_flags = SnapshotCreate.REDEFINE
    if opts.has("current") and opts.has("snapshotname"):
        define_flags |= SnapshotCreate.CURRENT
    dom, _ = ctl.domain(opts)
    snap, name = lookup_snapshot(ctl, opts, "snapshotname", False, dom)
    # a rename keeps the snapshot's protection (snapshot-protect): the mark moves to the new name first,
    # then the old name goes with FORCE, which the protection would otherwise refuse
    protected = rename_ok and _is_protected(snap)
    try:
        edited = _edit(ctl, dom, snap, name, define_flags, rename_ok)
    except virtsnap.libvirtError as exc:
        ctl.save_error(exc)
        edited = False
    if edited is False:
        ctl.error(f"Failed to update {name}")
        return False
    if edited is True:
        return True
    edited_name = edited.getName()
    if edited_name == name:
        ctl.extra(f"Snapshot {name} edited.\n")
        return True
    if clone_ok:
        ctl.extra(f"Snapshot {name} cloned to {edited_name}.\n")
        return True
    if protected and not _is_protected(edited):
        try:
            edited.setProtected(True)
        except virtsnap.libvirtError as exc:
            ctl.save_error(exc)
            ctl.report_error()
            ctl.error(f"Failed to protect {edited_name}")
            ctl.error(f"Failed to update {name}")
            return False
    if rename_ok and not _exists(dom, name):
        return True  # the hypervisor renamed it in place: nothing left to clean up
    try:
        (snap if rename_ok else edited).delete(SnapshotDelete.METADATA_ONLY
                                               | (SnapshotDelete.FORCE if protected else 0))
    except virtsnap.libvirtError as exc:
        ctl.save_error(exc)
        ctl.report_error()
        ctl.error(f"Failed to clean up {name if rename_ok else edited_name}")
        ctl.error(f"Failed to update {name}")
        return False
    if not rename_ok:
        ctl.error(f"Must use --rename or --clone to change {name} to {edited_name}")
        ctl.error(f"Failed to update {name}")
        return False
    return True


def _temp_file(directory: str) -> tuple[int, str]:
    """vshEditWriteToTempFile's name: DIR/virshXXXXXX.xml, created 0600 (g_mkstemp_full)."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    for _ in range(100):
        suffix = "".join(letters[b % len(letters)] for b in os.urandom(6))
        path = os.path.join(directory, f"virsh{suffix}.xml")
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), path
        except FileExistsError:
            continue
    raise virtsnap.libvirtError("internal error: cannot create a temporary file", ErrorCode.INTERNAL_ERROR)


def _is_protected(snap: virtsnap.virDomainSnapshot) -> bool:
    """Whether snapshot-protect marked it; False where the driver keeps no marks."""
    try:
        return bool(snap.isProtected(0))
    except virtsnap.libvirtError:
        return False


def _exists(dom: virtsnap.virDomain, name: str) -> bool:
    try:
        dom.snapshotLookupByName(name)
        return True
    except virtsnap.libvirtError:
        return False


def _renamed_in_place(snap: virtsnap.virDomainSnapshot, edited_doc: str) -> bool:
    """Where the hypervisor owns the tree (ESX, VirtualBox) a rename cannot be a redefine plus a delete:
    rename in place first (virtsnap's virDomainSnapshot.rename); False where the driver has no rename."""
    import html  # only snapshot-edit needs it (html.entities is a large table)
    import re  # as `enum`, which it imports, ~15 M instructions of a cold start

    match = re.search(r"<name>([^<]*)</name>", edited_doc)
    new_name = html.unescape(match.group(1)) if match else None
    if not new_name or new_name == snap.getName():
        return False
    try:
        snap.rename(new_name)
    except virtsnap.libvirtError as exc:
        if exc.get_error_code() == ErrorCode.NO_SUPPORT:
            return False
        raise
    return True


def _edit(ctl: Control, dom: virtsnap.virDomain, snap: virtsnap.virDomainSnapshot, name: str,
          define_flags: int, rename_ok: bool = False) -> virtsnap.virDomainSnapshot | bool:
    """virsh-edit.c for a snapshot: the redefined snapshot, True if unchanged, False on failure."""
    import re

    doc = snap.getXMLDesc(SnapshotXML.SECURE)
    fd, path = _temp_file(os.environ.get("TMPDIR") or "/tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(doc)
        while True:  # reedit
            if not run_editor(ctl, path):
                return False
            try:
                with open(path, encoding="utf-8", errors="surrogateescape") as handle:
                    edited_doc = handle.read()
            except OSError as exc:
                ctl.error(f"{path}: failed to read temporary file: {os.strerror(exc.errno or 0)}")
                return False
            if edited_doc == doc and not define_flags & SnapshotCreate.CURRENT:
                ctl.extra(f"Snapshot {name} XML configuration not changed.\n")
                return True
            while True:  # redefine
                message = None
                reread = snap.getXMLDesc(SnapshotXML.SECURE)
                if reread != doc:
                    message = "The XML configuration was changed by another user."
                    doc = reread
                else:
                    flags = define_flags
                    if "<state>disk-snapshot</state>" in doc:
                        flags |= SnapshotCreate.DISK_ONLY
                    try:
                        if rename_ok and _renamed_in_place(snap, edited_doc):
                            snap = dom.snapshotLookupByName(re.search(r"<name>([^<]*)</name>", edited_doc)
                                                            .group(1))  # type: ignore[union-attr]
                        return dom.snapshotCreateXML(edited_doc, flags)
                    except virtsnap.libvirtError as exc:
                        ctl.save_error(exc)
                        message = "Failed."
                choice = _ask_reedit(ctl, message)
                if choice == "y":
                    break
                if choice == "f":
                    continue
                if choice == "n":
                    return False
                ctl.error(message)
                return False
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


# -- the table ----------------------------------------------------------------------------------------
SNAPSHOTNAME = string("snapshotname", "snapshot name")

# The create flags both snapshot-create commands take, in virsh's order.
CREATE_FLAG_OPTS = (
    flag("no-metadata", "take snapshot but create no metadata"),
    flag("halt", "halt domain after snapshot is created"),
    flag("disk-only", "capture disk state but not vm state"),
    flag("reuse-external", "reuse any existing external files"),
    flag("quiesce", "quiesce guest's file systems"),
    flag("atomic", "require atomic operation"),
    flag("live", "take a live snapshot"),
    flag("validate", "validate the XML against the schema"),
    # hidden, as snapshot-delete --force: the help stays virsh's; the pre-flight's refusal names it
    Opt("no-space-check", OptType.BOOL, "create even if the free-space pre-flight says it may not fit (virtsnap)",
        hidden=True),
)

COMMANDS = (
    Command("snapshot-create", cmd_snapshot_create, (
        DOMAIN_OPT,
        string("xmlfile", "domain snapshot XML"),
        flag("redefine", "redefine metadata for existing snapshot"),
        flag("current", "with redefine, set current snapshot"),
        *CREATE_FLAG_OPTS,
    ), "Create a snapshot from XML", "Create a snapshot (disk and RAM) from XML"),
    Command("snapshot-create-as", cmd_snapshot_create_as, (
        DOMAIN_OPT,
        string("name", "name of snapshot"),
        string("description", "description of snapshot"),
        flag("print-xml", "print XML document rather than create"),
        *CREATE_FLAG_OPTS,
        string("memspec", "memory attributes: [file=]name[,snapshot=type]", positional=False),
        argv("diskspec", "disk attributes: disk[,snapshot=type][,driver=type][,stype=type][,file=name]"),
    ), "Create a snapshot from a set of args", "Create a snapshot (disk and RAM) from arguments"),
    Command("snapshot-current", cmd_snapshot_current, (
        DOMAIN_OPT,
        flag("name", "list the name, rather than the full xml"),
        flag("security-info", "include security sensitive information in XML dump"),
        string("snapshotname", "name of existing snapshot to make current"),
        JSON_OPT,
    ), "Get or set the current snapshot", "Get or set the current snapshot"),
    Command("snapshot-delete", cmd_snapshot_delete, (
        DOMAIN_OPT,
        SNAPSHOTNAME,
        flag("current", "delete current snapshot"),
        flag("children", "delete snapshot and all children"),
        flag("children-only", "delete children but not snapshot"),
        flag("metadata", "delete only libvirt metadata, leaving snapshot contents behind"),
        # hidden: `help snapshot-delete` stays virsh's; docs/space.md and the protected error name it
        Opt("force", OptType.BOOL, "delete protected snapshots too (virtsnap)", hidden=True),
    ), "Delete a domain snapshot", "Snapshot Delete"),
    Command("snapshot-dumpxml", cmd_snapshot_dumpxml, (
        DOMAIN_OPT,
        data("snapshotname", "snapshot name"),
        flag("security-info", "include security sensitive information in XML dump"),
        string("xpath", "xpath expression to filter the XML document", positional=False),
        flag("wrap", "wrap xpath results in an common root element"),
    ), "Dump XML for a domain snapshot", "Snapshot Dump XML"),
    Command("snapshot-edit", cmd_snapshot_edit, (
        DOMAIN_OPT,
        SNAPSHOTNAME,
        flag("current", "also set edited snapshot as current"),
        flag("rename", "allow renaming an existing snapshot"),
        flag("clone", "allow cloning to new name"),
    ), "edit XML for a snapshot", "Edit the domain snapshot XML for a named snapshot"),
    Command("snapshot-info", cmd_snapshot_info, (
        DOMAIN_OPT,
        SNAPSHOTNAME,
        flag("current", "info on current snapshot"),
        flag("size", "add the snapshot's memory and disk size and its protection (virtsnap)"),
        JSON_OPT,
    ), "snapshot information", "Returns basic information about a snapshot."),
    Command("snapshot-list", cmd_snapshot_list, (
        DOMAIN_OPT,
        flag("parent", "add a column showing parent snapshot"),
        flag("roots", "list only snapshots without parents"),
        flag("leaves", "list only snapshots without children"),
        flag("no-leaves", "list only snapshots that are not leaves (with children)"),
        flag("metadata", "list only snapshots that have metadata that would prevent undefine"),
        flag("no-metadata", "list only snapshots that have no metadata managed by libvirt"),
        flag("inactive", "filter by snapshots taken while inactive"),
        flag("active", "filter by snapshots taken while active (full system snapshots)"),
        flag("disk-only", "filter by disk-only snapshots"),
        flag("internal", "filter by internal snapshots"),
        flag("external", "filter by external snapshots"),
        flag("tree", "list snapshots in a tree"),
        string("from", "limit list to children of given snapshot"),
        flag("current", "limit list to children of current snapshot"),
        flag("descendants", "with --from, list all descendants"),
        flag("name", "list snapshot names only"),
        flag("topological", "sort list topologically rather than by name"),
        flag("size", "add a size column (memory + disk) and a total (virtsnap)"),
        JSON_OPT,
    ), "List snapshots for a domain", "Snapshot List"),
    Command("snapshot-parent", cmd_snapshot_parent, (
        DOMAIN_OPT,
        string("snapshotname", "find parent of snapshot name"),
        flag("current", "find parent of current snapshot"),
    ), "Get the name of the parent of a snapshot", "Extract the snapshot's parent, if any"),
    Command("snapshot-revert", cmd_snapshot_revert, (
        DOMAIN_OPT,
        SNAPSHOTNAME,
        flag("current", "revert to current snapshot"),
        flag("running", "after reverting, change state to running"),
        flag("paused", "after reverting, change state to paused"),
        flag("force", "try harder on risky reverts"),
        flag("reset-nvram", "re-initialize NVRAM from its pristine template"),
    ), "Revert a domain to a snapshot", "Revert domain to snapshot"),
)
