"""gear's threaded client: the poll/connect thread skeleton, ``BaseClient`` and ``Client``.

Owns ``Task``/``SubmitJobTask``/``OptionReqTask``, ``BaseClientServer`` (two daemon threads per
object: one polls every connected socket and dispatches packets to ``handleXxx`` hooks, one
(re)connects servers in the background), ``BaseClient`` (servers, round-robin, broadcast) and
``Client`` (submit jobs, options, status), per reference/gear-0.16-api.md 3.3 and 3.7-3.9.

Kept from gear: names, signatures, ``handleXxx(packet)`` hooks that return the Job, FIFO matching
of JOB_CREATED/OPTION_RES/ERROR to ``pending_tasks``, ``related_jobs`` (handle -> Job),
``active_connections``/``inactive_connections``. Fixed (section 6): ``submitJob`` with no server
raises NoConnectedServersError; an ERROR reply raises ServerError; coalesced submissions (one
handle, several Jobs) all receive every WORK_* packet; a lost connection wakes the poll loop and
fails its waiters at once; reconnects back off from 50 ms to 2 s without sleep-polling. Added:
``getStatus``, ``getStatusUnique``, ``submitJob(..., when=...)`` (SUBMIT_JOB_EPOCH),
``submitJobs`` (many submissions pipelined in one write) and ``Job.wait``. Packets are
logged at DEBUG only, behind a level check.

Names are gear's camelCase on purpose. Must not import the worker or server modules; requests
are built with :mod:`gear.protocol.messages` / :mod:`gear.protocol.packets`.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
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
from gear.protocol.packets import request, split_args
from gear.threaded.admin_requests import AdminRequest
from gear.threaded.connection import Connection
from gear.threaded.jobs import Job, convert_to_bytes
from gear.threaded.packet import Packet

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

#: Packet type -> name of the BaseClientServer method that handles it (gear's dispatch table,
#: plus the types gear lacked).
HANDLERS: dict[int, str] = {
    constants.JOB_CREATED: "handleJobCreated",
    constants.WORK_COMPLETE: "handleWorkComplete",
    constants.WORK_FAIL: "handleWorkFail",
    constants.WORK_EXCEPTION: "handleWorkException",
    constants.WORK_DATA: "handleWorkData",
    constants.WORK_WARNING: "handleWorkWarning",
    constants.WORK_STATUS: "handleWorkStatus",
    constants.STATUS_RES: "handleStatusRes",
    constants.STATUS_RES_UNIQUE: "handleStatusResUnique",
    constants.GET_STATUS: "handleGetStatus",
    constants.GET_STATUS_UNIQUE: "handleGetStatusUnique",
    constants.JOB_ASSIGN_UNIQ: "handleJobAssignUnique",
    constants.JOB_ASSIGN: "handleJobAssign",
    constants.JOB_ASSIGN_ALL: "handleJobAssignAll",
    constants.NO_JOB: "handleNoJob",
    constants.NOOP: "handleNoop",
    constants.SUBMIT_JOB: "handleSubmitJob",
    constants.SUBMIT_JOB_BG: "handleSubmitJobBg",
    constants.SUBMIT_JOB_HIGH: "handleSubmitJobHigh",
    constants.SUBMIT_JOB_HIGH_BG: "handleSubmitJobHighBg",
    constants.SUBMIT_JOB_LOW: "handleSubmitJobLow",
    constants.SUBMIT_JOB_LOW_BG: "handleSubmitJobLowBg",
    constants.SUBMIT_JOB_SCHED: "handleSubmitJobSched",
    constants.SUBMIT_JOB_EPOCH: "handleSubmitJobEpoch",
    constants.GRAB_JOB_UNIQ: "handleGrabJobUniq",
    constants.GRAB_JOB: "handleGrabJob",
    constants.GRAB_JOB_ALL: "handleGrabJobAll",
    constants.PRE_SLEEP: "handlePreSleep",
    constants.SET_CLIENT_ID: "handleSetClientID",
    constants.CAN_DO: "handleCanDo",
    constants.CAN_DO_TIMEOUT: "handleCanDoTimeout",
    constants.CANT_DO: "handleCantDo",
    constants.RESET_ABILITIES: "handleResetAbilities",
    constants.ECHO_REQ: "handleEchoReq",
    constants.ECHO_RES: "handleEchoRes",
    constants.ERROR: "handleError",
    constants.ALL_YOURS: "handleAllYours",
    constants.OPTION_REQ: "handleOptionReq",
    constants.OPTION_RES: "handleOptionRes",
}


def _id_text(client_id: bytes | None) -> str:
    return client_id.decode("utf-8", "replace") if client_id else ""


class Task:
    """Something a caller waits for until the poll thread completes it.

    A held lock is the latch: setComplete releases it. Waking a thread blocked on a bare lock
    costs about half of what a threading.Event handoff costs, and every synchronous submit
    pays one such handoff.
    """

    def __init__(self) -> None:
        self._latch = threading.Lock()
        self._latch.acquire()
        self._complete = False
        #: Set when the request failed (ServerError for an ERROR reply, ConnectionError).
        self.error: BaseException | None = None

    def setComplete(self) -> None:
        if self._complete:
            return
        self._complete = True
        try:
            self._latch.release()
        except RuntimeError:
            pass  # completed concurrently from another thread

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for completion; True if completed within ``timeout``."""
        if self._complete:
            return True
        if self._latch.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            self._latch.release()  # let any other waiter through too
        return self._complete


