"""The SQLite storage backend (stdlib ``sqlite3``): one file, durable on commit, one writer.

Owns :class:`SqliteStorage` and the on-disk schema. Must not import the broker, the network
layer or asyncio: every method blocks and is called from the storage writer thread.

Durability choices (the point of this backend):

* ``journal_mode=WAL`` with ``synchronous=FULL``. In WAL mode ``NORMAL`` only syncs the WAL at
  checkpoints, so a committed transaction can vanish on power loss or a kernel crash; ``FULL``
  fsyncs the WAL at every commit. A job is acknowledged (JOB_CREATED) only after its commit, so
  only ``FULL`` keeps that promise. The fsync is paid once per *batch* (the writer's group
  commit), not per job, which is why it stays cheap under load.
* One statement per batch whenever possible. The ``sqlite3`` module releases the GIL around
  every statement it runs, and while the event loop is busy a thread that gave the GIL up gets
  it back only after the interpreter's switch interval (5 ms). So a batch is ONE statement in
  autocommit mode (a statement is its own transaction: all or nothing, fsynced).
* Batch rows. A batch of at least :data:`BATCH_MIN` jobs with consecutive keys (what the
  broker hands over under load) is ONE row of ``gear_batch``: its first key, its size, and
  its jobs encoded by ``sqlite_batches.py`` (one row per job costs SQLite about 1.5 us of work
  per job; one row per batch about 0.1 us, plus 0.5 us to encode). A finished job of a batch
  row gets a row of ``gear_done`` (write-behind like any delete); when none of its jobs is
  live the batch row and its ``gear_done`` rows are deleted, and when an eighth or less is
  live (:data:`COMPACT_RATIO`) the live ones are rewritten as rows and the batch row deleted,
  so one long job does not keep a whole batch on disk. A dead job of a batch row becomes a row
  of its own. :class:`~gear.server.storage.sqlite_batches.BatchIndex` is the writer thread's
  memory of the batch rows; :meth:`load` rebuilds it, and tidies what a crash between a last
  finished job and the delete of its batch row leaves. The jobs of a batch row are not
  readable in the sqlite3 shell: :func:`read_queue` reads them from a file in use or not.
* Smaller batches, larger ones (over :data:`BATCH_MAX_BYTES`) and keys with gaps are rows of
  ``gear_queue``: ONE multi-row INSERT padded with NULL rows up to a power of two so that a
  dozen cached statements serve every batch size; only batches beyond
  :data:`MAX_ROWS_PER_INSERT` use BEGIN ... COMMIT. Deletes are one ``DELETE ... WHERE key IN
  (...)`` per batch the same way.
* Deletes are write-behind (base.py): a delete lost to a crash means the job replays:
  at-least-once, exactly what the contract allows. So :meth:`remove` commits with
  ``synchronous=NORMAL`` (no fsync: its WAL frames reach the disk with the next add's fsync,
  which syncs the whole WAL file, or the next checkpoint's) and sets ``FULL`` back before
  anything else is written; WAL mode keeps the file consistent either way, only those deletes
  may be lost (docs/server.md, "At-least-once after a crash"). A draining queue otherwise
  paid one fsync per delete batch (docs/benchmarks.md, "Draining a durable queue").
* Our own ``key INTEGER PRIMARY KEY``: gearmand keyed its table on (unique, function) and used
  ``INSERT OR REPLACE``, so two background jobs with an empty unique overwrote each other
  (docs/protocol.md §4.1). A plain ``INSERT`` on our key can never overwrite.
* Function, unique, data and reducer are BLOBs: Gearman fields are bytes, never text.
* The file is identified by ``PRAGMA application_id`` and versioned by ``PRAGMA user_version``.
  Anything else (a gearmand queue, another application's database, a newer schema, a corrupt or
  read-only file) makes :meth:`load` raise :class:`StorageError` naming the file: the server must
  refuse to start rather than run without the jobs it promised to keep. An older schema of ours
  is upgraded in place at :meth:`load` (version 1 had no ``reducer`` column, version 2 no
  ``attempts`` and ``died``, version 3 no batch rows).
* The dead-letter list (base.py) lives in the same table: ``died`` is NULL for a live job and
  the Unix time its retries ran out for a dead one. Inserts never name those two columns (their
  defaults make a live job), so the submit path is unchanged; ``bury`` and ``revive`` are
  UPDATEs of a handful of rows.
* Only one server may use a file: an exclusive ``flock`` on the database file (independent of
  SQLite's own POSIX locks, so the ``sqlite3`` shell can still read the queue while we run).
"""

