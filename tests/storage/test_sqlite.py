"""SQLite backend specifics: durability settings, bad files, full disks, one server per file."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gear.server.storage import StorageError, StoredJob, open_storage
from gear.server.storage.sqlite import APPLICATION_ID, SCHEMA_VERSION, SqliteStorage
from gear.server.storage.writer import StorageWriter


def job(key: int, size: int = 8) -> StoredJob:
    return StoredJob(key, b"fn", b"u%d" % key, bytes([key % 256]) * size)


def test_wal_and_full_sync_are_enabled(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "q.db")
    store.load()
    try:
        conn = store._conn
        assert conn is not None
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: fsync every commit
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "q.db") as peek:
        assert peek.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert peek.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert peek.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_creates_parent_directories_and_accepts_an_empty_file(tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b" / "queue.db"
    store = open_storage(f"sqlite://{nested}")
    assert store is not None
    assert store.load() == []
    store.close()
    assert nested.exists()
    empty = tmp_path / "empty.db"
    empty.touch()  # e.g. created by a config-management tool
    store = SqliteStorage(empty)
    assert store.load() == []
    store.add([job(1)])
    store.close()


def test_corrupt_file_fails_load_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    path.write_bytes(b"this is not an sqlite database, just text that got here" * 100)
    with pytest.raises(StorageError) as info:
        SqliteStorage(path).load()
    message = str(info.value)
    assert str(path) in message and "corrupt" in message


def test_damaged_pages_fail_load_instead_of_returning_part_of_the_queue(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    store = SqliteStorage(path)
    store.load()
    store.add([job(k, size=3000) for k in range(1, 200)])
    store.close()
    size = path.stat().st_size
    with open(path, "r+b") as f:  # scribble over the middle of the table's pages
        f.seek(size // 2)
        f.write(b"\xde\xad\xbe\xef" * 4096)
    with pytest.raises(StorageError, match=r"malformed|corrupt"):
        SqliteStorage(path).load()


@pytest.fixture
def read_only_file(tmp_path: Path) -> Iterator[Path]:
    """An existing queue file this process cannot write (root ignores modes: use chattr +i)."""
    path = tmp_path / "queue.db"
    store = SqliteStorage(path)
    store.load()
    store.add([job(1)])
    store.close()
    if os.geteuid() != 0:
        path.chmod(0o444)
        tmp_path.chmod(0o555)
        yield path
        tmp_path.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)]).returncode != 0:
        pytest.skip("running as root on a filesystem without chattr +i: no way to make a "
                    "file read-only for root")
    try:
        yield path
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


def test_read_only_file_fails_at_load_not_at_first_submit(read_only_file: Path) -> None:
    with pytest.raises(StorageError) as info:
        SqliteStorage(read_only_file).load()
    assert str(read_only_file) in str(info.value)


def test_a_directory_is_not_a_queue(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=str(tmp_path)):
        SqliteStorage(tmp_path).load()


def test_gearmand_queue_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gearmand.db"
    with sqlite3.connect(path) as conn:  # gearmand 1.1's exact schema (docs/protocol.md §4.2)
        conn.execute("CREATE TABLE gearman_queue ( unique_key TEXT, function_name TEXT, "
                     "priority INTEGER, data BLOB, when_to_run INTEGER, "
                     "PRIMARY KEY (unique_key, function_name))")
        conn.execute("INSERT INTO gearman_queue VALUES ('u', 'f', 1, x'00', 0)")
    with pytest.raises(StorageError, match=r"not a geard queue.*gearmand"):
        SqliteStorage(path).load()
    with sqlite3.connect(path) as conn:  # and it was left untouched
        assert conn.execute("SELECT count(*) FROM gearman_queue").fetchone()[0] == 1


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    store = SqliteStorage(path)
    store.load()
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(StorageError, match="schema version 99"):
        SqliteStorage(path).load()


def test_schema_version_1_is_upgraded_in_place(tmp_path: Path) -> None:
    """A queue written before stored jobs had a reducer keeps its jobs and gains the column."""
    path = tmp_path / "queue.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE gear_queue (key INTEGER PRIMARY KEY, function BLOB NOT NULL,"
                     " unique_key BLOB NOT NULL, priority INTEGER NOT NULL,"
                     " when_to_run INTEGER NOT NULL, data BLOB NOT NULL)")
        conn.execute("INSERT INTO gear_queue VALUES (7, x'66', x'75', 0, 0, x'64')")
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute("PRAGMA user_version=1")
    conn.close()
    store = SqliteStorage(path)
    assert store.load() == [StoredJob(7, b"f", b"u", b"d", 0, 0, None)]
    store.add([StoredJob(8, b"f", b"", b"d", 1, 0, b"r")])
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    again = SqliteStorage(path)
    assert [j.reducer for j in again.load()] == [None, b"r"]
    again.close()


def test_tampered_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    store = SqliteStorage(path)
    store.load()
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE gear_queue RENAME COLUMN data TO payload")
    with pytest.raises(StorageError, match="columns"):
        SqliteStorage(path).load()


def test_only_one_server_per_file(tmp_path: Path) -> None:
    first = SqliteStorage(tmp_path / "queue.db")
    first.load()
    try:
        with pytest.raises(StorageError, match="in use by another server"):
            SqliteStorage(tmp_path / "queue.db").load()
    finally:
        first.close()
    second = SqliteStorage(tmp_path / "queue.db")  # free again once the first one closed
    assert second.load() == []
    second.close()


def test_max_size_full_then_space_back_after_removes(tmp_path: Path) -> None:
    store = open_storage(f"sqlite://{tmp_path}/q.db?max_size=128K")
    assert isinstance(store, SqliteStorage)
    store.load()
    stored: list[int] = []
    with pytest.raises(StorageError, match="full") as info:
        for key in range(1, 1000):
            store.add([job(key, size=8000)])
            stored.append(key)
    assert "cannot store 1 job" in str(info.value)
    assert 3 < len(stored) < 20
    store.remove(stored[:6])  # finished jobs free pages ...
    store.add([job(5000, size=8000)])  # ... and the queue accepts jobs again
    store.close()
    again = SqliteStorage(tmp_path / "q.db")
    assert [j.key for j in again.load()] == [*stored[6:], 5000]
    again.close()


@pytest.fixture
def tiny_filesystem() -> Iterator[Path]:
    """A 1 MiB tmpfs: a real ENOSPC (needs root and mount permission, else skipped)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; test_max_size_* covers the same code path")
    mountpoint = Path(tempfile.mkdtemp(prefix="gear-tinyfs-"))
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        mountpoint.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        mountpoint.rmdir()


