"""PostgreSQL backend specifics, against a real server: outages, reconnects, foreign tables."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from pathlib import Path

import pytest

from gear.errors import ConfigurationError
from gear.server.storage import StorageError, StoredJob, open_storage
from gear.server.storage.postgres import PostgresStorage
from gear.server.storage.writer import StorageWriter
from tests.support.postgres import PostgresServer

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (the test extra has it)")
sql = psycopg.sql

pytestmark = [pytest.mark.postgres, pytest.mark.interop]


def job(key: int) -> StoredJob:
    return StoredJob(key, b"fn", b"", b"\x00payload %d\x00" % key)


def open_pg(url: str) -> PostgresStorage:
    store = open_storage(url)
    assert isinstance(store, PostgresStorage)
    return store


def test_server_stopped_mid_run_fails_batches_then_recovers(
        postgres_server: PostgresServer, pg_url: str) -> None:
    storage = open_pg(pg_url)

    async def submit(writer: StorageWriter, key: int) -> BaseException | None:
        result: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        writer.add(job(key), result.set_result)
        return await asyncio.wait_for(result, 30)

    async def main() -> list[BaseException | None]:
        writer = StorageWriter(storage)
        await writer.start()
        outcomes = [await submit(writer, 1)]
        await asyncio.to_thread(postgres_server.stop, "immediate")  # a crash, not a shutdown
        try:
            outcomes.append(await submit(writer, 2))   # the stale connection fails ...
            outcomes.append(await submit(writer, 3))   # ... and reconnecting fails too
        finally:
            await asyncio.to_thread(postgres_server.start)
        outcomes.append(await submit(writer, 4))       # the same writer recovers
        writer.remove(1)
        await writer.close()
        return outcomes

    first, second, third, fourth = asyncio.run(main())
    assert first is None and fourth is None
    assert isinstance(second, StorageError) and isinstance(third, StorageError)
    assert "cannot" in str(second) and "cannot connect" in str(third)
    again = open_pg(pg_url)
    assert again.load() == [job(4)]
    again.close()


def test_restart_between_batches_is_invisible(postgres_server: PostgresServer, pg_url: str) -> None:
    store = open_pg(pg_url)
    store.load()
    store.add([job(1)])
    stale = store._conn
    postgres_server.stop("fast")
    postgres_server.start()
    # The idle connection died with the old server; nothing was sent on it yet, so the batch is
    # retried once on a fresh connection instead of failing a client.
    store.add([job(2), job(3)])
    assert store._conn is not stale  # it really reconnected
    store.remove([2])
    store.close()
    again = open_pg(pg_url)
    assert again.load() == [job(1), job(3)]
    again.close()


def test_network_cut_leaves_a_stale_session_that_is_taken_over(
        pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    store = open_pg(pg_url)
    store.load()
    store.add([job(1)])
    old_pid = store._conn.info.backend_pid
    # Cut the "network": the client's socket is replaced by a socket whose peer is gone (its
    # next request fails) while a duplicate keeps the server's end open, so the old session
    # still holds the lock, as it would until TCP keepalives noticed a real cut.
    fd = store._conn.pgconn.socket
    server_end = os.dup(fd)
    dead, peer = socket.socketpair()
    peer.close()
    try:
        os.dup2(dead.fileno(), fd)
        with caplog.at_level(logging.WARNING, logger="gear.server.storage"):
            store.add([job(2)])  # fails on the dead socket, reconnects, takes over, retries
        assert f"terminating our stale session (backend {old_pid})" in caplog.text
        assert store._conn.info.backend_pid != old_pid
        with psycopg.connect(store.conninfo) as conn:
            alive = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                 (old_pid,)).fetchone()
        assert alive == (0,)
    finally:
        dead.close()
        os.close(server_end)
        store.close()
    again = open_pg(pg_url)
    assert again.load() == [job(1), job(2)]
    again.close()


def test_foreign_table_is_refused_and_left_alone(pg_url: str) -> None:
    store = open_pg(pg_url)
    with psycopg.connect(store.conninfo, autocommit=True) as conn:
        # gearmand's postgres queue table (docs/protocol.md §4.2)
        conn.execute(sql.SQL(
            "CREATE TABLE {} (unique_key VARCHAR(64), function_name VARCHAR(255), "
            "priority INTEGER, data BYTEA, when_to_run INTEGER)").format(
                sql.Identifier(store.table)))
        conn.execute(sql.SQL("INSERT INTO {} VALUES ('u', 'f', 1, 'x', 0)").format(
            sql.Identifier(store.table)))
    with pytest.raises(StorageError, match="not a geard queue"):
        store.load()
    with psycopg.connect(store.conninfo) as conn:
        count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(store.table))).fetchone()
        assert count == (1,)


def test_schema_1_table_is_upgraded_in_place(pg_url: str) -> None:
    """A table written before stored jobs had a reducer keeps its jobs and gains the column."""
    store = open_pg(pg_url)
    table = sql.Identifier(store.table)
    with psycopg.connect(store.conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL(
            "CREATE TABLE {} (key BIGINT PRIMARY KEY, function BYTEA NOT NULL,"
            " unique_key BYTEA NOT NULL, priority SMALLINT NOT NULL,"
            " when_to_run BIGINT NOT NULL, data BYTEA NOT NULL)").format(table))
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS 'geard queue schema 1'").format(table))
        conn.execute(sql.SQL("INSERT INTO {} VALUES (7, 'f', 'u', 0, 0, 'd')").format(table))
    assert store.load() == [StoredJob(7, b"f", b"u", b"d", 0, 0, None)]
    store.add([StoredJob(8, b"f", b"", b"d", 1, 0, b"r")])
    store.close()
    again = open_pg(pg_url)
    try:
        assert [j.reducer for j in again.load()] == [None, b"r"]
    finally:
        again.close()


def test_table_names_are_identifiers_not_sql(postgres_server: PostgresServer) -> None:
    with psycopg.connect(open_pg(postgres_server.url).conninfo, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS queues")
    for table in ('we"ird; DROP TABLE x; --', "queues.jobs", "MixedCase"):
        url = f"{postgres_server.url}&table={table.replace(';', '%3B').replace(' ', '%20')}"
        store = open_pg(url)
        assert store.table == table
        assert store.load() == []
        store.add([job(1), job(2)])
        store.remove([1])
        store.close()
        again = open_pg(url)
        assert again.load() == [job(2)]
        again.close()


def test_only_one_server_per_table(pg_url: str) -> None:
    first = open_pg(pg_url)
    first.load()
    try:
        with pytest.raises(StorageError, match="in use by another server"):
            open_pg(pg_url).load()
    finally:
        first.close()
    second = open_pg(pg_url)
    assert second.load() == []
    second.close()


def test_unreachable_server_fails_load_without_leaking_the_password(tmp_path: Path) -> None:
    store = open_pg(f"postgresql://geard:s3cret@/jobs?host={tmp_path}&connect_timeout=2")
    with pytest.raises(StorageError) as info:
        store.load()
    assert "cannot connect" in str(info.value)
    assert "s3cret" not in str(info.value) and "s3cret" not in repr(store)


def test_missing_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg -> ImportError
    with pytest.raises(ConfigurationError, match=r"geartrain\[postgres\]"):
        open_storage("postgresql:///jobs")
