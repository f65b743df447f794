"""The scheduler: the :class:`Broker`, which owns every scheduling decision of the server.

Owns connections (``connect``/``disconnect``), input (``feed``/``dispatch``), output to peers,
the queues and wake-ups, ``take_job``, the job's one entry (``_new_job``) and one exit
(``_finish``, with its :class:`~gear.server.broker.lifecycle.Outcome`), the lifecycle receivers
(``add_observer``/``set_policy``), cancel, and the small interface admin reads and acts through
(``function_stats``, ``connections``, ``job_records``, ``cancellable``/``cancel_job``,
``set_max_queue``, ``request_shutdown``, ``create_function``/``drop_function``, ``write``,
``close``). The packet handlers are in ``requests.py``, the fast path in ``pipeline.py``,
durability in ``durable.py``, the timer heap in ``timers.py``, the dead-letter list in
``dead.py``; the package docstring
(``__init__.py``) is the interface with the network layer and the list of decisions.

The job log (``Broker.job_log``, None when nobody reads it; its reader is
``observe/metrics.py``, docs/operations.md §5). A completed job's three times go to its
function's columns (``Function.log_born``, ``log_assigned``, ``log_ended``; the function to
``Broker.log_functions`` when its columns were empty). Every other job that leaves is appended
to ``job_log`` as ``(function, outcome._value_, born, assigned, now)`` (a cancelled one with the
job in place of ``now``: the reader sees whether it still runs), and every requeue as
``(function, None, born, assigned, now)``. ``born`` is the ``Broker.log_clock`` time when the
job was made or last requeued (``lifecycle.FORGOTTEN`` once it was cancelled while running: the
reader skips its later entries), ``assigned`` the time it was assigned (None: never) and
``now`` the time it left. The reader empties the log and the columns; the broker only appends
(no call into anyone but the clock). The clock (``Broker.log_clock``, set with the log by its
reader) is read when a job is made or requeued (``job.born``), assigned (``peer.worker_jobs``)
and when it leaves.

Must not import sockets, asyncio, threads, the network layer, admin or
the package face ``gear``.
"""

from __future__ import annotations

import platform
import time
from collections import deque
from collections.abc import Callable
from itertools import islice
from math import inf, nextafter
from typing import TYPE_CHECKING, Any

import gear.constants as c
import gear.server.broker.durable as durable
import gear.server.broker.pipeline as pipeline
from gear._version import __version__
from gear.protocol.messages import Priority
from gear.protocol.packets import Decoder
from gear.server.broker.dead import DeadLetters
from gear.server.broker.departures import Departures
from gear.server.broker.gear_views import BrokerGearViews
from gear.server.broker.lifecycle import FORGOTTEN, JobEvents, Outcome, Receivers
from gear.server.broker.model import (
    BrokerConfig,
    Function,
    Job,
    JobState,
    JobTable,
    Peer,
)
from gear.server.broker.queries import AdminInterface
from gear.server.broker.requests import Requests
from gear.server.broker.timers import EPOCH, TIMEOUT, Timers
from gear.server.broker.wire import (
    NOOP,
    res,
)
from gear.server.storage.base import DeadJob, StoredJob

if TYPE_CHECKING:
    from gear.acl import ACL

__all__ = ["Broker", "LineHandler"]

#: An admin text line handler: ``handler(broker, peer, line)`` answers one line (without its
#: line ending) through ``broker.write`` / ``broker.close``.
LineHandler = Callable[["Broker", Peer, bytes], None]

HIGH, NORMAL, LOW = Priority.HIGH, Priority.NORMAL, Priority.LOW
QUEUED = JobState.QUEUED
RUNNING = JobState.RUNNING
WAITING = JobState.WAITING
HELD = JobState.HELD
DONE = JobState.DONE
_new_object = object.__new__
COMPLETE = Outcome.COMPLETE
EXCEPTION = Outcome.EXCEPTION
CANCELLED = Outcome.CANCELLED
RETRIES_EXHAUSTED = Outcome.RETRIES_EXHAUSTED
_RES = c.RES
_JOB_CREATED = c.JOB_CREATED
_WORK_FAIL = c.WORK_FAIL
_JOB_CANCEL = c.JOB_CANCEL
TIMED_OUT = Outcome.TIMEOUT

class Broker(Requests, Receivers, AdminInterface, DeadLetters, Departures, BrokerGearViews):
    """The scheduler. Every method runs on one thread (the event loop) and nothing blocks.

    The callables the server wires in are keyword arguments: ``admin`` (the admin line
    handler), ``store_batched``, ``remove`` and ``packet_hook`` (see :class:`BrokerConfig`),
    and ``bury``/``revive`` (the store's dead-letter list: ``dead.py``; without them a durable
    server keeps dead jobs in memory only).
    Each one not given is taken from its ``BrokerConfig`` field, still accepted from embedders
    that pass them there; the engine passes them here.
    """

    # The fast path and durability, bound as methods (the functions take the broker first).
    _feed = pipeline.feed
    _submit_run = pipeline.submit_run
    _store_job = durable.store_job
    _hold = durable.hold
    stored_batch = durable.stored_batch
    replay = durable.replay

    def __init__(
        self,
        config: BrokerConfig,
        clock: Callable[[], float] = time.time,
        *,
        admin: LineHandler | None = None,
        store_batched: Callable[[list[StoredJob], list[Job]], None] | None = None,
        remove: Callable[[int], None] | None = None,
        packet_hook: Callable[[Peer, int, bytes], None] | None = None,
        bury: Callable[[DeadJob], None] | None = None,
        revive: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        #: Peers whose ``out`` gained bytes since the network layer last flushed.
        self.dirty: set[Peer] = set()
        #: Set by :meth:`request_shutdown` (admin ``shutdown``): None, "immediate" or
        #: "graceful". The network layer polls it after each call into the broker.
        self.shutdown_requested: str | None = None
        #: name -> function, every function seen (in first-seen order).
        self.functions: dict[bytes, Function] = {}
        #: Every connected peer, in connect order.
        self.peers: dict[Peer, None] = {}
        prefix = config.handle_prefix
        if prefix is None:
            prefix = b"H:" + platform.node().encode("utf-8", "replace")  # the host name
        self.handle_prefix = prefix
        self._hprefix = prefix + b":"
        #: handle -> job, every job in memory (a read-only mapping; see JobTable).
        self.jobs = JobTable(self._hprefix)
        self._jobs = self.jobs.by_number
        # submit_run's function before it has seen one (never queued to).
        self._no_function = Function(b"", self._hprefix)
        self._counter = 0  # last handle number
        self._seq = 0  # the largest int queue order given (grows; see _later)
        self._late = 0.0  # the last float queue order given (_later)
        self._front = 0  # queue order of requeued jobs (shrinks: always first)
        self._next_key = 1
        self._timers = Timers()
        self._wakeup = config.worker_wakeup
        self._retries = config.job_retries
        self._max_unique = config.max_unique_size
        self._acl: ACL | None = config.acl
        if store_batched is None:
            store_batched = config.store_batched
        if store_batched is None and config.store is not None:
            store_batched = durable.per_job(config.store, self)
        self._store_batched = store_batched
        self._remove = remove if remove is not None else config.remove
        self._bury_store = bury
        self._revive_store = revive
        #: handle -> dead job, oldest death first: the dead-letter list (``dead.py``).
        self.dead: dict[bytes, DeadJob] = {}
        # Durable jobs created by the current feed(), handed to store_batched at its end.
        self._new_records: list[StoredJob] = []
        self._new_jobs: list[Job] = []
        self._durable = store_batched is not None
        self._packet_hook = packet_hook if packet_hook is not None else config.packet_hook
        self._admin = admin
        #: The job log, and the functions with completed jobs in their columns (module docstring).
        self.job_log: list[tuple[Any, ...]] | None = None
        self.log_functions: list[Function] = []
        #: The job log's clock (module docstring), None without a log.
        self.log_clock: Callable[[], float] | None = None
        #: Every job's lifecycle receivers (:meth:`add_observer`).
        self._observers: tuple[JobEvents, ...] = ()
        #: The observers among them told of fast-path jobs in bulk (``created_run``).
        self._bulk: tuple[JobEvents, ...] = ()
        version = config.version
        #: The admin ``version`` answer.
        self.version: bytes = version if version is not None else __version__.encode()
        #: Draining for a graceful shutdown (:meth:`drain`): no job is handed out any more.
        self.draining = False
        #: Gone clients whose jobs are still being detached, a slice per run_deferred().
        self._leaving: deque[Peer] = deque()
        self._handlers = self._handler_table()

    # ------------------------------------------------------------------ connections

    def connect(self, host: str, port: int, fd: int, ssl_subject: str | None = None) -> Peer:
        """A new connection; returns its :class:`Peer`."""
        config = self.config
        peer = Peer(host, port, fd, ssl_subject,
                    Decoder(config.max_packet_size, config.max_line_size,
                            unknown_types=self._packet_hook is not None))
        peer.exceptions = config.exceptions_default
        self.peers[peer] = None
        return peer

    # ------------------------------------------------------------------ input

    def feed(self, peer: Peer, data: bytes) -> None:
        """Handle every packet and admin line completed by ``data`` (``bytes``, any chunking).

        Never raises for bad input: protocol errors answer like gearmand and set
        ``peer.closing``; input after that is ignored.
        """
        try:
            self._feed(peer, data)
        finally:  # even after a bug in a handler: no created job may wait for a later feed
            if self._new_jobs:
                durable.flush_stores(self)

    def dispatch(self, peer: Peer, ptype: int, body: bytes) -> bool:
        """The broker's own handling of one request packet from ``peer``: what ``feed`` does
        for it without a ``packet_hook`` (the default a hook delegates to). Returns False,
        doing nothing, for a type the protocol does not define."""
        if not 0 < ptype <= c.MAX_TYPE:
            return False
        self._handlers[ptype](peer, ptype, body)
        return True

    def _admin_line(self, peer: Peer, line: bytes) -> None:
        admin = self._admin
        if admin is None:  # no admin wired in (the engine passes one): every command is unknown
            self._write(peer, b"ERR UNKNOWN_COMMAND Unknown+server+command"
                        + line.split(b" ", 1)[0] + b"\r\n")
            return
        admin(self, peer, line)

    # ------------------------------------------------------------------ output

    def _write(self, peer: Peer, data: bytes) -> None:
        """Queue ``data`` for ``peer``, behind any output held for a pending store."""
        held = peer.held
        if held is None:
            peer.out.append(data)
            self.dirty.add(peer)
        else:
            held.append(data)

    def write(self, peer: Peer, data: bytes) -> None:
        """Queue raw bytes for ``peer`` in order (admin replies, gear's ``sendRaw``)."""
        self._write(peer, data)

    def close(self, peer: Peer) -> None:
        """Close ``peer`` after what is queued for it (malformed input, admin 6-token lines)."""
        peer.closing = True
        self.dirty.add(peer)

    def _send_clients(self, job: Job, packet: bytes) -> None:
        for client in job.clients:
            held = client.held
            if held is None:
                client.out.append(packet)
                self.dirty.add(client)
            else:
                held.append(packet)

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """``clock()`` time of the earliest pending timer, or None."""
        return self._timers.next_deadline()

    def run_timers(self) -> None:
        """Fire every timer due at ``clock()``: epoch jobs become runnable, timeouts fail jobs."""
        timers = self._timers
        if not timers.heap:
            return
        for timer in timers.pop_due(self.clock()):
            job = timer.job
            assert job is not None
            if timer.kind == EPOCH:
                if job.state is WAITING:
                    job.function.waiting -= 1
                    self._enqueue(job)
            elif job.state is RUNNING:
                # CAN_DO_TIMEOUT expired: the job fails and the worker's slot is freed
                # (docs/protocol.md §3.8, docs/semantics.md, "CAN_DO_TIMEOUT"); only a worker
                # that opted in is told (JOB_CANCEL, §1.7), its late results get JOB_NOT_FOUND.
                self._finish(job, Outcome.TIMEOUT, res(_WORK_FAIL, job.handle))

    def _check_timers(self) -> None:
        if self._timers.due(self.clock()):
            self.run_timers()

    # ------------------------------------------------------------------ queues

    def get_function(self, name: bytes) -> Function:
        """The function ``name``, created if new (CAN_DO, submit, replay, admin)."""
        f = self.functions.get(name)
        if f is None:
            f = self.functions[name] = Function(name, self._hprefix)
            if self._observers or self._acl is not None:
                self._replan(f)
        return f

    def _enqueue(self, job: Job) -> None:
        """Append a job to the tail of its priority and wake workers."""
        job.seq = _later(self)
        job.state = QUEUED
        f = job.function
        f.queues[job.priority].append(job)
        if f.sleepers:
            self._wake(f)

    def drain(self) -> None:
        """Start draining for a graceful shutdown (irreversible for this broker).

        From now on no job is handed out (:meth:`take_job` is not even asked): GRAB_JOB* gets
        NO_JOB, PRE_SLEEP just sleeps and no NOOP is sent. Running jobs go on and their results
        are delivered; queued background jobs stay queued (and stored) for the next start; new
        submissions are still accepted. Wait for :meth:`running_count` to reach 0.
        """
        self.draining = True

    def _wake(self, f: Function) -> int:
        """NOOP the first ``worker_wakeup`` sleepers of ``f`` (all when 0): docs/protocol.md
        §3.5."""
        if self.draining:
            return 0  # nothing would be handed out: let them sleep
        sleepers = f.sleepers
        n = self._wakeup
        peers = list(sleepers) if n <= 0 or n >= len(sleepers) else list(islice(sleepers, n))
        for peer in peers:
            self._unsleep(peer)
            self._write(peer, NOOP)
        return len(peers)

    def _unsleep(self, peer: Peer) -> None:
        if peer.sleeping:
            peer.sleeping = False
            for f in peer.abilities:
                f.sleepers.pop(peer, None)

    def take_job(self, peer: Peer, peek: bool = False) -> Job | None:
        """The next job for worker ``peer``: HIGH, then NORMAL, then LOW over all its functions,
        oldest first. Unless ``peek``, the job leaves its queue and is assigned to ``peer``.

        This is the one place that chooses a worker's next job (gear's getJobForConnection);
        a subclass may override it, returning a queued job of one of the peer's functions.
        """
        abilities = peer.abilities
        best: Job | None = None
        if len(abilities) == 1:
            for queue in abilities[0].queues:
                if queue:
                    best = queue[0]
                    break
        else:
            for p in (HIGH, NORMAL, LOW):
                seq: float = 0
                for f in abilities:
                    queue = f.queues[p]
                    if queue:
                        head = queue[0]
                        if best is None or head.seq < seq:
                            best = head
                            seq = head.seq
                if best is not None:
                    break
        if best is None or peek:
            return best
        self._assign(best, peer)
        return best

    def _assign(self, job: Job, peer: Peer) -> None:
        f = job.function
        queue = f.queues[job.priority]
        if queue[0] is job:
            queue.popleft()
            if queue.dead:  # keep the head live (JobQueue)
                queue.purge()
        else:  # an overriding take_job chose a job deeper in the queue
            queue.remove(job)
        job.state = RUNNING
        job.worker = peer
        f.running += 1
        peer.worker_jobs[job] = None if self.log_clock is None else self.log_clock()
        timeouts = peer.timeouts
        if timeouts:
            ms = timeouts.get(job.name)
            if ms:
                self._timers.add(self.clock() + ms / 1000.0, job, TIMEOUT)
        if f.events:
            for receiver in f.events:
                receiver.assigned(job, peer)

    # ------------------------------------------------------------------ a job's life

    def _new_job(self, f: Function, unique: bytes, data: bytes, priority: Priority,
                 background: bool, when: int = 0, reducer: bytes | None = None,
                 key: int | None = None) -> Job:
        """Make a job (the one place, but for ``pipeline.submit_run``'s inlined copy): every
        slot of :class:`Job` (it has no constructor), its handle, its entry in the job table and
        its function's unique map, then ``created``."""
        self._counter = n = self._counter + 1
        job = _new_object(Job)
        job.number = n
        job.function = f
        job.name = f.name
        job.unique = unique
        job.arguments = data
        job.priority = priority
        job.background = background
        job.clients = ()
        job.worker = None
        job.seq = 0
        job.state = QUEUED
        if self.log_clock is not None:  # a job log is read (else the slot stays unset)
            job.born = self.log_clock()
        self._jobs[n] = job
        f.total += 1
        if unique:
            if unique == b"-":  # coalesce on the data (docs/protocol.md §3.2)
                if data:
                    f.by_data[data] = job
            else:
                f.uniques[unique] = job
        if reducer is not None:
            job.reducer = reducer
        if when:
            job.when = when
        if key is not None:
            job.key = key
        if f.events:
            for receiver in f.events:
                receiver.created(job)
        return job

    def _drop_unique(self, job: Job) -> None:
        """Stop coalescing onto ``job``."""
        unique = job.unique
        if unique:
            f = job.function
            if unique == b"-":
                if f.by_data.get(job.arguments) is job:
                    del f.by_data[job.arguments]
            elif f.uniques.get(unique) is job:
                del f.uniques[unique]

    def _finish(self, job: Job, outcome: Outcome, packet: bytes | None = None) -> None:
        """The one exit of every job: ``packet`` to its clients (for EXCEPTION: to those with
        the exceptions option, WORK_FAIL to the others), its worker's slot freed, the job
        removed from memory and from its store, and ``finished(job, outcome)`` told.

        A running job that is CANCELLED stays with its worker (it is not stopped): it is
        detached from its clients, stops coalescing and is removed from its store, and a later
        result or requeue forgets it without a second ``finished``.

        A running job that is CANCELLED or TIMEOUT ends here for everyone but its worker, so a
        worker that opted in with OPTION_REQ ``job_cancel`` is told, once, with JOB_CANCEL
        (docs/protocol.md §1.7). The flag is read only on those two outcomes: a completing job
        pays one identity test.
        """
        clients = job.clients
        if packet is not None and clients:
            if outcome is EXCEPTION:
                fail = res(_WORK_FAIL, job.handle)  # no trailing NUL (docs/protocol.md §3.9)
                for client in clients:
                    self._write(client, packet if client.exceptions else fail)
            else:
                self._send_clients(job, packet)
        f = job.function
        events = f.events
        if events and not job.ignore:
            for receiver in events:
                receiver.finished(job, outcome)
        worker = job.worker
        log = self.job_log
        if log is not None:  # (a cancelled job's late result is logged FORGOTTEN: skipped)
            assigned = None if worker is None else worker.worker_jobs[job]
            if outcome is COMPLETE:  # to the function's columns (module docstring)
                ended = f.log_ended
                if not ended:
                    self.log_functions.append(f)
                f.log_born.append(job.born)
                f.log_assigned.append(assigned)
                ended.append(self.log_clock())  # type: ignore[misc]  # set with the log
            else:
                log.append((f, outcome._value_, job.born, assigned,
                            job if outcome is CANCELLED else self.log_clock()))  # type: ignore[misc]
        if worker is not None:
            if outcome is CANCELLED:
                job.born = FORGOTTEN  # its later result or requeue is not counted again
                if worker.job_cancel:
                    self._write(worker, res(_JOB_CANCEL, job.handle))
                for client in clients:
                    client.client_jobs.pop(job, None)
                job.clients = ()
                job.ignore = True
                self._drop_unique(job)
                key = job.key
                if key is not None:
                    job.key = None
                    if self._remove is not None:
                        self._remove(key)
                return
            if outcome is TIMED_OUT and worker.job_cancel:
                self._write(worker, res(_JOB_CANCEL, job.handle))
            del worker.worker_jobs[job]
            f.running -= 1
            job.worker = None
        # Forget it.
        job.state = DONE
        f.total -= 1
        del self._jobs[job.number]
        if job.unique:
            self._drop_unique(job)
        for client in clients:
            client.client_jobs.pop(job, None)
        if job.timer is not None:
            self._timers.cancel(job)
        if outcome is RETRIES_EXHAUSTED:
            self._bury(job)  # logged; a background job is kept in the dead-letter list
            return
        key = job.key
        if key is not None and self._remove is not None:
            self._remove(key)

    def _requeue(self, job: Job) -> None:
        """The worker let go of a running job (disconnect, CANT_DO): back to the front, or
        to the tail when ``job_retries`` is 0 (docs/protocol.md §3.6; docs/semantics.md,
        "Where a re-queued job goes")."""
        worker = job.worker
        assert worker is not None
        f = job.function
        log = self.job_log
        if log is not None:  # (FORGOTTEN when it was cancelled while running: skipped)
            now = self.log_clock()  # type: ignore[misc]  # set with the log
            log.append((f, None, job.born, worker.worker_jobs[job], now))
        del worker.worker_jobs[job]
        f.running -= 1
        job.worker = None
        if job.timer is not None:
            self._timers.cancel(job)
        job.numerator = job.denominator = 0
        job.retries += 1
        if job.orphaned:  # cancelled, or nobody waits for it any more (docs/protocol.md §3.7)
            self._finish(job, Outcome.ORPHANED)
            return
        if log is not None:
            job.born = now  # it waits again from now
        if self._retries and job.retries >= self._retries:
            self._finish(job, RETRIES_EXHAUSTED, res(_WORK_FAIL, job.handle))
            return
        job.state = QUEUED
        if self._retries:  # first in line again: a poison job uses up its attempts at once
            self._front -= 1
            job.seq = self._front
            f.queues[job.priority].appendleft(job)
        else:  # no limit: at the head a poison job would take every worker for ever
            job.seq = _later(self)
            f.queues[job.priority].append(job)
        if f.events:
            for receiver in f.events:
                receiver.requeued(job)
        if f.sleepers:
            self._wake(f)

    def cancel(self, job: Job) -> bool:
        """Admin ``cancel job``: WORK_FAIL to its clients, deleted from its queue and store
        (docs/protocol.md §2.2).

        A queued or waiting job is forgotten at once (gearmand leaves it counted until a GRAB
        reaps it). A running job is not stopped: its clients get WORK_FAIL and are detached, it
        stops coalescing, its worker gets JOB_CANCEL if it opted in (docs/protocol.md §1.7),
        and it stays counted as running until its worker finishes (results reach nobody) or
        goes away (no requeue). A job whose store is pending, or that is
        already cancelled, cannot be cancelled: returns False.
        """
        state = job.state
        if state is HELD or job.ignore:
            return False
        if state is QUEUED:
            job.function.queues[job.priority].forget(job)
        elif state is WAITING:
            job.function.waiting -= 1
        self._finish(job, CANCELLED, res(_WORK_FAIL, job.handle))
        return True

    def _start(self, job: Job) -> None:
        """A new (or stored) job enters the scheduler: waiting for its time, or queued."""
        when = job.when
        if when and when > self.clock():
            job.state = WAITING
            job.function.waiting += 1
            self._timers.add(float(when), job, EPOCH)
        else:
            self._enqueue(job)


def _later(broker: Broker) -> float:
    """The queue order (``Job.seq``) of a job queued after it was made: after every order given
    so far, before the next new job's number.

    A job queued when it is made takes its own number as its order (the same int object: no
    int of its own, 32 bytes a queued job; ``Requests._submit``, ``pipeline.submit_run``),
    unless an order at or past that number was given already (then ``_seq + 1``);
    ``broker._seq`` is the largest int order given. A job queued later (an epoch job at its
    time, a requeue to the tail) takes the next float above the last order, kept in
    ``broker._late``, so orders stay strictly increasing with every append and the next new
    job's number is still ahead of them."""
    s = broker._seq
    late = broker._late
    seq = nextafter(late if late > s else s, inf)
    if seq < s + 1:
        broker._late = seq
        return seq
    broker._seq = s = s + 1  # no float left below the next int (not seen in practice)
    return s
