"""Durable snapshot metadata for drivers that own it (QEMU): one sqlite3 database per driver state dir.

The forest of a domain loads in one query over a covering index (names, parents, order, state: no XML);
each snapshot's XML is read when a caller first needs it. A change writes only the rows it touched, in one
transaction, bumps the domain's generation and stamps the rows with it, and leaves a tombstone for each
deleted row, so another process (or another store) brings its loaded tree up to date by reading the rows
newer than its own generation instead of reloading every snapshot. A domain defined again after an undefine
starts above every generation its uuid ever had, so a cached tree is never mistaken for a current one.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import time
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress

from ..collector import collector_paused
from ..conf.tree import Moment, SnapshotTree, Summary, row_summaries
from ..errors import ErrorCode, ErrorDomain, error, libvirtError
from ..records import Frozen

try:
    # The sqlite3 package is this C module plus datetime adapters and converters, which virtsnap never uses
    # (it stores times as integers): importing datetime for them cost a cold read-only command 3.5 ms.
    # The connection, cursor and exception classes are the very same objects.
    import _sqlite3 as sqlite3
except ImportError:  # an interpreter whose sqlite3 is built otherwise
    import sqlite3  # type: ignore[no-redef]

TYPE_CHECKING = False  # typing costs ~3 ms of a cold start: what this module takes from it is the checker's
if TYPE_CHECKING:
    from typing import Any, ParamSpec, TypeVar
    P = ParamSpec("P")
    R = TypeVar("R")
    C = TypeVar("C", bound=type)


SCHEMA_VERSION = 7  # also PRAGMA user_version: checked on open without parsing the schema
_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS domains (
    uuid TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    xml TEXT NOT NULL,
    current TEXT,
    generation INTEGER NOT NULL DEFAULT 0,
    floor INTEGER NOT NULL DEFAULT 0
)""",
    """CREATE TABLE IF NOT EXISTS snapshots (
    domain TEXT NOT NULL REFERENCES domains(uuid) ON DELETE CASCADE,
    name TEXT NOT NULL,
    parent TEXT,
    seq INTEGER NOT NULL,
    creation_time INTEGER NOT NULL,
    state INTEGER NOT NULL,
    external INTEGER NOT NULL,
    xml TEXT NOT NULL,
    gen INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (domain, name)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    domain TEXT NOT NULL,
    op TEXT NOT NULL,
    intent TEXT NOT NULL,
    steps TEXT NOT NULL DEFAULT '[]',
    started REAL NOT NULL,
    pid INTEGER NOT NULL
)""",
)
_V2 = (
    # the tree without the XML, in link order, from the index alone
    "CREATE INDEX IF NOT EXISTS snapshots_order ON snapshots(domain, seq, parent, creation_time, state, external)",
    "CREATE INDEX IF NOT EXISTS snapshots_gen ON snapshots(domain, gen)",
    """CREATE TABLE IF NOT EXISTS tombstones (
    domain TEXT NOT NULL REFERENCES domains(uuid) ON DELETE CASCADE,
    gen INTEGER NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (domain, gen, name)
) WITHOUT ROWID""",
    "DROP INDEX IF EXISTS snapshots_parent",  # schema 1's; nothing looks snapshots up by parent
)
_V3 = (
    # snapshots whose data snapshot-check --repair found gone: kept on record, marked, never reverted to
    """CREATE TABLE IF NOT EXISTS lost (
    domain TEXT NOT NULL REFERENCES domains(uuid) ON DELETE CASCADE,
    name TEXT NOT NULL,
    reason TEXT NOT NULL,
    since REAL NOT NULL,
    PRIMARY KEY (domain, name)
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS journal_domain ON journal(domain)",
)
_V4 = (
    # The ledger: every file virtsnap made, with the identity it had when made (see store/ledger.py). A store
    # upgraded from schema 3 starts with an empty ledger: files made before are not virtsnap's to remove.
    """CREATE TABLE IF NOT EXISTS ledger (
    path TEXT PRIMARY KEY,
    device INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    domain TEXT NOT NULL,
    snapshot TEXT,
    purpose TEXT NOT NULL,
    format TEXT NOT NULL,
    backing TEXT,
    backing_format TEXT,
    created REAL NOT NULL
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS ledger_domain ON ledger(domain)",
)
_V5 = (
    # snapshots marked protected (snapshot-protect): never pruned, deleted only with --force
    """CREATE TABLE IF NOT EXISTS protected (
    domain TEXT NOT NULL REFERENCES domains(uuid) ON DELETE CASCADE,
    name TEXT NOT NULL,
    since REAL NOT NULL,
    PRIMARY KEY (domain, name)
) WITHOUT ROWID""",
)
_V6 = (
    # a snapshot's children without reading the tree (snapshot-info's Children and Descendants)
    "CREATE INDEX IF NOT EXISTS snapshots_children ON snapshots(domain, parent)",
)
_V7 = (
    # snapshot-protect marks on snapshots another program keeps (libvirt+: libvirtd owns them, so no domains row
    # here): the domain's UUID, the snapshot's name and its creationTime when marked (a snapshot deleted and made
    # again under that name outside virtsnap is another snapshot, which the mark does not cover)
    """CREATE TABLE IF NOT EXISTS marks (
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    since REAL NOT NULL,
    PRIMARY KEY (domain, name)
) WITHOUT ROWID""",
)
# A reader more than this many generations behind reloads the whole tree (older tombstones are dropped).
TOMBSTONE_GENERATIONS = 4096
_TREE_COLUMNS = "name, parent, seq, creation_time, state, external"


def private_dir(path: str | os.PathLike[str]) -> str:
    """Create `path` (and parents) readable by the owner only; tighten an existing one. A failure (a file in
    the way, a read-only or full file system) is libvirt's one-line VIR_ERR_SYSTEM_ERROR. Paths here are
    strings: pathlib (with urllib.parse and ipaddress) would cost a cold read-only command about 6 ms."""
    path = os.fspath(path)
    try:  # the usual case, a directory already closed to others: one stat
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode) and not mode & 0o077:
            return path
    except OSError:
        pass
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        mode = os.stat(path).st_mode
        if not stat.S_ISDIR(mode):  # mkdir(exist_ok) accepts nothing else, but a race may put a file there
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        if mode & 0o077:
            os.chmod(path, 0o700)
    except OSError as exc:
        if exc.errno == errno.EEXIST:  # a file where the directory should be, or where one of its parents is
            exc = OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        raise system_error(f"cannot create directory '{path}'", exc) from exc
    return path


