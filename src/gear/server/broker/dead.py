"""The dead-letter list: background jobs whose retries ran out, to be listed, retried, dropped.

Owns :class:`DeadLetters` (mixed into ``core.Broker``) and :class:`DeadLetter`, the record admin
reads. ``Broker._finish`` calls :meth:`DeadLetters._bury` for ``Outcome.RETRIES_EXHAUSTED``
and for nothing else, so a poison job leaves the broker through the one exit and its observers
hear of it once; everything after that (keeping it, listing, retrying, dropping) is here.

Decisions (docs/semantics.md, "Poison jobs and the dead-letter list"):

* A job whose worker went away ``job_retries`` times fails (WORK_FAIL to its clients, in
  ``_finish``) and is logged once at WARNING with its function, handle, unique and attempts.
  That line is the broker's only log output: one per poison job, never per packet.
* A background job (or a foreground job a background submission joined, ``Job.keep``) is kept
  in the list, keyed by its handle, oldest death first. A foreground-only job is not: its
  clients got WORK_FAIL and own the failure.
* The list is bounded by ``BrokerConfig.dead_letter_max`` (0 keeps none): past it, the oldest
  dead job is dropped, its stored record deleted, and a WARNING logged.
* Durable servers do not delete a dead job's stored record: they mark it dead (``bury``, a
  write-behind change like ``remove``), so the list survives a restart (:meth:`replay_dead`
  gives each replayed dead job a fresh handle, as replayed live jobs get).
* Retry puts the job back at the **tail** of its queue as a fresh job (a new handle, its
  attempt count 0, runnable now) and revives its stored record under the same key. It is
  refused while a job with the same (function, unique) is in memory: coalescing would fold two
  different runs into one.
* Drop forgets the job and deletes its stored record.

Must not import ``core.py``, sockets, asyncio or threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from gear.protocol.messages import Priority
from gear.server.broker.model import Function, Job
from gear.server.storage.base import DeadJob, StoredJob

if TYPE_CHECKING:
    from gear.server.broker.model import BrokerConfig

__all__ = ["DeadLetter", "DeadLetters"]

log = logging.getLogger("gear.server.broker")

_PRIORITIES = {int(p): p for p in Priority}


class DeadLetter(NamedTuple):
    """One dead job as admin ``show dead jobs`` prints it."""

    handle: bytes
    function: bytes
    unique: bytes
    attempts: int
    #: Unix time its retries ran out.
    died: float
    #: Bytes of its data.
    size: int


def _text(value: bytes) -> str:
    return value.decode("utf-8", "backslashreplace")


class DeadLetters:
    """The broker's dead-letter list (a mixin: ``self`` is the broker)."""

    if TYPE_CHECKING:  # what it uses of the broker, defined in core.py
        config: BrokerConfig
        functions: dict[bytes, Function]
        clock: Callable[[], float]
        dead: dict[bytes, DeadJob]
        _counter: int
        _hprefix: bytes
        _next_key: int
        _remove: Callable[[int], None] | None
        _bury_store: Callable[[DeadJob], None] | None
        _revive_store: Callable[[int], None] | None

        def get_function(self, name: bytes) -> Function: ...
        def _new_job(self, f: Function, unique: bytes, data: bytes, priority: Priority,
                     background: bool, when: int = 0, reducer: bytes | None = None,
                     key: int | None = None) -> Job: ...
        def _start(self, job: Job) -> None: ...

    def _bury(self, job: Job) -> None:
        """``_finish`` of a job whose retries ran out, at the point its store key would be
        removed: log it, and keep it when someone asked for it in the background."""
        kept = (job.background or job.keep) and self.config.dead_letter_max > 0
        log.warning("job %s of function %s (unique %r) failed after %d attempts: its worker "
                    "went away each time (job_retries); %s", _text(job.handle), _text(job.name),
                    _text(job.unique), job.retries,
                    "kept in the dead-letter list" if kept else "WORK_FAIL sent to its clients")
        key = job.key
        if not kept:
            if key is not None and self._remove is not None:
                self._remove(key)
            return
        record = StoredJob(key or 0, job.name, job.unique, job.arguments, int(job.priority), 0,
                           job.reducer)
        if key is not None:
            if self._bury_store is not None:
                self._bury_store(dead := DeadJob(record, job.retries, self.clock()))
                self._keep_dead(job.handle, dead)
                return
            # A store without a dead-letter list: the job is kept in memory only.
            if self._remove is not None:
                self._remove(key)
            record = record._replace(key=0)
        self._keep_dead(job.handle, DeadJob(record, job.retries, self.clock()))

    def _keep_dead(self, handle: bytes, dead: DeadJob) -> None:
        self.dead[handle] = dead
        limit = max(0, self.config.dead_letter_max)
        while len(self.dead) > limit:
            oldest = next(iter(self.dead))
            old = self.dead.pop(oldest)
            log.warning("dead-letter list full (dead_letter_max %d): dropped its oldest job %s "
                        "of function %s", limit, _text(oldest), _text(old.job.function))
            self._forget_stored(old)

    def _forget_stored(self, dead: DeadJob) -> None:
        if dead.job.key and self._remove is not None:
            self._remove(dead.job.key)

    def replay_dead(self, records: list[DeadJob]) -> None:
        """Put the stored dead-letter list back at start (after :meth:`replay`), each with a
        fresh handle; keys stay above every stored key."""
        for dead in records:
            key = dead.job.key
            if key >= self._next_key:
                self._next_key = key + 1
            self._counter = n = self._counter + 1
            self.get_function(dead.job.function)  # listed by status, as a replayed job's is
            self._keep_dead(b"%s%d" % (self._hprefix, n), dead)

    # ------------------------------------------------------------------ admin's interface

    def dead_letters(self, function: bytes | None = None) -> list[DeadLetter]:
        """The dead jobs (of ``function`` only, when given), oldest first (admin
        ``show dead jobs``)."""
        return [DeadLetter(handle, d.job.function, d.job.unique, d.attempts, d.died,
                           len(d.job.data))
                for handle, d in self.dead.items()
                if function is None or d.job.function == function]

    def dead_function(self, handle: bytes) -> bytes | None:
        """The function of dead job ``handle``, or None when there is none."""
        dead = self.dead.get(handle)
        return None if dead is None else dead.job.function

    def retry_dead(self, handle: bytes) -> str | None:
        """Admin ``retry dead job``: queue dead job ``handle`` again as a fresh job. Returns
        None when done, else why not: ``"unknown"`` (no such dead job) or ``"unique in use"``
        (a job with its unique is in memory)."""
        dead = self.dead.get(handle)
        if dead is None:
            return "unknown"
        record = dead.job
        f = self.get_function(record.function)
        unique = record.unique
        if unique == b"-":
            if record.data and record.data in f.by_data:
                return "unique in use"
        elif unique and unique in f.uniques:
            return "unique in use"
        del self.dead[handle]
        key = record.key or None
        priority = _PRIORITIES.get(record.priority, Priority.NORMAL)
        job = self._new_job(f, unique, record.data, priority, True, 0, record.reducer, key)
        if key is not None and self._revive_store is not None:
            self._revive_store(key)
        self._start(job)
        return None

    def drop_dead(self, handle: bytes) -> bool:
        """Admin ``drop dead job``: forget dead job ``handle`` (and its stored record); False
        when there is none."""
        dead = self.dead.pop(handle, None)
        if dead is None:
            return False
        self._forget_stored(dead)
        return True
