"""Per-connection output limits against a live geard (docs/semantics.md, "Output limits").

A client that submits foreground jobs with large results and never reads is cut at the hard
limit (or after the soft limit's time), the server's memory stays bounded, its queued jobs go
as on a disconnect while everyone else is served; a client that is only behind is not cut.
The option parsing (sizes, TOML keys) is tested here too.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gear import constants as c
from gear.errors import ConfigurationError
from gear.protocol.packets import request
from gear.server import cli
from gear.server.config import ServerConfig, parse_size
from gear.server.transport import OutputLimits, _Connection
from tests.server.test_network_live import Bystanders
from tests.support.load import RawWorker, queued_total, rss, submit_many
from tests.support.peers import GeardProcess, wait_for
from tests.support.raw import connect, read_packet

MiB = 1024 * 1024
RESULT = 10_000  # bytes per result, as in issue 13's probe


def geard(*args: str) -> GeardProcess:
    return GeardProcess("--queue", "memory", *args)


@pytest.fixture
def servers() -> Iterator[list[GeardProcess]]:
    started: list[GeardProcess] = []
    yield started
    for server in started:
        server.stop()


def non_reader(port: int) -> socket.socket:
    """A connection with a small receive buffer that will never be read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect(("127.0.0.1", port))
    return sock


def cut_lines(server: GeardProcess, port: int) -> list[str]:
    """The log lines saying the connection from local ``port`` was cut."""
    return [line for line in server.log.read_text().splitlines()
            if "output limit" in line and f":{port}:" in line]


def test_a_client_that_never_reads_is_cut_at_the_hard_limit(servers: list[GeardProcess]) -> None:
    server = geard("--output-limit-hard", "8M", "--output-limit-soft", "0")
    servers.append(server)
    port = server.port
    bystanders = Bystanders(port)
    bystanders.check()
    worker = RawWorker(port, b"big", RESULT)
    try:
        base = rss(server.pid)
        sink = non_reader(port)
        jobs = 8000  # 80 MB of results unbounded; the limit holds 8 MiB
        submit_many(sink, b"big", jobs, b"sink")
        # A background job of another client queued behind the sink's jobs: it must still run.
        other = connect(port)
        other.sendall(request(c.SUBMIT_JOB_BG, b"big", b"", b"survivor"))
        assert read_packet(other)[0] == c.JOB_CREATED
        peak = base
        while not cut_lines(server, sink.getsockname()[1]):
            bystanders.check()  # everyone else is served meanwhile
            peak = max(peak, rss(server.pid))
        (line,) = cut_lines(server, sink.getsockname()[1])
        assert "hard output limit of 8388608 bytes" in line
        # The sink's queued jobs went as on a disconnect; the survivor ran.
        wait_for(lambda: queued_total(port, b"big") == 0, what="the sink's jobs to go")
        worker.wait_done(1)
        assert b"survivor" in worker.seen
        assert worker.done < jobs // 2
        peak = max(peak, rss(server.pid))
        # Bounded: the limit plus the queued jobs and allocator slack, far below the 80 MB a
        # server without the limit holds (bench/probe_faults.py measures both).
        assert peak - base < 8 * MiB + 24 * MiB, (peak - base) / MiB
        bystanders.check()
        sink.close()
        other.close()
    finally:
        worker.stop()
        bystanders.client.close()
        bystanders.worker.close()


def test_soft_limit_cuts_a_stalled_client_but_not_one_that_is_only_behind(
    servers: list[GeardProcess],
) -> None:
    server = geard("--output-limit-hard", "0", "--output-limit-soft", "1M",
                   "--output-limit-soft-seconds", "2")
    servers.append(server)
    port = server.port
    worker = RawWorker(port, b"big", RESULT)
    try:
        jobs = 1500  # 15 MB of results: well over 1 MiB beyond what the kernel buffers
        behind = non_reader(port)
        submit_many(behind, b"big", jobs, b"behind")
        worker.wait_done(jobs)
        # All its results are produced and unread: over the soft limit now. It catches up
        # well within the 2 s.
        behind.settimeout(30)
        created = completed = 0
        while created < jobs or completed < jobs:
            ptype, _args = read_packet(behind)
            created += ptype == c.JOB_CREATED
            completed += ptype == c.WORK_COMPLETE
        behind.sendall(request(c.ECHO_REQ, b"still here"))
        while True:
            ptype, args = read_packet(behind)
            if ptype == c.ECHO_RES:
                assert args == [b"still here"]
                break
        assert not cut_lines(server, behind.getsockname()[1])
        # The same output never read: cut once the 2 s are up.
        stalled = non_reader(port)
        submit_many(stalled, b"big", jobs, b"stalled")
        worker.wait_done(2 * jobs)
        wait_for(lambda: cut_lines(server, stalled.getsockname()[1]), what="the soft cut")
        (line,) = cut_lines(server, stalled.getsockname()[1])
        assert "soft output limit of 1048576 bytes for 2 s" in line
        assert not cut_lines(server, behind.getsockname()[1])
        behind.close()
        stalled.close()
    finally:
        worker.stop()


