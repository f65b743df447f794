"""StorageWriter: group commit, callbacks on the loop thread, failures, write-behind removes.

A gated in-memory storage makes batching deterministic: the writer blocks inside ``add`` on a
threading.Event while the test queues more jobs, so the next batch's content is known exactly.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from gear.errors import ConfigurationError
from gear.server.storage import MemoryStorage, StorageError, StoredJob
from gear.server.storage.writer import StorageWriter


def job(key: int) -> StoredJob:
    return StoredJob(key, b"fn", b"u%d" % key, b"data %d" % key)


class GatedStorage(MemoryStorage):
    """Records batches; can block inside the first add and fail chosen batches."""

    def __init__(self, *, gate_first: bool = False) -> None:
        super().__init__()
        self.batches: list[list[int]] = []
        self.remove_batches: list[list[int]] = []
        self.threads: set[int] = set()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.gate_first = gate_first
        self.failures: dict[int, BaseException] = {}        # batch index -> raised
        self.remove_failures: dict[int, BaseException] = {}
        self.removed_again = threading.Event()
        self.closed = False

    def load(self) -> list[StoredJob]:
        self.threads.add(threading.get_ident())
        return super().load()

    def add(self, jobs: Sequence[StoredJob]) -> None:
        self.threads.add(threading.get_ident())
        index = len(self.batches)
        self.batches.append([j.key for j in jobs])
        if index == 0 and self.gate_first:
            self.entered.set()
            assert self.release.wait(10), "test never released the gate"
        if index in self.failures:
            raise self.failures[index]
        super().add(jobs)

    def remove(self, keys: Sequence[int]) -> None:
        index = len(self.remove_batches)
        self.remove_batches.append(list(keys))
        if index >= 1:
            self.removed_again.set()
        if index in self.remove_failures:
            raise self.remove_failures[index]
        super().remove(keys)

    def close(self) -> None:
        self.closed = True


class Results:
    """done() callbacks that record (key, error, thread) and an event when all arrived."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.calls: list[tuple[int, BaseException | None]] = []
        self.threads: set[int] = set()
        self.complete = asyncio.Event()

    def done_for(self, key: int) -> Any:
        def done(exc: BaseException | None) -> None:
            self.calls.append((key, exc))
            self.threads.add(threading.get_ident())
            if len(self.calls) == self.expected:
                self.complete.set()
        return done

    async def wait(self) -> None:
        await asyncio.wait_for(self.complete.wait(), 10)


async def wait_entered(storage: GatedStorage) -> None:
    assert await asyncio.to_thread(storage.entered.wait, 10)


def test_jobs_added_during_a_commit_share_the_next_batch() -> None:
    storage = GatedStorage(gate_first=True)
    after: list[int] = []

    async def main() -> None:
        results = Results(100)
        writer = StorageWriter(storage, after_batch=lambda: after.append(len(results.calls)))
        await writer.start()
        writer.add(job(1), results.done_for(1))
        await wait_entered(storage)           # the writer is committing batch 1 ...
        for key in range(2, 101):             # ... so these pile up for batch 2
            writer.add(job(key), results.done_for(key))
        assert writer.pending == 99
        storage.release.set()
        await results.wait()
        await writer.close()
        assert [key for key, _ in results.calls] == list(range(1, 101))  # submission order
        assert all(exc is None for _, exc in results.calls)
        assert results.threads == {threading.get_ident()}  # done() on the loop thread
        assert writer.stats.batches == 2 and writer.stats.largest_batch == 99

    asyncio.run(main())
    assert storage.batches == [[1], list(range(2, 101))]
    assert after == [1, 100]   # after_batch once per batch, after that batch's done() calls
    assert len(storage.threads) == 1 and threading.get_ident() not in storage.threads
    assert storage.closed


