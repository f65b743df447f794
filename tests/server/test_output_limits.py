"""Per-connection output limits against a live geard (docs/semantics.md, "Output limits").

A client that submits foreground jobs with large results and never reads is cut at the hard
limit (or after the soft limit's time), the server's memory stays bounded, its queued jobs go
as on a disconnect while everyone else is served; a client that is only behind is not cut.
The option parsing (sizes, TOML keys) is tested here too.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gear import constants as c
from gear.errors import ConfigurationError
from gear.protocol.packets import request
from gear.server import cli
from gear.server.config import parse_size
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


# -- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "size"), [
    ("0", 0), ("4096", 4096), ("64M", 64 * MiB), ("64m", 64 * MiB), ("64MiB", 64 * MiB),
    ("64MB", 64 * MiB), ("512K", 512 * 1024), ("1G", 1024 * MiB), ("12B", 12),
])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "x", "-1", "1.5M", "64Q"])
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
