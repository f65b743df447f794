"""The job server's transport: sockets, TLS and one :class:`asyncio.Protocol` per connection.

Owns what touches the operating system's sockets, and decides nothing about Gearman:

* :func:`bind_sockets`: bound, listening, non-blocking sockets. IPv4 and IPv6: "all addresses"
  binds ``0.0.0.0`` and ``::`` (v6-only) on the same port;
* :class:`Acceptor`: our own accept loop over them. Socket options are set before the transport
  exists (TCP_NODELAY and SO_KEEPALIVE on every accepted socket, plus the keepalive tunables when
  asked: gearmand only applied them to the listening socket before 2.0, docs/protocol.md §3.17),
  and each transport is built by the event loop, with the TLS handshake under a timeout, so a
  silent client never blocks anyone (gear and gearmand block, docs/protocol.md §3.16 /
  docs/gear-compat.md §3.13);
* :func:`build_ssl_context` and :func:`peer_common_name`: key+cert+ca is mutual TLS like gear
  (CERT_REQUIRED, the client certificate's CN becomes the peer's ``ssl_subject`` for ACLs);
  key+cert alone is server-only TLS;
* :class:`_Connection`: moves a connection's bytes to its host and back-pressure to its
  transport (a peer whose unsent output passes a high-water mark stops being read until it
  drains). That bounds only the replies to the peer's own requests: a client's results come
  from workers. So each connection also has output limits (:class:`OutputLimits`, Redis's
  client-output-buffer-limit is the model, docs/semantics.md "Output limits"): past the hard
  limit, or over the soft one for its time, the connection is aborted and its host sees an
  ordinary disconnect. Checking costs nothing on the fast path: the high-water mark is kept at
  or below the limits, so only a connection asyncio has paused (``paused``) is ever measured,
  after each write to it (:meth:`_Connection.check_output`, called by the host);
* descriptors: :func:`raise_nofile_limit` (the soft RLIMIT_NOFILE up to the hard one, at
  geard's start) and the acceptor's back-off when accept() runs out of them
  (docs/semantics.md, "File descriptors").

The transport knows its host only through :class:`ConnectionHost` (declared here, implemented
by :class:`gear.server.engine.JobServer`), never the engine or the broker: every latency policy
(when to write, how to feed a large read) is the host's.

Must not import the engine, the broker, admin, storage, the CLI or the threaded API.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, cast

from gear.errors import ConfigurationError
from gear.server.config import DEFAULT_HIGH_WATER, TLS_HANDSHAKE_TIMEOUT, ServerConfig

#: Errors of accept() that mean "out of descriptors or kernel memory": back off, do not spin.
_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
#: The accept back-off when out of descriptors: first pause, and the most it doubles to.
ACCEPT_BACKOFF_FIRST = 0.1
ACCEPT_BACKOFF_MAX = 1.0

log = logging.getLogger("gear.server")


def build_ssl_context(key: str | None, cert: str | None, ca: str | None) -> ssl.SSLContext | None:
    """The server's TLS context, or None for plaintext.

    key+cert+ca: mutual TLS (CERT_REQUIRED against ``ca``), the model gear uses; key+cert: TLS
    without client certificates (what gearmand does, docs/protocol.md §3.16). A CA without key
    and cert, or only one of key/cert, is a configuration error rather than a silent plaintext
    server (gearmand's Debian build serves plaintext when asked for TLS, docs/protocol.md §3.16
    / #207).
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


def peer_common_name(cert: dict[str, Any] | None) -> str | None:
    """The last commonName of a peer certificate's subject (what gear's ServerConnection uses)."""
    if not cert:
        return None
    cn = None
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                cn = value
    return cn


def socket_options(config: ServerConfig) -> list[tuple[int, int, int]]:
    """``setsockopt`` arguments for every accepted socket: TCP_NODELAY, SO_KEEPALIVE and, when
    ``config.keepalive`` is set, the keepalive tunables this platform has."""
    opts = [
        (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    ]
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


def bind_sockets(host: str | None, port: int, backlog: int) -> list[socket.socket]:
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


def _nofile_soft() -> str:
    try:
        import resource
    except ImportError:  # not on this platform
        return "unknown"
    return str(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def raise_nofile_limit() -> tuple[int, int, int] | None:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit and log the figures
    (docs/semantics.md, "File descriptors"); geard calls it once at start.

    Returns (soft before, soft now, hard), or None where the platform has no such limit. A hard
    limit of "unlimited" raises the soft one to the kernel's cap (``/proc/sys/fs/nr_open`` on
    Linux, else 1,048,576); a refused raise keeps the old limit and says so.
    """
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        target = 1 << 20
        try:
            with open("/proc/sys/fs/nr_open") as f:
                target = int(f.read())
        except (OSError, ValueError):
            pass
    new = soft
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            new = target
        except (ValueError, OSError) as exc:
            log.warning("open files: cannot raise the soft limit %d to %d: %s", soft, target, exc)
    shown_hard = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    if new != soft:
        log.info("open files: soft %d (raised from %d), hard %s", new, soft, shown_hard)
    else:
        log.info("open files: soft %s, hard %s", new, shown_hard)
    return soft, new, hard


class PeerHandle(Protocol):
    """What the transport reads of the host's per-connection object."""

    #: Set when the connection is to be closed once its output is written: no more reading.
    closing: bool


class ConnectionHost(Protocol):
    """What a :class:`_Connection` calls, all on the event loop thread.

    ``peer_data`` is the hot path: it is called once per read with the bytes as received, and
    it is the host's to decide how to feed them and when to write the replies.
    """

    def peer_connected(
        self, conn: _Connection, host: str, port: int, fd: int, ssl_subject: str | None
    ) -> PeerHandle | None:
        """A connection is up: its peer object, or None to refuse it (the transport aborts)."""
        ...

    def peer_data(self, peer: Any, data: bytes) -> None:
        """``data`` arrived from ``peer`` (never called once ``peer.closing`` is set)."""
        ...

    def peer_eof(self) -> None:
        """A peer half-closed: write what its last requests produced before the close."""
        ...

    def peer_lost(self, peer: Any, exc: Exception | None) -> None:
        """The connection of ``peer`` is gone."""
        ...


class OutputLimits(NamedTuple):
    """A connection's output limits, in bytes of unsent output (0: that limit is off)."""

    hard: int
    soft: int
    soft_seconds: float

    @classmethod
    def of(cls, config: ServerConfig) -> OutputLimits | None:
        """The limits ``config`` sets, or None when both are off."""
        limits = cls(max(0, config.output_limit_hard), max(0, config.output_limit_soft),
                     max(0.0, config.output_limit_soft_seconds))
        return limits if limits.hard or limits.soft else None

    def high_water(self, high_water: int) -> int:
        """The write high-water mark to use: ``high_water``, lowered to the smallest limit
        set, so that no connection passes a limit without asyncio pausing it first."""
        return min(x for x in (high_water, self.hard, self.soft) if x > 0)


class _Connection(asyncio.Protocol):
    """One accepted connection: moves bytes between its transport and its host."""

    __slots__ = ("_data", "_high_water", "_host", "_limits", "_over_since", "_peername",
                 "_soft_timer", "_tls", "paused", "peer", "transport")

    def __init__(
        self,
        host: ConnectionHost,
        tls: bool = False,
        high_water: int = DEFAULT_HIGH_WATER,
        limits: OutputLimits | None = None,
    ) -> None:
        # host None: a subclass that frames and serves its own input (the harp port's
        # HarpConnection) and keeps only the write limits of this class.
        self._host = host
        # Bound once: data_received is the hot path, one call into the host per read.
        self._data = host.peer_data if host is not None else None
        self._tls = tls
        self._limits = limits
        self._high_water = limits.high_water(high_water) if limits is not None else high_water
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self._peername: tuple[str, int] = ("", 0)
        #: Over the write high-water mark (asyncio paused us): the host calls
        #: :meth:`check_output` after each write while this is set.
        self.paused = False
        #: Loop time since which the output has been over the soft limit, or None.
        self._over_since: float | None = None
        self._soft_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it: no isinstance.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        fd = sock.fileno() if sock is not None else -1
        peername = transport.get_extra_info("peername") or ("", 0)
        self._peername = (str(peername[0]), int(peername[1]))
        subject = peer_common_name(transport.get_extra_info("peercert")) if self._tls else None
        transport.set_write_buffer_limits(high=self._high_water)
        peer = self._host.peer_connected(self, str(peername[0]), int(peername[1]), fd, subject)
        if peer is None:  # accepted just before the listener closed, during shutdown
            transport.abort()
            return
        self.peer = peer

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.closing:
            return
        self._data(peer, data)

    def eof_received(self) -> bool:
        # The peer half-closed (``echo status | nc -N host 4730``): send the replies its last
        # requests produced (the flush is otherwise deferred to the end of this loop pass),
        # then close like gearmand; returning False makes the transport close after writing.
        self._host.peer_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_soft_timer()
        peer = self.peer
        if peer is None:
            return
        self.peer = None
        self._host.peer_lost(peer, exc)

    # Backpressure (asyncio calls these around the write-buffer limits set in connection_made):
    # stop reading a peer we cannot write to, so its requests stop generating replies.
    def pause_writing(self) -> None:
        self.paused = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        # Below the low-water mark, so below every limit: the soft limit's clock restarts.
        self.paused = False
        self._over_since = None
        self._stop_soft_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- output limits (docs/semantics.md, "Output limits") ---------------------------------

    def check_output(self) -> None:
        """Enforce the output limits; the host calls this after a write while :attr:`paused`.

        Over the hard limit: abort now. Over the soft limit: start its clock (and a timer for
        when the time is up, in case nothing more is written); still over it when the time is
        up: abort. The abort drops the unsent output and the host gets ``peer_lost`` on a later
        loop pass, as for any disconnect.
        """
        limits = self._limits
        transport = self.transport
        if limits is None or transport is None or transport.is_closing():
            return
        size = self._unsent()
        if limits.hard and size > limits.hard:
            self._cut(size, "hard", limits.hard)
            return
        if not limits.soft or size <= limits.soft:
            self._over_since = None
            self._stop_soft_timer()
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._over_since is None:
            self._over_since = now
            if limits.soft_seconds > 0:
                self._soft_timer = loop.call_later(limits.soft_seconds, self._soft_time_up)
                return
        if now - self._over_since >= limits.soft_seconds:
            self._cut(size, "soft", limits.soft)

    def _unsent(self) -> int:
        """The unsent output the limits count (a subclass may leave some out)."""
        assert self.transport is not None
        return self.transport.get_write_buffer_size()

    def _soft_time_up(self) -> None:
        self._soft_timer = None
        since = self._over_since
        if since is None or self.transport is None or self.transport.is_closing():
            return
        assert self._limits is not None
        size = self._unsent()
        if size > self._limits.soft:
            self._cut(size, "soft", self._limits.soft)
        else:  # it read enough meanwhile: start over
            self._over_since = None

    def _stop_soft_timer(self) -> None:
        timer = self._soft_timer
        if timer is not None:
            self._soft_timer = None
            timer.cancel()

    def _cut(self, size: int, which: str, limit: int) -> None:
        assert self.transport is not None and self._limits is not None
        host, port = self._peername
        held = ""
        if which == "soft":
            held = f" for {self._limits.soft_seconds:g} s"
        log.warning("closing the connection from %s:%s: %d bytes of output unsent, over the "
                    "%s output limit of %d bytes%s (handled as a disconnect)",
                    host, port, size, which, limit, held)
        self._stop_soft_timer()
        self.transport.abort()


class Acceptor:
    """The accept loop over a server's listening sockets.

    Our own loop rather than ``loop.create_server``: socket options are set before the
    transport exists, and stopping is exact (asyncio 3.11 leaks a socket accepted in the same
    iteration as Server.close(): its transport setup asserts and is lost).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: ConnectionHost,
        config: ServerConfig,
        ssl_context: ssl.SSLContext | None,
        *,
        debug: bool = False,
    ) -> None:
        self._loop = loop
        self._ssl = ssl_context
        self._options = socket_options(config)
        tls = ssl_context is not None
        high_water = config.write_high_water
        limits = OutputLimits.of(config)
        self._factory: Callable[[], _Connection] = lambda: _Connection(
            host, tls, high_water, limits)
        self._debug = debug
        self._listeners: list[socket.socket] = []
        self._setups: set[asyncio.Task[None]] = set()
        self._stopped = False
        # Out of descriptors (docs/semantics.md, "File descriptors"): the pause before the next
        # try, failed accepts not yet logged, when the last line was logged, when it started.
        self._backoff = 0.0
        self._refused = 0
        self._logged_at = -ACCEPT_BACKOFF_MAX
        self._exhausted_at = 0.0
        self._recovery: asyncio.TimerHandle | None = None
        #: accept() calls that failed for lack of descriptors, in total (for tests and probes).
        self.refusals = 0
        #: (host, port) of every listening socket, in bind order.
        self.addresses: list[tuple[str, int]] = []

    def listen(self, socks: list[socket.socket]) -> None:
        """Start accepting on ``socks`` (from :func:`bind_sockets`); they are ours to close."""
        for sock in socks:
            self._loop.add_reader(sock.fileno(), self._accept, sock)
            self._listeners.append(sock)
            addr = sock.getsockname()
            self.addresses.append((str(addr[0]), int(addr[1])))

    def _accept(self, listener: socket.socket) -> None:
        """The listening socket is readable: accept what is waiting (bounded per wake-up)."""
        loop = self._loop
        for _ in range(64):
            try:
                conn, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRORS:
                    self._out_of_descriptors(listener, exc)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # that peer gave up before we accepted it
                raise
            if self._exhausted_at:
                self._recovered()
            conn.setblocking(False)
            try:
                for level, opt, value in self._options:
                    conn.setsockopt(level, opt, value)
            except OSError:  # already reset by the peer: the transport will notice
                pass
            task = loop.create_task(self._setup(conn))
            self._setups.add(task)
            task.add_done_callback(self._setups.discard)

    def _out_of_descriptors(self, listener: socket.socket, exc: OSError) -> None:
        """accept() failed for lack of descriptors: stop accepting on ``listener`` for the
        back-off (100 ms doubling to 1 s), keep serving the connections we have, and log at
        most one line per second, with the count of failures since the last line.

        The waiting connections stay in the kernel's backlog and are accepted once descriptors
        are free again. asyncio's own server would log every attempt, once a second, with a
        traceback (docs/semantics.md, "File descriptors").
        """
        loop = self._loop
        now = loop.time()
        self.refusals += 1
        self._refused += 1
        if not self._exhausted_at:
            self._exhausted_at = now
        self._backoff = (min(self._backoff * 2, ACCEPT_BACKOFF_MAX) if self._backoff
                         else ACCEPT_BACKOFF_FIRST)
        if now - self._logged_at >= ACCEPT_BACKOFF_MAX:
            log.error("cannot accept connections: %s (open files limit %s); %d accepts failed "
                      "since the last report; pausing accepts for %g ms (up to %g s), the open "
                      "connections are still served", exc.strerror, _nofile_soft(),
                      self._refused, self._backoff * 1000, ACCEPT_BACKOFF_MAX)
            self._logged_at = now
            self._refused = 0
        loop.remove_reader(listener.fileno())
        loop.call_later(self._backoff, self._resume_accept, listener)

    def _recovered(self) -> None:
        """An accept worked after failures: the next failure starts the back-off afresh, and
        once a report is due (a second after the last line) and nothing failed since, one line
        says so."""
        self._backoff = 0.0
        if self._recovery is None:
            delay = max(0.0, self._logged_at + ACCEPT_BACKOFF_MAX - self._loop.time())
            self._recovery = self._loop.call_later(delay, self._report_recovery)

    def _report_recovery(self) -> None:
        self._recovery = None
        if self._backoff or self._stopped:  # failing again: its own lines report
            return
        now = self._loop.time()
        log.warning("accepting connections again after %.1f s short of descriptors (%d more "
                    "accepts failed since the last report)", now - self._exhausted_at,
                    self._refused)
        self._logged_at = now
        self._refused = 0
        self._exhausted_at = 0.0

    def _resume_accept(self, listener: socket.socket) -> None:
        if not self._stopped and listener.fileno() >= 0:
            self._loop.add_reader(listener.fileno(), self._accept, listener)

    async def _setup(self, conn: socket.socket) -> None:
        """Build the transport of one accepted socket; with TLS, this includes the handshake,
        driven by the loop with a timeout (it never blocks other connections)."""
        try:
            await self._loop.connect_accepted_socket(
                self._factory,
                conn,
                ssl=self._ssl,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT if self._ssl else None,
            )
        except (OSError, ssl.SSLError, asyncio.TimeoutError, asyncio.CancelledError) as exc:
            # A failed TLS handshake (no/unknown client certificate, plaintext on a TLS port,
            # silence until the timeout) or a peer gone early: only this socket is affected.
            if self._debug:
                log.debug("connection setup failed: %r", exc)
            conn.close()

    def stop(self) -> None:
        """Stop accepting and close the listening sockets (idempotent)."""
        self._stopped = True
        if self._recovery is not None:
            self._recovery.cancel()
            self._recovery = None
        for listener in self._listeners:
            if listener.fileno() >= 0:
                self._loop.remove_reader(listener.fileno())
                listener.close()

    async def drop_setups(self) -> None:
        """Cancel the connections still being set up (TLS handshakes in progress)."""
        for task in list(self._setups):
            task.cancel()
        if self._setups:
            await asyncio.gather(*self._setups, return_exceptions=True)
