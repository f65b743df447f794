"""The harp port's connection object without sockets: its fields, its line framing (one read
holding one whole request is served at once, other reads go through the line queue: the
same replies), and when it asks the engine for a flush pass (only after a request or a
result that called the broker)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gear.server.broker import Broker, BrokerConfig
from gear.server.harp.listener import HarpConnection, HarpListener
from gear.server.transport import OutputLimits, _Connection

UNKNOWN = b"00000000-0000-4000-8000-000000000000"
STATUS = b'{"harpcaller":1,"get_status":"%s"}' % UNKNOWN
INVALID = b'{"error":{"type":"invalid_jobid","message":"no job with this ID"}}\n'


class FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def set_write_buffer_limits(self, high: int) -> None:
        self.high = high

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def listener(flushes: list[int] | None = None, **kw: Any) -> HarpListener:
    kick = (lambda: flushes.append(1)) if flushes is not None else (lambda: None)
    return HarpListener(Broker(BrokerConfig(), time.time), {}, kick, retention=60.0, **kw)


def connect(harp: HarpListener) -> tuple[HarpConnection, FakeTransport]:
    conn = HarpConnection(harp)
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def test_a_connection_has_every_field_of_the_gearman_ports_connection() -> None:
    # HarpConnection sets _Connection's fields itself (no super().__init__): all of them, to
    # what _Connection.__init__ would set, the high-water mark lowered to the limits.
    limits = OutputLimits(hard=1000, soft=0, soft_seconds=0.0)
    conn = HarpConnection(listener(limits=limits, high_water=4096))
    ref = _Connection(None, False, 4096, limits)  # type: ignore[arg-type]
    for name in _Connection.__slots__:
        assert hasattr(conn, name) == hasattr(ref, name), name
        if name not in ("_host", "_data") and hasattr(ref, name):
            assert getattr(conn, name) == getattr(ref, name), name
    assert conn._high_water == 1000
    assert HarpConnection(listener(high_water=4096))._high_water == 4096


def test_replies_are_the_same_however_the_requests_are_read() -> None:
    reads_of = {
        "one read": [STATUS + b"\n"],
        "crlf": [STATUS + b"\r\n"],
        "split": [STATUS[:10], STATUS[10:] + b"\n"],
        "byte by byte": [bytes([b]) for b in STATUS + b"\n"],
        "blank lines first": [b"\n", b"\r\n", STATUS + b"\n"],
        "two in one read": [STATUS + b"\n" + STATUS + b"\n"],
    }
    expected = {"two in one read": [INVALID, INVALID]}

    async def run() -> None:
        harp = listener()
        for what, reads in reads_of.items():
            conn, transport = connect(harp)
            for data in reads:
                conn.data_received(data)
            await asyncio.sleep(0)  # a second queued request is served on the next pass
            assert transport.out == expected.get(what, [INVALID]), what
            assert not transport.closed, what
            assert conn.eof_received() is False  # nothing left to answer: closed at once

    asyncio.run(run())


def test_blank_lines_then_eof_close_the_connection() -> None:
    conn, transport = connect(listener())
    conn.data_received(b"\n")
    assert not transport.closed and transport.out == []
    assert conn.eof_received() is False


def test_a_flush_pass_only_after_the_broker_was_called() -> None:
    async def run() -> None:
        flushes: list[int] = []
        harp = listener(flushes)
        connect(harp)[0].data_received(STATUS + b"\n")
        assert flushes == [1]  # the first: the service's own set-up called the broker
        flushes.clear()
        conn, transport = connect(harp)
        conn.data_received(STATUS + b"\n")  # answered from the records: no broker call
        assert transport.out == [INVALID] and flushes == []
        conn, transport = connect(harp)
        conn.data_received(b'{"harpcaller":1,"host":"h","procedure":"p","arguments":[]}\n')
        assert transport.out[0].startswith(b'{"harpcaller":1,"job_id":"')
        assert flushes == [1]  # the submit: the engine flushes (a worker may need a NOOP)
        conn, transport = connect(harp)
        conn.data_received(STATUS + b"\n")
        assert flushes == [1]

    asyncio.run(run())
