"""A read-only reader of qcow2 metadata: header, snapshot table, L1/L2 and refcount tables.

It answers one question: how many bytes would deleting an internal snapshot free (the clusters whose only
reference is that snapshot's). The image is guest-influenced data: every offset is checked against the
file's size before it is read, table sizes are bounded by the file, and anything unexpected is a
Qcow2Error (the caller then reports an estimate), never a read elsewhere.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import Self

from ...records import Frozen

MAGIC = b"QFI\xfb"
_OFFSET_MASK = 0x00FFFFFFFFFFFE00  # bits 9-55: host offsets in L1/L2 entries
_COMPRESSED = 1 << 62
_INCOMPAT_DIRTY, _INCOMPAT_CORRUPT, _INCOMPAT_DATA_FILE, _INCOMPAT_EXTL2 = 1, 2, 4, 16
_MAX_TABLE = 64 << 20  # no qcow2 table this reader accepts is larger (QEMU's own L1 limit is 32 MiB)


class Qcow2Error(Exception):
    """The image is not qcow2 as this reader understands it (or not safely readable)."""


class InternalSnapshot(Frozen):
    _fields = ("id", "name", "l1_offset", "l1_size", "vm_state_size", "disk_size")
    __slots__ = _fields

    def __init__(self, id: str, name: str, l1_offset: int, l1_size: int, vm_state_size: int,
                 disk_size: int) -> None:
        self.id, self.name, self.l1_offset, self.l1_size = id, name, l1_offset, l1_size
        self.vm_state_size, self.disk_size = vm_state_size, disk_size


class Exclusive(Frozen):
    """Bytes referenced only by one snapshot: guest data (below the disk size), its saved VM state (above
    it), and metadata (its L1 table and L2 tables no one else uses). `exact` is False when refcounts may lag
    (the image is marked dirty: QEMU had it open and did not close it cleanly)."""

    _fields = ("data", "vmstate", "metadata", "exact")
    __slots__ = _fields

    def __init__(self, data: int, vmstate: int, metadata: int, exact: bool) -> None:
        self.data, self.vmstate, self.metadata, self.exact = data, vmstate, metadata, exact


class Image:
    """An open qcow2 file. Use as a context manager; it only ever reads."""

    def __init__(self, path: str) -> None:
        # O_NOFOLLOW is not wanted (images are often symlinks); O_NONBLOCK: a FIFO must not hang us
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(self._fd)
            import stat

            if not stat.S_ISREG(st.st_mode):
                raise Qcow2Error(f"{path} is not a regular file")
            self.file_size = st.st_size
            self._header()
        except BaseException:
            os.close(self._fd)
            raise
        self._refblocks: dict[int, bytes] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)

    def _read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or length > _MAX_TABLE or offset + length > self.file_size:
            raise Qcow2Error(f"metadata at {offset}+{length} lies outside the file ({self.file_size} bytes)")
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise Qcow2Error("short read (the file shrank while being read)")
        return data

    def _header(self) -> None:
        head = self._read(0, 72)
        if head[:4] != MAGIC:
            raise Qcow2Error("not a qcow2 image (bad magic)")
        (self.version, _bf_off, _bf_size, self.cluster_bits, self.size, crypt, self.l1_size, self.l1_offset,
         self.refcount_table_offset, self.refcount_table_clusters, self.nb_snapshots,
         self.snapshots_offset) = struct.unpack(">IQIIQIIQQIIQ", head[4:72])
        if self.version not in (2, 3):
            raise Qcow2Error(f"qcow2 version {self.version} is not supported")
        if not 9 <= self.cluster_bits <= 21:
            raise Qcow2Error(f"cluster_bits {self.cluster_bits} out of range")
        if crypt:
            raise Qcow2Error("encrypted images are not read")
        self.cluster_size = 1 << self.cluster_bits
        self.incompatible, self.refcount_order = 0, 4
        if self.version == 3:
            incompat, _compat, _autoclear, self.refcount_order = struct.unpack(">QQQI", self._read(72, 28))
            self.incompatible = incompat
            if incompat & (_INCOMPAT_CORRUPT | _INCOMPAT_DATA_FILE) or incompat & ~0x1F:
                raise Qcow2Error(f"incompatible features 0x{incompat:x} (corrupt, external data file or unknown)")
            if self.refcount_order not in (3, 4, 5, 6):
                raise Qcow2Error(f"refcount order {self.refcount_order} is not supported by this reader")
        self.l2_entry_size = 16 if self.incompatible & _INCOMPAT_EXTL2 else 8
        self.l2_entries = self.cluster_size // self.l2_entry_size
        if self.nb_snapshots > 65536:
            raise Qcow2Error("too many snapshots")
        table = self._read(self.refcount_table_offset, self.refcount_table_clusters * self.cluster_size)
        self._reftable = struct.unpack(f">{len(table) // 8}Q", table)

    @property
    def dirty(self) -> bool:
        return bool(self.incompatible & _INCOMPAT_DIRTY)

    def snapshots(self) -> list[InternalSnapshot]:
        out = []
        offset = self.snapshots_offset
        for _ in range(self.nb_snapshots):
            fixed = self._read(offset, 40)
            l1_offset, l1_size, id_len, name_len, _ds, _dns, _clock, vm_state, extra_len = struct.unpack(
                ">QIHHIIQII", fixed)
            extra = self._read(offset + 40, extra_len)
            disk_size = self.size
            if extra_len >= 8:
                vm_state = struct.unpack(">Q", extra[:8])[0]
            if extra_len >= 16:
                disk_size = struct.unpack(">Q", extra[8:16])[0]
            strings = self._read(offset + 40 + extra_len, id_len + name_len)
            ident = strings[:id_len].decode("utf-8", "replace")
            name = strings[id_len:].decode("utf-8", "replace")
            out.append(InternalSnapshot(ident, name, l1_offset, l1_size, vm_state, disk_size))
            offset += 40 + extra_len + id_len + name_len
            offset = (offset + 7) & ~7
        return out

    def refcount(self, host_offset: int) -> int:
        cluster = host_offset >> self.cluster_bits
        bits = 1 << self.refcount_order
        per_block = self.cluster_size * 8 // bits
        index, entry = divmod(cluster, per_block)
        if index >= len(self._reftable):
            return 0
        block_offset = self._reftable[index] & ~0x1FF
        if not block_offset:
            return 0
        block = self._refblocks.get(block_offset)
        if block is None:
            block = self._refblocks[block_offset] = self._read(block_offset, self.cluster_size)
        width = bits // 8
        return int.from_bytes(block[entry * width:(entry + 1) * width], "big")

    def _mapping(self, l1_offset: int, l1_size: int) -> Iterator[tuple[int, int, int, bool]]:
        """(guest offset, host offset, host length, compressed) of every allocated cluster; L2 tables are
        reported with guest offset -1."""
        if l1_size * 8 > min(_MAX_TABLE, self.file_size):
            raise Qcow2Error(f"L1 table of {l1_size} entries is larger than the file")
        l1 = struct.unpack(f">{l1_size}Q", self._read(l1_offset, l1_size * 8)) if l1_size else ()
        step = self.l2_entry_size
        for i, l1_entry in enumerate(l1):
            l2_offset = l1_entry & _OFFSET_MASK
            if not l2_offset:
                continue
            yield -1, l2_offset, self.cluster_size, False
            table = self._read(l2_offset, self.cluster_size)
            for j in range(self.l2_entries):
                (entry,) = struct.unpack_from(">Q", table, j * step)
                guest = (i * self.l2_entries + j) << self.cluster_bits
                if entry & _COMPRESSED:
                    shift = 62 - (self.cluster_bits - 8)
                    host = entry & ((1 << shift) - 1)
                    sectors = ((entry & ((1 << 62) - 1)) >> shift) + 1
                    yield guest, host, sectors * 512, True
                elif entry & _OFFSET_MASK:
                    yield guest, entry & _OFFSET_MASK, self.cluster_size, False

    def exclusive(self, snap: InternalSnapshot) -> Exclusive:
        """What deleting `snap` would free, from the image's own refcounts: a host cluster is freed when all of
        its references are the snapshot's (the active image or another snapshot would have raised its
        refcount). Compressed clusters may share a host cluster, hence the count per host cluster."""
        # The work is bounded by what the snapshot can map: its disk and its VM state, no more L1 entries
        per_l2 = self.l2_entries << self.cluster_bits
        if snap.l1_size > -(-(snap.disk_size + snap.vm_state_size) // per_l2) + 1:
            raise Qcow2Error(f"L1 table of {snap.l1_size} entries maps more than the snapshot's disk and VM state")
        metadata = -(-snap.l1_size * 8 // self.cluster_size) * self.cluster_size  # its own L1 table
        uses: dict[int, int] = {}  # host cluster -> references from this snapshot
        kind: dict[int, str] = {}  # host cluster -> "metadata" | "vmstate" | "data"
        for guest, host, length, _compressed in self._mapping(snap.l1_offset, snap.l1_size):
            what = "metadata" if guest < 0 else "vmstate" if guest >= snap.disk_size else "data"
            first, last = host >> self.cluster_bits, (host + length - 1) >> self.cluster_bits
            for cluster in range(first, last + 1):
                uses[cluster] = uses.get(cluster, 0) + 1
                kind.setdefault(cluster, what)
        totals = {"metadata": metadata, "vmstate": 0, "data": 0}
        for cluster, count in uses.items():
            if self.refcount(cluster << self.cluster_bits) == count:
                totals[kind[cluster]] += self.cluster_size
        return Exclusive(totals["data"], totals["vmstate"], totals["metadata"], exact=not self.dirty)


def exclusive_bytes(path: str, name: str) -> tuple[Exclusive, InternalSnapshot]:
    """Open `path` (a qcow2 image) and measure the internal snapshot named `name`; Qcow2Error when the image
    cannot be read safely or holds no single snapshot of that name."""
    try:
        with Image(path) as image:
            found = [s for s in image.snapshots() if s.name == name]
            if len(found) != 1:
                raise Qcow2Error(f"{path} holds {len(found)} snapshots named '{name}'")
            return image.exclusive(found[0]), found[0]
    except OSError as exc:
        raise Qcow2Error(f"{path}: {exc.strerror}") from exc
