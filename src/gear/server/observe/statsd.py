"""statsd metrics of the job server, with gear 0.16's keys (docs/gear-compat.md §3.13.3).

Owns: per packet a timer and a counter named ``packet.<TYPE NAME>`` (``packet.UNKNOWN`` for a type
outside the table), and the gauges ``queue.total``, ``queue.running`` and ``queue.waiting``.

Costs nothing when statsd is not configured: the engine then never calls into this module
(it checks ``server.metrics is None`` once per read). When it is configured, a second, private
decoder per connection counts the packets of each read, and the time the broker spent on the read
is shared evenly between them (the broker handles a whole read in one call, so this is the finest
honest attribution). Gauges are sent at most every :data:`GAUGE_INTERVAL` seconds instead of on
every change, because counting running jobs walks the job table.

The ``statsd`` package is imported lazily; without it, constructing :class:`Metrics` raises
:class:`~gear.errors.ConfigurationError` naming the ``statsd`` extra.

Must not import the engine, the transport or asyncio (the server passes itself and its loop
in), nor the broker at run time (it is reached through :class:`~gear.server.port.BrokerPort`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from gear.errors import ConfigurationError, GearmanError
from gear.protocol.packets import AdminLine, Decoder, type_name

if TYPE_CHECKING:
    from gear.server.port import BrokerPort

#: Seconds between two gauge reports.
GAUGE_INTERVAL = 1.0


class _Host(Protocol):
    broker: BrokerPort[Any]

    def running_jobs(self) -> int: ...


class Metrics:
    """A statsd reporter for one server."""

    def __init__(
        self,
        host: str,
        port: int = 8125,
        prefix: str | None = None,
        client: Any = None,
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
        self._decoders: dict[Any, Decoder] = {}
        self._server: _Host | None = None
        self._handle: Any = None

    # -- per read --------------------------------------------------------------------------

    def feed(self, broker: BrokerPort[Any], peer: Any, data: bytes) -> None:
        """``broker.feed(peer, data)``, timed, and the packets it contained counted."""
        start = time.perf_counter()
        broker.feed(peer, data)
        elapsed = time.perf_counter() - start
        decoder = self._decoders.get(peer)
        if decoder is None:
            decoder = self._decoders[peer] = Decoder(unknown_types=True)
        keys: list[str] = []
        try:
            for event in decoder.feed(data):
                if not isinstance(event, AdminLine):
                    keys.append("packet." + type_name(event.ptype))
        except GearmanError:
            # The broker has already answered the bad input and is closing the peer.
            keys.append("packet.UNKNOWN")
            self._decoders.pop(peer, None)
        if not keys:
            return
        ms = int(elapsed * 1000 / len(keys))
        client = self.client
        for key in keys:
            client.timing(key, ms)
            client.incr(key)

    def forget(self, peer: Any) -> None:
        """The connection is gone."""
        self._decoders.pop(peer, None)

    # -- gauges ----------------------------------------------------------------------------

    def start(self, server: _Host, loop: Any) -> None:
        """Report gauges every :data:`GAUGE_INTERVAL` seconds on ``loop`` (an asyncio loop)."""
        self._server = server

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
