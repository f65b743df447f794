"""The PostgreSQL storage backend (psycopg 3), for deployments that keep state in a shared database.

Owns :class:`PostgresStorage` and its table. Must not import the broker, the network layer or
asyncio (every method blocks; the storage writer thread calls them). psycopg is an optional
dependency, imported when a ``postgres://`` queue is configured, with an error naming the
``postgres`` extra.

What it guarantees, and how:

* Parameterised SQL only; the table name is composed with ``psycopg.sql.Identifier`` (gearmand
  1.1 built its DELETE by string concatenation: docs/protocol.md §4.2).
* One transaction per batch (``executemany``, which psycopg pipelines into one round trip) and
  PostgreSQL's ``synchronous_commit`` default: COMMIT returns after the WAL is flushed. Deletes
  are write-behind, so their transaction runs with ``synchronous_commit = off``.
* Our own ``key BIGINT PRIMARY KEY``; function, unique, data and reducer are ``BYTEA``
  (binary-safe), so empty uniques never collide (docs/protocol.md §4.1).
* The table's comment names its schema version; a table of version 1 (no ``reducer`` column) or
  2 (no dead-letter columns) is upgraded in place at :meth:`load`, one version after the other.
* The dead-letter list (base.py) lives in the same table: ``died`` is NULL for a live job and
  the Unix time its retries ran out for a dead one; inserts leave both dead-letter columns to
  their defaults, so the submit path is unchanged.
* A lost connection (server restart, network cut) is reconnected on the next batch. gearmand 1.1
  never reconnected (#390). If a stale connection fails *before* COMMIT was sent, nothing was
  written, so the batch is retried once on a fresh connection; if that fails too, or the failure
  was during COMMIT (outcome unknown), the batch raises :class:`StorageError`.
* The table carries a comment naming our schema version; an existing table without it (a
  gearmand ``queue`` table, anything else) makes :meth:`load` raise :class:`StorageError`.
* One server per table: a session-level advisory lock derived from (database, table). A second
  server on the same table fails at load. Our own stale session (left behind by a network cut)
  is recognised and terminated on reconnect (see ``_lock``). Several servers can share one
  PostgreSQL database by giving each its own ``?table=`` (jobs of a table are replayed by its
  server only).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Sequence
from typing import Any

from gear.errors import ConfigurationError
from gear.server.storage.base import (
    DeadJob,
    Storage,
    StorageError,
    StorageLockedError,
    StoredJob,
)

log = logging.getLogger("gear.server.storage")

SCHEMA_VERSION = 3
_MARKER = f"geard queue schema {SCHEMA_VERSION}"
#: Markers of our older schemas -> (the statement that upgrades them, the next marker).
_UPGRADES = {
    "geard queue schema 1": ("ALTER TABLE {} ADD COLUMN reducer BYTEA", "geard queue schema 2"),
    "geard queue schema 2": ("ALTER TABLE {} ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0,"
                             " ADD COLUMN died DOUBLE PRECISION", _MARKER),
}
DEFAULT_TABLE = "gear_queue"


def import_psycopg() -> Any:
    """Return the ``psycopg`` module, or raise :class:`ConfigurationError` naming the extra."""
    try:
        import psycopg
    except ImportError as exc:
        raise ConfigurationError(
            "the postgres queue needs psycopg 3: pip install 'geartrain[postgres]'") from exc
    return psycopg


class PostgresStorage(Storage):
    """Background jobs in one PostgreSQL table.

    ``conninfo`` is anything libpq accepts (``postgresql://user@host/db``, ``host=... dbname=...``);
    ``table`` may be schema-qualified (``"queues.gear"``). ``connect_timeout`` (seconds) bounds
    each (re)connection attempt unless the conninfo sets its own.
    """

    name = "postgres"

    def __init__(self, conninfo: str, table: str = DEFAULT_TABLE, *,
                 connect_timeout: int = 10) -> None:
        self._pg = import_psycopg()
        parts = table.split(".")
        if not table or len(parts) > 2 or not all(parts):
            raise ConfigurationError(f"invalid postgres queue table name {table!r}")
        self.conninfo = conninfo
        self.table = table
        self.connect_timeout = connect_timeout
        sql = self._pg.sql
        self._table = sql.Identifier(*parts)
        self._conn: Any = None
        self._lock_key = 0
        self._backend_pid = 0
        # Names this instance's sessions, so that a stale one can be told from another server's.
        self._app_name = f"geard queue {socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._insert = sql.SQL(
            "INSERT INTO {} (key, function, unique_key, priority, when_to_run, data, reducer) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)").format(self._table)
        self._delete = sql.SQL("DELETE FROM {} WHERE key = ANY(%s)").format(self._table)
        self._bury = sql.SQL("UPDATE {} SET attempts = %s, died = %s "
                             "WHERE key = %s AND died IS NULL").format(self._table)
        self._revive = sql.SQL("UPDATE {} SET attempts = 0, died = NULL "
                               "WHERE key = ANY(%s) AND died IS NOT NULL").format(self._table)

    def __repr__(self) -> str:
        return f"<PostgresStorage {redact(self.conninfo)} table={self.table!r}>"

    @property
    def where(self) -> str:
        return f"postgres table {self.table} ({redact(self.conninfo)})"

    def _fail(self, what: str, exc: BaseException | None = None,
              error: type[StorageError] = StorageError) -> StorageError:
        detail = f": {str(exc).strip()}" if exc is not None else ""
        where = f"postgres queue {self.table} ({redact(self.conninfo)})"
        return error(f"{where}: {what}{detail}")

    # -- connection ----------------------------------------------------------------------

    def _connect(self) -> Any:
        pg = self._pg
        kwargs: dict[str, Any] = {"autocommit": False, "application_name": self._app_name}
        if "connect_timeout" not in self.conninfo:
            kwargs["connect_timeout"] = self.connect_timeout
        try:
            conn = pg.connect(self.conninfo, **kwargs)
        except pg.Error as exc:
            raise self._fail("cannot connect", exc) from exc
        try:
            if not self._lock_key:
                db = conn.info.dbname or ""
                digest = hashlib.blake2b(f"geard-queue\0{db}\0{self.table}".encode(),
                                         digest_size=8).digest()
                self._lock_key = int.from_bytes(digest, "big", signed=True)
            self._lock(conn)
        except pg.Error as exc:
            conn.close()
            raise self._fail("cannot lock the queue table", exc) from exc
        except StorageError:
            conn.close()
            raise
        self._backend_pid = conn.info.backend_pid
        return conn

    def _lock(self, conn: Any) -> None:
        """Take the table's advisory lock on ``conn``.

        After a network cut the server may keep our previous session (and its lock) alive until
        TCP keepalives notice, hours later by default. That session is recognised by its backend
        pid and our per-instance application_name, and terminated; any other holder is another
        server, and we refuse to share the table with it.
        """
        key = self._lock_key
        for _attempt in range(40):
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            conn.commit()
            if row and row[0]:
                return
            # A bigint advisory key shows as classid = high half, objid = low half, objsubid 1.
            holder = conn.execute(
                "SELECT l.pid, a.application_name FROM pg_locks l "
                "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                "AND l.classid = %s AND l.objid = %s",
                ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)).fetchone()
            conn.commit()
            if holder is not None:
                pid, app = holder
                if pid != self._backend_pid or app != self._app_name:
                    raise self._fail(f"in use by another server (advisory lock held by "
                                     f"backend {pid}, {app!r})", error=StorageLockedError)
                log.warning("postgres queue %s: terminating our stale session (backend %d)",
                            self.table, pid)
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                conn.commit()
            time.sleep(0.05)  # the terminated backend exits asynchronously
        raise self._fail("in use by another server (advisory lock still held)",
                         error=StorageLockedError)

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _usable(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.closed and not conn.broken

    # -- the contract --------------------------------------------------------------------

    def load(self) -> list[StoredJob]:
        if self._conn is not None:
            raise StorageError(f"postgres queue {self.table}: already open")
        pg = self._pg
        self._conn = self._connect()
        conn = self._conn
        try:
            self._ensure_table(conn)
            rows = conn.execute(
                self._pg.sql.SQL(
                    "SELECT key, function, unique_key, priority, when_to_run, data, reducer "
                    "FROM {} WHERE died IS NULL ORDER BY key").format(self._table)).fetchall()
            conn.commit()
        except StorageError:
            self._drop_connection()
            raise
        except pg.Error as exc:
            self._drop_connection()
            raise self._fail("cannot read the queue", exc) from exc
        return [_record(row) for row in rows]

    def load_dead(self) -> list[DeadJob]:
        pg = self._pg
        if not self._usable():
            self._drop_connection()
            self._conn = self._connect()
        conn = self._conn
        try:
            rows = conn.execute(self._pg.sql.SQL(
                "SELECT key, function, unique_key, priority, when_to_run, data, reducer, "
                "attempts, died FROM {} WHERE died IS NOT NULL ORDER BY key").format(
                    self._table)).fetchall()
            conn.commit()
        except pg.Error as exc:
            self._drop_connection()
            raise self._fail("cannot read the dead-letter list", exc) from exc
        return [DeadJob(_record(row), int(row[7]), float(row[8])) for row in rows]

    def _ensure_table(self, conn: Any) -> None:
        sql = self._pg.sql
        name = self._table.as_string(conn)
        oid = conn.execute("SELECT to_regclass(%s)::oid", (name,)).fetchone()[0]
        if oid is None:
            conn.execute(sql.SQL(
                "CREATE TABLE {} ("
                " key BIGINT PRIMARY KEY,"
                " function BYTEA NOT NULL,"
                " unique_key BYTEA NOT NULL,"
                " priority SMALLINT NOT NULL CHECK (priority IN (0, 1, 2)),"
                " when_to_run BIGINT NOT NULL,"
                " data BYTEA NOT NULL,"
                " reducer BYTEA,"
                " attempts INTEGER NOT NULL DEFAULT 0,"
                " died DOUBLE PRECISION)").format(self._table))
            conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
                self._table, sql.Literal(_MARKER)))
            return
        comment = conn.execute("SELECT obj_description(%s, 'pg_class')", (oid,)).fetchone()[0]
        if comment in _UPGRADES:  # our older schema: upgrade it (in load's transaction)
            while comment in _UPGRADES:
                statement, comment = _UPGRADES[comment]
                conn.execute(sql.SQL(statement).format(self._table))
            conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
                self._table, sql.Literal(_MARKER)))
            return
        if comment != _MARKER:
            raise self._fail(
                f"table {name} exists but is not a geard queue (comment {comment!r}, expected "
                f"{_MARKER!r}); refusing to use it")

    def add(self, jobs: Sequence[StoredJob]) -> None:
        if not jobs:
            return
        rows = [(j.key, j.function, j.unique, j.priority, j.when, j.data, j.reducer)
                for j in jobs]
        self._run_batch(f"store {len(rows)} job(s)", self._insert, rows, durable=True)

    def remove(self, keys: Sequence[int]) -> None:
        if not keys:
            return
        self._run_batch(f"remove {len(keys)} job(s)", self._delete, [(list(keys),)],
                        durable=False)

    def bury(self, jobs: Sequence[DeadJob]) -> None:
        if not jobs:
            return
        rows = [(dead.attempts, dead.died, dead.job.key) for dead in jobs]
        self._run_batch(f"bury {len(rows)} job(s)", self._bury, rows, durable=False)

    def revive(self, keys: Sequence[int]) -> None:
        if not keys:
            return
        self._run_batch(f"revive {len(keys)} job(s)", self._revive, [(list(keys),)],
                        durable=False)

    def _run_batch(self, what: str, query: Any, params: list[tuple[Any, ...]],
                   *, durable: bool) -> None:
        pg = self._pg
        for attempt in (1, 2):
            fresh = not self._usable()
            if fresh:
                self._drop_connection()
                self._conn = self._connect()  # raises StorageError when the server is down
            conn = self._conn
            committing = False
            try:
                with conn.cursor() as cur:
                    if not durable:
                        cur.execute("SET LOCAL synchronous_commit = off")
                    cur.executemany(query, params)
                committing = True
                conn.commit()
                return
            except pg.Error as exc:
                # OperationalError is psycopg's "the connection or the server failed" (lost
                # socket, admin shutdown...): the session is not to be trusted any more.
                lost = isinstance(exc, pg.OperationalError) or conn.broken or conn.closed
                if lost:
                    self._drop_connection()
                else:
                    try:
                        conn.rollback()
                    except pg.Error:
                        self._drop_connection()
                # A connection that went stale while idle fails on its first statement, before
                # anything was committed: retry once on a new connection. Never after COMMIT was
                # sent (the outcome is unknown) and never on a fresh connection.
                if attempt == 1 and lost and not fresh and not committing:
                    continue
                raise self._fail(f"cannot {what}", exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        # Unlock explicitly: the server releases a closed session's locks only when its backend
        # has exited, a moment after close(), and a restarted geard could lose that race.
        if self._usable() and self._lock_key:
            try:
                self._conn.rollback()
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._lock_key,))
                self._conn.commit()
            except self._pg.Error:
                pass
        self._drop_connection()


def _record(row: Sequence[Any]) -> StoredJob:
    key, function, unique, priority, when, data, reducer = row[:7]
    return StoredJob(int(key), bytes(function), bytes(unique), bytes(data), int(priority),
                     int(when), None if reducer is None else bytes(reducer))


def redact(conninfo: str) -> str:
    """``conninfo`` without its password, for logs and error messages."""
    try:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo
    except ImportError:  # pragma: no cover - only called once psycopg imported
        return "<conninfo>"
    try:
        params = conninfo_to_dict(conninfo)
    except Exception:
        return "<invalid conninfo>"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **params)
