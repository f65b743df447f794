"""Poison jobs in the broker: the finite retry default, the dead-letter list and its admin commands.

Driven as connections would drive the broker (tests/server/helpers.py): a "dying worker" grabs
the job and its connection goes away without a result. The live-server tests, with real
sockets and a restart, are in test_dead_letters_live.py.
"""

from __future__ import annotations

import logging

import pytest

from gear import constants as c
from gear.acl import ACL, ACLEntry
from gear.server.broker import Job, JobEvents, Outcome
from gear.server.broker.model import DEFAULT_JOB_RETRIES
from gear.server.storage.base import DeadJob, StoredJob
from tests.server.helpers import Net, Store, res


def kill(net: Net, fn: bytes = b"f", times: int = 1) -> None:
    """``times`` workers of ``fn`` each take the next job and go away without a result."""
    for _ in range(times):
        w = net.worker(fn)
        ptype, _args = net.grab(w)
        assert ptype == c.JOB_ASSIGN_UNIQ
        net.broker.disconnect(w)


def dead_lines(net: Net, function: bytes = b"") -> list[list[bytes]]:
    adm = net.connect()
    reply = net.admin(adm, b"show dead jobs" + (b" " + function if function else b"") + b"\n")
    assert reply.endswith(b".\n")
    return [line.split(b"\t") for line in reply[:-2].splitlines()]


class Recorder(JobEvents):
    def __init__(self) -> None:
        self.ends: list[tuple[bytes, Outcome]] = []

    def finished(self, job: Job, outcome: Outcome) -> None:
        self.ends.append((job.handle, outcome))


class DeadStore(Store):
    """The hand-answered store, with the dead-letter hand-off recorded."""

    def __init__(self) -> None:
        super().__init__(batched=True)
        self.buried: list[DeadJob] = []
        self.revived: list[int] = []

    def net(self, **config: object) -> Net:
        net = super().net(**config)
        net.broker._bury_store = self.buried.append
        net.broker._revive_store = self.revived.append
        return net


