"""qemu:///system confinement: the unprivileged user QEMU runs as, and the hand-over of its files to that user.

As libvirt's DAC driver: the images a domain uses are given to QEMU's user while it runs and given back after,
their original owner recorded (with a count of the domains that hold each file) in the driver's state directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from ...errors import ErrorCode, ErrorDomain, error
from ...records import Frozen
from .domain import SecLabel

ERR = ErrorDomain.QEMU
# Tried in order when VIRTSNAP_QEMU_USER is not set: Debian's libvirt user, then a dedicated one.
DEFAULT_USERS = ("libvirt-qemu:kvm", "virtsnap-qemu:virtsnap-qemu")


class Identity(Frozen):
    """A user QEMU runs as: uid, primary gid, supplementary groups."""

    _fields = ("name", "uid", "gid", "groups")
    __slots__ = _fields

    def __init__(self, name: str, uid: int, gid: int, groups: tuple[int, ...]) -> None:
        self.name = name
        self.uid = uid
        self.gid = gid
        self.groups = groups

    def can(self, st: os.stat_result, bit: int) -> bool:
        """Whether this user has permission `bit` (4 read, 2 write, 1 search) by the file's mode bits."""
        if st.st_uid == self.uid:
            return bool(st.st_mode & (bit << 6))
        if st.st_gid == self.gid or st.st_gid in self.groups:
            return bool(st.st_mode & (bit << 3))
        return bool(st.st_mode & bit)


def resolve(label: str) -> Identity:
    """'user:group' with names or +uid:+gid, as libvirt's DAC labels; never root."""
    import grp
    import pwd

    user, _, group = label.partition(":")
    try:
        pw = pwd.getpwuid(int(user[1:])) if user.startswith("+") else pwd.getpwnam(user)
        gid = int(group[1:]) if group.startswith("+") else grp.getgrnam(group).gr_gid if group else pw.pw_gid
    except (KeyError, ValueError):
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR, f"QEMU user {label!r} does not exist on this host") from None
    if pw.pw_uid == 0 or gid == 0:
        raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                    f"QEMU user {label!r} is root; qemu:///system runs QEMU unprivileged only")
    groups = tuple(sorted({g.gr_gid for g in grp.getgrall() if pw.pw_name in g.gr_mem} - {gid}))
    return Identity(pw.pw_name, pw.pw_uid, gid, groups)


def qemu_user(seclabel: SecLabel | None) -> Identity:
    """Who QEMU runs as under qemu:///system: the domain's DAC <seclabel> label, else VIRTSNAP_QEMU_USER,
    else the first of DEFAULT_USERS that exists."""
    if seclabel is not None and seclabel.user:
        return resolve(seclabel.user)
    configured = os.environ.get("VIRTSNAP_QEMU_USER")
    if configured:
        return resolve(configured)
    for candidate in DEFAULT_USERS:
        with contextlib.suppress(Exception):
            return resolve(candidate)
    raise error(ErrorCode.CONFIG_UNSUPPORTED, ERR,
                "qemu:///system runs QEMU as an unprivileged user and none exists: install libvirt-daemon-system "
                "(user libvirt-qemu), create one (useradd --system virtsnap-qemu), or set "
                "VIRTSNAP_QEMU_USER=user:group")


def check_reachable(ident: Identity, paths: Iterable[str]) -> None:
    """Every directory above each path must be searchable by QEMU's user, or QEMU cannot open it: said here,
    naming the directory, instead of by QEMU's 'Permission denied'."""
    for path in paths:
        for parent in reversed(Path(os.path.abspath(path)).parents):
            try:
                st = os.stat(parent)
            except OSError:
                break
            if not ident.can(st, 1):
                raise error(ErrorCode.OPERATION_FAILED, ERR,
                            f"QEMU's user {ident.name} cannot reach {path}: directory {parent} (mode "
                            f"{stat.S_IMODE(st.st_mode):04o}, owner {st.st_uid}:{st.st_gid}) is not searchable by it")


# -- the hand-over registry ----------------------------------------------------------------------------------
def _registry(state_dir: str) -> Path:
    return Path(state_dir, "dac-labels.json")


