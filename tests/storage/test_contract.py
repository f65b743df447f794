"""The storage contract (base.py), one suite run against memory, sqlite and postgres.

Every backend must: round-trip every field byte for byte, never let jobs with the same empty
unique overwrite each other (gearmand's sqlite bug, docs/protocol.md §4.1), store a
batch all-or-nothing, ignore unknown keys on remove, return jobs oldest (lowest key) first, and,
for the persistent ones, keep everything across close and reopen. The last tests drive each
backend through the group-commit StorageWriter, as the server does.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from gear.server.storage import (
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_NORMAL,
    Storage,
    StorageError,
    StoredJob,
)
from gear.server.storage.writer import StorageWriter
from tests.storage.conftest import Backend

ALL_BYTES = bytes(range(256))


def job(key: int, **fields: object) -> StoredJob:
    values: dict[str, object] = {"function": b"fn", "unique": b"u%d" % key, "data": b"d%d" % key}
    values.update(fields)
    return StoredJob(key=key, **values)  # type: ignore[arg-type,unused-ignore]


def reopen(backend: Backend, store: Storage) -> Storage:
    """Close ``store`` and return a new handle on the same data (the same object for memory)."""
    store.close()
    return backend.open()


def fresh_load(backend: Backend) -> list[StoredJob]:
    """What a restarted server would replay: open a new handle, load, close it."""
    store = backend.open()
    try:
        return store.load()
    finally:
        store.close()


def test_round_trip_every_field_binary_safe(backend: Backend, storage: Storage) -> None:
    jobs = [
        StoredJob(1, b"resize", b"uuid-1", b"\x00data\x00with\x00NULs\x00", PRIORITY_HIGH, 0),
        StoredJob(2, b"f\xff\xfe\x01", b"\x01\xff unique", ALL_BYTES * 3, PRIORITY_NORMAL, 0),
        StoredJob(3, b"later", b"", b"", PRIORITY_LOW, 4102444800),  # epoch job, year 2100
        StoredJob(4, b"big", b"x" * 64, ALL_BYTES * 4096, PRIORITY_NORMAL, 1),  # 1 MiB payload
        StoredJob(5, "h\u00e9".encode(), "\u00fc".encode(), b"\r\n\x00", PRIORITY_LOW, 7),
    ]
    storage.add(jobs)
    storage.close()
    loaded = fresh_load(backend)
    assert loaded == jobs
    assert all(type(field) is bytes for j in loaded for field in (j.function, j.unique, j.data))


def test_reducer_round_trips_and_defaults_to_none(backend: Backend, storage: Storage) -> None:
    jobs = [
        StoredJob(1, b"count", b"u1", b"data", PRIORITY_NORMAL, 0, b"reduce\x00\xff"),
        StoredJob(2, b"count", b"u2", b"data", PRIORITY_NORMAL, 0, b""),  # empty, not None
        job(3),
    ]
    assert jobs[2].reducer is None
    storage.add(jobs)
    storage.close()
    loaded = fresh_load(backend)
    assert loaded == jobs
    assert type(loaded[0].reducer) is bytes and loaded[1].reducer == b""
    assert loaded[2].reducer is None


def test_empty_uniques_never_collide(backend: Backend, storage: Storage) -> None:
    # gearmand's sqlite queue keyed rows on (unique, function) with INSERT OR REPLACE, so the
    # second background job with an empty unique replaced the first (docs/protocol.md §4.1).
    same = [job(k, unique=b"", data=b"payload %d" % k) for k in (1, 2, 3)]
    dash = [job(k, unique=b"-", data=b"dash %d" % k) for k in (4, 5)]
    storage.add(same[:2])
    storage.add([same[2], *dash])
    storage.close()
    assert fresh_load(backend) == same + dash


def test_remove_deletes_only_the_given_keys(storage: Storage) -> None:
    jobs = [job(k) for k in range(1, 7)]
    storage.add(jobs)
    storage.remove([2, 5])
    assert [j.key for j in storage_load(storage)] == [1, 3, 4, 6]


def test_remove_unknown_and_empty_keys_is_harmless(storage: Storage) -> None:
    storage.add([job(1)])
    storage.remove([404, 405])
    storage.remove([])
    storage.remove([1])
    storage.remove([1])  # twice: the write-behind delete may repeat after a failed batch
    assert storage_load(storage) == []


def test_batch_is_all_or_nothing(storage: Storage) -> None:
    storage.add([job(1)])
    with pytest.raises(StorageError):
        storage.add([job(2), job(1, data=b"duplicate key")])
    with pytest.raises(StorageError):
        storage.add([job(3), job(3)])
    storage.add([job(4)])  # the store is still usable after a failed batch
    assert storage_load(storage) == [job(1), job(4)]


def test_large_batch_and_key_order(backend: Backend, storage: Storage) -> None:
    big = [job(k, data=b"%08d" % k) for k in range(100, 20100)]
    storage.add(big[10000:])
    storage.add(big[:10000])  # a later batch with lower keys: load still sorts by key
    storage.add([job(5)])
    storage.close()
    assert fresh_load(backend) == [job(5), *big]


def test_persistent_across_close_and_reopen(backend: Backend, storage: Storage) -> None:
    # For memory, "reopen" is the same object: the store outlives a closed writer in-process.
    storage.add([job(1), job(2), job(3)])
    storage.remove([2])
    again = reopen(backend, storage)
    assert again.load() == [job(1), job(3)]
    again.add([job(4)])
    again.remove([1])
    third = reopen(backend, again)
    try:
        assert third.load() == [job(3), job(4)]
    finally:
        third.close()


def storage_load(storage: Storage) -> list[StoredJob]:
    """The backend's current contents, read through a second handle where there is one."""
    if storage.name == "memory":
        return storage.load()
    # Reading through the open handle would need load() twice; peek with a fresh one instead.
    return _peek(storage)


