"""UEFI firmware of QEMU domains: <os firmware='efi'> resolved from QEMU's firmware descriptors with libvirt's
selection rules, explicit <loader type='pflash'>/<nvram>, and the per-domain NVRAM store (qcow2, ledgered).

The definition is filled at define time (loader, nvram and its template written into the stored XML), so a
snapshot's <domain> names the very files its guest ran with; the NVRAM image is a block node like a disk's.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Sequence

from ...conf.domain_xml import DomainDef
from ...conf.xmlutil import Node
from ...errors import ErrorCode, ErrorDomain, error
from ...records import Frozen

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:  # domain.py reads Firmware from here
    from ...store.db import LedgerRow, MetadataStore
    from .domain import Disk, QemuDomain

ERR = ErrorDomain.QEMU
# libvirt's order: a later directory's file of the same name replaces an earlier one; an empty file masks it
DESCRIPTOR_DIRS = ("/usr/share/qemu/firmware", "/etc/qemu/firmware")
# <firmware><feature name=...> libvirt 9.0 matches against a descriptor's features
FEATURES = ("enrolled-keys", "secure-boot")
# QEMU's unversioned machine names stand for the newest versioned one of their family
FAMILIES = {"q35": "pc-q35-", "pc": "pc-i440fx-"}
NVRAM_TARGET = "nvram"  # the NVRAM image's name among the domain's images (a disk target never this)
NVRAM_NODE = f"drive-{NVRAM_TARGET}"
CODE_NODE = "pflash-code"
PURPOSE = "nvram"  # the NVRAM's ledger rows: the domain's file as long as the domain exists


class Descriptor(Frozen):
    """One QEMU firmware descriptor of a split flash UEFI firmware (code read-only, variables per guest)."""

    _fields = ("path", "code", "code_format", "template", "template_format", "features", "targets")
    __slots__ = _fields

    def __init__(self, path: str, code: str, code_format: str, template: str, template_format: str,
                 features: frozenset[str], targets: Sequence[tuple[str, tuple[str, ...]]]) -> None:
        self.path = path
        self.code = code
        self.code_format = code_format
        self.template = template
        self.template_format = template_format
        self.features = features
        self.targets = targets  # (architecture, machine glob patterns)


def descriptors(dirs: Sequence[str] = DESCRIPTOR_DIRS) -> list[Descriptor]:
    """The usable UEFI flash descriptors in libvirt's order (by file name); others are skipped, as libvirt's
    selection skips them (BIOS, memory-mapped, stateless or unparsable ones)."""
    import json  # here: commands that only read metadata never load it

    by_name: dict[str, str] = {}
    for d in dirs:
        try:
            with os.scandir(d) as entries:
                for entry in entries:
                    if entry.name.endswith(".json"):
                        by_name[entry.name] = entry.path
        except OSError:
            continue
    found = []
    for name in sorted(by_name):
        try:
            with open(by_name[name], encoding="utf-8") as f:
                raw = json.loads(f.read() or "null")
            mapping = raw["mapping"]
            if ("uefi" not in raw["interface-types"] or mapping.get("device") != "flash"
                    or mapping.get("mode", "split") != "split"):
                continue
            code, template = mapping["executable"], mapping["nvram-template"]
            found.append(Descriptor(
                str(by_name[name]), str(code["filename"]), str(code.get("format", "raw")),
                str(template["filename"]), str(template.get("format", "raw")),
                frozenset(str(f) for f in raw.get("features", [])),
                tuple((str(t["architecture"]), tuple(str(m) for m in t.get("machines", [])))
                      for t in raw.get("targets", []))))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # masked (empty) or not a descriptor
    return found


def canonical_machine(machine: str, qemu_version: tuple[int, ...]) -> str:
    """pc-q35-7.2 for 'q35' on QEMU 7.2: descriptors list versioned machine patterns."""
    prefix = FAMILIES.get(machine)
    return f"{prefix}{qemu_version[0]}.{qemu_version[1]}" if prefix and len(qemu_version) >= 2 else machine


def _feature_wishes(os_node: Node) -> dict[str, bool]:
    fw = os_node.find("firmware")
    return {str(f.get("name")): f.get("enabled") == "yes" for f in (fw.findall("feature") if fw else [])}


def select(os_node: Node, smm: bool | None, arch: str, machine: str, found: Sequence[Descriptor]) -> Descriptor:
    """The first descriptor that fits the domain, by libvirt's rules: the architecture and a machine pattern
    match; a given loader or template path is the descriptor's; each <firmware><feature> asked for (or
    against) is there (or not); <loader secure='yes'> takes a firmware that requires SMM and 'no' one that
    does not; <smm state='off'> rules SMM firmware out."""
    loader = os_node.find("loader")
    nvram = os_node.find("nvram")
    code = (loader.text or "").strip() if loader is not None else ""
    template = (nvram.get("template") or "") if nvram is not None else ""
    secure = loader.get("secure") if loader is not None else None
    wishes = _feature_wishes(os_node)
    for d in found:
        if not any(a == arch and any(fnmatch.fnmatchcase(machine, m) for m in ms) for a, ms in d.targets):
            continue
        if (code and code != d.code) or (template and template != d.template):
            continue
        if any((name in d.features) != wanted for name, wanted in wishes.items()):
            continue
        requires_smm = "requires-smm" in d.features
        if (secure == "yes" and not requires_smm) or (secure == "no" and requires_smm) or \
                (smm is False and requires_smm):
            continue
        return d
    raise error(ErrorCode.OPERATION_FAILED, ERR, "Unable to find any firmware to satisfy 'efi'")


def fill(defn: DomainDef, state_dir: str, qemu_version: tuple[int, ...],
         dirs: Sequence[str] = DESCRIPTOR_DIRS) -> DomainDef:
    """A copy of `defn` with its UEFI firmware written out: for <os firmware='efi'> the descriptor's loader
    (readonly, pflash, secure as it requires SMM) and, for SMM firmware, <smm state='on'>; for any pflash
    loader an <nvram> path (the domain's own qcow2 store unless the user named one) and its template."""
    copy = defn.copy()
    os_node = copy.node.find("os")
    if os_node is None:
        return copy
    loader = os_node.find("loader")
    efi = os_node.get("firmware") == "efi"
    if not efi and loader is None:
        return copy
    type_node = os_node.find("type")
    arch = (type_node.get("arch") if type_node is not None else None) or "x86_64"
    machine = canonical_machine((type_node.get("machine") if type_node is not None else None) or "pc", qemu_version)
    features = copy.node.find("features")
    smm_node = features.find("smm") if features is not None else None
    smm = None if smm_node is None else smm_node.get("state", "on") == "on"
    nvram = os_node.find("nvram")
    chosen: Descriptor | None = None
    if efi:
        chosen = select(os_node, smm, arch, machine, descriptors(dirs))
        if loader is None:
            loader = Node("loader")
            os_node.children.insert(_after(os_node, ("type", "firmware")), loader)
        loader.text = chosen.code
        loader.attrs.update({"readonly": "yes", "type": "pflash",
                             "secure": "yes" if "requires-smm" in chosen.features else "no"})
        if "requires-smm" in chosen.features and smm is None:
            if features is None:
                features = Node("features")
                copy.node.children.insert(_after(copy.node, ("os",)), features)
            features.children.append(Node("smm", {"state": "on"}))
    if nvram is None:
        nvram = Node("nvram")
        os_node.children.insert(_after(os_node, ("type", "firmware", "loader")), nvram)
    if not nvram.get("template"):
        if chosen is None:  # an explicit loader: the template its descriptor names, if one does
            code = ((loader.text if loader is not None else None) or "").strip()
            match = [d for d in descriptors(dirs) if d.code == code]
            chosen = match[0] if match else None
        if chosen is not None:
            nvram.attrs["template"] = chosen.template
    if not (nvram.text or "").strip():
        nvram.text = own_nvram(state_dir, defn.uuid)
        nvram.attrs["format"] = "qcow2"
    return copy


def _after(parent: Node, tags: tuple[str, ...]) -> int:
    """The index just after the last child named in `tags` (libvirt's element order)."""
    index = 0
    for i, child in enumerate(parent.children):
        if child.tag in tags:
            index = i + 1
    return index


class Firmware(Frozen):
    """What QEMU is given: the read-only code, the NVRAM image (an image like a disk's) and its template,
    and whether the flash is SMM-secured."""

    _fields = ("code", "nvram", "nvram_format", "template", "secure", "smm")
    __slots__ = _fields

    def __init__(self, code: str, nvram: str | None, nvram_format: str, template: str | None, secure: bool,
                 smm: bool) -> None:
        self.code = code
        self.nvram = nvram
        self.nvram_format = nvram_format  # raw | qcow2
        self.template = template
        self.secure = secure  # -global cfi.pflash01.secure=on: the variables only SMM code may write
        self.smm = smm  # -machine smm=on

    @classmethod
    def from_node(cls, node: Node, machine: str, filled: bool = True) -> Firmware | None:
        """The firmware of a (filled) definition, or None for the default BIOS (and for an unfilled one)."""
        os_node = node.find("os")
        loader = os_node.find("loader") if os_node is not None else None
        if loader is None or os_node is None:
            if filled and os_node is not None and os_node.get("firmware") == "efi":
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                            "<os firmware='efi'> was not resolved to a <loader> (define the domain again)")
            return None
        code = (loader.text or "").strip()
        if not code:
            raise error(ErrorCode.XML_ERROR, ERR, "a pflash <loader> needs the firmware's path")
        if loader.get("readonly") != "yes":
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                        "only a read-only <loader readonly='yes' type='pflash'> with a separate <nvram> is supported")
        nvram = os_node.find("nvram")
        features = node.find("features")
        smm_node = features.find("smm") if features is not None else None
        smm = smm_node is not None and smm_node.get("state", "on") == "on"
        secure = loader.get("secure") == "yes"
        if secure and not smm:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, "Secure boot requires SMM feature enabled")
        if secure and "q35" not in machine:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, "Secure boot is supported with q35 machine types only")
        if smm and "q35" not in machine:
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, "SMM is supported with q35 machine types only")
        path = (nvram.text or "").strip() if nvram is not None else ""
        return cls(code, path or None, (nvram.get("format") if nvram is not None else None) or "raw",
                   (nvram.get("template") if nvram is not None else None) or None, secure, smm)


