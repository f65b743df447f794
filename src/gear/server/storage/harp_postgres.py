"""The harp records in the queue's PostgreSQL database: tables ``<queue>_harp_calls`` and
``<queue>_harp_stream`` beside the queue table (``?table=``, default ``gear_queue``).

Owns :class:`PostgresHarpStore`: its own connection (psycopg 3), ``CREATE TABLE IF NOT EXISTS``
(the queue table and its upgrades are untouched; the calls table's comment carries the harp
schema version), one transaction per batch with ``executemany``, reconnecting at the next batch
after a lost connection. Must not import the broker, the harp side or the network layer.
"""

from __future__ import annotations

from typing import Any

from gear.server.storage.base import StorageError
from gear.server.storage.harp import HARP_SCHEMA_VERSION, HarpBatch, HarpRow, HarpStore
from gear.server.storage.postgres import import_psycopg, redact

__all__ = ["PostgresHarpStore"]

_COLUMNS = ("id", "host", "procedure", "arguments", "info", "queue", "concurrency", "timeout",
            "max_exec_time", "submit", "start", "end_time", "reply")
_MARKER = f"geard harp calls v{HARP_SCHEMA_VERSION}"


class PostgresHarpStore(HarpStore):
    """Harp records in the database of ``conninfo``, tables named after the queue ``table``."""

    name = "postgres"

    def __init__(self, conninfo: str, table: str = "gear_queue") -> None:
        self._pg = import_psycopg()
        sql = self._pg.sql
        *schema, base = table.split(".")
        self.conninfo = conninfo
        self.calls_name = ".".join([*schema, base + "_harp_calls"])
        self._calls = sql.Identifier(*schema, base + "_harp_calls")
        self._stream = sql.Identifier(*schema, base + "_harp_stream")
        self._conn: Any = None
        cols = sql.SQL(", ").join(map(sql.Identifier, _COLUMNS))
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in _COLUMNS[1:])
        self._save = sql.SQL(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}").format(
            self._calls, cols, sql.SQL(", ").join([sql.Placeholder()] * len(_COLUMNS)), updates)
        self._append = sql.SQL(
            "INSERT INTO {} (id, n, data) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING").format(
            self._stream)
        self._delete_calls = sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(self._calls)
        self._delete_stream = sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(self._stream)

    def _fail(self, what: str, exc: BaseException) -> StorageError:
        return StorageError(f"postgres harp records {self.calls_name} "
                            f"({redact(self.conninfo)}): {what}: {str(exc).strip()}")

    def _connect(self) -> Any:
        pg = self._pg
        try:
            return pg.connect(self.conninfo, autocommit=False, connect_timeout=10,
                              application_name="geard harp records")
        except pg.Error as exc:
            raise self._fail("cannot connect", exc) from exc

    def load(self) -> tuple[list[HarpRow], dict[str, list[str]]]:
        pg, sql = self._pg, self._pg.sql
        conn = self._conn = self._connect()
        try:
            name = self._calls.as_string(conn)
            conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id TEXT PRIMARY KEY, host TEXT NOT NULL,"
                " procedure TEXT NOT NULL, arguments TEXT NOT NULL, info TEXT NOT NULL,"
                " queue TEXT, concurrency INTEGER NOT NULL, timeout DOUBLE PRECISION,"
                " max_exec_time DOUBLE PRECISION, submit DOUBLE PRECISION NOT NULL,"
                " start DOUBLE PRECISION, end_time DOUBLE PRECISION, reply TEXT)").format(
                self._calls))
            conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id TEXT NOT NULL, n INTEGER NOT NULL,"
                " data TEXT NOT NULL, PRIMARY KEY (id, n))").format(self._stream))
            oid = conn.execute("SELECT to_regclass(%s)::oid", (name,)).fetchone()[0]
            comment = conn.execute("SELECT obj_description(%s, 'pg_class')",
                                   (oid,)).fetchone()[0]
            if comment is None:
                conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
                    self._calls, sql.Literal(_MARKER)))
            elif comment != _MARKER:
                raise StorageError(f"postgres harp records: table {name} has comment "
                                   f"{comment!r}, expected {_MARKER!r}; refusing to use it")
            rows = [HarpRow(*r) for r in conn.execute(sql.SQL(
                "SELECT {} FROM {} ORDER BY submit").format(
                sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)), self._calls))]
            streams: dict[str, list[str]] = {}
            for job_id, data in conn.execute(sql.SQL(
                    "SELECT id, data FROM {} ORDER BY id, n").format(self._stream)):
                streams.setdefault(job_id, []).append(data)
            conn.commit()
        except BaseException as exc:
            self.close()
            if isinstance(exc, pg.Error):
                raise self._fail("cannot read", exc) from exc
            raise
        return rows, streams

    def write(self, batch: HarpBatch) -> None:
        pg = self._pg
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            self._conn = self._connect()
        conn = self._conn
        try:
            with conn.cursor() as cur:
                if batch.saves:
                    cur.executemany(self._save, list(batch.saves.values()))
                if batch.stream:
                    cur.executemany(self._append, batch.stream)
                if batch.deletes:
                    ids = list(batch.deletes)
                    cur.execute(self._delete_calls, (ids,))
                    cur.execute(self._delete_stream, (ids,))
            conn.commit()
        except pg.Error as exc:
            try:
                conn.rollback()
            except pg.Error:
                self.close()
            raise self._fail(f"cannot store {len(batch)} change(s)", exc) from exc

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except self._pg.Error:
                pass
