"""Durable snapshot metadata for drivers that own it (QEMU): one sqlite3 database per driver state dir.

The whole forest of a domain loads in one query; a change writes only the rows it touched, in one
transaction, and bumps the domain's generation so other processes know their cached tree is stale.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..conf.snapshot_xml import SnapshotState
from ..conf.tree import Moment, SnapshotTree
from ..errors import ErrorCode, ErrorDomain, error

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS domains (
    uuid TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    xml TEXT NOT NULL,
    current TEXT,
    generation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS snapshots (
    domain TEXT NOT NULL REFERENCES domains(uuid) ON DELETE CASCADE,
    name TEXT NOT NULL,
    parent TEXT,
    seq INTEGER NOT NULL,
    creation_time INTEGER NOT NULL,
    state INTEGER NOT NULL,
    external INTEGER NOT NULL,
    xml TEXT NOT NULL,
    PRIMARY KEY (domain, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(domain, parent);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    domain TEXT NOT NULL,
    op TEXT NOT NULL,
    intent TEXT NOT NULL,
    steps TEXT NOT NULL DEFAULT '[]',
    started REAL NOT NULL,
    pid INTEGER NOT NULL
);
"""


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) readable by the owner only; tighten an existing one."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def state_dir(driver: str, system: bool) -> Path:
    """$XDG_STATE_HOME/virtsnap/<driver> for a session URI, /var/lib/virtsnap/<driver> for system."""
    if system:
        return Path("/var/lib/virtsnap") / driver
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "virtsnap" / driver


@dataclass(frozen=True, slots=True)
class JournalEntry:
    id: int
    domain: str
    op: str
    intent: dict[str, Any]
    steps: list[str]
    started: float
    pid: int


class MetadataStore:
    """A driver's metadata database. Thread-safe for use from one process through separate stores."""

    def __init__(self, directory: Path) -> None:
        self.directory = private_dir(directory)
        self.path = self.directory / "metadata.db"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # create 0600 before sqlite opens it
        os.close(fd)
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.Error as exc:
            raise error(ErrorCode.OPERATION_FAILED, ErrorDomain.NONE,
                        f"cannot open metadata database {self.path}: {exc}") from exc
        for suffix in ("-wal", "-shm"):
            side = Path(str(self.path) + suffix)
            if side.exists():
                os.chmod(side, 0o600)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolled back if the body raises."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- domains ------------------------------------------------------------------------------------
    def put_domain(self, uuid: str, name: str, xml: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO domains(uuid, name, xml) VALUES (?, ?, ?) "
                       "ON CONFLICT(uuid) DO UPDATE SET name=excluded.name, xml=excluded.xml, "
                       "generation=generation+1", (uuid, name, xml))

    def domains(self) -> list[tuple[str, str, str]]:
        """(uuid, name, xml) of every defined domain, by name."""
        return list(self._db.execute("SELECT uuid, name, xml FROM domains ORDER BY name"))

    def domain(self, uuid: str) -> tuple[str, str] | None:
        row = self._db.execute("SELECT name, xml FROM domains WHERE uuid=?", (uuid,)).fetchone()
        return (row[0], row[1]) if row else None

    def delete_domain(self, uuid: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM domains WHERE uuid=?", (uuid,))

    def generation(self, uuid: str) -> int:
        row = self._db.execute("SELECT generation FROM domains WHERE uuid=?", (uuid,)).fetchone()
        return int(row[0]) if row else -1

    # -- snapshots ----------------------------------------------------------------------------------
    def load_tree(self, uuid: str) -> SnapshotTree:
        """The domain's forest in one query. Each moment's `defn` is its stored XML (parse on demand)."""
        tree = SnapshotTree(metadata=True)
        rows = self._db.execute(
            "SELECT name, parent, seq, creation_time, state, external, xml FROM snapshots "
            "WHERE domain=? ORDER BY seq", (uuid,)).fetchall()
        moments: dict[str, Moment] = {}
        for name, _parent, seq, ctime, state, external, xml in rows:
            moment = Moment(name, SnapshotState(state), bool(external), xml, creation_time=ctime, seq=seq)
            moments[name] = moment
            tree.add(moment)
        for name, parent, seq, *_ in rows:  # by seq: children are linked oldest first, as they were
            tree.link(moments[name], moments.get(parent) if parent else None, seq=seq)
        current = self._db.execute("SELECT current FROM domains WHERE uuid=?", (uuid,)).fetchone()
        if current and current[0] in moments:
            tree.current = moments[current[0]]
        tree.dirty.clear()
        tree.deleted.clear()
        tree.current_dirty = False
        return tree

    def save_tree(self, uuid: str, tree: SnapshotTree, xml_of: Any) -> None:
        """Persist what changed in `tree` since it was loaded. `xml_of(moment)` gives a moment's XML."""
        with self.transaction() as db:
            if tree.deleted:
                db.executemany("DELETE FROM snapshots WHERE domain=? AND name=?",
                               [(uuid, name) for name in tree.deleted])
            rows = []
            for name in tree.dirty:
                m = tree.get(name)
                if m is None:
                    continue
                rows.append((uuid, m.name, m.parent_name, m.seq, m.creation_time, int(m.state), int(m.external),
                             xml_of(m)))
            db.executemany(
                "INSERT INTO snapshots(domain, name, parent, seq, creation_time, state, external, xml) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(domain, name) DO UPDATE SET parent=excluded.parent, "
                "seq=excluded.seq, creation_time=excluded.creation_time, state=excluded.state, "
                "external=excluded.external, xml=excluded.xml", rows)
            current = tree.current.name if tree.current is not None else None
            db.execute("UPDATE domains SET current=?, generation=generation+1 WHERE uuid=?", (current, uuid))
        tree.dirty.clear()
        tree.deleted.clear()
        tree.current_dirty = False

    def snapshot_count(self, uuid: str) -> int:
        return int(self._db.execute("SELECT count(*) FROM snapshots WHERE domain=?", (uuid,)).fetchone()[0])

    # -- journal ------------------------------------------------------------------------------------
    def journal_begin(self, uuid: str, op: str, intent: dict[str, Any]) -> int:
        with self.transaction() as db:
            cur = db.execute("INSERT INTO journal(domain, op, intent, started, pid) VALUES (?, ?, ?, ?, ?)",
                             (uuid, op, json.dumps(intent), time.time(), os.getpid()))
            return int(cur.lastrowid or 0)

    def journal_step(self, entry: int, step: str) -> None:
        with self.transaction() as db:
            row = db.execute("SELECT steps FROM journal WHERE id=?", (entry,)).fetchone()
            steps = json.loads(row[0]) if row else []
            steps.append(step)
            db.execute("UPDATE journal SET steps=? WHERE id=?", (json.dumps(steps), entry))

    def journal_end(self, entry: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM journal WHERE id=?", (entry,))

    def journal_unfinished(self, uuid: str) -> list[JournalEntry]:
        rows = self._db.execute("SELECT id, domain, op, intent, steps, started, pid FROM journal WHERE domain=? "
                                "ORDER BY id", (uuid,)).fetchall()
        return [JournalEntry(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), r[5], r[6]) for r in rows]
