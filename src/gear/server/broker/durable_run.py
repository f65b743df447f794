"""The durable broker's fast path: runs of background submits made and handed to the store inline.

Owns :func:`submit_run` for a broker with a store (``pipeline.submit_run`` hands it the run when
``Broker._durable`` is set). A pipelined client's background submissions with an empty unique
to a ``plain`` function (no queue limit, no lifecycle receivers but bulk observers, no ACL)
are made here without a Python frame per job: this module inlines ``Broker._submit``,
``Broker._new_job`` and ``durable.store_job`` for them, and
tests/server/test_broker_submit_run.py holds it to them (the same bytes to every connection, the
same jobs, queues, counters and store records). Every other packet of the run (foreground, a
unique, an unknown function, a limit...) goes to ``Broker._submit`` in order; anything that is
no well-formed submission ends the run, for the general dispatch. Measured with
bench/profile_server.py (the ``durable-bg`` load).

No reply is made here: a durable job's JOB_CREATED waits for its store, as its placeholder in
the submitter's held deque, and ``durable.release`` writes it. Must not import ``core.py``,
sockets, asyncio or threads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

import gear.constants as c
from gear.protocol.messages import Priority
from gear.protocol.packets import REQ
from gear.server.broker.lifecycle import JobEvents
from gear.server.broker.model import Function, Job, JobState, Peer
from gear.server.broker.wire import SUBMIT_KIND, unpack_from
from gear.server.storage.base import StoredJob

__all__ = ["Scheduler", "submit_run"]

_MAX_TYPE = c.MAX_TYPE
_new_object = object.__new__
_new_tuple = tuple.__new__
HELD = JobState.HELD
#: ``lead_type`` while the run has no fast packet to compare with (no packet has this type).
_NO_LEAD = -1


class Scheduler(Protocol):
    """What this module uses of the broker (``core.Broker``)."""

    functions: dict[bytes, Function]
    _jobs: dict[int, Job]
    _no_function: Function
    _counter: int
    _next_key: int
    _new_records: list[StoredJob]
    _new_jobs: list[Job]
    log_clock: Callable[[], float] | None
    _bulk: tuple[JobEvents, ...]

    def _submit(self, peer: Peer, name: bytes, unique: bytes, data: bytes, priority: Priority,
                background: bool, when: int = 0, reducer: bytes | None = None) -> None: ...


def submit_run(broker: Scheduler, peer: Peer, data: bytes, pos: int, n: int) -> int:
    """``pipeline.submit_run`` for a durable broker: the submissions back to back in ``data``
    from ``pos``; returns the position of the first packet not taken (``pos`` when none was).

    A fast packet (background, empty unique, a known ``plain`` function) makes a
    HELD job as ``_new_job`` and ``durable.store_job`` would: the next handle number and store
    key, the job in the job table, itself as its submitter's placeholder in ``peer.held``, its
    :class:`StoredJob` record (built with ``tuple.__new__`` in ``durable._STORED_FIELDS``'
    order) and the job queued for ``durable.flush_stores`` at the end of this ``feed()``. As in
    ``pipeline.submit_run``, a packet of the last fast packet's type whose body starts with the
    same ``name\\0\\0`` is known to be fast too (only its data is sliced out), the broker's
    counters are held in locals for the run (written back before every general call), and bulk
    observers get one ``created_run`` for the run.
    """
    functions = broker.functions
    jobs = broker._jobs
    new_job = _new_object
    new_tuple = _new_tuple
    stored_job = StoredJob
    held_state = HELD
    clock = broker.log_clock
    stamp = None if clock is None else clock()  # the job log's time of every job of the run
    limit = peer.decoder.max_packet_size
    add_record = broker._new_records.append
    add_token = broker._new_jobs.append
    counter = broker._counter
    first = counter + 1
    key = broker._next_key
    stored = 0  # jobs made here since peer.pending was last brought up to date
    # The last fast packet: its type and leading body bytes, and what they decide.
    lead_type = _NO_LEAD
    lead = b""
    lead_size = 0
    skip = 0  # header and lead: where the data starts
    f = broker._no_function
    name = b""
    priority = Priority.NORMAL
    hold = None  # peer.held.append, once this run holds output
    try:
        while n - pos >= 12:
            magic, ptype, size = unpack_from(data, pos)
            end = pos + 12 + size
            if end > n or magic != REQ or size > limit:
                break
            if ptype == lead_type and size >= lead_size and data[pos + 12 : pos + skip] == lead:
                arguments = data[pos + skip : end]
            else:
                kind = SUBMIT_KIND[ptype] if ptype <= _MAX_TYPE else None
                if kind is None:
                    break
                parts = data[pos + 12 : end].split(b"\x00", 2)
                if len(parts) != 3:
                    break
                name, unique, arguments = parts
                priority, background = kind
                known = functions.get(name)
                if unique or not background or known is None or not known.plain:
                    # The general case, in order after the jobs before it.
                    pos = end
                    lead_type = _NO_LEAD
                    broker._counter = counter
                    broker._next_key = key
                    peer.pending += stored
                    stored = 0
                    broker._submit(peer, name, unique, arguments, priority, background)
                    counter = broker._counter
                    key = broker._next_key
                    hold = None  # peer.held may be a new deque now
                    continue
                f = known
                name = f.name
                lead_type = ptype
                lead = name + b"\x00\x00"
                lead_size = len(lead)
                skip = 12 + lead_size
            if hold is None:
                held = peer.held
                if held is None:
                    held = peer.held = deque()
                hold = held.append
            pos = end
            counter += 1
            job = new_job(Job)
            job.number = counter
            job.function = f
            job.name = name
            job.unique = b""
            job.arguments = arguments
            job.priority = priority
            job.background = True
            job.clients = ()
            job.worker = None
            job.seq = 0
            job.state = held_state
            if stamp is not None:
                job.born = stamp
            job.key = key
            job.waiters = peer
            jobs[counter] = job
            f.total += 1
            hold(job)  # the job is its submitter's placeholder (durable.hold)
            stored += 1
            # Every field, in durable._STORED_FIELDS' order (checked against StoredJob there).
            add_record(new_tuple(stored_job, (key, name, b"", arguments, priority, 0, None)))
            add_token(job)
            key += 1
    finally:
        broker._counter = counter
        broker._next_key = key
        peer.pending += stored
        if broker._bulk and counter >= first:
            for receiver in broker._bulk:
                receiver.created_run(first, counter)
    return pos
