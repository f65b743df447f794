"""Group commit for the harp records: drives a blocking :class:`HarpStore` from the event loop.

Owns :func:`open_harp_store` (the store beside a ``--queue``) and :class:`HarpWriter`,
following the queue's ``writer.py``: one dedicated thread owns the store (``start()`` runs
its ``load()`` there); the loop thread only appends to pending lists under a lock and never
waits for the disk. The thread waits ``flush_interval`` after the first
pending change (or less, once ``max_pending`` changes are waiting), then writes everything
pending in ONE transaction (:meth:`HarpStore.write`). Saves of one record within a batch are
coalesced (the last wins), so a call submitted, started and ended within one interval is one
row write, and N stream messages arriving within one interval are one write, never N. Writes
are write-behind: a crash (not a shutdown) loses at most the last interval; a failed batch is
retried after ``retry_delay`` with the changes that came in meanwhile; ``close()`` writes what
is pending. Must not import the broker, the harp side or the network layer; it uses asyncio
only to hand the loaded records back to the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from gear.server.storage.base import StorageError
from gear.server.storage.harp import HarpBatch, HarpRow, HarpStore

__all__ = ["HarpWriter", "open_harp_store"]

log = logging.getLogger("gear.server.storage")


class HarpWriter:
    """The group-commit writer thread in front of one :class:`HarpStore` (module docstring)."""

    def __init__(self, store: HarpStore, *, flush_interval: float = 0.05,
                 max_pending: int = 10000, retry_delay: float = 1.0) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.retry_delay = retry_delay
        #: Transactions written (batches), and changes written.
        self.batches = 0
        self.changes = 0
        self._cond = threading.Condition()
        self._pending = HarpBatch()
        self._first_at = 0.0  # monotonic time of the oldest pending change
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- loop side -----------------------------------------------------------------------

    async def start(self) -> tuple[list[HarpRow], dict[str, list[str]]]:
        """Start the thread, load the store there; raises :class:`StorageError`."""
        loop = self._loop = asyncio.get_running_loop()
        loaded: asyncio.Future[Any] = loop.create_future()
        self._thread = threading.Thread(target=self._run, args=(loaded,),
                                        name="gear-harp-writer", daemon=True)
        self._thread.start()
        return await loaded

    def _added(self, pending: HarpBatch) -> None:
        # Called with the lock held, after a change was added.
        n = len(pending)
        if n == 1:
            self._first_at = time.monotonic()
            self._cond.notify()
        elif n == self.max_pending:
            self._cond.notify()

    def save(self, row: HarpRow) -> None:
        """Store (insert or replace) one record, eventually."""
        with self._cond:
            pending = self._pending
            pending.saves[row.id] = row
            self._added(pending)

    def append(self, job_id: str, n: int, text: str) -> None:
        """Store stream message ``n`` of ``job_id``, eventually (batched, never one write)."""
        with self._cond:
            pending = self._pending
            pending.stream.append((job_id, n, text))
            self._added(pending)

    def delete(self, job_ids: Sequence[str]) -> None:
        """Forget these records and their streams, eventually."""
        if not job_ids:
            return
        with self._cond:
            pending = self._pending
            pending.deletes.update(job_ids)
            self._added(pending)

    async def close(self) -> None:
        """Write everything pending, stop the thread, close the store."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        thread = self._thread
        if thread is None:
            self.store.close()
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, thread.join)

    # -- writer thread -------------------------------------------------------------------

    def _run(self, loaded: asyncio.Future[Any]) -> None:
        try:
            result = self.store.load()
        except BaseException as exc:
            error = exc if isinstance(exc, StorageError) else StorageError(
                f"cannot load the harp records: {exc!r}")
            self._post(loaded, None, error)
            try:
                self.store.close()
            finally:
                return  # noqa: B012 - the error went to the loop
        self._post(loaded, result, None)
        try:
            self._serve()
        finally:
            try:
                self.store.close()
            except Exception:
                log.exception("closing the harp record store failed")

    def _post(self, future: asyncio.Future[Any], result: Any, error: BaseException | None
              ) -> None:
        def resolve() -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(resolve)
        except RuntimeError:  # the loop is gone
            pass

    def _serve(self) -> None:
        cond = self._cond
        retry_at = 0.0
        while True:
            with cond:
                while True:
                    pending = len(self._pending)
                    now = time.monotonic()
                    if self._closing:
                        break
                    if pending:
                        due = max(self._first_at + self.flush_interval, retry_at)
                        if (pending >= self.max_pending and now >= retry_at) or now >= due:
                            break
                        cond.wait(due - now)
                    else:
                        cond.wait()
                batch, self._pending = self._pending, HarpBatch()
                closing = self._closing
            if batch:
                try:
                    self.store.write(batch)
                    self.batches += 1
                    self.changes += len(batch)
                    retry_at = 0.0
                except Exception as exc:
                    if closing:
                        log.error("harp records: %d change(s) not stored at shutdown: %s",
                                  len(batch), exc)
                        return
                    log.warning("harp records: storing %d change(s) failed, will retry: %s",
                                len(batch), exc)
                    retry_at = time.monotonic() + self.retry_delay
                    with cond:
                        batch.merge_newer(self._pending)
                        self._pending = batch
                        self._first_at = time.monotonic()
                    continue
            if closing:
                with cond:
                    if not self._pending:
                        return


def open_harp_store(url: str) -> HarpStore | None:
    """The harp store beside the ``--queue`` at ``url``: None for ``memory`` (records are kept
    in memory only), the same SQLite file, or the same PostgreSQL database."""
    from gear.server.storage import open_storage

    queue = open_storage(url)
    if queue is None:
        return None
    if queue.name == "sqlite":
        from gear.server.storage.harp_sqlite import SqliteHarpStore

        return SqliteHarpStore(queue.path)  # type: ignore[attr-defined]
    if queue.name == "postgres":
        from gear.server.storage.harp_postgres import PostgresHarpStore

        return PostgresHarpStore(queue.conninfo, queue.table)  # type: ignore[attr-defined]
    return None
