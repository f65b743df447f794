"""asyncio transport for one Gearman server: a packet protocol, socket setup, reconnects.

Owns: :class:`Endpoint` (where and how to connect: TLS, TCP keepalive), :class:`ServerOptions`
(the keyword options every ``add_server``/``Admin`` takes, declared once),
:func:`new_endpoint` (builds an Endpoint from them, refusing duplicates), :class:`AsyncContext`
(the ``async with`` protocol of Client, Worker and Admin), :class:`PacketProtocol`
(an :class:`asyncio.BufferedProtocol` that feeds received bytes to the sans-I/O
:class:`~gear.protocol.packets.Decoder` and batches outgoing packets into one write per loop
iteration), and :class:`Link` (keeps one server connection open, reconnecting with the
jittered back-off of :mod:`gear.protocol.backoff`, and tells its :class:`LinkHandler` about
every connect, event and loss; :meth:`Link.for_owner` applies a Client's or Worker's
:class:`ReconnectSettings`).

It knows nothing about clients, workers or jobs: those live in ``gear.aio.client``/``worker``/
``admin``. TLS contexts and TCP options come from :mod:`gear.net`. Must not import the
threaded API (``gear.threaded``) or the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, TypedDict, cast

from gear import net
from gear.errors import ConfigurationError, ConnectionError, ProtocolError
from gear.protocol.backoff import RECONNECT_MAX, RECONNECT_MIN, Backoff
from gear.protocol.packets import AdminLine, Decoder, Frame

if TYPE_CHECKING:  # typing.Self and typing.Unpack (PEP 692 **kwargs) need Python 3.11
    from typing_extensions import Self, Unpack

log = logging.getLogger("gear.aio")

Event = Frame | AdminLine

#: Seconds :meth:`Link.close` waits for an orderly close before aborting the connection.
CLOSE_TIMEOUT = 2.0
#: A TLS connection the server ends this soon after the handshake, having sent nothing, was
#: refused (mutual TLS, TLS 1.3: the server checks our certificate after we finished).
TLS_VERDICT_TIME = 2.0


#: gear's mutual-TLS client context (public as ``gear.aio.make_ssl_context``).
make_ssl_context = net.client_tls_context


@dataclass(frozen=True)
class Endpoint:
    """A server address plus the socket options used for every (re)connect to it."""

    host: str
    port: int = 4730
    ssl_context: ssl.SSLContext | None = None
    keepalive: bool = False
    tcp_keepidle: int = 7200
    tcp_keepintvl: int = 75
    tcp_keepcnt: int = 9

    @classmethod
    def build(
        cls,
        host: str,
        port: int = 4730,
        *,
        ssl_key: str | None = None,
        ssl_cert: str | None = None,
        ssl_ca: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        keepalive: bool = False,
        tcp_keepidle: int = 7200,
        tcp_keepintvl: int = 75,
        tcp_keepcnt: int = 9,
    ) -> Endpoint:
        """Validate the threaded API's server options and turn the TLS files into a context."""
        files = (ssl_key, ssl_cert, ssl_ca)
        if ssl_context is not None and any(files):
            raise ConfigurationError("give either ssl_context or ssl_key/ssl_cert/ssl_ca, not both")
        if any(files) and not all(files):
            # gear silently used plain TCP unless all three were given; a half-configured TLS
            # setup is almost always a mistake, so refuse it.
            raise ConfigurationError("mutual TLS needs all of ssl_key, ssl_cert and ssl_ca")
        context = make_ssl_context(ssl_key, ssl_cert, ssl_ca) if all(files) else ssl_context
        return cls(host, int(port), context, keepalive, tcp_keepidle, tcp_keepintvl, tcp_keepcnt)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def tcp_options(self) -> list[net.SocketOption]:
        """TCP_NODELAY, plus keepalive when asked (:func:`gear.net.tcp_options`)."""
        return net.tcp_options(
            self.keepalive, self.tcp_keepidle, self.tcp_keepintvl, self.tcp_keepcnt
        )