def _peek(storage: Storage) -> list[StoredJob]:
    if storage.name == "sqlite":
        from gear.server.storage.sqlite import SqliteStorage, read_queue

        assert isinstance(storage, SqliteStorage)
        rows = [tuple(j)[:6] for j in read_queue(storage.path)]
    else:
        import psycopg
        from psycopg import sql

        from gear.server.storage.postgres import PostgresStorage

        assert isinstance(storage, PostgresStorage)
        with psycopg.connect(storage.conninfo) as conn:
            rows = conn.execute(sql.SQL(
                "SELECT key, function, unique_key, data, priority, when_to_run FROM {} "
                "ORDER BY key").format(sql.Identifier(*storage.table.split(".")))).fetchall()
    return [StoredJob(k, bytes(f), bytes(u), bytes(d), p, w) for k, f, u, d, p, w in rows]


# -- through the writer, as the server uses it ---------------------------------------------


def test_concurrent_adds_through_the_writer(backend: Backend) -> None:
    store = backend.open()
    calls: list[tuple[int, BaseException | None, int]] = []
    batches: list[int] = []

    async def main() -> list[StoredJob]:
        loop_thread = threading.get_ident()
        writer = StorageWriter(store, after_batch=lambda: batches.append(len(calls)))
        assert await writer.start() == []
        finished = asyncio.Event()
        total = 8 * 250

        def done_for(key: int) -> Callable[[BaseException | None], None]:
            def done(exc: BaseException | None) -> None:
                calls.append((key, exc, threading.get_ident() - loop_thread))
                if len(calls) == total:
                    finished.set()
            return done

        async def producer(n: int) -> None:
            for i in range(250):
                key = 1 + n + 8 * i
                writer.add(job(key), done_for(key))
                if i % 25 == 0:
                    await asyncio.sleep(0)  # let other producers and batches interleave

        await asyncio.gather(*(producer(n) for n in range(8)))
        await asyncio.wait_for(finished.wait(), 30)
        for key in range(1, total + 1, 2):
            writer.remove(key)
        await writer.close()
        assert writer.stats.jobs == total and writer.stats.failed_jobs == 0
        assert writer.stats.batches == len(batches)
        assert writer.stats.removed == total // 2
        return fresh_load(backend)

    loaded = asyncio.run(main())
    assert sorted(key for key, _, _ in calls) == list(range(1, 2001))
    assert all(exc is None and same_thread == 0 for _, exc, same_thread in calls)
    assert batches[-1] == len(calls)  # after_batch runs after its batch's done() calls
    assert [j.key for j in loaded] == list(range(2, 2001, 2))


def test_writer_replays_what_a_previous_writer_stored(backend: Backend) -> None:
    async def session(adds: list[StoredJob], removes: list[int]) -> list[StoredJob]:
        writer = StorageWriter(backend.open())
        replay = await writer.start()
        results: list[BaseException | None] = []
        all_done = asyncio.Event()

        def done(exc: BaseException | None) -> None:
            results.append(exc)
            if len(results) == len(adds):
                all_done.set()

        for stored in adds:
            writer.add(stored, done)
        if adds:
            await asyncio.wait_for(all_done.wait(), 10)
        for key in removes:
            writer.remove(key)
        await writer.close()
        assert results == [None] * len(adds)
        return replay

    assert asyncio.run(session([job(1), job(2, unique=b""), job(3, unique=b"")], [1])) == []
    assert asyncio.run(session([], [])) == [job(2, unique=b""), job(3, unique=b"")]
