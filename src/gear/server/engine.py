"""The job server's engine: a broker, its storage, its timers, its listeners and their policy.

Owns :class:`JobServer` (start: storage -> replay -> listen; the flush; the broker's timer;
shutdown), :func:`run_server` (geard's process: event loop, signals), :func:`new_event_loop`
and :func:`tune_gc`:

* one asyncio event loop (uvloop when installed, unless asked not to); the transport
  (:mod:`gear.server.transport`) calls :meth:`JobServer.peer_data` once per read, which calls
  ``broker.feed`` directly: no per-packet task, queue or thread;
* after the calls into the broker of one loop pass (data, disconnect, timer, storage batch),
  every dirty peer gets exactly ONE ``transport.write`` with all its pending bytes (batching
  across peers: a client whose jobs four workers completed in one pass gets one write), and the
  broker's earliest timer is (re)armed with ``loop.call_at``;
* two latency policies, both in :meth:`JobServer.peer_data`: a worker's own reply (JOB_ASSIGN,
  NO_JOB) is written as soon as its read is handled, since the worker sends nothing else until
  it has it; and a large read from the only connection sending is fed in pieces, each piece's
  replies written at once, so a pipelining client keeps the server busy
  (:meth:`JobServer._feed_pieces`). A third, for durable queues: the storage writer thread runs
  with a lowered switch interval (:data:`~gear.server.config.DURABLE_SWITCH_INTERVAL`);
* output limits: after a write to a connection that asyncio has paused (over its high-water
  mark), its limits are checked (:meth:`gear.server.transport._Connection.check_output`,
  which may abort it: a disconnect like any other); the fast path pays one attribute test
  per write;
* the broker's wiring: it is built with admin's ``AdminExtensions`` (gearmand's commands, plus
  ``harp`` registered when the harp port is on) as its admin line handler, the
  storage writer's callbacks and, with statsd, the metrics' packet hook (constructor arguments,
  :class:`~gear.server.port.BrokerFactory`);
* persistence: ``open_storage(url)`` + ``StorageWriter`` (group commit), replayed into the broker
  BEFORE the listening sockets exist; a storage failure at start is a :class:`ServerStartError`;
  with the harp port on, the harp records' own writer (``storage/harp_writer.py``) opens the
  same store after it and loads the records before the harp port listens;
* shutdown: immediate, or graceful (stop accepting, drain the broker: nothing new is handed out,
  running jobs finish up to a timeout, queued background jobs stay stored for the next start).

The broker is reached only through :class:`~gear.server.port.BrokerPort`.
Must not import the CLI, the gear-compatible threaded API, or anything that blocks the loop.
Hot path rule (docs/benchmarks.md): nothing here logs per packet above DEBUG, and the DEBUG
logging is guarded by a flag computed once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gear.server.sides as sides
from gear.errors import ConfigurationError, ServerStartError
from gear.server.config import (
    DURABLE_REMOVE_BATCH,
    DURABLE_REMOVE_DELAY,
    DURABLE_SWITCH_INTERVAL,
    ServerConfig,
)
from gear.server.transport import (
    Acceptor,
    _Connection,
    bind_sockets,
    build_ssl_context,
    raise_nofile_limit,
)

if TYPE_CHECKING:
    from gear.server.broker import BrokerConfig
    from gear.server.observe.statsd import Metrics
    from gear.server.port import BrokerFactory, BrokerPort

log = logging.getLogger("gear.server")

#: Reads larger than this are fed in pieces of this size, replies written after each piece.
_PIECE = 8192

class JobServer:
    """The asyncio job server: a broker, its listeners, its storage writer and its timers.

    Use :meth:`start` (binds, replays storage first), then :meth:`wait_closed`; stop with
    :meth:`shutdown`. Every method runs on the event loop thread. It is the transport's
    :class:`~gear.server.transport.ConnectionHost`.
    """

    def __init__(
        self,
        config: ServerConfig,
        broker_config: BrokerConfig | None = None,
        *,
        broker_class: BrokerFactory | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self._broker_config = broker_config
        self._broker_class = broker_class
        self.metrics = metrics
        self.ssl_context = build_ssl_context(config.ssl_key, config.ssl_cert, config.ssl_ca)
        self.connections: dict[Any, _Connection] = {}
        #: peers to flush that the broker did not mark dirty (closed after an internal error).
        self.dirty_extra: list[Any] = []
        self.debug = log.isEnabledFor(logging.DEBUG)
        self.broker: BrokerPort[Any] = None  # type: ignore[assignment]  # set by start()
        self._acceptor: Acceptor | None = None
        self._writer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._stopping = False
        self._hurry = False  # an immediate shutdown was asked for: stop waiting for jobs
        self._flush_pending = False
        self._deferred_pending = False  # a _run_deferred call is scheduled
        # The peer of the latest read, and whether large reads may be fed in pieces (not with
        # storage: replies wait for the commit anyway). See _feed_pieces.
        self.last_reader: Any = None
        self.piecewise = False
        #: Set once connections are being closed: late accepts are dropped at once.
        self.refusing = False
        self._closed: asyncio.Event | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        #: The HarpCaller port (``--harp-port``), when configured.
        self.harp: Any = None
        #: The HTTP side (``--http-port``: /metrics, /status, the page), when configured.
        self.http: Any = None
        #: The broker's admin line handler: gearmand's commands plus registered extensions
        #: (the harp port registers ``harp``).
        self.admin: Any = None

    # -- start -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open storage, replay it into a new broker, then listen. Raises ServerStartError."""
        from gear.server.admin.extensions import AdminExtensions
        from gear.server.broker import Broker, BrokerConfig

        self._loop = loop = asyncio.get_running_loop()
        self._closed = asyncio.Event()
        self.admin = AdminExtensions()
        bconfig = self._broker_config or BrokerConfig()
        stored: list[Any] = []
        storage = _open_storage(self.config.queue)
        if storage is not None:
            from gear.server.storage.writer import StorageWriter

            self._writer = StorageWriter(storage, after_batch=self.after_broker_call,
                                         switch_interval=DURABLE_SWITCH_INTERVAL,
                                         remove_delay=DURABLE_REMOVE_DELAY,
                                         remove_batch=DURABLE_REMOVE_BATCH)
            try:
                stored = list(await self._writer.start())
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await self._writer.close()
                self._writer = None
                raise ServerStartError(
                    f"cannot load the job queue from {self.config.queue}: {exc}"
                ) from exc
        factory: BrokerFactory = self._broker_class or Broker
        if self.config.max_packet_size is not None:
            bconfig = dataclasses.replace(bconfig, max_packet_size=self.config.max_packet_size)
        writer = self._writer
        metrics = self.metrics
        broker = factory(
            bconfig,
            time.time,
            admin=self.admin,
            # One broker call per committed batch (store_batched + stored_batch), never a
            # callback per job.
            store_batched=writer.add_many if writer is not None else None,
            remove=writer.remove if writer is not None else None,
            bury=writer.bury if writer is not None else None,
            revive=writer.revive if writer is not None else None,
            packet_hook=metrics.packet if metrics is not None else None,  # times each packet
        )
        if writer is not None:
            writer.on_batch = broker.stored_batch
        self.broker = broker
        if self.config.http_port is not None:
            self._bind_http(broker, writer)
        self.piecewise = writer is None
        if stored:
            broker.replay(stored)
        dead = writer.dead if writer is not None else []
        if dead:
            broker.replay_dead(dead)
        if storage is not None:
            log.info("job queue: %s; replayed %d stored background jobs", storage.where,
                     len(stored))
            if dead:
                log.info("job queue: %d dead background jobs in the dead-letter list "
                         "(admin 'show dead jobs')", len(dead))
        else:
            log.info("job queue: memory (background jobs do not survive a restart)")
        try:
            socks = bind_sockets(self.config.host, self.config.port, self.config.backlog)
        except OSError as exc:
            await self._close_storage()
            raise ServerStartError(
                f"cannot listen on {self.config.host or '*'}:{self.config.port}: {exc}"
            ) from exc
        self._acceptor = Acceptor(loop, self, self.config, self.ssl_context, debug=self.debug)
        self._acceptor.listen(socks)
        if self.config.harp_port is not None:
            await self._start_harp()
        if self.http is not None:
            await self._start_http()
        for host, port in self.addresses:
            log.info("listening on %s port %d%s", host, port, " (TLS)" if self.ssl_context else "")
        if self.metrics is not None:
            self.metrics.start(self, loop)
        self.after_broker_call()

    # The optional sides (sides.py), bound as methods (the functions take the server first).
    _start_harp = sides.start_harp
    _open_harp_store = sides.open_harp_store
    _bind_http = sides.bind_http
    _start_http = sides.start_http

    @property
    def http_port(self) -> int | None:
        """The HTTP port listened on (resolved when 0 was asked for), or None."""
        http = self.http
        return http.addresses[0][1] if http is not None and http.addresses else None

    @property
    def harp_port(self) -> int | None:
        """The harp port listened on (resolved when 0 was asked for), or None."""
        harp = self.harp
        return harp.addresses[0][1] if harp is not None and harp.addresses else None

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every listening socket (empty before :meth:`start` listened)."""
        return self._acceptor.addresses if self._acceptor is not None else []

    @property
    def port(self) -> int:
        """The port listened on (resolved when 0 was asked for)."""
        addresses = self.addresses
        return addresses[0][1] if addresses else self.config.port

    # -- the transport's host (ConnectionHost) ---------------------------------------------

    def peer_connected(
        self, conn: _Connection, host: str, port: int, fd: int, ssl_subject: str | None
    ) -> Any:
        if self.refusing:  # accepted just before the listener closed, during shutdown
            return None
        peer = self.broker.connect(host, port, fd, ssl_subject)
        self.connections[peer] = conn
        if self.debug:
            log.debug("connection from %s:%s fd %s subject %s", host, port, fd, ssl_subject)
        self.after_broker_call()
        return peer

    def peer_data(self, peer: Any, data: bytes) -> None:
        """The hot path: one call per read. Feeds the broker and applies the write policies.

        Its cost is the transport's: one call here, one ``broker.feed``, then one deferred
        flush per loop pass (:meth:`after_broker_call` is inlined at the end).
        """
        broker = self.broker
        try:
            if len(data) > _PIECE and self.piecewise and self.last_reader is peer:
                data = self._feed_pieces(broker, peer, data)
            self.last_reader = peer
            broker.feed(peer, data)
        except Exception:
            # The broker never raises for bad input (interface contract); if it does anyway, that
            # is a bug: drop THIS connection only and keep serving everyone else.
            log.exception("internal error handling data from %s:%s", peer.host, peer.port)
            peer.closing = True
            self.dirty_extra.append(peer)
        dirty = broker.dirty
        if peer.functions and peer in dirty:
            # Policy "a worker's reply goes out now": JOB_ASSIGN, NO_JOB... the worker waits
            # for it before it sends anything else, so no later event of this pass is likely
            # to add to this write, and its next job starts a pass earlier. When that reply is
            # all this read produced, the whole flush runs now (saves the deferred call:
            # measured ~2 us of server CPU per job on the drain load); anything else, like the
            # results this worker sent to its clients, waits for the pass's flush.
            if len(dirty) == 1:
                self.flush()
                return
            self.write_peer(peer)
        if not self._flush_pending:  # after_broker_call(), inlined
            self._flush_pending = True
            self._loop.call_soon(self.flush)  # type: ignore[union-attr]

    def _feed_pieces(self, broker: BrokerPort[Any], peer: Any, data: bytes) -> bytes:
        """Policy "feed a large read in pieces": feed all but the last ``_PIECE`` bytes of a
        large read, writing this peer's replies after each piece; returns the rest, for the
        caller to feed.

        A pipelining client reads its replies while the server is still working through its
        read, and sends more, instead of waiting for the whole read to be answered: the
        server never runs dry. Only when the previous read came from the same connection too
        (one client keeps the server busy: +7-10% background submits/s with
        bench/bench_server.py); when several connections are sending, the server has work
        anyway and the extra writes cost about 5% (bench/bench_durable.py's four
        connections), so whole reads are fed.
        """
        dirty = broker.dirty
        start = 0
        end = len(data) - _PIECE
        while start < end and not peer.closing:
            broker.feed(peer, data[start : start + _PIECE])
            start += _PIECE
            if peer in dirty:
                self.write_peer(peer)
        return data[start:]

    def peer_eof(self) -> None:
        self.flush()

    def peer_lost(self, peer: Any, exc: Exception | None) -> None:
        self.connections.pop(peer, None)
        if self.last_reader is peer:
            self.last_reader = None
        try:
            self.broker.disconnect(peer)
        except Exception:
            log.exception("internal error disconnecting %s:%s", peer.host, peer.port)
        if self.debug:
            log.debug("connection from %s:%s closed (%s)", peer.host, peer.port, exc)
        if not self._deferred_pending:
            self._deferred_pending = True
            self._loop.call_soon(self._run_deferred)  # type: ignore[union-attr]
        self.after_broker_call()

    def _run_deferred(self) -> None:
        """One slice of the broker's deferred work per loop pass (port.py, "Deferred work"):
        between two slices every other connection's reads and writes are handled."""
        more = False
        try:
            more = self.broker.run_deferred()
        except Exception:
            log.exception("internal error in the broker's deferred work")
        if more:
            self._loop.call_soon(self._run_deferred)  # type: ignore[union-attr]
        else:
            self._deferred_pending = False
        self.after_broker_call()

    # -- the flush -------------------------------------------------------------------------

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
            connections = self.connections
            for peer in dirty:
                # _write(peer), inlined: one call less per dirty peer per flush, which pays for
                # the call into the host that the transport makes per read (peer_data).
                out = peer.out
                conn = connections.get(peer)
                if conn is None:  # already disconnected: nothing to deliver to
                    out.clear()
                    continue
                transport = conn.transport
                if out:
                    data = out[0] if len(out) == 1 else b"".join(out)
                    out.clear()
                    transport.write(data)  # type: ignore[union-attr]
                    if conn.paused:  # over the high-water mark: the output limits apply
                        conn.check_output()
                if peer.closing:
                    transport.close()  # type: ignore[union-attr]  # flushes what was written
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

    def write_peer(self, peer: Any) -> None:
        """Write ``peer``'s output now, ahead of the pass's flush (one write)."""
        self.broker.dirty.discard(peer)
        self._write(peer)

    def _write(self, peer: Any) -> None:
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
            if conn.paused:
                conn.check_output()
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
        return self.broker.running_count()

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
        if self._acceptor is not None:
            self._acceptor.stop()
        if self.harp is not None:
            await self.harp.close()
        if self.http is not None:
            await self.http.close()
        try:
            if graceful and self.broker is not None:
                # Draining: workers asking for work get NO_JOB, running jobs finish, queued
                # background jobs stay queued (and stored) for the next start.
                self.broker.drain()
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
            if self.harp is not None:
                await self.harp.close_store()  # before the queue's: it shares the file
            await self._close_storage()
            self._closed.set()
            log.info("server stopped")

    async def _close_connections(self) -> None:
        self.refusing = True
        if self.broker is not None:
            self.flush()  # replies already produced still go out before the close
        if self._acceptor is not None:
            await self._acceptor.drop_setups()  # handshakes in progress
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
    raise_nofile_limit()  # geard's process only: an embedding application keeps its own

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
            # for every restart; SIGUSR1 is gearmand's graceful signal (docs/protocol.md §3.15).
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
