"""The QEMU driver's snapshot definitions as its store keeps them, and the facts about a domain's disks that
every verb (create, revert, delete, check, recovery) reads the same way.

Pure helpers over parsed definitions, QEMU's block view and images: no state of their own.
"""

from __future__ import annotations

import functools
import os

from ...conf.tree import Moment, SnapshotTree
from ...errors import ErrorCode, ErrorDomain, error
from ...flags import DomainState

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from ...conf.domain_xml import DomainDef
    from ...conf.snapshot_xml import SnapshotDef
    from .domain import QemuDomain

ERR = ErrorDomain.QEMU

# query-status 'status' -> libvirt state and reason
STATUS = {
    "running": (DomainState.RUNNING, 1),
    "paused": (DomainState.PAUSED, 1),
    "suspended": (DomainState.PMSUSPENDED, 0),
    "prelaunch": (DomainState.PAUSED, 0),
    "restore-vm": (DomainState.PAUSED, 0),
    "save-vm": (DomainState.PAUSED, 9),
    "postmigrate": (DomainState.PAUSED, 0),
    "finish-migrate": (DomainState.PAUSED, 0),
    "inmigrate": (DomainState.PAUSED, 0),
    "debug": (DomainState.PAUSED, 0),
    "io-error": (DomainState.PAUSED, 5),  # VIR_DOMAIN_PAUSED_IOERROR
    "internal-error": (DomainState.PAUSED, 0),
    "watchdog": (DomainState.PAUSED, 6),  # VIR_DOMAIN_PAUSED_WATCHDOG
    "guest-panicked": (DomainState.CRASHED, 0),
    "shutdown": (DomainState.SHUTDOWN, 0),
}


@functools.lru_cache(maxsize=64)
def parse_domain(xml: str) -> DomainDef:
    """Parsed definitions by their text: every call reads the stored XML, few need a new parse."""
    from ...conf.domain_xml import DomainDef  # the XML model: not for the commands that read no definition

    return DomainDef.parse(xml, ERR, trusted=True)


def refuse_probing(dom: QemuDomain) -> None:
    """QEMU opens a qcow2 disk's backing files by the formats their headers record: a chain with a backing file
    whose format is not recorded would be probed, so it is refused before QEMU starts (as libvirt refuses it)."""
    from . import external

    for disk in dom.disks:
        if disk.path and disk.format == "qcow2" and disk.source_type == "file":
            external.chain(disk.path, "qcow2")


def snapshot_domains(tree: SnapshotTree) -> list[DomainDef]:
    """The <domain> of every snapshot that has one: with the domain's own, what reaches image files."""
    return [d for d in (def_of(m).domain for m in tree.moments()) if d is not None]



def regular_file(path: str) -> bool:
    return os.path.isfile(path)


def def_of(moment: Moment) -> SnapshotDef:
    """A moment's definition, parsed from its stored XML the first time it is needed."""
    if isinstance(moment.defn, str):
        moment.defn = parse_private(moment.defn)
    defn: SnapshotDef = moment.defn
    return defn


def parse_private(xml: str) -> SnapshotDef:
    from ...conf.snapshot_xml import ParseMode, parse_snapshot

    return parse_snapshot(xml, ParseMode.REDEFINE, trusted=True)


def stored(domain: DomainDef) -> str:
    """A definition as the store keeps it: everything, graphics passwords included (the store is 0600;
    callers without VIR_DOMAIN_XML_SECURE get them stripped when it is formatted for them)."""
    return domain.format(secure=True)


def xml_of(moment: Moment) -> str:
    if isinstance(moment.defn, str):
        return moment.defn
    from ...conf.snapshot_xml import format_snapshot

    return format_snapshot(def_of(moment), secure=True)


def attach(moment: Moment, defn: SnapshotDef) -> None:
    moment.defn, moment.state, moment.external = defn, defn.state, defn.is_external
    moment.creation_time = defn.creation_time


def internal_targets(defn: SnapshotDef, qdom: QemuDomain) -> list[str]:
    """Disks the snapshot stores internally; each must be a writable qcow2 image."""
    from ...conf.snapshot_xml import Location

    by_target = {d.target: d for d in qdom.disks}
    targets = []
    for disk in defn.disks:
        if disk.snapshot != Location.INTERNAL:
            continue
        dom_disk = by_target.get(disk.name)
        if dom_disk is None or dom_disk.readonly or not dom_disk.path:
            continue
        if dom_disk.format != "qcow2":
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        f"internal snapshot for disk {disk.name} unsupported for storage type {dom_disk.format}")
        targets.append(disk.name)
    from . import firmware

    nvram = firmware.state_image(qdom)
    if nvram is not None and targets:  # after the disks: snapshot-save puts the VM state in the first
        targets.append(nvram.target)
    return targets


def id_clash(qdom: QemuDomain, targets: list[str], tag: str) -> tuple[str, str] | None:
    """(image, other snapshot) where `tag` is the ID of another snapshot in one of these disks' images."""
    from . import images

    for disk in qdom.disks:
        if disk.target in targets and disk.path:
            other = images.id_clash(disk.path, tag)
            if other is not None:
                return disk.path, other
    return None