def test_default_is_five_attempts_then_the_dead_letter_list(
        caplog: pytest.LogCaptureFixture) -> None:
    assert DEFAULT_JOB_RETRIES == 5
    net = Net()
    cl = net.connect()
    h = net.submit(cl, b"f", b"poison-1", b"payload", c.SUBMIT_JOB_BG)
    kill(net, times=4)
    assert net.broker.jobs[h].retries == 4 and dead_lines(net) == []
    with caplog.at_level(logging.WARNING, logger="gear.server.broker"):
        kill(net)
    assert h not in net.broker.jobs
    ((handle, fn, unique, attempts, died, size),) = dead_lines(net)
    assert (handle, fn, unique, attempts, died, size) == (
        h, b"f", b"poison-1", b"5", b"%d" % net.now, b"7")
    (record,) = [r for r in caplog.records if r.name == "gear.server.broker"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    for part in ("H:t:1", "function f", "'poison-1'", "5 attempts", "dead-letter list"):
        assert part in message
    assert net.admin(cl, b"status\n") == b"f\t0\t0\t0\n.\n"


def test_foreground_job_fails_and_is_not_kept(caplog: pytest.LogCaptureFixture) -> None:
    net = Net(job_retries=2)
    cl = net.connect()
    h = net.submit(cl, b"f", b"u", b"x")
    kill(net)
    assert net.recv(cl) == []
    with caplog.at_level(logging.WARNING, logger="gear.server.broker"):
        kill(net)
    assert net.take(cl) == res(c.WORK_FAIL, h)
    assert dead_lines(net) == [] and net.broker.jobs == {}
    assert "WORK_FAIL sent to its clients" in caplog.text


def test_background_submission_joined_to_a_foreground_job_is_kept() -> None:
    net = Net(job_retries=1)
    cl, bg = net.connect(), net.connect()
    h = net.submit(cl, b"f", b"u", b"x")
    assert net.submit(bg, b"f", b"u", b"x", c.SUBMIT_JOB_BG) == h
    kill(net)
    assert net.take(cl) == res(c.WORK_FAIL, h)
    assert [line[0] for line in dead_lines(net)] == [h]


def test_zero_retries_is_unlimited() -> None:
    net = Net(job_retries=0)
    cl = net.connect()
    h = net.submit(cl, b"f", b"", b"x", c.SUBMIT_JOB_BG)
    kill(net, times=50)
    assert net.broker.jobs[h].retries == 50 and dead_lines(net) == []


def test_observers_hear_the_poison_job_once() -> None:
    net = Net(job_retries=2)
    rec = Recorder()
    net.broker.add_observer(rec)
    cl = net.connect()
    h = net.submit(cl, b"f", b"", b"x", c.SUBMIT_JOB_BG)
    kill(net, times=2)
    assert rec.ends == [(h, Outcome.RETRIES_EXHAUSTED)]


def test_retry_runs_the_job_as_a_fresh_one_at_the_tail() -> None:
    net = Net(job_retries=1)
    cl, adm = net.connect(), net.connect()
    h = net.submit(cl, b"f", b"u", b"poison", c.SUBMIT_JOB_BG)
    kill(net)
    other = net.submit(cl, b"f", b"", b"normal", c.SUBMIT_JOB_BG)
    assert net.admin(adm, b"retry dead job " + h + b"\n") == b"OK\r\n"
    assert dead_lines(net) == []
    fresh = [job for job in net.broker.jobs.values() if job.unique == b"u"]
    assert len(fresh) == 1 and fresh[0].handle not in (h, other) and fresh[0].retries == 0
    w = net.worker(b"f")
    assert net.grab(w)[1][3] == b"normal"  # the retried job queued behind the others
    _ptype, (handle, _fn, unique, data) = net.grab(w)
    assert (unique, data) == (b"u", b"poison")
    net.send(w, c.WORK_COMPLETE, handle, b"done")
    assert handle not in net.broker.jobs
    assert net.admin(adm, b"retry dead job " + h + b"\n") == b"ERR UNKNOWN_JOB\r\n"


def test_retry_refused_while_its_unique_is_in_memory() -> None:
    net = Net(job_retries=1)
    cl, adm = net.connect(), net.connect()
    h = net.submit(cl, b"f", b"u", b"x", c.SUBMIT_JOB_BG)
    kill(net)
    net.submit(cl, b"f", b"u", b"again", c.SUBMIT_JOB_BG)
    assert net.admin(adm, b"retry dead job " + h + b"\n") == (
        b"ERR UNIQUE_IN_USE a+job+with+this+unique+is+queued+or+running\r\n")
    assert net.admin(adm, b"retry dead jobs\n") == b"OK 0\n"
    assert len(dead_lines(net)) == 1
    assert net.admin(adm, b"drop dead job " + h + b"\n") == b"OK\r\n"
    assert net.admin(adm, b"drop dead job " + h + b"\n") == b"ERR UNKNOWN_JOB\r\n"


def test_all_jobs_forms_and_function_filter() -> None:
    net = Net(job_retries=1)
    cl, adm = net.connect(), net.connect()
    for fn in (b"f", b"g", b"f"):
        net.submit(cl, fn, b"", b"x", c.SUBMIT_JOB_BG)
        kill(net, fn)
    assert [line[1] for line in dead_lines(net)] == [b"f", b"g", b"f"]
    assert [line[1] for line in dead_lines(net, b"g")] == [b"g"]
    assert net.admin(adm, b"retry dead jobs f\n") == b"OK 2\n"
    assert [line[1] for line in dead_lines(net)] == [b"g"]
    assert net.admin(adm, b"status\n").startswith(b"f\t2\t0\t0\n")
    assert net.admin(adm, b"drop dead jobs\n") == b"OK 1\n"
    assert dead_lines(net) == []
    assert net.admin(adm, b"drop dead jobs nothing\n") == b"OK 0\n"


@pytest.mark.parametrize("line", [b"retry\n", b"retry dead\n", b"retry dead job\n",
                                  b"retry dead job a b\n", b"drop dead\n", b"retry live jobs\n"])
def test_malformed_dead_letter_commands(line: bytes) -> None:
    net = Net()
    adm = net.connect()
    name = line.split(b" ")[0].strip()
    assert net.admin(adm, line) == (
        b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+"
        + name + b"\r\n")


def test_the_bound_drops_the_oldest(caplog: pytest.LogCaptureFixture) -> None:
    store = DeadStore()
    net = store.net(job_retries=1, dead_letter_max=2)
    cl = net.connect()
    handles = []
    for data in (b"a", b"b", b"c"):
        net.send(cl, c.SUBMIT_JOB_BG, b"f", b"", data)
        store.finish()
        (packet,) = net.recv(cl)
        handles.append(packet[1])
        with caplog.at_level(logging.WARNING, logger="gear.server.broker"):
            kill(net)
    assert [line[0] for line in dead_lines(net)] == handles[1:]
    assert [d.job.key for d in store.buried] == [1, 2, 3]
    assert store.removed == [1]  # the oldest's stored record is deleted with it
    assert "dead-letter list full" in caplog.text


def test_zero_bound_keeps_nothing() -> None:
    store = DeadStore()
    net = store.net(job_retries=1, dead_letter_max=0)
    cl = net.connect()
    net.send(cl, c.SUBMIT_JOB_BG, b"f", b"", b"a")
    store.finish()
    kill(net)
    assert dead_lines(net) == [] and store.buried == [] and store.removed == [1]


@pytest.mark.parametrize("bound", [0, -1])
def test_replay_with_no_room_drops_the_stored_dead_jobs(bound: int) -> None:
    store = DeadStore()
    net = store.net(dead_letter_max=bound)
    net.broker.replay_dead([DeadJob(StoredJob(4, b"g", b"", b"d", 1, 0), 5, 1.0)])
    assert dead_lines(net) == [] and store.removed == [4]


def test_store_hand_off_bury_revive_remove() -> None:
    store = DeadStore()
    net = store.net(job_retries=2)
    cl, adm = net.connect(), net.connect()
    net.send(cl, c.SUBMIT_JOB_BG, b"f", b"u", b"data")
    store.finish()
    ((_t, h),) = net.recv(cl)
    kill(net, times=2)
    assert store.buried == [DeadJob(StoredJob(1, b"f", b"u", b"data", 1, 0, None), 2, net.now)]
    assert store.removed == []  # dead, not deleted
    assert net.admin(adm, b"retry dead job " + h + b"\n") == b"OK\r\n"
    assert store.revived == [1]
    (job,) = net.broker.jobs.values()
    assert job.key == 1  # the revived record, under its key
    kill(net, times=2)
    ((h2, *_rest),) = dead_lines(net)
    assert net.admin(adm, b"drop dead job " + h2 + b"\n") == b"OK\r\n"
    assert store.removed == [1]


def test_replay_dead_gives_fresh_handles_and_keys_above() -> None:
    store = DeadStore()
    net = store.net()
    net.broker.replay([StoredJob(3, b"f", b"", b"live", 1, 0)])
    net.broker.replay_dead([DeadJob(StoredJob(9, b"g", b"u", b"dead", 0, 0, b"r"), 5, 123.0)])
    assert dead_lines(net) == [[b"H:t:2", b"g", b"u", b"5", b"123", b"4"]]
    assert net.admin(net.connect(), b"status\n") == b"f\t1\t0\t0\ng\t0\t0\t0\n.\n"
    cl = net.connect()
    net.send(cl, c.SUBMIT_JOB_BG, b"f", b"", b"new")
    (record, _token) = store.pending[0]
    assert record.key == 10
    assert net.admin(net.connect(), b"retry dead job H:t:2\n") == b"OK\r\n"
    job = next(j for j in net.broker.jobs.values() if j.name == b"g")
    assert (job.priority, job.reducer, job.key) == (0, b"r", 9)


def test_acl_needs_invoke_permission() -> None:
    acl = ACL()
    acl.add(ACLEntry("ops", invoke="f"))
    acl.add(ACLEntry("worker", register=".*"))
    net = Net(acl=acl, job_retries=1)
    ops, worker = net.connect("ops"), net.connect("worker")
    for fn in (b"f", b"g"):
        net.send(ops, c.SUBMIT_JOB_BG, fn, b"", b"x")
    net.take(ops)
    acl.add(ACLEntry("other", invoke="g"))
    other = net.connect("other")
    net.send(other, c.SUBMIT_JOB_BG, b"g", b"", b"x")
    net.take(other)
    for _ in range(2):
        net.send(worker, c.CAN_DO, b"f")
        net.send(worker, c.CAN_DO, b"g")
        net.grab(worker)
        net.broker.disconnect(worker)
        worker = net.connect("worker")
    handles = {line[1]: line[0] for line in dead_lines(net)}
    assert set(handles) == {b"f", b"g"}
    assert net.admin(ops, b"retry dead job " + handles[b"g"] + b"\n") == (
        b"ERR PERMISSION_DENIED\r\n")
    assert net.admin(ops, b"drop dead job " + handles[b"g"] + b"\n") == (
        b"ERR PERMISSION_DENIED\r\n")
    assert net.admin(ops, b"drop dead jobs g\n") == b"ERR PERMISSION_DENIED\r\n"
    assert net.admin(ops, b"drop dead jobs\n") == b"OK 1\n"  # only f's: g's is skipped
    assert [line[1] for line in dead_lines(net)] == [b"g"]
    anonymous = net.connect()
    assert net.admin(anonymous, b"retry dead jobs\n") == b"OK 0\n"


@pytest.mark.parametrize(("retries", "first"), [(5, b"requeued"), (0, b"next")])
def test_requeue_goes_to_the_front_with_a_limit_and_the_tail_without(
        retries: int, first: bytes) -> None:
    net = Net(job_retries=retries)
    cl = net.connect()
    net.submit(cl, b"f", b"", b"requeued", c.SUBMIT_JOB_BG)
    net.submit(cl, b"f", b"", b"next", c.SUBMIT_JOB_BG)
    kill(net)
    w = net.worker(b"f")
    assert net.grab(w)[1][3] == first
