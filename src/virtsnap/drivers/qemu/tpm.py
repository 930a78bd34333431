"""A domain's emulated TPM: its swtpm state directory (manufactured once with swtpm_setup, private to the
domain, recorded in the ledger) and the swtpm process that runs beside QEMU and ends with it.

QEMU and swtpm share one socketpair (swtpm's control channel, QEMU's chardev; QEMU hands swtpm the data channel
through it), so no socket file exists, and swtpm (--terminate) ends when QEMU's end closes, however QEMU ended.
The TPM's state travels in QEMU's vmstate (the tpm-emulator backend fetches swtpm's state blobs on save and
pushes them back on load), so every memory snapshot carries it and a revert brings it back.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from ...errors import ErrorCode, ErrorDomain, error
from ...store import ledger
from ...store.db import MetadataStore, private_dir
from .domain import Tpm

if TYPE_CHECKING:
    import subprocess  # imported where swtpm starts: listing commands never load it

    from .confine import Identity

ERR = ErrorDomain.QEMU
PURPOSE = "tpm-state"  # the ledger's purpose of a TPM state directory (a directory: never unlinked by the ledger)
STATE_FILE = "tpm2-00.permall"  # swtpm's TPM 2.0 permanent state, present once swtpm_setup manufactured it
DEFAULT_BANKS = ("sha256",)  # Debian's /etc/swtpm_setup.conf active_pcr_banks, as libvirt gets it from there
SETUP_TIMEOUT = 120.0


def binaries() -> tuple[str, str]:
    """swtpm and swtpm_setup from PATH (Debian's swtpm and swtpm-tools)."""
    import shutil

    found = shutil.which("swtpm"), shutil.which("swtpm_setup")
    if found[0] is None or found[1] is None:
        raise error(ErrorCode.OPERATION_FAILED, ERR,
                    "an emulated <tpm> needs swtpm and swtpm_setup (install Debian's swtpm and swtpm-tools)")
    return found[0], found[1]


def state_path(base: str | os.PathLike[str], uuid: str) -> str:
    """Where the domain's TPM state lives: inside the driver's own state directory, one directory per domain."""
    return os.path.join(base, "tpm", uuid)


def _ids(user: Identity | None) -> dict[str, object]:
    return {} if user is None else {"user": user.uid, "group": user.gid, "extra_groups": list(user.groups)}


def prepare(store: MetadataStore, base: str, uuid: str, tpm: Tpm, user: Identity | None) -> str:
    """The domain's TPM state directory, ready for swtpm: made owner-only (owned by QEMU's user under
    qemu:///system) and recorded in the ledger the first time, then manufactured by swtpm_setup as libvirt does
    (TPM 2.0, EK created, NVRAM locked); an existing TPM is kept, its PCR banks reconfigured when the
    definition names them. On failure no swtpm runs; a directory made here stays recorded (it holds no secret
    until swtpm_setup succeeds, and the next start manufactures it again). Undefine removes it (remove_state)
    unless asked to keep it."""
    import subprocess

    _swtpm, setup = binaries()
    private_dir(os.path.join(base, "tpm"))
    path = state_path(base, uuid)
    try:
        os.mkdir(path, 0o700)
        made = True
    except FileExistsError:
        made = False
    except OSError as exc:
        raise error(ErrorCode.OPERATION_FAILED, ERR, f"cannot create TPM state directory {path}: {exc.strerror}") \
            from exc
    owner = os.geteuid() if user is None else user.uid
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:  # a symbolic link or a file where the directory should be
        raise error(ErrorCode.OPERATION_FAILED, ERR, f"TPM state directory {path} is not a directory virtsnap "
                    f"made ({exc.strerror}); nothing was changed") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (owner, os.geteuid()):
            raise error(ErrorCode.OPERATION_FAILED, ERR,
                        f"TPM state directory {path} is not a directory virtsnap made; nothing was changed")
        if made or store.ledger_row(str(path)) is None:  # also a state kept by undefine --keep-tpm, reused
            ledger.record(store, str(path), fd, uuid, None, PURPOSE, "dir")
        if st.st_uid != owner:
            os.fchown(fd, owner, user.gid if user is not None else os.getegid())  # swtpm writes it as QEMU's user
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    banks = ",".join(tpm.pcr_banks or DEFAULT_BANKS)
    if not os.path.exists(os.path.join(path, STATE_FILE)):
        args = ["--tpm2", "--tpm-state", ".", "--createek", "--lock-nvram", "--not-overwrite", "--pcr-banks", banks]
    elif tpm.pcr_banks is not None:
        args = ["--tpm2", "--tpm-state", ".", "--reconfigure", "--pcr-banks", banks]
    else:
        return path
    # --config /dev/null: no certificate tool (swtpm_localca keeps a host-wide CA of its own); the state is
    # reached from the working directory, which is entered before the user changes (qemu:///system: the
    # driver's state directory stays root's only, the TPM's own directory is QEMU's user's).
    proc = subprocess.run([setup, *args, "--config", "/dev/null"], cwd=path, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=SETUP_TIMEOUT, check=False, umask=0o077,
                          **_ids(user))  # type: ignore[call-overload]
    if proc.returncode != 0:
        output = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise error(ErrorCode.OPERATION_FAILED, ERR,
                    f"swtpm_setup failed for the TPM state in {path}: {output[-1] if output else proc.returncode}")
    return path


def start(path: str, log: int, user: Identity | None) -> tuple[int, subprocess.Popen[bytes]]:
    """Start swtpm on the domain's state directory, detached like QEMU, its output to `log`; returns QEMU's
    end of the control channel (for -chardev socket,fd=) and the process. Closing that end (QEMU never took
    it, or QEMU ended) ends swtpm."""
    import socket
    import subprocess

    swtpm, _setup = binaries()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        args = [swtpm, "socket", "--tpm2", "--ctrl", f"type=unixio,clientfd={theirs.fileno()}",
                "--tpmstate", "dir=.,mode=0600", "--terminate"]
        proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
            args, cwd=path, stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=[theirs.fileno()],
            start_new_session=True, umask=0o077, **_ids(user))
        qemu_end = os.dup(ours.fileno())  # non-inheritable; launch passes it to QEMU by number
    finally:
        ours.close()
        theirs.close()  # swtpm holds its copy
    return qemu_end, proc


def remove_state(store: MetadataStore, base: str, uuid: str) -> bool:
    """Remove the domain's TPM state directory (libvirt's undefine without --keep-tpm): only while the ledger
    records it for this domain and the path still leads to that very directory, and only the regular files
    swtpm keeps there; anything else inside keeps the directory (and the row) where they are. Whether the
    state is gone."""
    path = state_path(base, uuid)
    row = store.ledger_row(str(path))
    if row is None or row.domain != uuid or row.purpose != PURPOSE:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        store.ledger_forget(str(path))  # gone, or replaced by something that is not ours
        return False
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (row.device, row.inode):
            store.ledger_forget(str(path))
            return False
        kept = False
        for name in os.listdir(fd):
            try:
                if stat.S_ISREG(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                    os.unlink(name, dir_fd=fd)
                else:
                    kept = True
            except FileNotFoundError:
                continue
    except OSError:  # a file system that refuses: what is left stays, released with the domain's other files
        return False
    finally:
        os.close(fd)
    if kept:
        return False
    try:
        os.rmdir(path)
    except OSError:
        return False
    store.ledger_forget(str(path))
    return True
