"""gear's connection classes: one TCP (optionally TLS) connection to a Gearman server.

Owns ``Connection`` (the blocking client/worker side, docs/gear-compat.md §3.4),
``NonBlockingConnection`` and ``ServerConnection`` (§3.12), ``best_tls_version`` and
``create_ssl_context`` (§3.2). It keeps gear's public contract:

* ``readPacket()`` returns one Packet or one completed AdminRequest, never calls ``recv`` while a
  complete item is already buffered, keeps leftover and partial bytes in ``input_buffer``
  (also across a ``RetryIOError``) and returns None at EOF;
* ``related_jobs`` / ``pending_tasks`` / ``admin_requests`` / ``options`` / ``state``.

Beyond gear: every socket gets TCP_NODELAY (gear's Nagle + delayed-ACK stalls capped a worker at
~23 jobs/s); each batch of packets goes out in one ``sendall``; ``echo()`` works; waiters
(submits, admin requests, echoes, status queries) fail with ConnectionError when the connection
is lost instead of waiting for their timeout; TLS 1.3 is allowed. TLS sockets are switched to
non-blocking after the handshake and every SSL read/write holds ``_ssl_lock``: that avoids the
TLS 1.3 "readable but no application data" hang (CPython gh-87788) that made gear disable TLS 1.3,
and keeps OpenSSL from being entered by two threads at once.

Names are gear's camelCase on purpose. Must not import the client, worker or server modules;
framing comes from :mod:`gear.protocol.packets` (docs/protocol.md §1.1).
Socket options and TLS contexts come from :mod:`gear.net`.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from gear import constants, net
from gear.errors import (
    BadMagicError,
    ConnectionError,
    InvalidDataError,
    PacketTooLargeError,
    RetryIOError,
    TimeoutError,
)
from gear.protocol.client import ClientSession
from gear.protocol.messages import id_text
from gear.protocol.packets import (
    DEFAULT_MAX_PACKET_SIZE,
    HEADER,
    HEADER_SIZE,
    REQ,
    RES,
    request,
)
from gear.threaded.admin_requests import AdminRequest, ServerAdminRequest
from gear.threaded.packet import Packet, received_packet
from gear.threaded.tasks import JobUpdater

__all__ = [
    "Connection",
    "NonBlockingConnection",
    "ServerConnection",
    "best_tls_version",
    "create_ssl_context",
]

#: Bytes asked of ``recv`` at a time.
RECV_SIZE = 65536
#: Seconds a TCP connect may take before the next address (gear had no limit).
CONNECT_TIMEOUT = 10.0
#: A TLS connection the server ends this soon after the handshake, having sent nothing, was
#: refused (mutual TLS: see Connection._checkTlsRefusal).
TLS_VERDICT_TIME = 2.0


def best_tls_version() -> int:
    """The TLS protocol constant for client contexts (any TLS version the library supports).

    gear returned ``ssl.PROTOCOL_TLS`` (deprecated since Python 3.10); ``PROTOCOL_TLS_CLIENT``
    negotiates the same versions.
    """
    if hasattr(ssl, "PROTOCOL_TLS_CLIENT"):
        return ssl.PROTOCOL_TLS_CLIENT
    raise ConnectionError("No supported TLS version available.")


def create_ssl_context(server_side: bool = False) -> ssl.SSLContext:
    """A TLS context (TLS 1.2 or newer, TLS 1.3 enabled).

    gear disabled TLS 1.3 to dodge a poll/recv hang (docs/gear-compat.md §3.2); this module
    reads TLS sockets without blocking instead, so the newest version stays available.
    """
    return net.tls_context(server_side)


class _Waiter(threading.Event):
    """An event with a result or an error, for replies matched by key (echo, status)."""

    def __init__(self, job: Any = None) -> None:
        super().__init__()
        self.job = job
        self.result: Any = None
        self.error: BaseException | None = None


class Connection:
    """A connection to a Gearman server.

    :arg str host: the host name or IPv4/IPv6 address of the server.
    :arg int port: the port on the server.
    :arg str ssl_key: path to the SSL private key.
    :arg str ssl_cert: path to the SSL certificate.
    :arg str ssl_ca: path to the CA certificate; TLS is used only when all three are given.
    :arg str client_id: the client ID associated with this connection (logging only).
    :arg bool keepalive: whether to use TCP keepalives.
    :arg int tcp_keepidle: idle time after which to start keepalives sending.
    :arg int tcp_keepintvl: interval in seconds between TCP keepalives.
    :arg int tcp_keepcnt: count of TCP keepalives to send before disconnect.
    """

    def __init__(
        self,
        host: Any,
        port: Any,
        ssl_key: str | None = None,
        ssl_cert: str | None = None,
        ssl_ca: str | None = None,
        client_id: Any = "unknown",
        keepalive: bool = False,
        tcp_keepidle: int = 7200,
        tcp_keepintvl: int = 75,
        tcp_keepcnt: int = 9,
    ) -> None:
        self.log = logging.getLogger(f"gear.Connection.{id_text(client_id)}")
        self.host = host
        self.port = port
        self.ssl_key = ssl_key
        self.ssl_cert = ssl_cert
        self.ssl_ca = ssl_ca
        self.keepalive = keepalive
        self.tcp_keepcnt = tcp_keepcnt
        self.tcp_keepintvl = tcp_keepintvl
        self.tcp_keepidle = tcp_keepidle
        self.use_ssl = all([ssl_key, ssl_cert, ssl_ca])
        if not self.use_ssl and any([ssl_key, ssl_cert, ssl_ca]):
            # gear's rule, kept for compatibility: TLS only with all three files. Say so,
            # rather than silently talking plaintext to a server the caller meant to secure.
            self.log.warning(
                "TLS needs ssl_key, ssl_cert and ssl_ca; only some were given, so the "
                "connection to %s port %s is NOT encrypted",
                host,
                port,
            )
        self._buf = b""
        self._pos = 0
        self.need_bytes = False
        self.max_packet_size = DEFAULT_MAX_PACKET_SIZE
        self.echo_lock = threading.Lock()
        self.send_lock = threading.Lock()
        self._ssl_lock = threading.Lock()
        #: Whether the server has sent anything since the TLS connection was made.
        self._tls_answered = False
        self._init()

    def _init(self) -> None:
        self.conn: Any = None
        self.connected = False
        self.connect_time: float | None = None
        #: The client state of this connection: replies, handles, coalescing, WORK_* meaning.
        self.session = ClientSession(JobUpdater(self))
        #: handle -> the first Job submitted on this connection that got this handle (the
        #: session's own map; jobs attached to it locally are in ``session.followers``).
        self.related_jobs: dict[bytes, Any] = self.session.jobs
        #: Requests waiting for JOB_CREATED/OPTION_RES/ERROR, oldest first (the session's FIFO).
        self.pending_tasks: Any = self.session.pending
        self.admin_requests: list[AdminRequest] = []
        self.echo_conditions: dict[bytes, _Waiter] = {}
        self.status_waiters: dict[bytes, list[_Waiter]] = {}
        self.status_unique_waiters: dict[bytes, list[_Waiter]] = {}
        self.options: set[bytes] = set()
        self.changeState("INIT")

    def changeState(self, state: str) -> None:
        # The worker state strings: INIT, IDLE, GRAB_WAIT, SLEEP (docs/gear-compat.md §3.11).
        self.state = state
        self.state_time = time.time()

    def __repr__(self) -> str:
        return f"<gear.Connection 0x{id(self):x} host: {self.host} port: {self.port}>"

    # --- buffered input ---------------------------------------------------------------------

    @property
    def input_buffer(self) -> bytes:
        """Bytes received but not yet returned as a packet or admin reply."""
        if self._pos:
            self._buf = self._buf[self._pos :]
            self._pos = 0
        return self._buf

    @input_buffer.setter
    def input_buffer(self, value: bytes) -> None:
        self._buf = bytes(value)
        self._pos = 0

    def _append(self, data: bytes) -> None:
        pos = self._pos  # a drained buffer (the usual case) is replaced, not copied
        self._buf = data if pos >= len(self._buf) else self._buf[pos:] + data
        self._pos = 0

    def hasPendingData(self) -> bool:
        """Whether bytes are buffered (in ours, or decrypted but unread in the TLS layer)."""
        if self._pos < len(self._buf):
            return True
        return bool(self.use_ssl and self.conn is not None and self._sslPending())

    def _sslPending(self) -> int:
        pending = getattr(self.conn, "pending", None)
        return pending() if pending is not None else 0

    # --- connect / disconnect ----------------------------------------------------------------

    def connect(self) -> None:
        """Open a connection to the server; ConnectionError if no address works."""
        self.log.debug("Connecting to %s port %s", self.host, self.port)
        s = None
        try:
            addresses = socket.getaddrinfo(
                self.host, self.port, socket.AF_UNSPEC, socket.SOCK_STREAM
            )
        except OSError as e:  # unknown host: the reconnect loop retries quietly
            raise ConnectionError(f"Unable to resolve {self.host}: {e}") from e
        refusal: str | None = None
        for res in addresses:
            af, socktype, proto, _canonname, sa = res
            try:
                s = socket.socket(af, socktype, proto)
                net.apply_tcp_options(s, net.tcp_options(
                    self.keepalive, self.tcp_keepidle, self.tcp_keepintvl, self.tcp_keepcnt))
            except OSError:
                s = None
                continue
            try:
                if hasattr(s, "settimeout"):
                    s.settimeout(CONNECT_TIMEOUT)
                if self.use_ssl:
                    s = self._wrapSocket(s)
                s.connect(sa)
                if hasattr(s, "settimeout"):
                    s.settimeout(None)
                if self.use_ssl:
                    # Reads happen without blocking under _ssl_lock (module docstring).
                    s.setblocking(False)
            except (OSError, ssl.SSLError) as e:
                refusal = net.tls_refusal(e, handshake_done=False) if self.use_ssl else None
                if refusal is not None:
                    self.log.warning("Unable to connect to %s: %s", sa, refusal)
                else:
                    self.log.debug("Unable to connect to %s: %s", sa, e)
                try:
                    s.close()
                except Exception:
                    pass
                s = None
                continue
            break
        if s is None:
            self.log.debug("Error connecting to %s port %s", self.host, self.port)
            if refusal is not None:
                raise ConnectionError(refusal)
            raise ConnectionError("Unable to open socket")
        self.log.info("Connected to %s port %s", self.host, self.port)
        self.conn = s
        self.connected = True
        self.connect_time = time.time()
        self._tls_answered = False
        self.input_buffer = b""
        self.need_bytes = False

    def _wrapSocket(self, s: Any) -> Any:
        # Mutual TLS as gear does it: the server must present a certificate signed by ssl_ca,
        # its host name is not checked, and SNI carries the host (docs/gear-compat.md §3.4).
        assert self.ssl_cert and self.ssl_ca
        context = net.client_tls_context(self.ssl_key, self.ssl_cert, self.ssl_ca)
        return context.wrap_socket(s, server_hostname=self.host)

    def disconnect(self) -> None:
        """Close the connection; every waiter on it fails with ConnectionError."""
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
        if self.connected:  # not on every failed reconnect attempt
            self.log.info("Disconnected from %s port %s", self.host, self.port)
        self._failWaiters(ConnectionError(f"Connection to {self.host}:{self.port} lost"))
        self._init()

    def reconnect(self) -> None:
        """Disconnect from and reconnect to the server."""
        self.disconnect()
        self.connect()

    def _failWaiters(self, error: BaseException) -> list[Any]:
        """Wake everyone waiting on a reply from this connection with ``error``; returns the
        jobs that were running on it (for the client's ``handleDisconnect`` hook)."""
        jobs = self.session.connection_lost(error)
        requests, self.admin_requests = self.admin_requests, []
        for req in requests:
            req.error = error
            req.setComplete()
        with self.echo_lock:
            waiters = list(self.echo_conditions.values())
            self.echo_conditions = {}
            for group in (self.status_waiters, self.status_unique_waiters):
                for ws in group.values():
                    waiters.extend(ws)
            self.status_waiters = {}
            self.status_unique_waiters = {}
        for w in waiters:
            w.error = error
            w.set()
        return jobs

    # --- output ---------------------------------------------------------------------------

    def sendRaw(self, data: bytes) -> None:
        """Send raw bytes (one or more encoded packets) in one write."""
        with self.send_lock:
            if self.use_ssl or self.conn is None:
                self._sendall(data)
            else:
                self.conn.sendall(data)  # the plain case of _sendall, one frame less per packet

    def sendPackets(self, packets: Iterable[bytes]) -> None:
        """Send several encoded packets as one write (one syscall, one TCP segment if small)."""
        self.sendRaw(b"".join(packets))

    def _sendall(self, data: bytes) -> None:
        conn = self.conn
        if conn is None:
            raise ConnectionError("Not connected")
        if not self.use_ssl:
            conn.sendall(data)
            return
        view = memoryview(data)
        while view:
            want = None
            with self._ssl_lock:
                try:
                    n = conn.send(view)
                except ssl.SSLWantWriteError:
                    n, want = 0, "w"
                except ssl.SSLWantReadError:
                    n, want = 0, "r"
                except BlockingIOError:
                    n, want = 0, "w"
            if n:
                view = view[n:]
            elif want == "r":
                select.select([conn], [], [])
            else:
                select.select([], [conn], [])

    def sendPacket(self, packet: Packet) -> None:
        """Send a packet to the server."""
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("Sending packet to %s: %s", self, packet)
        self.sendRaw(packet.toBinary())

    def sendTask(self, task: Any, data: bytes) -> None:
        """Queue ``task`` for the next JOB_CREATED/OPTION_RES/ERROR and send ``data``.

        Both happen under ``send_lock`` so that the order of ``pending_tasks`` is the order
        of the requests on the wire (replies are matched FIFO, docs/protocol.md §1.3).
        """
        with self.send_lock:
            self.session.expect(task)
            try:
                self._sendall(data)
            except BaseException:
                self.session.unexpect(task)
                raise

    # --- input ----------------------------------------------------------------------------

    def _getAdminRequest(self) -> AdminRequest:
        return self.admin_requests.pop(0)

    def _putAdminRequest(self, req: AdminRequest) -> None:
        self.admin_requests.insert(0, req)

    def _currentAdminRequest(self) -> AdminRequest:
        """The admin request whose reply is arriving (replies come in request order)."""
        if not self.admin_requests:
            raise InvalidDataError("Received admin data with no admin request pending")
        return self.admin_requests[0]

    def _adminRequestDone(self, req: AdminRequest) -> None:
        if self.admin_requests and self.admin_requests[0] is req:
            self.admin_requests.pop(0)

    def _readRawBytes(self, bytes_to_read: int) -> bytes:
        """Block until some bytes arrive (b'' at EOF)."""
        if not self.use_ssl:
            return self.conn.recv(bytes_to_read)
        while True:
            with self._ssl_lock:
                try:
                    return self.conn.recv(bytes_to_read)
                except ssl.SSLWantReadError:
                    want = "r"
                except ssl.SSLWantWriteError:
                    want = "w"
            if want == "r":
                select.select([self.conn], [], [])
            else:
                select.select([], [self.conn], [])

    def _nextItem(self) -> Packet | AdminRequest | None:
        """Parse one complete item from the buffer without reading, or None."""
        buf = self._buf
        pos = self._pos
        n = len(buf)
        if pos >= n:
            return None
        if buf[pos] == 0:
            # A binary packet: NUL starts the magic (docs/protocol.md §1.1, "Text versus binary").
            if n - pos < HEADER_SIZE:
                return None
            magic, ptype, size = HEADER.unpack_from(buf, pos)
            if magic != REQ and magic != RES:
                raise BadMagicError(f"bad packet magic {magic!r}")
            if size > self.max_packet_size:
                raise PacketTooLargeError(f"packet body of {size} bytes is too large")
            end = pos + HEADER_SIZE + size
            if end > n:
                return None
            self._pos = end
            return received_packet(magic, ptype, buf[pos + HEADER_SIZE : end], self)
        req = self._currentAdminRequest()
        complete, remainder = req.isComplete(buf[pos:] if pos else buf)
        if not complete:
            return None
        self._pos = n - len(remainder or b"")
        self._adminRequestDone(req)
        return req

    def readPacket(self) -> Packet | AdminRequest | None:
        """Read one packet or admin response from the server.

        Blocks until one is complete (a non-blocking connection raises RetryIOError instead).
        Returns a :class:`~gear.Packet`, a completed :class:`~gear.AdminRequest`, or None when
        the server closed the connection.
        """
        while True:
            item = self._nextItem()
            if item is not None:
                self.need_bytes = False
                return item
            self.need_bytes = True
            segment = self._readRawBytes(RECV_SIZE)
            if not segment:
                return None
            self._append(segment)

    def readAvailable(self) -> bytes | None:
        """Read what one readiness event delivered (poll thread): b'' if nothing, None at EOF.

        The socket is known to be readable, so the first ``recv`` does not block; TLS records
        already decrypted are drained too, since ``poll`` cannot see them.
        """
        conn = self.conn
        if not self.use_ssl:
            data = conn.recv(RECV_SIZE)
            if not data:
                return None
            pos = self._pos  # _append inline: one call less per read
            self._buf = data if pos >= len(self._buf) else self._buf[pos:] + data
            self._pos = 0
            return data
        got = b""
        while True:
            with self._ssl_lock:
                try:
                    data = conn.recv(RECV_SIZE)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    return got
                except (OSError, ssl.SSLError) as e:
                    self._checkTlsRefusal(e)
                    raise
                pending = conn.pending()
            if not data:
                if not got:
                    self._checkTlsRefusal(None)
                return got if got else None
            self._tls_answered = True
            self._append(data)
            got += data
            if not pending:
                return got

    def _checkTlsRefusal(self, error: BaseException | None) -> None:
        """The server ended a TLS connection: if it did so right after the handshake, before
        sending anything, it refused our certificate (mutual TLS 1.3 checks it after the
        client finished): say so, and fail the waiters with that reason."""
        connect_time = getattr(self, "connect_time", None)  # a ServerConnection has none
        if connect_time is None or self._tls_answered:
            return
        if time.time() - connect_time > TLS_VERDICT_TIME:
            return
        refusal = net.tls_refusal(error, handshake_done=True)
        if refusal is not None:
            self.log.warning("Connection to %s port %s: %s", self.host, self.port, refusal)
            self._failWaiters(ConnectionError(refusal))

    # --- request/response helpers -------------------------------------------------------------

    def sendAdminRequest(self, request: AdminRequest, timeout: float | None = 90) -> None:
        """Send an administrative request and wait for its response.

        A client or worker's poll thread must be reading this connection. Raises
        TimeoutError if no reply came in time; the request then stays queued so that its late
        reply is consumed by it rather than by the next request. Raises ConnectionError if the
        connection is lost first.
        """
        with self.send_lock:
            self.admin_requests.append(request)
            try:
                self._sendall(request.getCommand())
            except BaseException:
                if request in self.admin_requests:
                    self.admin_requests.remove(request)
                raise
        complete = request.waitForResponse(timeout)
        if request.error is not None:
            raise request.error
        if not complete:
            raise TimeoutError()

    def echo(self, data: bytes | None = None, timeout: float | None = 30) -> bytes:
        """Perform an echo test (ECHO_REQ/ECHO_RES) and return the data echoed back.

        Raises TimeoutError if the server does not answer in time, InvalidDataError if an echo
        of the same data is already outstanding on this connection.
        """
        if data is None:
            data = uuid.uuid4().hex.encode("utf8")
        waiter = _Waiter()
        with self.echo_lock:
            if data in self.echo_conditions:
                raise InvalidDataError(
                    f"This client is already waiting on an echo response of: {data!r}"
                )
            self.echo_conditions[data] = waiter
        try:
            self.sendEchoReq(data)
            if not waiter.wait(timeout):
                raise TimeoutError()
        finally:
            with self.echo_lock:
                if self.echo_conditions.get(data) is waiter:
                    del self.echo_conditions[data]
        if waiter.error is not None:
            raise waiter.error
        return data

    def sendEchoReq(self, data: bytes) -> None:
        self.sendRaw(request(constants.ECHO_REQ, data))

    def handleEchoRes(self, data: bytes) -> bool:
        """Wake the echo() waiting for ``data``; False if nobody is waiting for it."""
        with self.echo_lock:
            waiter = self.echo_conditions.pop(data, None)
        if waiter is None:
            return False
        waiter.set()
        return True

    def handleOptionRes(self, option: bytes) -> None:
        self.options.add(option)

    def addStatusWaiter(self, key: bytes, job: Any = None, unique: bool = False) -> _Waiter:
        """Register interest in the next STATUS_RES (or STATUS_RES_UNIQUE) for ``key``."""
        waiter = _Waiter(job)
        with self.echo_lock:
            group = self.status_unique_waiters if unique else self.status_waiters
            group.setdefault(key, []).append(waiter)
        return waiter

    def removeStatusWaiter(self, key: bytes, waiter: _Waiter, unique: bool = False) -> None:
        with self.echo_lock:
            group = self.status_unique_waiters if unique else self.status_waiters
            waiters = group.get(key)
            if waiters and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del group[key]

    def popStatusWaiters(self, key: bytes, unique: bool = False) -> list[_Waiter]:
        with self.echo_lock:
            group = self.status_unique_waiters if unique else self.status_waiters
            return group.pop(key, [])


class NonBlockingConnection(Connection):
    """A connection whose reads raise RetryIOError instead of blocking, and whose writes are
    queued and flushed as the socket accepts them (``sendQueuedData``)."""

    def _init(self) -> None:
        super()._init()
        # Set on construction and after every disconnect: the rest of a packet queued for
        # the old socket must not start the new connection's stream.
        self.send_queue: list[bytes] = []

    def connect(self) -> None:
        super().connect()
        self.conn.setblocking(0)

    def _readRawBytes(self, bytes_to_read: int) -> bytes:
        try:
            return self.conn.recv(bytes_to_read)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise RetryIOError()
        except OSError as e:
            # gear's test double raises a plain OSError carrying errno EAGAIN, so the errno
            # is checked rather than relying on BlockingIOError (docs/gear-compat.md §3.12).
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise RetryIOError()
            raise

    def sendPacket(self, packet: Packet) -> None:
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("Queuing packet to %s: %s", self, packet)
        self.sendRaw(packet.toBinary())

    def sendRaw(self, data: bytes) -> None:
        self.send_queue.append(bytes(data))
        self.sendQueuedData()

    def sendQueuedData(self) -> None:
        """Write queued data until the socket would block; the rest stays queued."""
        queue = self.send_queue
        while queue:
            data = queue[0]
            try:
                sent = self.conn.send(data)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return
                raise
            if sent < len(data):
                queue[0] = data[sent:]
                return
            queue.pop(0)


class ServerConnection(NonBlockingConnection):
    """A server's connection to one client or worker (non-blocking).

    :arg addr: the peer address (``host, port``).
    :arg conn: the accepted socket.
    :arg bool use_ssl: whether ``conn`` is a TLS socket (its client certificate's CN becomes
        ``ssl_subject``).
    :arg client_id: the server's id (logging only); the peer's id arrives by SET_CLIENT_ID.
    """

    def __init__(self, addr: Any, conn: Any, use_ssl: bool, client_id: Any) -> None:
        # gear does not call Connection.__init__ here: a server connection has no pending
        # tasks, options or TLS settings of its own.
        if client_id:
            self.log = logging.getLogger(f"gear.ServerConnection.{id_text(client_id)}")
        else:
            self.log = logging.getLogger("gear.ServerConnection")
        self.send_queue = []
        self.admin_requests = []
        self.host = addr[0]
        self.port = addr[1]
        self.conn = conn
        self.conn.setblocking(0)
        net.set_nodelay(conn)
        self._buf = b""
        self._pos = 0
        self.need_bytes = False
        self.max_packet_size = DEFAULT_MAX_PACKET_SIZE
        self.use_ssl = use_ssl
        self.client_id: bytes | None = None
        self.functions: set[bytes] = set()
        self.related_jobs = {}
        self.ssl_subject: str | None = None
        if use_ssl:
            for attribute in conn.getpeercert()["subject"]:
                for key, value in attribute:
                    if key == "commonName":
                        self.ssl_subject = value
        self.changeState("INIT")

    def _getAdminRequest(self) -> AdminRequest:
        return ServerAdminRequest(self)

    def _putAdminRequest(self, req: AdminRequest) -> None:
        pass

    def _currentAdminRequest(self) -> AdminRequest:
        # Each command line is parsed afresh from the buffer; nothing is queued.
        return ServerAdminRequest(self)

    def _adminRequestDone(self, req: AdminRequest) -> None:
        pass

    def hasPendingData(self) -> bool:
        return self._pos < len(self._buf)

    def __repr__(self) -> str:
        return (
            f"<gear.ServerConnection 0x{id(self):x} name: {self.client_id!r} "
            f"host: {self.host} port: {self.port}>"
        )
