"""The synchronous HarpCaller client: ``HarpCaller``, ``RemoteServer``, ``RemoteProcedure``,
``RemoteCall``, ``JSONConnection`` and ``JSONSSLConnection`` (docs/harp.md, "Python client").

A Python 3 port of the API of HarpCaller's ``harp`` module, same names and behaviour, talking to
geard's harp port (or harpcallerd). Like that client, every request opens a connection of its
own, sends one line and reads the reply (a follow or a stream reads until its end line); geard
would serve more requests on one connection, but one-shot connections are what HarpCaller
clients do and what the dispatcher's tests measure.

Differences from HarpCaller's client, on purpose (its bugs are not the API):

* ``StreamIterator`` has ``__next__`` (the original only had Python 2's ``next``);
* a ``no_result`` or ``continue`` reply is never remembered: ``get()`` after
  ``result(wait=False)`` asks again and returns the value; only an end is cached, and the
  status (times) is cached only once the call has ended;
* ``RemoteServer`` takes ``info=`` (the protocol has it; the original client forgot it);
* every socket has TCP_NODELAY (one small line each way: Nagle would add delayed-ACK stalls);
* TLS: ``JSONSSLConnection`` verifies against ``ca_file`` when given (no host name check, as
  the original; no verification without one), and can present a client certificate.

Requests, replies and the reply -> exception mapping are :mod:`gear.harp.messages` (shared with
:mod:`gear.aio.harp`). Imports only that, and :mod:`gear.net` for TLS and TCP options.
"""

from __future__ import annotations

import socket
import ssl
import struct
from types import TracebackType
from typing import Any

from gear.harp import messages as m
from gear.harp.messages import (
    CALL_CANCELLED,
    CALL_NOT_FINISHED,
    CallStatus,
    CancelledException,
    CommunicationError,
    HarpException,
    RemoteError,
    RemoteException,
)
from gear.net import client_tls_context, set_nodelay, tls_context

__all__ = [
    "CALL_CANCELLED",
    "CALL_NOT_FINISHED",
    "CancelledException",
    "CommunicationError",
    "HarpCaller",
    "HarpException",
    "JSONConnection",
    "JSONSSLConnection",
    "RemoteCall",
    "RemoteError",
    "RemoteException",
    "RemoteProcedure",
    "RemoteServer",
]

#: HarpCaller's dispatcher port.
DEFAULT_PORT = 3502


