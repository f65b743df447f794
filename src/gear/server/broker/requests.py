"""The broker's packet handlers: what each request packet means to the server.

Owns :class:`Requests`, the handlers mixed into ``core.Broker``, the handler table (one
handler per packet type, indexed by type) and the general submission path ``_submit`` (limits,
ACL, coalescing; ``pipeline.py`` holds its inlined copy for runs of plain submits). Each handler
takes (peer, packet type, body). A layout that does not split into the type's fields closes the
connection silently, as gearmand's desync does (docs/protocol.md §1.1, §1.6). A job is made,
queued, assigned and finished only by the scheduler methods of ``core.py`` (``_new_job``,
``take_job``, ``_finish``, ``_requeue``...). Must not import ``core.py``, sockets, asyncio or
threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import gear.constants as c
from gear.protocol.messages import Priority
from gear.server.broker.lifecycle import Outcome
from gear.server.broker.model import BrokerConfig, Function, Job, JobState, JobTable, Peer
from gear.server.broker.wire import (
    ERR_ACL,
    ERR_HANDLE_TOO_LARGE,
    ERR_INVALID_COMMAND,
    ERR_NOT_FOUND_DATA,
    ERR_NOT_FOUND_EXCEPTION,
    ERR_NOT_FOUND_RESULT,
    ERR_QUEUE_FULL,
    ERR_UNIQUE_TOO_LARGE,
    ERR_UNKNOWN_OPTION,
    HANDLE_LIMIT,
    NO_JOB,
    NOOP,
    SUBMIT_KIND,
    acl_name,
    atoi_u32,
    pack,
    res,
    strtol,
)

if TYPE_CHECKING:
    from gear.acl import ACL
    from gear.server.broker.timers import Timers

__all__ = ["Handler", "Requests"]

Handler = Callable[[Peer, int, bytes], None]

HIGH, NORMAL, LOW = Priority.HIGH, Priority.NORMAL, Priority.LOW
HELD = JobState.HELD
_RES = c.RES
_JOB_CREATED = c.JOB_CREATED
_COMPLETE = Outcome.COMPLETE
#: Response-only, unused (5) and ALL_YOURS types: ERROR INVALID_COMMAND (docs/protocol.md
#: §1.4); geard's response-only JOB_CANCEL likewise (§1.7).
_INVALID = (c.NOOP, c.JOB_CREATED, c.NO_JOB, c.JOB_ASSIGN, c.ECHO_RES, c.ERROR, c.STATUS_RES,
            c.OPTION_RES, c.JOB_ASSIGN_UNIQ, c.JOB_ASSIGN_ALL, c.STATUS_RES_UNIQUE, 5,
            c.ALL_YOURS, c.JOB_CANCEL)


class Requests:
    """The packet handlers of ``core.Broker`` (a mixin: ``self`` is the broker)."""

    if TYPE_CHECKING:  # what the handlers use of the broker, defined in core.py
        config: BrokerConfig
        functions: dict[bytes, Function]
        jobs: JobTable
        draining: bool
        _acl: ACL | None
        _max_unique: int
        _timers: Timers
        _durable: bool
        _seq: int
        _hprefix: bytes
        dirty: set[Peer]

        def _write(self, peer: Peer, data: bytes) -> None: ...
        def close(self, peer: Peer) -> None: ...
        def _send_clients(self, job: Job, packet: bytes) -> None: ...
        def _check_timers(self) -> None: ...
        def get_function(self, name: bytes) -> Function: ...
        def _unsleep(self, peer: Peer) -> None: ...
        def take_job(self, peer: Peer, peek: bool = False) -> Job | None: ...
        def _assign(self, job: Job, peer: Peer) -> None: ...
        def _requeue(self, job: Job) -> None: ...
        def _finish(self, job: Job, outcome: Outcome, packet: bytes | None = None) -> None: ...
        def _new_job(self, f: Function, unique: bytes, data: bytes, priority: Priority,
                     background: bool, when: int = 0, reducer: bytes | None = None,
                     key: int | None = None) -> Job: ...
        def _start(self, job: Job) -> None: ...
        def _store_job(self, peer: Peer, job: Job) -> None: ...
        def _hold(self, peer: Peer, job: Job) -> None: ...
        def _wake(self, f: Function) -> int: ...

    def _handler_table(self) -> list[Handler]:
        """The handler of every packet type (a list indexed by type: no dict per packet)."""
        handlers: list[Handler] = [self._h_closing] * (c.MAX_EXTENDED_TYPE + 1)
        for ptype in _INVALID:
            handlers[ptype] = self._h_invalid
        for ptype, kind in enumerate(SUBMIT_KIND):
            if kind is not None:
                handlers[ptype] = self._h_submit
        handlers[c.SUBMIT_JOB_EPOCH] = self._h_submit_epoch
        handlers[c.SUBMIT_JOB_SCHED] = self._h_submit_sched
        handlers[c.SUBMIT_REDUCE_JOB] = self._h_submit_reduce
        handlers[c.SUBMIT_REDUCE_JOB_BACKGROUND] = self._h_submit_reduce
        handlers[c.CAN_DO] = self._h_can_do
        handlers[c.CAN_DO_TIMEOUT] = self._h_can_do_timeout
        handlers[c.CANT_DO] = self._h_cant_do
        handlers[c.RESET_ABILITIES] = self._h_reset_abilities
        handlers[c.PRE_SLEEP] = self._h_pre_sleep
        handlers[c.GRAB_JOB] = self._h_grab
        handlers[c.GRAB_JOB_UNIQ] = self._h_grab
        handlers[c.GRAB_JOB_ALL] = self._h_grab
        handlers[c.WORK_STATUS] = self._h_work_status
        handlers[c.WORK_COMPLETE] = self._h_work_complete
        handlers[c.WORK_FAIL] = self._h_work_fail
        handlers[c.WORK_EXCEPTION] = self._h_work_exception
        handlers[c.WORK_DATA] = self._h_work_data
        handlers[c.WORK_WARNING] = self._h_work_data
        handlers[c.GET_STATUS] = self._h_get_status
        handlers[c.GET_STATUS_UNIQUE] = self._h_get_status_unique
        handlers[c.ECHO_REQ] = self._h_echo
        handlers[c.OPTION_REQ] = self._h_option
        handlers[c.SET_CLIENT_ID] = self._h_set_client_id
        return handlers

    def _h_closing(self, peer: Peer, ptype: int, body: bytes) -> None:
        self.close(peer)

    def _h_invalid(self, peer: Peer, ptype: int, body: bytes) -> None:
        self._write(peer, ERR_INVALID_COMMAND)

    # ------------------------------------------------------------------ submissions

    def _submit(
        self,
        peer: Peer,
        name: bytes,
        unique: bytes,
        data: bytes,
        priority: Priority,
        background: bool,
        when: int = 0,
        reducer: bytes | None = None,
    ) -> None:
        if len(unique) > self._max_unique:
            self._write(peer, ERR_UNIQUE_TOO_LARGE)
            return
        acl = self._acl
        if acl is not None and not acl.canInvoke(peer.ssl_subject, acl_name(name)):
            self._write(peer, ERR_ACL)
            return
        f = self.functions.get(name)
        if f is None:
            f = self.get_function(name)
        if unique:
            if unique == b"-":  # coalesce on the data (docs/protocol.md §3.2)
                existing = f.by_data.get(data) if data else None
            else:
                existing = f.uniques.get(unique)
            if existing is not None:
                self._coalesce(peer, existing, background)
                return
        limits = f.max_queue
        if limits is not None:
            limit = limits[priority]
            # The function's total, all priorities (docs/protocol.md §3.13).
            if limit and f.total >= limit:
                self._write(peer, ERR_QUEUE_FULL)
                return
        job = self._new_job(f, unique, data, priority, background, when, reducer)
        if not background:
            job.clients = [peer]
            peer.client_jobs[job] = 1
        elif self._durable:
            self._store_job(peer, job)
            return
        handle = job.handle
        created = pack(_RES, _JOB_CREATED, len(handle)) + handle
        held = peer.held
        if held is None:
            peer.out.append(created)
            self.dirty.add(peer)
        else:
            held.append(created)
        if when:
            self._start(job)
            return
        # Inline _enqueue: the hot path of every submission. The job's number is its queue
        # order (no int of its own; see ``core._later``).
        n = job.number
        if n > self._seq:
            self._seq = job.seq = n
        else:
            self._seq = job.seq = self._seq + 1
        f.queues[priority].append(job)
        if f.sleepers:
            self._wake(f)

    def submit_local(self, peer: Peer, name: bytes, unique: bytes, data: bytes,
                     priority: Priority = NORMAL) -> Job | bytes:
        """A foreground SUBMIT_JOB from an in-process client (the harp port's link peer),
        without a packet: the checks of :meth:`_submit` (unique size, ACL, coalescing, the
        function's maxqueue), then the job queued and its workers woken. Returns the job (its
        handle is what JOB_CREATED would have carried; nothing is written to ``peer`` for a new
        job) or the ERROR packet the wire would have answered. A submission that coalesces
        goes through the wire's own :meth:`_coalesce`, JOB_CREATED (or the hold of a job not
        yet on disk) included, so the two paths cannot drift apart there; the harp link reads
        only WORK_* packets. The job's WORK_* packets reach ``peer.out`` as for any client."""
        if len(unique) > self._max_unique:
            return ERR_UNIQUE_TOO_LARGE
        acl = self._acl
        if acl is not None and not acl.canInvoke(peer.ssl_subject, acl_name(name)):
            return ERR_ACL
        f = self.functions.get(name)
        if f is None:
            f = self.get_function(name)
        if unique:
            existing = (f.by_data.get(data) if data else None) if unique == b"-" \
                else f.uniques.get(unique)
            if existing is not None:
                self._coalesce(peer, existing, False)
                return existing
        limits = f.max_queue
        if limits is not None:
            limit = limits[priority]
            if limit and f.total >= limit:
                return ERR_QUEUE_FULL
        job = self._new_job(f, unique, data, priority, False)
        job.clients = [peer]
        peer.client_jobs[job] = 1
        n = job.number
        if n > self._seq:
            self._seq = job.seq = n
        else:
            self._seq = job.seq = self._seq + 1
        f.queues[priority].append(job)
        if f.sleepers:
            self._wake(f)
        return job

    def _coalesce(self, peer: Peer, job: Job, background: bool) -> None:
        """Attach a submission to an existing job; new data and priority are discarded
        (docs/protocol.md §3.2)."""
        if background:
            if not job.background:
                job.keep = True
        else:
            clients = job.clients
            if clients:
                clients.append(peer)  # non-empty: always a list
            else:
                job.clients = [peer]
            peer.client_jobs[job] = peer.client_jobs.get(job, 0) + 1
        if job.state is HELD:
            waiters = job.waiters
            if type(waiters) is list:
                waiters.append(peer)
            else:
                assert isinstance(waiters, Peer)
                job.waiters = [waiters, peer]
            self._hold(peer, job)
        else:
            self._write(peer, res(_JOB_CREATED, job.handle))

    def _h_submit(self, peer: Peer, ptype: int, body: bytes) -> None:
        # Reached for a submission the fast path did not take: the Decoder's (see _feed) or
        # a bad one. Pipelined submissions are handled by pipeline.submit_run.
        parts = body.split(b"\x00", 2)
        if len(parts) != 3:
            self.close(peer)
            return
        name, unique, data = parts
        kind = SUBMIT_KIND[ptype]
        assert kind is not None
        self._submit(peer, name, unique, data, kind[0], kind[1])

    def _h_submit_epoch(self, peer: Peer, ptype: int, body: bytes) -> None:
        parts = body.split(b"\x00", 3)
        if len(parts) != 4:
            self.close(peer)
            return
        when = strtol(parts[2])
        if when is None:  # strtoll overflow drops the connection (docs/protocol.md §3.12)
            self.close(peer)
            return
        self._submit(peer, parts[0], parts[1], parts[3], NORMAL, True, max(when, 0))

    def _h_submit_sched(self, peer: Peer, ptype: int, body: bytes) -> None:
        # Parsed, then refused: gearmand never implemented it (docs/protocol.md §1.4 #35).
        if len(body.split(b"\x00", 7)) != 8:
            self.close(peer)
            return
        self._write(peer, ERR_INVALID_COMMAND)

    def _h_submit_reduce(self, peer: Peer, ptype: int, body: bytes) -> None:
        # function, unique, reducer, aggregator, data (docs/protocol.md §1.4 #37)
        parts = body.split(b"\x00", 4)
        if len(parts) != 5:
            self.close(peer)
            return
        reducer = parts[2]
        if len(reducer) > self._max_unique:
            self._write(peer, ERR_UNIQUE_TOO_LARGE)
            return
        background = ptype == c.SUBMIT_REDUCE_JOB_BACKGROUND
        self._submit(peer, parts[0], parts[1], parts[4], NORMAL, background, 0, reducer)

    # ------------------------------------------------------------------ registration

    def _register(self, peer: Peer, name: bytes, timeout_ms: int) -> None:
        acl = self._acl
        if acl is not None and not acl.canRegister(peer.ssl_subject, acl_name(name)):
            return  # gear ignores a denied registration silently
        f = self.get_function(name)
        peer.functions.append(name)
        f.workers += 1
        if f not in peer.abilities:
            peer.abilities.append(f)
        if timeout_ms > 0:
            peer.timeouts[name] = max(timeout_ms, 1000)  # minimum 1000 ms (docs/protocol.md §3.8)
        else:
            peer.timeouts.pop(name, None)
        if peer.sleeping:
            if not self.draining and (f.queues[HIGH] or f.queues[NORMAL] or f.queues[LOW]):
                self._unsleep(peer)
                self._write(peer, NOOP)
            else:
                f.sleepers[peer] = None

    def _h_can_do(self, peer: Peer, ptype: int, body: bytes) -> None:
        self._register(peer, body, 0)

    def _h_can_do_timeout(self, peer: Peer, ptype: int, body: bytes) -> None:
        parts = body.split(b"\x00", 1)
        if len(parts) != 2 or len(parts[1]) > 20:
            self.close(peer)
            return
        timeout = strtol(parts[1])
        if timeout is None:
            self.close(peer)
            return
        self._register(peer, parts[0], timeout)

    def _unregister(self, peer: Peer, f: Function) -> None:
        """Remove every registration of ``f`` by ``peer``; requeue its jobs of ``f``
        (docs/protocol.md §3.4)."""
        name = f.name
        count = peer.functions.count(name)
        f.workers -= count
        peer.functions = [n for n in peer.functions if n != name]
        peer.abilities.remove(f)
        peer.timeouts.pop(name, None)
        f.sleepers.pop(peer, None)
        for job in [j for j in peer.worker_jobs if j.function is f]:
            self._requeue(job)

    def _h_cant_do(self, peer: Peer, ptype: int, body: bytes) -> None:
        f = self.functions.get(body)
        if f is not None and f in peer.abilities:
            self._unregister(peer, f)

    def _h_reset_abilities(self, peer: Peer, ptype: int, body: bytes) -> None:
        for f in list(peer.abilities):
            self._unregister(peer, f)

    # ------------------------------------------------------------------ the grab cycle

    def _h_pre_sleep(self, peer: Peer, ptype: int, body: bytes) -> None:
        self._check_timers()
        if not self.draining and self.take_job(peer, peek=True) is not None:
            # Work is already waiting: wake at once rather than sleep (docs/protocol.md §3.5
            # race fix).
            self._unsleep(peer)
            self._write(peer, NOOP)
            return
        if not peer.sleeping:
            peer.sleeping = True
            for f in peer.abilities:
                f.sleepers[peer] = None

    def _h_grab(self, peer: Peer, ptype: int, body: bytes) -> None:
        if peer.sleeping:
            self._unsleep(peer)
        if self._timers.heap:
            self._check_timers()
        # Draining (graceful shutdown): nothing new is handed out, whatever take_job says.
        job = None if self.draining else self.take_job(peer)
        if job is None:
            self._write(peer, NO_JOB)
            return
        if job.worker is not peer:  # pragma: no cover - defensive: an override returned a
            self._assign(job, peer)  # job without assigning it
        # The handle formatted into the body (not through Job.handle: one bytes object less).
        f = job.function
        if ptype == c.GRAB_JOB:
            body = b"%s%d\x00%s\x00%s" % (f.hprefix, job.number, f.name, job.arguments)
            atype = c.JOB_ASSIGN
        elif ptype == c.GRAB_JOB_ALL and job.reducer is not None:
            body = b"%s%d\x00%s\x00%s\x00%s\x00%s" % (
                f.hprefix, job.number, f.name, job.unique, job.reducer, job.arguments)
            atype = c.JOB_ASSIGN_ALL
        else:
            body = b"%s%d\x00%s\x00%s\x00%s" % (
                f.hprefix, job.number, f.name, job.unique, job.arguments)
            atype = c.JOB_ASSIGN_UNIQ
        self._write(peer, pack(_RES, atype, len(body)) + body)

    # ------------------------------------------------------------------ work results

    def _running(self, peer: Peer, handle: bytes) -> Job | None:
        """The job ``handle`` that worker ``peer`` runs, if it does. A worker's result names
        one of its own jobs, usually its only one: a few are compared directly, cheaper than
        parsing the handle for the job table."""
        jobs = peer.worker_jobs
        if len(jobs) <= 4:
            # Model.Job.handle inlined: a job's handle is made on each read.
            prefix = self._hprefix
            for job in jobs:
                if b"%s%d" % (prefix, job.number) == handle:
                    return job
            return None
        found = self.jobs.get(handle)
        return found if found is not None and found.worker is peer else None

    def _owned(self, peer: Peer, handle: bytes) -> Job | None:
        """The running job ``handle`` of worker ``peer`` (one trailing NUL tolerated,
        docs/protocol.md §3.1)."""
        job = self._running(peer, handle)
        if job is None and handle.endswith(b"\x00"):
            job = self._running(peer, handle[:-1])
        return job

    def _result_job(self, peer: Peer, body: bytes, not_found: bytes) -> Job | None:
        """The job a ``handle\\0data`` result packet of worker ``peer`` is about.

        No NUL closes the connection (a layout gearmand desyncs on, docs/protocol.md §1.1); a
        handle that is not running on ``peer`` answers ``not_found`` (JOB_NOT_FOUND with that
        packet's text, docs/protocol.md §1.6).
        """
        sep = body.find(b"\x00")
        if sep < 0:
            self.close(peer)
            return None
        job = self._running(peer, body[:sep])
        if job is None:
            self._write(peer, not_found)
        return job

    def _h_work_status(self, peer: Peer, ptype: int, body: bytes) -> None:
        parts = body.split(b"\x00", 2)
        if len(parts) != 3:
            self.close(peer)
            return
        job = self._owned(peer, parts[0])
        if job is None:
            self._write(peer, ERR_NOT_FOUND_RESULT)
            return
        job.numerator = atoi_u32(parts[1])
        job.denominator = atoi_u32(parts[2])
        if job.clients:
            self._send_clients(job, pack(_RES, ptype, len(body)) + body)
        events = job.function.events
        if events:
            for receiver in events:
                receiver.progressed(job, ptype, body)

    def _h_work_complete(self, peer: Peer, ptype: int, body: bytes) -> None:
        job = self._result_job(peer, body, ERR_NOT_FOUND_RESULT)
        if job is not None:
            packet = pack(_RES, ptype, len(body)) + body if job.clients else None
            self._finish(job, _COMPLETE, packet)

    def _h_work_fail(self, peer: Peer, ptype: int, body: bytes) -> None:
        if len(body) >= HANDLE_LIMIT:
            self._write(peer, ERR_HANDLE_TOO_LARGE)
            return
        job = self._owned(peer, body)
        if job is None:
            self._write(peer, ERR_NOT_FOUND_RESULT)
            return
        # The worker's bytes, as received (docs/protocol.md §1.4 #14).
        packet = pack(_RES, ptype, len(body)) + body if job.clients else None
        self._finish(job, Outcome.FAIL, packet)

    def _h_work_exception(self, peer: Peer, ptype: int, body: bytes) -> None:
        job = self._result_job(peer, body, ERR_NOT_FOUND_EXCEPTION)
        if job is not None:
            # To clients with the exceptions option; WORK_FAIL to the others (docs/protocol.md
            # §3.9, §3.18.1).
            packet = pack(_RES, ptype, len(body)) + body if job.clients else None
            self._finish(job, Outcome.EXCEPTION, packet)

    def _h_work_data(self, peer: Peer, ptype: int, body: bytes) -> None:
        job = self._result_job(peer, body, ERR_NOT_FOUND_DATA)
        if job is None:
            return
        if job.clients:
            self._send_clients(job, pack(_RES, ptype, len(body)) + body)
        events = job.function.events
        if events:
            for receiver in events:
                receiver.progressed(job, ptype, body)

    # ------------------------------------------------------------------ status and options

    def _h_get_status(self, peer: Peer, ptype: int, body: bytes) -> None:
        if len(body) >= HANDLE_LIMIT:
            self.close(peer)  # gearmand drops the connection (docs/protocol.md §1.2)
            return
        job = self.jobs.get(body)
        if job is None and body.endswith(b"\x00"):
            job = self.jobs.get(body[:-1])
        if job is None:
            reply = body + b"\x000\x000\x000\x000"
        else:
            reply = b"%s\x001\x00%d\x00%d\x00%d" % (
                body, job.worker is not None, job.numerator, job.denominator)
        self._write(peer, res(c.STATUS_RES, reply))

    def _h_get_status_unique(self, peer: Peer, ptype: int, body: bytes) -> None:
        if len(body) >= HANDLE_LIMIT:
            self.close(peer)
            return
        job = None
        if body:
            for f in self.functions.values():  # across all functions (docs/protocol.md §3.11)
                job = f.uniques.get(body)
                if job is not None:
                    break
        if job is None:
            reply = body + b"\x000\x000\x000\x000\x000"
        else:
            reply = b"%s\x001\x00%d\x00%d\x00%d\x00%d" % (
                body, job.worker is not None, job.numerator, job.denominator, len(job.clients))
        self._write(peer, res(c.STATUS_RES_UNIQUE, reply))

    def _h_echo(self, peer: Peer, ptype: int, body: bytes) -> None:
        self._write(peer, res(c.ECHO_RES, body))

    def _h_option(self, peer: Peer, ptype: int, body: bytes) -> None:
        # "exceptions" and geard's "job_cancel", case-insensitively; the reply echoes the
        # bytes sent (docs/protocol.md §1.5, §1.7).
        option = body.lower()
        if option == b"exceptions":
            peer.exceptions = True
            self._write(peer, res(c.OPTION_RES, body))
        elif option == b"job_cancel":
            peer.job_cancel = True
            self._write(peer, res(c.OPTION_RES, body))
        else:
            self._write(peer, ERR_UNKNOWN_OPTION)

    def _h_set_client_id(self, peer: Peer, ptype: int, body: bytes) -> None:
        # GEARMAND_SERVER_CON_ID_SIZE - 1 (docs/protocol.md §1.2)
        peer.client_id = body[:127]
