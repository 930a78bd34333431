"""What the web view shows and does, through the public API only: domain and tree listings, snapshot XML built
from form fields, what a revert or delete would lose, and the actions themselves. No HTTP here (app.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from lxml import etree

import virtsnap
from virtsnap.errors import ErrorCode, ErrorDomain, libvirtError
from virtsnap.flags import (
    DomainState,
    SnapshotCreate,
    SnapshotDelete,
    SnapshotList,
    SnapshotPrune,
    SnapshotRevert,
    SnapshotXML,
)

Json = dict[str, Any]

STATE_NAMES = {
    DomainState.NOSTATE: "no state", DomainState.RUNNING: "running", DomainState.BLOCKED: "blocked",
    DomainState.PAUSED: "paused", DomainState.SHUTDOWN: "shutting down", DomainState.SHUTOFF: "shut off",
    DomainState.CRASHED: "crashed", DomainState.PMSUSPENDED: "suspended",
}
# Snapshot <state> values that carry the guest's memory (libvirt's virDomainSnapshotState).
MEMORY_STATES = frozenset({"running", "paused", "blocked", "pmsuspended", "crashed", "shutdown"})
# The API's XML is trusted, but a parser that never resolves entities or reaches the network costs nothing.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def invalid(message: str) -> libvirtError:
    """A form value the page sent that no API call could take: libvirt's invalid-argument error."""
    return libvirtError(f"invalid argument: {message}", ErrorCode.INVALID_ARG, ErrorDomain.DOMAIN_SNAPSHOT)


def state_name(dom: virtsnap.virDomain) -> str:
    return STATE_NAMES.get(DomainState(dom.state()[0]), "unknown")


def list_domains(conn: virtsnap.virConnect) -> list[Json]:
    rows = []
    for dom in sorted(conn.listAllDomains(), key=lambda d: d.name()):
        rows.append({"name": dom.name(), "state": state_name(dom), "snapshots": dom.snapshotNum(),
                     "current": dom.snapshotCurrent().getName() if dom.hasCurrentSnapshot() else None})
    return rows


def fingerprint(conn: virtsnap.virConnect, domain: str | None) -> str:
    """A cheap digest of what the page shows that another process may change: the domains with their states,
    and the chosen domain's tree (names, parents, states, times) and current snapshot. One query per domain."""
    parts: list[object] = []
    for dom in sorted(conn.listAllDomains(), key=lambda d: d.name()):
        parts.append((dom.name(), dom.state()[0], dom.snapshotNum()))
        if dom.name() == domain:
            parts.append(sorted(dom.listAllSnapshotSummaries(), key=lambda s: s[0]))
            parts.append(dom.snapshotCurrent().getName() if dom.hasCurrentSnapshot() else None)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def _location(root: etree._Element) -> str:
    """internal, external, or mixed: where the snapshot's memory and disk data live ('-' when nowhere)."""
    places = set()
    memory = root.find("memory")
    if memory is not None and memory.get("snapshot") not in (None, "no"):
        places.add(memory.get("snapshot"))
    for disk in root.iterfind("disks/disk"):
        if disk.get("snapshot") not in (None, "no", "manual"):
            places.add(disk.get("snapshot"))
    if not places:
        return "-"
    return places.pop() if len(places) == 1 else "mixed"


def describe(snap: virtsnap.virDomainSnapshot, parent: str | None, state: str | None, created: int | None) -> Json:
    root = etree.fromstring(snap.getXMLDesc().encode(), _PARSER)
    description = root.findtext("description")
    return {
        "name": snap.getName(), "parent": parent, "state": state, "time": created,
        "memory": state in MEMORY_STATES, "location": _location(root), "description": description or "",
        "protected": bool(snap.isProtected()),
    }


def tree(conn: virtsnap.virConnect, domain: str) -> Json:
    """The domain's snapshots in topological order with what each row shows, the current one, and the state.
    Sizes come separately (sizes()): a driver may read image metadata for them, and the tree must not wait."""
    dom = conn.lookupByName(domain)
    summaries = dom.listAllSnapshotSummaries(int(SnapshotList.TOPOLOGICAL))
    snapshots = [describe(dom.snapshotLookupByName(name), parent, state, created)
                 for name, parent, state, created in summaries]
    current = dom.snapshotCurrent().getName() if dom.hasCurrentSnapshot() else None
    return {"domain": domain, "state": state_name(dom), "current": current, "snapshots": snapshots,
            "fingerprint": fingerprint(conn, domain)}