def test_one_loop_wakeup_per_batch() -> None:
    storage = GatedStorage(gate_first=True)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        wakeups = 0
        original = loop.call_soon_threadsafe

        def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal wakeups
            if threading.current_thread().name == "gear-storage-writer":  # not to_thread()'s
                wakeups += 1
            return original(*args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign, assignment]
        writer = StorageWriter(storage)
        await writer.start()                  # wakeup 1: the loaded jobs
        results = Results(500)
        writer.add(job(1), results.done_for(1))
        await wait_entered(storage)
        for key in range(2, 501):
            writer.add(job(key), results.done_for(key))
        storage.release.set()
        await results.wait()                  # wakeups 2 and 3: one per batch
        await writer.close()                  # wakeup 4: the thread stopped
        return wakeups

    assert asyncio.run(main()) == 4
    assert len(storage.batches) == 2


def test_max_batch_splits_transactions() -> None:
    storage = GatedStorage(gate_first=True)

    async def main() -> None:
        writer = StorageWriter(storage, max_batch=10)
        await writer.start()
        results = Results(26)
        for key in range(1, 27):
            writer.add(job(key), results.done_for(key))
            if key == 1:
                await wait_entered(storage)
        storage.release.set()
        await results.wait()
        await writer.close()

    asyncio.run(main())
    assert [len(batch) for batch in storage.batches] == [1, 10, 10, 5]
    assert storage.load() == [job(k) for k in range(1, 27)]


def test_failed_batch_fails_each_of_its_jobs_and_later_batches_succeed() -> None:
    storage = GatedStorage(gate_first=True)
    full = StorageError("sqlite queue /q.db: database or disk is full")
    storage.failures[1] = full

    async def main() -> tuple[Results, Results]:
        writer = StorageWriter(storage)
        await writer.start()
        first = Results(4)
        writer.add(job(1), first.done_for(1))
        await wait_entered(storage)
        for key in (2, 3, 4):                  # batch 2: fails
            writer.add(job(key), first.done_for(key))
        storage.release.set()
        await first.wait()
        later = Results(2)
        for key in (5, 6):                     # the writer is still running: batch 3 succeeds
            writer.add(job(key), later.done_for(key))
        await later.wait()
        assert writer.stats.failed_batches == 1 and writer.stats.failed_jobs == 3
        await writer.close()
        return first, later

    first, later = asyncio.run(main())
    assert first.calls == [(1, None), (2, full), (3, full), (4, full)]
    assert later.calls == [(5, None), (6, None)]
    assert [j.key for j in storage.load()] == [1, 5, 6]


def test_unexpected_backend_exception_becomes_storage_error(caplog: Any) -> None:
    storage = GatedStorage()
    storage.failures[0] = OSError(28, "No space left on device")

    async def main() -> list[tuple[int, BaseException | None]]:
        writer = StorageWriter(storage)
        await writer.start()
        results = Results(1)
        writer.add(job(1), results.done_for(1))
        await results.wait()
        again = Results(1)
        writer.add(job(2), again.done_for(2))
        await again.wait()
        await writer.close()
        return results.calls + again.calls

    with caplog.at_level(logging.ERROR, logger="gear.server.storage"):
        calls = asyncio.run(main())
    (_, exc1), (key2, exc2) = calls
    assert isinstance(exc1, StorageError) and "No space left on device" in str(exc1)
    assert isinstance(exc1.__cause__, OSError)
    assert (key2, exc2) == (2, None)
    assert "unexpected error" in caplog.text


def test_a_raising_callback_does_not_starve_the_others(caplog: Any) -> None:
    storage = GatedStorage(gate_first=True)
    after: list[bool] = []

    async def main() -> Results:
        writer = StorageWriter(storage, after_batch=lambda: after.append(True))
        await writer.start()
        results = Results(3)

        def bad(exc: BaseException | None) -> None:
            raise RuntimeError("broken callback")

        writer.add(job(1), results.done_for(1))
        await wait_entered(storage)
        writer.add(job(2), bad)
        writer.add(job(3), results.done_for(3))
        writer.add(job(4), results.done_for(4))
        storage.release.set()
        await results.wait()
        await writer.close()
        return results

    with caplog.at_level(logging.ERROR, logger="gear.server.storage"):
        results = asyncio.run(main())
    assert [key for key, _ in results.calls] == [1, 3, 4]
    assert after == [True, True]
    assert "done() callback failed" in caplog.text


