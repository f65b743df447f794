"""The harp port's network side: one asyncio Protocol per HarpCaller connection.

Owns :class:`HarpListener` (binds the harp port, TLS with the server's context, drives the
service's timers, its pruning passes and the link from the broker, and owns the record store's
writer thread when the queue is durable) and :class:`HarpConnection` (line framing:
requests answered one at a time, in order; further requests on a connection are served after
the current one is answered, so HarpCaller's one-request clients and longer sessions both work).
A HarpConnection is the Gearman port's connection class (``transport._Connection``) with its
own framing: the write high-water mark, the back-pressure and the output limits (a follower
that never reads a long stream is cut as a Gearman client is, docs/semantics.md "Output
limits") are the same.

Must not import the engine (the engine imports this) or the broker's internals: it talks to
:class:`~gear.server.harp.service.HarpService` and to the engine through the callables given.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from gear.server.config import DEFAULT_HIGH_WATER
from gear.server.harp.protocol import error_reply
from gear.server.harp.service import DEFAULT_MAX_BYTES, DEFAULT_UNKNOWN_HOST_WAIT, HarpService
from gear.server.transport import OutputLimits, _Connection, bind_sockets

__all__ = ["MAX_LINE", "HarpConnection", "HarpListener"]

log = logging.getLogger("gear.server.harp")

#: A request line longer than this is answered ``request_too_large`` and the connection closed.
MAX_LINE = 16 * 1024 * 1024
#: The longest wait between two pruning passes (seconds); shorter for a short retention.
PRUNE_INTERVAL = 60.0


class _LinkTransport:
    """Stands in for a socket for the service's broker peer: the engine's flush writes to it."""

    def __init__(self, listener: HarpListener) -> None:
        self.listener = listener

    def write(self, data: bytes) -> None:
        self.listener.service.deliver(data)
        self.listener.schedule_process()

    def close(self) -> None:
        self.listener.unlink()

    abort = close


class _Link:
    """What the engine's ``connections`` maps the service's peer to."""

    #: Never over a write high-water mark: the engine's output limits never apply to the link.
    paused = False

    def __init__(self, listener: HarpListener) -> None:
        self.transport = _LinkTransport(listener)


class HarpConnection(_Connection):
    """One HarpCaller client connection."""

    __slots__ = ("buf", "busy", "closed", "eof", "lines", "listener", "replay_end", "written")

    def __init__(self, listener: HarpListener) -> None:
        # No ConnectionHost: the connection feeds the harp service itself (data_received).
        # _Connection.__init__'s fields, set here from what the listener worked out once (the
        # high-water mark under the limits): one connection per request is the common case.
        self._host = None  # type: ignore[assignment]
        self._data = None  # type: ignore[assignment]
        self._tls = listener.tls
        self._limits = listener.limits
        self._high_water = listener.conn_high_water
        self.transport = None
        self.peer = None
        self._peername = ("", 0)
        self.paused = False
        self._over_since = None
        self._soft_timer = None
        self.listener = listener
        self.buf = b""
        self.lines: deque[bytes] = deque()
        self.busy = False
        self.closed = False
        #: The client half-closed (or closed): close once the requests asked are answered.
        self.eof = False
        #: Bytes written so far, and the offset where the last replay of stored stream
        #: messages ended: a replay is bounded by the records' byte bound, not by the output
        #: limits, which count only what was written after it (live messages, replies).
        self.written = 0
        self.replay_end = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=self._high_water)  # type: ignore[attr-defined]
        self.listener.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_soft_timer()
        self.closed = True
        self.lines.clear()
        self.listener.connections.discard(self)

    def _unsent(self) -> int:
        assert self.transport is not None
        unsent = self.transport.get_write_buffer_size()
        replay_left = self.replay_end - (self.written - unsent)  # the buffer drains in order
        return unsent - replay_left if replay_left > 0 else unsent

    def _cut(self, size: int, which: str, limit: int) -> None:
        # The peer's address is looked up only for the log line (not on every connection).
        if self.transport is not None:
            peer = self.transport.get_extra_info("peername") or ("", 0)
            self._peername = (str(peer[0]), int(peer[1]))
        super()._cut(size, which, limit)

    def data_received(self, data: bytes) -> None:
        if (not self.buf and not self.busy and not self.lines and not self.closed
                and data.find(b"\n") == len(data) - 1):
            # One whole request in one read (HarpCaller's clients): served at once, without
            # the line queue. Blank lines and \r are skipped as _next skips them.
            line = data[:-1].rstrip(b"\r")
            if line.strip():
                self._serve(line)
            if self.eof and not self.busy and not self.closed:
                self.done(close=True)
            return
        buf = self.buf + data if self.buf else data
        *lines, rest = buf.split(b"\n")
        if len(rest) > MAX_LINE:
            self.lines.clear()
            self.write(error_reply("request_too_large",
                                   f"a request line is limited to {MAX_LINE} bytes"))
            self.done(close=True)
            return
        self.buf = rest
        self.lines.extend(line.rstrip(b"\r") for line in lines)
        self._next()

    def eof_received(self) -> bool:
        # Half-close: answer what was asked, then close in done(). Nothing left to answer
        # (HarpCaller's one-request clients, once answered): close now, or the connection
        # would stay open for ever, holding a file descriptor.
        self.eof = True
        return self.busy or bool(self.lines)

    def _next(self) -> None:
        while not self.busy and self.lines and not self.closed:
            line = self.lines.popleft()
            if not line.strip():
                continue
            self._serve(line)
        if self.eof and not self.busy and not self.closed:
            self.done(close=True)  # only blank lines were left after the client's EOF

    def _serve(self, line: bytes) -> None:
        self.busy = True
        try:
            self.listener.service.handle_line(line, self)
        except Exception:
            log.exception("harp request failed: %r", line[:200])
            self.write(error_reply("internal_error", "geard failed serving the request"))
            self.done(close=True)
        self.listener.after_call()

    # -- the service's Sink ------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)
            self.written += len(data)
            if self.paused:  # over the high-water mark: the output limits apply
                self.check_output()

    def replay(self, data: bytes) -> None:
        """Write stored stream messages (read_stream, follow_stream's first part): not
        counted by the output limits."""
        if not self.closed and self.transport is not None:
            self.transport.write(data)
            self.written += len(data)
            self.replay_end = self.written

    def done(self, close: bool = False) -> None:
        self.busy = False
        if close:
            self.closed = True
            self.lines.clear()
            if self.transport is not None:
                self.transport.close()
        elif self.lines and not self.closed:
            self.listener.loop().call_soon(self._next)
        elif self.eof and not self.closed:
            self.done(close=True)


class HarpListener:
    """The harp port of one job server."""

    def __init__(self, broker: Any, connections: dict[Any, Any],
                 after_broker_call: Callable[[], None], retention: float,
                 max_bytes: int | None = DEFAULT_MAX_BYTES, writer: Any = None,
                 unknown_host_wait: float | None = DEFAULT_UNKNOWN_HOST_WAIT,
                 high_water: int = DEFAULT_HIGH_WATER,
                 limits: OutputLimits | None = None) -> None:
        self._engine_connections = connections
        #: The write high-water mark and output limits of every harp connection (the
        #: Gearman port's, ``--write-high-water``, ``--output-limit-*``).
        self.high_water = high_water
        self.limits = limits
        #: What each connection's mark is (``_Connection``'s rule, worked out once).
        self.conn_high_water = limits.high_water(high_water) if limits is not None \
            else high_water
        #: The running loop, looked up once (``asyncio.get_running_loop`` costs a getpid()
        #: system call on every call on Python 3.11).
        self._loop: asyncio.AbstractEventLoop | None = None
        self.tls = False
        self._after_broker_call = after_broker_call
        #: The record store's :class:`~gear.server.storage.harp_writer.HarpWriter`, or None.
        self.writer = writer
        self.service = HarpService(broker, time.time, after_broker_call, retention=retention,
                                   max_bytes=max_bytes, store=writer,
                                   unknown_host_wait=unknown_host_wait)
        self.service.rearm = self.schedule_process
        self.service.wants_prune = self.schedule_prune
        self.prune_interval = max(0.05, min(PRUNE_INTERVAL, retention / 4))
        self._prune_timer: asyncio.TimerHandle | None = None
        self._prune_soon = False
        self._closed = False
        connections[self.service.link] = _Link(self)
        self.connections: set[HarpConnection] = set()
        self.servers: list[asyncio.Server] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._process_pending = False

    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the port runs on."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    async def listen(self, host: str | None, port: int, backlog: int,
                     ssl_context: ssl.SSLContext | None) -> list[tuple[str, int]]:
        loop = self._loop = asyncio.get_running_loop()
        # Records loaded after a restart may be due already: the first pass runs at once then.
        first = 0.0 if self.service.prune_due() else self.prune_interval
        self._prune_timer = loop.call_later(first, self._prune)
        self.tls = ssl_context is not None
        for sock in bind_sockets(host, port, backlog):
            server = await loop.create_server(lambda: HarpConnection(self), sock=sock,
                                              ssl=ssl_context, backlog=backlog)
            self.servers.append(server)
        return self.addresses

    @property
    def addresses(self) -> list[tuple[str, int]]:
        out = []
        for server in self.servers:
            for sock in server.sockets:
                out.append(sock.getsockname()[:2])
        return out

    def after_call(self) -> None:
        """After each service call: flush the broker's output (when the service called the
        broker: a get_result or a result delivered asks for no flush pass) and re-arm the
        timer."""
        service = self.service
        if service.touched:
            service.touched = False
            self._after_broker_call()
        deadline = service.next_deadline()
        if deadline is not None and (self._timer_at is None or deadline < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            loop = self.loop()
            self._timer_at = deadline
            self._timer = loop.call_later(max(0.0, deadline - time.time()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self.service.run_timers()
        self.after_call()

    def schedule_process(self) -> None:
        if not self._process_pending:
            self._process_pending = True
            self.loop().call_soon(self._process)

    def _process(self) -> None:
        self._process_pending = False
        self.service.process()
        self.after_call()

    def schedule_prune(self) -> None:
        """A pruning pass at the next loop iteration (the byte bound was passed)."""
        if not self._prune_soon:
            self._prune_soon = True
            self.loop().call_soon(self._prune)

    def _prune(self) -> None:
        """One pass of at most PRUNE_BATCH records; the next one follows at once while more
        are due (other callbacks run in between), else after the interval."""
        self._prune_soon = False
        if self._prune_timer is not None:
            self._prune_timer.cancel()
        if self._closed:
            return
        service = self.service
        service.prune()
        loop = self.loop()
        delay = 0.0 if service.prune_due() else self.prune_interval
        self._prune_timer = loop.call_later(delay, self._prune)

    def unlink(self) -> None:
        self._engine_connections.pop(self.service.link, None)

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._prune_timer is not None:
            self._prune_timer.cancel()
            self._prune_timer = None
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        for server in self.servers:
            await server.wait_closed()
        self.unlink()

    async def close_store(self) -> None:
        """Write the pending record changes and stop the writer (after :meth:`close`)."""
        writer, self.writer = self.writer, None
        self.service.store = None
        if writer is not None:
            await writer.close()