class ServerOptions(TypedDict, total=False):
    """The keyword options of :meth:`Endpoint.build`, as ``add_server`` and ``Admin`` take them.

    ``ssl_key``/``ssl_cert``/``ssl_ca``: files for gear's mutual TLS (all three or none);
    ``ssl_context``: a ready client context instead; ``keepalive`` with ``tcp_keepidle``,
    ``tcp_keepintvl`` (seconds) and ``tcp_keepcnt``: TCP keepalive tuning.
    """

    ssl_key: str | None
    ssl_cert: str | None
    ssl_ca: str | None
    ssl_context: ssl.SSLContext | None
    keepalive: bool
    tcp_keepidle: int
    tcp_keepintvl: int
    tcp_keepcnt: int


def new_endpoint(
    taken: Iterable[Endpoint], host: str, port: int = 4730, **options: Unpack[ServerOptions]
) -> Endpoint:
    """:meth:`Endpoint.build`, refusing a host and port that are already in ``taken``."""
    endpoint = Endpoint.build(host, port, **options)
    if any(e.host == endpoint.host and e.port == endpoint.port for e in taken):
        raise ConfigurationError(f"server {endpoint} is already added")
    return endpoint


class AsyncContext:
    """``async with obj:`` for the front-ends: entry runs :meth:`_enter` and gives ``obj``;
    exit awaits :meth:`_exit`, told whether the block ended without an exception."""

    def _enter(self) -> None:
        """Hook run on entry (nothing by default)."""

    async def _exit(self, clean: bool) -> None:
        """Hook run on exit: close or stop the object."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._enter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._exit(exc is None)


def describe(exc: BaseException | None) -> str:
    """A readable reason: some socket/TLS errors have an empty ``str()``."""
    if exc is None:
        return "closed by the peer"
    return str(exc) or type(exc).__name__


#: Bytes of the receive buffer each connection allocates once and reads into.
RECV_BUFFER_SIZE = 64 * 1024


class PacketProtocol(asyncio.BufferedProtocol):
    """One connection: bytes in through the Decoder to ``on_event``; packets out, batched.

    Reads go into one buffer allocated per connection (:class:`asyncio.BufferedProtocol`):
    a plain Protocol gets a fresh 256 KiB ``bytes`` per read from the selector transport, which
    glibc serves with mmap/mremap/munmap, i.e. three extra syscalls (and page faults) for every
    small packet received; that was most of a window-1 round trip's system time.

    The first ``send`` of a loop iteration writes at once; later ones in the same iteration (and
    everything sent while handling one received chunk, or while corked) are batched into one
    ``transport.write``, so a burst of submissions or a WORK_COMPLETE followed by GRAB_JOB costs
    one or two syscalls, not one per packet.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        on_event: Callable[[Event], None],
        *,
        text: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.on_event = on_event
        self.decoder = Decoder(text=text)
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._recv_buffer = bytearray(RECV_BUFFER_SIZE)
        self._recv_view = memoryview(self._recv_buffer)
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._corked = 0
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.closed: asyncio.Future[BaseException | None] = self._loop.create_future()
        #: Whether any byte came from the server, and when the connection was made.
        self.received = False
        self.made_at = 0.0

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.made_at = self._loop.time()
        net.apply_tcp_options(transport.get_extra_info("socket"), self.endpoint.tcp_options)

    def get_buffer(self, sizehint: int) -> memoryview:
        # The hint may be ignored (asyncio.BufferedProtocol); the selector transport passes -1.
        return self._recv_view

    def buffer_updated(self, nbytes: int) -> None:
        # One small copy: Decoder.feed takes bytes (it would accept any buffer; it only
        # appends it to its own bytearray), and the read buffer is reused right after.
        self.data_received(bytes(self._recv_view[:nbytes]))

    def data_received(self, data: bytes) -> None:
        # Replies produced while handling this chunk (GRAB after NOOP, PRE_SLEEP after NO_JOB,
        # ...) are written in one go at the end instead of one loop iteration later.
        self.received = True
        self._corked += 1
        try:
            for event in self.decoder.feed(data):
                self.on_event(event)
        except ProtocolError as exc:
            log.warning("closing connection to %s: %s", self.endpoint, exc)
            self.abort(exc)
        finally:
            self.uncork()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._out.clear()
        self._wake_drainers()
        if not self.closed.done():
            self.closed.set_result(exc)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drainers()

    # -- sending -----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send(self, packet: bytes) -> bool:
        """Queue ``packet``; False when the connection is already gone (nothing is sent)."""
        transport = self.transport
        if transport is None:
            return False
        if self._corked or self._flush_scheduled:
            self._out.append(packet)
        else:
            # The first packet of this loop iteration goes out at once (no added latency);
            # whatever else is sent before the next iteration is batched into one write.
            transport.write(packet)
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return True

    def defer_flush(self) -> None:
        """Write what is queued one loop iteration later instead of at the end of this chunk.

        A worker calls this when a chunk started handlers: a fast handler's WORK_COMPLETE then
        leaves in the same write as the GRAB queued for the next job.
        """
        if self._out and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def cork(self) -> None:
        """Hold sends until :meth:`uncork`, then write them at once (no loop iteration wait)."""
        self._corked += 1

    def uncork(self) -> None:
        self._corked -= 1
        if not self._corked and self._out and not self._flush_scheduled:
            self._flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.transport is None or not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self.transport.write(data)

    @property
    def write_paused(self) -> bool:
        """True while the transport's buffer is above its high-water mark."""
        return self._paused and self.transport is not None

    def drained(self) -> asyncio.Future[None]:
        """A future done once the transport accepts more data (flow control for big streams)."""
        fut: asyncio.Future[None] = self._loop.create_future()
        if self._paused and self.transport is not None:
            self._drain_waiters.append(fut)
        else:
            fut.set_result(None)
        return fut

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def close(self) -> None:
        """Send what is queued, then close."""
        if self.transport is not None:
            self._flush()
            self.transport.close()

    def abort(self, exc: BaseException | None = None) -> None:
        if exc is not None and not self.closed.done():
            self.closed.set_result(exc)
        if self.transport is not None:
            self.transport.abort()


