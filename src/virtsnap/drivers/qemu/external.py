"""External snapshots: qcow2 overlays, backing chains, and which image files snapshots still need.

A snapshot's own data are the images its embedded <domain> points at (and their backing chains); the
overlay it creates holds what changed afterwards. A file is needed while the domain or any snapshot's
<domain> reaches it through a backing chain; only files no one reaches may be removed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from ...conf.domain_xml import DomainDef
from ...conf.snapshot_xml import without_extension
from ...conf.xmlutil import Node
from ...errors import ErrorCode, ErrorDomain, error
from ...records import Frozen
from . import images

ERR = ErrorDomain.QEMU


class Layer(Frozen):
    _fields = ("path", "format", "backing", "internal")
    __slots__ = _fields

    def __init__(self, path: str, format: str, backing: str | None, internal: tuple[str, ...]) -> None:
        self.path = path
        self.format = format
        self.backing = backing
        self.internal = internal  # internal snapshot tags stored in this file


_chains: dict[str, list[Layer]] = {}
_memo: dict[object, object] = {}


def forget_chains() -> None:
    """Drop remembered chains: call at the start of an operation and after anything rewrites an image.
    What operation_memo() holds goes too."""
    _chains.clear()
    _memo.clear()


def operation_memo() -> dict[object, object]:
    """Facts one operation computes once and uses several times (e.g. the plan of a delete that removes
    several snapshots); emptied with the chains, so never seen by the next operation."""
    return _memo


def chain(path: str) -> list[Layer]:
    """The backing chain of an image, top first (qemu-img info --backing-chain, safe while in use);
    remembered until forget_chains(), as one operation asks for the same chains many times."""
    if path in _chains:
        return _chains[path]
    _chains[path] = layers = _read_chain(path)
    return layers


def _read_chain(path: str) -> list[Layer]:
    import json

    out = images.run(["info", "--backing-chain", "-U", "--output=json", path])
    layers = []
    for item in json.loads(out):
        layers.append(Layer(path=item["filename"], format=item.get("format", "raw"),
                            backing=item.get("full-backing-filename") or item.get("backing-filename"),
                            internal=tuple(s["name"] for s in item.get("snapshots", []))))
    return layers


def disk_sources(domain: DomainDef) -> dict[str, tuple[str, str]]:
    """target -> (path, format) for the domain's disks that have a source file."""
    out: dict[str, tuple[str, str]] = {}
    for disk in domain.disks():
        if disk.source and disk.device == "disk":
            out[disk.target] = (disk.source, disk.driver_type or "raw")
    return out


def needed_files(domains: Iterable[DomainDef]) -> set[str]:
    """Every file reachable from these domain definitions through backing chains."""
    needed: set[str] = set()
    for dom in domains:
        for path, _fmt in disk_sources(dom).values():
            if path in needed or not os.path.exists(path):
                needed.add(path)
                continue
            needed.update(layer.path for layer in chain(path))
    return needed


def create_overlay(overlay: str, backing: str, backing_format: str, reuse: bool, disk: str) -> None:
    """A new qcow2 overlay on `backing`, created exclusively (an existing non-empty file is refused)."""
    if reuse:
        if not os.path.exists(overlay):
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        f"external snapshot file for disk {disk} does not exist: {overlay} (REUSE_EXT)")
        return
    size = int(images.info(backing, force_share=True)["virtual-size"])
    try:
        fd = os.open(overlay, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    f"external snapshot file for disk {disk} already exists and is not a block device: {overlay}"
                    ) from None
    os.close(fd)
    try:
        # -u: do not open the backing file (QEMU may hold its write lock); the size is given instead.
        images.run(["create", "-q", "-f", "qcow2", "-F", backing_format, "-b", backing, "-u", overlay, str(size)])
    except BaseException:
        os.unlink(overlay)
        raise


def check_new_overlay(overlay: str, reuse: bool, disk: str) -> None:
    """Validation before anything changes: the overlay's directory exists, the file does not (or REUSE)."""
    parent = Path(overlay).parent
    if not parent.is_dir():
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, f"directory {parent} for disk {disk}'s overlay does not exist")
    if not reuse and os.path.islink(overlay):  # O_EXCL refuses it too; say why before anything changes
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    f"external snapshot file for disk {disk} is a symbolic link: {overlay}")
    exists = os.path.exists(overlay)
    if reuse and not exists:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    f"external snapshot file for disk {disk} does not exist: {overlay} (REUSE_EXT)")
    if not reuse and exists and os.path.getsize(overlay) > 0:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    f"external snapshot file for disk {disk} already exists and is not a block device: {overlay}")


def with_sources(domain: DomainDef, sources: dict[str, str]) -> DomainDef:
    """A copy of `domain` whose listed disks now use these qcow2 files."""
    copy = domain.copy()
    devices = copy.node.find("devices")
    for disk in devices.findall("disk") if devices is not None else []:
        target = disk.find("target")
        dev = target.get("dev") if target is not None else None
        if dev not in sources:
            continue
        disk.attrs["type"] = "file"
        source = disk.find("source")
        if source is None:
            source = Node("source")
            disk.children.insert(0, source)
        source.attrs = {"file": sources[dev]}
        driver = disk.find("driver")
        if driver is None:
            driver = Node("driver", {"name": "qemu"})
            disk.children.insert(0, driver)
        driver.attrs["type"] = "qcow2"
        for stale in disk.findall("backingStore"):
            disk.children.remove(stale)
    return copy


def revert_overlay_name(base: str, snapshot: str) -> str:
    """A fresh overlay name next to the snapshot's image: BASE-without-ext.SNAPSHOT-revertN."""
    stem = without_extension(base)
    n = 1
    while os.path.exists(f"{stem}.{snapshot}-revert{n}"):
        n += 1
    return f"{stem}.{snapshot}-revert{n}"


def is_revert_overlay(path: str) -> bool:
    """Whether `path` is an overlay a revert made (named by revert_overlay_name)."""
    return re.search(r"-revert[0-9]+$", path) is not None
