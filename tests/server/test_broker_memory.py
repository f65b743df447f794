"""What a queued job costs in memory, and the queue order that lets it cost less.

A job queued when it is made shares its handle number as its queue order (``Job.seq is
Job.number``: no int of its own, 32 bytes a job, docs/benchmarks.md "Memory per queued job");
a job queued later (an epoch job at its time, a requeue to the tail) gets a float order between
the last one given and the next new job's number. These tests hold the order to what it was
(strictly increasing with every append, so priority stays global across functions and FIFO,
docs/protocol.md §3.4) and pin the bytes a queued background job takes, so that a change that
makes it bigger fails here rather than in a benchmark nobody ran.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gear import constants as c
from gear.protocol.packets import request
from gear.server.broker import Job
from gear.server.broker import core as broker_core
from tests.server.helpers import Net, Store


def _orders(net: Net) -> list[float]:
    return [job.seq for job in net.broker.jobs.values()]


def test_a_job_queued_when_made_shares_its_number_as_its_order() -> None:
    net = Net()
    cl = net.connect()
    net.submit(cl, b"f", b"u1", b"x", c.SUBMIT_JOB_BG)  # the general path
    net.submit(cl, b"f", b"", b"x", c.SUBMIT_JOB)
    net.broker._counter = 5000  # past 999: runs of plain submits take the fast path
    net.raw(cl, request(c.SUBMIT_JOB_BG, b"f", b"", b"y") * 3)
    net.recv(cl)
    lead = net.connect()
    assert isinstance(net.broker.submit_local(lead, b"f", b"", b"z"), type(next(iter(
        net.broker.jobs.values()))))
    jobs = list(net.broker.jobs.values())
    assert len(jobs) == 6
    assert all(job.seq is job.number for job in jobs)


def test_late_orders_keep_priority_global_and_fifo_across_functions() -> None:
    net = Net()
    cl = net.connect()
    now = int(net.now)
    net.send(cl, c.SUBMIT_JOB_EPOCH, b"a", b"", str(now + 10).encode(), b"a-epoch")
    net.send(cl, c.SUBMIT_JOB_EPOCH, b"b", b"", str(now + 5).encode(), b"b-epoch")
    net.recv(cl)
    net.submit(cl, b"b", b"", b"b1", c.SUBMIT_JOB_BG)
    net.now = now + 10
    net.broker.run_timers()  # b-epoch, then a-epoch: queued after b1, before anything new
    net.submit(cl, b"a", b"", b"a2", c.SUBMIT_JOB_BG)
    net.submit(cl, b"b", b"", b"b2", c.SUBMIT_JOB_BG)
    orders = _orders(net)
    assert len(set(orders)) == len(orders)  # no two alike: no tie left to the ability order
    a2 = next(job for job in net.broker.jobs.values() if job.arguments == b"a2")
    assert a2.seq is a2.number  # the late ones did not use up the next job's number
    w = net.worker(b"a", b"b")
    got = [net.grab(w)[1][3] for _ in range(5)]
    assert got == [b"b1", b"b-epoch", b"a-epoch", b"a2", b"b2"]


def test_requeue_to_the_tail_orders_after_older_jobs_of_other_functions() -> None:
    net = Net(job_retries=0)  # no limit: a requeued job goes to the tail
    cl = net.connect()
    net.submit(cl, b"a", b"", b"a1", c.SUBMIT_JOB_BG)
    first = net.worker(b"a")
    assert net.grab(first)[1][3] == b"a1"
    net.submit(cl, b"b", b"", b"b1", c.SUBMIT_JOB_BG)
    net.broker.disconnect(first)  # a1 back, at the tail: after b1
    net.submit(cl, b"a", b"", b"a2", c.SUBMIT_JOB_BG)
    w = net.worker(b"a", b"b")
    assert [net.grab(w)[1][3] for _ in range(3)] == [b"b1", b"a1", b"a2"]


def test_orders_stay_strictly_increasing_when_no_float_is_left() -> None:
    net = Net()
    broker = net.broker
    broker._seq = 2**60  # floats this large have no room below the next int
    cl = net.connect()
    now = int(net.now)
    net.send(cl, c.SUBMIT_JOB_EPOCH, b"a", b"", str(now + 1).encode(), b"a-epoch")
    net.recv(cl)
    net.submit(cl, b"b", b"", b"b1", c.SUBMIT_JOB_BG)  # its number is behind: an int of its own
    net.now = now + 1
    broker.run_timers()
    net.submit(cl, b"b", b"", b"b2", c.SUBMIT_JOB_BG)
    orders = sorted(_orders(net))
    assert orders == [2**60 + 1, 2**60 + 2, 2**60 + 3]
    w = net.worker(b"a", b"b")
    assert [net.grab(w)[1][3] for _ in range(3)] == [b"b1", b"a-epoch", b"b2"]


def test_a_stored_job_queued_when_its_store_answers_shares_its_number_too() -> None:
    """The durable path queues a background job when its store answers (``stored_batch``):
    it takes its number as its order, unless a job queued meanwhile took a larger one."""
    store = Store(batched=True)
    net = store.net()
    cl = net.connect()
    for i in range(3):
        net.send(cl, c.SUBMIT_JOB_BG, b"d", b"u%d" % i, b"x")  # HELD until the store answers
    net.submit(net.connect(), b"f", b"", b"fg", c.SUBMIT_JOB)  # queued at once, number 4
    net.broker.stored_batch([job for _, job in store.pending], None)
    stored = [_job(net, b"u%d" % i) for i in range(3)]
    assert [job.seq for job in stored] == [5, 6, 7]  # after the foreground job's 4
    store.pending.clear()
    net.broker._counter = 100  # the next job's number is past every order given
    net.send(cl, c.SUBMIT_JOB_BG, b"d", b"u9", b"x")
    net.broker.stored_batch([job for _, job in store.pending], None)
    assert [p[0] for p in net.recv(cl)] == [c.JOB_CREATED] * 4
    late = _job(net, b"u9")
    assert late.seq is late.number  # nothing queued past its number: it is its own order
    orders = _orders(net)
    assert len(set(orders)) == len(orders)


def _job(net: Net, unique: bytes) -> Job:
    return next(job for job in net.broker.jobs.values() if job.unique == unique)


_MEASURE = """
import gc, sys, tracemalloc
from pathlib import Path
from gear.protocol.packets import request
from gear.server.broker import Broker, BrokerConfig, core
from gear.protocol.messages import Priority