class ReconnectSettings(Protocol):
    """The connect and reconnect settings a Client or Worker applies to each of its Links."""

    connect_timeout: float
    reconnect_min: float
    reconnect_max: float


class LinkHandler(Protocol):
    """What a :class:`Link` reports to its owner (client, worker or admin connection state)."""

    def link_up(self, link: Link) -> None:
        """A new connection is open; send the per-connection set-up packets now."""

    def link_event(self, link: Link, event: Event) -> None:
        """A packet or admin line arrived."""

    def link_down(self, link: Link, error: ConnectionError) -> None:
        """The connection is gone; fail whatever was in flight on it."""


class Link:
    """Keeps one connection to ``endpoint`` open until :meth:`close`.

    Reconnects after a failed attempt or a lost connection with the one reconnect policy,
    :class:`gear.protocol.backoff.Backoff` (``backoff_min`` doubling up to ``backoff_max``,
    jittered). A successful connection resets the backoff.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        handler: LinkHandler,
        *,
        text: bool = False,
        connect_timeout: float = 10.0,
        backoff_min: float = RECONNECT_MIN,
        backoff_max: float = RECONNECT_MAX,
        reconnect: bool = True,
    ) -> None:
        self.endpoint = endpoint
        self.handler = handler
        self.text = text
        self.connect_timeout = connect_timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.reconnect = reconnect
        self.protocol: PacketProtocol | None = None
        self.last_error: BaseException | None = None  # why the last attempt or connection ended
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._up = asyncio.Event()

    @classmethod
    def for_owner(cls, endpoint: Endpoint, handler: LinkHandler, owner: ReconnectSettings) -> Link:
        """A binary-protocol Link using the connect timeout and backoff of ``owner``."""
        return cls(
            endpoint,
            handler,
            connect_timeout=owner.connect_timeout,
            backoff_min=owner.reconnect_min,
            backoff_max=owner.reconnect_max,
        )

    def __repr__(self) -> str:
        state = "up" if self.connected else "down"
        return f"<Link {self.endpoint} {state}>"

    @property
    def connected(self) -> bool:
        return self.protocol is not None and self.protocol.is_open

    def send(self, packet: bytes) -> bool:
        protocol = self.protocol
        return protocol is not None and protocol.send(packet)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"gear.aio link {self.endpoint}"
            )

    async def wait_up(self) -> None:
        await self._up.wait()

    async def _connect(self) -> PacketProtocol:
        loop = asyncio.get_running_loop()
        endpoint = self.endpoint

        on_event = functools.partial(self.handler.link_event, self)

        def factory() -> PacketProtocol:
            return PacketProtocol(endpoint, on_event, text=self.text)

        _, protocol = await asyncio.wait_for(
            loop.create_connection(
                factory,
                endpoint.host,
                endpoint.port,
                ssl=endpoint.ssl_context,
                server_hostname=endpoint.host if endpoint.ssl_context else None,
            ),
            self.connect_timeout,
        )
        return protocol

    async def _run(self) -> None:
        backoff = Backoff(self.backoff_min, self.backoff_max)
        while not self._closing:
            try:
                protocol = await self._connect()
            except Exception as exc:  # OSError, TimeoutError, SSLError, ...: retry all of them
                refusal = self._tls_refusal(exc, None)
                if refusal is not None:
                    self.last_error = refusal
                    log.warning("cannot connect to %s: %s", self.endpoint, refusal)
                else:
                    self.last_error = exc
                    log.debug("cannot connect to %s: %s", self.endpoint, describe(exc))
            else:
                backoff.reset()
                self.protocol = protocol
                self.last_error = None
                log.debug("connected to %s", self.endpoint)
                self._up.set()
                try:
                    self.handler.link_up(self)
                    reason = await protocol.closed
                finally:
                    self._up.clear()
                    self.protocol = None
                    protocol.close()
                refusal = None if self._closing else self._tls_refusal(reason, protocol)
                if refusal is not None:
                    reason = refusal
                self.last_error = reason
                detail = describe(reason)
                error = ConnectionError(f"connection to {self.endpoint} lost: {detail}")
                if not self._closing:
                    log.log(logging.INFO if refusal is None else logging.WARNING,
                            "connection to %s lost: %s", self.endpoint, detail)
                self.handler.link_down(self, error)
            if self._closing or not self.reconnect:
                break
            await asyncio.sleep(backoff.next_delay())

    def _tls_refusal(
        self, exc: BaseException | None, protocol: PacketProtocol | None
    ) -> ConnectionError | None:
        """A ConnectionError naming the certificate problem, if a mutual-TLS server refused us
        (during the connect, or with ``protocol`` right after it); else None."""
        if self.endpoint.ssl_context is None:
            return None
        if protocol is None:
            reason = net.tls_refusal(exc, handshake_done=False)
        elif protocol.received or protocol._loop.time() - protocol.made_at > TLS_VERDICT_TIME:
            return None
        else:
            reason = net.tls_refusal(exc, handshake_done=True)
        return None if reason is None else ConnectionError(reason)

    async def close(self) -> None:
        """Close the connection and stop reconnecting; waits until the link task has ended."""
        self._closing = True
        task = self._task
        protocol = self.protocol
        if protocol is not None:
            protocol.close()
        if task is None:
            return
        if protocol is None:  # connecting or sleeping between attempts
            task.cancel()
        try:
            # A TLS close waits for the peer's close_notify; do not let a silent peer hold us.
            await asyncio.wait_for(asyncio.shield(task), CLOSE_TIMEOUT)
        except asyncio.TimeoutError:
            if protocol is not None:
                protocol.abort()
            task.cancel()  # whatever it waits for, it must end now
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except asyncio.CancelledError:
            if not task.done():
                raise
