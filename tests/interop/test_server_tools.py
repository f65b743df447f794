"""Our server with libgearman's tools: ``gearman`` (client and ``-w`` worker) and ``gearadmin``.

``gearman -w`` grabs with GRAB_JOB_ALL; the client matches JOB_CREATED to submissions in order.
Every ``gearadmin`` flag is exercised; where gearmand's reply is deterministic the same flag is
run against a real gearmand after the same operations and the outputs must be identical.
"""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from gear import constants as c
from gear.protocol.packets import request
from gear.server.gear_server import Server
from tests.support.peers import GearmandProcess, require_tool
from tests.support.raw import connect, read_packet

pytestmark = pytest.mark.interop

HANDLE_HOST = socket.gethostname()


def gearman(
    port: int, *args: str, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    tool = require_tool("gearman")
    return subprocess.run(
        [tool, "-h", "127.0.0.1", "-p", str(port), *args],
        input=input, capture_output=True, timeout=20,
    )


def gearadmin(port: int, *args: str) -> bytes:
    tool = require_tool("gearadmin")
    result = subprocess.run(
        [tool, "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True, timeout=20
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def start_worker(port: int, *args: str) -> subprocess.Popen[bytes]:
    tool = require_tool("gearman")
    return subprocess.Popen(
        [tool, "-h", "127.0.0.1", "-p", str(port), "-w", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def test_gearman_client_and_worker_round_trip(ours: Server) -> None:
    # -c 3: the worker exits after three jobs, so there is nothing to kill.
    worker = start_worker(ours.port, "-c", "3", "-f", "rev", "--", "rev")
    try:
        for text in (b"hello", b"abc", b"x" * 10000):
            result = gearman(ours.port, "-f", "rev", input=text + b"\n")
            assert result.returncode == 0, result.stderr
            assert result.stdout == text[::-1] + b"\n"
        assert worker.wait(20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_gearman_background_and_priorities_reach_the_worker_in_order(ours: Server) -> None:
    for flag, data in (("-L", "low"), ("", "normal"), ("-I", "high")):
        args = ["-b", "-f", "echo"] + ([flag] if flag else []) + [data]
        assert gearman(ours.port, *args).returncode == 0
    assert [j.arguments for j in ours.getQueue()] == [b"high", b"normal", b"low"]
    worker = start_worker(ours.port, "-c", "3", "-f", "echo", "--", "cat")
    assert worker.wait(20) == 0
    assert ours.getQueue() == []


def test_gearman_unique_submissions_coalesce(ours: Server) -> None:
    client = connect(ours.port)
    client.sendall(request(c.SUBMIT_JOB, b"slow", b"same", b"a"))
    _ptype, (handle,) = read_packet(client)
    other = gearman(ours.port, "-b", "-u", "same", "-f", "slow", "b")
    assert other.returncode == 0
    assert len(ours.jobs) == 1 and handle in ours.jobs


def _operations(port: int) -> list[socket.socket]:
    """The same state on both servers: a worker for f1 (running one job), queued jobs."""
    worker = connect(port)
    worker.sendall(request(c.SET_CLIENT_ID, b"w1") + request(c.CAN_DO, b"f1"))
    client = connect(port)
    for ptype, unique in ((c.SUBMIT_JOB_BG, b"u1"), (c.SUBMIT_JOB_HIGH_BG, b"u2"),
                          (c.SUBMIT_JOB_LOW_BG, b"u3")):
        client.sendall(request(ptype, b"f1", unique, b"data"))
        assert read_packet(client)[0] == c.JOB_CREATED
    worker.sendall(request(c.GRAB_JOB_UNIQ))
    ptype, args = read_packet(worker)
    assert (ptype, args[2]) == (c.JOB_ASSIGN_UNIQ, b"u2")  # high first on both
    return [worker, client]


def _strip_fds(text: bytes) -> bytes:
    # The first column of ``workers`` is the server's socket fd: process-specific.
    return b"\n".join(
        line.split(b" ", 1)[1] if b" " in line else line for line in text.split(b"\n")
    )


def test_gearadmin_flags_match_gearmand(ours: Server, gearmand: GearmandProcess) -> None:
    keep = _operations(ours.port) + _operations(gearmand.port)
    for flags in (["--status"], ["--priority-status"], ["--show-jobs"],
                  ["--show-unique-jobs"], ["--server-verbose"]):
        assert gearadmin(ours.port, *flags) == gearadmin(gearmand.port, *flags), flags
    assert _strip_fds(gearadmin(ours.port, "--workers")) == _strip_fds(
        gearadmin(gearmand.port, "--workers")
    )
    for flags in (["--create-function", "newf"], ["--drop-function", "newf"]):
        assert gearadmin(ours.port, *flags) == gearadmin(gearmand.port, *flags) == b"OK\n"
    for sock in keep:
        sock.close()


def test_gearadmin_version_getpid_and_cancel(ours: Server) -> None:
    assert gearadmin(ours.port, "--server-version").strip()
    assert gearadmin(ours.port, "--getpid") == b"%d\n" % os.getpid()
    client = connect(ours.port)
    client.sendall(request(c.SUBMIT_JOB_BG, b"f", b"", b"d"))
    _ptype, (handle,) = read_packet(client)
    assert gearadmin(ours.port, "--cancel-job", handle.decode()) == b"OK\n"
    assert ours.jobs == {}
    assert gearadmin(ours.port, "--status") == b"f\t0\t0\t0\n.\n"