def sizes(conn: virtsnap.virConnect, domain: str) -> Json:
    """{name: getSize() or None} for every snapshot; {} where the driver has no sizes at all."""
    result: Json = {}
    for snap in conn.lookupByName(domain).listAllSnapshots():
        try:
            result[snap.getName()] = snap.getSize()
        except virtsnap.libvirtError as exc:
            if exc.get_error_code() == ErrorCode.NO_SUPPORT:
                return {}
            result[snap.getName()] = None  # e.g. deleted meanwhile by another process
    return result


def snapshot_xml(conn: virtsnap.virConnect, domain: str, name: str) -> str:
    return conn.lookupByName(domain).snapshotLookupByName(name).getXMLDesc()


def _text(form: Mapping[str, Any], key: str, limit: int = 4096) -> str:
    value = form.get(key, "")
    if not isinstance(value, str):
        raise invalid(f"'{key}' must be a string")
    if len(value) > limit:
        raise invalid(f"'{key}' is longer than {limit} characters")
    return value


def _flag(form: Mapping[str, Any], key: str) -> bool:
    value = form.get(key, False)
    if not isinstance(value, bool):
        raise invalid(f"'{key}' must be true or false")
    return value


def _choice(form: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = form.get(key, choices[0])
    if value not in choices:
        raise invalid(f"'{key}' must be one of {', '.join(choices)}")
    return str(value)


def _accept_only(form: Mapping[str, Any], keys: set[str]) -> None:
    """Refuse, naming every one, the fields this action does not apply (rather than ignoring them)."""
    unknown = sorted(set(form) - keys)
    if unknown:
        raise invalid(f"unsupported fields: {', '.join(unknown)}")


def create_document(name: str, description: str) -> str:
    """A <domainsnapshot> built here from form text, escaped by lxml; the API parses it like any caller's XML."""
    root = etree.Element("domainsnapshot")
    try:
        if name:
            etree.SubElement(root, "name").text = name
        if description:
            etree.SubElement(root, "description").text = description
    except ValueError as exc:  # control characters and the like: not representable in XML
        raise invalid(str(exc)) from exc
    return str(etree.tostring(root, encoding="unicode"))


def create(conn: virtsnap.virConnect, domain: str, form: Mapping[str, Any]) -> str:
    _accept_only(form, {"action", "domain", "name", "description", "kind", "quiesce", "live"})
    name, description = _text(form, "name", 256), _text(form, "description")
    kind = _choice(form, "kind", ("default", "disk-only"))
    flags = SnapshotCreate(0)
    if kind == "disk-only":
        flags |= SnapshotCreate.DISK_ONLY
    if _flag(form, "quiesce"):
        flags |= SnapshotCreate.QUIESCE
    if _flag(form, "live"):
        flags |= SnapshotCreate.LIVE
    snap = conn.lookupByName(domain).snapshotCreateXML(create_document(name, description), int(flags))
    return f"Domain snapshot {snap.getName()} created"


def _descendants(dom: virtsnap.virDomain, name: str) -> list[str]:
    return dom.snapshotLookupByName(name).listChildrenNames(int(SnapshotList.DESCENDANTS))


def revert_preview(conn: virtsnap.virConnect, domain: str, name: str) -> Json:
    """What a revert to `name` discards and where it leaves the domain, in words for the confirmation."""
    dom = conn.lookupByName(domain)
    snap = dom.snapshotLookupByName(name)
    state = etree.fromstring(snap.getXMLDesc().encode(), _PARSER).findtext("state") or ""
    now = state_name(dom)
    since = (f"since snapshot '{dom.snapshotCurrent().getName()}'" if dom.hasCurrentSnapshot()
             else "since the domain was defined")
    lost = ("The domain's memory and every disk change" if dom.isActive() else "Every disk change") + \
        f" made {since} that no snapshot holds will be lost."
    after = "running" if state == "running" else "paused" if state in MEMORY_STATES else "shut off"
    return {"lost": lost, "now": now, "after": f"After the revert the domain is {after} "
            f"(as in '{name}'), unless you choose otherwise below."}


def revert(conn: virtsnap.virConnect, domain: str, name: str, form: Mapping[str, Any]) -> str:
    _accept_only(form, {"action", "domain", "snapshot", "force", "start"})
    flags = SnapshotRevert(0)
    start = _choice(form, "start", ("as-snapshot", "running", "paused"))
    if start == "running":
        flags |= SnapshotRevert.RUNNING
    elif start == "paused":
        flags |= SnapshotRevert.PAUSED
    if _flag(form, "force"):
        flags |= SnapshotRevert.FORCE
    dom = conn.lookupByName(domain)
    dom.revertToSnapshot(dom.snapshotLookupByName(name), int(flags))
    return f"Domain '{domain}' reverted to snapshot {name}"


DELETE_MODES = {"this": SnapshotDelete(0), "children": SnapshotDelete.CHILDREN,
                "children-only": SnapshotDelete.CHILDREN_ONLY}


def delete_preview(conn: virtsnap.virConnect, domain: str, name: str) -> Json:
    dom = conn.lookupByName(domain)
    snap = dom.snapshotLookupByName(name)
    below, children = _descendants(dom, name), snap.numChildren()
    guarded = [n for n in [name, *below] if dom.snapshotLookupByName(n).isProtected()]
    return {"descendants": len(below), "child_count": children, "protected": guarded,
            "this": f"Deletes '{name}'; its {children} children move up to its parent." if children
            else f"Deletes '{name}'.",
            "children": f"Deletes '{name}' and all {len(below)} snapshots below it.",
            "children-only": f"Keeps '{name}' and deletes all {len(below)} snapshots below it."}


def delete(conn: virtsnap.virConnect, domain: str, name: str, form: Mapping[str, Any]) -> str:
    _accept_only(form, {"action", "domain", "snapshot", "mode", "force"})
    mode = _choice(form, "mode", tuple(DELETE_MODES))
    flags = DELETE_MODES[mode] | (SnapshotDelete.FORCE if _flag(form, "force") else 0)
    conn.lookupByName(domain).snapshotLookupByName(name).delete(int(flags))
    return {"this": f"Domain snapshot {name} deleted", "children": f"Domain snapshot {name} and its children deleted",
            "children-only": f"Domain snapshot {name} children deleted"}[mode]


def edit_description(conn: virtsnap.virConnect, domain: str, name: str, form: Mapping[str, Any]) -> str:
    """virsh snapshot-edit's way: the snapshot's own XML with a new <description>, redefined (CURRENT kept)."""
    _accept_only(form, {"action", "domain", "snapshot", "description"})
    text = _text(form, "description")
    dom = conn.lookupByName(domain)
    snap = dom.snapshotLookupByName(name)
    root = etree.fromstring(snap.getXMLDesc(int(SnapshotXML.SECURE)).encode(), _PARSER)
    element = root.find("description")
    if element is None:
        element = etree.Element("description")
        root.find("name").addnext(element)  # the API always writes <name> first
    try:
        element.text = text
    except ValueError as exc:
        raise invalid(str(exc)) from exc
    if not text:
        root.remove(element)
    flags = SnapshotCreate.REDEFINE | (SnapshotCreate.CURRENT if snap.isCurrent() else 0)
    dom.snapshotCreateXML(etree.tostring(root, encoding="unicode"), int(flags))
    return f"Snapshot {name} edited."


def protect(conn: virtsnap.virConnect, domain: str, name: str, form: Mapping[str, Any]) -> str:
    _accept_only(form, {"action", "domain", "snapshot", "protected"})
    on = _flag(form, "protected")
    conn.lookupByName(domain).snapshotLookupByName(name).setProtected(on)
    return f"Snapshot {name} {'protected' if on else 'no longer protected'}"


PRUNE_COUNTS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")


def _policy(form: Mapping[str, Any]) -> Json:
    """The policy the form asks for: counts given as non-negative integers, an optional glob; the API checks
    the rest (at least one rule, and so on)."""
    policy: Json = {}
    for key in PRUNE_COUNTS:
        value = form.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise invalid(f"'{key}' must be a non-negative integer")
        policy[key] = value
    match = _text(form, "match", 256)
    if match:
        policy["match"] = match
    return policy


def prune(conn: virtsnap.virConnect, domain: str, form: Mapping[str, Any]) -> tuple[str, Any]:
    """Preview (dry run) or prune. A prune carries the names its preview showed for removal and is refused,
    nothing removed, when the policy would now remove others: what the user confirmed is what happens."""
    _accept_only(form, {"action", "domain", "dry_run", "expect", *PRUNE_COUNTS, "match"})
    policy = _policy(form)
    dom = conn.lookupByName(domain)
    plan = dom.snapshotPrune(policy, int(SnapshotPrune.DRY_RUN))
    doomed = [d["name"] for d in plan if d["action"] == "remove"]
    if _flag(form, "dry_run"):
        return f"Prune preview: {len(doomed)} to remove, {len(plan) - len(doomed)} kept", plan
    expect = form.get("expect")
    if not isinstance(expect, list) or sorted(doomed) != sorted(str(n) for n in expect):
        raise libvirtError("operation invalid: the snapshots have changed since the preview; preview again",
                           ErrorCode.OPERATION_INVALID, ErrorDomain.DOMAIN_SNAPSHOT)
    result = dom.snapshotPrune(policy, 0)
    removed = [d["name"] for d in result if d["action"] == "remove"]
    return f"Pruned {len(removed)} snapshot{'' if len(removed) == 1 else 's'}", result