@contextlib.contextmanager
def _locked(state_dir: str) -> Iterator[dict[str, dict[str, object]]]:
    """The registry (file identity -> original owner and holders), read and written under one flock: domains
    sharing a base image or kernel hand it over once and back once, after the last of them stops."""
    import fcntl

    fd = os.open(os.path.join(state_dir, "dac-labels.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = _registry(state_dir)
        try:
            entries = json.loads(path.read_text())
        except FileNotFoundError:
            entries = {}
        yield entries
        tmp = path.with_name(f".dac-labels.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, sort_keys=True))
        os.chmod(tmp, 0o600)
        tmp.replace(path)
    finally:
        os.close(fd)


def hand_over(state_dir: str, uuid: str, ident: Identity, paths: Iterable[str]) -> None:
    """Give these files to QEMU's user for as long as the domain `uuid` runs (hand_back ends it). A file
    already handed over (another domain's shared base, or this domain's) only gains a holder."""
    with _locked(state_dir) as entries:
        for path in dict.fromkeys(os.path.realpath(p) for p in paths):
            fd = _open_file(path)
            if fd is None:
                continue  # missing, or not a regular file or block device: QEMU reports it itself
            try:
                st = os.fstat(fd)
                key = f"{st.st_dev}:{st.st_ino}"
                entry = entries.get(key)
                if entry is None:
                    entry = entries[key] = {"path": path, "uid": st.st_uid, "gid": st.st_gid,
                                            "mode": stat.S_IMODE(st.st_mode), "to": [ident.uid, ident.gid],
                                            "holders": []}
                    os.fchown(fd, ident.uid, ident.gid)
            finally:
                os.close(fd)
            holders = entry["holders"]
            assert isinstance(holders, list)
            if uuid not in holders:
                holders.append(uuid)


def hand_back(state_dir: str, uuid: str) -> None:
    """The domain stopped: every file it alone held goes back to its original owner and mode, provided it is
    still the same file (device, inode, never through a symlink put in its place) and still owned as handed
    over (an owner someone set meanwhile is kept)."""
    if not _registry(state_dir).exists():
        return
    with _locked(state_dir) as entries:
        for key, entry in list(entries.items()):
            holders = entry["holders"]
            assert isinstance(holders, list)
            if uuid not in holders:
                continue
            holders.remove(uuid)
            if holders:
                continue
            del entries[key]
            fd = _open_file(str(entry["path"]))
            if fd is None:
                continue
            try:
                st = os.fstat(fd)
                if f"{st.st_dev}:{st.st_ino}" == key and [st.st_uid, st.st_gid] == entry.get("to"):
                    os.fchown(fd, int(str(entry["uid"])), int(str(entry["gid"])))
                    os.fchmod(fd, int(str(entry["mode"])))
            finally:
                os.close(fd)


def _open_file(path: str) -> int | None:
    """A descriptor on the file itself (never a symlink's target), if it is a regular file or block device:
    ownership changes go through it, so no swap between a check and the change is possible."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode) or stat.S_ISBLK(mode):
        try:  # fchown/fchmod need a real descriptor, not O_PATH: reopen this very inode through /proc
            real = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError:
            real = None
        os.close(fd)
        return real
    os.close(fd)
    return None


def holds(state_dir: str, uuid: str) -> bool:
    """Whether files are handed over for this domain (cheap: no lock when nothing ever was)."""
    try:
        entries = json.loads(_registry(state_dir).read_text())
    except (OSError, ValueError):
        return False
    return any(uuid in entry.get("holders", []) for entry in entries.values())


# -- LIVE snapshots and userfaultfd -----------------------------------------------------------------------------
def userfaultfd_refusal(ident: Identity, qemu_version: tuple[int, ...]) -> str | None:
    """Why QEMU running as `ident` cannot use userfaultfd write-protection (LIVE's background-snapshot), or
    None when the host allows it: vm.unprivileged_userfaultfd=1, or a /dev/userfaultfd that user may open with a
    QEMU (8.1 and later) that uses it."""
    try:
        if Path("/proc/sys/vm/unprivileged_userfaultfd").read_text().strip() == "1":
            return None
    except OSError:
        pass
    with contextlib.suppress(OSError):
        st = os.stat("/dev/userfaultfd")
        if qemu_version >= (8, 1) and ident.can(st, 4) and ident.can(st, 2):
            return None
    return (f"LIVE snapshots need userfaultfd write-protection, which this host denies to QEMU's unprivileged "
            f"user {ident.name}: set the sysctl vm.unprivileged_userfaultfd=1"
            + (" (or let that user open /dev/userfaultfd)" if qemu_version >= (8, 1) else
               f" (QEMU {'.'.join(map(str, qemu_version))} does not use /dev/userfaultfd)")
            + ", or take the snapshot without --live")
