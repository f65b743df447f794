"""The harp records in the SQLite queue file: tables ``harp_calls``, ``harp_stream``, ``harp_meta``.

Owns :class:`SqliteHarpStore`. It opens its own connection to the file the queue backend
(``sqlite.py``) has already opened and locked (the engine loads the queue first, so a new file
gets the queue's identity before these tables appear). WAL mode lets both connections work
side by side; SQLite serialises their writes (``busy_timeout``). The tables are created with
``CREATE TABLE IF NOT EXISTS`` and versioned by the ``harp_meta`` row ``schema``, apart from
the queue's ``user_version``. Durable like the queue: ``synchronous=FULL``, one transaction
per batch. Must not import the broker, the harp side or the network layer.
"""

from __future__ import annotations

import os
import sqlite3

from gear.server.storage.base import StorageError
from gear.server.storage.harp import HARP_SCHEMA_VERSION, HarpBatch, HarpRow, HarpStore

__all__ = ["SqliteHarpStore"]

_COLUMNS = ("id", "host", "procedure", "arguments", "info", "queue", "concurrency", "timeout",
            "max_exec_time", "submit", "start", "end_time", "reply")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS harp_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS harp_calls (id TEXT PRIMARY KEY, host TEXT NOT NULL,"
    " procedure TEXT NOT NULL, arguments TEXT NOT NULL, info TEXT NOT NULL, queue TEXT,"
    " concurrency INTEGER NOT NULL, timeout REAL, max_exec_time REAL, submit REAL NOT NULL,"
    " start REAL, end_time REAL, reply TEXT)",
    "CREATE TABLE IF NOT EXISTS harp_stream (id TEXT NOT NULL, n INTEGER NOT NULL,"
    " data TEXT NOT NULL, PRIMARY KEY (id, n)) WITHOUT ROWID",
)
_SAVE = (f"INSERT OR REPLACE INTO harp_calls ({', '.join(_COLUMNS)}) "
         f"VALUES ({', '.join('?' * len(_COLUMNS))})")


class SqliteHarpStore(HarpStore):
    """Harp records in the SQLite file at ``path`` (the queue's file)."""

    name = "sqlite"

    def __init__(self, path: str | os.PathLike[str], busy_timeout: float = 5.0) -> None:
        self.path = os.fspath(path)
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None

    def _fail(self, what: str, exc: BaseException) -> StorageError:
        return StorageError(f"sqlite harp records {os.path.abspath(self.path)}: {what}: {exc}")

    def load(self) -> tuple[list[HarpRow], dict[str, list[str]]]:
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._fail("cannot open", exc) from exc
        self._conn = conn
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            row = conn.execute("SELECT value FROM harp_meta WHERE key = 'schema'").fetchone()
            if row is None:
                conn.execute("INSERT INTO harp_meta VALUES ('schema', ?)", (HARP_SCHEMA_VERSION,))
            elif row[0] != HARP_SCHEMA_VERSION:
                raise StorageError(f"sqlite harp records {self.path}: schema version {row[0]},"
                                   f" this geard reads version {HARP_SCHEMA_VERSION}")
            conn.execute("COMMIT")
            rows = [HarpRow(*r) for r in conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM harp_calls ORDER BY submit")]
            streams: dict[str, list[str]] = {}
            for job_id, data in conn.execute("SELECT id, data FROM harp_stream ORDER BY id, n"):
                streams.setdefault(job_id, []).append(data)
        except BaseException as exc:
            self.close()
            if isinstance(exc, StorageError) or not isinstance(exc, sqlite3.Error):
                raise
            raise self._fail("cannot read", exc) from exc
        return rows, streams

    def write(self, batch: HarpBatch) -> None:
        conn = self._conn
        if conn is None:
            raise StorageError(f"sqlite harp records {self.path}: not open")
        deletes = [(job_id,) for job_id in batch.deletes]
        try:
            conn.execute("BEGIN IMMEDIATE")
            if batch.saves:
                conn.executemany(_SAVE, batch.saves.values())
            if batch.stream:
                conn.executemany("INSERT OR IGNORE INTO harp_stream VALUES (?, ?, ?)",
                                 batch.stream)
            if deletes:
                conn.executemany("DELETE FROM harp_calls WHERE id = ?", deletes)
                conn.executemany("DELETE FROM harp_stream WHERE id = ?", deletes)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise self._fail(f"cannot store {len(batch)} change(s)", exc) from exc

    def size(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(self.path + suffix)
            except OSError:
                pass
        return total

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass
