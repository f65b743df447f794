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
  it back only after the interpreter's switch interval (5 ms). So a batch is ONE multi-row
  INSERT in autocommit mode (a statement is its own transaction: all or nothing, fsynced),
  padded with NULL rows up to a power of two so that a dozen cached statements serve every
  batch size; only batches beyond :data:`MAX_ROWS_PER_INSERT` use BEGIN ... COMMIT. Deletes are
  one ``DELETE ... WHERE key IN (...)`` per batch the same way.
* Deletes are write-behind (base.py): a delete lost to a crash means the job replays:
  at-least-once, exactly what the contract allows.
* Our own ``key INTEGER PRIMARY KEY``: gearmand keyed its table on (unique, function) and used
  ``INSERT OR REPLACE``, so two background jobs with an empty unique overwrote each other
  (docs/protocol.md §4.1). A plain ``INSERT`` on our key can never overwrite.
* Function, unique, data and reducer are BLOBs: Gearman fields are bytes, never text.
* The file is identified by ``PRAGMA application_id`` and versioned by ``PRAGMA user_version``.
  Anything else (a gearmand queue, another application's database, a newer schema, a corrupt or
  read-only file) makes :meth:`load` raise :class:`StorageError` naming the file: the server must
  refuse to start rather than run without the jobs it promised to keep. An older schema of ours
  is upgraded in place at :meth:`load` (version 1 had no ``reducer`` column, version 2 no
  ``attempts`` and ``died``).
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
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

from gear.errors import ConfigurationError
from gear.server.storage.base import (
    DeadJob,
    Storage,
    StorageError,
    StorageLockedError,
    StoredJob,
)

try:  # flock is POSIX-only; without it we just cannot detect a second server on the file.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: ``PRAGMA application_id`` of our queue files: b"GEAR" as a big-endian integer.
APPLICATION_ID = 0x47454152
#: ``PRAGMA user_version`` of the schema this code reads and writes.
SCHEMA_VERSION = 3
TABLE = "gear_queue"
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
}

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
        columns = tuple(row[1] for row in conn.execute(f"PRAGMA table_info({TABLE})"))
        if columns != _TABLE_COLUMNS:
            raise self._fail(
                f"table {TABLE} has columns {columns or 'none'}, expected {_TABLE_COLUMNS}")

    def _read_all(self) -> list[StoredJob]:
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
        self._update(f"bury {len(jobs)} job(s)", _BURY,
                     [(dead.attempts, dead.died, dead.job.key) for dead in jobs])

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
            if self.max_size is not None:
                self._check_room(conn, jobs)
            if len(jobs) <= chunk:
                self._insert(conn, jobs)  # autocommit: its own transaction, fsynced (FULL)
            else:
                conn.execute("BEGIN IMMEDIATE")
                for start in range(0, len(jobs), chunk):
                    self._insert(conn, jobs[start:start + chunk])
                conn.execute("COMMIT")  # synchronous=FULL: the WAL is fsynced before this
        except sqlite3.Error as exc:
            self._rollback(conn)
            raise self._fail(f"cannot store {len(jobs)} job(s): {_explain(exc)}") from exc
        if self.max_size is not None:
            self._checkpoint(conn)

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
        limit = self._chunk * 4  # a power of two, within the parameters an insert may use
        try:
            if len(keys) > limit:
                conn.execute("BEGIN IMMEDIATE")
            for start in range(0, len(keys), limit):
                part = list(keys[start:start + limit])
                size = _padded(len(part), limit)
                conn.execute(_delete_keys(size), part + [None] * (size - len(part)))
            if conn.in_transaction:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(conn)
            raise self._fail(f"cannot remove {len(keys)} job(s): {_explain(exc)}") from exc
        if self.max_size is not None:
            self._checkpoint(conn)

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
