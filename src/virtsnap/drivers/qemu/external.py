"""External snapshots: qcow2 overlays, backing chains, and which image files snapshots still need.

A snapshot's own data are the images its embedded <domain> points at (and their backing chains); the
overlay it creates holds what changed afterwards. A file is needed while the domain or any snapshot's
<domain> reaches it through a backing chain; only files no one reaches may be removed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from ...conf.domain_xml import DomainDef
from ...conf.snapshot_xml import without_extension
from ...conf.xmlutil import Node
from ...errors import ErrorCode, ErrorDomain, error
from ...records import Frozen
from ...store.db import system_error
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


_chains: dict[tuple[str, str], list[Layer]] = {}
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


def chain(path: str, format: str, timeout: float = 600.0) -> list[Layer]:
    """The backing chain of an image read as `format`, top first; remembered until forget_chains(), as one
    operation asks for the same chains many times. Each layer is read on its own with its format named (the
    top's from the definition, each backing's from the header above it): a format is never probed, and a
    backing file whose format no header records is refused, as libvirt refuses it."""
    key = (path, format)
    if key not in _chains:
        _chains[key] = _read_chain(path, format, timeout)
    return _chains[key]


def _read_chain(path: str, format: str, timeout: float) -> list[Layer]:
    layers: list[Layer] = []
    seen: set[str] = set()
    current: str | None = path
    fmt: str | None = format
    while current is not None:
        if current in seen:
            raise error(ErrorCode.OPERATION_FAILED, ERR, f"the backing chain of {path} loops at {current}")
        seen.add(current)
        if fmt not in ("qcow2", "raw"):
            raise error(ErrorCode.OPERATION_FAILED, ERR,
                        f"the format of {current}, backing file of {layers[-1].path if layers else path}, is "
                        f"{'not recorded in its header' if fmt is None else repr(fmt)}: refusing to probe it")
        item = images.info(current, fmt, force_share=True, timeout=timeout)  # never a FIFO (images.openable)
        backing = item.get("full-backing-filename") or item.get("backing-filename")
        layers.append(Layer(path=current, format=fmt, backing=backing,
                            internal=tuple(s["name"] for s in item.get("snapshots", []))))
        current, fmt = backing, item.get("backing-filename-format")
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
            needed.update(layer.path for layer in chain(path, _fmt))
    return needed


def create_overlay(overlay: str, backing: str, backing_format: str, reuse: bool, disk: str,
                   made: Callable[[int], object] = lambda fd: None) -> None:
    """A new qcow2 overlay on `backing`, with no window: the file is created with O_EXCL|O_NOFOLLOW,
    `made(fd)` records it (the ledger) before anything is written, and qemu-img writes through that same open
    file (/dev/fd/N), so a name swapped for a symlink meanwhile cannot redirect the write. An existing file,
    even empty, is refused. With `reuse` the user's existing file is used as is (and is not ours)."""
    import subprocess

    if reuse:
        if not os.path.exists(overlay):
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        f"external snapshot file for disk {disk} does not exist: {overlay} (REUSE_EXT)")
        return
    size = int(images.info(backing, backing_format, force_share=True)["virtual-size"])
    try:
        fd = os.open(overlay, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    f"external snapshot file for disk {disk} already exists: {overlay} (REUSE_EXT uses an "
                    "existing file)") from None
    except OSError as exc:  # a read-only or full directory, a missing one, a name too long: one line, not a trace
        raise system_error(f"cannot create external snapshot file {overlay} for disk {disk}", exc) from None
    try:
        made(fd)
        # -u: do not open the backing file (QEMU may hold its write lock); the size is given instead.
        proc = subprocess.run([images.qemu_img(), "create", "-q", "-f", "qcow2", "-F", backing_format, "-b", backing,
                               "-u", f"/dev/fd/{fd}", str(size)], pass_fds=(fd,), capture_output=True, text=True,
                              timeout=600, check=False, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise error(ErrorCode.OPERATION_FAILED, ERR, f"qemu-img create: {(proc.stderr or proc.stdout).strip()}")
        made_st, now = os.fstat(fd), os.lstat(overlay)
        if (now.st_dev, now.st_ino) != (made_st.st_dev, made_st.st_ino):  # renamed or replaced meanwhile
            raise error(ErrorCode.OPERATION_FAILED, ERR, f"external snapshot file {overlay} was replaced by another "
                        "file while it was being created; nothing was written to that file")
    except FileNotFoundError:
        raise error(ErrorCode.OPERATION_FAILED, ERR, f"external snapshot file {overlay} was removed while it was "
                    "being created") from None
    finally:
        os.close(fd)


def check_new_overlay(overlay: str, reuse: bool, disk: str) -> None:
    """Validation before anything changes: the overlay's directory exists; the file does not (even empty, a
    file that exists is someone's), unless REUSE_EXT, which needs it to exist."""
    parent = os.path.dirname(overlay) or "."
    if not os.path.isdir(parent):
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, f"directory {parent} for disk {disk}'s overlay does not exist")
    if not reuse and os.path.islink(overlay):  # O_EXCL refuses it too; say why before anything changes
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    f"external snapshot file for disk {disk} is a symbolic link: {overlay}")
    exists = os.path.exists(overlay)
    if reuse and not exists:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    f"external snapshot file for disk {disk} does not exist: {overlay} (REUSE_EXT)")
    if not reuse and exists:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    f"external snapshot file for disk {disk} already exists: {overlay} (REUSE_EXT uses an "
                    "existing file)")


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
