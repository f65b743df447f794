"""Crash test: SIGKILL geard in the middle of a flood of background submits, restart it, and
check that every job the server acknowledged (JOB_CREATED reached the client) survived and runs
exactly as submitted.

The acknowledgement is the promise: stored before JOB_CREATED (docs/semantics.md, Background
jobs and durability). The flood uses several raw-socket connections, each with a window of
pipelined submits, a mix of priorities, empty uniques (gearmand's sqlite queue lost those:
docs/protocol.md §4.1), epoch jobs and binary data. After the kill we read the database as it
was left on disk, then restart the server on it and drain with a raw worker (GRAB_JOB_ALL ->
JOB_ASSIGN_UNIQ gives function, unique and data), and finally check that completed jobs are
deleted from the store.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from gear import constants as c
from gear.protocol.packets import Decoder, Frame, request
from gear.server.storage.sqlite import read_queue
from tests.support.peers import GeardProcess
from tests.support.raw import connect

CONNECTIONS = 4
WINDOW = 64              # submits in flight per connection
KILL_AFTER = 1500        # acknowledged jobs before the SIGKILL
PER_CONNECTION = 20000   # far more than will ever be acknowledged: the kill is mid-flood
FUNCTION = b"crash"
#: wire submit type -> stored priority (0 high, 1 normal, 2 low: docs/protocol.md §4.2)
SUBMITS = ((c.SUBMIT_JOB_BG, 1), (c.SUBMIT_JOB_HIGH_BG, 0), (c.SUBMIT_JOB_LOW_BG, 2))
EPOCH = int(time.time()) - 3600  # in the past: runnable at once, but stored as given


@dataclass(frozen=True)
class Submitted:
    unique: bytes
    data: bytes
    priority: int
    when: int

    def packet(self) -> bytes:
        if self.when:
            return request(c.SUBMIT_JOB_EPOCH, FUNCTION, self.unique, b"%d" % self.when, self.data)
        ptype = next(t for t, p in SUBMITS if p == self.priority)
        return request(ptype, FUNCTION, self.unique, self.data)


def make_job(conn: int, i: int) -> Submitted:
    data = b"job %d/%d \x00\xff\x00 " % (conn, i) + bytes((i * 7 + k) % 256 for k in range(i % 40))
    unique = b"" if i % 5 == 0 else b"c%d-%d" % (conn, i)  # every 5th: empty unique
    if i % 11 == 0:
        return Submitted(unique, data, 1, EPOCH)  # epoch jobs are normal priority
    return Submitted(unique, data, SUBMITS[i % 3][1], 0)


def Geard(db: Path, queue: str | None = None) -> GeardProcess:
    """geard on port 0 with an sqlite queue: by default --data-dir, whose default queue is
    <data-dir>/queue-0.db on -p 0 (cli.py), run from two levels up so relative paths would show."""
    args = ["--queue", queue] if queue else ["--data-dir", str(db.parent)]
    return GeardProcess("-l", "none", *args, cwd=db.parent.parent, timeout=20)


def flood(port: int, conn: int, acked: list[Submitted], errors: list[Frame],
          count: threading.Semaphore, stop: threading.Event) -> None:
    """Pipelined submits on one connection; ``acked`` gets each job whose JOB_CREATED arrived."""
    sock = connect(port, timeout=20)
    decoder = Decoder()
    in_flight: list[Submitted] = []   # sent, not answered yet, in order (answers are in order)
    i = 0
    try:
        while not stop.is_set() and i < PER_CONNECTION:
            batch = [make_job(conn, i + k) for k in range(WINDOW - len(in_flight))]
            i += len(batch)
            in_flight.extend(batch)
            sock.sendall(b"".join(job.packet() for job in batch))
            # Read until at least half the window is answered, then top the window up.
            while len(in_flight) > WINDOW // 2:
                data = sock.recv(65536)
                if not data:
                    return
                for frame in decoder.feed(data):
                    assert isinstance(frame, Frame)
                    job = in_flight.pop(0)
                    if frame.ptype == c.JOB_CREATED:
                        acked.append(job)
                        count.release()
                    else:
                        errors.append(frame)
    except OSError:
        return  # the server was killed under us: exactly what this test does
    finally:
        sock.close()


def stored_rows(db: Path) -> list[tuple[bytes, bytes, bytes, int, int]]:
    """(function, unique, data, priority, when) of every live job in the file, batch rows
    included, as the next geard will replay them."""
    return [(j.function, j.unique, j.data, j.priority, j.when) for j in read_queue(db)]


def drain(port: int) -> list[tuple[bytes, bytes, bytes]]:
    """A raw worker: (function, unique, data) of every job it is given, in order."""
    sock = connect(port, timeout=20)
    decoder = Decoder()
    got: list[tuple[bytes, bytes, bytes]] = []
    pending = request(c.CAN_DO, FUNCTION) + request(c.GRAB_JOB_ALL)
    try:
        while True:
            sock.sendall(pending)
            frame = None
            while frame is None:
                data = sock.recv(65536)
                assert data, "geard closed the worker connection"
                frames = [f for f in decoder.feed(data) if isinstance(f, Frame)]
                assert len(frames) <= 1, frames
                frame = frames[0] if frames else None
            if frame.ptype == c.NO_JOB:
                return got
            assert frame.ptype == c.JOB_ASSIGN_UNIQ, frame
            handle, function, unique, data = frame.args()
            got.append((function, unique, data))
            pending = request(c.WORK_COMPLETE, handle, b"") + request(c.GRAB_JOB_ALL)
    finally:
        sock.close()


@pytest.mark.timeout(120)
def test_sigkill_mid_flood_loses_no_acknowledged_job(tmp_path: Path) -> None:
    db = tmp_path / "data" / "queue-0.db"  # -p 0: the default queue of port 0
    server = Geard(db)
    acked: list[list[Submitted]] = [[] for _ in range(CONNECTIONS)]
    errors: list[Frame] = []
    count = threading.Semaphore(0)
    stop = threading.Event()
    threads = [threading.Thread(target=flood, args=(server.port, n, acked[n], errors, count, stop))
               for n in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(KILL_AFTER):
            assert count.acquire(timeout=30), "the flood stalled"
    finally:
        # mid-flood: every connection still has jobs in flight
        code = server.stop(signal.SIGKILL, timeout=20)
        stop.set()
        for thread in threads:
            thread.join(30)
    assert code == -signal.SIGKILL
    assert not errors, errors[:3]
    promised = [job for jobs in acked for job in jobs]
    assert len(promised) >= KILL_AFTER
    submitted = {make_job(n, i) for n in range(CONNECTIONS) for i in range(PER_CONNECTION)}

    # 1. On disk, as the kill left it: every acknowledged job, field for field; nothing else
    #    than jobs that were really submitted (a job in flight may or may not have made it).
    assert db.exists(), "the queue is not where --data-dir said"
    rows = stored_rows(db)
    on_disk = {Submitted(u, d, p, w) for f, u, d, p, w in rows if f == FUNCTION}
    assert len(on_disk) == len(rows)
    missing = [job for job in promised if job not in on_disk]
    assert not missing, f"{len(missing)} acknowledged job(s) lost, e.g. {missing[:2]}"
    assert on_disk <= submitted
    with sqlite3.connect(db) as conn:  # the flood's commits are batch rows (sqlite_batches.py)
        assert conn.execute("SELECT count(*) FROM gear_batch").fetchone()[0] > 0

    # 2. Restarted on the same file: each stored job runs exactly once, as submitted, highest
    #    priority first (replay keeps priorities).
    server = Geard(db)
    try:
        ran = drain(server.port)
    finally:
        assert server.stop(timeout=20) == 0
    by_content = {(job.unique, job.data): job for job in on_disk}
    assert sorted(ran) == sorted((FUNCTION, job.unique, job.data) for job in on_disk)
    priorities = [by_content[(unique, data)].priority for _, unique, data in ran]
    assert priorities == sorted(priorities)

    # 3. Completed jobs were deleted (write-behind, flushed by the graceful stop).
    assert stored_rows(db) == []


def test_queue_url_with_an_absolute_path(tmp_path: Path) -> None:
    """``--queue sqlite:///abs/path.db`` names /abs/path.db, whatever the working directory."""
    db = tmp_path / "elsewhere" / "q.db"
    server = Geard(db, queue=f"sqlite://{db}")  # three slashes, then the absolute path
    try:
        sock = connect(server.port, timeout=20)
        sock.sendall(request(c.SUBMIT_JOB_BG, FUNCTION, b"u", b"kept"))
        frames = Decoder().feed_all(sock.recv(4096))
        sock.close()
        assert [f.ptype for f in frames if isinstance(f, Frame)] == [c.JOB_CREATED]
    finally:
        server.stop(signal.SIGKILL)
    assert db.exists(), "the queue is not at the path --queue named"
    assert stored_rows(db) == [(FUNCTION, b"u", b"kept", 1, 0)]