from __future__ import annotations

import functools
import math
import os
import sqlite3
import urllib.parse
from collections.abc import Callable, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

from gear.errors import ConfigurationError
from gear.server.storage.base import (
    DeadJob,
    Storage,
    StorageError,
    StorageLockedError,
    StoredJob,
)
from gear.server.storage.sqlite_batches import (
    Batch,
    BatchError,
    BatchIndex,
    consecutive,
    decode,
    encode,
)

try:  # flock is POSIX-only; without it we just cannot detect a second server on the file.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: ``PRAGMA application_id`` of our queue files: b"GEAR" as a big-endian integer.
APPLICATION_ID = 0x47454152
#: ``PRAGMA user_version`` of the schema this code reads and writes.
SCHEMA_VERSION = 4
TABLE = "gear_queue"
#: One row per batch of jobs committed together (sqlite_batches.py), and the finished keys of
#: the batches that still hold live jobs.
BATCH_TABLE = "gear_batch"
DONE_TABLE = "gear_done"
#: Smallest batch stored as one batch row (smaller ones, an idle server's single jobs among
#: them, are rows of ``gear_queue`` that the sqlite3 shell shows as they are).
BATCH_MIN = 16
#: Largest batch row in bytes: a larger batch is stored as rows (one long job must not keep
#: megabytes of finished jobs on disk).
BATCH_MAX_BYTES = 4 << 20
#: A batch row whose live jobs fall to an eighth of it is rewritten as rows of those jobs
#: (one forgotten job must not keep its whole batch on disk).
COMPACT_RATIO = 8
#: The columns an insert binds (a StoredJob's fields).
_COLUMNS = ("key", "function", "unique_key", "priority", "when_to_run", "data", "reducer")
#: Every column of the table: the dead-letter fields after the record's.
_TABLE_COLUMNS = (*_COLUMNS, "attempts", "died")
#: Version 1 -> 2: the reducer of a background reduce job (NULL for every other job).
#: Version 2 -> 3: the dead-letter list (``died`` NULL: a live job).
_UPGRADES = {
    1: (f"ALTER TABLE {TABLE} ADD COLUMN reducer BLOB",),
    2: (f"ALTER TABLE {TABLE} ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
        f"ALTER TABLE {TABLE} ADD COLUMN died REAL"),
    3: (f"CREATE TABLE {BATCH_TABLE} (first INTEGER PRIMARY KEY, size INTEGER NOT NULL, "
        "jobs BLOB NOT NULL)",
        f"CREATE TABLE {DONE_TABLE} (key INTEGER PRIMARY KEY)"),
}
#: Version 3 -> 4: batch rows (the tables above).
_BATCH_COLUMNS = ("first", "size", "jobs")
_DONE_COLUMNS = ("key",)

# No CHECK constraints: they cost a third of the insert time; load() validates every row.
_SCHEMA = f"""
CREATE TABLE {TABLE} (
    key         INTEGER PRIMARY KEY,
    function    BLOB    NOT NULL,
    unique_key  BLOB    NOT NULL,
    priority    INTEGER NOT NULL,
    when_to_run INTEGER NOT NULL,
    data        BLOB    NOT NULL,
    reducer     BLOB,
    attempts    INTEGER NOT NULL DEFAULT 0,
    died        REAL
)
"""
#: Largest number of rows per INSERT statement (a power of two; lowered at open() when the
#: SQLite library allows fewer parameters per statement).
MAX_ROWS_PER_INSERT = 2048


@functools.lru_cache(maxsize=32)
def _insert_rows(count: int) -> str:
    # VALUES rows are named column1..column7 and take a StoredJob's fields in its own order
    # (key, function, unique, data, priority, when, reducer), so a batch binds the flattened
    # records with no per-job Python work; padding rows are all NULL and filtered out.
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * count)
    return (f"INSERT INTO {TABLE} "
            "(key, function, unique_key, data, priority, when_to_run, reducer) "
            "SELECT column1, column2, column3, column4, column5, column6, column7 "
            f"FROM (VALUES {values}) WHERE column1 IS NOT NULL")


