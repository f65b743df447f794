"""O(1) removal from the broker's queues (issue 13): a client leaving, or an admin cancel, costs
its own jobs, never the depth of the queue they are in.

Asserted by counting queue work (elements a compaction scans, ``deque.remove`` calls), not by
timing: the stall figure is measured in bench/, not here.
"""

from __future__ import annotations

from collections import deque

import pytest

from gear import constants as c
from gear.protocol.packets import request
from gear.server.broker import Peer, model
from gear.server.broker.departures import DETACH_SLICE
from tests.server.helpers import Net


def _submit_many(net: Net, client: Peer, fn: bytes, n: int, tag: bytes) -> None:
    """``n`` foreground jobs of ``fn`` from ``client`` (data ``tag`` + index), in one read."""
    net.raw(client, b"".join(request(c.SUBMIT_JOB, fn, b"", tag + b"%d" % i) for i in range(n)))
    assert net.take(client).count(b"\0RES") == n  # one JOB_CREATED each


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"removes": 0, "scanned": 0}
    real_remove = deque.remove
    real_compact = model.JobQueue.compact

    def remove(self: deque[object], value: object) -> None:
        counts["removes"] += 1
        real_remove(self, value)

    def compact(self: model.JobQueue) -> None:
        counts["scanned"] += len(self)
        real_compact(self)

    monkeypatch.setattr(model.JobQueue, "remove", remove)
    monkeypatch.setattr(model.JobQueue, "compact", compact)
    return counts


def test_disconnect_of_10k_jobs_behind_100k_does_no_queue_scan(counted: dict[str, int]) -> None:
    net = Net()
    front, leaver = net.connect(), net.connect()
    _submit_many(net, front, b"f", 100_000, b"a")
    _submit_many(net, leaver, b"f", 10_000, b"b")
    f = net.broker.functions[b"f"]
    assert f.queued(1) == 110_000  # 1: NORMAL
    net.broker.disconnect(leaver)
    # A slice now, the rest one slice per call of run_deferred (one per pass of the server's
    # loop), so other connections are served in between.
    assert f.total == 110_000 - DETACH_SLICE
    calls = 1
    while net.broker.run_deferred():  # True while slices remain after this one
        calls += 1
    assert calls == 10_000 // DETACH_SLICE - 1  # slices 2 to 10
    assert not net.broker.run_deferred()
    assert counted == {"removes": 0, "scanned": 0}  # O(its jobs): no search, no compaction
    assert f.total == 100_000 and f.queued(1) == 100_000 and len(net.broker.jobs) == 100_000
    # The first 100,000 are served in order, and the forgotten ones never come out.
    w = net.worker(b"f")
    for i in (0, 1):
        kind, args = net.grab(w, c.GRAB_JOB)
        assert kind == c.JOB_ASSIGN and args[2] == b"a%d" % i
    for _ in range(99_997):
        assert net.broker.take_job(w) is not None
    kind, args = net.grab(w, c.GRAB_JOB)
    assert kind == c.JOB_ASSIGN and args[2] == b"a99999"
    kind, args = net.grab(w, c.GRAB_JOB)
    assert kind == c.NO_JOB
    assert len(f.queues[1]) == 0 and f.queues[1].dead == 0  # the dead tail was purged


def test_forgotten_jobs_are_compacted_amortised(counted: dict[str, int]) -> None:
    """A client that queues and leaves in a loop behind a long queue: memory stays within
    twice the live jobs and the scanning work within a constant per removed job."""
    net = Net()
    keeper = net.connect()
    _submit_many(net, keeper, b"f", 3_000, b"k")
    removed = 0
    queue = net.broker.functions[b"f"].queues[1]
    for round_ in range(20):
        leaver = net.connect()
        _submit_many(net, leaver, b"f", 500, b"r%d-" % round_)
        net.broker.disconnect(leaver)
        removed += 500
        assert queue.dead <= max(model.COMPACT_MIN, len(queue) - queue.dead)
    assert counted["removes"] == 0
    assert counted["scanned"] <= 3 * removed
    assert [j.arguments for j in queue][:2] == [b"k0", b"k1"] and len(list(queue)) == 3_000


def test_cancel_in_the_middle_is_o1_and_keeps_order(counted: dict[str, int]) -> None:
    net = Net()
    client, admin = net.connect(), net.connect()
    handles = [net.submit(client, b"f", data=b"%d" % i, ptype=c.SUBMIT_JOB_BG)
               for i in range(5)]
    assert net.admin(admin, b"cancel job " + handles[2] + b"\n") == b"OK\r\n"
    assert net.admin(admin, b"cancel job " + handles[0] + b"\n") == b"OK\r\n"  # the head
    assert counted["removes"] == 0
    queue = net.broker.functions[b"f"].queues[1]
    assert [j.arguments for j in queue] == [b"1", b"3", b"4"] and queue.dead == 1
    assert net.admin(admin, b"status\n").startswith(b"f\t3\t0\t0")
    w = net.worker(b"f")
    got = [net.grab(w, c.GRAB_JOB)[1][2] for _ in range(3)]
    assert got == [b"1", b"3", b"4"] and queue.dead == 0 and not queue
