"""What virtsnap adds on libvirt+ connections beyond the libvirt underneath: which libvirt does what (by version),
the domain lock, the journal and the ledger of the files virtsnap makes, and recovery of a killed operation.

The operations themselves live in revert.py and delete.py; they talk to libvirtd through its public API only.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from ...conf.domain_xml import DomainDef
from ...errors import ErrorCode, ErrorDomain, error, libvirtError
from ...store import ledger
from ...store.db import MetadataStore, state_dir
from ...store.lock import DomainLock
from ..qemu import external

log = logging.getLogger("virtsnap.libvirt")
ERR = ErrorDomain.QEMU

# The first libvirt release that does the operation itself (libvirt's NEWS): 9.0.0 deletes external snapshots
# but only without CHILDREN/CHILDREN_ONLY (and, measured on 9.0, not when they have children, and it destroys
# internal snapshots kept in the overlays it merges); 9.7.0 reverts to external snapshots; 9.9.0 advertises
# <externalSnapshot/> in its capabilities: deleting and reverting external snapshots, memory included.
REVERT_FROM = 9_007_000
DELETE_FROM = 9_009_000

# libvirt-python values used here (the same numbers as virtsnap.flags; named for reading)
SNAPSHOT_XML_SECURE = 1
DOMAIN_XML_SECURE, DOMAIN_XML_INACTIVE = 1, 2
REDEFINE, CURRENT = 1, 2
DELETE_CHILDREN, DELETE_METADATA_ONLY, DELETE_CHILDREN_ONLY = 1, 2, 4
REVERT_RUNNING, REVERT_PAUSED, REVERT_FORCE = 1, 2, 4
SAVE_RUNNING, SAVE_PAUSED = 2, 4
START_PAUSED = 1
BLOCK_COMMIT_ACTIVE = 4
BLOCK_JOB_ABORT_PIVOT = 2

# libvirtd's XML is trusted (it wrote it) but is still read without entities or network access
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False)


def own_revert(version: int) -> bool:
    """Whether virtsnap reverts external snapshots itself on this libvirt (else libvirt's own revert runs)."""
    return version < REVERT_FROM


def own_delete(version: int, flags: int) -> bool:
    """Whether virtsnap deletes external snapshots itself: below 9.9, and at any version for CHILDREN and
    CHILDREN_ONLY, which libvirt refuses for external snapshots."""
    return version < DELETE_FROM or bool(flags & (DELETE_CHILDREN | DELETE_CHILDREN_ONLY))


def parse(text: str) -> Any:
    return etree.fromstring(text.encode(), PARSER)


def domain_of(element: Any) -> DomainDef:
    """A snapshot's <domain> or <inactiveDomain> element as a DomainDef (an opaque element tree)."""
    copy = etree.fromstring(etree.tostring(element), PARSER)
    copy.tag = "domain"
    return DomainDef.parse(etree.tostring(copy, encoding="unicode"), ERR, trusted=True)


def is_external(snapshot_xml: Any) -> bool:
    memory = snapshot_xml.find("memory")
    return ((memory is not None and memory.get("snapshot") == "external")
            or any(d.get("snapshot") == "external" for d in snapshot_xml.iterfind("disks/disk")))


def referenced_files(defs: list[DomainDef], extra: list[str]) -> set[str]:
    """Every file these definitions and paths reach through backing chains (formats from the definitions,
    an overlay named only by a snapshot's <disks> read as qcow2, which is what libvirt makes)."""
    external.forget_chains()
    needed = external.needed_files(defs)
    for path in extra:
        if path in needed or not os.path.isfile(path):
            needed.add(path)
            continue
        try:
            needed.update(layer.path for layer in external.chain(path, "qcow2"))
        except libvirtError:
            needed.add(path)  # unreadable: keep it and what it may reach
    return needed


def safe_component(name: str) -> str:
    """A snapshot name as one harmless file name component (the overlay's name is made from it)."""
    out = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".-")
    return out[:64] or "snapshot"


@dataclass
class Context:
    """One operation's view of a libvirt+ connection: libvirt-python, the connection, the error translator,
    and virtsnap's own state for this host (journal, ledger, lock), opened when first needed."""

    lv: Any
    conn: Any
    call: Callable[..., Any]
    directory: Path
    _store: MetadataStore | None = None

    @property
    def store(self) -> MetadataStore:
        if self._store is None:
            self._store = MetadataStore(self.directory)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def version(self) -> int:
        return int(self.call(self.conn.getLibVersion))

    def dom(self, uuid: str) -> Any:
        return self.call(self.conn.lookupByUUIDString, uuid)

    @contextlib.contextmanager
    def operation(self, uuid: str, name: str, timeout: float = 30.0) -> Iterator[None]:
        """The domain's lock (virtsnap's own operations exclude each other) with anything a killed operation
        left unfinished finished first."""
        with DomainLock(self.directory, uuid, timeout=timeout, what=name):
            self.recover(uuid)
            try:
                yield
            finally:
                external.forget_chains()

    def settle(self, uuid: str) -> None:
        """Before any call on the domain: finish what a killed operation left (one indexed probe when there
        is nothing). A recovery that fails stays in the journal and is tried again by the next call."""
        if not self.directory.joinpath("metadata.db").exists() or not self.store.journal_pending(uuid):
            return
        try:
            with self.operation(uuid, uuid, timeout=0):  # held: a live operation, not a killed one
                pass
        except libvirtError as exc:
            log.warning("could not finish an operation a killed process left: %s", exc.get_error_message())

    def recover(self, uuid: str) -> list[str]:
        """Roll forward every operation of the domain a killed process left in the journal; returns what was
        done. The caller holds the domain's lock."""
        if not self.store.journal_pending(uuid):
            return []
        from . import delete, revert

        handlers = {"libvirt-revert": revert.recover, "libvirt-delete": delete.recover}
        done = []
        for entry in self.store.journal_unfinished(uuid):
            handler = handlers.get(entry.op)
            if handler is None:
                continue
            outcome = handler(self, uuid, entry)
            log.warning("finished the %s pid %d left undone: %s", entry.op, entry.pid, outcome)
            done.append(f"{entry.op} of pid {entry.pid}: {outcome}")
        return done

    def ours(self, uuid: str) -> set[str]:
        """The files of this domain that virtsnap made and that are still those files."""
        return set(ledger.ours(self.store, uuid))

    def remove_ours(self, uuid: str, paths: set[str]) -> list[str]:
        """Unlink those of `paths` the ledger says virtsnap made for this domain; every other file stays."""
        return sorted(p for p in paths if ledger.remove_path(self.store, p, uuid))


def local_only(uri_text: str) -> None:
    """virtsnap's own operations read and write the image files: only where libvirtd runs on this host (the
    libvirt URI, after `libvirt+`, names no other host)."""
    _scheme, _, rest = uri_text.partition(":")
    host = rest[2:].split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0] if rest.startswith("//") else ""
    if host not in ("", "localhost"):
        raise error(ErrorCode.NO_SUPPORT, ERR, "reverting to and deleting external snapshots with a libvirt older "
                    "than the operation needs works only on the host where libvirtd runs (run virtsnap there)")


def is_system(uri_text: str) -> bool:
    """Whether the libvirt URI names a system daemon (`qemu:///system`, `qemu+unix:///system?socket=...`)."""
    return uri_text.split("?", 1)[0].rstrip("/").endswith("/system")


def state_directory(system: bool) -> Path:
    base = os.environ.get("VIRTSNAP_LIBVIRT_STATE_DIR")
    return Path(base or state_dir("libvirt", system))
