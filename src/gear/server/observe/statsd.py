"""statsd metrics of the job server, with gear 0.16's keys (docs/gear-compat.md §3.13.3).

Owns: per request packet a timer and a counter named ``packet.<TYPE NAME>`` (``packet.UNKNOWN``
for a type outside the table), and the gauges ``queue.total``, ``queue.running`` and
``queue.waiting``.

Costs nothing when statsd is not configured: the engine then builds its broker without this
module. When it is configured, :meth:`Metrics.packet` is the broker's ``packet_hook``: the
broker frames every request packet once and hands it here, and each one is timed on its own
while the broker's own handler (``broker.dispatch``, or gear.Server's ``handlePacket`` when a
subclass overrides it) runs; no second decoder reads the bytes again. The broker's pipelined
fast path is not taken with a hook (its per-packet statsd sends cost far more anyway). A type
the protocol does not define closes its connection without a reply, as without a hook
(docs/protocol.md §1.6), unless gear.Server's override handles it. Gauges are sent every
:data:`GAUGE_INTERVAL` seconds instead of on every change, from the broker's counts.

gear's metric names are per packet type (``packet.ECHO_REQ`` is not a job event), so they are
fed from the broker's per-packet seam, not from its job lifecycle events (``JobEvents``).

The ``statsd`` package is imported lazily; without it, constructing :class:`Metrics` raises
:class:`~gear.errors.ConfigurationError` naming the ``statsd`` extra.

Must not import the engine, the transport or asyncio (the server passes itself and its loop
in), nor the broker at run time (it is reached through :class:`~gear.server.port.BrokerPort`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from gear.errors import ConfigurationError
from gear.protocol.packets import type_name

if TYPE_CHECKING:
    from gear.server.port import BrokerPort

#: Seconds between two gauge reports.
GAUGE_INTERVAL = 1.0

#: ``handler(peer, ptype, body)``: what handles a request packet (a broker ``packet_hook``).
PacketHandler = Callable[[Any, int, bytes], None]


class _Broker(Protocol):
    """What :meth:`Metrics.packet` needs of the broker, beyond :class:`BrokerPort`."""

    def dispatch(self, peer: Any, ptype: int, body: bytes) -> bool: ...

    def close(self, peer: Any) -> None: ...


class _Host(Protocol):
    broker: BrokerPort[Any]

    def running_jobs(self) -> int: ...


class Metrics:
    """A statsd reporter for one server.

    ``handler`` is what handles each request packet between the timer's start and stop
    (gear.Server's ``handlePacket`` hook); None is the broker's own ``dispatch``.
    """

    def __init__(
        self,
        host: str,
        port: int = 8125,
        prefix: str | None = None,
        client: Any = None,
        handler: PacketHandler | None = None,
    ) -> None:
        if client is None:
            try:
                import statsd
            except ImportError:
                raise ConfigurationError(
                    "statsd metrics need the 'statsd' package: pip install geartrain[statsd]"
                ) from None
            client = statsd.StatsClient(host, port, prefix=prefix)
        self.client = client
        self.handler = handler
        self._broker: _Broker | None = None
        self._server: _Host | None = None
        self._handle: Any = None

    # -- per packet (the broker's packet_hook) ---------------------------------------------

    def packet(self, peer: Any, ptype: int, body: bytes) -> None:
        """Handle one request packet (see ``handler``), timed and counted under its name."""
        start = time.perf_counter()
        handler = self.handler
        if handler is not None:
            handler(peer, ptype, body)
        else:
            broker = self._broker
            assert broker is not None, "start() binds the broker before any connection"
            if not broker.dispatch(peer, ptype, body):
                broker.close(peer)  # not a protocol type: closed without a reply (§1.6)
        ms = int((time.perf_counter() - start) * 1000)
        key = "packet." + type_name(ptype)
        client = self.client
        client.timing(key, ms)
        client.incr(key)

    # -- gauges ----------------------------------------------------------------------------

    def start(self, server: _Host, loop: Any) -> None:
        """Bind to ``server``'s broker and report gauges every :data:`GAUGE_INTERVAL` seconds
        on ``loop`` (an asyncio loop). Called after the broker exists, before listening."""
        self._server = server
        self._broker = server.broker  # type: ignore[assignment]  # the real broker: _Broker too

        def tick() -> None:
            self.report_gauges()
            self._handle = loop.call_later(GAUGE_INTERVAL, tick)

        self._handle = loop.call_later(GAUGE_INTERVAL, tick)

    def report_gauges(self) -> None:
        server = self._server
        if server is None:
            return
        total = server.broker.job_count()
        running = server.running_jobs()
        self.client.gauge("queue.total", total)
        self.client.gauge("queue.running", running)
        self.client.gauge("queue.waiting", max(0, total - running))

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.report_gauges()
