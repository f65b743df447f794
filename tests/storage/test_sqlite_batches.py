"""The SQLite queue's batch rows (storage/sqlite_batches.py): the encoding, what is stored
where, finishing, compaction, dead jobs, damaged rows, and tidying after a crash."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from gear.server.storage import DeadJob, StorageError, StoredJob
from gear.server.storage.sqlite import (
    BATCH_MAX_BYTES,
    BATCH_MIN,
    SqliteStorage,
    read_queue,
)
from gear.server.storage.sqlite_batches import BatchError, consecutive, decode, encode


def job(key: int, **kw: object) -> StoredJob:
    fields: dict[str, object] = dict(function=b"fn", unique=b"", data=b"d%d\x00\xff" % key)
    fields.update(kw)
    return StoredJob(key, **fields)  # type: ignore[arg-type]


def run(first: int, n: int = BATCH_MIN) -> list[StoredJob]:
    return [job(k) for k in range(first, first + n)]


def tables(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(path) as conn:
        return {name: conn.execute(f"SELECT * FROM {name} ORDER BY 1").fetchall()
                for name in ("gear_queue", "gear_batch", "gear_done")}


@pytest.fixture
def store(tmp_path: Path) -> SqliteStorage:
    s = SqliteStorage(tmp_path / "q.db")
    assert s.load() == []
    return s


def reopen(store: SqliteStorage) -> list[StoredJob]:
    store.close()
    again = SqliteStorage(store.path)
    try:
        return again.load()
    finally:
        again.close()


# -- the encoding ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 17, 300])
def test_every_field_round_trips(n: int) -> None:
    jobs = [StoredJob(100 + i, b"f\x00%d" % (i % 3), b"u\xff%d" % i if i % 2 else b"",
                      bytes(range(i % 256)), i % 3, (1_700_000_000 + i) if i % 4 == 1 else 0,
                      (b"r%d" % i if i % 5 == 2 else None) if n > 2 else None)
            for i in range(n)]
    assert consecutive(jobs)
    assert decode(100, encode(jobs)) == jobs
    plain = [job(k) for k in range(1, n + 1)]  # no run times, no reducers: their flags unset
    assert decode(1, encode(plain)) == plain


def test_only_consecutive_keys_make_a_batch() -> None:
    assert not consecutive([job(1), job(3), job(2)])
    assert not consecutive([job(1), job(1)])
    assert not consecutive([job(1), job(2), job(2), job(4)])  # right span, a key twice


@pytest.mark.parametrize(("damage", "message"), [
    (lambda b: b[:3], "truncated header"),
    (lambda b: b"\x02" + b[1:], "unknown batch format 2"),
    (lambda b: b[:1] + b"\x80" + b[2:], "unknown flags"),
    (lambda b: b[:6] + b"\x07" + b[7:], "bad priorities"),
    (lambda b: b[:-1], "lengths do not match"),
    (lambda b: b + b"x", "lengths do not match"),
])
def test_damaged_rows_are_named(damage: Callable[[bytes], bytes], message: str) -> None:
    blob = encode(run(1, 4))
    with pytest.raises(BatchError, match=message):
        decode(1, damage(blob))


# -- where jobs are stored -------------------------------------------------------------------


def test_a_batch_is_one_row_and_small_ones_are_rows(store: SqliteStorage) -> None:
    store.add(run(1))
    store.add([job(100)])
    store.add(run(200, BATCH_MIN - 1))
    store.add([job(k) for k in range(300, 300 + 2 * BATCH_MIN, 2)])  # gaps: rows
    on_disk = tables(Path(store.path))
    assert [(r[0], r[1]) for r in on_disk["gear_batch"]] == [(1, BATCH_MIN)]
    assert len(on_disk["gear_queue"]) == 1 + (BATCH_MIN - 1) + BATCH_MIN
    expected = [*run(1), job(100), *run(200, BATCH_MIN - 1),
                *[job(k) for k in range(300, 300 + 2 * BATCH_MIN, 2)]]
    assert read_queue(store.path) == expected
    assert reopen(store) == expected


def test_a_batch_too_large_for_one_row_is_stored_as_rows(store: SqliteStorage) -> None:
    big = [job(k, data=b"x" * (BATCH_MAX_BYTES // BATCH_MIN + 1)) for k in range(1, BATCH_MIN + 1)]
    store.add(big)
    on_disk = tables(Path(store.path))
    assert on_disk["gear_batch"] == [] and len(on_disk["gear_queue"]) == BATCH_MIN
    assert reopen(store) == big


def test_keys_stored_already_fail_the_whole_batch(store: SqliteStorage) -> None:
    store.add(run(1))
    store.add([job(50)])
    with pytest.raises(StorageError, match="stored already"):
        store.add(run(BATCH_MIN))  # its first key is the last of the batch row
    with pytest.raises(StorageError, match="stored already"):
        store.add(run(40))  # 50 is a row
    with pytest.raises(StorageError, match="stored already"):
        store.add([job(3)])  # a row whose key a batch row holds
    store.remove([3])
    store.add([job(3, data=b"again")])  # a finished key is free again
    assert [j.key for j in reopen(store)] == [*range(1, BATCH_MIN + 1), 50]


# -- finishing ---------------------------------------------------------------------------------


def test_finished_jobs_are_remembered_then_the_row_goes(store: SqliteStorage) -> None:
    store.add(run(1))
    store.remove([2, 5, 2, 999])  # a repeat and an unknown key change nothing
    assert [r[0] for r in tables(Path(store.path))["gear_done"]] == [2, 5]
    assert [j.key for j in read_queue(store.path)] == [k for k in range(1, 17) if k not in (2, 5)]
    store.remove(list(range(1, BATCH_MIN + 1)))
    assert tables(Path(store.path)) == {"gear_queue": [], "gear_batch": [], "gear_done": []}
    assert reopen(store) == []


def test_a_mostly_finished_batch_is_rewritten_as_rows(store: SqliteStorage) -> None:
    jobs = run(1, 64)
    store.add(jobs)
    store.remove(list(range(1, 50)))  # 15 of 64 live: still a batch row
    assert len(tables(Path(store.path))["gear_batch"]) == 1
    store.remove(list(range(50, 58)))  # 7 of 64 live: an eighth or less
    on_disk = tables(Path(store.path))
    assert on_disk["gear_batch"] == [] and on_disk["gear_done"] == []
    assert [r[0] for r in on_disk["gear_queue"]] == list(range(58, 65))
    store.remove([60])
    assert reopen(store) == [j for j in jobs[57:] if j.key != 60]


def test_dead_jobs_of_a_batch_become_rows_and_revive(store: SqliteStorage) -> None:
    jobs = run(1)
    store.add(jobs)
    store.bury([DeadJob(jobs[3], 5, 1234.5), DeadJob(job(999), 1, 1.0)])
    assert [j.key for j in read_queue(store.path)] == [k for k in range(1, 17) if k != 4]
    assert store.load_dead() == [DeadJob(jobs[3], 5, 1234.5)]
    store.close()
    store = SqliteStorage(store.path)
    assert 4 not in [j.key for j in store.load()]
    assert store.load_dead() == [DeadJob(jobs[3], 5, 1234.5)]
    store.revive([4])
    store.remove([k for k in range(1, 17) if k != 4])
    assert reopen(store) == [jobs[3]]


def test_a_crash_before_the_last_delete_is_tidied_at_load(store: SqliteStorage) -> None:
    store.add(run(1))
    store.add(run(101))
    store.close()
    with sqlite3.connect(store.path) as conn:  # every key of the first batch finished
        conn.executemany("INSERT INTO gear_done VALUES (?)", [(k,) for k in range(1, 17)])
        conn.execute("INSERT INTO gear_done VALUES (7777)")  # of no batch at all
        conn.execute("INSERT INTO gear_done VALUES (105)")
    assert [j.key for j in read_queue(store.path)] == [k for k in range(101, 117) if k != 105]
    again = SqliteStorage(store.path)
    assert [j.key for j in again.load()] == [k for k in range(101, 117) if k != 105]
    again.close()
    on_disk = tables(Path(store.path))
    assert [r[0] for r in on_disk["gear_batch"]] == [101]
    assert on_disk["gear_done"] == [(105,)]


def test_a_damaged_batch_row_fails_load_with_its_name(store: SqliteStorage) -> None:
    store.add(run(1))
    store.close()
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE gear_batch SET jobs = substr(jobs, 1, 20)")
    with pytest.raises(StorageError, match="invalid batch row 1"):
        SqliteStorage(store.path).load()
    with pytest.raises(StorageError, match="invalid batch row 1"):
        read_queue(store.path)


def test_read_queue_needs_a_queue_file(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no such file"):
        read_queue(tmp_path / "missing.db")
