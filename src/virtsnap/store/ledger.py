"""The ledger of files virtsnap made: recorded when made, with their (device, inode), and the only code that
removes a file. Shared by every driver that makes files (QEMU now, the libvirt+ driver later).

A file is removed only through its ledger row, and only while the name still leads to the very file that
was made: never by name pattern, never a path that came from a definition, a REDEFINE or a backing chain.
"""

from __future__ import annotations

import os
import stat

from .db import LedgerRow, MetadataStore


def record(store: MetadataStore, path: str, fd: int, domain: str, snapshot: str | None, purpose: str,
           format: str, backing: str | None = None, backing_format: str | None = None) -> LedgerRow:
    """Record the file open on `fd` (just created at `path` with O_EXCL) before anything is written to it."""
    st = os.fstat(fd)
    row = LedgerRow(path, st.st_dev, st.st_ino, domain, snapshot, purpose, format, backing, backing_format)
    store.ledger_add(row)
    return row


def _lookup(path: str) -> tuple[int, os.stat_result | None]:
    """(fd of the parent directory, lstat of the name inside it): the name is judged and removed relative to
    one open directory, so a parent swapped for a symlink in between does not redirect the removal."""
    parent, name = os.path.split(path)
    dir_fd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return dir_fd, os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return dir_fd, None
    except BaseException:
        os.close(dir_fd)
        raise


def matches(row: LedgerRow) -> bool:
    """Whether the row's path still names the regular file that was made (same device and inode)."""
    try:
        dir_fd, st = _lookup(row.path)
    except OSError:
        return False
    os.close(dir_fd)
    return st is not None and stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == (row.device, row.inode)


def remove(store: MetadataStore, row: LedgerRow) -> bool:
    """Unlink the row's file if its path still names the file virtsnap made, and drop the row either way
    (a path that now names another file is not ours any more). Whether a file was removed."""
    try:
        dir_fd, st = _lookup(row.path)
    except OSError:
        store.ledger_forget(row.path)
        return False
    try:
        ours = st is not None and stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == (row.device, row.inode)
        if ours:
            os.unlink(os.path.basename(row.path), dir_fd=dir_fd)
    except FileNotFoundError:
        ours = False
    finally:
        os.close(dir_fd)
    store.ledger_forget(row.path)
    return ours


def remove_path(store: MetadataStore, path: str, domain: str, snapshot: str | None = None) -> bool:
    """Remove the file at `path` if the ledger says this domain (and, when given, this snapshot) made it and
    it is still that file; anything else is left alone. Whether a file was removed."""
    row = store.ledger_row(path)
    if row is None or row.domain != domain or (snapshot is not None and row.snapshot != snapshot):
        return False
    return remove(store, row)


def ours(store: MetadataStore, domain: str) -> dict[str, LedgerRow]:
    """path -> row of the domain's files that are still the files virtsnap made."""
    return {row.path: row for row in store.ledger(domain) if matches(row)}


def resolved(roots: list[str]) -> list[tuple[str, str]]:
    """Each root with its real path (every symlink resolved), as inside() takes them."""
    return [(root, os.path.realpath(root)) for root in roots]


def inside(path: str | os.PathLike[str], roots: list[tuple[str, str]]) -> str | None:
    """The first of `roots` (resolved()) that `path` lies in (or is), whatever symlinks either goes through;
    else None."""
    real = os.path.realpath(path)
    for root, top in roots:
        if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
            return root
    return None
