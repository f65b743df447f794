"""Harp records in durable storage: restart, group commit, retention by time and by bytes.

Against a live geard with a ``--queue`` (SQLite; PostgreSQL with the storage tests' server) and,
for the writer and the retention rules, the pieces on their own (docs/harp.md, "Storage",
"Restart", "Retention").
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from gear.server.broker import Broker, BrokerConfig
from gear.server.harp.service import HarpService
from gear.server.storage.base import StorageError
from gear.server.storage.harp import HarpBatch, HarpRow, MemoryHarpStore
from gear.server.storage.harp_writer import HarpWriter
from tests.server.harp.conftest import Harp, LiveServer, RawWorker
from tests.storage.conftest import pg_url, postgres_server  # noqa: F401 - fixtures

RESTARTED = "server_restarted"


def ask(port: int, obj: dict[str, Any]) -> Any:
    h = Harp(port)
    try:
        return h.ask(obj)
    finally:
        h.close()


def read_all(port: int, obj: dict[str, Any]) -> list[Any]:
    """Every line of a read_stream reply, the end line included."""
    h = Harp(port)
    try:
        h.send(obj)
        out = [h.recv()]
        while "packet" in out[-1]:
            out.append(h.recv())
        return out
    finally:
        h.close()


def submit(port: int, procedure: str = "echo", **extra: Any) -> str:
    reply = ask(port, {"host": "h", "procedure": procedure, "arguments": {"x": 1}, **extra})
    return str(reply["job_id"])


def first_packet(port: int, job_id: str) -> Harp:
    """A follower that has seen packet 0 (so the server handled it); the caller closes it."""
    h = Harp(port)
    h.send({"follow_stream": job_id, "since": 0})
    assert h.recv()["packet"] == 0
    return h


def restart_scenario(queue: str) -> None:
    live = LiveServer(queue=queue)
    worker = RawWorker(live.port, "h/echo")
    try:
        done = submit(live.harp_port, info={"who": "me"})
        handle, _, _ = worker.grab()
        for n in range(3):
            worker.data(handle, {"n": n})
        worker.complete(handle, {"ok": True})
        assert ask(live.harp_port, {"get_result": done, "wait": True}) == {"result": {"ok": True}}
        status = ask(live.harp_port, {"get_status": done})
        running = submit(live.harp_port)
        handle, _, _ = worker.grab()
        worker.data(handle, "half")
        follower = first_packet(live.harp_port, running)
        follower.close()
        queued = submit(live.harp_port, procedure="nobody")
    finally:
        worker.close()
        live.stop()
    again = LiveServer(queue=queue)
    try:
        port = again.harp_port
        assert ask(port, {"get_result": done}) == {"result": {"ok": True}}
        assert ask(port, {"get_status": done}) == status
        assert read_all(port, {"read_stream": done}) == [
            {"packet": n, "data": {"n": n}} for n in range(3)] + [{"result": {"ok": True}}]
        assert read_all(port, {"read_stream": done, "recent": 1}) == [
            {"packet": 2, "data": {"n": 2}}, {"result": {"ok": True}}]
        for job_id, started in ((running, True), (queued, False)):
            reply = ask(port, {"get_result": job_id, "wait": True})
            assert reply["error"]["type"] == RESTARTED
            times = ask(port, {"get_status": job_id})["time"]
            assert times["end"] is not None and (times["start"] is not None) is started
        assert read_all(port, {"read_stream": running})[0] == {"packet": 0, "data": "half"}
        # The restart's outcome is stored too: a second restart serves the same replies.
    finally:
        again.stop()
    third = LiveServer(queue=queue)
    try:
        reply = ask(third.harp_port, {"get_result": queued})
        assert reply["error"]["type"] == RESTARTED
        assert ask(third.harp_port, {"get_result": done}) == {"result": {"ok": True}}
    finally:
        third.stop()


def test_records_and_streams_survive_a_restart_sqlite(tmp_path: Path) -> None:
    restart_scenario(f"sqlite://{tmp_path}/queue.db")


@pytest.mark.postgres
@pytest.mark.interop
def test_records_and_streams_survive_a_restart_postgres(pg_url: str) -> None:  # noqa: F811
    restart_scenario(pg_url)


def test_the_queue_still_replays_beside_the_harp_tables(tmp_path: Path) -> None:
    import sqlite3

    queue = f"sqlite://{tmp_path}/queue.db"
    live = LiveServer(queue=queue)
    try:
        submit(live.harp_port)
    finally:
        live.stop()
    again = LiveServer(queue=queue)  # the queue's schema check accepts the extra tables
    again.stop()
    with sqlite3.connect(tmp_path / "queue.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = conn.execute("SELECT value FROM harp_meta WHERE key='schema'").fetchone()[0]
    assert {"gear_queue", "harp_calls", "harp_stream", "harp_meta"} <= tables and version == 1


def test_stream_messages_are_written_in_batches(tmp_path: Path) -> None:
    live = LiveServer(queue=f"sqlite://{tmp_path}/queue.db")
    worker = RawWorker(live.port, "h/echo")
    try:
        job_id = submit(live.harp_port)
        handle, _, _ = worker.grab()
        before = live.call(lambda: live.server.harp.writer.batches)
        for n in range(500):
            worker.data(handle, n)
        worker.complete(handle, "end")
        assert ask(live.harp_port, {"get_result": job_id, "wait": True}) == {"result": "end"}
        writer = live.server.harp.writer
    finally:
        worker.close()
        live.stop()
    # 500 messages and the end: a handful of transactions (one per 50 ms flush), never 500.
    assert writer.changes >= 501
    assert writer.batches - before < 50


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_writer_groups_changes_into_one_transaction() -> None:
    store = MemoryHarpStore()

    async def main() -> None:
        writer = HarpWriter(store, flush_interval=0.2)
        assert await writer.start() == ([], {})
        row = HarpRow("a", "h", "p", "[]", "null", None, 1, None, None, 1.0, None, None, None)
        writer.save(row)
        for n in range(1000):
            writer.append("a", n, json.dumps(n))
        writer.save(row._replace(end=2.0, reply='{"result":1}'))
        await writer.close()

    run(main())
    assert store.writes == 1
    assert store.rows["a"].reply == '{"result":1}' and len(store.streams["a"]) == 1000


def test_writer_retries_a_failed_batch_with_later_changes() -> None:
    class Flaky(MemoryHarpStore):
        def __init__(self) -> None:
            super().__init__()
            self.failed = 0
            self.stored = threading.Event()

        def write(self, batch: HarpBatch) -> None:
            if not self.failed:
                self.failed += 1
                raise StorageError("disk full")
            super().write(batch)
            self.stored.set()

    store = Flaky()

    async def main() -> None:
        writer = HarpWriter(store, flush_interval=0.0, retry_delay=0.05)
        await writer.start()
        writer.save(HarpRow("a", "h", "p", "[]", "null", None, 1, None, None, 1.0, None,
                            None, None))
        writer.append("a", 0, '"x"')
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, store.stored.wait, 10)
        await writer.close()

    run(main())
    assert store.failed == 1 and "a" in store.rows and store.streams["a"] == ['"x"']


# -- retention, on the service with a clock of its own ------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.lines: list[Any] = []

    def write(self, data: bytes) -> None:
        self.lines += [json.loads(x) for x in data.splitlines()]

    replay = write

    def done(self, close: bool = False) -> None:
        pass


class Recorder:
    """A RecordStore that remembers what it was asked."""

    def __init__(self) -> None:
        self.saved: dict[str, HarpRow] = {}
        self.appended: list[tuple[str, int, str]] = []
        self.deleted: list[str] = []

    def save(self, row: HarpRow) -> None:
        self.saved[row.id] = row

    def append(self, job_id: str, n: int, text: str) -> None:
        self.appended.append((job_id, n, text))

    def delete(self, job_ids: Any) -> None:
        self.deleted += job_ids


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def service(**kw: Any) -> tuple[HarpService, Clock, Recorder]:
    clock, store = Clock(), Recorder()
    svc = HarpService(Broker(BrokerConfig(), clock), clock, lambda: None, store=store, **kw)
    return svc, clock, store


def call(svc: HarpService, **extra: Any) -> str:
    sink = Sink()
    line = {"harpcaller": 1, "host": "h", "procedure": "p", "arguments": ["a" * 100], **extra}
    svc.handle_line(json.dumps(line).encode(), sink)
    return str(sink.lines[0]["job_id"])


def test_retention_by_time_prunes_ended_records_and_their_rows() -> None:
    svc, clock, store = service(retention=60)
    old, new, live = call(svc), call(svc), call(svc)
    assert svc.cancel(old)
    clock.now += 30
    assert svc.cancel(new)
    clock.now += 40  # old ended 70 s ago, new 40 s ago
    assert svc.prune_due()
    assert svc.prune() == 1
    assert store.deleted == [old] and svc.records.get(old) is None
    assert svc.records.get(new) is not None and svc.records.get(live) is not None
    assert not svc.prune_due()
    clock.now += 1000
    assert svc.prune() == 1 and store.deleted == [old, new]
    assert svc.records.get(live) is not None  # a running call is never pruned


def test_pruning_runs_in_batches() -> None:
    svc, clock, store = service(retention=1)
    ids = [call(svc) for _ in range(25)]
    for job_id in ids:
        svc.cancel(job_id)
    clock.now += 10
    assert [svc.prune(batch=10) for _ in range(4)] == [10, 10, 5, 0]
    assert store.deleted == ids  # oldest end first


def test_the_byte_bound_forgets_the_oldest_ended_records_first() -> None:
    svc, clock, store = service(max_bytes=2000)
    wanted: list[bool] = []
    svc.wants_prune = lambda: wanted.append(True)
    ids = []
    for _ in range(10):
        ids.append(call(svc))
        clock.now += 1
        svc.cancel(ids[-1])
    assert svc.records.bytes > 2000 and wanted
    svc.prune()
    assert svc.records.bytes <= 2000
    kept = [i for i in ids if svc.records.get(i) is not None]
    assert kept and kept == ids[-len(kept):] and store.deleted == ids[:-len(kept)]
    assert not svc.prune_due()


def test_at_the_bound_with_nothing_ended_calls_are_accepted_and_streams_truncated(
        tmp_path: Path) -> None:
    live = LiveServer(queue=f"sqlite://{tmp_path}/queue.db", harp_max_bytes=3000)
    worker = RawWorker(live.port, "h/echo")
    try:
        job_id = submit(live.harp_port)
        handle, _, _ = worker.grab()
        worker.data(handle, {"n": 0, "pad": "x" * 100})
        follower = first_packet(live.harp_port, job_id)  # following from here on
        for n in range(1, 40):
            worker.data(handle, {"n": n, "pad": "x" * 100})
        worker.complete(handle, "done")
        followed = [{"packet": 0}] + [follower.recv() for _ in range(40)]
        follower.close()
        # A live follower gets every message, in order.
        assert [m["packet"] for m in followed[:40]] == list(range(40))
        assert followed[40] == {"result": "done"}
        stored = read_all(live.harp_port, {"read_stream": job_id})
        kept = [m["packet"] for m in stored[:-1]]
        assert 0 < len(kept) < 40 and kept == list(range(len(kept)))  # a prefix, no holes
        assert stored[-1] == {"result": "done"}
        assert live.call(lambda: live.server.harp.service.dropped_messages) == 40 - len(kept)
        # New calls are still accepted at the bound (the ended one above goes first).
        assert ask(live.harp_port, {"get_status": submit(live.harp_port)})["call"]
    finally:
        worker.close()
        live.stop()


def test_the_timer_prunes_expired_records_on_a_live_server_and_after_a_restart(
        tmp_path: Path) -> None:
    queue = f"sqlite://{tmp_path}/queue.db"
    live = LiveServer(queue=queue, harp_retention=0.2)
    try:
        pruned = threading.Event()
        service = live.server.harp.service
        prune = service.prune

        def watched(*args: Any, **kw: Any) -> int:
            n = prune(*args, **kw)
            if n:
                pruned.set()
            return n

        live.call(lambda: setattr(service, "prune", watched))
        job_id = submit(live.harp_port, procedure="nobody")
        assert ask(live.harp_port, {"cancel": job_id}) == {"cancelled": True}
        assert pruned.wait(10)
        assert ask(live.harp_port, {"get_status": job_id})["error"]["type"] == "invalid_jobid"
        kept = submit(live.harp_port, procedure="nobody")  # ends at the restart
    finally:
        live.stop()
    # Loaded with a long retention: the restarted call is served...
    again = LiveServer(queue=queue)
    try:
        assert ask(again.harp_port, {"get_result": kept})["error"]["type"] == RESTARTED
        assert ask(again.harp_port, {"get_result": job_id})["error"]["type"] == "invalid_jobid"
    finally:
        again.stop()
    # ... and with a retention it is already past, it is pruned (the first pass is due as the
    # port opens).
    third = LiveServer(queue=queue, harp_retention=1e-6)
    try:
        assert ask(third.harp_port, {"get_result": kept})["error"]["type"] == "invalid_jobid"
    finally:
        third.stop()


def test_messages_are_stored_as_one_line_json_texts(tmp_path: Path) -> None:
    from gear import constants as c

    queue = f"sqlite://{tmp_path}/queue.db"
    live = LiveServer(queue=queue)
    worker = RawWorker(live.port, "h/echo")
    try:
        job_id = submit(live.harp_port)
        handle, _, _ = worker.grab()
        for payload in (b'{\n  "a": [1,\r\n 2]\n}', b"not json", b'"\xc3\xa9t\xc3\xa9"', b"\xff"):
            worker.send(c.WORK_DATA, handle, payload)
        worker.complete(handle, None)
        assert ask(live.harp_port, {"get_result": job_id, "wait": True}) == {"result": None}
        expected = [{"a": [1, 2]}, "not json", "\u00e9t\u00e9", "\ufffd"]
        lines = read_all(live.harp_port, {"read_stream": job_id})
        assert [m["data"] for m in lines[:-1]] == expected
    finally:
        worker.close()
        live.stop()
    again = LiveServer(queue=queue)
    try:
        lines = read_all(again.harp_port, {"read_stream": job_id})
        assert [m["data"] for m in lines[:-1]] == expected and lines[-1] == {"result": None}
    finally:
        again.stop()
