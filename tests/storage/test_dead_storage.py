"""The dead-letter part of the storage contract (base.py), on memory, sqlite and postgres.

Every backend must: keep a buried job out of ``load`` and in ``load_dead`` with its attempts
and time, across close and reopen; make a revived job live again under its key; delete a dead
job with ``remove``; ignore unknown keys; and the writer must apply bury, revive and remove in
the order they were made. Older schemas (version 2: no dead-letter columns) are upgraded.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gear.server.storage import DeadJob, Storage, StorageError, StoredJob
from gear.server.storage.sqlite import APPLICATION_ID, SCHEMA_VERSION, SqliteStorage
from gear.server.storage.writer import StorageWriter
from tests.storage.conftest import Backend
from tests.storage.test_contract import job, reopen


def dead(key: int, attempts: int = 5, died: float = 1_700_000_000.5) -> DeadJob:
    return DeadJob(job(key), attempts, died)


def test_bury_moves_a_job_to_the_dead_list_and_it_survives_reopen(
        backend: Backend, storage: Storage) -> None:
    storage.add([job(1), job(2, reducer=b"r", priority=0), job(3)])
    storage.bury([dead(2, 5), DeadJob(job(99), 1, 1.0)])  # 99: unknown, ignored
    assert [d.job.key for d in storage.load_dead()] == [2]
    storage = reopen(backend, storage)
    try:
        assert [j.key for j in storage.load()] == [1, 3]
        assert storage.load_dead() == [dead(2, 5)._replace(job=job(2, reducer=b"r", priority=0))]
    finally:
        storage.close()


def test_revive_makes_it_live_under_its_key(backend: Backend, storage: Storage) -> None:
    storage.add([job(1), job(2)])
    storage.bury([dead(1), dead(2)])
    storage.revive([1, 42])
    storage.bury([dead(1, attempts=3)])  # buried again: the latest attempts count
    storage.revive([2])
    storage = reopen(backend, storage)
    try:
        assert storage.load() == [job(2)]
        assert [(d.job.key, d.attempts) for d in storage.load_dead()] == [(1, 3)]
    finally:
        storage.close()


def test_remove_deletes_dead_jobs_and_dead_keys_stay_taken(
        backend: Backend, storage: Storage) -> None:
    storage.add([job(1), job(2)])
    storage.bury([dead(1), dead(2)])
    with pytest.raises(StorageError):
        storage.add([job(2)])  # a dead job still holds its key
    storage.remove([2, 7])
    storage.add([job(3)])
    storage = reopen(backend, storage)
    try:
        assert storage.load() == [job(3)] and [d.job.key for d in storage.load_dead()] == [1]
    finally:
        storage.close()


def test_the_writer_applies_changes_in_order(backend: Backend) -> None:
    async def main() -> tuple[list[StoredJob], list[DeadJob]]:
        writer = StorageWriter(backend.open())
        await writer.start()
        stored = asyncio.Event()
        answers: list[BaseException | None] = []

        def done(exc: BaseException | None) -> None:
            answers.append(exc)
            if len(answers) == 4:
                stored.set()

        for key in (1, 2, 3, 4):
            writer.add(job(key), done)
        await asyncio.wait_for(stored.wait(), 10)
        writer.bury(dead(1))            # stays dead
        writer.bury(dead(2))
        writer.revive(2)                # live again
        writer.bury(dead(3))
        writer.remove(3)                # dropped from the dead list
        writer.remove(4)                # a finished job, as usual
        await writer.close()
        assert writer.stats.removed == 2
        again = StorageWriter(backend.open())
        live = await again.start()
        dead_list = again.dead
        await again.close()
        return live, dead_list

    live, dead_list = asyncio.run(main())
    assert live == [job(2)]
    assert [d.job.key for d in dead_list] == [1]


def _v2_queue(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE gear_queue (key INTEGER PRIMARY KEY, function BLOB NOT NULL,"
                     " unique_key BLOB NOT NULL, priority INTEGER NOT NULL,"
                     " when_to_run INTEGER NOT NULL, data BLOB NOT NULL, reducer BLOB)")
        conn.execute("INSERT INTO gear_queue VALUES (7, x'66', x'75', 0, 0, x'64', NULL)")
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute("PRAGMA user_version=2")
    conn.close()


def test_sqlite_schema_2_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    _v2_queue(path)
    store = SqliteStorage(path)
    assert store.load() == [StoredJob(7, b"f", b"u", b"d", 0, 0, None)]
    assert store.load_dead() == []
    store.bury([DeadJob(StoredJob(7, b"f", b"u", b"d", 0, 0, None), 5, 2.5)])
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    again = SqliteStorage(path)
    try:
        assert again.load() == []
        assert [(d.job.key, d.attempts, d.died) for d in again.load_dead()] == [(7, 5, 2.5)]
    finally:
        again.close()


@pytest.mark.postgres
@pytest.mark.interop
def test_postgres_schema_2_is_upgraded_in_place(pg_url: str) -> None:
    from tests.storage.test_postgres import open_pg, psycopg, sql

    store = open_pg(pg_url)
    table = sql.Identifier(store.table)
    with psycopg.connect(store.conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL(
            "CREATE TABLE {} (key BIGINT PRIMARY KEY, function BYTEA NOT NULL,"
            " unique_key BYTEA NOT NULL, priority SMALLINT NOT NULL,"
            " when_to_run BIGINT NOT NULL, data BYTEA NOT NULL, reducer BYTEA)").format(table))
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS 'geard queue schema 2'").format(table))
        conn.execute(sql.SQL("INSERT INTO {} VALUES (7, 'f', 'u', 0, 0, 'd', NULL)").format(
            table))
    assert store.load() == [StoredJob(7, b"f", b"u", b"d", 0, 0, None)]
    store.bury([DeadJob(StoredJob(7, b"f", b"u", b"d", 0, 0, None), 5, 2.5)])
    store.close()
    again = open_pg(pg_url)
    try:
        assert again.load() == []
        assert [(d.job.key, d.attempts, d.died) for d in again.load_dead()] == [(7, 5, 2.5)]
    finally:
        again.close()
