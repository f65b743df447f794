"""Bad input against a live server with the real broker: only the offender is affected.

A client and a worker with a job in progress stay connected throughout; after every kind of
garbage they must still work (the job completes, new submissions are answered).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gear import constants as c
from gear.protocol.messages import Priority
from gear.protocol.packets import request
from gear.server.broker import BrokerConfig
from gear.server.config import ServerConfig
from gear.server.engine import JobServer
from gear.server.gear_server import Server, queued_jobs
from tests.support.raw import connect, read_packet


class Bystanders:
    """A client waiting on a foreground job that a worker holds, on the same server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.client = connect(port)
        self.worker = connect(port)
        self.worker.sendall(request(c.CAN_DO, b"work"))
        self.rounds = 0

    def check(self) -> None:
        """Submit, grab, complete: both connections still fully work."""
        self.rounds += 1
        payload = b"round-%d" % self.rounds
        self.client.sendall(request(c.SUBMIT_JOB, b"work", b"", payload))
        ptype, (handle,) = read_packet(self.client)
        assert ptype == c.JOB_CREATED
        self.worker.sendall(request(c.GRAB_JOB))
        ptype, args = read_packet(self.worker)
        assert (ptype, args[0], args[2]) == (c.JOB_ASSIGN, handle, payload)
        self.worker.sendall(request(c.WORK_COMPLETE, handle, payload[::-1]))
        assert read_packet(self.client) == (c.WORK_COMPLETE, [handle, payload[::-1]])


@pytest.fixture(scope="module")
def live() -> Iterator[Server]:
    server = Server(0, host="127.0.0.1")
    try:
        yield server
    finally:
        server.shutdown()


@pytest.fixture
def bystanders(live: Server) -> Iterator[Bystanders]:
    b = Bystanders(live.port)
    b.check()
    yield b
    b.client.close()
    b.worker.close()


def closed_by_server(sock: socket.socket) -> bytes:
    """Everything the server sent before closing ``sock`` (fails if it never closes)."""
    sock.settimeout(5)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


