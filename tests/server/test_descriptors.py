"""Running out of file descriptors, against a live geard with a low RLIMIT_NOFILE
(docs/semantics.md, "File descriptors").

geard raises its soft limit to the hard one at start and says so; once accept() fails for lack
of descriptors it pauses accepting (100 ms doubling to 1 s), logs at most about once a second
with a count, keeps serving the connections it has, and accepts the waiting ones again as soon
as some close.
"""

from __future__ import annotations

import re
import resource
import select
import socket
import time
from collections.abc import Iterator

import pytest

from gear import constants as c
from gear.protocol.packets import request
from tests.server.test_network_live import Bystanders
from tests.support.load import open_fds
from tests.support.peers import GeardProcess, wait_for
from tests.support.raw import connect, read_packet

SOFT, HARD = 40, 64


def _lower_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT, HARD))


class LimitedGeard(GeardProcess):
    """geard started with RLIMIT_NOFILE soft 40, hard 64."""

    preexec = staticmethod(_lower_limit)


@pytest.fixture(scope="module")
def server() -> Iterator[LimitedGeard]:
    s = LimitedGeard("--queue", "memory")
    yield s
    s.stop()


def echo(sock: socket.socket, text: bytes) -> None:
    sock.sendall(request(c.ECHO_REQ, text))
    assert read_packet(sock) == (c.ECHO_RES, [text])


def refusal_lines(server: GeardProcess) -> list[str]:
    return [line for line in server.log.read_text().splitlines()
            if "cannot accept connections" in line or "accepting connections again" in line]


def test_start_raises_the_soft_limit(server: LimitedGeard) -> None:
    assert f"open files: soft {HARD} (raised from {SOFT}), hard {HARD}" in server.log.read_text()


def test_out_of_descriptors_serves_the_connections_it_has(server: LimitedGeard) -> None:
    bystanders = Bystanders(server.port)
    bystanders.check()
    base = open_fds(server.pid)
    room = HARD - base  # connections the server can still accept
    assert room > 10, base
    conns = [connect(server.port, timeout=10) for _ in range(room + 20)]
    for i, sock in enumerate(conns):
        sock.sendall(request(c.ECHO_REQ, b"%d" % i))
    wait_for(lambda: refusal_lines(server), what="accept to run out of descriptors")
    exhausted = time.monotonic()
    # The first `room` connections were accepted and answered, in backlog order ...
    for i in range(room):
        assert read_packet(conns[i]) == (c.ECHO_RES, [b"%d" % i])
    assert open_fds(server.pid) == HARD
    # ... the rest wait in the backlog, unanswered, while the connections it has are served.
    readable, _, _ = select.select(conns[room + 1:], [], [], 0)
    assert readable == []
    bystanders.check()
    echo(conns[0], b"served")
    # Still full, the back-off retries (100, 200, 400, 800 ms...) fail: the second line comes a
    # second after the first and counts them all.
    wait_for(lambda: len(refusal_lines(server)) >= 2, what="the second report")
    first, second = refusal_lines(server)[:2]
    assert "cannot accept connections: Too many open files" in first
    match = re.search(r"(\d+) accepts failed since the last report", second)
    assert match is not None and int(match.group(1)) >= 2, second
    # Room again: the waiting ones are accepted (after at most the 1 s back-off).
    for sock in conns[:10]:
        sock.close()
    for i in range(room, room + 10):
        assert read_packet(conns[i]) == (c.ECHO_RES, [b"%d" % i])
    bystanders.check()
    # Still full: more refusals, but never a line per attempt.
    for sock in conns[room + 10:]:
        sock.close()
    for sock in conns[10:room]:
        sock.close()
    late = connect(server.port, timeout=10)
    echo(late, b"late")
    wait_for(lambda: "accepting connections again" in server.log.read_text(),
             what="the recovery line")
    seconds = time.monotonic() - exhausted
    lines = refusal_lines(server)
    assert len(lines) <= 2 + seconds, lines
    counted = [int(m.group(1)) for line in lines
               if (m := re.search(r"(\d+) (?:more )?accepts failed", line))]
    assert len(counted) == len(lines) and sum(counted) >= 2, lines
    late.close()
    bystanders.client.close()
    bystanders.worker.close()