@functools.lru_cache(maxsize=32)
def _delete_keys(count: int) -> str:
    return f"DELETE FROM {TABLE} WHERE key IN ({', '.join(['?'] * count)})"


@functools.lru_cache(maxsize=32)
def _insert_done(count: int) -> str:
    return f"INSERT OR IGNORE INTO {DONE_TABLE} (key) VALUES {', '.join(['(?)'] * count)}"


def _padded(n: int, limit: int) -> int:
    """The smallest power of two >= ``n``, at most ``limit``."""
    size = 1
    while size < n and size < limit:
        size <<= 1
    return size


_flatten = chain.from_iterable


_NULLS: list[object] = [None] * len(_COLUMNS)  # one padding row's parameters
_WIDTH = len(StoredJob._fields)
#: Positions of a StoredJob's byte strings (function, unique, data).
_BLOB_COLUMNS = (1, 2, 3)
#: Position of its reducer: bytes or None.
_REDUCER_COLUMN = 6
_copy: Callable[[Any], object] = bytearray


def _copy_reducer(value: Any) -> object:
    return None if value is None else bytearray(value)

_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM {TABLE} WHERE died IS NULL ORDER BY key"
_SELECT_DEAD = (f"SELECT {', '.join(_TABLE_COLUMNS)} FROM {TABLE} WHERE died IS NOT NULL "
                "ORDER BY key")
_BURY = f"UPDATE {TABLE} SET attempts = ?, died = ? WHERE key = ? AND died IS NULL"
_INSERT_BATCH = f"INSERT INTO {BATCH_TABLE} (first, size, jobs) VALUES (?, ?, ?)"
_INSERT_DEAD = (f"INSERT INTO {TABLE} ({', '.join(_TABLE_COLUMNS)}) "
                f"VALUES ({', '.join(['?'] * len(_TABLE_COLUMNS))})")
_by_key: Callable[[StoredJob], int] = itemgetter(0)
_REVIVE = f"UPDATE {TABLE} SET attempts = 0, died = NULL WHERE key = ? AND died IS NOT NULL"


