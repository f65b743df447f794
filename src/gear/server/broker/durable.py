"""Durable background jobs in the broker: the store hand-off, held output, and replay.

Owns the broker's side of durability (docs/semantics.md, "Background jobs and durability"): a
new background job is stored before it is announced, and until its store answers it is HELD,
not runnable, and every byte for its submitter waits behind it in order (libgearman matches
JOB_CREATED to submissions strictly in order, docs/protocol.md §1.3). The jobs a ``feed()``
created are handed to ``store_batched`` in one call at its end (:func:`flush_stores`); the
store answers with ``Broker.stored_batch`` (:func:`stored_batch`), once per committed batch.
:func:`replay` queues the stored jobs at start.

The functions take the broker as their first argument, typed by :class:`Scheduler` (what they
use of it); ``core.py`` binds them as methods. Must not import ``core.py``, sockets, asyncio or
threads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol, cast

import gear.constants as c
from gear.protocol.messages import Priority
from gear.server.broker.lifecycle import Outcome
from gear.server.broker.model import Function, Job, JobState, Peer, StoreDone
from gear.server.broker.wire import error, pack
from gear.server.storage.base import StoredJob

__all__ = [
    "Scheduler",
    "flush_stores",
    "hold",
    "per_job",
    "release",
    "replay",
    "store_job",
    "stored_batch",
]

_RES = c.RES
_JOB_CREATED = c.JOB_CREATED
HELD = JobState.HELD
QUEUED = JobState.QUEUED
STORE_FAILED = Outcome.STORE_FAILED
_PRIORITIES = {int(p): p for p in Priority}
_new_tuple = tuple.__new__
#: The last three digits of a handle number >= 1000 (see release).
_DIGITS3: list[bytes] = [b"%03d" % i for i in range(1000)]
#: The fields store_job builds a StoredJob from, in order: tuple.__new__ skips the NamedTuple's
#: defaults, so a field added to StoredJob must be added here and there (this fails loudly).
_STORED_FIELDS = ("key", "function", "unique", "data", "priority", "when", "reducer")
if StoredJob._fields != _STORED_FIELDS:  # pragma: no cover - a programming error
    raise ImportError(f"durable.store_job builds {_STORED_FIELDS}, StoredJob has "
                      f"{StoredJob._fields}: update both")


class Scheduler(Protocol):
    """What this module uses of the broker (``core.Broker``)."""

    dirty: set[Peer]
    _hprefix: bytes
    _seq: int
    _next_key: int
    _new_records: list[StoredJob]
    _new_jobs: list[Job]
    _store_batched: Callable[[list[StoredJob], list[Job]], None] | None
    _remove: Callable[[int], None] | None

    def get_function(self, name: bytes) -> Function: ...

    def _new_job(self, f: Function, unique: bytes, data: bytes, priority: Priority,
                 background: bool, when: int = 0, reducer: bytes | None = None,
                 key: int | None = None) -> Job: ...

    def _start(self, job: Job) -> None: ...

    def _wake(self, f: Function) -> int: ...

    def _finish(self, job: Job, outcome: Outcome, packet: bytes | None = None) -> None: ...

    def stored_batch(self, jobs: Iterable[Job], exc: BaseException | None) -> None: ...


def _peers(waiters: Peer | list[Peer] | None) -> list[Peer] | tuple[Peer, ...]:
    """The peers of a HELD job's ``waiters`` field, as a sequence."""
    if waiters is None:
        return ()
    return waiters if isinstance(waiters, list) else (waiters,)


def per_job(store: Callable[[StoredJob, StoreDone], None],
            broker: Scheduler) -> Callable[[list[StoredJob], list[Job]], None]:
    """A ``store_batched`` made of a per-job ``store(record, done)`` (``BrokerConfig.store``):
    each record is stored on its own and its ``done`` answers ``broker.stored_batch`` for its
    job; a store that raises at once answers like a failed commit."""

    def store_batched(records: list[StoredJob], jobs: list[Job]) -> None:
        for record, job in zip(records, jobs, strict=True):

            def done(exc: BaseException | None, job: Job = job) -> None:
                broker.stored_batch((job,), exc)

            try:
                store(record, done)
            except Exception as exc:
                broker.stored_batch((job,), exc)

    return store_batched


def hold(broker: Scheduler, peer: Peer, job: Job) -> None:
    """Hold ``peer``'s output from here until ``job`` (HELD) is answered by its store.

    The job itself is the placeholder in the held deque: no object per waiter. Its reply is
    JOB_CREATED once it left HELD, or ``job.refusal`` when its store failed.
    """
    held = peer.held
    if held is None:
        held = peer.held = deque()
    held.append(job)
    peer.pending += 1


