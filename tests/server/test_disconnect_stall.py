"""No server-wide stall when a client with many queued jobs leaves (issue 13, "Done when").

A live geard holds 100,000 foreground jobs of one client; a second client queues 10,000 more
behind them and disconnects. A third connection does ECHO round trips the whole time, in a
thread of its own, and the longest gap between two answers is the stall everyone else sees.

The bound is 50 ms. What the ping loop measures is the server's work plus the scheduling noise
of a shared 2-CPU machine (other processes, the test's own GIL), so the same loop is first timed
over a quiet stretch of the same length, and the noise seen there is allowed on top:
``stall < 50 ms + quiet``. A disconnect that scanned the queue per job took seconds here
(docs/semantics.md, "Removal from a queue"); the removal itself is O(1) per job, about 2 us
(bench/profile_removal.py), so 10,000 jobs cost ~20 ms of the 50.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.load import Pinger, drain, queued_total, submit_many
from tests.support.peers import GeardProcess, wait_for
from tests.support.raw import connect

BEHIND, LEAVING = 100_000, 10_000
ROUNDS = 400  # ping round trips after the disconnect is done
ATTEMPTS = 3


@pytest.fixture
def server() -> Iterator[GeardProcess]:
    s = GeardProcess("--queue", "memory")
    yield s
    s.stop()


def test_a_leaving_client_holds_no_other_connection(server: GeardProcess) -> None:
    """Up to three attempts, each a fresh client of 10,000 jobs leaving, followed by a quiet
    stretch as long as its own: noise on a loaded machine can spoil one attempt, a disconnect
    that holds the loop fails them all."""
    port = server.port
    front = connect(port, timeout=60)
    submit_many(front, b"f", BEHIND, b"front")
    drain(front)
    pinger = Pinger(port)
    seen: list[tuple[float, float]] = []
    try:
        pinger.wait_rounds(ROUNDS)  # warm
        for attempt in range(ATTEMPTS):
            leaver = connect(port, timeout=60)
            submit_many(leaver, b"f", LEAVING, b"leaver%d-" % attempt)
            drain(leaver)
            assert queued_total(port, b"f") == BEHIND + LEAVING
            pinger.reset()
            start = time.perf_counter()
            leaver.close()
            wait_for(lambda: queued_total(port, b"f") == BEHIND, what="the disconnect")
            pinger.wait_rounds(ROUNDS)
            stall = pinger.gap()
            pinger.reset()
            pinger.wait_seconds(time.perf_counter() - start)
            quiet = pinger.gap()
            seen.append((stall, quiet))
            if stall < 0.050 + quiet:
                break
    finally:
        pinger.stop()
    shown = ", ".join(f"stall {s * 1000:.1f} ms / quiet {q * 1000:.1f} ms" for s, q in seen)
    assert any(s < 0.050 + q for s, q in seen), shown
    front.close()