class JSONConnection:
    """A TCP connection reading and writing JSON lines; a context manager::

        with JSONConnection(host, port) as conn:
            conn.send({"key": "value"})
            reply = conn.receive()

    ``timeout`` (seconds, None: block) bounds connecting and each read.
    """

    #: The timeout is the kernel's (SO_RCVTIMEO/SO_SNDTIMEO on a blocking socket) rather than
    #: Python's, which polls before every connect, send and receive (a system call each).
    #: TLS keeps Python's: the ssl module needs it to tell a timeout from a renegotiation.
    _kernel_timeouts = True

    def __init__(self, host: str, port: int, timeout: float | None = None) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = b""
        self.connect()

    def _wrap(self, sock: socket.socket) -> socket.socket:
        return sock

    def connect(self) -> None:
        """Connect to the address given (a new connection is already connected)."""
        self.close()
        try:
            sock = _connect(self.host, self.port, self.timeout, self._kernel_timeouts)
        except OSError as exc:
            raise CommunicationError(
                f"can't connect to {self.host}:{self.port}: {_reason(exc)}") from exc
        try:
            set_nodelay(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock = self._wrap(sock)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise CommunicationError(f"can't connect to {self.host}:{self.port}: {exc}") from exc
        self._sock = sock
        self._buffer = b""

    def __enter__(self) -> JSONConnection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; :meth:`connect` opens it again."""
        sock = getattr(self, "_sock", None)
        self._sock = None
        if sock is not None:
            sock.close()

    def send(self, obj: Any) -> None:
        """Send ``obj`` as one JSON line."""
        if self._sock is None:
            raise CommunicationError("socket not connected")
        try:
            self._sock.sendall(m.encode(obj))
        except OSError as exc:
            raise CommunicationError(
                f"can't send to {self.host}:{self.port}: {_reason(exc)}") from exc

    def receive(self) -> Any:
        """The next JSON line, deserialized; None at EOF."""
        sock = self._sock
        if sock is None:
            raise CommunicationError("socket not connected")
        buffer = self._buffer
        end = buffer.find(b"\n")
        try:
            while end < 0:
                chunk = sock.recv(65536)
                if not chunk:
                    self._buffer = b""
                    if buffer:
                        raise CommunicationError("unexpected EOF in the middle of a line")
                    return None
                end = chunk.find(b"\n")
                if end >= 0:
                    end += len(buffer)
                buffer += chunk
        except OSError as exc:
            raise CommunicationError(
                f"can't read from {self.host}:{self.port}: {_reason(exc)}") from exc
        self._buffer = buffer[end + 1:]
        return m.decode(buffer[:end + 1])


#: Addresses of numeric hosts, resolved once: a name lookup per connection costs more than
#: the connection (a name that is not numeric is looked up every time, as DNS may change).
_NUMERIC: dict[tuple[str, int], tuple[Any, ...]] = {}


def _connect(host: str, port: int, timeout: float | None,
             kernel_timeouts: bool = False) -> socket.socket:
    """A connected TCP socket (socket.create_connection, minus the lookup for numeric hosts).

    ``kernel_timeouts``: a positive ``timeout`` is set as SO_SNDTIMEO (connect and send) and
    SO_RCVTIMEO on a blocking socket, so that no poll() precedes each call."""
    key = (host, port)
    info = _NUMERIC.get(key)
    if info is None:
        try:
            info = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0,
                                      socket.AI_NUMERICHOST)[0]
        except socket.gaierror:
            return socket.create_connection((host, port), timeout=timeout)
        _NUMERIC[key] = info
    family, kind, proto, _name, address = info
    sock = socket.socket(family, kind, proto)
    try:
        if kernel_timeouts and timeout is not None and timeout > 0:
            seconds = int(timeout)
            tv = _TIMEVAL.pack(seconds, int((timeout - seconds) * 1e6))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        else:
            sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


#: struct timeval (seconds, microseconds), as SO_RCVTIMEO/SO_SNDTIMEO take it.
_TIMEVAL = struct.Struct("@ll")


def _reason(exc: OSError) -> str:
    """What went wrong, in words: a kernel timeout (EAGAIN, or EINPROGRESS from connect) says
    "timed out", as Python's timeout does."""
    if isinstance(exc, (BlockingIOError, TimeoutError)):
        return "timed out"
    return str(exc)


class JSONSSLConnection(JSONConnection):
    """A TLS connection reading and writing JSON lines (a context manager too).

    ``ca_file``: the server's certificate must chain to it (its host name is not checked);
    None: no verification, as HarpCaller's client. ``ssl_key``/``ssl_cert``: a client
    certificate, for a server that wants mutual TLS.
    """

    def __init__(self, host: str, port: int, ca_file: str | None = None, *,
                 ssl_key: str | None = None, ssl_cert: str | None = None,
                 timeout: float | None = None, context: ssl.SSLContext | None = None) -> None:
        self.ca_file = ca_file
        self.ssl_key = ssl_key
        self.ssl_cert = ssl_cert
        #: A context made once (:func:`tls_client_context`) for many connections; None: one
        #: is made from the three above for this connection.
        self.context = context
        super().__init__(host, port, timeout)

    _kernel_timeouts = False

    def _wrap(self, sock: socket.socket) -> socket.socket:
        context = self.context or tls_client_context(self.ca_file, self.ssl_key, self.ssl_cert)
        return context.wrap_socket(sock, server_hostname=self.host)


def tls_client_context(ca_file: str | None = None, ssl_key: str | None = None,
                       ssl_cert: str | None = None) -> ssl.SSLContext:
    """The client context of :class:`JSONSSLConnection`: the server verified against
    ``ca_file`` (its host name not checked), or not at all without one; a client certificate
    when ``ssl_cert`` is given."""
    if ca_file is not None:
        return client_tls_context(ssl_key, ssl_cert, ca_file)
    context = tls_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if ssl_cert:
        context.load_cert_chain(ssl_cert, ssl_key)
    return context


class HarpCaller:
    """The dispatcher: ``HarpCaller(host, port=3502)``.

    Keyword options beyond HarpCaller's: ``ssl=True`` (or any of ``ca_file``, ``ssl_key``,
    ``ssl_cert``) connects with TLS; ``timeout`` bounds connecting and each read (None: block,
    as the original; a waiting ``get()`` or ``follow()`` may take as long as the call).
    """

    def __init__(self, host: str, port: int = DEFAULT_PORT, *, ssl: bool = False,
                 ca_file: str | None = None, ssl_key: str | None = None,
                 ssl_cert: str | None = None, timeout: float | None = None) -> None:
        self._host = host
        self._port = port
        self._ssl = ssl or bool(ca_file or ssl_key or ssl_cert)
        self._ca_file = ca_file
        self._ssl_key = ssl_key
        self._ssl_cert = ssl_cert
        self._timeout = timeout

    def job(self, job_id: str) -> RemoteCall:
        """The call of ``job_id`` (submitted by anyone, any time)."""
        return RemoteCall(self, job_id)

    def connect(self) -> JSONConnection:
        """A new connection to the dispatcher."""
        if self._ssl:
            return JSONSSLConnection(self._host, self._port, self._ca_file,
                                     ssl_key=self._ssl_key, ssl_cert=self._ssl_cert,
                                     timeout=self._timeout)
        return JSONConnection(self._host, self._port, self._timeout)

    def request(self, req: dict[str, Any]) -> Any:
        """Send one request on a new connection and return the reply."""
        with self.connect() as conn:
            conn.send(req)
            reply = conn.receive()
        if reply is None:
            raise CommunicationError("unexpected EOF")
        return reply

    def __getattr__(self, host: str) -> RemoteServer:
        """``rpc.web01`` is ``rpc.host("web01")``, with no job options."""
        if host.startswith("__"):
            raise AttributeError(host)
        return self.host(host)

    def __call__(self, host: str, **options: Any) -> RemoteServer:
        """``rpc("web01")`` is ``rpc.host("web01")`` (for names that are not identifiers)."""
        return self.host(host, **options)

    def host(self, host: str, **options: Any) -> RemoteServer:
        """The server ``host`` with job options (see :meth:`RemoteServer.__call__`)."""
        return RemoteServer(self, host)(**options)

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__} {self._host}:{self._port}>"