class SubmitJobTask(Task):
    """A submission waiting for its JOB_CREATED (or ERROR)."""

    def __init__(self, job: Any, background: bool = False) -> None:
        super().__init__()
        self.job = job
        self.background = background


class _Batch:
    """Completion of a group of submissions, with one event for the whole group."""

    __slots__ = ("event", "lock", "remaining")

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.lock = threading.Lock()
        self.event = threading.Event()

    def one_done(self) -> None:
        with self.lock:
            self.remaining -= 1
            last = self.remaining == 0
        if last:
            self.event.set()


class _BatchSubmitTask(SubmitJobTask):
    """A SubmitJobTask of submitJobs: completes into its batch instead of its own event."""

    def __init__(self, job: Any, background: bool, batch: _Batch) -> None:
        # No per-task event: the caller waits once for the whole batch.
        self.job = job
        self.background = background
        self.error = None
        self.batch = batch
        self.done = False

    def setComplete(self) -> None:
        if not self.done:
            self.done = True
            self.batch.one_done()

    def wait(self, timeout: float | None = None) -> bool:
        self.batch.event.wait(timeout)
        return self.done


class OptionReqTask(Task):
    """An OPTION_REQ waiting for its OPTION_RES (or ERROR)."""


class BaseClientServer:
    """The threads and connection lists shared by Client and Worker (and gear's Server).

    Two daemon threads start in the constructor: "Gearman client poll" reads every active
    connection and calls ``handlePacket``/``handleAdminRequest``; "Gearman client connect"
    (re)connects the inactive ones. Subclasses set their own state before calling
    ``super().__init__``.
    """

    def __init__(self, client_id: Any = None) -> None:
        if client_id:
            self.client_id: bytes | None = convert_to_bytes(client_id)
            self.log = logging.getLogger(f"gear.BaseClientServer.{_id_text(self.client_id)}")
        else:
            self.client_id = None
            self.log = logging.getLogger("gear.BaseClientServer")
        self.running = True
        self.active_connections: list[Any] = []
        self.inactive_connections: list[Any] = []
        self.connection_index = -1
        # Guards the two lists; notified whenever a connection changes list or on shutdown.
        self.connections_condition = threading.Condition()
        # Held across _onConnect and activation, and by whoever broadcasts registration
        # state, so a connecting socket never misses a CAN_DO or option (reference 3.8).
        self.broadcast_lock = threading.RLock()
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
        with self.connections_condition:
            jobs = list(conn.related_jobs.values())
            for extra in conn.coalesced_jobs.values():
                jobs.extend(extra)
            if conn in self.active_connections:
                self.active_connections.remove(conn)
            if conn not in self.inactive_connections:
                self.inactive_connections.append(conn)
            self.connections_condition.notify_all()
        conn._failWaiters(ConnectionError(f"Connection to {conn.host}:{conn.port} lost"))
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
        poll = select.poll()
        poll.register(self.wake_read, select.POLLIN)
        fdmap: dict[int, tuple[Any, Any]] = {}
        with self.connections_condition:
            conns = list(self.active_connections)
        for conn in conns:
            sock = conn.conn
            if sock is None:
                continue
            fd = sock.fileno()
            fdmap[fd] = (conn, sock)
            poll.register(fd, _POLL_MASK)
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

    # --- dispatch ----------------------------------------------------------------------------

    def handlePacket(self, packet: Packet) -> Any:
        """Dispatch a received packet to its ``handleXxx`` method (by type)."""
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("Received packet from %s: %s", packet.connection, packet)
        timed = type(self).reportTimingStats is not BaseClientServer.reportTimingStats
        start = time.perf_counter() if timed else 0.0
        name = HANDLERS.get(packet.ptype)
        if name is None:
            self.log.error("Received unknown packet: %s", packet)
            result = None
        else:
            result = getattr(self, name)(packet)
        if timed:  # only subclasses that override the hook pay for the clock
            self.reportTimingStats(packet.ptype, time.perf_counter() - start)
        return result

    def reportTimingStats(self, ptype: int, duration: float) -> None:
        """Hook: called with each packet type and its handling time (seconds)."""

    def _defaultPacketHandler(self, packet: Packet) -> Any:
        self.log.error("Received unhandled packet: %s", packet)
        return None

    def handleJobCreated(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleWorkComplete(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleWorkFail(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleWorkException(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleWorkData(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleWorkWarning(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleWorkStatus(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleStatusRes(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleStatusResUnique(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleGetStatus(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleGetStatusUnique(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleJobAssignUnique(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleJobAssign(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleJobAssignAll(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleNoJob(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleNoop(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleSubmitJob(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleSubmitJobBg(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleSubmitJobHigh(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleSubmitJobHighBg(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleSubmitJobLow(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleSubmitJobLowBg(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleSubmitJobSched(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleSubmitJobEpoch(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleGrabJobUniq(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleGrabJob(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleGrabJobAll(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handlePreSleep(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleSetClientID(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleCanDo(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleCanDoTimeout(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleCantDo(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleResetAbilities(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleEchoReq(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleEchoRes(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleError(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleAllYours(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleOptionReq(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleOptionRes(self, packet: Packet) -> Any:
        return self._defaultPacketHandler(packet)

    def handleAdminRequest(self, request: AdminRequest) -> None:
        """Called with each completed admin reply; wakes whoever waits on it."""
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("Received admin data %s", request)
        request.setComplete()

    def handleDisconnect(self, job: Any) -> Any:
        """Hook: called for each job whose connection was lost; returns the job."""
        return job

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


class BaseClient(BaseClientServer):
    """Server list management shared by Client and Worker."""

    def __init__(self, client_id: Any = "unknown") -> None:
        super().__init__(client_id)
        self.log = logging.getLogger(f"gear.BaseClient.{_id_text(self.client_id)}")

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
        """An ERROR reply fails the oldest pending request on that connection (reference 1.3).

        An ERROR with nothing pending (gearmand answers e.g. a worker's report for a job it
        no longer knows with ERROR JOB_NOT_FOUND) is logged; the connection stays up.
        """
        code, text = packet.getArgument(0), packet.getArgument(1, True).rstrip(b"\x00")
        self.log.error("Received ERROR packet: %r: %r", code, text)
        conn = packet.connection
        if not conn.pending_tasks:
            return None
        task = conn.pending_tasks.pop(0)
        task.error = ServerError(code, text)
        task.setComplete()
        return None


class Client(BaseClient):
    """A Gearman client: submits jobs and receives their results.

    :arg str client_id: the client ID (used in log messages).
    """

    def __init__(self, client_id: Any = "unknown") -> None:
        self.options: set[bytes] = set()
        super().__init__(client_id)
        self.log = logging.getLogger(f"gear.Client.{_id_text(self.client_id)}")

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
        :raises InvalidDataError: if the unique is longer than 63 bytes (reference 1.2).
        """
        unique = messages.check_unique(bytes(job.binary_unique or b""))
        data = messages.submit_job(
            bytes(job.binary_name),
            unique,
            bytes(job.binary_arguments),
            background,
            precedence,
            None if when is None else int(when),
        )
        attempted: set[Any] = set()
        last_error: BaseException | None = None
        while True:
            with self.connections_condition:
                remaining = [c for c in self.active_connections if c not in attempted]
                if not remaining:
                    if not self.active_connections and not attempted:
                        raise NoConnectedServersError("No connected Gearman servers")
                    break
                conn = self.getConnection()
                if conn in attempted:
                    conn = remaining[0]
            attempted.add(conn)
            task = SubmitJobTask(job, background)
            try:
                conn.sendTask(task, data)
            except Exception as e:
                self.log.debug("Unable to submit job to %s: %s", conn, e)
                self._lostConnection(conn)
                last_error = e
                continue
            if not task.wait(timeout):
                self.log.error("Connection %s timed out waiting for a response to a submit "
                               "job request: %s", conn, job)
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
        data = b"".join(
            messages.submit_job(
                bytes(job.binary_name),
                messages.check_unique(bytes(job.binary_unique or b"")),
                bytes(job.binary_arguments),
                background,
                precedence,
            )
            for job in jobs
        )
        conn = self.getConnection()
        batch = _Batch(len(jobs))
        tasks = [_BatchSubmitTask(job, background, batch) for job in jobs]
        try:
            with conn.send_lock:
                conn.pending_tasks.extend(tasks)
                conn._sendall(data)
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
        handle = bytes(job.handle)
        waiter = conn.addStatusWaiter(handle, job)
        try:
            self._sendRaw(request(constants.GET_STATUS, handle), conn)
        except Exception:
            conn.removeStatusWaiter(handle, waiter)
            raise
        if not waiter.wait(timeout):
            conn.removeStatusWaiter(handle, waiter)
            raise TimeoutError()
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
            waiter = conn.addStatusWaiter(key, unique=True)
            try:
                self._sendRaw(request(constants.GET_STATUS_UNIQUE, key), conn)
            except Exception:
                conn.removeStatusWaiter(key, waiter, unique=True)
                continue
            if not waiter.wait(timeout):
                conn.removeStatusWaiter(key, waiter, unique=True)
                raise TimeoutError()
            if waiter.error is not None:
                continue
            status = waiter.result
            if status.known:
                return status
        if status is None:
            raise NoConnectedServersError("No connected Gearman server answered")
        return status

    # --- packet handlers (poll thread) -------------------------------------------------------

    def _replyTask(self, packet: Packet, kind: type[Task], request: str) -> Any:
        """The oldest pending task on the packet's connection, which ``packet`` answers.

        Replies come in request order (reference 1.3), so anything but a ``kind`` task there
        means the stream and our bookkeeping disagree: the connection is dropped.
        """
        conn = packet.connection
        task = conn.pending_tasks.pop(0) if conn.pending_tasks else None
        if not isinstance(task, kind):
            msg = f"Unexpected response received to {request} request: {packet}"
            self.log.error(msg)
            self._lostConnection(conn)
            raise GearmanError(msg)
        return task

    def handleJobCreated(self, packet: Packet) -> Any:
        conn = packet.connection
        task = self._replyTask(packet, SubmitJobTask, "submit job")
        job = task.job
        handle = packet.data
        job.handle = handle
        job.connection = conn
        if not task.background:
            first = conn.related_jobs.get(handle)
            if first is None:
                conn.related_jobs[handle] = job
            elif first is not job:
                # The server coalesced this submission onto a job we already track
                # (same function and unique, reference 3.2): see _workTarget.
                conn.coalesced_jobs.setdefault(handle, []).append(job)
        task.setComplete()
        return job

    def _jobsFor(self, packet: Packet) -> tuple[Any, list[Any]]:
        """The first job with this packet's handle, and every job sharing the handle."""
        job = packet.getJob()
        conn = packet.connection
        coalesced = getattr(conn, "coalesced_jobs", None) if conn is not None else None
        extra = coalesced.get(messages.work_handle(packet.data)) if coalesced else None
        if not extra:
            return job, [job]
        return job, [job, *extra]

    def _workTarget(self, packet: Packet, final: bool) -> Any:
        """The job one WORK_* packet is for.

        When the server coalesced k submissions from this connection onto one handle, gearmand
        (and our server) send every WORK_* packet once per submission, back to back (reference
        3.2). The i-th copy goes to the i-th job, so each Job sees every update exactly once;
        the handle is forgotten once every job got its final packet. ``related_jobs`` keeps
        mapping the handle to the first job, as in gear.
        """
        job = packet.getJob()
        conn = packet.connection
        coalesced = getattr(conn, "coalesced_jobs", None) if conn is not None else None
        handle = messages.work_handle(packet.data)
        extra = coalesced.get(handle) if coalesced else None
        if not extra:
            if final:
                self._forgetJob(packet)
            return job
        jobs = [job, *extra]
        state = conn.coalesced_cursor.setdefault(handle, [0, 0])
        target = jobs[state[0] % len(jobs)]
        state[0] += 1
        if final:
            state[1] += 1
            if state[1] >= len(jobs):
                self._forgetJob(packet)
        return target

    def _forgetJob(self, packet: Packet) -> None:
        conn = packet.connection
        if conn is None:
            return
        handle = messages.work_handle(packet.data)
        conn.related_jobs.pop(handle, None)
        coalesced = getattr(conn, "coalesced_jobs", None)
        if coalesced:
            coalesced.pop(handle, None)
            conn.coalesced_cursor.pop(handle, None)

    def _workData(self, packet: Packet, final: bool) -> Any:
        """The packet's job, with the packet's data (if any) appended to ``job.data``."""
        job = self._workTarget(packet, final)
        data = packet.getArgument(1, True)
        if data:
            job.data.append(data)
        return job

    def handleWorkComplete(self, packet: Packet) -> Any:
        job = self._workData(packet, final=True)
        job.failure = False
        job.complete = True
        return job

    def handleWorkFail(self, packet: Packet) -> Any:
        job = self._workTarget(packet, final=True)
        job.failure = True
        job.complete = True
        return job

    def handleWorkException(self, packet: Packet) -> Any:
        job = self._workTarget(packet, final=True)
        job.exception = packet.getArgument(1, True)
        job.failure = True
        job.complete = True
        return job

    def handleWorkData(self, packet: Packet) -> Any:
        return self._workData(packet, final=False)

    def handleWorkWarning(self, packet: Packet) -> Any:
        job = self._workData(packet, final=False)
        job.warning = True
        return job

    @staticmethod
    def _fraction(numerator: bytes, denominator: bytes) -> float | None:
        try:
            return float(numerator) / float(denominator)
        except Exception:
            return None

    def handleWorkStatus(self, packet: Packet) -> Any:
        job = self._workTarget(packet, final=False)
        job.numerator = packet.getArgument(1)
        job.denominator = packet.getArgument(2)
        job.fraction_complete = self._fraction(job.numerator, job.denominator)
        return job

    def handleStatusRes(self, packet: Packet) -> Any:
        """STATUS_RES: update the job (and wake getStatus callers waiting on its handle)."""
        conn = packet.connection
        handle = packet.getArgument(0)
        try:
            job, jobs = self._jobsFor(packet)
        except UnknownJobError:
            job, jobs = None, []
        waiters = conn.popStatusWaiters(handle) if conn is not None else []
        for w in waiters:
            if w.job is not None and all(w.job is not j for j in jobs):
                jobs.append(w.job)
        if job is None:
            if not jobs:
                raise UnknownJobError()
            job = jobs[0]
        known = packet.getArgument(1) == b"1"
        running = packet.getArgument(2) == b"1"
        numerator = packet.getArgument(3)
        denominator = packet.getArgument(4)
        fraction = self._fraction(numerator, denominator)
        for j in jobs:
            j.known = known
            j.running = running
            j.numerator = numerator
            j.denominator = denominator
            j.fraction_complete = fraction
        for w in waiters:
            w.set()
        return job

    def handleStatusResUnique(self, packet: Packet) -> Any:
        """STATUS_RES_UNIQUE: wake getStatusUnique callers; returns the JobStatus."""
        status = messages.parse_status_res(split_args(constants.STATUS_RES_UNIQUE, packet.data))
        for w in packet.connection.popStatusWaiters(status.handle, unique=True):
            w.result = status
            w.set()
        return status

    def handleOptionRes(self, packet: Packet) -> Any:
        task = self._replyTask(packet, OptionReqTask, "option")
        packet.connection.handleOptionRes(packet.getArgument(0))
        task.setComplete()
        return None