def test_removes_are_write_behind_batched_and_after_adds() -> None:
    storage = GatedStorage(gate_first=True)

    async def main() -> None:
        writer = StorageWriter(storage)
        await writer.start()
        results = Results(3)
        for key in (1, 2, 3):
            writer.add(job(key), results.done_for(key))
            if key == 1:
                await wait_entered(storage)
        # Removes queued while the writer is busy are committed together, after the adds.
        writer.remove(1)
        writer.remove(2)
        writer.remove(99)
        storage.release.set()
        await results.wait()
        await writer.close()
        assert writer.stats.removed == 3

    asyncio.run(main())
    assert storage.batches == [[1], [2, 3]]
    assert storage.remove_batches == [[1, 2, 99]]
    assert storage.load() == [job(3)]


def test_failed_remove_is_retried() -> None:
    storage = GatedStorage()
    storage.remove_failures[0] = StorageError("connection lost")

    async def main() -> None:
        writer = StorageWriter(storage, remove_retry_delay=0.01)
        await writer.start()
        results = Results(2)
        writer.add(job(1), results.done_for(1))
        writer.add(job(2), results.done_for(2))
        await results.wait()
        writer.remove(1)
        assert await asyncio.to_thread(storage.removed_again.wait, 10)
        await writer.close()

    asyncio.run(main())
    assert storage.remove_batches[:2] == [[1], [1]]
    assert storage.load() == [job(2)]


def test_close_flushes_pending_adds_and_removes() -> None:
    storage = GatedStorage()

    async def main() -> Results:
        writer = StorageWriter(storage)
        await writer.start()
        results = Results(50)
        for key in range(1, 51):
            writer.add(job(key), results.done_for(key))
        for key in range(1, 11):
            writer.remove(key)
        await writer.close()
        # Every done() was delivered before close() returned.
        assert results.complete.is_set()
        return results

    results = asyncio.run(main())
    assert all(exc is None for _, exc in results.calls)
    assert [j.key for j in storage.load()] == list(range(11, 51))
    assert storage.closed


def test_add_after_close_is_refused_asynchronously() -> None:
    async def main() -> None:
        writer = StorageWriter(GatedStorage())
        await writer.start()
        await writer.close()
        results = Results(1)
        writer.add(job(1), results.done_for(1))
        assert results.calls == []   # never re-entrantly from inside add()
        await results.wait()
        (key, exc), = results.calls
        assert key == 1 and isinstance(exc, StorageError) and "closed" in str(exc)
        writer.remove(1)             # ignored, not an error

    asyncio.run(main())


def test_failed_load_fails_start_and_refuses_adds() -> None:
    class Unreadable(GatedStorage):
        def load(self) -> list[StoredJob]:
            raise StorageError("sqlite queue /q.db: file is not a database")

    storage = Unreadable()

    async def main() -> None:
        writer = StorageWriter(storage)
        queued = Results(1)
        writer.add(job(1), queued.done_for(1))   # queued before start: failed with the cause
        with pytest.raises(StorageError, match="not a database"):
            await writer.start()
        await queued.wait()
        assert isinstance(queued.calls[0][1], StorageError)
        later = Results(1)
        writer.add(job(2), later.done_for(2))
        await later.wait()
        assert "not a database" in str(later.calls[0][1])
        await writer.close()

    asyncio.run(main())
    assert storage.batches == [] and storage.closed


