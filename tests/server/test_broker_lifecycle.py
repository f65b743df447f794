"""The broker's lifecycle seam: JobEvents observers and policies see every job's events.

Every exit of a job (the eight :class:`~gear.server.broker.Outcome` values) is told once, with
the right job and outcome, to every observer and to the job's function's policy, and a server
without receivers keeps the pipelined fast path (``Function.plain``; no ``_submit`` call).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gear import constants as c
from gear.protocol.packets import request
from gear.server.broker import Job, JobEvents, Outcome, Peer
from tests.server.helpers import Net, Store, res


class Recorder(JobEvents):
    """Records every event as a tuple: (event, handle, details...)."""

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def created(self, job: Job) -> None:
        self.events.append(("created", job.handle))

    def assigned(self, job: Job, worker: Peer) -> None:
        self.events.append(("assigned", job.handle, worker))

    def progressed(self, job: Job, kind: int, body: bytes) -> None:
        self.events.append(("progressed", job.handle, kind, body))

    def requeued(self, job: Job) -> None:
        self.events.append(("requeued", job.handle))

    def finished(self, job: Job, outcome: Outcome) -> None:
        self.events.append(("finished", job.handle, outcome))

    def finishes(self) -> list[tuple[object, ...]]:
        return [e for e in self.events if e[0] == "finished"]


def _observed(**config: object) -> tuple[Net, Recorder]:
    net = Net(**config)
    rec = Recorder()
    net.broker.add_observer(rec)
    return net, rec


# Each scenario drives one job to one exit and returns (net, recorder, handle, worker or None).
Scenario = Callable[[], tuple[Net, Recorder, bytes, Peer | None]]


def _running(**config: object) -> tuple[Net, Recorder, Peer, bytes, Peer]:
    net, rec = _observed(**config)
    cl = net.connect()
    h = net.submit(cl, b"f")
    w = net.worker(b"f")
    assert net.grab(w)[1][0] == h
    return net, rec, cl, h, w


def complete() -> tuple[Net, Recorder, bytes, Peer | None]:
    net, rec, cl, h, w = _running()
    net.send(w, c.WORK_DATA, h, b"part")
    net.send(w, c.WORK_COMPLETE, h, b"done")
    assert net.take(cl) == res(c.WORK_DATA, h, b"part") + res(c.WORK_COMPLETE, h, b"done")
    return net, rec, h, w


def fail() -> tuple[Net, Recorder, bytes, Peer | None]:
    net, rec, cl, h, w = _running()
    net.send(w, c.WORK_STATUS, h, b"1", b"2")
    net.send(w, c.WORK_FAIL, h)
    assert net.take(cl) == res(c.WORK_STATUS, h, b"1", b"2") + res(c.WORK_FAIL, h)
    return net, rec, h, w


def exception() -> tuple[Net, Recorder, bytes, Peer | None]:
    net, rec, cl, h, w = _running()
    net.send(w, c.WORK_WARNING, h, b"careful")
    net.send(w, c.WORK_EXCEPTION, h, b"boom")
    assert net.take(cl) == res(c.WORK_WARNING, h, b"careful") + res(c.WORK_FAIL, h)
    return net, rec, h, w


def timeout() -> tuple[Net, Recorder, bytes, Peer | None]:
    net, rec = _observed()
    cl = net.connect()
    h = net.submit(cl, b"f")
    w = net.connect()
    net.send(w, c.CAN_DO_TIMEOUT, b"f", b"1000")
    net.grab(w)
    net.now += 1.0
    net.broker.run_timers()
    assert net.take(cl) == res(c.WORK_FAIL, h)
    return net, rec, h, w


def cancelled_queued() -> tuple[Net, Recorder, bytes, Peer | None]:
    net, rec = _observed()
    cl, adm = net.connect(), net.connect()
    h = net.submit(cl, b"f")
    assert net.admin(adm, b"cancel job " + h + b"\n") == b"OK\r\n"
    assert net.take(cl) == res(c.WORK_FAIL, h)
    return net, rec, h, None


def cancelled_running() -> tuple[Net, Recorder, bytes, Peer | None]:
    net, rec, cl, h, w = _running()
    adm = net.connect()
    assert net.admin(adm, b"cancel job " + h + b"\n") == b"OK\r\n"
    assert net.take(cl) == res(c.WORK_FAIL, h)
    net.send(w, c.WORK_COMPLETE, h, b"late")  # the job leaves its worker: no second event
    assert net.take(cl) == b"" and net.broker.jobs == {}
    return net, rec, h, w


def retries_exhausted() -> tuple[Net, Recorder, bytes, Peer | None]:
    net, rec, cl, h, w = _running(job_retries=1)
    net.broker.disconnect(w)
    assert net.take(cl) == res(c.WORK_FAIL, h)
    return net, rec, h, w


def orphaned_queued() -> tuple[Net, Recorder, bytes, Peer | None]:
    net, rec = _observed()
    cl = net.connect()
    h = net.submit(cl, b"f")
    net.broker.disconnect(cl)
    return net, rec, h, None


def orphaned_running() -> tuple[Net, Recorder, bytes, Peer | None]:
    net, rec, cl, h, w = _running()
    net.broker.disconnect(cl)  # the job runs on; its results reach nobody
    net.broker.disconnect(w)  # requeued? nobody waits for it: it is forgotten
    return net, rec, h, w


def store_failed() -> tuple[Net, Recorder, bytes, Peer | None]:
    store = Store(batched=True)
    net = store.net()
    rec = Recorder()
    net.broker.add_observer(rec)
    cl = net.connect()
    net.send(cl, c.SUBMIT_JOB_BG, b"f", b"", b"d")
    h = store.pending[0][1].handle  # type: ignore[attr-defined]
    store.finish(exc=OSError("disk full"))
    return net, rec, h, None


@pytest.mark.parametrize(("scenario", "outcome", "middle"), [
    (complete, Outcome.COMPLETE, [("progressed", c.WORK_DATA, b"part")]),
    (fail, Outcome.FAIL, [("progressed", c.WORK_STATUS, b"1\x002")]),
    (exception, Outcome.EXCEPTION, [("progressed", c.WORK_WARNING, b"careful")]),
    (timeout, Outcome.TIMEOUT, []),
    (cancelled_queued, Outcome.CANCELLED, None),
    (cancelled_running, Outcome.CANCELLED, []),
    (retries_exhausted, Outcome.RETRIES_EXHAUSTED, None),
    (orphaned_queued, Outcome.ORPHANED, None),
    (orphaned_running, Outcome.ORPHANED, None),
    (store_failed, Outcome.STORE_FAILED, None),
], ids=lambda v: getattr(v, "__name__", None))
def test_every_exit_is_told_once_with_its_outcome(
    scenario: Scenario, outcome: Outcome, middle: list[tuple[object, ...]] | None,
) -> None:
    net, rec, h, worker = scenario()
    assert rec.events[0] == ("created", h)
    assert rec.finishes() == [("finished", h, outcome)]
    assert rec.events[-1] == ("finished", h, outcome)
    if worker is not None:
        assert rec.events[1] == ("assigned", h, worker)
    if middle is not None:  # the events between assignment and the end (bodies after h\0)
        between = rec.events[2:-1]
        assert all(e[3][: len(h) + 1] == h + b"\x00" for e in between)  # type: ignore[index]
        assert [(e[0], e[2], e[3][len(h) + 1 :]) for e in between] == middle  # type: ignore[index]
    assert net.broker.jobs == {}


def test_a_requeued_job_is_told_and_finishes_once() -> None:
    net, rec, _client, h, w = _running()
    net.broker.disconnect(w)
    w2 = net.worker(b"f")
    assert net.grab(w2)[1][0] == h
    net.send(w2, c.WORK_COMPLETE, h, b"ok")
    assert rec.events == [("created", h), ("assigned", h, w), ("requeued", h),
                          ("assigned", h, w2), ("finished", h, Outcome.COMPLETE)]


def test_replayed_and_epoch_jobs_are_created_once() -> None:
    from gear.server.storage.base import StoredJob

    net, rec = _observed()
    net.broker.replay([StoredJob(7, b"f", b"u", b"d")])
    cl = net.connect()
    net.send(cl, c.SUBMIT_JOB_EPOCH, b"f", b"", b"%d" % (net.now + 10), b"later")
    handles = list(net.broker.jobs)
    assert rec.events == [("created", handles[0]), ("created", handles[1])]
    assert net.broker.jobs[handles[0]].key == 7


def test_pipelined_submits_are_told_when_observed() -> None:
    """With an observer the run takes the general path, and every job is created and
    finished through it."""
    net, rec = _observed()
    net.broker._counter = 5000  # past the first 999 jobs: a run would be taken inline
    cl = net.connect()
    net.raw(cl, request(c.CAN_DO, b"f"))
    net.raw(cl, request(c.SUBMIT_JOB_BG, b"f", b"", b"x") * 5)
    handles = [b"H:t:%d" % n for n in range(5001, 5006)]
    assert net.recv(cl) == [(c.JOB_CREATED, h) for h in handles]
    assert rec.events == [("created", h) for h in handles]
    for h in handles:
        net.send(cl, c.GRAB_JOB)
        net.recv(cl)
        net.send(cl, c.WORK_COMPLETE, h, b"")
    assert rec.finishes() == [("finished", h, Outcome.COMPLETE) for h in handles]


def _count_general_submits(net: Net) -> list[int]:
    calls: list[int] = []
    general = net.broker._submit

    def counting(*args: object) -> None:
        calls.append(1)
        general(*args)  # type: ignore[arg-type]

    net.broker._submit = counting  # type: ignore[method-assign]
    return calls


def test_without_receivers_the_fast_path_is_taken() -> None:
    net = Net()
    net.broker._counter = 5000
    cl = net.connect()
    net.raw(cl, request(c.CAN_DO, b"f"))
    calls = _count_general_submits(net)
    net.raw(cl, request(c.SUBMIT_JOB_BG, b"f", b"", b"x") * 5)
    assert len(net.recv(cl)) == 5 and calls == []
    f = net.broker.functions[b"f"]
    assert f.plain and f.events == ()


def test_receivers_and_limits_move_the_one_gate() -> None:
    net = Net()
    cl = net.connect()
    net.raw(cl, request(c.CAN_DO, b"f") + request(c.CAN_DO, b"g"))
    f, g = net.broker.functions[b"f"], net.broker.functions[b"g"]
    policy = Recorder()
    net.broker.set_policy(b"f", policy)
    assert not f.plain and f.events == (policy,) and g.plain
    net.broker.set_policy(b"f", None)
    assert f.plain
    net.admin(cl, b"maxqueue g 10\n")
    assert not g.plain and f.plain
    net.admin(cl, b"maxqueue g 0\n")
    assert g.plain
    observer = Recorder()
    net.broker.add_observer(observer)
    h = net.broker.get_function(b"h")  # a function made later is observed too
    assert not f.plain and not g.plain and h.events == (observer,)


def test_a_policy_hears_only_its_function() -> None:
    net = Net()
    policy = Recorder()
    net.broker.set_policy(b"f", policy)
    cl = net.connect()
    hf = net.submit(cl, b"f", ptype=c.SUBMIT_JOB_BG)
    net.submit(cl, b"g", ptype=c.SUBMIT_JOB_BG)
    assert policy.events == [("created", hf)]
    assert net.admin(cl, b"cancel job " + hf + b"\n") == b"OK\r\n"
    assert policy.finishes() == [("finished", hf, Outcome.CANCELLED)]


def test_acl_servers_never_take_the_fast_path_and_storage_ones_take_their_own() -> None:
    from gear.acl import ACL

    f = Net(acl=ACL()).broker.get_function(b"f")
    assert not f.plain and f.events == ()
    net = Store(batched=True).net()
    f = net.broker.get_function(b"f")
    assert f.plain and net.broker._durable  # durable_run.submit_run, not pipeline's