def test_full_disk_fails_batches_until_space_is_back(tiny_filesystem: Path) -> None:
    ballast = tiny_filesystem / "ballast"
    ballast.write_bytes(b"\0" * (600 * 1024))
    storage = SqliteStorage(tiny_filesystem / "queue.db")

    async def submit(writer: StorageWriter, key: int) -> BaseException | None:
        result: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        writer.add(job(key, size=20000), result.set_result)
        return await asyncio.wait_for(result, 10)

    async def main() -> tuple[list[int], BaseException]:
        writer = StorageWriter(storage)
        await writer.start()
        accepted: list[int] = []
        for key in range(1, 200):
            error = await submit(writer, key)
            if error is not None:
                break
            accepted.append(key)
        else:
            raise AssertionError("the tiny filesystem never filled up")
        assert await submit(writer, 1000) is not None  # still full: still refused
        ballast.unlink()                               # the operator frees space
        assert await submit(writer, 1001) is None      # the same writer recovers
        await writer.close()
        return accepted, error

    accepted, error = asyncio.run(main())
    assert isinstance(error, StorageError) and "full" in str(error)
    assert accepted
    again = SqliteStorage(tiny_filesystem / "queue.db")
    assert [j.key for j in again.load()] == [*accepted, 1001]  # nothing lost, nothing partial
    again.close()


def test_batches_larger_than_one_statement_stay_atomic(tmp_path: Path) -> None:
    # As with an old SQLite that allows few parameters per statement: 4 rows per INSERT, so a
    # batch spans several statements in one transaction, and removes span several DELETEs.
    store = SqliteStorage(tmp_path / "q.db")
    store.load()
    store._chunk = 4
    store.add([job(k) for k in range(1, 12)])           # 4 + 4 + 3 (padded to 4)
    with pytest.raises(StorageError):
        store.add([job(k) for k in range(20, 26)] + [job(3)])  # duplicate in the 2nd statement
    store.remove(list(range(2, 20)))                     # 18 keys: DELETEs of 16 and 2 (padded)
    store.add([job(30)])
    store.close()
    again = SqliteStorage(tmp_path / "q.db")
    assert again.load() == [job(1), job(30)]
    again.close()


def test_batches_store_every_field_in_its_column(tmp_path: Path) -> None:
    # Records are bound flattened in StoredJob's field order: each must land in its column,
    # for every padded statement size (1, a power of two, one above it).
    storage = SqliteStorage(tmp_path / "q.db")
    storage.load()
    jobs = [StoredJob(k, b"fn%d" % k, b"u\x00%d" % k, b"\xff\x00data %d" % k, k % 3, 1000 + k,
                      b"r\x00%d" % k if k % 2 else None)
            for k in range(1, 19)]
    for batch in (jobs[:1], jobs[1:9], jobs[9:]):
        storage.add(batch)
    storage.close()
    with sqlite3.connect(tmp_path / "q.db") as conn:
        rows = conn.execute("SELECT key, function, unique_key, data, priority, when_to_run, "
                            "reducer FROM gear_queue ORDER BY key").fetchall()
    assert rows == [tuple(j) for j in jobs]
    assert all(type(r[1]) is type(r[2]) is type(r[3]) is bytes for r in rows)  # BLOBs