def verified_dir(path: str | os.PathLike[str], create: bool = True) -> str:
    """Create `path` (missing components 0700) and verify every component from the root down, as lstat sees
    it: a directory, not a symlink, owned by root or by us; one that others may write must be root's and
    sticky (like /tmp), and everything below it then ours and closed to others. Refused otherwise (a
    /tmp/virtsnap-UID planted by another user, a symlink swapped in): OPERATION_FAILED naming the component.
    With create=False (a read-only connection) nothing is made: the components that exist are verified."""
    import stat

    path = os.fspath(path)
    uid = os.geteuid()
    current = "/"
    below_shared = False
    for part in os.path.realpath(path).split("/")[1:]:
        current = os.path.join(current, part)
        try:
            if not create and not os.path.lexists(current):
                return path
            os.mkdir(current, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise error(ErrorCode.OPERATION_FAILED, ErrorDomain.NONE, f"cannot create directory {current}: "
                        f"{exc.strerror}") from exc
        st = os.lstat(current)
        problem = None
        if not stat.S_ISDIR(st.st_mode):
            problem = "is not a directory (or is a symbolic link)"
        elif st.st_uid not in (0, uid) or (below_shared and st.st_uid != uid):
            problem = f"belongs to uid {st.st_uid}"
        elif st.st_mode & 0o022 and below_shared:
            problem = "is writable by others"
        elif st.st_mode & 0o022:
            if st.st_uid != 0 or not st.st_mode & stat.S_ISVTX:
                problem = "is writable by others and not a root-owned sticky directory"
            below_shared = True
        if problem:
            raise error(ErrorCode.OPERATION_FAILED, ErrorDomain.NONE, f"unsafe runtime directory: {current} {problem}")
    if st.st_uid == uid and st.st_mode & 0o077:
        os.chmod(current, 0o700)
    return path


def system_error(message: str, exc: OSError) -> libvirtError:
    """virReportSystemError: `MESSAGE: strerror(errno)`, one line (VIR_ERR_SYSTEM_ERROR)."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return error(ErrorCode.SYSTEM_ERROR, ErrorDomain.NONE, f"{message}: {reason}")


# sqlite's primary result codes (the low byte of sqlite_errorcode) that name the cause of a store failure
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_FULL, _SQLITE_READONLY = 5, 6, 13, 8
_SQLITE_SYSTEM = frozenset({3, 10, 14, 15, 22})  # PERM, IOERR, CANTOPEN, PROTOCOL, NOLFS
_SQLITE_DAMAGED = frozenset({11, 26})  # CORRUPT, NOTADB


def store_error(path: str, exc: sqlite3.Error) -> libvirtError:
    """A failed sqlite call as libvirt's kind of error: one line naming the database and sqlite's reason."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return error(ErrorCode.RESOURCE_BUSY, ErrorDomain.NONE,
                     f"metadata database '{path}' is locked by another process (waited {busy_timeout():g} s)")
    if code in (_SQLITE_FULL, _SQLITE_READONLY) or code in _SQLITE_SYSTEM:
        return error(ErrorCode.SYSTEM_ERROR, ErrorDomain.NONE,
                     f"cannot write metadata database '{path}': {_file_system_reason(path) or exc}")
    if code in _SQLITE_DAMAGED:
        return error(ErrorCode.OPERATION_FAILED, ErrorDomain.NONE, f"metadata database '{path}' is damaged: {exc}")
    return error(ErrorCode.OPERATION_FAILED, ErrorDomain.NONE, f"metadata database '{path}': {exc}")