def release(broker: Scheduler, peer: Peer) -> None:
    """Move ``peer``'s held output to ``out`` up to the first job still HELD.

    The JOB_CREATED replies of consecutive released jobs are made as ``pipeline.submit_run``
    makes them: a handle is ``base`` (the broker's prefix and the number without its last three
    digits) and ``_DIGITS3``' last three digits, and replies whose handles have one length share
    one header and go out in one ``join``. Handles below 1000 are formatted one by one.
    """
    held = peer.held
    if held is None:  # disconnected, or released already in this batch
        return
    out = peer.out
    n = len(out)
    add = out.append
    held_state = HELD
    prefix = broker._hprefix
    digits3 = _DIGITS3
    made: list[bytes] = []  # handles of the replies not yet written, all one length
    handle = made.append
    head = b""  # their header
    base = b""
    low = high = 0  # the numbers base stands for: [low, high)
    stop: Job | None = None  # the first job still HELD
    packet: bytes
    for item in held:
        if type(item) is Job:
            if item.state is held_state:
                stop = item
                break
            refusal = item.refusal
            if refusal is None:
                number = item.number
                if low <= number < high:
                    handle(base + digits3[number % 1000])
                    continue
                if number >= 1000:
                    thousands = number // 1000
                    low = thousands * 1000
                    high = low + 1000
                    new_base = b"%s%d" % (prefix, thousands)
                    if len(new_base) != len(base):
                        if made:
                            add(head + head.join(made))
                            made.clear()
                        head = pack(_RES, _JOB_CREATED, len(new_base) + 3)
                    base = new_base
                    handle(base + digits3[number % 1000])
                    continue
                one = b"%s%d" % (prefix, number)  # below 1000 _DIGITS3 would pad it
                packet = pack(_RES, _JOB_CREATED, len(one)) + one
            else:
                packet = refusal
        else:
            packet = cast(bytes, item)
        if made:
            add(head + head.join(made))
            made.clear()
        add(packet)
    if made:
        add(head + head.join(made))
    if stop is None:
        peer.held = None
    else:  # the first occurrence of stop (a job may stand in one deque twice)
        popleft = held.popleft
        while held[0] is not stop:
            popleft()
    if len(out) != n:
        broker.dirty.add(peer)


def store_job(broker: Scheduler, peer: Peer, job: Job) -> None:
    """A new background job of ``peer`` is to be stored: HELD, its record queued for the end
    of this ``feed()`` (:func:`flush_stores`)."""
    key = broker._next_key
    broker._next_key = key + 1
    job.key = key
    job.state = HELD
    job.waiters = peer
    held = peer.held
    if held is None:
        held = peer.held = deque()
    held.append(job)  # inline hold(): the job is its submitter's placeholder
    peer.pending += 1
    # tuple.__new__ straight from C (StoredJob's generated __new__ is a Python function): every
    # field is given, in _STORED_FIELDS' order (checked against StoredJob at import).
    record = _new_tuple(StoredJob, (key, job.name, job.unique, job.arguments, job.priority,
                                    job.when, job.reducer))
    broker._new_records.append(record)
    broker._new_jobs.append(job)


def flush_stores(broker: Scheduler) -> None:
    """Hand the durable jobs of this feed to ``store_batched`` in one call."""
    records, broker._new_records = broker._new_records, []
    jobs, broker._new_jobs = broker._new_jobs, []
    store = broker._store_batched
    assert store is not None
    try:
        store(records, jobs)
    except Exception as exc:  # a store that fails at once answers like a failed commit
        broker.stored_batch(jobs, exc)


def stored_batch(broker: Scheduler, jobs: Iterable[Job], exc: BaseException | None) -> None:
    """The store answered for ``jobs`` (``store_batched``): announce and run them, or
    forget them with ERROR QUEUE_ERROR when ``exc`` is set. A job answered twice, or no
    longer HELD, is ignored. Output of every waiting peer is released in order."""
    touched: dict[Peer, None] = {}
    if exc is not None:
        reason = str(exc).encode("utf-8", "replace") or type(exc).__name__.encode()
        reply = error(b"QUEUE_ERROR", reason)
        for job in jobs:
            if job.state is not HELD:
                continue
            waiters = job.waiters
            job.waiters = None
            job.refusal = reply
            job.key = None  # never stored: nothing to remove
            broker._finish(job, STORE_FAILED)
            job.clients = ()
            for peer in _peers(waiters):
                peer.pending -= 1
                touched[peer] = None
    else:
        held_state = HELD
        queued = QUEUED
        seq = broker._seq
        # The common case: runs of jobs of one submitter; its count is settled when it changes.
        last: Peer | None = None
        count = 0
        for job in jobs:
            if job.state is not held_state:
                continue
            waiters = job.waiters
            job.waiters = None
            if job.when:
                broker._seq = seq
                broker._start(job)
                seq = broker._seq
            else:  # inline _enqueue (the common case); the number is the order when it can
                n = job.number  # be (no int of its own, see core._later)
                seq = job.seq = n if n > seq else seq + 1
                job.state = queued
                f = job.function
                f.queues[job.priority].append(job)
                if f.sleepers:
                    broker._seq = seq
                    broker._wake(f)
                    seq = broker._seq
            if waiters is last:
                count += 1
            elif type(waiters) is Peer:
                if last is not None:
                    last.pending -= count
                    touched[last] = None
                last = waiters
                count = 1
            else:
                for peer in _peers(waiters):
                    peer.pending -= 1
                    touched[peer] = None
        if last is not None:
            last.pending -= count
            touched[last] = None
        broker._seq = seq
    for peer in touched:
        release(broker, peer)


def replay(broker: Scheduler, records: Iterable[StoredJob]) -> None:
    """Queue stored jobs at start, before any connection (docs/protocol.md §3.15,
    docs/semantics.md, "Background jobs and durability").

    A stored job whose (function, unique) is already replayed is coalesced onto it and its
    duplicate record removed. Later keys are above every stored key.
    """
    for record in records:
        if record.key >= broker._next_key:
            broker._next_key = record.key + 1
        f = broker.get_function(record.function)
        unique = record.unique
        existing = None
        if unique == b"-":
            existing = f.by_data.get(record.data) if record.data else None
        elif unique:
            existing = f.uniques.get(unique)
        if existing is not None:
            if broker._remove is not None:
                broker._remove(record.key)
            continue
        priority = _PRIORITIES.get(record.priority, Priority.NORMAL)
        job = broker._new_job(f, unique, record.data, priority, True, record.when,
                              record.reducer, record.key)
        broker._start(job)