BAD = {
    "wrong magic": b"\x00XYZ" + struct.pack("!II", c.ECHO_REQ, 0),
    "unknown type": b"\x00REQ" + struct.pack("!II", 200, 0),
    "type zero": b"\x00REQ" + struct.pack("!II", 0, 0),
    "oversize": b"\x00REQ" + struct.pack("!II", c.SUBMIT_JOB, 0xFFFFFFFF),
    "too few fields": request(c.ECHO_REQ, b"ok")
    + b"\x00REQ" + struct.pack("!II", c.SUBMIT_JOB, 3) + b"abc",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_packet_closes_only_its_connection(
    live: Server, bystanders: Bystanders, name: str
) -> None:
    bad = connect(live.port)
    bad.sendall(BAD[name])
    closed_by_server(bad)
    bystanders.check()


def test_truncated_packet_then_disconnect(live: Server, bystanders: Bystanders) -> None:
    bad = connect(live.port)
    bad.sendall(request(c.SUBMIT_JOB, b"work", b"", b"x" * 1000)[:500])
    bad.close()
    bystanders.check()
    assert all(j.arguments != b"x" * 1000 for j in live.jobs.values())


def test_worker_vanishing_mid_packet_requeues_its_job(live: Server, bystanders: Bystanders) -> None:
    flaky = connect(live.port)
    flaky.sendall(request(c.CAN_DO, b"fragile"))
    bystanders.client.sendall(request(c.SUBMIT_JOB, b"fragile", b"", b"data"))
    _ptype, (handle,) = read_packet(bystanders.client)
    flaky.sendall(request(c.GRAB_JOB))
    assert read_packet(flaky)[0] == c.JOB_ASSIGN
    flaky.sendall(request(c.WORK_COMPLETE, handle, b"never finished")[:20])
    flaky.close()
    other = connect(live.port)
    other.sendall(request(c.CAN_DO, b"fragile") + request(c.GRAB_JOB))
    ptype, args = read_packet(other)
    assert (ptype, args[0]) == (c.JOB_ASSIGN, handle)  # back in the queue
    other.sendall(request(c.WORK_COMPLETE, handle, b"done"))
    assert read_packet(bystanders.client) == (c.WORK_COMPLETE, [handle, b"done"])
    bystanders.check()


def test_oversize_admin_line_closes_the_connection(live: Server, bystanders: Bystanders) -> None:
    bad = connect(live.port)
    try:
        bad.sendall(b"status" + b"x" * (1 << 20))
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed while we were still sending: fine
    closed_by_server(bad)
    bystanders.check()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(garbage=st.one_of(
    st.binary(min_size=1, max_size=512),
    st.binary(max_size=64).map(lambda b: b"\x00REQ" + b),
    st.tuples(st.integers(0, 60), st.binary(max_size=64)).map(
        lambda t: b"\x00REQ" + struct.pack("!II", t[0], len(t[1])) + t[1]
    ),
))
def test_random_bytes_never_affect_other_connections(
    live: Server, bystanders: Bystanders, garbage: bytes
) -> None:
    bad = connect(live.port)
    try:
        bad.sendall(garbage)
    except (BrokenPipeError, ConnectionResetError):
        pass
    bad.close()
    bystanders.check()


def test_half_closed_admin_client_still_gets_its_reply(live: Server) -> None:
    sock = connect(live.port)
    sock.sendall(b"version\n")
    sock.shutdown(socket.SHUT_WR)  # like `echo version | nc -N host port`
    reply = closed_by_server(sock)
    assert reply.startswith(b"OK ") and reply.endswith(b"\n")


def test_graceful_shutdown_drains_the_broker() -> None:
    """Admin ``shutdown graceful`` on a geard-like JobServer (real broker): the running job
    finishes and is delivered, a worker asking for more gets NO_JOB although a job is queued,
    then every connection is closed."""

    async def read(reader: asyncio.StreamReader) -> tuple[int, list[bytes]]:
        _magic, ptype, size = struct.unpack("!4sII", await reader.readexactly(12))
        return ptype, (await reader.readexactly(size)).split(b"\x00")

    async def main() -> None:
        server = JobServer(ServerConfig(host="127.0.0.1", port=0, shutdown_timeout=5.0),
                           BrokerConfig(handle_prefix=b"H:t"))
        await server.start()
        try:
            (cr, cw), (wr, ww), (ar, aw) = [
                await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
            ww.write(request(c.CAN_DO, b"work"))
            cw.write(request(c.SUBMIT_JOB, b"work", b"", b"running")
                     + request(c.SUBMIT_JOB_BG, b"work", b"", b"queued"))
            assert await read(cr) == (c.JOB_CREATED, [b"H:t:1"])
            assert await read(cr) == (c.JOB_CREATED, [b"H:t:2"])
            ww.write(request(c.GRAB_JOB))
            assert (await read(wr))[1][0] == b"H:t:1"
            aw.write(b"shutdown graceful\n")
            assert await ar.readline() == b"OK\r\n"
            ww.write(request(c.GRAB_JOB))
            assert await read(wr) == (c.NO_JOB, [b""])  # the queued job is not handed out
            assert not server.closed  # waiting for the running job
            ww.write(request(c.WORK_COMPLETE, b"H:t:1", b"done"))
            assert await read(cr) == (c.WORK_COMPLETE, [b"H:t:1", b"done"])
            await asyncio.wait_for(server.wait_closed(), 5)
            for reader in (cr, wr, ar):  # then the server closed everything
                assert await asyncio.wait_for(reader.read(), 5) == b""
            queued = queued_jobs(server.broker, Priority.NORMAL)
            assert [job.arguments for job in queued] == [b"queued"]
            for writer in (cw, ww, aw):
                writer.close()
        finally:
            await server.shutdown(graceful=False)

    asyncio.run(main())