def ensure_nvram(fw: Firmware, made: Callable[[int], object]) -> bool:
    """Create the NVRAM image from its template when it does not exist yet: the file is created with O_EXCL,
    `made(fd)` records it (the ledger) before data goes in, and qemu-img converts the raw template into it
    through that open file. An existing file, the user's or ours, is used as it is. Whether it was made."""
    if fw.nvram is None:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, "the pflash <loader> has no <nvram> path")
    if os.path.lexists(fw.nvram):
        return False
    if not fw.template:
        raise error(ErrorCode.OPERATION_FAILED, ERR,
                    f"NVRAM {fw.nvram} does not exist and no <nvram template=...> names what to copy into it")
    os.makedirs(os.path.dirname(fw.nvram) or ".", mode=0o700, exist_ok=True)
    fd = os.open(fw.nvram, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        made(fd)
        _from_template(fw, fd, new=True)
    except OSError as exc:
        raise error(ErrorCode.OPERATION_FAILED, ERR, f"making NVRAM {fw.nvram}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    return True


def reset_nvram(store: MetadataStore, uuid: str, fw: Firmware | None) -> None:
    """`start --reset-nvram`: the NVRAM's content is the template's again. Only an NVRAM virtsnap made for this
    domain (its ledger row, still that file) is written, never a user's; a qcow2 NVRAM keeps its internal
    snapshots (qemu-img convert -n writes the active layer only), so every snapshot still brings its variables
    back. One that does not exist is made at the start anyway."""
    import stat

    if fw is None or fw.nvram is None:
        raise error(ErrorCode.OPERATION_INVALID, ERR, "the domain has no NVRAM to reset (it has no UEFI firmware)")
    if not os.path.lexists(fw.nvram):
        return
    if not fw.template:
        raise error(ErrorCode.OPERATION_INVALID, ERR, f"NVRAM {fw.nvram} has no <nvram template=...> to reset it from")
    row = _own_row(store, fw.nvram, uuid)
    if row is None:
        raise error(ErrorCode.OPERATION_INVALID, ERR,
                    f"NVRAM {fw.nvram} was not made by virtsnap and is never written over by it")
    try:
        fd = os.open(fw.nvram, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise error(ErrorCode.OPERATION_FAILED, ERR, f"resetting NVRAM {fw.nvram}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (row.device, row.inode):
            raise error(ErrorCode.OPERATION_INVALID, ERR,
                        f"NVRAM {fw.nvram} is no longer the file virtsnap made and is never written over by it")
        _from_template(fw, fd, new=False)
    except OSError as exc:
        raise error(ErrorCode.OPERATION_FAILED, ERR, f"resetting NVRAM {fw.nvram}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def _from_template(fw: Firmware, fd: int, new: bool) -> None:
    """The raw template's content written into the NVRAM open at `fd`: copied into a raw one; qemu-img converts
    it into a qcow2 one (created first when `new`). Both files go to qemu-img as open descriptors: no name of
    ours or the user's reaches its filename parser."""
    import shutil  # here: commands that only read metadata never load these
    import stat
    import subprocess

    src = os.open(str(fw.template), os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO never blocks us
    try:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode):
            raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, f"NVRAM template {fw.template} is not a regular file")
        if fw.nvram_format == "raw":
            os.lseek(fd, 0, os.SEEK_SET)
            with os.fdopen(os.dup(src), "rb") as fin, os.fdopen(os.dup(fd), "wb") as fout:
                shutil.copyfileobj(fin, fout)
            os.ftruncate(fd, st.st_size)
            return
        # The template is raw (descriptors say so; libvirt 9.0 knows no other)
        create = ["qemu-img", "create", "-q", "-f", "qcow2", f"/dev/fd/{fd}", str(st.st_size)]
        for cmd in ([create] if new else []) + [["qemu-img", "convert", "-n", "-f", "raw", "-O", "qcow2",
                                                  f"/dev/fd/{src}", f"/dev/fd/{fd}"]]:
            proc = subprocess.run(cmd, capture_output=True, text=True, pass_fds=(fd, src), timeout=60, check=False)
            if proc.returncode != 0:
                raise error(ErrorCode.OPERATION_FAILED, ERR,
                            f"making NVRAM {fw.nvram} from {fw.template}: {proc.stderr.strip()[:300]}")
    finally:
        os.close(src)


def _own_row(store: MetadataStore, path: str, uuid: str) -> LedgerRow | None:
    """The ledger's row of a file virtsnap made for this domain; None for anyone else's."""
    row = store.ledger_row(path)
    return row if row is not None and row.domain == uuid else None


def own_nvram(state_dir: str | os.PathLike[str], uuid: str) -> str:
    """The domain's own NVRAM image in virtsnap's state (as libvirt's /var/lib/libvirt/qemu/nvram/NAME_VARS.fd),
    in qcow2 so that internal snapshots hold the variables too."""
    return os.path.join(state_dir, "nvram", f"{uuid}_VARS.qcow2")


def named_paths(defn: DomainDef) -> list[tuple[str, str]]:
    """(what, path) of every firmware file the definition names: loader, NVRAM and its template."""
    os_node = defn.node.find("os")
    out: list[tuple[str, str]] = []
    for el in (os_node.find("loader"), os_node.find("nvram")) if os_node is not None else ():
        if el is not None:
            if (el.text or "").strip():
                out.append((f"<{el.tag}>", (el.text or "").strip()))
            if el.get("template"):
                out.append(("<nvram template>", str(el.get("template"))))
    return out


def state_image(qdom: QemuDomain) -> Disk | None:
    """The NVRAM image every snapshot of the domain includes (internal ones by the same tag as the disks,
    external ones by a tag taken in the transaction that switches the disks), or None without UEFI. A raw
    NVRAM cannot hold a snapshot: refused by name, as a raw disk is."""
    for disk in qdom.disks:
        if disk.device == "nvram":
            if disk.format != "qcow2":
                raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                            f"the NVRAM {disk.path} is {disk.format}: a snapshot can include it only in qcow2 "
                            "(leave out its path for virtsnap's own, or name a qcow2 one with <nvram format='qcow2'>)")
            return disk
    return None


def undefine_nvram(store: MetadataStore, uuid: str, qdom: QemuDomain, flags: int) -> str | None:
    """libvirt's rule for undefining a domain whose NVRAM exists: --nvram removes it, --keep-nvram keeps it,
    neither is refused. Only a file virtsnap made is ever removed: --nvram on a user's own file is refused
    too, before anything changes. The path to remove, or None."""
    from ...flags import DomainUndefine

    path = qdom.firmware.nvram if qdom.firmware is not None else None
    if path is None or not os.path.lexists(path):
        return None
    if flags & DomainUndefine.NVRAM:
        if _own_row(store, path, uuid) is None:
            raise error(ErrorCode.OPERATION_INVALID, ERR,
                        f"NVRAM {path} was not made by virtsnap and is never removed by it: undefine with --keep-nvram")
        return path
    if not flags & DomainUndefine.KEEP_NVRAM:
        raise error(ErrorCode.OPERATION_INVALID, ERR, "cannot undefine domain with nvram")
    return None