def packets(start, stop):
    return b"".join(request(18, b"mem", b"u-%012d" % i, b"x" * 64) for i in range(start, stop))

broker = Broker(BrokerConfig(handle_prefix=b"H:bench-host"))
client = broker.connect("127.0.0.1", 1000, 10)
for s in range(0, 22_000, 250):
    broker.feed(client, packets(s, s + 250))
    client.out.clear()
chunks = [packets(s, s + 250) for s in range(22_000, 43_000, 250)]
gc.collect()
tracemalloc.start()
before = tracemalloc.take_snapshot()
for chunk in chunks:
    broker.feed(client, chunk)
    client.out.clear()
    broker.dirty.clear()
gc.collect()
after = tracemalloc.take_snapshot()
tracemalloc.stop()
mine = [tracemalloc.Filter(True, str(Path(core.__file__).parent / "*"))]
grown = after.filter_traces(mine).compare_to(before.filter_traces(mine), "lineno")
f = broker.functions[b"mem"]
assert f.total == 43_000 and f.queued(Priority.NORMAL) == 43_000
assert all(job.seq is job.number for job in f.queues[Priority.NORMAL])
print(sum(stat.size_diff for stat in grown) / 21_000)
for stat in grown[:6]:
    print(stat.traceback, stat.size_diff / 21_000, file=sys.stderr)
"""


def test_bytes_per_queued_background_job_are_pinned() -> None:
    """The load of bench/profile_memory.py (64-byte payload, distinct uniques), traced between
    two resizes of the job table and the unique map (22,000 to 43,000 jobs), so that only what
    each job allocates itself is counted: its ``Job`` object (168 bytes), data and unique
    (144), number (32) and deque slot (8), 352 bytes a job; 384 before the queue order shared
    the number. The dicts' entries (~30-52 bytes each) come on top (docs/benchmarks.md). A
    field or an object more per job fails this.

    In a fresh interpreter: the size of a ``Job`` depends on which of its ``__dict__``
    attributes earlier jobs of the process set (CPython 3.11 sizes every new instance's value
    array by the class's shared keys), so after other tests it can be larger.
    """
    src = str(Path(broker_core.__file__).parents[3])
    env = dict(os.environ, PYTHONPATH=src)
    run = subprocess.run([sys.executable, "-c", _MEASURE], env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    per_job = float(run.stdout)
    assert 340 < per_job < 362, run.stderr
