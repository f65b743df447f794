"""Broker._submit_run, the pipelined-submission fast path, against the one-packet-at-a-time path.

The fast path inlines ``_submit`` and ``_new_job`` and makes handles and JOB_CREATED replies
its own way, so these tests hold it to the general path: the same bytes to every connection and
the same jobs, queues and counters, for random streams of submissions mixed with everything that
ends a run (other packets, uniques, unknown functions, bad packets, wake-ups), around the handle
numbers where the fast path changes how it makes handles (999/1000 and each new digit). A
durable broker's run (``durable_run.submit_run``) is held to the general path the same way,
store records, held output, refused batches and a client gone while its jobs are HELD included.
"""

from __future__ import annotations

import random

import pytest

from gear import constants as c
from gear.protocol.messages import Priority
from gear.protocol.packets import request
from gear.server import broker as b
from tests.server.helpers import Net, Store

SUBMITS = [c.SUBMIT_JOB, c.SUBMIT_JOB_BG, c.SUBMIT_JOB_HIGH, c.SUBMIT_JOB_HIGH_BG,
           c.SUBMIT_JOB_LOW, c.SUBMIT_JOB_LOW_BG]


def _raw(ptype: int, body: bytes) -> bytes:
    """A request packet with any body (``request`` refuses malformed ones)."""
    return b"\x00REQ" + ptype.to_bytes(4, "big") + len(body).to_bytes(4, "big") + body


def _slots(job: b.Job) -> dict[str, object]:
    return {name: getattr(job, name, "<unset>") for name in b.Job.__slots__}


def test_fast_job_is_the_job_new_job_makes() -> None:
    net = Net()
    net.broker._counter = 4321
    client = net.connect()
    net.raw(client, request(c.SUBMIT_JOB_BG, b"fn", b"", b"x") * 2)
    net.raw(client, request(c.CAN_DO, b"other"))  # the function exists: the fast path applies
    net.raw(client, request(c.SUBMIT_JOB_HIGH, b"fn", b"", b"data") * 2)
    jobs = list(net.broker.jobs.values())
    assert [job.handle for job in jobs] == [b"H:t:4322", b"H:t:4323", b"H:t:4324", b"H:t:4325"]
    fast = jobs[3]  # the second of a run: made by the inlined path
    f = net.broker.functions[b"fn"]
    net.broker._counter = fast.number - 1  # its twin, made by the general path
    made = net.broker._new_job(f, b"", b"data", Priority.HIGH, False)
    made.seq = fast.seq  # set by the submit that queues it
    made.clients = [client]
    assert _slots(fast) == _slots(made)
    assert vars(fast) == vars(made) == {}
    assert type(fast) is b.Job


def _stream(rnd: random.Random, count: int) -> list[bytes]:
    """Packets a client might pipeline: mostly plain submissions, and things that end a run."""
    packets = []
    for _ in range(count):
        roll = rnd.random()
        ptype = rnd.choice(SUBMITS)
        fn = rnd.choice([b"a", b"a", b"a", b"b"])
        if roll < 0.75:
            packets.append(request(ptype, fn, b"", b"d%d" % rnd.randrange(100)))
        elif roll < 0.82:
            packets.append(request(ptype, fn, rnd.choice([b"u1", b"u2", b"-"]), b"d1"))
        elif roll < 0.85:
            packets.append(request(ptype, b"new%d" % rnd.randrange(3), b"", b"x"))
        elif roll < 0.88:
            packets.append(request(c.ECHO_REQ, b"echo"))
        elif roll < 0.91:
            packets.append(request(c.GET_STATUS, b"H:t:%d" % rnd.randrange(2000)))
        elif roll < 0.94:
            packets.append(request(ptype, fn, b"", b""))  # empty data
        elif roll < 0.97:
            packets.append(request(ptype, fn, b"", b"\x00z\x00"))  # NULs in the data
        else:
            packets.append(request(ptype, fn + b"b", b"", b"y"))  # a longer name, same prefix
    return packets


def _state(net: Net) -> list[object]:
    broker = net.broker
    jobs = [(h, j.name, j.unique, j.arguments, j.priority, j.background, j.seq, j.state,
             len(j.clients)) for h, j in broker.jobs.items()]
    functions = [(name, f.total, [[j.handle for j in q] for q in f.queues], len(f.sleepers))
                 for name, f in broker.functions.items()]
    return [jobs, functions, broker._counter, broker._seq]


