"""gear's threaded worker: ``Worker`` and ``TextWorker``.

Owns function registration (CAN_DO / CAN_DO_TIMEOUT / CANT_DO / RESET_ABILITIES, broadcast to
every connection) and the demand side of the grab cycle: a connection grabs while a thread waits
in ``getJob``. What a connection does with the server (registration with SET_CLIENT_ID on every
reconnect, GRAB_JOB_UNIQ -> NO_JOB -> PRE_SLEEP -> NOOP, JOB_ASSIGN* parsing) is one
:class:`gear.protocol.worker.WorkerSession` per connection, with one GRAB in flight at a time as
in gear. Its state is mirrored into gear's public ``Connection.state`` strings
(docs/gear-compat.md §3.11):

    INIT -> IDLE (connected) -> GRAB_WAIT (GRAB_JOB_UNIQ sent because a thread waits in getJob)
    GRAB_WAIT + NO_JOB -> SLEEP (PRE_SLEEP sent);  SLEEP + NOOP -> IDLE -> GRAB_WAIT
    JOB_ASSIGN(_UNIQ) -> IDLE, the job is queued for a getJob caller, grab again if more wait

gear's ``handleNoop``/``handleNoJob``/``handleJobAssign*`` hooks stay the dispatch points a
subclass overrides; their bodies drive the session.

``getJob`` may be called from many threads; ``stopWaitingForJobs`` waits on a condition (no
sleep-polling) until no grab is in flight, then releases every waiter with InterruptedError.

Direct reads (issue 14, :mod:`gear.threaded.direct`): while the only thread waiting in ``getJob``
waits on a Worker with one active plain-TCP connection, that thread reads and dispatches the
connection itself; when a job is queued the connection goes back to the poll thread, which reads
what arrives while the job runs. A second connection, a lost connection, ``stopWaitingForJobs``
or shutdown end the direct read, and getJob waits on the queue as before. Only for classes that
override none of the packet hooks (``handleXxx``, ``handlePacket``, ``reportTimingStats``...):
a subclass's hooks always run on the poll thread, as in gear.

Job cancel (geard's JOB_CANCEL, docs/protocol.md §1.7): ``Worker(job_cancel=True)`` (or
:meth:`Worker.enableJobCancel`) asks for it on every connection; a job the server cancels while
it runs gets ``job.cancelled`` and wakes ``job.waitForCancel()``. Off by default: the threaded
Worker is gear's drop-in and sends what gear sends unless asked (the harp helper asks).
gearmand's ERROR UNKNOWN_OPTION to the request is taken quietly (the session's
``option_refused``). Jobs are kept by (connection, handle) only while the option is on, from
assignment until their end packet.

Fixed gear bugs (docs/gear-compat.md §6): ``registerFunction(name, timeout=<seconds>)`` works
(sent as milliseconds by :func:`gear.protocol.messages.can_do`, as gearmand 1.1.19+ expects);
``Worker(worker_id=...)`` works (deprecated alias of client_id); ``setFunctions`` converts str
names; registration and grabs happen under the locks that keep them race-free.

Names are gear's camelCase on purpose. Must not import the server modules or ``gear.aio``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import warnings
from collections.abc import Iterable
from typing import Any

from gear import constants
from gear.errors import ConfigurationError, InterruptedError, InvalidDataError
from gear.protocol import messages
from gear.protocol.packets import request
from gear.protocol.packets import split_args as _split_args
from gear.protocol.worker import WorkerSession
from gear.threaded.client import BaseClient
from gear.threaded.dispatch import HANDLERS
from gear.threaded.jobs import FunctionRecord, TextWorkerJob, WorkerJob, convert_to_bytes
from gear.threaded.packet import Packet

__all__ = [
    "TextWorker",
    "Worker",
]

#: A connection still in GRAB_WAIT after this many seconds is presumed dead by
#: stopWaitingForJobs (gear's value).
GRAB_WAIT_LIMIT = 5.0

_GRAB_JOB_UNIQ = request(constants.GRAB_JOB_UNIQ)
_PRE_SLEEP = request(constants.PRE_SLEEP)
_RESET_ABILITIES = request(constants.RESET_ABILITIES)


class Worker(BaseClient):
    """A Gearman worker.

    :arg str client_id: the client ID, sent to the server with SET_CLIENT_ID.
    :arg str worker_id: deprecated alias of ``client_id``.
    :arg bool job_cancel: opt in to geard's JOB_CANCEL (``job.cancelled``; module docstring).
    """

    job_class: type[WorkerJob] = WorkerJob

    def __init__(self, client_id: Any = None, worker_id: Any = None,
                 job_cancel: bool = False) -> None:
        if worker_id:
            warnings.warn(
                "worker_id is deprecated; use client_id", DeprecationWarning, stacklevel=2
            )
            client_id = client_id or worker_id
        if not client_id:
            raise ConfigurationError("A client_id must be provided")
        # Set before super().__init__ starts the threads.
        self.worker_id = client_id
        self.functions: dict[bytes, FunctionRecord] = {}
        # SimpleQueue: the cheapest thread handoff in the stdlib (one per assigned job).
        self.job_queue: queue.SimpleQueue[WorkerJob | None] = queue.SimpleQueue()
        self.waiting_for_jobs = 0
        # The hot paths (a job assigned, a grab, NO_JOB, NOOP) take this RLock directly:
        # entering it through the Condition costs two more Python calls each time.
        self._job_mutex = threading.RLock()
        self._job_condition = threading.Condition(self._job_mutex)
        #: Threads inside stopWaitingForJobs (only they need GRAB_WAIT-exit notifications).
        self._stoppers = 0
        # gear exposes job_lock; it is the lock of the condition that announces a connection
        # leaving GRAB_WAIT, so stopWaitingForJobs can wait for it instead of sleeping.
        self.job_lock = self._job_condition
        #: Connection -> its WorkerSession (made on connect, or on first use for a connection
        #: a test attached by hand).
        self._sessions: dict[Any, WorkerSession] = {}
        self.job_cancel = job_cancel
        #: (connection, handle) -> running job, while job_cancel is on (module docstring).
        self._cancellable: dict[tuple[Any, bytes], WorkerJob] = {}
        #: Direct reads run the dispatch on the getJob thread: only for a class whose hooks
        #: are all this module's, so a subclass's hooks always run on the poll thread.
        self._direct_reads = _ownHooks(type(self))
        super().__init__(client_id)
        self.log = logging.getLogger(
            f"gear.Worker.{self.client_id.decode('utf-8', 'replace') if self.client_id else ''}"
        )

    def __repr__(self) -> str:
        return f"<gear.Worker 0x{id(self):x}>"

    # --- registration ----------------------------------------------------------------------

    def _canDoBytes(self) -> bytes:
        return b"".join(messages.can_do(name, f.timeout) for name, f in self.functions.items())

    def _session(self, conn: Any) -> WorkerSession:
        """The session of ``conn`` (job_lock or broadcast_lock held)."""
        session = self._sessions.get(conn)
        if session is None:
            # A connection made active without _onConnect (tests attach one by hand): it is
            # registered already, so nothing is sent.
            session = self._sessions[conn] = WorkerSession(self.client_id or b"")
            session.connection_made()
            session.data_to_send()
            session.job_cancel = self.job_cancel
        return session

    def enableJobCancel(self) -> None:
        """Opt in to JOB_CANCEL now, on the live connections and every later connect."""
        with self.broadcast_lock:
            self.job_cancel = True
            with self.job_lock:
                requests = [(conn, self._session(conn).request_job_cancel())
                            for conn in list(self.active_connections)]
            for conn, data in requests:
                if data:
                    try:
                        conn.sendRaw(data)
                    except Exception:
                        self._lostConnection(conn)

    def _wakeSleeping(self) -> None:
        """A new function: sleeping connections grab again (its jobs may be queued, gear 0.12)."""
        with self.job_lock:
            for conn in list(self.active_connections):
                session = self._session(conn)
                if session.state == "SLEEP":
                    session.wake()
                    conn.changeState(session.state)
            self._updateStateMachines()

    def registerFunction(self, name: str | bytes, timeout: float | int | str | bytes | None = None
                         ) -> None:
        """Register a function with Gearman.

        :arg str name: the name of the function.
        :arg timeout: seconds the server may let one job run before failing it (optional).
        """
        key: bytes = convert_to_bytes(name)
        data = messages.can_do(key, timeout)
        with self.broadcast_lock:
            self.functions[key] = FunctionRecord(key, timeout)
            self._broadcastRaw(data)
        self._wakeSleeping()

    def unRegisterFunction(self, name: str | bytes) -> None:
        """Remove a function from Gearman's registry (KeyError if it was not registered)."""
        key: bytes = convert_to_bytes(name)
        with self.broadcast_lock:
            del self.functions[key]
            self._broadcastRaw(request(constants.CANT_DO, key))

    def setFunctions(self, functions: Iterable[FunctionRecord]) -> None:
        """Replace the registered functions with ``functions`` (FunctionRecord objects)."""
        records = list(functions)
        for f in records:
            if not isinstance(f, FunctionRecord):
                raise InvalidDataError("An iterable of FunctionRecords is required.")
        with self.broadcast_lock:
            self.functions = {convert_to_bytes(f.name): f for f in records}
            self._broadcastRaw(_RESET_ABILITIES + self._canDoBytes())
        self._wakeSleeping()

    def _sendCanDo(self, name: bytes) -> None:
        with self.broadcast_lock:
            self._broadcastRaw(messages.can_do(name))

    def _sendCanDoTimeout(self, name: bytes, timeout: Any) -> None:
        with self.broadcast_lock:
            self._broadcastRaw(messages.can_do(name, timeout))

    def _sendCantDo(self, name: bytes) -> None:
        with self.broadcast_lock:
            self._broadcastRaw(request(constants.CANT_DO, name))

    def _sendResetAbilities(self) -> None:
        with self.broadcast_lock:
            self._broadcastRaw(_RESET_ABILITIES)

    def _sendPreSleep(self, connection: Any) -> None:
        self._sendRaw(_PRE_SLEEP, connection)

    def _sendGrabJobUniq(self, connection: Any = None) -> None:
        if connection is None:
            self._broadcastRaw(_GRAB_JOB_UNIQ)
        else:
            self._sendRaw(_GRAB_JOB_UNIQ, connection)

    # --- connection hooks ------------------------------------------------------------------

    def _onConnect(self, conn: Any) -> None:
        # SET_CLIENT_ID and every CAN_DO in one write (docs/protocol.md §1.3, worker connect
        # sequence), under broadcast_lock so no registration change is missed.
        with self.broadcast_lock:
            session = self._sessions.get(conn)
            if session is None:
                session = self._sessions[conn] = WorkerSession(self.client_id or b"")
            session.job_cancel = self.job_cancel
            session.connection_made((name, f.timeout) for name, f in self.functions.items())
            conn.sendRaw(session.data_to_send())
            super()._onConnect(conn)
            conn.changeState(session.state)

    def _onActiveConnection(self, conn: Any) -> None:
        self._wakeDirect()  # a direct reader reads one connection only: jobs may come here
        with self.job_lock:
            if self.waiting_for_jobs > 0:
                self._updateStateMachines()

    def _lostConnection(self, conn: Any) -> None:
        with self.job_lock:
            session = self._sessions.get(conn)
            if session is not None:
                session.connection_lost()
            if self._cancellable:
                for key in [k for k in self._cancellable if k[0] is conn]:
                    self._cancellable.pop(key, None)
        super()._lostConnection(conn)
        # stopWaitingForJobs may be waiting for this connection to leave GRAB_WAIT.
        with self._job_condition:
            self._job_condition.notify_all()

    # --- state machine (job_lock held) ---------------------------------------------------------

    def _updateStateMachines(self) -> None:
        self._sendGrabs(self._nextGrabs())

    def _nextGrabs(self) -> list[tuple[Any, bytes]]:
        """Advance every connection's grab cycle (job_lock held); returns the GRABs to send.

        The caller sends them with :meth:`_sendGrabs` after releasing job_lock: a thread
        holding the lock across ``send`` made the poll thread, woken by the answer, block on
        the lock and hand the GIL back and forth (issue 14). The state already says GRAB_WAIT
        when the lock is released, so the answer finds the connection in the right state.
        """
        grabs: list[tuple[Any, bytes]] = []
        sessions = self._sessions
        waiting = self.waiting_for_jobs > 0
        for conn in self.active_connections[:]:
            session = sessions.get(conn) or self._session(conn)
            if waiting:
                if session.can_grab:
                    grabs.append((conn, session.grab()))
                    conn.changeState("GRAB_WAIT")
            elif session.sleeping and not session.hungry:
                # In SLEEP and nobody waits: forget the sleep, so the next getJob grabs at once
                # instead of waiting for a NOOP (a GRAB_WAIT connection's answer is on the way).
                session.wake()
                conn.changeState(session.state)
        return grabs

    def _sendGrabs(self, grabs: list[tuple[Any, bytes]]) -> None:
        for conn, data in grabs:
            try:
                self._sendRaw(data, conn)
            except Exception:
                continue

    def getJob(self) -> WorkerJob:
        """Get a job from Gearman; blocks until one is assigned.

        Safe to call from several threads at once: each assigned job goes to one of them.

        :raises InterruptedError: if :meth:`stopWaitingForJobs` or shutdown interrupts it.
        """
        with self._job_mutex:
            # "running" is cleared by _shutdown() under job_lock, so checking it here leaves
            # no window between shutdown and waiting_for_jobs.
            if not self.running:
                raise InterruptedError()
            self.waiting_for_jobs += 1
            # empty() first: raising queue.Empty on the common path costs more than the check.
            job = None if self.job_queue.empty() else self.job_queue.get(False)
            # waiting_for_jobs counts waiters minus queued jobs. A job taken here may have been
            # counted for a thread already waiting, which then still needs a grab: grab
            # whenever the count is positive, not only when nothing was queued (issue 15 a: a
            # thread pool sharing one Worker stalled with a job waiting on the server).
            grabs = self._nextGrabs() if self.waiting_for_jobs > 0 else None
            # The only waiter, on one connection: read it here (gear.threaded.direct).
            conns = self.active_connections
            direct = None
            if (job is None and self.waiting_for_jobs == 1 and len(conns) == 1
                    and self._direct_reads and self._startDirect(conns[0])):
                direct = conns[0]
        if grabs:
            self._sendGrabs(grabs)
        if direct is not None:
            self._readDirect(direct, self.job_queue.empty, None)
        if job is None:
            job = self.job_queue.get()
            if job is None:
                raise InterruptedError()
        return job

    def stopWaitingForJobs(self) -> None:
        """Interrupt all threads waiting in getJob (they raise InterruptedError)."""
        with self._job_condition:
            self._stoppers += 1
            try:
                self._waitForGrabs()
            finally:
                self._stoppers -= 1
            while self.waiting_for_jobs > 0:
                self.waiting_for_jobs -= 1
                self.job_queue.put(None)
            self._updateStateMachines()
        self._wakeDirect()

    def _waitForGrabs(self) -> None:
        """Wait (job_lock held) until no connection has a GRAB_JOB_UNIQ in flight."""
        while True:
            grabbing = [c for c in self.active_connections if c.state == "GRAB_WAIT"]
            if not grabbing:
                break
            # A grab in flight may still assign a job; wait for its answer (the poll
            # thread notifies), presuming a connection dead after GRAB_WAIT_LIMIT.
            now = time.time()
            stale = [c for c in grabbing if now - c.state_time > GRAB_WAIT_LIMIT]
            if stale:
                self._job_condition.release()
                try:
                    for conn in stale:
                        self._lostConnection(conn)
                finally:
                    self._job_condition.acquire()
                continue
            oldest = min(c.state_time for c in grabbing)
            self._job_condition.wait(max(0.01, oldest + GRAB_WAIT_LIMIT - now))

    def _shutdown(self) -> None:
        with self.job_lock:
            super()._shutdown()
        self.stopWaitingForJobs()

    # --- packet handlers (poll thread) ---------------------------------------------------------

    def handleNoop(self, packet: Packet) -> None:
        conn = packet.connection
        with self._job_mutex:
            session = self._sessions.get(conn) or self._session(conn)
            state = conn.state
            if session.noop():
                conn.changeState(session.state)
                self._updateStateMachines()
            elif self.log.isEnabledFor(logging.DEBUG):
                self.log.debug("Received NOOP in state %s on %s", state, conn)

    def handleNoJob(self, packet: Packet) -> None:
        conn = packet.connection
        with self._job_mutex:
            session = self._sessions.get(conn) or self._session(conn)
            if session.no_job():
                conn.changeState(session.state)
                if self._stoppers:
                    self._job_condition.notify_all()
                try:
                    self._sendRaw(session.data_to_send(), conn)  # PRE_SLEEP
                except Exception:
                    pass
            elif self.log.isEnabledFor(logging.DEBUG):
                self.log.debug("Received NO_JOB in state %s on %s", conn.state, conn)

    def handleJobCancel(self, packet: Packet) -> None:
        """JOB_CANCEL: the server cancelled a job this worker runs (docs/protocol.md §1.7)."""
        job = self._cancellable.get((packet.connection, bytes(packet.data)))
        if job is not None:
            job._markCancelled()

    def handleOptionRes(self, packet: Packet) -> None:
        with self.job_lock:
            accepted = self._session(packet.connection).option_accepted(bytes(packet.data))
        if not accepted:
            self._defaultPacketHandler(packet)

    def handleError(self, packet: Packet) -> Any:
        code = bytes(packet.data).split(b"\x00", 1)[0]
        with self.job_lock:
            refused = self._session(packet.connection).option_refused(code)
        if refused:
            self.log.info("%s does not send JOB_CANCEL (ERROR UNKNOWN_OPTION)", packet.connection)
            return None
        return super().handleError(packet)

    def handleJobAssign(self, packet: Packet) -> None:
        self._assignPacket(packet)

    def handleJobAssignUnique(self, packet: Packet) -> None:
        # The hot packet, split here (docs/protocol.md §1.4: handle, function, unique, data);
        # a malformed one takes the shared parser, which raises InvalidDataError.
        fields = bytes(packet.data).split(b"\x00", 3)
        if len(fields) != 4:
            self._assignPacket(packet)
            return
        handle, name, unique, data = fields
        self._handleJobAssignment(packet, handle, name, data, unique or None)

    def handleJobAssignAll(self, packet: Packet) -> None:
        # Only after a GRAB_JOB_ALL, which this class never sends; a subclass may. The
        # reducer has no place on a gear WorkerJob and is dropped.
        self._assignPacket(packet)

    def _assignPacket(self, packet: Packet) -> None:
        ptype = packet.ptype
        job = messages.parse_job_assign(ptype, _split_args(ptype, bytes(packet.data)))
        # gear's hook signature: a missing or empty unique is None.
        self._handleJobAssignment(packet, job.handle, job.function, job.data, job.unique or None)

    def _handleJobAssignment(
        self, packet: Packet, handle: bytes, name: bytes, arguments: bytes, unique: bytes | None
    ) -> None:
        job = self.job_class(handle, name, arguments, unique)
        job.connection = packet.connection
        conn = packet.connection
        if self.job_cancel:
            key = (conn, handle)
            job._cancel_registry = self._cancellable
            job._cancel_key = key
            self._cancellable[key] = job
        with self._job_mutex:
            session = self._sessions.get(conn) or self._session(conn)
            session.assigned()
            conn.changeState(session.state)
            if self._stoppers:
                self._job_condition.notify_all()
            # waiting_for_jobs counts getJob callers minus jobs handed out; it goes negative
            # when a job arrives for a caller that stopped waiting (the job stays queued).
            self.waiting_for_jobs -= 1
            self.job_queue.put(job)
            if self._direct is not None and self._direct is not conn:
                self._wakeDirect()  # it waits on another connection, not on the queue
            grabs = self._nextGrabs()
        if grabs:
            self._sendGrabs(grabs)


#: The methods a packet read by a Worker may run: a subclass overriding any of them keeps
#: them on the poll thread (no direct reads).
_HOOKS = (*sorted(set(HANDLERS.values())), "handlePacket", "handleAdminRequest",
          "handleDisconnect", "reportTimingStats", "_handleJobAssignment", "_lostConnection")


def _ownHooks(cls: type) -> bool:
    return all(getattr(cls, name) is getattr(Worker, name) for name in _HOOKS)


class TextWorker(Worker):
    """A Worker whose jobs (TextWorkerJob) have str arguments and accept str data."""

    job_class = TextWorkerJob
