"""statsd metrics as the broker's packet hook: gear's keys, and the broker's answers unchanged."""

from __future__ import annotations

import struct
from typing import Any

from gear import constants as c
from gear.protocol.packets import request, response
from gear.server.admin import run_command
from gear.server.broker import Broker, BrokerConfig
from gear.server.observe.statsd import Metrics


class FakeClient:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, int]] = []

    def timing(self, key: str, ms: int) -> None:
        self.sent.append(("timing", key, ms))

    def incr(self, key: str) -> None:
        self.sent.append(("incr", key, 1))

    def gauge(self, key: str, value: int) -> None:
        self.sent.append(("gauge", key, value))


class Host:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def running_jobs(self) -> int:
        return self.broker.running_count()


class NoLoop:
    def call_later(self, delay: float, fn: Any) -> None:
        return None


def _served(handler: Any = None) -> tuple[Metrics, FakeClient, Broker]:
    client = FakeClient()
    metrics = Metrics("unused", client=client, handler=handler)
    broker = Broker(BrokerConfig(handle_prefix=b"H:t"), admin=run_command,
                    packet_hook=metrics.packet)
    metrics.start(Host(broker), NoLoop())
    return metrics, client, broker


def test_every_request_packet_is_timed_and_counted_and_answered_as_without_metrics() -> None:
    _metrics, client, broker = _served()
    peer = broker.connect("127.0.0.1", 1, 1)
    broker.feed(peer, request(c.ECHO_REQ, b"x") + request(c.SUBMIT_JOB_BG, b"f", b"", b"d")
                + b"status\n")
    assert b"".join(peer.out) == (response(c.ECHO_RES, b"x") + response(c.JOB_CREATED, b"H:t:1")
                                  + b"f\t1\t0\t0\n.\n")
    assert [(kind, key) for kind, key, _ in client.sent] == [
        ("timing", "packet.ECHO_REQ"), ("incr", "packet.ECHO_REQ"),
        ("timing", "packet.SUBMIT_JOB_BG"), ("incr", "packet.SUBMIT_JOB_BG"),
    ]  # admin lines are not packets
    client.sent.clear()
    _metrics.report_gauges()
    assert client.sent == [("gauge", "queue.total", 1), ("gauge", "queue.running", 0),
                           ("gauge", "queue.waiting", 1)]


def test_an_unknown_type_is_counted_and_closes_the_connection_without_a_reply() -> None:
    _metrics, client, broker = _served()
    peer = broker.connect("127.0.0.1", 1, 1)
    unknown = b"\x00REQ" + struct.pack("!II", 99, 0)
    data = request(c.ECHO_REQ, b"x") + unknown + request(c.ECHO_REQ, b"never")
    broker.feed(peer, data)
    assert peer.closing and peer in broker.dirty
    assert b"".join(peer.out) == response(c.ECHO_RES, b"x")
    plain = Broker(BrokerConfig(handle_prefix=b"H:t"), admin=run_command)  # what geard does
    other = plain.connect("127.0.0.1", 1, 1)
    plain.feed(other, data)
    assert other.closing and other.out == peer.out
    assert ("incr", "packet.UNKNOWN", 1) in client.sent


def test_a_handler_runs_inside_the_timer_in_place_of_dispatch() -> None:
    seen: list[int] = []
    _metrics, client, broker = _served(handler=lambda peer, ptype, body: seen.append(ptype))
    peer = broker.connect("127.0.0.1", 1, 1)
    broker.feed(peer, request(c.ECHO_REQ, b"x"))
    assert seen == [c.ECHO_REQ] and peer.out == []
    assert ("incr", "packet.ECHO_REQ", 1) in client.sent
