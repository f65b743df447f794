"""gear's threaded client: the poll/connect thread skeleton, ``BaseClient`` and ``Client``.

Owns ``BaseClientServer`` (two daemon threads per object: one polls every connected socket and
dispatches packets to ``handleXxx`` hooks, one (re)connects servers in the background),
``BaseClient`` (servers, round-robin, broadcast) and ``Client`` (submit jobs, options, status),
per docs/gear-compat.md §3.3 and §3.7-3.9. The tasks it waits on are in
:mod:`gear.threaded.tasks`, the dispatch table and default hooks in
:mod:`gear.threaded.dispatch`.

What a reply or WORK_* packet means is decided by each connection's
:class:`gear.protocol.client.ClientSession`: the ``handleXxx(packet)`` hooks stay the dispatch
points users override, and their base bodies only call the session. Kept from gear: names,
signatures, hooks that return the Job, FIFO matching of JOB_CREATED/OPTION_RES/ERROR to
``pending_tasks``, ``related_jobs`` (handle -> Job), ``active_connections``/
``inactive_connections``. Fixed (docs/gear-compat.md §6): ``submitJob`` with no server raises
NoConnectedServersError; an ERROR reply raises ServerError; a foreground job whose (function,
unique) is already live is attached to it locally instead of being submitted again, so every
Job of the handle receives every WORK_* packet once; a lost connection wakes the poll loop and
fails its waiters at once; reconnects back off from 50 ms to 5 s, jittered
(:mod:`gear.protocol.backoff`), without sleep-polling. Added:
``getStatus``, ``getStatusUnique``, ``submitJob(..., when=...)`` (SUBMIT_JOB_EPOCH),
``submitJobs`` (many submissions pipelined in one write) and ``Job.wait``. Packets are
logged at DEBUG only, behind a level check.

Names are gear's camelCase on purpose. Must not import the worker or server modules, nor
``gear.aio``; requests are built with :mod:`gear.protocol.messages` / :mod:`gear.protocol.packets`.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Hashable
from typing import Any

from gear import constants
from gear.errors import (
    ConfigurationError,
    ConnectionError,
    GearmanError,
    NoConnectedServersError,
    ServerError,
    TimeoutError,
    UnknownJobError,
)
from gear.protocol import messages
from gear.protocol.backoff import RECONNECT_MAX, RECONNECT_MIN, Backoff
from gear.protocol.messages import id_text
from gear.protocol.packets import request
from gear.threaded.admin_requests import AdminRequest
from gear.threaded.client_packets import ClientPacketHandlers
from gear.threaded.connection import Connection
from gear.threaded.direct import EPOLL, EPOLL_MASK, DirectReads
from gear.threaded.dispatch import PacketDispatch
from gear.threaded.jobs import Job, convert_to_bytes
from gear.threaded.packet import Packet
from gear.threaded.tasks import (
    Batch,
    BatchSubmitTask,
    OptionReqTask,
    SubmitJobTask,
    Task,
)

__all__ = [
    "BaseClient",
    "BaseClientServer",
    "Client",
    "OptionReqTask",
    "SubmitJobTask",
    "Task",
]

PRECEDENCE_NORMAL = messages.NORMAL
PRECEDENCE_LOW = messages.LOW
PRECEDENCE_HIGH = messages.HIGH

#: Reconnect back-off bounds, seconds: the one policy of gear.protocol.backoff (jittered; gear
#: retried every 2 s without jitter).
RECONNECT_MIN_DELAY = RECONNECT_MIN
RECONNECT_MAX_DELAY = RECONNECT_MAX

_POLL_IN = select.POLLIN | select.POLLPRI
_POLL_MASK = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP | select.POLLNVAL


class BaseClientServer(DirectReads, PacketDispatch):
    """The threads and connection lists shared by Client and Worker (and gear's Server).

    Two daemon threads start in the constructor: "Gearman client poll" reads every active
    connection and calls ``handlePacket``/``handleAdminRequest``; "Gearman client connect"
    (re)connects the inactive ones. Subclasses set their own state before calling
    ``super().__init__``.
    """

    def __init__(self, client_id: Any = None) -> None:
        if client_id:
            self.client_id: bytes | None = convert_to_bytes(client_id)
            self.log = logging.getLogger(f"gear.BaseClientServer.{id_text(self.client_id)}")
        else:
            self.client_id = None
            self.log = logging.getLogger("gear.BaseClientServer")
        self.running = True
        self.active_connections: list[Any] = []
        self.inactive_connections: list[Any] = []
        self.connection_index = -1
        # Guards the two lists; notified whenever a connection changes list or on shutdown.
        # submitJob takes the RLock directly (entering it through the Condition costs two more
        # Python calls per submit).
        self._connections_lock = threading.RLock()
        self.connections_condition = threading.Condition(self._connections_lock)
        # Held across _onConnect and activation, and by whoever broadcasts registration
        # state, so a connecting socket never misses a CAN_DO or option (docs/gear-compat.md §3.8).
        self.broadcast_lock = threading.RLock()
        # Serialises ClientSession.attach (a submitting thread) against the packets that create
        # or end a live job (the poll thread), and against a connection's loss.
        self.session_lock = threading.Lock()
        # The poll thread's current poll set (an epoll, or None while it is rebuilt) and what
        # it polls: connection -> (fd, socket). Changed under _poll_lock (gear.threaded.direct).
        self._poll_lock = threading.Lock()
        self._poller: Any = None
        self._polled: dict[Any, tuple[int, Any]] = {}
        self._initDirect()
        # A pipe that makes the poll loop rebuild its poll set.
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_write, False)
        os.set_blocking(self.wake_read, False)
        self.poll_thread = threading.Thread(
            name="Gearman client poll", target=self._doPollLoop, daemon=True
        )
        self.poll_thread.start()
        self.connect_thread = threading.Thread(
            name="Gearman client connect", target=self._doConnectLoop, daemon=True
        )
        self.connect_thread.start()

    # --- threads -----------------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self.wake_write, b"1\n")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (a wake is pending anyway) or closed at shutdown

    def _waitForConnections(self, inactive: bool) -> bool:
        """Block until there are inactive (or active) connections; False on shutdown."""
        with self.connections_condition:
            while self.running and not (
                self.inactive_connections if inactive else self.active_connections
            ):
                self.connections_condition.wait()
            return self.running

    def _doConnectLoop(self) -> None:
        backoff = Backoff(RECONNECT_MIN_DELAY, RECONNECT_MAX_DELAY)
        while self._waitForConnections(inactive=True):
            try:
                success = self._connectLoop()
            except Exception:
                self.log.exception("Exception in connect loop:")
                success = False
            if success:
                backoff.reset()
                continue
            with self.connections_condition:
                if self.running:
                    # A lost connection notifies the condition: it is retried at once.
                    self.connections_condition.wait(backoff.next_delay())

    def _connectLoop(self) -> bool:
        success = False
        for conn in list(self.inactive_connections):
            if not self.running:
                break
            try:
                conn.reconnect()
            except ConnectionError:
                self.log.debug("Unable to connect to %s", conn)
                continue
            except Exception:
                self.log.exception("Exception while connecting to %s", conn)
                continue
            with self.broadcast_lock:
                try:
                    self._onConnect(conn)
                except Exception:
                    self.log.exception("Exception while performing on-connect tasks for %s", conn)
                    conn.disconnect()
                    continue
                with self.connections_condition:
                    if conn not in self.inactive_connections:
                        conn.disconnect()  # removed meanwhile (shutdown)
                        continue
                    self.inactive_connections.remove(conn)
                    self.active_connections.append(conn)
                    self.connections_condition.notify_all()
            self._wake()
            try:
                self._onActiveConnection(conn)
            except Exception:
                self.log.exception("Exception while performing active conn tasks for %s", conn)
            success = True
        return success

    def _onConnect(self, conn: Any) -> None:
        """Hook: runs after a (re)connect, before the connection becomes active."""

    def _onActiveConnection(self, conn: Any) -> None:
        """Hook: runs once the connection is active."""

    def _lostConnection(self, conn: Any) -> None:
        """Mark a connection lost: the connect thread reconnects it; its waiters fail now."""
        self.log.debug("Marking %s as disconnected", conn)
        if conn is self._direct:
            self._wakeDirect()  # its socket is about to be closed under it
        with self.connections_condition:
            if conn in self.active_connections:
                self.active_connections.remove(conn)
            if conn not in self.inactive_connections:
                self.inactive_connections.append(conn)
            self.connections_condition.notify_all()
        with self.session_lock:
            jobs = conn._failWaiters(ConnectionError(f"Connection to {conn.host}:{conn.port} lost"))
        self._wake()
        for job in jobs:
            self.handleDisconnect(job)

    def _doPollLoop(self) -> None:
        while self._waitForConnections(inactive=False):
            try:
                self._pollLoop()
            except OSError as e:
                self.log.debug("Socket error in poll loop: %s", e)
            except Exception:
                self.log.exception("Exception in poll loop:")

    def _drainWake(self) -> None:
        try:
            while os.read(self.wake_read, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _pollLoop(self) -> None:
        poll: Any = select.epoll() if EPOLL else select.poll()
        try:
            self._pollSet(poll)
        finally:
            with self._poll_lock:
                self._poller = None
                self._polled = {}
            if EPOLL:
                poll.close()

    def _pollSet(self, poll: Any) -> None:
        poll.register(self.wake_read, select.POLLIN)
        fdmap: dict[int, tuple[Any, Any]] = {}
        with self.connections_condition:
            conns = list(self.active_connections)
        mask = EPOLL_MASK if EPOLL else _POLL_MASK
        with self._poll_lock:
            polled = {}
            for conn in conns:
                sock = conn.conn
                if sock is None:
                    continue
                fd = sock.fileno()
                fdmap[fd] = (conn, sock)
                polled[conn] = (fd, sock)
                if self._pollable(conn):
                    poll.register(fd, mask)
            self._poller, self._polled = (poll, polled) if EPOLL else (None, {})
        while self.running:
            for fd, event in poll.poll():
                if fd == self.wake_read:
                    self._drainWake()
                    return
                conn, sock = fdmap[fd]
                if conn.conn is not sock or conn not in self.active_connections:
                    return  # lost meanwhile; rebuild
                if event & _POLL_IN:
                    if not self._readConnection(conn, sock):
                        return
                else:
                    self._lostConnection(conn)
                    return

    def _readConnection(self, conn: Any, sock: Any) -> bool:
        """Handle what is readable on ``conn``; False if the poll set must be rebuilt."""
        with self._read_lock:
            if conn is self._direct:
                return True  # a waiting thread took it over just now and reads this
            return self._readItems(conn, sock)

    def _readItems(self, conn: Any, sock: Any) -> bool:
        try:
            data = conn.readAvailable()
        except OSError as e:
            self.log.debug("Error reading from %s: %s", conn, e)
            data = None
        if data is None:
            self._lostConnection(conn)
            return False
        while True:
            try:
                item = conn._nextItem()
            except Exception:
                self.log.exception("Invalid data from %s:", conn)
                self._lostConnection(conn)
                return False
            if item is None:
                return True
            try:
                if isinstance(item, AdminRequest):
                    self.handleAdminRequest(item)
                else:
                    self.handlePacket(item)
            except Exception:
                self.log.exception("Exception handling %s from %s:", item, conn)
            if conn.conn is not sock:
                return False  # a handler dropped the connection

    # --- shutdown ----------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Close all connections and stop all running threads (idempotent)."""
        if self.running:
            self.log.debug("Beginning shutdown")
            self._shutdown()
            self.log.debug("Beginning cleanup")
            self._cleanup()
            self.log.debug("Finished shutdown")
        else:
            self.log.warning("Shutdown called when not currently running. Ignoring.")

    def _shutdown(self) -> None:
        self.running = False
        with self.connections_condition:
            self.connections_condition.notify_all()
        self._wake()
        self._wakeDirect()

    def _cleanup(self) -> None:
        current = threading.current_thread()
        for thread in (self.poll_thread, self.connect_thread):
            if thread is not current:
                thread.join()
        with self.connections_condition:
            conns = self.active_connections + self.inactive_connections
            self.active_connections = []
            self.inactive_connections = []
        for conn in conns:
            conn.disconnect()
        # -1 afterwards: a late _wake() must not write into a reused descriptor number.
        wake_read, wake_write = self.wake_read, self.wake_write
        self.wake_read = self.wake_write = -1
        os.close(wake_read)
        os.close(wake_write)
        self._closeDirect()


class BaseClient(BaseClientServer):
    """Server list management shared by Client and Worker."""

    def __init__(self, client_id: Any = "unknown") -> None:
        super().__init__(client_id)
        self.log = logging.getLogger(f"gear.BaseClient.{id_text(self.client_id)}")

    def addServer(
        self,
        host: Any,
        port: Any = 4730,
        ssl_key: str | None = None,
        ssl_cert: str | None = None,
        ssl_ca: str | None = None,
        keepalive: bool = False,
        tcp_keepidle: int = 7200,
        tcp_keepintvl: int = 75,
        tcp_keepcnt: int = 9,
    ) -> None:
        """Add a server; it is connected (and reconnected) in the background.

        :arg str host: the host name or IPv4/IPv6 address of the server.
        :arg int port: the port on the server.
        :arg str ssl_key/ssl_cert/ssl_ca: paths for mutual TLS (all three, or none).
        :arg bool keepalive: whether to use TCP keepalives (with the ``tcp_*`` settings).
        :raises ConfigurationError: if the host/port combination was already added.
        """
        self.log.debug("Adding server %s port %s", host, port)
        with self.connections_condition:
            for conn in self.active_connections + self.inactive_connections:
                if conn.host == host and conn.port == port:
                    raise ConfigurationError("Host/port already specified")
            conn = Connection(
                host,
                port,
                ssl_key,
                ssl_cert,
                ssl_ca,
                self.client_id,
                keepalive,
                tcp_keepidle,
                tcp_keepintvl,
                tcp_keepcnt,
            )
            self.inactive_connections.append(conn)
            self.connections_condition.notify_all()

    def _checkTimeout(self, start_time: float, timeout: float | None) -> None:
        if timeout is not None and time.time() - start_time > timeout:
            raise TimeoutError()

    def waitForServer(self, timeout: float | None = None) -> None:
        """Wait until at least one server is connected.

        Returns at once if one is; returns None if the object shuts down meanwhile.

        :raises TimeoutError: if no server connected within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.connections_condition:
            while self.running and not self.active_connections:
                if deadline is None:
                    self.connections_condition.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError()
                self.connections_condition.wait(remaining)

    def getConnection(self) -> Any:
        """The next active connection, round-robin.

        :raises NoConnectedServersError: if there are no active connections.
        """
        with self.connections_condition:
            if not self.active_connections:
                raise NoConnectedServersError("No connected Gearman servers")
            self.connection_index += 1
            if self.connection_index >= len(self.active_connections):
                self.connection_index = 0
            return self.active_connections[self.connection_index]

    def broadcast(self, packet: Packet) -> None:
        """Send a packet to every active connection (failures mark that connection lost)."""
        self._broadcastRaw(packet.toBinary())

    def _broadcastRaw(self, data: bytes) -> None:
        with self.connections_condition:
            conns = list(self.active_connections)
        for conn in conns:
            try:
                conn.sendRaw(data)
            except Exception:
                self.log.debug("Unable to broadcast to %s", conn)
                self._lostConnection(conn)

    def sendPacket(self, packet: Packet, connection: Any) -> None:
        """Send a packet on one connection; on failure mark it lost and re-raise."""
        self._sendRaw(packet.toBinary(), connection)

    def _sendRaw(self, data: bytes, connection: Any) -> None:
        try:
            connection.sendRaw(data)
        except Exception:
            self.log.exception("Exception while sending to %s:", connection)
            self._lostConnection(connection)
            raise

    def handleEchoRes(self, packet: Packet) -> Any:
        return packet.connection.handleEchoRes(packet.getArgument(0, True))

    def handleError(self, packet: Packet) -> Any:
        """An ERROR reply fails the oldest pending request on that connection
        (docs/protocol.md §1.3).

        An ERROR with nothing pending (gearmand answers e.g. a worker's report for a job it
        no longer knows with ERROR JOB_NOT_FOUND) is logged as a warning; the connection stays
        up.
        """
        session = packet.connection.session
        answered = bool(session.pending)
        if session.live:  # the refused SUBMIT may be a live job that others attach to
            with self.session_lock:
                error = session.error(packet.data)
        else:
            error = session.error(packet.data)
        # Logged only: below WARNING when it fails a request (the caller gets the ServerError),
        # so an application without logging set up sees no second report on stderr (logging's
        # last-resort handler prints WARNING and above).
        self.log.log(
            logging.INFO if answered else logging.WARNING,
            "Received ERROR packet: %r: %r",
            error.code,
            error.text,
        )
        return None


#: BaseClient.getConnection: submitJob inlines it unless a subclass overrides it.
_OWN_ROUND_ROBIN = BaseClient.getConnection


class Client(ClientPacketHandlers, BaseClient):
    """A Gearman client: submits jobs and receives their results.

    :arg str client_id: the client ID (used in log messages).
    """

    def __init__(self, client_id: Any = "unknown") -> None:
        self.options: set[bytes] = set()
        super().__init__(client_id)
        self.log = logging.getLogger(f"gear.Client.{id_text(self.client_id)}")

    def __repr__(self) -> str:
        return f"<gear.Client 0x{id(self):x}>"

    def _onConnect(self, conn: Any) -> None:
        # Re-apply options on every (re)connect, in one write; replies are not awaited.
        with self.broadcast_lock:
            options = list(self.options)
            if not options:
                return
            tasks = [OptionReqTask() for _ in options]
            with conn.send_lock:
                conn.pending_tasks.extend(tasks)
                conn._sendall(b"".join(request(constants.OPTION_REQ, o) for o in options))

    def _setOptionConnection(self, name: bytes, conn: Any) -> OptionReqTask | None:
        task = OptionReqTask()
        try:
            conn.sendTask(task, request(constants.OPTION_REQ, name))
        except Exception:
            self.log.debug("Unable to send OPTION_REQ to %s", conn)
            self._lostConnection(conn)
            return None
        return task

    def setOption(self, name: str | bytes, timeout: float = 30) -> bool:
        """Set an option (e.g. ``exceptions``) on all current and future connections.

        Returns False if any server refused it, True otherwise (also with no server).
        """
        option: bytes = convert_to_bytes(name)
        with self.broadcast_lock:
            self.options.add(option)
            with self.connections_condition:
                conns = list(self.active_connections)
            tasks = {}
            for conn in conns:
                task = self._setOptionConnection(option, conn)
                if task is not None:
                    tasks[task] = conn
        success = True
        for task, conn in tasks.items():
            if not task.wait(timeout):
                self.log.error("Connection %s timed out waiting for a response to an option "
                               "request: %r", conn, option)
                self._lostConnection(conn)
                continue
            if task.error is not None or option not in conn.options:
                success = False
        return success

    def submitJob(
        self,
        job: Job,
        background: bool = False,
        precedence: int = PRECEDENCE_NORMAL,
        timeout: float = 30,
        when: int | float | None = None,
    ) -> None:
        """Submit a job; returns once the server acknowledged it (``job.handle`` is set).

        :arg Job job: the job to submit.
        :arg bool background: whether the job runs detached from this client.
        :arg int precedence: PRECEDENCE_NORMAL, PRECEDENCE_LOW or PRECEDENCE_HIGH.
        :arg int timeout: seconds to wait for the server's acknowledgement.
        :arg when: Unix time at which the job may run (SUBMIT_JOB_EPOCH). The protocol only
            has this for background jobs of normal precedence; anything else raises
            ConfigurationError.
        :raises NoConnectedServersError: if no server is connected.
        :raises ServerError: if the server answered ERROR (e.g. a full queue).
        :raises ConfigurationError: for an invalid precedence/when combination.
        :raises InvalidDataError: if the unique is longer than 63 bytes (docs/protocol.md §1.2).
        """
        unique = messages.check_unique(bytes(job.binary_unique or b""))
        name, arguments = bytes(job.binary_name), bytes(job.binary_arguments)
        data = messages.submit_job(
            name, unique, arguments, background, precedence, None if when is None else int(when)
        )
        key = None if background or not unique else messages.coalescing_key(name, unique, arguments)
        attempted: set[Any] = set()
        last_error: BaseException | None = None
        while True:
            with self._connections_lock:
                active = self.active_connections
                if not attempted and active and _OWN_ROUND_ROBIN is type(self).getConnection:
                    # getConnection's round robin inline (the first try of every submit).
                    index = self.connection_index + 1
                    self.connection_index = index = index if index < len(active) else 0
                    conn = active[index]
                else:
                    remaining = [c for c in active if c not in attempted]
                    if not remaining:
                        if not active and not attempted:
                            raise NoConnectedServersError("No connected Gearman servers")
                        break
                    conn = self.getConnection()
                    if conn in attempted:
                        conn = remaining[0]
            attempted.add(conn)
            task = SubmitJobTask(job, background)
            try:
                sent = self._sendSubmit(conn, task, data, key)
            except Exception as e:
                self.log.debug("Unable to submit job to %s: %s", conn, e)
                self._lostConnection(conn)
                last_error = e
                continue
            if not task.wait(timeout):
                self.log.error("Connection %s timed out waiting for a response to a submit "
                               "job request: %s", conn, job)
                if sent:  # an attached job waits on another submission's connection
                    self._lostConnection(conn)
                last_error = TimeoutError()
                continue
            if task.error is not None:
                self.log.debug("%s refused job %s: %s", conn, job, task.error)
                last_error = task.error
                continue
            if not job.handle:
                continue
            return
        if isinstance(last_error, ServerError):
            raise last_error
        if not attempted:
            raise NoConnectedServersError("No connected Gearman servers")
        raise GearmanError("Unable to submit job to any connected servers")

    def _attach(self, key: Hashable, task: SubmitJobTask) -> bool:
        """Attach ``task.job`` to a job live under ``key`` on any connection (local
        coalescing, see :mod:`gear.protocol.client`); the caller holds ``session_lock``."""
        return any(conn.session.attach(key, task) for conn in list(self.active_connections))

    def _sendSubmit(
        self, conn: Any, task: SubmitJobTask, data: bytes, key: Hashable | None
    ) -> bool:
        """Queue ``task`` on ``conn`` and send its SUBMIT; False if it was attached instead.

        Both happen under ``send_lock``, so that the FIFO order is the wire order.
        """
        with conn.send_lock:
            if key is None:
                conn.session.expect(task)
            else:
                with self.session_lock:
                    if self._attach(key, task):
                        return False
                    conn.session.expect(task, key)
            try:
                conn._sendall(data)
            except BaseException:
                with self.session_lock:
                    conn.session.unexpect(task)
                raise
        return True

    def submitJobs(
        self,
        jobs: list[Job],
        background: bool = False,
        precedence: int = PRECEDENCE_NORMAL,
        timeout: float = 30,
    ) -> None:
        """Submit several jobs at once (not in gear): one write, then wait for every reply.

        The submissions are pipelined on one connection (round-robin per call), so N jobs
        cost one round trip instead of N. Jobs the connection did not acknowledge (lost
        connection, timeout) are retried one by one with :meth:`submitJob`. Raises the first
        error once every job has been tried; jobs with a ``handle`` were submitted.
        """
        if not jobs:
            return
        requests = []
        for job in jobs:
            name, arguments = bytes(job.binary_name), bytes(job.binary_arguments)
            unique = messages.check_unique(bytes(job.binary_unique or b""))
            key = None if background or not unique else messages.coalescing_key(
                name, unique, arguments
            )
            packet = messages.submit_job(name, unique, arguments, background, precedence)
            requests.append((key, packet))
        conn = self.getConnection()
        batch = Batch(len(jobs))
        tasks = [BatchSubmitTask(job, background, batch) for job in jobs]
        try:
            with conn.send_lock:
                packets = []
                with self.session_lock:
                    for task, (key, packet) in zip(tasks, requests, strict=True):
                        if key is None or not self._attach(key, task):
                            conn.session.expect(task, key)
                            packets.append(packet)
                conn._sendall(b"".join(packets))
        except Exception:
            self._lostConnection(conn)  # fails the tasks; they are retried below
        if not batch.event.wait(timeout):
            self._lostConnection(conn)  # fails the unanswered tasks
        first_error: BaseException | None = None
        for task in tasks:
            if task.error is None and task.job.handle:
                continue
            if isinstance(task.error, ServerError):
                first_error = first_error or task.error
                continue
            try:
                self.submitJob(task.job, background, precedence, timeout)
            except GearmanError as e:
                first_error = first_error or e
        if first_error is not None:
            raise first_error

    def getStatus(self, job: Job, timeout: float = 30) -> Job:
        """Ask the server for a job's status (GET_STATUS) and wait for the reply.

        Updates and returns ``job``: ``known``, ``running``, ``numerator``, ``denominator``,
        ``fraction_complete``.
        """
        conn = job.connection
        if conn is None or not job.handle:
            raise UnknownJobError("the job has not been submitted")
        waiter = self._askStatus(conn, constants.GET_STATUS, bytes(job.handle), timeout, job)
        if waiter.error is not None:
            raise waiter.error
        return job

    def getStatusUnique(
        self, unique: str | bytes, timeout: float = 30
    ) -> messages.JobStatus:
        """Status of the job with this unique (GET_STATUS_UNIQUE, gearmand 1.1.19+).

        Asks each connected server in turn until one knows the unique; returns a
        :class:`gear.protocol.messages.JobStatus` (``handle`` holds the unique).
        """
        key = convert_to_bytes(unique)
        with self.connections_condition:
            conns = list(self.active_connections)
        if not conns:
            raise NoConnectedServersError("No connected Gearman servers")
        status = None
        for conn in conns:
            try:
                waiter = self._askStatus(conn, constants.GET_STATUS_UNIQUE, key, timeout)
            except TimeoutError:
                raise
            except Exception:
                continue
            if waiter.error is not None:
                continue
            status = waiter.result
            if status.known:
                return status
        if status is None:
            raise NoConnectedServersError("No connected Gearman server answered")
        return status

    def _askStatus(
        self, conn: Any, ptype: int, key: bytes, timeout: float, job: Job | None = None
    ) -> Any:
        """Send GET_STATUS(_UNIQUE) for ``key`` and wait for the reply (matched by key, so a
        STATUS_RES gear code asked for itself still updates its job)."""
        unique = ptype == constants.GET_STATUS_UNIQUE
        waiter = conn.addStatusWaiter(key, job, unique)
        try:
            self._sendRaw(request(ptype, key), conn)
        except Exception:
            conn.removeStatusWaiter(key, waiter, unique)
            raise
        if not waiter.wait(timeout):
            conn.removeStatusWaiter(key, waiter, unique)
            raise TimeoutError()
        return waiter