# -- the rule, on a stand-in transport ------------------------------------------------------


class FakeTransport:
    """Just what _Connection uses of a transport; ``size`` is the unsent output."""

    def __init__(self) -> None:
        self.size = 0
        self.high: int | None = None
        self.aborted = False
        self.reading = True

    def get_extra_info(self, name: str) -> object:
        return ("10.0.0.7", 51234) if name == "peername" else None

    def set_write_buffer_limits(self, high: int) -> None:
        self.high = high

    def get_write_buffer_size(self) -> int:
        return self.size

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class FakeHost:
    def __init__(self) -> None:
        self.peer = type("Peer", (), {"closing": False})()

    def peer_connected(self, *args: object) -> object:
        return self.peer

    def peer_data(self, peer: object, data: bytes) -> None: ...
    def peer_eof(self) -> None: ...
    def peer_lost(self, peer: object, exc: Exception | None) -> None: ...


def connection(hard: int, soft: int, seconds: float) -> tuple[_Connection, FakeTransport]:
    config = ServerConfig(output_limit_hard=hard, output_limit_soft=soft,
                          output_limit_soft_seconds=seconds)
    conn = _Connection(FakeHost(), False, config.write_high_water,  # type: ignore[arg-type]
                       OutputLimits.of(config))
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def test_the_high_water_mark_is_kept_at_or_below_the_limits() -> None:
    assert connection(8 * MiB, 1 * MiB, 60)[1].high == MiB
    assert connection(2 * MiB, 0, 60)[1].high == 2 * MiB
    assert connection(0, 0, 60)[1].high == 4 * MiB  # no limits: the plain high-water mark
    assert OutputLimits.of(ServerConfig(output_limit_hard=0, output_limit_soft=0)) is None


def test_soft_limit_clock_restarts_when_the_reader_catches_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def run() -> None:
        conn, transport = connection(0, MiB, 30.0)
        conn.pause_writing()
        assert conn.paused and not transport.reading
        transport.size = 2 * MiB
        conn.check_output()  # over: the clock starts, a timer for when the time is up
        assert conn._soft_timer is not None and not transport.aborted
        transport.size = MiB // 2
        conn.check_output()  # back under the soft limit: clock and timer gone
        assert conn._soft_timer is None and conn._over_since is None
        transport.size = 2 * MiB
        conn.check_output()
        conn._soft_time_up()  # the time is up and it is still over: cut
        assert transport.aborted
        conn2, transport2 = connection(0, MiB, 30.0)
        conn2.pause_writing()
        transport2.size = 2 * MiB
        conn2.check_output()
        transport2.size = 100
        conn2.resume_writing()  # below the low-water mark: reading again, clock stopped
        assert transport2.reading and conn2._soft_timer is None and not conn2.paused
        conn2._soft_time_up()  # a late timer changes nothing
        assert not transport2.aborted
        conn3, transport3 = connection(4 * MiB, 0, 0)
        conn3.pause_writing()
        transport3.size = 4 * MiB
        conn3.check_output()  # at the limit is not over it
        assert not transport3.aborted
        transport3.size += 1
        conn3.check_output()
        assert transport3.aborted

    with caplog.at_level(logging.WARNING, logger="gear.server"):
        asyncio.run(run())
    cuts = [r.getMessage() for r in caplog.records if "output limit" in r.getMessage()]
    assert len(cuts) == 2
    assert cuts[0].startswith("closing the connection from 10.0.0.7:51234: 2097152 bytes")
    assert "soft output limit of 1048576 bytes for 30 s" in cuts[0]
    assert "hard output limit of 4194304 bytes" in cuts[1]


# -- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "size"), [
    ("0", 0), ("4096", 4096), ("64M", 64 * MiB), ("64m", 64 * MiB), ("64MiB", 64 * MiB),
    ("64MB", 64 * MiB), ("512K", 512 * 1024), ("1G", 1024 * MiB), ("12B", 12),
    ("1.5M", 3 * MiB // 2),  # the queue URL's max_size grammar: one parser for both
])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "x", "-1", "1.5.M", "64Q", "M"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_options_and_toml_keys(tmp_path: Path) -> None:
    args = cli.parse_args([])
    assert (args.output_limit_hard, args.output_limit_soft,
            args.output_limit_soft_seconds) == (128 * MiB, 32 * MiB, 60.0)
    config = tmp_path / "geard.toml"
    config.write_text('output-limit-hard = "64M"\noutput_limit_soft = 1048576\n'
                      'output-limit-soft-seconds = 5\n')
    args = cli.parse_args(["--config", str(config)])
    assert (args.output_limit_hard, args.output_limit_soft,
            args.output_limit_soft_seconds) == (64 * MiB, MiB, 5.0)
    args = cli.parse_args(["--config", str(config), "--output-limit-hard", "0"])
    assert args.output_limit_hard == 0
    config.write_text('output-limit-hard = "lots"\n')
    with pytest.raises(ConfigurationError):
        cli.parse_args(["--config", str(config)])