class RemoteServer:
    """A target server, with the job options its calls get (set with :meth:`__call__`)."""

    _OPTIONS = ("queue", "concurrency", "timeout", "max_exec_time", "info")

    def __init__(self, dispatcher: HarpCaller, hostname: str) -> None:
        self._dispatcher = dispatcher
        self._hostname = hostname
        self._options: dict[str, Any] = {}

    def __call__(self, **options: Any) -> RemoteServer:
        """Set job options: ``queue`` (a dict naming the queue), ``concurrency`` (calls of the
        queue running at once), ``timeout`` (seconds allowed between messages),
        ``max_exec_time`` (seconds the call may run), ``info`` (any JSON, kept with the call).
        Returns ``self``."""
        unknown = set(options) - set(self._OPTIONS)
        if unknown:
            raise TypeError(f"unknown job options: {sorted(unknown)}")
        self._options.update(options)
        return self

    def _call_options(self) -> dict[str, Any]:
        return dict(self._options)

    def __getattr__(self, procedure: str) -> RemoteProcedure:
        """``host.name(...)`` calls the procedure ``name`` on this server."""
        if procedure.startswith("__"):
            raise AttributeError(procedure)
        return RemoteProcedure(self._dispatcher, self, procedure)

    def __str__(self) -> str:
        return self._hostname

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__} {self._hostname}>"


class RemoteProcedure:
    """A procedure on a server; calling it submits a call and returns its :class:`RemoteCall`."""

    def __init__(self, dispatcher: HarpCaller, server: RemoteServer, procedure: str) -> None:
        self._dispatcher = dispatcher
        self._server = server
        self._procedure = procedure

    def procedure(self) -> str:
        return self._procedure

    def host(self) -> str:
        return str(self._server)

    def __call__(self, *args: Any, **kwargs: Any) -> RemoteCall:
        """Submit a call with positional or keyword arguments (not both)."""
        if args and kwargs:
            raise HarpException("mixed keyword and positional arguments")
        req = m.call_request(self.host(), self._procedure, kwargs if kwargs else args,
                             **self._server._call_options())
        return RemoteCall(self._dispatcher, m.job_id_of(self._dispatcher.request(req)))

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__} {self.host()}:{self._procedure}()>"