@pytest.mark.timeout(120)
def test_sigkill_mid_drain_loses_no_unfinished_job(tmp_path: Path) -> None:
    """Deletes are grouped and committed without an fsync (storage/writer.py, sqlite.py): a
    kill in the middle of a drain may leave finished jobs stored (docs/server.md, "At-least-once
    after a crash"), never lose one that has not finished, and leaves a file that loads."""
    db = tmp_path / "data" / "queue-0.db"
    server = Geard(db)
    total, finish = 3000, 1200
    uniques = [b"d%d" % i for i in range(total)]
    try:
        sock = connect(server.port, timeout=20)
        decoder = Decoder()
        for start in range(0, total, 500):  # pipelined: batch rows, as a deep queue is stored
            sock.sendall(b"".join(request(c.SUBMIT_JOB_BG, FUNCTION, u, b"x" * 16)
                                  for u in uniques[start:start + 500]))
            created = 0
            while created < 500:
                data = sock.recv(65536)
                assert data, "geard closed the client connection"
                frames = [f for f in decoder.feed(data) if isinstance(f, Frame)]
                assert all(f.ptype == c.JOB_CREATED for f in frames), frames
                created += len(frames)
        worker = connect(server.port, timeout=20)
        decoder = Decoder()
        finished: list[bytes] = []
        pending = request(c.CAN_DO, FUNCTION) + request(c.GRAB_JOB_UNIQ)
        running = b""
        while not running:
            worker.sendall(pending)
            frames: list[Frame] = []
            while not frames:
                data = worker.recv(65536)
                assert data, "geard closed the worker connection"
                frames = [f for f in decoder.feed(data) if isinstance(f, Frame)]
            (frame,) = frames
            assert frame.ptype == c.JOB_ASSIGN_UNIQ, frame
            handle, _, unique, _ = frame.args()
            if len(finished) == finish:
                running = unique  # assigned, never completed: still running at the kill
                break
            finished.append(unique)
            pending = request(c.WORK_COMPLETE, handle, b"") + request(c.GRAB_JOB_UNIQ)
    finally:
        code = server.stop(signal.SIGKILL, timeout=20)
    assert code == -signal.SIGKILL
    on_disk = [j.unique for j in read_queue(db)]
    assert len(on_disk) == len(set(on_disk)) and set(on_disk) <= set(uniques)
    unfinished = set(uniques) - set(finished)
    assert running in unfinished
    lost = unfinished - set(on_disk)
    assert not lost, f"{len(lost)} unfinished job(s) lost, e.g. {sorted(lost)[:2]}"
    # Restarted on the file: the survivors run, each once; a graceful stop deletes them all.
    server = Geard(db)
    try:
        ran = drain(server.port)
    finally:
        assert server.stop(timeout=20) == 0
    assert sorted(u for _, u, _ in ran) == sorted(on_disk)
    assert stored_rows(db) == []
