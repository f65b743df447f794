"""The job server's network layer: sockets, TLS, timers, storage wiring and shutdown.

Owns everything between the operating system and the sans-I/O :class:`~gear.server.broker.Broker`
(the interface is documented in broker.py's module docstring):

* one asyncio event loop (uvloop when installed, unless asked not to), one
  :class:`asyncio.Protocol` per connection whose ``data_received`` calls ``broker.feed``
  directly: no per-packet task, queue or thread;
* after the calls into the broker of one loop pass (data, disconnect, timer, storage batch),
  every dirty peer gets exactly ONE ``transport.write`` with all its pending bytes (batching
  across peers: a client whose jobs four workers completed in one pass gets one write), and the
  broker's earliest timer is (re)armed with ``loop.call_at``. Two exceptions, both for latency:
  a worker's own reply (JOB_ASSIGN, NO_JOB) is written as soon as its read is handled, since
  the worker sends nothing else until it has it (see ``data_received``); and a large read from
  the only connection sending is fed in pieces, each piece's replies written at once, so a
  pipelining client keeps the server busy (see ``_Connection._feed_pieces``);
* TCP_NODELAY and SO_KEEPALIVE on every accepted socket, plus the keepalive tunables when asked
  (gearmand only applied them to the listening socket before 2.0, reference 3.17 / #386);
* IPv4 and IPv6: "all addresses" binds ``0.0.0.0`` and ``::`` (v6-only) on the same port;
* TLS: key+cert+ca is mutual TLS like gear (CERT_REQUIRED, the client certificate's CN becomes
  ``peer.ssl_subject`` for ACLs); key+cert alone is server-only TLS. The handshake is driven by the
  event loop with a timeout, so a silent client never blocks anyone (gear and gearmand block,
  reference 3.16 / gear-0.16-api.md 3.13);
* write backpressure: a peer whose unsent output passes a high-water mark stops being read until
  it drains, so one slow reader cannot grow server memory without bound;
* persistence: ``open_storage(url)`` + ``StorageWriter`` (group commit), replayed into the broker
  BEFORE the listening sockets exist; a storage failure at start is a :class:`ServerStartError`;
* shutdown: immediate, or graceful (stop accepting, drain the broker: nothing new is handed out,
  running jobs finish up to a timeout, queued background jobs stay stored for the next start).

Must not import the CLI, the gear-compatible threaded API, or anything that blocks the loop.
Hot path rule (design.md section 4): nothing here logs per packet above DEBUG, and the DEBUG
logging is guarded by a flag computed once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from gear.errors import ConfigurationError, ServerStartError

if TYPE_CHECKING:
    from gear.server.broker import Broker, BrokerConfig, Peer
    from gear.server.metrics import Metrics

log = logging.getLogger("gear.server")

#: Default write-buffer high-water mark per connection (bytes of unsent output). Above it we stop
#: reading that peer (asyncio calls pause_writing); below the low-water mark we resume.
DEFAULT_HIGH_WATER = 4 * 1024 * 1024
#: A TLS handshake that does not finish in this many seconds drops the connection.
TLS_HANDSHAKE_TIMEOUT = 10.0
#: listen() backlog (gearmand's is 32, gear's 1; bursts of reconnecting workers need more).
DEFAULT_BACKLOG = 1024
#: ``sys.setswitchinterval`` while a durable queue's writer thread runs (seconds): the writer
#: gets the GIL back within this after each SQLite statement (storage/writer.py, "GIL").
DURABLE_SWITCH_INTERVAL = 0.0001


@dataclass
class ServerConfig:
    """How the network layer listens; the scheduling options live in ``BrokerConfig``."""

    #: Address to listen on. None or "" means every address, IPv4 and IPv6.
    host: str | None = None
    #: TCP port; 0 picks a free one (see :attr:`JobServer.port`).
    port: int = 4730
    ssl_key: str | None = None
    ssl_cert: str | None = None
    #: With key and cert: require and verify client certificates signed by this CA (mutual TLS).
    ssl_ca: str | None = None
    #: Apply the keepalive tunables below to accepted sockets (SO_KEEPALIVE itself is always on).
    keepalive: bool = False
    tcp_keepidle: int = 7200
    tcp_keepintvl: int = 75
    tcp_keepcnt: int = 9
    #: Largest packet body a peer may send (None: the decoder's default).
    max_packet_size: int | None = None
    #: Storage URL: "memory", "sqlite:///path", "postgres://...".
    queue: str = "memory"
    #: Graceful shutdown waits this long for running jobs before closing connections.
    shutdown_timeout: float = 30.0
    write_high_water: int = DEFAULT_HIGH_WATER
    backlog: int = DEFAULT_BACKLOG


def build_ssl_context(key: str | None, cert: str | None, ca: str | None) -> ssl.SSLContext | None:
    """The server's TLS context, or None for plaintext.

    key+cert+ca: mutual TLS (CERT_REQUIRED against ``ca``), the model gear uses; key+cert: TLS
    without client certificates (what gearmand does, reference 3.16). A CA without key and cert,
    or only one of key/cert, is a configuration error rather than a silent plaintext server
    (gearmand's Debian build serves plaintext when asked for TLS, reference 3.16 / #207).
    """
    if not (key or cert or ca):
        return None
    if not (key and cert):
        raise ConfigurationError("TLS needs both a key and a certificate (--ssl-key, --ssl-cert)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
        if ca:
            ctx.load_verify_locations(ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load TLS key/certificates: {exc}") from exc
    return ctx


def _subject_cn(cert: dict[str, Any] | None) -> str | None:
    """The last commonName of a peer certificate's subject (what gear's ServerConnection uses)."""
    if not cert:
        return None
    cn = None
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                cn = value
    return cn


def _keepalive_options(config: ServerConfig) -> list[tuple[int, int, int]]:
    opts = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    if config.keepalive:
        for name, value in (
            ("TCP_KEEPIDLE", config.tcp_keepidle),
            ("TCP_KEEPINTVL", config.tcp_keepintvl),
            ("TCP_KEEPCNT", config.tcp_keepcnt),
        ):
            opt = getattr(socket, name, None)
            if opt is not None:
                opts.append((socket.IPPROTO_TCP, opt, int(value)))
    return opts


#: Reads larger than this are fed in pieces of this size, replies written after each piece.
_PIECE = 8192


class _Connection(asyncio.Protocol):
    """One accepted connection: moves bytes between its transport and the broker."""

    __slots__ = ("_server", "peer", "transport")

    def __init__(self, server: JobServer) -> None:
        self._server = server
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it: no isinstance.
        transport = cast(asyncio.Transport, transport)
        server = self._server
        self.transport = transport
        if server.refusing:  # accepted just before the listener closed, during shutdown
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        fd = sock.fileno() if sock is not None else -1
        peername = transport.get_extra_info("peername") or ("", 0)
        subject = None
        if server.ssl_context is not None:
            subject = _subject_cn(transport.get_extra_info("peercert"))
        transport.set_write_buffer_limits(high=server.config.write_high_water)
        self.peer = peer = server.broker.connect(str(peername[0]), int(peername[1]), fd, subject)
        server.connections[peer] = self
        if server.debug:
            log.debug("connection from %s:%s fd %s subject %s", *peername[:2], fd, subject)
        server.after_broker_call()

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.closing:
            return
        server = self._server
        metrics = server.metrics
        try:
            if metrics is None:
                broker = server.broker
                if len(data) > _PIECE and server.piecewise and server.last_reader is peer:
                    data = self._feed_pieces(broker, peer, data)
                server.last_reader = peer
                broker.feed(peer, data)
            else:
                metrics.feed(server.broker, peer, data)
        except Exception:
            # The broker never raises for bad input (interface contract); if it does anyway, that
            # is a bug: drop THIS connection only and keep serving everyone else.
            log.exception("internal error handling data from %s:%s", peer.host, peer.port)
            peer.closing = True
            server.dirty_extra.append(peer)
        dirty = server.broker.dirty
        if peer.functions and peer in dirty:
            # A worker's own reply (JOB_ASSIGN, NO_JOB) goes out now: the worker waits for it
            # before it sends anything else, so no later event of this pass is likely to add
            # to this write, and its next job starts a pass earlier. When that reply is all
            # this read produced, the whole flush runs now (saves the deferred call: measured
            # ~2 us of server CPU per job on the drain load); anything else, like the results
            # this worker sent to its clients, waits for the pass's flush.
            if len(dirty) == 1:
                server.flush()
                return
            server.write_peer(peer)
        server.after_broker_call()

    def _feed_pieces(self, broker: Broker, peer: Peer, data: bytes) -> bytes:
        """Feed all but the last ``_PIECE`` bytes of a large read, writing this peer's replies
        after each piece; returns the rest, for the caller to feed.

        A pipelining client reads its replies while the server is still working through its
        read, and sends more, instead of waiting for the whole read to be answered: the
        server never runs dry. Only when the previous read came from the same connection too
        (one client keeps the server busy: +7-10% background submits/s with
        bench/bench_server.py); when several connections are sending, the server has work
        anyway and the extra writes cost about 5% (bench/bench_durable.py's four
        connections), so whole reads are fed.
        """
        server = self._server
        dirty = broker.dirty
        start = 0
        end = len(data) - _PIECE
        while start < end and not peer.closing:
            broker.feed(peer, data[start : start + _PIECE])
            start += _PIECE
            if peer in dirty:
                server.write_peer(peer)
        return data[start:]

    def eof_received(self) -> bool:
        # The peer half-closed (``echo status | nc -N host 4730``): send the replies its last
        # requests produced (the flush is otherwise deferred to the end of this loop pass),
        # then close like gearmand; returning False makes the transport close after writing.
        self._server.flush()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is None:
            return
        self.peer = None
        server = self._server
        server.connections.pop(peer, None)
        if server.last_reader is peer:
            server.last_reader = None
        if server.metrics is not None:
            server.metrics.forget(peer)
        try:
            server.broker.disconnect(peer)
        except Exception:
            log.exception("internal error disconnecting %s:%s", peer.host, peer.port)
        if server.debug:
            log.debug("connection from %s:%s closed (%s)", peer.host, peer.port, exc)
        server.after_broker_call()

    # Backpressure (asyncio calls these around the write-buffer limits set in connection_made):
    # stop reading a peer we cannot write to, so its requests stop generating replies.
    def pause_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


class JobServer:
    """The asyncio job server: a broker, its listeners, its storage writer and its timers.

    Use :meth:`start` (binds, replays storage first), then :meth:`wait_closed`; stop with
    :meth:`shutdown`. Every method runs on the event loop thread.
    """

    def __init__(
        self,
        config: ServerConfig,
        broker_config: BrokerConfig | None = None,
        *,
        broker_class: type[Broker] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self._broker_config = broker_config
        self._broker_class = broker_class
        self.metrics = metrics
        self.ssl_context = build_ssl_context(config.ssl_key, config.ssl_cert, config.ssl_ca)
        self.socket_options = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        self.socket_options.extend(_keepalive_options(config))
        self.connections: dict[Peer, _Connection] = {}
        #: peers to flush that the broker did not mark dirty (closed after an internal error).
        self.dirty_extra: list[Peer] = []
        self.debug = log.isEnabledFor(logging.DEBUG)
        self.broker: Broker = None  # type: ignore[assignment]  # set by start()
        self._listeners: list[socket.socket] = []
        self._setups: set[asyncio.Task[None]] = set()
        self._writer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._stopping = False
        self._hurry = False  # an immediate shutdown was asked for: stop waiting for jobs
        self._flush_pending = False
        # The peer of the latest read, and whether large reads may be fed in pieces (not with
        # storage: replies wait for the commit anyway). See _Connection._feed_pieces.
        self.last_reader: Peer | None = None
        self.piecewise = False
        #: Set once connections are being closed: late accepts are dropped at once.
        self.refusing = False
        self._closed: asyncio.Event | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._stats_handle: asyncio.TimerHandle | None = None
        self.addresses: list[tuple[str, int]] = []

    # -- start -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open storage, replay it into a new broker, then listen. Raises ServerStartError."""
        from gear.server.broker import Broker, BrokerConfig

        self._loop = loop = asyncio.get_running_loop()
        self._closed = asyncio.Event()
        bconfig = self._broker_config or BrokerConfig()
        stored: list[Any] = []
        storage = _open_storage(self.config.queue)
        if storage is not None:
            from gear.server.storage.writer import StorageWriter

            self._writer = StorageWriter(storage, after_batch=self.after_broker_call,
                                         switch_interval=DURABLE_SWITCH_INTERVAL)
            try:
                stored = list(await self._writer.start())
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await self._writer.close()
                self._writer = None
                raise ServerStartError(
                    f"cannot load the job queue from {self.config.queue}: {exc}"
                ) from exc
        cls = self._broker_class or Broker
        # One broker call per committed batch (store_batched + stored_batch) instead of a
        # callback per job, when the broker class supports it.
        batched = hasattr(cls, "stored_batch") and hasattr(bconfig, "store_batched")
        if self._writer is not None:
            bconfig = dataclasses.replace(bconfig, remove=self._writer.remove)
            if batched:
                bconfig = dataclasses.replace(bconfig, store=None,
                                              store_batched=self._writer.add_many)
            else:
                bconfig = dataclasses.replace(bconfig, store=self._writer.add)
        if self.config.max_packet_size is not None and hasattr(bconfig, "max_packet_size"):
            bconfig = dataclasses.replace(bconfig, max_packet_size=self.config.max_packet_size)
        self.broker = cls(bconfig, clock=time.time)
        self.piecewise = self._writer is None
        if self._writer is not None and batched:
            self._writer.on_batch = self.broker.stored_batch
        if stored:
            self.broker.replay(stored)
        if storage is not None:
            log.info("job queue: %s; replayed %d stored background jobs", storage.where,
                     len(stored))
        else:
            log.info("job queue: memory (background jobs do not survive a restart)")
        try:
            socks = _bind(self.config.host, self.config.port, self.config.backlog)
        except OSError as exc:
            await self._close_storage()
            raise ServerStartError(
                f"cannot listen on {self.config.host or '*'}:{self.config.port}: {exc}"
            ) from exc
        for sock in socks:
            # Our own accept loop rather than loop.create_server: socket options are set before
            # the transport exists, and stopping is exact (asyncio 3.11 leaks a socket accepted
            # in the same iteration as Server.close(): its transport setup asserts and is lost).
            loop.add_reader(sock.fileno(), self._accept, sock)
            self._listeners.append(sock)
            addr = sock.getsockname()
            self.addresses.append((str(addr[0]), int(addr[1])))
        for host, port in self.addresses:
            log.info("listening on %s port %d%s", host, port, " (TLS)" if self.ssl_context else "")
        if self.metrics is not None:
            self.metrics.start(self, loop)
        self.after_broker_call()

    def _accept(self, listener: socket.socket) -> None:
        """The listening socket is readable: accept what is waiting (bounded per wake-up)."""
        loop = self._loop
        assert loop is not None
        for _ in range(64):
            try:
                conn, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: stop accepting for a moment instead of spinning.
                    log.error("cannot accept connections: %s", exc)
                    loop.remove_reader(listener.fileno())
                    loop.call_later(0.5, self._resume_accept, listener)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # that peer gave up before we accepted it
                raise
            conn.setblocking(False)
            try:
                for level, opt, value in self.socket_options:
                    conn.setsockopt(level, opt, value)
            except OSError:  # already reset by the peer: the transport will notice
                pass
            task = loop.create_task(self._setup(conn))
            self._setups.add(task)
            task.add_done_callback(self._setups.discard)

    def _resume_accept(self, listener: socket.socket) -> None:
        if not self._stopping and listener.fileno() >= 0:
            assert self._loop is not None
            self._loop.add_reader(listener.fileno(), self._accept, listener)

    async def _setup(self, conn: socket.socket) -> None:
        """Build the transport of one accepted socket; with TLS, this includes the handshake,
        driven by the loop with a timeout (it never blocks other connections)."""
        assert self._loop is not None
        try:
            await self._loop.connect_accepted_socket(
                lambda: _Connection(self),
                conn,
                ssl=self.ssl_context,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if self.ssl_context else None,
            )
        except (OSError, ssl.SSLError, asyncio.TimeoutError, asyncio.CancelledError) as exc:
            # A failed TLS handshake (no/unknown client certificate, plaintext on a TLS port,
            # silence until the timeout) or a peer gone early: only this socket is affected.
            if self.debug:
                log.debug("connection setup failed: %r", exc)
            conn.close()

    def _stop_listening(self) -> None:
        loop = self._loop
        for listener in self._listeners:
            if listener.fileno() >= 0:
                if loop is not None:
                    loop.remove_reader(listener.fileno())
                listener.close()

    @property
    def port(self) -> int:
        """The port listened on (resolved when 0 was asked for)."""
        return self.addresses[0][1] if self.addresses else self.config.port

    # -- the hot path ----------------------------------------------------------------------

    def after_broker_call(self) -> None:
        """Called after EVERY call into the broker (data received, connect/disconnect, timers,
        storage batches), on the loop thread: schedules one :meth:`flush` for this loop
        iteration.

        Deferring the flush to the end of the iteration lets every read the loop got from one
        poll feed the broker first, so a client whose jobs were completed by four workers in the
        same iteration gets one write, not four: under load this halves the syscalls per job.
        The added latency is one pass of the loop, never a timer.
        """
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self.flush)  # type: ignore[union-attr]

    def flush(self) -> None:
        """Write every dirty peer's output with ONE write each, re-arm the broker's timer and
        notice an admin shutdown request."""
        self._flush_pending = False
        broker = self.broker
        dirty = broker.dirty
        if dirty:
            write = self._write
            for peer in dirty:
                write(peer)
            dirty.clear()
        if self.dirty_extra:
            extra, self.dirty_extra = self.dirty_extra, []
            for peer in extra:
                conn = self.connections.get(peer)
                if conn is not None and conn.transport is not None:
                    if peer.out:
                        conn.transport.write(b"".join(peer.out))
                        peer.out.clear()
                    conn.transport.close()
        deadline = broker.next_deadline()
        if deadline is not None and (self._timer_at is None or deadline < self._timer_at):
            self._arm_timer(deadline)
        if broker.shutdown_requested and not self._stopping:
            graceful = broker.shutdown_requested == "graceful"
            self.request_shutdown(graceful=graceful)

    def write_peer(self, peer: Peer) -> None:
        """Write ``peer``'s output now, ahead of the pass's flush (one write)."""
        self.broker.dirty.discard(peer)
        self._write(peer)

    def _write(self, peer: Peer) -> None:
        out = peer.out
        conn = self.connections.get(peer)
        if conn is None:  # already disconnected: nothing to deliver to
            out.clear()
            return
        transport = conn.transport
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            transport.write(data)  # type: ignore[union-attr]
        if peer.closing:
            transport.close()  # type: ignore[union-attr]  # flushes what was written first

    def _arm_timer(self, deadline: float) -> None:
        loop = self._loop
        assert loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        # The broker's clock is wall time (epoch jobs are in Unix seconds); the loop's is monotonic.
        self._timer = loop.call_at(loop.time() + max(0.0, deadline - time.time()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.broker.run_timers()
        except Exception:
            log.exception("internal error running broker timers")
        self.after_broker_call()

    # -- shutdown --------------------------------------------------------------------------

    def request_shutdown(self, graceful: bool = True) -> None:
        """Start shutting down (idempotent; an immediate request cuts a graceful one short)."""
        if not graceful:
            self._hurry = True
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.ensure_future(self.shutdown(graceful=graceful))

    def running_jobs(self) -> int:
        """Jobs assigned to a worker right now."""
        broker = self.broker
        functions = getattr(broker, "functions", None)
        if isinstance(functions, dict):  # the real broker counts per function: O(functions)
            return sum(f.running for f in functions.values())
        jobs = getattr(broker, "jobs", None)
        if jobs is None:
            return broker.job_count()
        return sum(1 for job in list(jobs.values()) if getattr(job, "running", False))

    async def shutdown(self, graceful: bool = True, timeout: float | None = None) -> None:
        """Stop accepting; if graceful, wait (up to ``timeout``) for running jobs; close all."""
        assert self._closed is not None
        if not graceful:
            self._hurry = True
        if self._stopping:  # already under way (signal + admin + API): wait for that one
            await self._closed.wait()
            return
        if timeout is None:
            timeout = self.config.shutdown_timeout
        self._stopping = True
        log.info("shutting down (%s)", "graceful" if graceful else "immediate")
        self._stop_listening()
        try:
            if graceful and self.broker is not None:
                # Draining: workers asking for work get NO_JOB, running jobs finish, queued
                # background jobs stay queued (and stored) for the next start.
                # (an additive part of the broker interface: a broker without it is not drained)
                drain = getattr(self.broker, "drain", None)
                if drain is not None:
                    drain()
                deadline = time.monotonic() + timeout
                # Polled: job completions are broker events we do not otherwise watch, and a
                # 20 ms delay in noticing the last one is irrelevant at shutdown.
                while self.running_jobs() and not self._hurry and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                left = self.running_jobs()
                if left:
                    log.warning("shutdown timeout: closing with %d jobs still running", left)
        finally:
            await self._close_connections()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self.metrics is not None:
                self.metrics.stop()
            await self._close_storage()
            self._closed.set()
            log.info("server stopped")

    async def _close_connections(self) -> None:
        self.refusing = True
        if self.broker is not None:
            self.flush()  # replies already produced still go out before the close
        for task in list(self._setups):  # handshakes in progress: drop them
            task.cancel()
        if self._setups:
            await asyncio.gather(*self._setups, return_exceptions=True)
        conns = list(self.connections.values())
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()
        if not conns:
            return
        # Give transports a moment to flush (a TLS close also waits for the peer's close_notify);
        # abort whatever is still stuck: a peer not reading must not hold the shutdown.
        deadline = time.monotonic() + (0.1 if self._hurry else 1.0)
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections.values()):
            if conn.transport is not None:
                conn.transport.abort()
        await asyncio.sleep(0)

    async def _close_storage(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                await writer.close()
            except Exception:
                log.exception("error closing the job storage")

    async def wait_closed(self) -> None:
        """Return when :meth:`shutdown` has finished."""
        assert self._closed is not None
        await self._closed.wait()

    @property
    def closed(self) -> bool:
        return self._closed is not None and self._closed.is_set()


def _open_storage(url: str) -> Any:
    """The backend for ``url`` (None for "memory"); a bad URL or backend is a start error."""
    if url in ("", "memory", "memory://"):
        return None  # no storage code needed at all
    from gear.server.storage import open_storage

    try:
        return open_storage(url)
    except (ServerStartError, ConfigurationError):
        raise
    except Exception as exc:
        raise ServerStartError(f"cannot open the job queue {url!r}: {exc}") from exc


def _bind(host: str | None, port: int, backlog: int) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for ``host`` (None/"" = all IPv4 and IPv6).

    With several addresses and port 0 every socket gets the port the first one picked, so a
    client reaches the same server on 127.0.0.1 and ::1.
    """
    if host in (None, "", "*"):
        candidates: list[tuple[int, str]] = [(int(socket.AF_INET), "0.0.0.0")]
        if socket.has_ipv6:
            candidates.append((int(socket.AF_INET6), "::"))
    else:
        infos = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
        candidates = []
        for fam, _type, _proto, _canon, sa in infos:
            item = (int(fam), str(sa[0]))
            if item not in candidates:
                candidates.append(item)
    socks: list[socket.socket] = []
    errors: list[OSError] = []
    try:
        for family, addr in candidates:
            sock = socket.socket(socket.AddressFamily(family), socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    # Separate v4 and v6 sockets: peers show their real IPv4 address, not ::ffff:.
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                bind_port = socks[0].getsockname()[1] if socks else port
                sock.bind((addr, bind_port))
                sock.listen(backlog)
                sock.setblocking(False)
            except OSError as exc:
                sock.close()
                # A host without IPv6 (or without that address) still serves the others.
                if exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL) and len(candidates) > 1:
                    errors.append(exc)
                    continue
                raise
            socks.append(sock)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    if not socks:
        raise errors[0] if errors else OSError(errno.EADDRNOTAVAIL, "no address to listen on")
    return socks


def new_event_loop(use_uvloop: bool | None = None) -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's if ``use_uvloop`` is True (required) or None (if installed)."""
    if use_uvloop is not False:
        try:
            import uvloop
        except ImportError:
            if use_uvloop:
                raise ConfigurationError(
                    "uvloop is not installed; install the 'uvloop' extra "
                    "(pip install geartrain[uvloop])"
                ) from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def tune_gc() -> None:
    """Tune the cyclic garbage collector for a server process (geard only, never an embedding
    application's process).

    Every job allocates a few objects that live until the job ends, so with the default
    threshold (700) a burst of submits triggers collections that walk ever more queued jobs:
    measured with bench/bench_server.py, the broker spent ~40% of a background submit in the
    collector. Jobs free themselves by reference counting; the collector is only a backstop for
    cycles, so it may run far less often. ``gc.freeze()`` moves the start-up objects (modules,
    classes) out of the collector's sight for good.
    """
    import gc

    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)


def run_server(
    config: ServerConfig,
    broker_config: BrokerConfig | None = None,
    *,
    use_uvloop: bool | None = None,
    metrics: Metrics | None = None,
    install_signals: bool = True,
    on_started: Callable[[JobServer], None] | None = None,
) -> None:
    """Run a server in this thread until it shuts down (SIGTERM/SIGUSR1: graceful, SIGINT: now).

    Raises :class:`ServerStartError` / :class:`ConfigurationError` if it cannot start.
    """
    import signal

    loop = new_event_loop(use_uvloop)
    server = JobServer(config, broker_config, metrics=metrics)
    tune_gc()

    async def main() -> None:
        started = False
        early: list[bool] = []  # shutdown signals that arrived while the server was starting

        def on_shutdown_signal(graceful: bool) -> None:
            if started:
                server.request_shutdown(graceful)
            else:
                early.append(graceful)

        if install_signals:
            # Installed before start(), so a signal during replay or binding takes the shutdown
            # path instead of killing the process (or raising KeyboardInterrupt) half-started.
            # SIGTERM is graceful here (gearmand: immediate), because service managers send it
            # for every restart; SIGUSR1 is gearmand's graceful signal (reference 3.15).
            loop.add_signal_handler(signal.SIGTERM, on_shutdown_signal, True)
            loop.add_signal_handler(signal.SIGUSR1, on_shutdown_signal, True)
            loop.add_signal_handler(signal.SIGINT, on_shutdown_signal, False)
            # gearmand reopens its log on SIGHUP; our log handler reopens a rotated file by
            # itself, so SIGHUP (logrotate's postrotate habit) must not kill the server.
            loop.add_signal_handler(
                signal.SIGHUP, log.info, "SIGHUP: nothing to do (log files reopen themselves)"
            )
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        await server.start()
        started = True
        for graceful in early:
            server.request_shutdown(graceful)
        if on_started is not None:
            on_started(server)
        await server.wait_closed()

    try:
        loop.run_until_complete(main())
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
