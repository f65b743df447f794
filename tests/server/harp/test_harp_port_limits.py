"""The Gearman port's output limits on the harp port (docs/semantics.md, "Output limits").

A follower of a long stream that never reads is cut at the hard limit, and its call goes on
(the stream is still kept and served to others); a follower that reads is not cut, nor is a
read_stream of stored messages far over the limit (the records' byte bound bounds a replay).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.server.harp.conftest import Harp, LiveServer, RawWorker
from tests.support.peers import wait_for

LIMIT = 256 * 1024
MESSAGE = "m" * 10_000


@pytest.fixture
def limited() -> Iterator[LiveServer]:
    server = LiveServer(output_limit_hard=LIMIT, output_limit_soft=0)
    try:
        yield server
    finally:
        server.stop()


def _follower(port: int, job_id: str) -> socket.socket:
    """A follow_stream connection with a small receive buffer that never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b'{"harpcaller":1,"follow_stream":"%s"}\n' % job_id.encode())
    return sock


def test_a_follower_that_never_reads_is_cut_at_the_hard_limit(limited: LiveServer) -> None:
    w = RawWorker(limited.port, "h/stream")
    caller = Harp(limited.harp_port)
    job_id = caller.ask({"host": "h", "procedure": "stream", "arguments": []})["job_id"]
    caller.close()
    handle, _, _ = w.grab()
    silent = _follower(limited.harp_port, job_id)
    # The caller's connection is gone, the follower's is served (its follow is registered).
    wait_for(lambda: limited.call(lambda: len(limited.server.harp.connections)) == 1,
             what="the follower's connection")
    total = 12 * 1024 * 1024 // len(MESSAGE)  # well past the limit and the socket buffers
    for _ in range(total):
        w.data(handle, MESSAGE)
    w.echo()
    wait_for(lambda: limited.call(lambda: len(limited.server.harp.connections)) == 0,
             what="the follower to be cut")
    # The call runs on, its stream kept: a reader gets every message and the end, although
    # the replay is 48 times the limit.
    w.complete(handle, "done")
    w.echo()
    reader = Harp(limited.harp_port)
    reader.send({"read_stream": job_id})
    count = 0
    while "packet" in (line := reader.recv()):
        count += 1
    assert count == total and line == {"result": "done"}
    reader.close()
    silent.close()
    w.close()


def test_a_follower_that_reads_is_not_cut(limited: LiveServer) -> None:
    w = RawWorker(limited.port, "h/stream")
    caller = Harp(limited.harp_port)
    job_id = caller.ask({"host": "h", "procedure": "stream", "arguments": []})["job_id"]
    handle, _, _ = w.grab()
    caller.send({"follow_stream": job_id})
    total = 2 * LIMIT // len(MESSAGE)
    for _ in range(total):
        w.data(handle, MESSAGE)
    w.complete(handle, "done")
    got = [caller.recv() for _ in range(total + 1)]
    assert [m["packet"] for m in got[:-1]] == list(range(total))
    assert got[-1] == {"result": "done"}
    caller.close()
    w.close()
