"""Group commit: drives a blocking :class:`Storage` from the event loop without ever blocking it.

Owns :class:`StorageWriter`, the only object the network layer talks to about durability
(through ``gear.server.broker.BrokerConfig``): ``BrokerConfig(store=writer.add,
remove=writer.remove)`` and ``after_batch`` = "flush every dirty peer". Must not import the
broker or the network layer; it uses asyncio only to hand results back to the loop.

How it works:

* One dedicated writer thread owns the storage (SQLite connections are bound to a thread, and
  one thread means the backend never sees concurrent calls). ``start()`` runs ``load()`` there.
* ``add()`` runs on the loop thread and only appends to a pending list (a lock, an append, and a
  wake-up when the list was empty). The writer takes *everything* pending (up to ``max_batch``),
  stores it in one transaction with one fsync, then schedules ONE callback on the loop
  (``call_soon_threadsafe``) that calls ``done(None)`` for each job of the batch, in submission
  order, and then ``after_batch()`` once. While a batch is being committed, new adds pile up for
  the next one: under load many jobs share an fsync, when idle a job waits for one fsync only.
* Batched answers (the durable hot path): with ``on_batch`` set, the second argument of
  ``add()`` is an opaque token instead of a callback, and each batch is answered with ONE call
  ``on_batch(tokens, error)`` (tokens in submission order), then ``after_batch()``: no callback
  object per job and no Python call per job on the loop (the broker's ``stored_batch``).
  ``add_many(records, tokens)`` takes a whole list at once (the broker's ``store_batched``).
* A failed batch (full disk, lost database connection, ...) calls ``done(exc)`` for every job in
  it, with a :class:`StorageError` (the broker answers ERROR QUEUE_ERROR). The writer keeps
  running and later batches are tried normally, so the server recovers when the disk or the
  database does.
* ``remove()`` is write-behind: keys are batched and deleted after pending adds, without making
  anyone wait. A crash can therefore lose the last deletes and the server replays jobs that had
  already completed: **delivery of stored jobs is at-least-once**, as in gearmand (docs/protocol.md
  §4.1). A failed delete batch is retried after ``remove_retry_delay`` seconds.
* Removes are grouped: with ``remove_delay`` set, the writer lets finished keys pile up until
  ``remove_batch`` of them are pending or the first has waited ``remove_delay`` seconds (or
  the writer closes), then deletes them all in one transaction. Nobody waits for a delete, so
  this costs only how long a finished job stays on disk; without it a draining queue woke the
  writer for a handful of keys at a time, one transaction (and, in SQLite, one fsync) each:
  ~16-60 keys per transaction under the deep load of docs/benchmarks.md.
* GIL: the writer thread gives the GIL up inside every SQLite statement and socket write, and
  while the event loop is busy it gets it back only when the loop blocks or the interpreter's
  switch interval (5 ms by default) forces a switch; with two or three such waits per batch the
  writer, not the disk, bounds the durable rate. ``switch_interval`` (the server passes 0.1 ms)
  lowers ``sys.setswitchinterval`` while the writer runs (never raises it; restored by
  ``close()``). Measured with four pipelining connections (bench/bench_durable.py's load):
  ~147k durable jobs/s at the default 5 ms and at 2 ms, ~157k at 0.5 ms, ~168k at 0.1 ms,
  ~170k at 0.05 ms; the loop thread pays a few more GIL hand-offs only while the writer works.
* ``bury()`` and ``revive()`` (the dead-letter list, base.py) are write-behind like
  ``remove()`` and share its queue, so the store sees every change to a key in the order the
  broker made it. ``start()`` also reads the dead-letter list (:attr:`StorageWriter.dead`).
* ``on_commit`` (optional) is told the duration of every add batch, in the writer thread.
* ``close()`` stops accepting adds, commits what is pending (adds and removes), delivers the
  callbacks, and closes the storage in the writer thread.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from gear.errors import ConfigurationError
from gear.server.storage.base import DeadJob, Storage, StorageError, StoredJob

log = logging.getLogger("gear.server.storage")

DoneCallback = Callable[[BaseException | None], None]
#: ``on_batch(tokens, error)``: one answer for a whole batch (see the module docstring).
BatchCallback = Callable[[list[Any], "StorageError | None"], None]


class _Revive(NamedTuple):
    """A queued ``revive`` of one key (the write-behind queue also holds ints and DeadJobs)."""

    key: int


@dataclass
class WriterStats:
    """Counters for metrics and the admin interface (written by the writer thread only)."""

    batches: int = 0          #: add batches committed or failed
    jobs: int = 0             #: jobs stored
    failed_batches: int = 0
    failed_jobs: int = 0
    removed: int = 0          #: keys whose delete was committed
    largest_batch: int = 0


class StorageWriter:
    """The group-commit writer thread in front of one :class:`Storage`."""

    def __init__(self, storage: Storage, *, after_batch: Callable[[], None] | None = None,
                 on_batch: BatchCallback | None = None, max_batch: int = 10000,
                 remove_retry_delay: float = 1.0,
                 switch_interval: float | None = None, remove_delay: float = 0.0,
                 remove_batch: int = 4096) -> None:
        if max_batch < 1:
            raise ConfigurationError("max_batch must be at least 1")
        if remove_delay < 0 or remove_batch < 1:
            raise ConfigurationError("remove_delay must be >= 0 and remove_batch >= 1")
        self.storage = storage
        self.stats = WriterStats()
        self._after_batch = after_batch
        #: When set, ``add()`` takes tokens and every batch is answered by one call of this
        #: (may be set after construction, before the first ``add()``).
        self.on_batch = on_batch
        #: ``on_commit(seconds, jobs)``: called in the writer thread after each add batch
        #: (committed or failed) with the time ``storage.add`` took (geard's store latency
        #: metric, docs/operations.md §2); it must be thread-safe and quick.
        self.on_commit: Callable[[float, int], None] | None = None
        self._max_batch = max_batch
        self._remove_retry_delay = remove_retry_delay
        #: Grouped removes (module docstring): how long the first pending change may wait, and
        #: how many pending changes are deleted at once without waiting.
        self._remove_delay = remove_delay
        self._remove_batch = remove_batch
        # See the module docstring ("GIL"): applied from start() to close(), process-wide.
        self._switch_interval = switch_interval
        self._saved_interval: float | None = None
        # add() takes the bare lock (a C-level context manager, cheaper per job than the
        # Condition's Python-level __enter__); the writer waits on the Condition over it.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        # Pending adds as two parallel lists, not a list of (job, done) pairs: one fewer
        # long-lived object per job for the cyclic GC to track while the job waits.
        self._adds: list[StoredJob] = []
        self._dones: list[Any] = []  # done callbacks, or tokens for on_batch
        # Write-behind changes in order: int keys to remove, DeadJobs to bury, _Revives;
        # ``_mixed`` says whether anything but ints is in the list (the common case is not).
        self._removes: list[Any] = []
        self._mixed = False
        #: The dead-letter list read by ``start()``, for the server to replay.
        self.dead: list[DeadJob] = []
        self._remove_retry_at = 0.0
        self._removes_since = 0.0  # monotonic time the oldest pending change was queued
        self._closing = False           # no more adds accepted
        self._finished = False          # the writer thread is gone: removes are dropped
        self._refusal: StorageError | None = None  # why adds are refused (closed / load failed)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<StorageWriter {self.storage!r} pending={self.pending}>"

    @property
    def pending(self) -> int:
        """Jobs added but not yet committed (or failed)."""
        return len(self._adds)

    # -- loop side -----------------------------------------------------------------------

    async def start(self) -> list[StoredJob]:
        """Start the writer thread, load the storage there, and return the jobs to replay.

        Raises :class:`StorageError` when the store cannot be read (the server must not start).
        """
        if self._thread is not None:
            raise RuntimeError("StorageWriter.start() called twice")
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self._switch_interval is not None:
            self._saved_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(self._saved_interval, self._switch_interval))
        loaded: asyncio.Future[list[StoredJob]] = loop.create_future()
        self._stopped = loop.create_future()
        self._thread = threading.Thread(target=self._run, args=(loaded,),
                                        name="gear-storage-writer", daemon=True)
        self._thread.start()
        return await loaded

    def add(self, job: StoredJob, done: Any) -> None:
        """Store ``job``; ``done(None)`` or ``done(StorageError)`` follows on the loop thread.

        With ``on_batch`` set, ``done`` is a token answered by ``on_batch([..., done, ...],
        error)`` instead.
        """
        with self._lock:
            refusal = self._refusal
            if refusal is None:
                self._adds.append(job)
                self._dones.append(done)
                if len(self._adds) == 1:
                    self._cond.notify()
                return
        # Refused (closed, or the store never loaded): still answer asynchronously, as promised.
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon(self._deliver, [done], refusal)
        else:
            self._deliver([done], refusal)

    def add_many(self, jobs: list[StoredJob], tokens: list[Any]) -> None:
        """``add()`` for each of ``jobs`` with its token (or done callback), in one lock."""
        with self._lock:
            refusal = self._refusal
            if refusal is None:
                adds = self._adds
                was_empty = not adds
                adds += jobs
                self._dones += tokens
                if was_empty:
                    self._cond.notify()
                return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon(self._deliver, list(tokens), refusal)
        else:
            self._deliver(list(tokens), refusal)

    def remove(self, key: int) -> None:
        """Delete a finished job's record, eventually (write-behind)."""
        with self._lock:
            if self._finished:
                log.debug("storage writer closed: dropping remove of key %d", key)
                return
            removes = self._removes
            removes.append(key)
            if len(removes) == 1:
                self._removes_since = time.monotonic()
                self._cond.notify()
            elif len(removes) == self._remove_batch:
                self._cond.notify()

    def bury(self, dead: DeadJob) -> None:
        """Mark a stored job dead, eventually (write-behind, in order with removes)."""
        self._change(dead)

    def revive(self, key: int) -> None:
        """Make a dead job live again, eventually (write-behind, in order with removes)."""
        self._change(_Revive(key))

    def _change(self, item: object) -> None:
        with self._lock:
            if self._finished:
                log.warning("storage writer closed: dropping a dead-letter change (%r)", item)
                return
            removes = self._removes
            removes.append(item)
            self._mixed = True
            if len(removes) == 1:
                self._removes_since = time.monotonic()
                self._cond.notify()
            elif len(removes) == self._remove_batch:
                self._cond.notify()

    async def close(self) -> None:
        """Commit everything pending, deliver its callbacks, stop the thread, close the storage."""
        with self._cond:
            self._closing = True
            if self._refusal is None:
                self._refusal = StorageError(f"{self.storage.name} queue is closed")
            self._cond.notify()
        if self._thread is None:
            self._finished = True
            self.storage.close()
            return
        assert self._stopped is not None
        await asyncio.shield(self._stopped)
        self._thread.join()
        if self._saved_interval is not None:
            sys.setswitchinterval(self._saved_interval)
            self._saved_interval = None

    def _deliver(self, dones: list[Any], error: StorageError | None) -> None:
        # Runs on the loop thread: one call per batch (a single wake-up of the loop).
        on_batch = self.on_batch
        if on_batch is not None:
            try:
                on_batch(dones, error)
            except Exception:
                log.exception("storage on_batch() callback failed")
        else:
            for done in dones:
                try:
                    done(error)
                except Exception:
                    log.exception("storage done() callback failed")
        if self._after_batch is not None:
            try:
                self._after_batch()
            except Exception:
                log.exception("storage after_batch() callback failed")

    # -- writer thread -------------------------------------------------------------------

    def _post(self, callback: Callable[..., object], *args: Any) -> None:
        loop = self._loop
        assert loop is not None
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop was closed under us (shutdown without close())
            log.warning("event loop closed: dropping a storage callback")

    def _run(self, loaded: asyncio.Future[list[StoredJob]]) -> None:
        try:
            jobs = self.storage.load()
            self.dead = self.storage.load_dead()
        except BaseException as exc:
            error = exc if isinstance(exc, StorageError) else StorageError(
                f"cannot load the {self.storage.name} queue: {exc!r}")
            if error is not exc:
                error.__cause__ = exc
            with self._cond:
                self._refusal = error  # _finish() fails the adds queued before start()
            self._post(_resolve, loaded, None, error)
            self._finish()
            return
        self._post(_resolve, loaded, jobs, None)
        try:
            self._serve()
        finally:
            self._finish()

    def _finish(self) -> None:
        with self._cond:
            self._finished = True
            dropped, self._removes = self._removes, []
            # Normally empty here; after an unexpected error in the writer loop, the jobs that
            # were waiting must still get their answer, and later adds a refusal.
            if self._refusal is None:
                self._refusal = StorageError(f"{self.storage.name} queue writer stopped")
            self._adds = []
            orphans, self._dones = self._dones, []
        if orphans:
            self._post(self._deliver, orphans, self._refusal)
        if dropped:
            log.warning("%s queue: %d finished job(s) not deleted; they will run again after a "
                        "restart", self.storage.name, len(dropped))
        try:
            self.storage.close()
        except Exception:
            log.exception("closing the %s queue failed", self.storage.name)
        assert self._stopped is not None
        self._post(_resolve, self._stopped, None, None)

    def _removes_due(self) -> float | None:
        """With the lock held: the monotonic time the pending write-behind changes are due
        (see the module docstring), None when there are none."""
        removes = self._removes
        if not removes:
            return None
        due = self._remove_retry_at
        if len(removes) < self._remove_batch:
            due = max(due, self._removes_since + self._remove_delay)
        return due

    def _serve(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._adds and not self._closing:
                    due = self._removes_due()
                    if due is not None:
                        wait = due - time.monotonic()
                        if wait <= 0:
                            break
                        cond.wait(wait)
                    else:
                        cond.wait()
                closing = self._closing
                if len(self._adds) <= self._max_batch:
                    adds, self._adds = self._adds, []
                    dones, self._dones = self._dones, []
                else:
                    adds = self._adds[:self._max_batch]
                    del self._adds[:self._max_batch]
                    dones = self._dones[:self._max_batch]
                    del self._dones[:self._max_batch]
                removes: list[Any] = []
                mixed = False
                due = self._removes_due()
                if due is not None and (closing or time.monotonic() >= due):
                    removes, self._removes = self._removes, []
                    mixed, self._mixed = self._mixed, False
            if adds:
                try:
                    self._commit(adds, dones)
                except Exception as exc:  # a bug here must not leave clients waiting forever
                    log.exception("%s queue: storage writer error", self.storage.name)
                    self._post(self._deliver, dones, StorageError(
                        f"{self.storage.name} queue writer error: {exc!r}"))
            if removes and not self._delete(removes, mixed):
                if closing:
                    log.warning("%s queue: %d finished job(s) could not be deleted and will "
                                "run again after a restart", self.storage.name, len(removes))
                else:
                    with cond:
                        self._removes[:0] = removes
                        self._removes_since = time.monotonic()
                        self._mixed = self._mixed or mixed
                        self._remove_retry_at = time.monotonic() + self._remove_retry_delay
            if closing:
                with cond:
                    if not self._adds and not self._removes:
                        return

    def _commit(self, batch: list[StoredJob], dones: list[Any]) -> None:
        stats = self.stats
        error: StorageError | None = None
        started = time.perf_counter()
        try:
            self.storage.add(batch)
        except StorageError as exc:
            error = exc
        except Exception as exc:  # a backend bug must not kill the writer or lose callbacks
            log.exception("%s queue: unexpected error storing a batch", self.storage.name)
            error = StorageError(f"{self.storage.name} queue failed: {exc!r}")
            error.__cause__ = exc
        on_commit = self.on_commit
        if on_commit is not None:
            try:
                on_commit(time.perf_counter() - started, len(batch))
            except Exception:
                log.exception("storage on_commit() callback failed")
        stats.batches += 1
        stats.largest_batch = max(stats.largest_batch, len(batch))
        if error is None:
            stats.jobs += len(batch)
        else:
            stats.failed_batches += 1
            stats.failed_jobs += len(batch)
            log.error("%s queue: %d job(s) refused: %s", self.storage.name, len(batch), error)
        self._post(self._deliver, dones, error)

    def _delete(self, keys: list[Any], mixed: bool) -> bool:
        """Apply write-behind changes in order; False (to retry them all) on a failure. Every
        change is idempotent, so a retry after a partial success changes nothing twice."""
        storage = self.storage
        try:
            if not mixed:
                storage.remove(keys)
                removed = len(keys)
            else:
                removed = 0
                for kind, group in itertools.groupby(keys, type):
                    run = list(group)
                    if kind is DeadJob:
                        storage.bury(run)
                    elif kind is _Revive:
                        storage.revive([item.key for item in run])
                    else:
                        storage.remove(run)
                        removed += len(run)
        except Exception as exc:
            log.warning("%s queue: deleting %d finished job(s) failed, will retry: %s",
                        storage.name, len(keys), exc)
            return False
        self.stats.removed += removed
        return True


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