@pytest.mark.parametrize("start", [0, 990, 9_990, 99_998, 1_000_000 - 7])
@pytest.mark.parametrize("seed", range(4))
def test_runs_match_one_packet_at_a_time(start: int, seed: int) -> None:
    rnd = random.Random(seed * 7919 + start)
    packets = _stream(rnd, 300)
    sleeper_at = rnd.randrange(len(packets))
    nets = [Net(), Net()]
    # The reference broker never takes the fast path: every packet goes to its handler.
    nets[1].broker._submit_run = lambda peer, data, pos, n: pos  # type: ignore[method-assign]
    outputs = []
    for i, net in enumerate(nets):
        net.broker._counter = start
        client = net.connect()
        worker = net.worker(b"a", b"b")
        net.sleep(worker)
        chunks = [b"".join(packets[:sleeper_at]), b"".join(packets[sleeper_at:])]
        if i == 0:  # the fast path, also across random chunk boundaries
            data = chunks[1]
            cuts = sorted(rnd.sample(range(1, len(data)), 5))
            chunks[1:] = [data[x:y] for x, y in zip([0, *cuts], [*cuts, len(data)], strict=True)]
            net.raw(client, chunks[0])
        else:
            for packet in packets[:sleeper_at]:
                net.raw(client, packet)
        # A worker goes back to sleep in the middle: the next job of its functions wakes it.
        net.send(worker, c.PRE_SLEEP)
        if i == 0:
            for chunk in chunks[1:]:
                net.raw(client, chunk)
        else:
            for packet in packets[sleeper_at:]:
                net.raw(client, packet)
        outputs.append((net.take(client), net.take(worker), _state(net)))
    assert outputs[0] == outputs[1]
    assert outputs[0][0].count(b"\x00RES\x00\x00\x00\x08") > 200  # JOB_CREATED replies


def test_a_bad_packet_ends_the_run_and_closes_like_the_general_path() -> None:
    net = Net()
    net.broker._counter = 2000
    client = net.connect()
    good = request(c.SUBMIT_JOB_BG, b"a", b"", b"x")
    bad = _raw(c.SUBMIT_JOB_BG, b"a\x00x")  # two fields only
    net.raw(client, good * 3 + bad + good)
    handles = [body for ptype, body in net.recv(client)]
    assert handles == [b"H:t:2001", b"H:t:2002", b"H:t:2003"]
    assert client.closing and len(net.broker.jobs) == 3


def test_a_packet_whose_name_runs_into_the_next_is_not_taken_as_plain() -> None:
    """A body shorter than ``name\\0\\0`` must not match bytes of the following packet."""
    net = Net()
    net.broker._counter = 2000
    client = net.connect()
    good = request(c.SUBMIT_JOB_BG, b"a", b"", b"x")
    short = _raw(c.SUBMIT_JOB_BG, b"a\x00")
    # After the short body comes the next packet's magic, which starts with a NUL byte.
    net.raw(client, good * 2 + short + good)
    assert [body for _, body in net.recv(client)] == [b"H:t:2001", b"H:t:2002"]
    assert client.closing


def test_handles_change_length_inside_one_run() -> None:
    net = Net()
    net.broker._counter = 9_997
    client = net.connect()
    net.raw(client, request(c.CAN_DO, b"a"))
    net.raw(client, request(c.SUBMIT_JOB_BG, b"a", b"", b"x") * 6)
    assert [body for _, body in net.recv(client)] == [
        b"H:t:9998", b"H:t:9999", b"H:t:10000", b"H:t:10001", b"H:t:10002", b"H:t:10003"]


@pytest.mark.parametrize("same_connection", [False, True])
def test_a_run_wakes_a_sleeping_worker_once_in_the_general_order(same_connection: bool) -> None:
    """The first job of a run wakes the sleeper (one NOOP); when the submitter is that sleeping
    worker, the NOOP comes right after the first JOB_CREATED, as one packet at a time sends."""
    outputs = []
    for fast in (True, False):
        net = Net()
        if not fast:
            net.broker._submit_run = lambda peer, data, pos, n: pos  # type: ignore[method-assign]
        net.broker._counter = 5000
        worker = net.worker(b"a")
        net.sleep(worker)
        client = worker if same_connection else net.connect()
        net.raw(client, request(c.SUBMIT_JOB_BG, b"a", b"", b"x") * 4)
        outputs.append((net.recv(client), net.recv(worker) if not same_connection else []))
    assert outputs[0] == outputs[1]
    created = [(c.JOB_CREATED, b"H:t:%d" % n) for n in range(5001, 5005)]
    if same_connection:
        assert outputs[0][0] == [created[0], (c.NOOP, b""), *created[1:]]
    else:
        assert outputs[0] == (created, [(c.NOOP, b"")])


@pytest.mark.parametrize("counter", [0, 998, 5000])
def test_a_type_0_packet_after_a_submit_is_no_job(counter: int) -> None:
    # Found by the fuzzer (tests/fuzz): before the run had a plain packet to compare with, an
    # empty packet of type 0 matched the run's empty "same as the last one" marker and became
    # a background job of no function, with a handle the job table could not find
    # ("H:t:0002"), queued nowhere and never removed. Type 0 closes the connection instead.
    net = Net()
    net.broker._counter = counter
    client = net.connect()
    net.raw(client, request(c.SUBMIT_JOB, b"a", b"", b"hello") + _raw(0, b"")
            + request(c.SUBMIT_JOB_BG, b"a", b"", b"never"))
    assert net.recv(client) == [(c.JOB_CREATED, b"H:t:%d" % (counter + 1))]
    assert client.closing
    assert list(net.broker.jobs) == [b"H:t:%d" % (counter + 1)]
    assert all(net.broker.jobs[h].handle == h for h in net.broker.jobs)