def _file_system_reason(path: str) -> str | None:
    """What sqlite reports as a bare "disk I/O error" is often a full or read-only file system: say which."""
    try:
        fs = os.statvfs(os.path.dirname(path))
    except OSError:
        return None
    if fs.f_flag & os.ST_RDONLY:
        return os.strerror(errno.EROFS)
    if (fs.f_bavail == 0 and os.geteuid() != 0) or fs.f_bfree == 0:
        return os.strerror(errno.ENOSPC)
    return None


def _translated(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` with sqlite's exceptions turned into store_error at the store's edge."""
    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except sqlite3.Error as exc:
            store = args[0]
            assert isinstance(store, MetadataStore)
            raise store_error(store.path, exc) from exc
    return call


def _translating(cls: C) -> C:
    """Every public method of `cls` raises libvirtError, never sqlite3.Error (methods added later included)."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and isinstance(member, types.FunctionType):
            setattr(cls, name, _translated(member))
    return cls


def sqlite_uri(path: str) -> str:
    """The file: URI of `path` as sqlite reads it: absolute, with "%", "?" and "#" (and any byte outside
    printable ASCII) percent-encoded, so no character of a user's directory name means anything to sqlite."""
    safe = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/-._~!$&'()*+,;=:@")
    data = os.fsencode(os.path.abspath(path))
    return "file:" + "".join(chr(b) if b in safe else f"%{b:02X}" for b in data)


def busy_timeout() -> float:
    """How long a write waits for another process's transaction: $VIRTSNAP_STORE_TIMEOUT seconds, else 30."""
    try:
        value = float(os.environ.get("VIRTSNAP_STORE_TIMEOUT", "30"))
    except ValueError:
        return 30.0
    return value if 0 <= value <= 3600 else 30.0


def state_dir(driver: str, system: bool) -> str:
    """$XDG_STATE_HOME/virtsnap/<driver> for a session URI, /var/lib/virtsnap/<driver> for system."""
    if system:
        return os.path.join("/var/lib/virtsnap", driver)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "virtsnap", driver)


class JournalEntry(Frozen):
    _fields = ("id", "domain", "op", "intent", "steps", "started", "pid")
    __slots__ = _fields

    def __init__(self, id: int, domain: str, op: str, intent: dict[str, Any], steps: list[str], started: float,
                 pid: int) -> None:
        self.id, self.domain, self.op, self.intent = id, domain, op, intent
        self.steps, self.started, self.pid = steps, started, pid


class LedgerRow(Frozen):
    """One file virtsnap made: where, its (device, inode) when made, whose it is, what it is for, its format
    and the backing file (and format) written into it."""

    _fields = ("path", "device", "inode", "domain", "snapshot", "purpose", "format", "backing", "backing_format")
    __slots__ = _fields

    def __init__(self, path: str, device: int, inode: int, domain: str, snapshot: str | None, purpose: str,
                 format: str, backing: str | None = None, backing_format: str | None = None) -> None:
        self.path, self.device, self.inode, self.domain, self.snapshot = path, device, inode, domain, snapshot
        self.purpose, self.format, self.backing, self.backing_format = purpose, format, backing, backing_format


class PointRow(Frozen):
    """One snapshot as snapshot_row reads it: its name, its parent's (None for a root), whether it is the
    domain's current snapshot, its stored XML (when asked for), the domain's generation when read, and
    whether the snapshot exists at all."""

    _fields = ("name", "parent", "current", "xml", "generation", "found")
    __slots__ = _fields

    def __init__(self, name: str | None, parent: str | None, current: bool, xml: str | None, generation: int,
                 found: bool = True) -> None:
        self.name, self.parent, self.current, self.xml = name, parent, current, xml
        self.generation, self.found = generation, found


_LEDGER_COLUMNS = "path, device, inode, domain, snapshot, purpose, format, backing, backing_format"


@_translating
class MetadataStore:
    """A driver's metadata database. Thread-safe for use from one process through separate stores.

    Every failure of the database (locked, read-only, full, damaged) is a one-line libvirtError naming it; a
    failed change leaves the database as it was (its transaction is rolled back).

    `load_tree` may return the tree it returned (or saved) before for the domain, brought up to date in
    place, when that tree holds no unsaved change; otherwise it builds a new one.
    """

    def __init__(self, directory: str | os.PathLike[str], read_only: bool = False) -> None:
        directory = os.fspath(directory)
        self.path = os.path.join(directory, "metadata.db")
        self._trees: dict[str, tuple[int, SnapshotTree]] = {}  # uuid -> (generation, tree last handed out)
        self._depth = 0  # nesting of transaction()
        self.read_only = read_only and self._open_read_only()
        if self.read_only:
            self.directory = directory
            return
        self.directory = private_dir(directory)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)  # 0600 before sqlite opens it
            os.close(fd)
        except OSError as exc:
            raise system_error(f"cannot open metadata database '{self.path}'", exc) from exc
        try:
            self._db = sqlite3.connect(self.path, timeout=busy_timeout(), isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
            self._db.execute("PRAGMA foreign_keys=ON")
            if self._db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                self._create_or_upgrade()
        except sqlite3.Error as exc:
            with suppress(NameError, sqlite3.Error):
                self._db.close()
            raise store_error(self.path, exc) from exc
        for suffix in ("-wal", "-shm"):
            try:
                os.chmod(self.path + suffix, 0o600)
            except FileNotFoundError:
                # not made yet, or just removed: the last connection of another process to close checkpoints
                # the log and deletes both (this open then makes them again, with the database's own mode)
                continue
            except OSError as exc:
                self._db.close()
                raise system_error(f"cannot open metadata database '{self.path}'", exc) from exc

    def _open_read_only(self) -> bool:
        """For a read-only connection: the existing database opened read-only (sqlite refuses any write), and
        never upgraded (a schema 3 store stays schema 3; it reads as having an empty ledger). False when there
        is no database yet, or one too old to read without an upgrade: then an in-memory copy is read (a
        new, empty store; or the old one copied and upgraded in memory), so nothing on disk is created or
        changed."""
        if not os.path.isfile(self.path):
            if os.path.lexists(self.path):
                return False  # not a regular file: the usual open reports it
            return self._in_memory(None)
        try:
            db = sqlite3.connect(sqlite_uri(self.path) + "?mode=ro", uri=True, timeout=busy_timeout(),
                                 isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            return False
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error:
            version = -1
        if 0 <= version < 3:
            try:
                return self._in_memory(db)
            finally:
                db.close()
        if not 3 <= version <= SCHEMA_VERSION:
            db.close()
            return False
        self._db = db
        return True

    def _in_memory(self, source: sqlite3.Connection | None) -> bool:
        """A private in-memory database holding `source`'s rows (or none), brought to the current schema."""
        mem = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        try:
            if source is not None:
                source.backup(mem)
            self._db = mem
            self._db.execute("PRAGMA foreign_keys=ON")
            self._create_or_upgrade()
        except sqlite3.Error:
            mem.close()
            return False
        return True

    def _create_or_upgrade(self) -> None:
        """Create the schema, or upgrade schema 1 (no generations per row, no tombstones) in place."""
        with self.transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return  # another process got here first
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"schema version {version} is newer than this virtsnap's "
                                            f"({SCHEMA_VERSION})")
            existed = db.execute("SELECT 1 FROM sqlite_master WHERE name='snapshots'").fetchone() is not None
            for statement in _TABLES:
                db.execute(statement)
            if existed:
                columns = {row[1] for row in db.execute("PRAGMA table_info(snapshots)")}
                if "gen" not in columns:
                    db.execute("ALTER TABLE snapshots ADD COLUMN gen INTEGER NOT NULL DEFAULT 0")
                columns = {row[1] for row in db.execute("PRAGMA table_info(domains)")}
                if "floor" not in columns:
                    db.execute("ALTER TABLE domains ADD COLUMN floor INTEGER NOT NULL DEFAULT 0")
            for statement in _V2 + _V3 + _V4 + _V5 + _V6 + _V7:
                db.execute(statement)
            db.execute("UPDATE domains SET floor = generation")  # rows of schema 1 carry no generation
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._trees.clear()
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolled back if the body raises. Nested calls join the outer
        transaction, so a driver can make several writes (definition, tree, journal) one atomic commit."""
        if self._depth:
            self._depth += 1
            try:
                yield self._db
            finally:
                self._depth -= 1
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from exc
        self._depth = 1
        try:
            yield self._db
            self._depth = 0
            self._db.execute("COMMIT")
        except BaseException as exc:
            self._depth = 0
            if self._db.in_transaction:  # sqlite may have rolled back already (a full disk, an I/O error)
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            self._trees.clear()  # trees saved inside were marked clean: they no longer match the database
            if isinstance(exc, sqlite3.Error):
                raise store_error(self.path, exc) from exc
            raise

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state."""
        if self._db.in_transaction:  # already inside one of ours
            yield self._db
            return
        try:
            self._db.execute("BEGIN")
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from exc
        try:
            yield self._db
        finally:
            with suppress(sqlite3.Error):  # a read has nothing to lose; its own error, if any, is what counts
                self._db.execute("COMMIT")

    # -- domains ------------------------------------------------------------------------------------
    def put_domain(self, uuid: str, name: str, xml: str) -> None:
        with self.transaction() as db:
            # A new domain starts above every generation an undefined one reached (`retired`), and its floor
            # says that no tree cached before it existed can be patched up to it.
            db.execute("INSERT INTO domains(uuid, name, xml, generation, floor) VALUES (?, ?, ?, "
                       "(SELECT COALESCE(MAX(CAST(value AS INTEGER)), 0) + 1 FROM meta WHERE key='retired'), "
                       "(SELECT COALESCE(MAX(CAST(value AS INTEGER)), 0) + 1 FROM meta WHERE key='retired')) "
                       "ON CONFLICT(uuid) DO UPDATE SET name=excluded.name, xml=excluded.xml, "
                       "generation=generation+1", (uuid, name, xml))

    def domains(self) -> list[tuple[str, str, str]]:
        """(uuid, name, xml) of every defined domain, by name."""
        return list(self._db.execute("SELECT uuid, name, xml FROM domains ORDER BY name"))

    def domain(self, uuid: str) -> tuple[str, str] | None:
        row = self._db.execute("SELECT name, xml FROM domains WHERE uuid=?", (uuid,)).fetchone()
        return (row[0], row[1]) if row else None

    def find_domain(self, *, name: str | None = None, uuid: str | None = None) -> tuple[str, str] | None:
        """(uuid, name) of the domain with this name or uuid (both columns are unique, hence indexed)."""
        column, value = ("name", name) if name is not None else ("uuid", uuid)
        row = self._db.execute(f"SELECT uuid, name FROM domains WHERE {column}=?", (value,)).fetchone()
        return (row[0], row[1]) if row else None

    def delete_domain(self, uuid: str) -> None:
        with self.transaction() as db:
            row = db.execute("SELECT generation FROM domains WHERE uuid=?", (uuid,)).fetchone()
            retired = db.execute("SELECT CAST(value AS INTEGER) FROM meta WHERE key='retired'").fetchone()
            if row is not None and (retired is None or row[0] > retired[0]):
                db.execute("INSERT OR REPLACE INTO meta VALUES ('retired', ?)", (str(row[0]),))
            db.execute("DELETE FROM domains WHERE uuid=?", (uuid,))
        self._trees.pop(uuid, None)

    def generation(self, uuid: str) -> int:
        row = self._db.execute("SELECT generation FROM domains WHERE uuid=?", (uuid,)).fetchone()
        return int(row[0]) if row else -1

    # -- snapshots ----------------------------------------------------------------------------------
    def load_tree(self, uuid: str) -> SnapshotTree:
        """The domain's forest: names, links, order, state and current in one query (a covering index); each
        moment's `defn` is its stored XML, read from the database when first used.

        When this store handed out the domain's tree before and that tree has no unsaved change, only the rows
        written since (and the tombstones of deleted ones) are read, and that tree is updated in place.
        """
        loader = self._xml_loader(uuid)
        with self._snapshot() as db:
            head = db.execute("SELECT generation, current, floor FROM domains WHERE uuid=?", (uuid,)).fetchone()
            if head is None:
                self._trees.pop(uuid, None)
                return SnapshotTree(metadata=True)
            generation, current, floor = head
            cached = self._trees.get(uuid)
            if cached is not None and not cached[1].changed and floor <= cached[0] <= generation:
                since, tree = cached
                if since < generation:
                    deleted = [name for (name,) in db.execute(
                        "SELECT name FROM tombstones WHERE domain=? AND gen>? ORDER BY gen", (uuid, since))]
                    rows = db.execute(f"SELECT {_TREE_COLUMNS} FROM snapshots WHERE domain=? AND gen>? ORDER BY seq",
                                      (uuid, since)).fetchall()
                    tree.apply_rows(rows, deleted, current, loader)
            else:
                tree = SnapshotTree(metadata=True)
                with collector_paused():
                    rows = db.execute(f"SELECT {_TREE_COLUMNS} FROM snapshots WHERE domain=? ORDER BY seq",
                                      (uuid,)).fetchall()
                    tree.load_rows(rows, current, loader)
        self._trees[uuid] = (generation, tree)
        return tree

    def snapshot_row(self, uuid: str, name: str | None, with_xml: bool = False) -> PointRow | None:
        """One snapshot read alone, as the loaded tree would show it (the current one when `name` is None):
        a few indexed rows, never the tree. None when the domain is gone; `found` False when the snapshot
        is. A parent not on record reads as none (the tree links such a snapshot as a root)."""
        xml_column = "s.xml" if with_xml else "NULL"
        with self._snapshot() as db:
            head = db.execute("SELECT current, generation FROM domains WHERE uuid=?", (uuid,)).fetchone()
            if head is None:
                return None
            current, generation = head
            wanted = current if name is None else name
            row = None if wanted is None else db.execute(
                f"SELECT s.name, p.name, {xml_column} FROM snapshots s LEFT JOIN snapshots p "
                "ON p.domain=s.domain AND p.name=s.parent WHERE s.domain=? AND s.name=?", (uuid, wanted)).fetchone()
        if row is None:
            return PointRow(wanted, None, False, None, generation, found=False)
        return PointRow(row[0], row[1], row[0] == current, row[2], generation)

    def snapshot_summaries(self, uuid: str) -> list[Summary] | None:
        """What tree.summaries(tree.moments()) of the loaded tree says, straight from the covering index with no
        tree built (a cold `snapshot-list --tree` of 100,000 snapshots spent most of its time building one).
        None when the domain is gone."""
        with self._snapshot() as db:
            if db.execute("SELECT 1 FROM domains WHERE uuid=?", (uuid,)).fetchone() is None:
                return None
            with collector_paused():
                rows = db.execute("SELECT name, parent, state, creation_time FROM snapshots WHERE domain=? "
                                  "ORDER BY seq", (uuid,)).fetchall()
                return row_summaries(rows)

    def snapshot_children(self, uuid: str, name: str, descendants: bool) -> int:
        """How many snapshots have `name` as parent (or, with `descendants`, below it), from the parent index."""
        if not descendants:
            return int(self._db.execute("SELECT count(*) FROM snapshots WHERE domain=? AND parent=?",
                                        (uuid, name)).fetchone()[0])
        # UNION (not UNION ALL): rows that loop back on themselves end the recursion instead of repeating
        return int(self._db.execute(
            "WITH RECURSIVE below(name) AS (SELECT name FROM snapshots WHERE domain=:d AND parent=:n "
            "UNION SELECT s.name FROM snapshots s JOIN below b ON s.domain=:d AND s.parent=b.name) "
            "SELECT count(*) FROM below", {"d": uuid, "n": name}).fetchone()[0])

    def _xml_loader(self, uuid: str) -> Any:
        def load(moment: Moment) -> None:
            try:  # called by the tree, later, outside any method of the store
                row = self._db.execute("SELECT xml FROM snapshots WHERE domain=? AND name=?",
                                       (uuid, moment.name)).fetchone()
            except sqlite3.Error as exc:
                raise store_error(self.path, exc) from exc
            if row is None:  # deleted by another process since the tree was read
                raise error(ErrorCode.NO_DOMAIN_SNAPSHOT, ErrorDomain.NONE,
                            f"no domain snapshot with matching name '{moment.name}'")
            moment.defn = row[0]
        return load

    def save_tree(self, uuid: str, tree: SnapshotTree, xml_of: Any) -> int:
        """Persist what changed in `tree` since it was loaded; returns the domain's new generation. `xml_of(moment)`
        gives a moment's XML; it is asked only for new or changed moments, not for those that merely moved to
        another parent."""
        with self.transaction() as db:
            current = tree.current.name if tree.current is not None else None
            bumped = db.execute("UPDATE domains SET current=?, generation=generation+1 WHERE uuid=? "
                                "RETURNING generation, floor", (current, uuid)).fetchall()
            gen, floor = bumped[0] if bumped else (0, 0)  # no domain: the inserts below fail on its foreign key
            if tree.deleted:
                db.executemany("DELETE FROM snapshots WHERE domain=? AND name=?",
                               [(uuid, name) for name in tree.deleted])
                db.executemany("INSERT OR IGNORE INTO tombstones(domain, gen, name) VALUES (?, ?, ?)",
                               [(uuid, gen, name) for name in tree.deleted])
                db.executemany("DELETE FROM lost WHERE domain=? AND name=?", [(uuid, name) for name in tree.deleted])
                db.executemany("DELETE FROM protected WHERE domain=? AND name=?",
                               [(uuid, name) for name in tree.deleted])
            if gen - floor > 2 * TOMBSTONE_GENERATIONS:  # once every TOMBSTONE_GENERATIONS saves
                floor = gen - TOMBSTONE_GENERATIONS
                db.execute("DELETE FROM tombstones WHERE domain=? AND gen<=?", (uuid, floor))
                db.execute("UPDATE domains SET floor=? WHERE uuid=?", (floor, uuid))
            rows = []
            for name in tree.dirty:
                m = tree.get(name)
                if m is None:
                    continue
                rows.append((uuid, m.name, m.parent_name, m.seq, m.creation_time, int(m.state), int(m.external),
                             xml_of(m), gen))
            if rows:
                db.executemany(
                "INSERT INTO snapshots(domain, name, parent, seq, creation_time, state, external, xml, gen) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(domain, name) DO UPDATE SET parent=excluded.parent, "
                "seq=excluded.seq, creation_time=excluded.creation_time, state=excluded.state, "
                "external=excluded.external, xml=excluded.xml, gen=excluded.gen", rows)
            moves = []
            for name in tree.moved - tree.dirty:
                m = tree.get(name)
                if m is not None:
                    moves.append((m.parent_name, m.seq, gen, uuid, m.name))
            if moves:
                db.executemany("UPDATE snapshots SET parent=?, seq=?, gen=? WHERE domain=? AND name=?", moves)
        tree.mark_clean()
        self._trees[uuid] = (gen, tree)
        return int(gen)

    def snapshot_count(self, uuid: str) -> int:
        return int(self._db.execute("SELECT count(*) FROM snapshots WHERE domain=?", (uuid,)).fetchone()[0])

    # -- journal ------------------------------------------------------------------------------------
    # An operation records its intent before its first change. Its metadata commit and the end (or the next
    # phase) of its entry are one transaction, so an entry still present names an operation whose process
    # died: the driver rolls it forward or back when it next takes the domain's lock.
    def journal_begin(self, uuid: str, op: str, intent: dict[str, Any]) -> int:
        import json  # the journal only: a read-only command never loads json

        with self.transaction() as db:
            cur = db.execute("INSERT INTO journal(domain, op, intent, started, pid) VALUES (?, ?, ?, ?, ?)",
                             (uuid, op, json.dumps(intent), time.time(), os.getpid()))
            return int(cur.lastrowid or 0)

    def journal_step(self, entry: int, step: str, **intent: Any) -> None:
        """Record that `step` is done, and merge `intent` into the entry's intent."""
        import json

        with self.transaction() as db:
            row = db.execute("SELECT steps, intent FROM journal WHERE id=?", (entry,)).fetchone()
            if row is None:
                return
            steps = [*json.loads(row[0]), step]
            merged = {**json.loads(row[1]), **intent}
            db.execute("UPDATE journal SET steps=?, intent=? WHERE id=?",
                       (json.dumps(steps), json.dumps(merged), entry))

    def journal_end(self, entry: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM journal WHERE id=?", (entry,))

    def journal_unfinished(self, uuid: str) -> list[JournalEntry]:
        import json

        rows = self._db.execute("SELECT id, domain, op, intent, steps, started, pid FROM journal WHERE domain=? "
                                "ORDER BY id", (uuid,)).fetchall()
        return [JournalEntry(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), r[5], r[6]) for r in rows]

    def journal_pending(self, uuid: str) -> bool:
        """Whether an operation on the domain is unfinished (one indexed probe: cheap enough for every open)."""
        return self._db.execute("SELECT 1 FROM journal WHERE domain=? LIMIT 1", (uuid,)).fetchone() is not None

    # -- snapshots found lost ------------------------------------------------------------------------
    def mark_lost(self, uuid: str, name: str, reason: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO lost(domain, name, reason, since) VALUES (?, ?, ?, ?)",
                       (uuid, name, reason, time.time()))

    def lost(self, uuid: str) -> dict[str, str]:
        """name -> why, for the domain's snapshots marked lost (a deleted snapshot's mark goes with it)."""
        return dict(self._db.execute("SELECT name, reason FROM lost WHERE domain=?", (uuid,)))

    # -- the ledger of files virtsnap made ------------------------------------------------------------
    def ledger_add(self, row: LedgerRow) -> None:
        """Record a file just made (a path made again replaces its old row: the old file is gone)."""
        with self.transaction() as db:
            db.execute(f"INSERT OR REPLACE INTO ledger({_LEDGER_COLUMNS}, created) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (row.path, row.device, row.inode, row.domain, row.snapshot, row.purpose, row.format,
                        row.backing, row.backing_format, time.time()))

    def ledger(self, domain: str | None = None) -> list[LedgerRow]:
        """The rows of one domain's files, or of every domain's."""
        where, args = ("WHERE domain=?", (domain,)) if domain is not None else ("", ())
        if not self._has_ledger():
            return []
        return [LedgerRow(*r) for r in self._db.execute(f"SELECT {_LEDGER_COLUMNS} FROM ledger {where} ORDER BY path",
                                                        args)]

    def ledger_row(self, path: str) -> LedgerRow | None:
        if not self._has_ledger():
            return None
        row = self._db.execute(f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE path=?", (path,)).fetchone()
        return LedgerRow(*row) if row else None

    def _has_ledger(self) -> bool:
        """False only for a schema 3 store opened read-only (not upgraded): no file is virtsnap's there."""
        return not self.read_only or self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE name='ledger'").fetchone() is not None

    def ledger_forget(self, path: str) -> None:
        """Drop a row: its file was removed, or it is no longer virtsnap's to remove."""
        with self.transaction() as db:
            db.execute("DELETE FROM ledger WHERE path=?", (path,))

    def ledger_release(self, domain: str, snapshots: list[str] | None = None) -> None:
        """Hand files over to the user: the rows of these snapshots of the domain (all its rows when None)."""
        with self.transaction() as db:
            if snapshots is None:
                db.execute("DELETE FROM ledger WHERE domain=?", (domain,))
            else:
                db.executemany("DELETE FROM ledger WHERE domain=? AND snapshot=?", [(domain, s) for s in snapshots])

    # -- snapshots marked protected ------------------------------------------------------------------
    def set_protected(self, uuid: str, name: str, on: bool) -> None:
        with self.transaction() as db:
            if on:
                db.execute("INSERT OR IGNORE INTO protected(domain, name, since) VALUES (?, ?, ?)",
                           (uuid, name, time.time()))
            else:
                db.execute("DELETE FROM protected WHERE domain=? AND name=?", (uuid, name))

    def protected(self, uuid: str) -> set[str]:
        """Names of the domain's protected snapshots (a deleted snapshot's mark goes with it). A store older than
        schema 5 opened read-only (not upgraded) has no marks."""
        if self.read_only and self._db.execute("SELECT 1 FROM sqlite_master WHERE name='protected'").fetchone() is None:
            return set()
        return {name for (name,) in self._db.execute("SELECT name FROM protected WHERE domain=?", (uuid,))}

    def set_mark(self, uuid: str, name: str, created: int, on: bool) -> None:
        """Mark (or unmark) protected a snapshot another program keeps, as it is now (its creation time)."""
        with self.transaction() as db:
            if on:
                db.execute("INSERT INTO marks(domain, name, created, since) VALUES (?, ?, ?, ?) ON CONFLICT(domain, "
                           "name) DO UPDATE SET created=excluded.created", (uuid, name, created, time.time()))
            else:
                db.execute("DELETE FROM marks WHERE domain=? AND name=?", (uuid, name))

    def marks(self, uuid: str) -> dict[str, int]:
        """name -> creation time when marked, for the domain's snapshots another program keeps. A store older
        than schema 7 opened read-only (not upgraded) has no marks."""
        if self.read_only and self._db.execute("SELECT 1 FROM sqlite_master WHERE name='marks'").fetchone() is None:
            return {}
        return {name: int(created) for name, created in
                self._db.execute("SELECT name, created FROM marks WHERE domain=?", (uuid,))}

    def drop_marks(self, uuid: str, names: Iterable[str]) -> None:
        """Forget the marks of snapshots that are gone."""
        with self.transaction() as db:
            db.executemany("DELETE FROM marks WHERE domain=? AND name=?", [(uuid, n) for n in names])