def test_constructor_and_start_misuse() -> None:
    with pytest.raises(ConfigurationError):
        StorageWriter(MemoryStorage(), max_batch=0)

    async def main() -> None:
        writer = StorageWriter(MemoryStorage())
        await writer.start()
        with pytest.raises(RuntimeError):
            await writer.start()
        await writer.close()

    asyncio.run(main())


def test_close_without_start_closes_the_storage() -> None:
    storage = GatedStorage()
    asyncio.run(StorageWriter(storage).close())
    assert storage.closed


def test_a_bug_in_the_writer_loop_fails_the_batch_not_the_writer(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    storage = GatedStorage()

    async def main() -> tuple[Results, Results]:
        writer = StorageWriter(storage)
        await writer.start()
        monkeypatch.setattr(writer, "_commit", _boom)  # not the backend: the writer's own code
        broken = Results(2)
        writer.add(job(1), broken.done_for(1))
        writer.add(job(2), broken.done_for(2))
        await broken.wait()
        monkeypatch.undo()
        later = Results(1)
        writer.add(job(3), later.done_for(3))
        await later.wait()
        await writer.close()
        return broken, later

    with caplog.at_level(logging.ERROR, logger="gear.server.storage"):
        broken, later = asyncio.run(main())
    assert all(isinstance(exc, StorageError) and "bug in the writer" in str(exc)
               for _, exc in broken.calls)
    assert later.calls == [(3, None)]
    assert storage.load() == [job(3)]


def _boom(*args: object) -> None:
    raise RuntimeError("bug in the writer loop")


def test_add_many_with_on_batch_answers_each_batch_with_one_call() -> None:
    storage = GatedStorage(gate_first=True)
    storage.failures[2] = StorageError("sqlite queue /q.db: database or disk is full")
    answers: list[tuple[list[Any], StorageError | None, int]] = []
    order: list[str] = []
    answered: list[asyncio.Event] = []  # answered[n] is set by the (n + 1)th answer

    def on_batch(tokens: list[Any], error: StorageError | None) -> None:
        answers.append((tokens, error, threading.get_ident()))
        order.append("batch")
        answered[len(answers) - 1].set()

    async def main() -> None:
        answered.extend(asyncio.Event() for _ in range(3))
        writer = StorageWriter(storage, after_batch=lambda: order.append("after"))
        writer.on_batch = on_batch  # set after construction, as the server does
        await writer.start()
        writer.add_many([job(1)], ["t1"])
        await wait_entered(storage)                # batch 1 is committing ...
        writer.add_many([job(2), job(3)], ["t2", "t3"])
        writer.add(job(4), "t4")                   # ... batch 2: add() takes a token too
        assert writer.pending == 3
        storage.release.set()
        await asyncio.wait_for(answered[1].wait(), 10)
        writer.add_many([job(5)], ["t5"])          # batch 3 fails
        await asyncio.wait_for(answered[2].wait(), 10)
        await writer.close()
        refused: list[tuple[list[Any], StorageError | None]] = []
        got_refusal = asyncio.Event()

        def refuse(tokens: list[Any], error: StorageError | None) -> None:
            refused.append((tokens, error))
            got_refusal.set()

        writer.on_batch = refuse
        writer.add_many([job(6), job(7)], ["t6", "t7"])
        assert refused == []                       # refused asynchronously, not re-entrantly
        await asyncio.wait_for(got_refusal.wait(), 10)
        assert refused[0][0] == ["t6", "t7"] and "closed" in str(refused[0][1])

    asyncio.run(main())
    assert [(tokens, error is None) for tokens, error, _ in answers] == [
        (["t1"], True), (["t2", "t3", "t4"], True), (["t5"], False)]
    assert {thread for _, _, thread in answers} == {threading.get_ident()}
    assert order[:6] == ["batch", "after"] * 3     # after_batch follows each answer
    assert storage.batches == [[1], [2, 3, 4], [5]]
    assert [j.key for j in storage.load()] == [1, 2, 3, 4]



def test_switch_interval_is_lowered_while_running_and_restored() -> None:
    before = sys.getswitchinterval()

    async def main() -> tuple[float, float]:
        writer = StorageWriter(GatedStorage(), switch_interval=before / 10)
        await writer.start()
        running = sys.getswitchinterval()
        high = StorageWriter(GatedStorage(), switch_interval=before * 10)  # never raised
        await high.start()
        unchanged = sys.getswitchinterval()
        await high.close()
        await writer.close()
        return running, unchanged

    running, unchanged = asyncio.run(main())
    assert running == pytest.approx(before / 10) and unchanged == pytest.approx(before / 10)
    assert sys.getswitchinterval() == pytest.approx(before)


class RemoveLog(GatedStorage):
    """GatedStorage that also notes when each remove batch arrived, and wakes a waiter."""

    def __init__(self) -> None:
        super().__init__()
        self.removed = threading.Event()
        self.remove_times: list[float] = []

    def remove(self, keys: Sequence[int]) -> None:
        self.remove_times.append(time.monotonic())
        super().remove(keys)
        self.removed.set()


def test_removes_wait_for_the_delay_then_go_in_one_batch() -> None:
    storage = RemoveLog()

    async def main() -> float:
        writer = StorageWriter(storage, remove_delay=0.2, remove_batch=1000)
        await writer.start()
        started = time.monotonic()
        for key in (1, 2, 3):
            writer.remove(key)
        assert await asyncio.to_thread(storage.removed.wait, 10)
        await writer.close()
        return started

    started = asyncio.run(main())
    assert storage.remove_batches == [[1, 2, 3]]
    assert storage.remove_times[0] - started >= 0.2  # held back for the delay, not sent at once


def test_remove_batch_pending_keys_go_without_waiting_for_the_delay() -> None:
    storage = RemoveLog()

    async def main() -> None:
        # A delay no test waits for: only the count (or close) can send these.
        writer = StorageWriter(storage, remove_delay=3600, remove_batch=100)
        await writer.start()
        for key in range(1, 251):
            writer.remove(key)
            if key % 10 == 0:
                await asyncio.sleep(0)  # let the writer run between finished jobs, as a drain does
        assert await asyncio.to_thread(storage.removed.wait, 10)
        await writer.close()  # sends the rest at once

    asyncio.run(main())
    batches = storage.remove_batches
    assert [key for batch in batches for key in batch] == list(range(1, 251))  # each once, in order
    assert len(batches) <= 3
    assert all(len(batch) >= 100 for batch in batches[:-1])


def test_close_sends_pending_removes_without_waiting_for_the_delay() -> None:
    storage = RemoveLog()

    async def main() -> float:
        writer = StorageWriter(storage, remove_delay=3600)
        await writer.start()
        writer.remove(7)
        started = time.monotonic()
        await writer.close()
        return time.monotonic() - started

    assert asyncio.run(main()) < 60
    assert storage.remove_batches == [[7]]


def test_adds_do_not_take_removes_before_they_are_due() -> None:
    # A busy submitter must not turn every add commit into an add and a remove transaction.
    storage = RemoveLog()

    async def main() -> None:
        writer = StorageWriter(storage, remove_delay=3600, remove_batch=1000)
        await writer.start()
        results = Results(20)
        for key in range(1, 21):
            writer.add(job(key), results.done_for(key))
            writer.remove(key + 100)
            await asyncio.sleep(0)
        await results.wait()
        assert storage.remove_batches == []
        await writer.close()

    asyncio.run(main())
    assert storage.remove_batches == [list(range(101, 121))]


def test_remove_grouping_misuse() -> None:
    with pytest.raises(ConfigurationError):
        StorageWriter(GatedStorage(), remove_delay=-1)
    with pytest.raises(ConfigurationError):
        StorageWriter(GatedStorage(), remove_batch=0)
