"""The engine and transport on their own: listening, batching, timers, bad input, backpressure,
shutdown.

These tests drive :class:`gear.server.engine.JobServer` with a small stand-in broker
(:class:`StubBroker`) that implements the broker interface (:class:`gear.server.port.BrokerPort`,
checked by mypy below), so that what is tested here is the engine's contract, not scheduling.
End-to-end behaviour with the real broker is in tests/interop/test_server_*.py and
test_gear_server.py.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gear import constants as c
from gear.errors import GearmanError, ServerStartError
from gear.protocol.packets import AdminLine, Decoder, request, response
from gear.server.config import ServerConfig
from gear.server.engine import JobServer, new_event_loop
from gear.server.port import BrokerFactory, BrokerPort
from gear.server.storage import MemoryStorage, StorageError, StoredJob
from gear.server.transport import _Connection, bind_sockets

# -- a stand-in broker ------------------------------------------------------------------------


class StubPeer:
    def __init__(self, host: str, port: int, fd: int, ssl_subject: str | None) -> None:
        self.host = host
        self.port = port
        self.fd = fd
        self.ssl_subject = ssl_subject
        self.out: list[bytes] = []
        self.closing = False
        self.decoder = Decoder(max_packet_size=1024)
        self.functions: list[bytes] = []


class StubJob:
    def __init__(self, running: bool) -> None:
        self.running = running


class StubBroker:
    """ECHO_REQ -> ECHO_RES; admin lines: ``timer <ms>``, ``big <n>``, ``run``, ``done``,
    ``shutdown [graceful]``, ``whoami``; bad input -> ERROR and close, like gearmand."""

    instances: list[StubBroker] = []

    def __init__(
        self,
        config: Any,
        clock: Callable[[], float],
        *,
        admin: Callable[[Any, Any, bytes], None] | None = None,
        store_batched: Callable[[list[Any], list[Any]], None] | None = None,
        remove: Callable[[int], None] | None = None,
        packet_hook: Callable[[Any, int, bytes], None] | None = None,
        bury: Callable[[Any], None] | None = None,
        revive: Callable[[int], None] | None = None,
    ) -> None:
        assert packet_hook is None, "the stand-in has no packet hook"
        self.config = config
        self.clock = clock
        self.admin = admin
        self.store_batched = store_batched
        self.remove = remove
        self.dirty: set[StubPeer] = set()
        self.shutdown_requested: str | None = None
        self.peers: list[StubPeer] = []
        self.disconnected: list[StubPeer] = []
        self.timers: list[tuple[float, StubPeer]] = []
        self.jobs: dict[bytes, StubJob] = {}
        self.replayed: list[Any] = []
        #: Every stored_batch() answer: (jobs, exc).
        self.batches: list[tuple[list[Any], BaseException | None]] = []
        self.feeds = 0
        self.draining = False
        #: Set when the server called connect / disconnect / drain: tests await these instead
        #: of polling.
        self.events = {name: asyncio.Event() for name in ("connect", "disconnect", "drain")}
        StubBroker.instances.append(self)

    def drain(self) -> None:
        self.draining = True
        self.events["drain"].set()

    def connect(self, host: str, port: int, fd: int, ssl_subject: str | None = None) -> StubPeer:
        peer = StubPeer(host, port, fd, ssl_subject)
        self.peers.append(peer)
        self.events["connect"].set()
        return peer

    def disconnect(self, peer: StubPeer) -> None:
        self.disconnected.append(peer)
        self.timers = [t for t in self.timers if t[1] is not peer]
        self.events["disconnect"].set()

    def _send(self, peer: StubPeer, data: bytes) -> None:
        peer.out.append(data)
        self.dirty.add(peer)

    def feed(self, peer: StubPeer, data: bytes) -> None:
        self.feeds += 1
        try:
            for event in peer.decoder.feed(data):
                if isinstance(event, AdminLine):
                    self._admin(peer, event.line)
                elif event.ptype == c.ECHO_REQ:
                    self._send(peer, response(c.ECHO_RES, event.body))
                else:
                    self._send(peer, response(c.ERROR, b"ERR", b"unexpected"))
        except GearmanError:
            self._send(peer, response(c.ERROR, b"ERR", b"bad input"))
            peer.closing = True

    def _admin(self, peer: StubPeer, line: bytes) -> None:
        words = line.split()
        cmd = words[0] if words else b""
        if cmd == b"timer":
            self.timers.append((self.clock() + int(words[1]) / 1000, peer))
        elif cmd == b"big":
            self._send(peer, b"x" * int(words[1]))
        elif cmd == b"run":
            self.jobs[b"H:%d" % len(self.jobs)] = StubJob(True)
            self._send(peer, b"OK\n")
        elif cmd == b"done":
            self.jobs.clear()
            self._send(peer, b"OK\n")
        elif cmd == b"shutdown":
            self.shutdown_requested = "graceful" if b"graceful" in words else "immediate"
            self._send(peer, b"OK\n")
        elif cmd == b"whoami":
            self._send(peer, f"{peer.host} {peer.ssl_subject}\n".encode())
        else:
            self._send(peer, b"ERR UNKNOWN_COMMAND\n")

    def next_deadline(self) -> float | None:
        return min((t[0] for t in self.timers), default=None)

    def run_timers(self) -> None:
        now = self.clock()
        due = [t for t in self.timers if t[0] <= now]
        self.timers = [t for t in self.timers if t[0] > now]
        for _when, peer in due:
            self._send(peer, b"TIMER\n")

    def replay(self, jobs: Iterable[Any]) -> None:
        assert not self.peers, "replay must happen before any connection"
        self.replayed.extend(jobs)

    def replay_dead(self, records: list[Any]) -> None:
        self.replayed_dead = list(records)

    def stored_batch(self, jobs: Iterable[Any], exc: BaseException | None) -> None:
        """The store answered: here a "job" is the peer to tell, as ``STORED``."""
        jobs = list(jobs)
        self.batches.append((jobs, exc))
        for peer in jobs:
            self._send(peer, b"STORED\n")

    def job_count(self) -> int:
        return len(self.jobs)

    def run_deferred(self) -> bool:
        return False

    def running_count(self) -> int:
        return sum(1 for job in self.jobs.values() if job.running)


def _implements_the_port(broker: StubBroker) -> BrokerPort[StubPeer]:
    return broker  # mypy checks that the stand-in keeps to the interface


_FACTORY: BrokerFactory = StubBroker  # and that its constructor is the engine's


# -- helpers ----------------------------------------------------------------------------------


@asynccontextmanager
async def serving(**kwargs: Any) -> AsyncIterator[JobServer]:
    config = ServerConfig(**{"host": "127.0.0.1", "port": 0, **kwargs})
    server = JobServer(config, broker_class=StubBroker)
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown(graceful=False)


async def open_conn(port: int, host: str = "127.0.0.1", **kw: Any) -> tuple[Any, Any]:
    if "sock" in kw:
        return await asyncio.wait_for(asyncio.open_connection(**kw), 5)
    return await asyncio.wait_for(asyncio.open_connection(host, port, **kw), 5)


async def echo(reader: Any, writer: Any, payload: bytes) -> bytes:
    writer.write(request(c.ECHO_REQ, payload))
    head = await asyncio.wait_for(reader.readexactly(12), 5)
    magic, ptype, size = struct.unpack("!4sII", head)
    assert (magic, ptype) == (c.RES, c.ECHO_RES)
    return bytes(await reader.readexactly(size))


def run(coro: Awaitable[None], loop_kind: str = "asyncio") -> None:
    """Run a test coroutine on a fresh loop of that kind ("asyncio" or "uvloop")."""
    if loop_kind == "uvloop":
        pytest.importorskip("uvloop", reason="the uvloop extra is not installed")
    loop = new_event_loop(loop_kind == "uvloop")
    try:
        loop.run_until_complete(asyncio.wait_for(coro, 20))
    finally:
        loop.close()


#: The network layer must behave the same on both event loops geard can use.
LOOPS = pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])


# -- tests ------------------------------------------------------------------------------------


@LOOPS
def test_echo_and_pipelined_requests_in_one_read(loop_kind: str) -> None:
    async def main() -> None:
        async with serving() as server:
            reader, writer = await open_conn(server.port)
            assert await echo(reader, writer, b"hello") == b"hello"
            # 500 requests in one segment: every reply arrives, in order.
            writer.write(b"".join(request(c.ECHO_REQ, b"%d" % i) for i in range(500)))
            expected = b"".join(response(c.ECHO_RES, b"%d" % i) for i in range(500))
            assert await asyncio.wait_for(reader.readexactly(len(expected)), 5) == expected
            writer.close()

    run(main(), loop_kind)


def test_one_write_per_dirty_peer_per_broker_call(monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[bytes] = []

    async def main() -> None:
        async with serving() as server:
            reader, writer = await open_conn(server.port)
            await echo(reader, writer, b"warm-up")
            conn = next(iter(server.connections.values()))
            real_write = conn.transport.write  # type: ignore[union-attr]

            def spy(data: bytes) -> None:
                writes.append(data)
                real_write(data)

            monkeypatch.setattr(conn.transport, "write", spy)
            payload = b"".join(request(c.ECHO_REQ, b"%d" % i) for i in range(100))
            before = server.broker.feeds  # type: ignore[attr-defined]
            writer.write(payload)
            expected = b"".join(response(c.ECHO_RES, b"%d" % i) for i in range(100))
            assert await asyncio.wait_for(reader.readexactly(len(expected)), 5) == expected
            feeds = server.broker.feeds - before  # type: ignore[attr-defined]
            # At most one write per read (per loop pass, in fact), however many replies.
            assert 1 <= len(writes) <= feeds
            writer.close()

    run(main())


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return False


class FakeLoop:
    def __init__(self) -> None:
        self.soon: list[Callable[[], None]] = []

    def call_soon(self, fn: Callable[[], None]) -> None:
        self.soon.append(fn)


def _fake_server() -> tuple[JobServer, FakeLoop]:
    """A JobServer with a real broker, a loop that only records call_soon, no sockets."""
    from gear.server.broker import Broker, BrokerConfig

    server = JobServer(ServerConfig(port=0))
    server.broker = Broker(BrokerConfig(handle_prefix=b"H:t"))
    loop = FakeLoop()
    server._loop = loop  # type: ignore[assignment]
    return server, loop


def _attach(server: JobServer, port: int) -> tuple[_Connection, FakeTransport]:
    """A connection of ``server`` whose writes are recorded."""
    conn = _Connection(server)
    transport = FakeTransport()
    conn.transport = transport  # type: ignore[assignment]
    conn.peer = server.broker.connect("127.0.0.1", port, port)
    server.connections[conn.peer] = conn
    return conn, transport


def test_a_workers_own_reply_goes_out_at_once_other_output_at_the_end_of_the_pass() -> None:
    server, loop = _fake_server()
    (worker, wt), (client, ct) = _attach(server, 1), _attach(server, 2)
    worker.data_received(request(c.CAN_DO, b"f") + request(c.GRAB_JOB))
    assert wt.writes == [response(c.NO_JOB)] and loop.soon == []  # written at once
    worker.data_received(request(c.PRE_SLEEP))
    client.data_received(request(c.SUBMIT_JOB, b"f", b"", b"x"))
    # The client's JOB_CREATED and the worker's NOOP wait for the pass's single flush.
    assert ct.writes == [] and wt.writes == [response(c.NO_JOB)] and len(loop.soon) == 1
    loop.soon.pop()()
    assert ct.writes == [response(c.JOB_CREATED, b"H:t:1")]
    assert wt.writes[-1] == response(c.NOOP)
    worker.data_received(request(c.GRAB_JOB))  # assignment: at once again
    assert wt.writes[-1] == response(c.JOB_ASSIGN, b"H:t:1", b"f", b"x") and loop.soon == []
    worker.data_received(request(c.WORK_COMPLETE, b"H:t:1", b"r"))  # output for the client
    assert ct.writes[-1] == response(c.JOB_CREATED, b"H:t:1") and len(loop.soon) == 1
    loop.soon.pop()()
    assert ct.writes[-1] == response(c.WORK_COMPLETE, b"H:t:1", b"r")
    # A result and the next grab in one read: the worker's JOB_ASSIGN is written at once, the
    # result for the client at the end of the pass.
    client.data_received(request(c.SUBMIT_JOB, b"f", b"", b"y"))
    loop.soon.pop()()
    worker.data_received(request(c.GRAB_JOB))
    worker.data_received(request(c.WORK_COMPLETE, b"H:t:2", b"r2") + request(c.GRAB_JOB))
    assert wt.writes[-1] == response(c.NO_JOB) and len(loop.soon) == 1
    assert ct.writes[-1] == response(c.JOB_CREATED, b"H:t:2")
    loop.soon.pop()()
    assert ct.writes[-1] == response(c.WORK_COMPLETE, b"H:t:2", b"r2")
    assert server.broker.dirty == set()


def test_a_large_read_is_answered_piece_by_piece_in_order() -> None:
    """A pipelining client gets the replies to the first part of a large read before the
    server has worked through the rest of it (engine._PIECE bytes at a time), while it is the
    only connection sending; otherwise, and with storage, a read is answered in one write."""
    from gear.server import engine

    server, loop = _fake_server()
    server.piecewise = True  # what start() sets without storage
    (conn, transport), (other, _) = _attach(server, 1), _attach(server, 2)
    one = request(c.SUBMIT_JOB_BG, b"f", b"", b"x" * 50)
    count = 3 * engine._PIECE // len(one) + 7  # pieces cut packets at odd places
    read = request(c.ECHO_REQ, b"first") + one * count + request(c.ECHO_REQ, b"end")
    expected = (response(c.ECHO_RES, b"first")
                + b"".join(response(c.JOB_CREATED, b"H:t:%d" % n) for n in range(1, count + 1))
                + response(c.ECHO_RES, b"end"))

    conn.data_received(read)  # its first read: whole
    assert transport.writes == [] and len(loop.soon) == 1
    loop.soon.pop()()
    assert transport.writes == [expected]

    transport.writes.clear()
    conn.data_received(read)  # its second in a row: pieces
    assert len(transport.writes) == 3  # one write per full piece, before the read is done
    loop.soon.pop()()
    assert len(transport.writes) == 4 and server.broker.dirty == set()
    data = b"".join(transport.writes)
    assert data[:len(response(c.ECHO_RES, b"first"))] == response(c.ECHO_RES, b"first")
    assert data.count(b"\x00RES\x00\x00\x00\x08") == count

    transport.writes.clear()
    other.data_received(request(c.ECHO_REQ, b"hi"))  # another connection in between
    conn.data_received(read)
    assert transport.writes == []
    loop.soon.pop()()
    assert len(transport.writes) == 1

    server.piecewise = False  # with storage
    transport.writes.clear()
    conn.data_received(read)
    conn.data_received(read)
    loop.soon.pop()()
    assert len(transport.writes) == 1


def test_all_addresses_listen_on_ipv4_and_ipv6_on_the_same_port() -> None:
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("this host has no IPv6 loopback")  # environment, not missing work

    async def main() -> None:
        async with serving(host=None) as server:
            families = {len(addr[0].split(":")) > 1 for addr in server.addresses}
            assert families == {False, True}
            assert len({port for _host, port in server.addresses}) == 1
            r4, w4 = await open_conn(server.port, "127.0.0.1")
            r6, w6 = await open_conn(server.port, "::1")
            assert await echo(r4, w4, b"v4") == b"v4"
            assert await echo(r6, w6, b"v6") == b"v6"
            hosts = {p.host for p in server.broker.peers}  # type: ignore[attr-defined]
            assert hosts == {"127.0.0.1", "::1"}  # real addresses, not ::ffff:127.0.0.1
            w4.close()
            w6.close()

    run(main())


@LOOPS
def test_accepted_sockets_get_nodelay_and_keepalive_tunables(loop_kind: str) -> None:
    async def main() -> None:
        options = {"tcp_keepidle": 61, "tcp_keepintvl": 17, "tcp_keepcnt": 4}
        async with serving(keepalive=True, **options) as server:
            reader, writer = await open_conn(server.port)
            await echo(reader, writer, b"x")
            conn = next(iter(server.connections.values()))
            sock = conn.transport.get_extra_info("socket")  # type: ignore[union-attr]
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 61
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 17
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4
            writer.close()

    run(main(), loop_kind)


@LOOPS
def test_broker_timer_fires_without_traffic(loop_kind: str) -> None:
    async def main() -> None:
        async with serving() as server:
            reader, writer = await open_conn(server.port)
            writer.write(b"timer 300\ntimer 30\n")
            loop = asyncio.get_running_loop()
            start = loop.time()
            assert await asyncio.wait_for(reader.readline(), 5) == b"TIMER\n"
            first = loop.time() - start
            assert await asyncio.wait_for(reader.readline(), 5) == b"TIMER\n"
            second = loop.time() - start
            # The earlier deadline re-armed the timer: it fired long before the later one.
            assert 0.02 <= first < 0.25 <= second
            writer.close()

    run(main(), loop_kind)


BAD_INPUTS = {
    "wrong magic": b"\x00XYZ" + struct.pack("!II", c.ECHO_REQ, 0),
    "unknown type": b"\x00REQ" + struct.pack("!II", 99, 0),
    "oversize": b"\x00REQ" + struct.pack("!II", c.ECHO_REQ, 2**31),
}


@LOOPS
@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_packet_closes_only_that_connection(name: str, loop_kind: str) -> None:
    async def main() -> None:
        async with serving() as server:
            good_r, good_w = await open_conn(server.port)
            bad_r, bad_w = await open_conn(server.port)
            bad_w.write(request(c.ECHO_REQ, b"before") + BAD_INPUTS[name])
            rest = await asyncio.wait_for(bad_r.read(), 5)  # EOF: the server closed it
            assert rest.startswith(response(c.ECHO_RES, b"before"))  # earlier replies flushed
            assert response(c.ERROR, b"ERR", b"bad input") in rest
            assert await echo(good_r, good_w, b"still here") == b"still here"
            good_w.close()

    run(main(), loop_kind)


@LOOPS
def test_truncated_packet_and_disconnect_mid_packet(loop_kind: str) -> None:
    async def main() -> None:
        async with serving() as server:
            good_r, good_w = await open_conn(server.port)
            _bad_r, bad_w = await open_conn(server.port)
            bad_w.write(request(c.ECHO_REQ, b"x" * 100)[:50])  # half a packet, then gone
            await bad_w.drain()
            bad_w.close()
            broker = server.broker
            await asyncio.wait_for(broker.events["disconnect"].wait(), 5)  # type: ignore[attr-defined]
            assert len(broker.disconnected) == 1  # type: ignore[attr-defined]
            assert await echo(good_r, good_w, b"fine") == b"fine"
            assert len(server.connections) == 1
            good_w.close()

    run(main(), loop_kind)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=st.binary(min_size=1, max_size=300))
def test_random_bytes_never_disturb_other_connections(garbage: bytes) -> None:
    async def main() -> None:
        async with serving() as server:
            good_r, good_w = await open_conn(server.port)
            _bad_r, bad_w = await open_conn(server.port)
            bad_w.write(garbage)
            await bad_w.drain()
            bad_w.close()
            assert await echo(good_r, good_w, b"ok") == b"ok"
            good_w.close()

    run(main())


def test_broker_exception_drops_only_that_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with serving() as server:
            good_r, good_w = await open_conn(server.port)
            await echo(good_r, good_w, b"a")
            broker = server.broker
            real_feed = broker.feed

            def feed(peer: Any, data: bytes) -> None:
                if b"boom" in data:
                    raise RuntimeError("bug")
                real_feed(peer, data)

            monkeypatch.setattr(broker, "feed", feed)
            bad_r, bad_w = await open_conn(server.port)
            bad_w.write(b"boom\n")
            assert await asyncio.wait_for(bad_r.read(), 5) == b""
            assert await echo(good_r, good_w, b"b") == b"b"
            good_w.close()

    run(main())


SIZE = 24 * 1024 * 1024


@LOOPS
def test_backpressure_pauses_reading_a_peer_that_does_not_read(
        loop_kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    called = {"pause_writing": asyncio.Event(), "resume_writing": asyncio.Event()}
    for name in called:
        original = getattr(_Connection, name)

        def hook(self: _Connection, original: Any = original, name: str = name) -> None:
            original(self)
            calls.append(name)
            called[name].set()

        monkeypatch.setattr(_Connection, name, hook)

    async def main() -> None:
        async with serving(write_high_water=64 * 1024) as server:
            # A small receive buffer, and far more output than the kernel buffers can hold
            # (send buffers autotune up to a few MiB) while the client is not reading.
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.connect(("127.0.0.1", server.port))
            reader, writer = await open_conn(0, sock=sock, limit=2**26)
            await asyncio.wait_for(server.broker.events["connect"].wait(), 5)  # type: ignore[attr-defined]
            conn: _Connection = next(iter(server.connections.values()))
            transport = conn.transport
            assert transport is not None
            writer.write(b"big %d\n" % SIZE)
            await writer.drain()
            await asyncio.wait_for(called["pause_writing"].wait(), 5)
            assert not transport.is_reading()  # the peer that does not read is not read either
            got = await asyncio.wait_for(reader.readexactly(SIZE), 10)
            assert got == b"x" * SIZE
            await asyncio.wait_for(called["resume_writing"].wait(), 5)
            assert transport.is_reading() and calls == ["pause_writing", "resume_writing"]
            assert await echo(reader, writer, b"after") == b"after"
            writer.close()

    run(main(), loop_kind)


@LOOPS
def test_graceful_shutdown_waits_for_running_jobs_and_stops_accepting(loop_kind: str) -> None:
    async def main() -> None:
        async with serving() as server:
            reader, writer = await open_conn(server.port)
            writer.write(b"run\n")
            assert await reader.readline() == b"OK\n"
            assert not server.broker.draining  # type: ignore[attr-defined]
            server.request_shutdown(graceful=True)
            # The shutdown task closes the listeners, then drains the broker: from now on it
            # hands out nothing new.
            await asyncio.wait_for(server.broker.events["drain"].wait(), 5)  # type: ignore[attr-defined]
            with pytest.raises(OSError):
                await open_conn(server.port)
            # Still serving the existing connection while the job runs.
            assert await echo(reader, writer, b"alive") == b"alive"
            assert not server.closed
            writer.write(b"done\n")
            assert await reader.readline() == b"OK\n"
            await asyncio.wait_for(server.wait_closed(), 5)
            assert await asyncio.wait_for(reader.read(), 5) == b""

    run(main(), loop_kind)


def test_graceful_shutdown_gives_up_after_its_timeout() -> None:
    async def main() -> None:
        async with serving(shutdown_timeout=0.1) as server:
            reader, writer = await open_conn(server.port)
            writer.write(b"run\n")
            assert await reader.readline() == b"OK\n"
            await asyncio.wait_for(server.shutdown(graceful=True), 5)
            assert server.closed
            assert await asyncio.wait_for(reader.read(), 5) == b""

    run(main())


@pytest.mark.parametrize("how", [b"shutdown\n", b"shutdown graceful\n"])
def test_admin_shutdown_request_stops_the_server(how: bytes) -> None:
    async def main() -> None:
        async with serving() as server:
            reader, writer = await open_conn(server.port)
            writer.write(how)
            assert await reader.readline() == b"OK\n"
            await asyncio.wait_for(server.wait_closed(), 5)
            assert await asyncio.wait_for(reader.read(), 5) == b""

    run(main())


def test_port_in_use_is_a_clear_start_error() -> None:
    async def main() -> None:
        async with serving() as first:
            second = JobServer(
                ServerConfig(host="127.0.0.1", port=first.port),
                broker_class=StubBroker,
            )
            with pytest.raises(ServerStartError, match="cannot listen"):
                await second.start()

    run(main())


def test_bind_port_zero_gives_every_family_the_same_port() -> None:
    socks = bind_sockets("localhost", 0, 8)
    try:
        assert len({s.getsockname()[1] for s in socks}) == 1
    finally:
        for s in socks:
            s.close()


# -- storage wiring ---------------------------------------------------------------------------


class FailingStorage(MemoryStorage):
    def load(self) -> list[StoredJob]:
        raise StorageError("database is corrupt")


def test_storage_failure_at_start_is_a_start_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gear.server.engine._open_storage", lambda url: FailingStorage())

    async def main() -> None:
        server = JobServer(
            ServerConfig(host="127.0.0.1", port=0, queue="sqlite:///x.db"),
            broker_class=StubBroker,
        )
        with pytest.raises(ServerStartError, match="database is corrupt"):
            await server.start()
        assert server.addresses == []  # never listened

    run(main())


def test_bad_queue_url_is_a_configuration_error() -> None:
    async def main() -> None:
        server = JobServer(ServerConfig(host="127.0.0.1", port=0, queue="nosuch://x"))
        with pytest.raises(GearmanError, match="unknown queue"):
            await server.start()

    run(main())


def test_stored_jobs_are_replayed_before_listening_and_stores_flush_peers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage = MemoryStorage()
    storage.add([StoredJob(1, b"f", b"u1", b"d1"), StoredJob(2, b"f", b"u2", b"d2")])
    monkeypatch.setattr("gear.server.engine._open_storage", lambda url: storage)

    async def main() -> None:
        async with serving(queue="sqlite:///unused.db") as server:
            broker = server.broker
            assert [j.key for j in broker.replayed] == [1, 2]  # type: ignore[attr-defined]
            store_batched = broker.store_batched  # type: ignore[attr-defined]
            remove = broker.remove  # type: ignore[attr-defined]
            assert store_batched is not None and remove is not None
            assert broker.admin is not None  # type: ignore[attr-defined]
            reader, writer = await open_conn(server.port)
            await echo(reader, writer, b"x")
            peer = broker.peers[0]  # type: ignore[attr-defined]
            # What the broker does at the end of a feed that made a durable job: hand the
            # record to the store, with the job (here: the peer to answer) as its token.
            store_batched([StoredJob(3, b"f", b"u3", b"d3")], [peer])
            # The writer answers broker.stored_batch, then its after_batch flushes the dirty
            # peer without any further traffic.
            assert await asyncio.wait_for(reader.readline(), 5) == b"STORED\n"
            assert broker.batches == [([peer], None)]  # type: ignore[attr-defined]
            remove(1)
            writer.close()
        assert [j.key for j in storage.load()] == [2, 3]  # remove flushed at shutdown

    run(main())


@LOOPS
def test_half_closed_client_gets_its_replies_before_the_close(loop_kind: str) -> None:
    async def main() -> None:
        async with serving() as server:
            for _ in range(20):  # data and EOF often arrive in one read cycle
                reader, writer = await open_conn(server.port)
                writer.write(b"whoami\n" * 3)
                writer.write_eof()  # like `echo whoami | nc -N host port`
                assert await asyncio.wait_for(reader.read(), 5) == b"127.0.0.1 None\n" * 3
                writer.close()

    run(main(), loop_kind)


def test_immediate_request_cuts_a_graceful_shutdown_short() -> None:
    async def main() -> None:
        async with serving(shutdown_timeout=60) as server:
            reader, writer = await open_conn(server.port)
            writer.write(b"run\n")
            assert await reader.readline() == b"OK\n"
            server.request_shutdown(graceful=True)
            await asyncio.wait_for(server.broker.events["drain"].wait(), 5)  # type: ignore[attr-defined]
            assert await echo(reader, writer, b"alive") == b"alive"  # a loop pass later
            assert not server.closed  # waiting for the running job
            server.request_shutdown(graceful=False)  # e.g. SIGINT after SIGTERM
            await asyncio.wait_for(server.wait_closed(), 2)
            assert await asyncio.wait_for(reader.read(), 5) == b""

    run(main())