class RemoteCall:
    """A submitted call: its result, its stream, its status, and cancel."""

    class StreamIterator:
        """The messages of a call's stream (pairs ``(packet, message)`` with ``numbered``)."""

        def __init__(self, remote_call: RemoteCall, conn: JSONConnection,
                     numbered: bool = False) -> None:
            self.remote_call = remote_call
            self.conn = conn
            self.numbered = numbered
            self._done = False

        def __iter__(self) -> RemoteCall.StreamIterator:
            return self

        def __next__(self) -> Any:
            if self._done:
                raise StopIteration
            reply = self.conn.receive()
            packet = m.stream_packet(reply)
            if packet is None:
                self._done = True
                self.conn.close()
                if reply is None:
                    raise CommunicationError("unexpected EOF in a stream")
                self.remote_call._remember(m.outcome(reply))
                raise StopIteration
            return packet if self.numbered else packet[1]

        next = __next__  # HarpCaller's Python 2 name

        def all(self) -> list[Any]:
            """Every message this iterator would yield, as a list."""
            return list(self)

        def close(self) -> None:
            self._done = True
            self.conn.close()

    def __init__(self, dispatcher: HarpCaller, job_id: str) -> None:
        self.dispatcher = dispatcher
        self.job_id = job_id
        self._result: Any = CALL_NOT_FINISHED
        self._status: CallStatus | None = None

    def id(self) -> str:
        """The call's id: :meth:`HarpCaller.job` finds it again, from any process."""
        return self.job_id

    def _stream(self, req: dict[str, Any], numbered: bool) -> RemoteCall.StreamIterator:
        conn = self.dispatcher.connect()
        try:
            conn.send(req)
        except BaseException:
            conn.close()
            raise
        return RemoteCall.StreamIterator(self, conn, numbered)

    def follow(self, since: int | None = None, recent: int | None = None,
               numbered: bool = False) -> RemoteCall.StreamIterator:
        """The stream, stored messages then live ones, until the call ends (neither ``since``
        nor ``recent``: from now, as ``recent=0``)."""
        return self._stream(m.follow_request(self.job_id, since, recent), numbered)

    def stream(self, since: int | None = None, recent: int | None = None,
               numbered: bool = False) -> RemoteCall.StreamIterator:
        """The messages stored so far, without waiting (neither given: ``since=0``)."""
        return self._stream(m.read_stream_request(self.job_id, since, recent), numbered)

    def _remember(self, value: Any) -> Any:
        if m.is_final(value):
            self._result = value
        return value

    def result(self, wait: bool = False) -> Any:
        """The call's outcome however it ended: its value, :data:`CALL_NOT_FINISHED`,
        :data:`CALL_CANCELLED`, or a RemoteException / RemoteError / CommunicationError
        *instance* (returned, not raised)."""
        if self._result is not CALL_NOT_FINISHED:
            return self._result
        try:
            reply = self.dispatcher.request(m.result_request(self.job_id, wait))
        except CommunicationError as exc:
            return exc
        return self._remember(m.outcome(reply))

    def get(self, wait: bool = True) -> Any:
        """The call's value (or :data:`CALL_NOT_FINISHED` with ``wait=False``); raises
        RemoteException, RemoteError, CancelledException or CommunicationError."""
        return m.unwrap(self.result(wait=wait))

    def cancel(self) -> bool:
        """Cancel the call: True if it was queued or running and is now stopped."""
        return m.cancelled_of(self.dispatcher.request(m.cancel_request(self.job_id)))

    def status(self) -> CallStatus:
        """The call's record (procedure, arguments, host, times, info); kept once it ended."""
        if self._status is not None:
            return self._status
        status = m.status_of(self.dispatcher.request(m.status_request(self.job_id)))
        if status.end is not None:
            self._status = status
        return status

    def procedure(self) -> str:
        return self.status().procedure

    def args(self) -> Any:
        return self.status().arguments

    def host(self) -> str:
        return self.status().host

    def info(self) -> Any:
        return self.status().info

    def submit_time(self) -> int | None:
        """Unix seconds (integer) when the call was submitted."""
        return self.status().submit

    def start_time(self) -> int | None:
        """Unix seconds when a worker took the call; None while it is queued (or if it ended
        before it started)."""
        return self.status().start

    def end_time(self) -> int | None:
        """Unix seconds when the call ended (any way); None while it has not."""
        return self.status().end

    def __repr__(self) -> str:
        return f'<{type(self).__module__}.{type(self).__name__} "{self.job_id}">'