def test_no_sqlite3_adapter_is_registered_or_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Byte strings are bound as bytearray copies: the store changes nothing process-wide, and
    an application's own adapter for bytes never touches what is stored."""
    key = (bytes, sqlite3.PrepareProtocol)
    monkeypatch.delitem(sqlite3.adapters, key, raising=False)
    storage = SqliteStorage(tmp_path / "q.db")
    storage.load()
    assert key not in sqlite3.adapters
    monkeypatch.setitem(sqlite3.adapters, key, lambda value: b"changed")
    job = StoredJob(1, b"fn", b"u", b"data\x00", 0, 0)
    storage.add([job])
    storage.close()
    storage = SqliteStorage(tmp_path / "q.db")
    assert storage.load() == [job]
    storage.close()



def _on_disk(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def test_max_size_caps_the_database_and_its_wal_together(tmp_path: Path) -> None:
    cap = 256 * 1024
    path = tmp_path / "q.db"
    store = open_storage(f"sqlite://{path}?max_size=256K")
    assert isinstance(store, SqliteStorage)
    store.load()
    stored: list[int] = []
    with pytest.raises(StorageError, match="full"):
        for key in range(1, 1000):
            store.add([job(key, size=6000)])
            stored.append(key)
            assert _on_disk(path) <= cap, f"{_on_disk(path)} bytes on disk after {key} jobs"
    assert _on_disk(path) <= cap
    assert len(stored) > 10  # the cap is not so conservative that it wastes most of the space
    store.close()
    again = SqliteStorage(path)
    assert [j.key for j in again.load()] == stored  # everything acknowledged is kept
    again.close()


def test_removes_commit_without_fsync_and_adds_with_it(tmp_path: Path) -> None:
    # Deletes are write-behind (docs/server.md, "At-least-once after a crash"), so their commit
    # needs no fsync; a job is acknowledged after its add commits, so that one must have it.
    store = SqliteStorage(tmp_path / "q.db")
    store.load()
    try:
        conn = store._conn
        assert conn is not None
        seen: list[str] = []

        def note(statement: str) -> None:
            if statement in ("COMMIT", "PRAGMA synchronous=FULL", "PRAGMA synchronous=NORMAL") or (
                    statement.startswith(("INSERT", "DELETE"))):
                seen.append(statement[:30])

        store.add([job(k) for k in range(1, 41)])  # one batch row
        store.add([job(k) for k in range(41, 44)])  # rows
        conn.set_trace_callback(note)
        store.remove([1, 2, 41])
        removing = list(seen)
        assert removing[0] == "PRAGMA synchronous=NORMAL"
        assert removing[-1] == "PRAGMA synchronous=FULL"
        assert "COMMIT" in removing and removing.index("COMMIT") < len(removing) - 1
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
        # Had the switch back failed, the next add sets FULL before it writes anything.
        conn.set_trace_callback(None)
        conn.execute("PRAGMA synchronous=NORMAL")
        store._full = False
        seen.clear()
        conn.set_trace_callback(note)
        store.add([job(44)])
        assert seen[0] == "PRAGMA synchronous=FULL"
        conn.set_trace_callback(None)
        assert store.add_commits == 3 and store.remove_commits == 1
    finally:
        store.close()
    again = SqliteStorage(tmp_path / "q.db")
    assert [j.key for j in again.load()] == [*range(3, 41), 42, 43, 44]
    again.close()


def test_a_drain_through_the_writer_deletes_in_few_transactions(tmp_path: Path) -> None:
    # As geard runs it (engine.py), the lowered switch interval included: with it the writer
    # gets the GIL back quickly, so without grouping it woke for a few keys at a time.
    from gear.server.config import (
        DURABLE_REMOVE_BATCH,
        DURABLE_REMOVE_DELAY,
        DURABLE_SWITCH_INTERVAL,
    )

    store = SqliteStorage(tmp_path / "q.db")
    total = 2000

    async def main() -> None:
        writer = StorageWriter(store, remove_delay=DURABLE_REMOVE_DELAY,
                               remove_batch=DURABLE_REMOVE_BATCH,
                               switch_interval=DURABLE_SWITCH_INTERVAL)
        await writer.start()
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        answered: list[object] = []

        def on_batch(tokens: list[object], exc: object) -> None:
            assert exc is None
            answered.extend(tokens)
            if len(answered) == total and not stored.done():
                stored.set_result(None)

        writer.on_batch = on_batch
        for start in range(1, total + 1, 500):
            keys = range(start, start + 500)
            writer.add_many([job(k) for k in keys], list(keys))
        await asyncio.wait_for(stored, 20)
        commits = store.add_commits
        started = time.monotonic()
        for key in range(1, total + 1):  # one delete per finished job, the loop running between
            writer.remove(key)
            if key % 4 == 0:
                await asyncio.sleep(0.0001)  # a drain's loop waits for its workers
        elapsed = time.monotonic() - started
        await writer.close()
        assert store.add_commits == commits
        # At most one delete transaction per delay, and the last at close (was one per wake-up
        # of the writer, ~4 keys each here: 498 transactions; docs/benchmarks.md).
        assert store.remove_commits <= elapsed / DURABLE_REMOVE_DELAY + 2, (
            store.remove_commits, elapsed)
        assert store.remove_commits < total // 50

    asyncio.run(main())
    again = SqliteStorage(tmp_path / "q.db")
    assert again.load() == []
    again.close()