# -- a durable broker: durable_run.submit_run ----------------------------------------------------


def _durable_state(net: Net, store: Store) -> list[object]:
    held = [[type(x).__name__ if not isinstance(x, bytes) else x for x in (p.held or ())]
            for p in net.broker.peers]
    return [*_state(net), [tuple(r) for r, _ in store.pending], store.stored,
            net.broker._next_key, [p.pending for p in net.broker.peers], held]


@pytest.mark.parametrize("start", [0, 990, 9_990, 99_998])
@pytest.mark.parametrize("seed", range(3))
def test_durable_runs_match_one_packet_at_a_time(start: int, seed: int) -> None:
    """The same bytes, jobs, queues, counters, store records and held output as the general
    path, for random streams fed in random chunks, answered by the store in segments, one
    segment refused (ERROR QUEUE_ERROR for its jobs), a worker sleeping in the middle."""
    rnd = random.Random(seed * 104729 + start)
    packets = _stream(rnd, 300)
    cuts = sorted(rnd.sample(range(1, len(packets)), 4))
    segments = [packets[x:y] for x, y in zip([0, *cuts], [*cuts, len(packets)], strict=True)]
    refused = rnd.randrange(len(segments))
    outputs = []
    submits = []
    for fast in (True, False):
        store = Store(batched=True)
        net = store.net()
        general = net.broker._submit
        calls = [0]

        def counting(*args: object, general: object = general, calls: list[int] = calls) -> None:
            calls[0] += 1
            general(*args)  # type: ignore[operator]

        net.broker._submit = counting  # type: ignore[assignment,method-assign]
        if not fast:
            net.broker._submit_run = lambda peer, data, pos, n: pos  # type: ignore[method-assign]
        net.broker._counter = start
        client = net.connect()
        worker = net.worker(b"a", b"b")
        net.sleep(worker)
        seen: list[object] = []
        for k, segment in enumerate(segments):
            if fast:
                data = b"".join(segment)
                at = sorted(rnd.sample(range(1, len(data)), 3))
                for x, y in zip([0, *at], [*at, len(data)], strict=True):
                    net.raw(client, data[x:y])
            else:
                for packet in segment:
                    net.raw(client, packet)
            seen.append((net.take(client), _durable_state(net, store)))
            if k == 2:
                net.send(worker, c.PRE_SLEEP)  # back to sleep: the next stored job wakes it
            jobs = [token for _, token in store.pending]
            error = OSError("disk full") if k == refused else None
            if error is None:
                store.stored += [r.key for r, _ in store.pending]
            store.pending.clear()
            net.broker.stored_batch(jobs, error)  # type: ignore[arg-type]
            seen.append((net.take(client), net.take(worker), _durable_state(net, store)))
        outputs.append(seen)
        submits.append(calls[0])
    assert outputs[0] == outputs[1]
    replies = b"".join(x[0] for x in outputs[0])
    assert replies.count(b"\x00RES\x00\x00\x00\x08") > 150  # JOB_CREATED replies
    # Half the stream is foreground (SUBMITS): the durable run made the rest inline.
    assert submits[1] - submits[0] > 100


def test_durable_run_jobs_of_a_gone_client_are_stored_and_run() -> None:
    """A client that disconnects while its durable jobs wait for the store: the jobs stay
    (background), nothing is written to it, and they queue once stored, as on the general
    path."""
    results = []
    for fast in (True, False):
        store = Store(batched=True)
        net = store.net()
        if not fast:
            net.broker._submit_run = lambda peer, data, pos, n: pos  # type: ignore[method-assign]
        net.broker._counter = 2000
        client = net.connect()
        net.raw(client, request(c.CAN_DO, b"a") + request(c.SUBMIT_JOB_BG, b"a", b"", b"x") * 5
                + request(c.ECHO_REQ, b"after"))
        assert net.take(client) == b""  # every reply waits behind the HELD jobs
        net.broker.disconnect(client)
        jobs = [token for _, token in store.pending]
        net.broker.stored_batch(jobs, None)  # type: ignore[arg-type]
        f = net.broker.functions[b"a"]
        results.append(([j.handle for j in f.queues[Priority.NORMAL]], f.total,
                         [tuple(r) for r, _ in store.pending], client.out))
    assert results[0] == results[1]
    assert results[0][0] == [b"H:t:%d" % n for n in range(2001, 2006)]