class SqliteStorage(Storage):
    """Background jobs in one SQLite file at ``path`` (its parent directory is created).

    ``max_size`` (bytes) caps the queue on disk, the database file and its ``-wal`` file
    together: an ``add`` that could take them past it fails with :class:`StorageError` ("queue
    is full") before writing anything, exactly as a full disk does, and succeeds again once
    finished jobs have been removed. To keep the WAL from growing, every write is followed by a
    ``wal_checkpoint(TRUNCATE)`` when a cap is set; the database itself is also capped with
    ``max_page_count`` as a backstop.
    """

    name = "sqlite"

    def __init__(self, path: str | os.PathLike[str], *, max_size: int | None = None,
                 busy_timeout: float = 5.0) -> None:
        self.path = os.fspath(path)
        if max_size is not None and max_size <= 0:
            raise ConfigurationError("sqlite queue max_size must be positive")
        self.max_size = max_size
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._chunk = 1
        #: The batch rows and their finished keys (sqlite_batches.py), and the largest key
        #: ever stored as a row: a batch above it cannot collide with a row.
        self._index = BatchIndex()
        self._rows_max = 0
        #: False while the connection may still be at ``synchronous=NORMAL`` (remove()).
        self._full = True
        #: Write transactions committed by remove(), and by add() (for tests and benchmarks).
        self.remove_commits = 0
        self.add_commits = 0

    def __repr__(self) -> str:
        return f"<SqliteStorage {self.path!r}>"

    # -- opening -------------------------------------------------------------------------

    def load(self) -> list[StoredJob]:
        if self._conn is not None:
            raise StorageError(f"sqlite queue {self.path}: already open")
        try:
            self._open()
            return self._read_all()
        except BaseException:
            self.close()
            raise

    @property
    def where(self) -> str:
        return f"sqlite {os.path.abspath(self.path)}"

    def _fail(self, what: str, exc: BaseException | None = None,
              error: type[StorageError] = StorageError) -> StorageError:
        detail = f": {exc}" if exc is not None else ""
        return error(f"sqlite queue {os.path.abspath(self.path)}: {what}{detail}")

    def _open(self) -> None:
        parent = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise self._fail(f"cannot create directory {parent}", exc) from exc
        self._lock_file()
        try:
            # isolation_level=None (autocommit): a one-statement batch is its own transaction,
            # larger ones get an explicit BEGIN ... COMMIT (see add()).
            # check_same_thread=False: the contract serialises calls (one writer thread at a
            # time) but load() and the writer loop need not share a thread in embedded use.
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._fail("cannot open", exc) from exc
        self._conn = conn
        # SQLite before 3.32 allows 999 parameters per statement, later ones 32766.
        limit = 999
        if hasattr(conn, "getlimit"):  # Python 3.11+
            limit = conn.getlimit(getattr(sqlite3, "SQLITE_LIMIT_VARIABLE_NUMBER", 9))
        self._chunk = MAX_ROWS_PER_INSERT
        while self._chunk * len(_COLUMNS) > limit:
            self._chunk >>= 1
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise self._fail(f"cannot enable WAL journaling (journal_mode is {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            if self.max_size is not None:
                page_size = conn.execute("PRAGMA page_size").fetchone()[0]
                pages = max(1, math.ceil(self.max_size / page_size))
                conn.execute(f"PRAGMA max_page_count={int(pages)}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._check_schema(conn)
                # Rewriting the version is a real write: a read-only file or directory fails
                # here, at start, instead of at the first client's submit.
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except StorageError:
            raise
        except sqlite3.Error as exc:
            raise self._fail(_explain(exc), exc) from exc

    def _lock_file(self) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as exc:
            # Read-only files and directories land here; sqlite would say the same, less clearly.
            raise self._fail("cannot open for writing", exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise self._fail("in use by another server (locked)", exc,
                             StorageLockedError) from exc
        self._lock_fd = fd

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = sorted(row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"))
        if app_id == 0 and version == 0 and not tables:
            conn.execute(_SCHEMA)
            for statement in _UPGRADES[3]:
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            return
        if app_id != APPLICATION_ID:
            hint = " (a gearmand queue? it cannot be reused)" if "gearman_queue" in tables else ""
            raise self._fail(
                f"not a geard queue database (application_id {app_id:#x}, tables "
                f"{', '.join(tables) or 'none'}){hint}; refusing to use it")
        while version in _UPGRADES and version < SCHEMA_VERSION:  # our older schema: upgrade
            for statement in _UPGRADES[version]:
                conn.execute(statement)
            version += 1
        if version != SCHEMA_VERSION:
            raise self._fail(
                f"queue schema version {version}, this geard reads version {SCHEMA_VERSION}")
        for table, expected in ((TABLE, _TABLE_COLUMNS), (BATCH_TABLE, _BATCH_COLUMNS),
                                (DONE_TABLE, _DONE_COLUMNS)):
            columns = tuple(row[1] for row in conn.execute(f"PRAGMA table_info({table})"))
            if columns != expected:
                raise self._fail(
                    f"table {table} has columns {columns or 'none'}, expected {expected}")

    def _read_all(self, tidy: bool = True) -> list[StoredJob]:
        conn = self._require()
        jobs: list[StoredJob] = []
        try:
            for key, function, unique, priority, when, data, reducer in conn.execute(_SELECT):
                if (not isinstance(key, int) or priority not in (0, 1, 2)
                        or not isinstance(when, int)):
                    raise self._fail(f"invalid row with key {key!r}")
                jobs.append(StoredJob(key, _blob(function), _blob(unique), _blob(data),
                                      priority, when,
                                      None if reducer is None else _blob(reducer)))
        except sqlite3.Error as exc:
            # Never a partial list: a half-read queue would silently drop jobs.
            raise self._fail(_explain(exc), exc) from exc
        except TypeError as exc:
            raise self._fail("invalid row", exc) from exc
        try:
            batched, self._index, self._rows_max = _read_batches(conn, tidy)
        except _BadBatch as exc:
            raise self._fail(str(exc), exc.__cause__) from exc.__cause__
        if batched:
            jobs.extend(batched)
            jobs.sort(key=_by_key)
        return jobs

    def _record(self, row: Sequence[Any]) -> StoredJob:
        """A dead row's record (``_read_all`` inlines the same for speed)."""
        key, function, unique, priority, when, data, reducer = row[:7]
        if not isinstance(key, int) or priority not in (0, 1, 2) or not isinstance(when, int):
            raise self._fail(f"invalid row with key {key!r}")
        return StoredJob(key, _blob(function), _blob(unique), _blob(data), priority, when,
                         None if reducer is None else _blob(reducer))

    def load_dead(self) -> list[DeadJob]:
        conn = self._require()
        try:
            rows = conn.execute(_SELECT_DEAD).fetchall()
            return [DeadJob(self._record(row), int(row[7]), float(row[8])) for row in rows]
        except sqlite3.Error as exc:
            raise self._fail(_explain(exc), exc) from exc
        except (TypeError, ValueError) as exc:
            raise self._fail("invalid dead-letter row", exc) from exc

    def bury(self, jobs: Sequence[DeadJob]) -> None:
        index = self._index
        held = [dead for dead in jobs if index.find(dead.job.key) is not None] if len(
            index) else []
        if not held:
            self._update(f"bury {len(jobs)} job(s)", _BURY,
                         [(dead.attempts, dead.died, dead.job.key) for dead in jobs])
            return
        # A job of a batch row becomes a dead row of its own, and finished in its batch.
        conn = self._require()
        held_keys = [dead.job.key for dead in held]
        _rows, retiring = self._split(held_keys)
        retiring_keys = set(held_keys)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_BURY, [(dead.attempts, dead.died, dead.job.key) for dead in jobs
                                     if dead.job.key not in retiring_keys])
            conn.executemany(_INSERT_DEAD, [
                (key, bytearray(function), bytearray(unique), priority, when, bytearray(data),
                 _copy_reducer(reducer), dead.attempts, dead.died)
                for dead in held
                for key, function, unique, data, priority, when, reducer in (dead.job,)])
            apply = self._retire(conn, retiring)
            conn.execute("COMMIT")
        except (sqlite3.Error, StorageError) as exc:
            self._rollback(conn)
            if isinstance(exc, StorageError):
                raise
            raise self._fail(f"cannot bury {len(jobs)} job(s): {_explain(exc)}") from exc
        apply()
        self._rows_max = max(self._rows_max, *held_keys)

    def revive(self, keys: Sequence[int]) -> None:
        self._update(f"revive {len(keys)} job(s)", _REVIVE, [(key,) for key in keys])

    def _update(self, what: str, statement: str, params: list[tuple[Any, ...]]) -> None:
        """Run ``statement`` for every parameter row in one transaction (rare, small batches)."""
        if not params:
            return
        conn = self._require()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(statement, params)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(conn)
            raise self._fail(f"cannot {what}: {_explain(exc)}") from exc
        if self.max_size is not None:
            self._checkpoint(conn)

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError(f"sqlite queue {self.path}: not open (call load() first)")
        return self._conn

    # -- writing -------------------------------------------------------------------------

    def add(self, jobs: Sequence[StoredJob]) -> None:
        if not jobs:
            return
        conn = self._require()
        chunk = self._chunk
        try:
            if not self._full:
                conn.execute("PRAGMA synchronous=FULL")
                self._full = True
            if self.max_size is not None:
                self._check_room(conn, jobs)
            if len(jobs) >= BATCH_MIN and consecutive(jobs) and self._add_batch(conn, jobs):
                pass  # one batch row: autocommit, fsynced (FULL)
            else:
                self._check_keys_free(jobs)
                if len(jobs) <= chunk:
                    self._insert(conn, jobs)  # autocommit: its own transaction, fsynced (FULL)
                else:
                    conn.execute("BEGIN IMMEDIATE")
                    self._insert_all(conn, jobs)
                    conn.execute("COMMIT")  # synchronous=FULL: the WAL is fsynced before this
                self._rows_max = max(self._rows_max, max(map(_by_key, jobs)))
            self.add_commits += 1
        except sqlite3.Error as exc:
            self._rollback(conn)
            raise self._fail(f"cannot store {len(jobs)} job(s): {_explain(exc)}") from exc
        if self.max_size is not None:
            self._checkpoint(conn)

    def _add_batch(self, conn: sqlite3.Connection, jobs: Sequence[StoredJob]) -> bool:
        """Store consecutive ``jobs`` as one batch row; False (nothing done) when they are too
        large for one. Raises StorageError if one of their keys is stored already."""
        blob = encode(jobs)
        if len(blob) > BATCH_MAX_BYTES:
            return False
        first = jobs[0][0]
        last = first + len(jobs) - 1
        if self._index.overlaps(first, last) or (first <= self._rows_max and conn.execute(
                f"SELECT 1 FROM {TABLE} WHERE key BETWEEN ? AND ? LIMIT 1",
                (first, last)).fetchone()):
            raise self._fail(f"cannot store {len(jobs)} job(s): a key is stored already")
        # bytearray: bound as it is, never through an adapter (see _insert).
        conn.execute(_INSERT_BATCH, (first, len(jobs), bytearray(blob)))
        self._index.add(Batch(first, len(jobs)))
        return True

    def _check_keys_free(self, jobs: Sequence[StoredJob]) -> None:
        """Raise StorageError if a key of ``jobs`` is live in a batch row (rows of the table
        have their primary key for that)."""
        index = self._index
        if not len(index):
            return
        keys = list(map(_by_key, jobs))
        if index.overlaps(min(keys), max(keys)) and any(map(index.find, keys)):
            raise self._fail(f"cannot store {len(jobs)} job(s): a key is stored already")

    def _insert_all(self, conn: sqlite3.Connection, jobs: Sequence[StoredJob]) -> None:
        chunk = self._chunk
        for start in range(0, len(jobs), chunk):
            self._insert(conn, jobs[start:start + chunk])

    def _check_room(self, conn: sqlite3.Connection, jobs: Sequence[StoredJob]) -> None:
        """Raise StorageError unless ``jobs`` fit under ``max_size``, WAL included.

        Conservative: the pages the rows may need (payload plus b-tree overhead) are counted
        twice, once as WAL frames and once as database pages the checkpoint copies them to,
        less the free pages the database can reuse.
        """
        assert self.max_size is not None
        page_size, pages, free = (conn.execute(f"PRAGMA {name}").fetchone()[0]
                                  for name in ("page_size", "page_count", "freelist_count"))
        payload = sum(len(j.function) + len(j.unique) + len(j.data) + 32 for j in jobs)
        need = math.ceil(payload * 1.25 / (page_size - 64)) + 4 + len(jobs) // 8
        try:
            wal = os.path.getsize(self.path + "-wal")
        except OSError:
            wal = 0
        db_after = (pages + max(0, need - free)) * page_size
        wal_after = wal + 32 + need * (page_size + 24)
        if db_after + wal_after > self.max_size:
            raise self._fail(
                f"cannot store {len(jobs)} job(s): queue is full (max_size={self.max_size} "
                f"bytes, database and WAL together; finished jobs free space)")

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL into the database and truncate it (best effort: a reader, such as the
        sqlite3 shell, can hold it back; _check_room counts whatever WAL is left)."""
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error:
            pass

    def _insert(self, conn: sqlite3.Connection, jobs: Sequence[StoredJob]) -> None:
        size = _padded(len(jobs), self._chunk)
        # A StoredJob is a tuple in the statement's column order: flattening is one C loop.
        params: list[object] = list(_flatten(jobs))
        # Its three byte strings are bound as bytearray copies. CPython's sqlite3 (3.11) binds
        # int, float, str and bytearray directly but sends every bytes parameter through the
        # adaptation protocol (a key tuple, a dict lookup and an adapter call, or a failed
        # attribute lookup without one), ~0.3 us each with the GIL held, which the event loop
        # then waits for; the copy costs a third of that. Measured: 1.16 -> 0.44 us per row.
        for column in _BLOB_COLUMNS:
            params[column::_WIDTH] = map(_copy, params[column::_WIDTH])
        reducers = params[_REDUCER_COLUMN::_WIDTH]
        if reducers.count(None) != len(reducers):  # NULLs bind as they are (the common case)
            params[_REDUCER_COLUMN::_WIDTH] = map(_copy_reducer, reducers)
        if size > len(jobs):
            params += _NULLS * (size - len(jobs))
        conn.execute(_insert_rows(size), params)

    def remove(self, keys: Sequence[int]) -> None:
        if not keys:
            return
        conn = self._require()
        rows, retiring = self._split(keys)
        try:
            # Write-behind: no fsync for this commit (module docstring, "Deletes").
            self._full = False
            conn.execute("PRAGMA synchronous=NORMAL")
            if retiring or len(rows) > self._chunk * 4:
                conn.execute("BEGIN IMMEDIATE")
            apply = self._retire(conn, retiring) if retiring else None
            self._delete_rows(conn, rows)
            if conn.in_transaction:
                conn.execute("COMMIT")
            self.remove_commits += 1
        except (sqlite3.Error, StorageError) as exc:
            self._rollback(conn)
            if isinstance(exc, StorageError):
                raise
            raise self._fail(f"cannot remove {len(keys)} job(s): {_explain(exc)}") from exc
        finally:
            self._restore_full(conn)
        if apply is not None:
            apply()
        if self.max_size is not None:
            self._checkpoint(conn)

    def _delete_rows(self, conn: sqlite3.Connection, keys: Sequence[int]) -> None:
        limit = self._chunk * 4  # a power of two, within the parameters an insert may use
        for start in range(0, len(keys), limit):
            part = list(keys[start:start + limit])
            size = _padded(len(part), limit)
            conn.execute(_delete_keys(size), part + [None] * (size - len(part)))

    def _split(self, keys: Sequence[int]) -> tuple[list[int], dict[Batch, set[int]]]:
        """``keys`` as (keys of table rows, or of nothing; batch -> its live keys among them)."""
        index = self._index
        if not len(index):
            return list(keys), {}
        rows: list[int] = []
        retiring: dict[Batch, set[int]] = {}
        find = index.find
        for key in keys:
            batch = find(key)
            if batch is None:
                rows.append(key)
            else:
                retiring.setdefault(batch, set()).add(key)
        return rows, retiring

    def _retire(self, conn: sqlite3.Connection,
                retiring: dict[Batch, set[int]]) -> Callable[[], None]:
        """Within the caller's transaction, mark these live keys of batch rows finished: a
        finished key row each, or the batch row deleted once none of its jobs is live, or
        rewritten as rows of its live jobs once they are an eighth of it or less. Returns
        what updates :attr:`_index`, to be called after the commit."""
        finished: list[int] = []
        gone: list[Batch] = []
        rewritten: list[StoredJob] = []
        for batch, keys in retiring.items():
            live = batch.live - len(keys)
            if live and live * COMPACT_RATIO > batch.size:
                finished.extend(keys)
                continue
            if live:
                (blob,) = conn.execute(f"SELECT jobs FROM {BATCH_TABLE} WHERE first = ?",
                                       (batch.first,)).fetchone()
                try:
                    jobs = decode(batch.first, blob)
                except BatchError as exc:
                    raise self._fail(f"invalid batch row {batch.first}: {exc}") from exc
                done = batch.done | keys
                rewritten.extend(j for j in jobs if j[0] not in done)
            gone.append(batch)
        if rewritten:
            self._insert_all(conn, rewritten)
        for batch in gone:
            conn.execute(f"DELETE FROM {BATCH_TABLE} WHERE first = ?", (batch.first,))
            if batch.done:
                conn.execute(f"DELETE FROM {DONE_TABLE} WHERE key BETWEEN ? AND ?",
                             (batch.first, batch.first + batch.size - 1))
        limit = self._chunk * 4
        for start in range(0, len(finished), limit):
            part = finished[start:start + limit]
            size = _padded(len(part), limit)
            # Padded with repeats of a key (OR IGNORE): a NULL would make up a new rowid.
            conn.execute(_insert_done(size), part + [part[0]] * (size - len(part)))

        def apply() -> None:
            index = self._index
            for batch in gone:
                index.drop(batch)
            for batch, keys in retiring.items():  # (a dropped batch's done no longer matters)
                batch.done |= keys
            if rewritten:
                self._rows_max = max(self._rows_max, rewritten[-1][0])

        return apply

    def _restore_full(self, conn: sqlite3.Connection) -> None:
        """Back to ``synchronous=FULL`` after a remove (if this fails, add() sets it before
        its own write, so no add ever commits without its fsync)."""
        try:
            conn.execute("PRAGMA synchronous=FULL")
            self._full = True
        except sqlite3.Error:
            pass

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        # After SQLITE_FULL and some I/O errors SQLite has already rolled back by itself.
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def close(self) -> None:
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                conn.close()  # checkpoints the WAL into the database file
        except sqlite3.Error:
            pass
        finally:
            # Release the flock only after SQLite has closed the file: closing any descriptor
            # of a file drops this process's POSIX locks on it.
            fd, self._lock_fd = self._lock_fd, None
            if fd is not None:
                os.close(fd)


def _blob(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):  # a row edited by hand in the sqlite3 shell
        return value.encode()
    raise TypeError(f"expected a BLOB, got {type(value).__name__}")


def _explain(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "file is not a database" in text or "malformed" in text:
        return f"{text} (corrupt file, or not an SQLite database)"
    return text


class _BadBatch(Exception):
    """A batch row that cannot be read (:meth:`SqliteStorage._read_all` names the file)."""


def _read_batches(conn: sqlite3.Connection,
                  tidy: bool) -> tuple[list[StoredJob], BatchIndex, int]:
    """The live jobs of every batch row, the index of the batch rows, and the largest key of a
    table row. With ``tidy``, batch rows with no live job left, and finished keys of no batch,
    are deleted (a crash between a batch's last job and the delete of its row leaves them)."""
    index = BatchIndex()
    jobs: list[StoredJob] = []
    empty: list[int] = []
    forget: list[int] = []  # finished keys of the empty batches
    try:
        row = conn.execute(f"SELECT max(key) FROM {TABLE}").fetchone()
        rows_max = row[0] if isinstance(row[0], int) else 0
        done = {key for (key,) in conn.execute(f"SELECT key FROM {DONE_TABLE}")}
        claimed: set[int] = set()
        for first, size, blob in conn.execute(
                f"SELECT first, size, jobs FROM {BATCH_TABLE} ORDER BY first"):
            if not isinstance(first, int) or not isinstance(size, int) or size < 1 or (
                    not isinstance(blob, bytes)):
                raise _BadBatch(f"invalid batch row {first!r}")
            try:
                decoded = decode(first, blob)
            except BatchError as exc:
                raise _BadBatch(f"invalid batch row {first}: {exc}") from exc
            if len(decoded) != size:
                raise _BadBatch(f"invalid batch row {first}: {len(decoded)} jobs, not {size}")
            finished = done.intersection(range(first, first + size))
            claimed |= finished
            if len(finished) == size:
                empty.append(first)
                forget.extend(finished)
                continue
            index.add(Batch(first, size, finished))
            jobs.extend(j for j in decoded if j[0] not in finished)
        forget.extend(done - claimed)
        if tidy and (empty or forget):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(f"DELETE FROM {BATCH_TABLE} WHERE first = ?",
                             [(first,) for first in empty])
            conn.executemany(f"DELETE FROM {DONE_TABLE} WHERE key = ?",
                             [(key,) for key in forget])
            conn.execute("COMMIT")
    except sqlite3.Error as exc:
        SqliteStorage._rollback(conn)
        raise _BadBatch(_explain(exc)) from exc
    return jobs, index, rows_max


def read_queue(path: str | os.PathLike[str]) -> list[StoredJob]:
    """Every live job in the queue file at ``path``, oldest key first: what geard replays
    from it. Read only (no lock taken, nothing written), so it works while a geard runs on
    the file or after one was killed; for tests and for looking into a queue, since the jobs
    of a batch row are not readable in the sqlite3 shell (docs/server.md)."""
    absolute = os.path.abspath(os.fspath(path))
    if not os.path.isfile(absolute):
        raise StorageError(f"sqlite queue {absolute}: no such file")
    store = SqliteStorage(absolute)
    try:
        conn = sqlite3.connect(f"file:{urllib.parse.quote(absolute)}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise store._fail("cannot open", exc) from exc
    store._conn = conn
    try:
        store._check_schema(conn)
        return store._read_all(tidy=False)
    except sqlite3.Error as exc:  # e.g. an older schema, which only a geard may upgrade
        raise store._fail(_explain(exc), exc) from exc
    finally:
        store._conn = None
        conn.close()
