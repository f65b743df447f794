"""The harp port out of file descriptors, against a live geard with a low RLIMIT_NOFILE
(docs/semantics.md, "File descriptors"): it pauses accepting as the Gearman port does (the
same accept loop), keeps serving the connections it has, logs a line at most about once a
second, and accepts the waiting connections once descriptors are free again."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator

import pytest

from tests.server.test_descriptors import HARD, LimitedGeard, refusal_lines
from tests.support.load import open_fds
from tests.support.peers import listening_ports, wait_for


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[LimitedGeard, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        harp_port = s.getsockname()[1]
    geard = LimitedGeard("--queue", "memory", "--harp-port", str(harp_port))
    wait_for(lambda: len(listening_ports(geard.pid)) >= 2, what="geard's two ports")
    yield geard, harp_port
    geard.stop()


def ask(sock: socket.socket, n: int) -> None:
    sock.sendall(b'{"harpcaller":1,"get_result":"no-such-call-%d"}\n' % n)


def reply(sock: socket.socket) -> dict[str, object]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        assert chunk, "the harp port closed the connection"
        data += chunk
    answer = json.loads(data)
    assert isinstance(answer, dict)
    return answer


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def test_out_of_descriptors_the_harp_port_waits_and_serves_again(
    server: tuple[LimitedGeard, int],
) -> None:
    geard, port = server
    probe = connect(port)  # kept open: the first call also opens a descriptor for good
    ask(probe, 0)
    assert "error" in reply(probe)  # an unknown call: answered at once
    room = HARD - open_fds(geard.pid)  # connections geard can still accept
    assert room > 10, room
    conns = [connect(port) for _ in range(room + 20)]
    for i, sock in enumerate(conns):
        ask(sock, i)
    wait_for(lambda: refusal_lines(geard), what="accept to run out of descriptors")
    exhausted = time.monotonic()
    for sock in conns[:room]:  # accepted and answered
        assert "error" in reply(sock)
    # The rest wait in the backlog: not answered, and not closed either.
    readable, _, _ = select.select(conns[room:], [], [], 0.3)
    assert readable == []
    ask(probe, 1)  # the connections it has are served meanwhile
    assert "error" in reply(probe)
    wait_for(lambda: len(refusal_lines(geard)) >= 2, what="the second report")
    # Room again: the waiting ones are accepted and answered (after at most the 1 s back-off).
    for sock in conns[:room]:
        sock.close()
    for sock in conns[room:]:
        assert "error" in reply(sock)
        sock.close()
    with connect(port) as late:
        ask(late, 1)
        assert "error" in reply(late)
    probe.close()
    wait_for(lambda: "accepting connections again" in geard.log.read_text(),
             what="the recovery line")
    lines = refusal_lines(geard)
    assert len(lines) <= 2 + (time.monotonic() - exhausted), lines
