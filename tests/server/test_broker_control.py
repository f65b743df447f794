"""Unit tests of the broker's control API (wake, drain, version) and of its submit fast path.

``Broker.wake`` backs gear.Server.wakeConnections, ``Broker.drain`` the network layer's graceful
shutdown; the fast path of ``_h_submit`` must behave exactly like the general ``_submit``.
"""

from __future__ import annotations

import pytest

import gear
from gear import constants as c
from gear.acl import ACL, ACLEntry
from gear.protocol.messages import Priority
from gear.server.gear_server import GearJob, queued_jobs
from gear.server.storage.base import StoredJob
from tests.server.helpers import Net, res


@pytest.fixture
def net() -> Net:
    return Net()


# ---------------------------------------------------------------------- wake


def test_wake_one_function_noops_only_its_sleepers(net: Net) -> None:
    a, b, ab = net.worker(b"a"), net.worker(b"b"), net.worker(b"a", b"b")
    for w in (a, b, ab):
        net.sleep(w)
    assert net.broker.wake(b"a") == 2
    assert net.take(a) == res(c.NOOP)
    assert net.take(ab) == res(c.NOOP)
    assert net.take(b) == b""
    # A woken worker is out of every sleeper list until its next PRE_SLEEP: no second NOOP.
    assert net.broker.wake(b"b") == 1
    assert net.take(b) == res(c.NOOP)
    assert net.take(ab) == b""


def test_wake_all_and_unknown_function(net: Net) -> None:
    a, b = net.worker(b"a"), net.worker(b"b")
    net.sleep(a)
    net.sleep(b)
    assert net.broker.wake(b"nobody-registers-this") == 0
    assert b"nobody-registers-this" not in net.broker.functions  # a wake creates nothing
    assert net.broker.wake() == 2
    assert net.take(a) == res(c.NOOP)
    assert net.take(b) == res(c.NOOP)
    assert net.broker.wake() == 0  # nobody sleeps any more


def test_wake_honours_worker_wakeup() -> None:
    net = Net(worker_wakeup=1)
    first, second = net.worker(b"f"), net.worker(b"f")
    net.sleep(first)
    net.sleep(second)
    assert net.broker.wake(b"f") == 1
    assert net.take(first) == res(c.NOOP)  # the longest sleeper first
    assert net.take(second) == b""


# ---------------------------------------------------------------------- drain


def test_drain_hands_out_nothing_but_running_jobs_finish(net: Net) -> None:
    w = net.worker(b"f")
    cl = net.connect()
    running = net.submit(cl, b"f", data=b"1")
    queued = net.submit(cl, b"f", data=b"2", ptype=c.SUBMIT_JOB_BG)
    assert net.grab(w)[1][0] == running
    net.broker.drain()
    assert net.broker.draining
    assert net.broker.running_count() == 1
    # Asking for work gets NO_JOB; PRE_SLEEP sleeps although a job is queued.
    net.send(w, c.GRAB_JOB_UNIQ)
    assert net.recv(w) == [(c.NO_JOB, b"")]
    net.send(w, c.PRE_SLEEP)
    assert net.recv(w) == []
    # The running job completes and its client gets the result as usual.
    net.send(w, c.WORK_COMPLETE, running, b"done")
    assert net.recv(cl) == [(c.WORK_COMPLETE, running + b"\x00done")]
    assert net.broker.running_count() == 0
    # The background job stays queued for the next start; nothing woke the sleeper.
    assert [job.handle for job in queued_jobs(net.broker, Priority.NORMAL)] == [queued]
    assert net.take(w) == b""


def test_drain_accepts_submissions_without_waking_anyone(net: Net) -> None:
    w = net.worker(b"f")
    net.sleep(w)
    net.broker.drain()
    cl = net.connect()
    handle = net.submit(cl, b"f", ptype=c.SUBMIT_JOB_BG)
    assert net.take(w) == b""  # no NOOP: there is nothing it could get
    assert net.broker.wake() == 0
    assert net.take(w) == b""
    # A sleeping worker registering a function with queued jobs is not woken either.
    net.send(w, c.CAN_DO, b"g")
    net.submit(cl, b"g", ptype=c.SUBMIT_JOB_BG)
    late = net.worker(b"g")
    net.sleep(late)
    net.send(late, c.CAN_DO, b"f")
    assert net.take(late) == b""
    assert net.broker.jobs[handle].state == 0  # still QUEUED


def test_drain_leaves_stored_jobs_stored() -> None:
    stored: list[StoredJob] = []
    removed: list[int] = []
    net = Net(store=lambda record, done: (stored.append(record), done(None)),
              remove=removed.append)
    cl = net.connect()
    w = net.worker(b"f")
    net.submit(cl, b"f", data=b"d", ptype=c.SUBMIT_JOB_BG)
    net.broker.drain()
    net.send(w, c.GRAB_JOB)
    assert net.recv(w) == [(c.NO_JOB, b"")]
    assert [r.data for r in stored] == [b"d"] and removed == []


def test_requeued_job_is_not_handed_out_while_draining(net: Net) -> None:
    w1, w2 = net.worker(b"f"), net.worker(b"f")
    cl = net.connect()
    handle = net.submit(cl, b"f", ptype=c.SUBMIT_JOB_BG)
    assert net.grab(w1)[1][0] == handle
    net.sleep(w2)
    net.broker.drain()
    net.broker.disconnect(w1)  # its job goes back to the queue...
    assert net.take(w2) == b""  # ...and nobody is woken for it
    assert [job.handle for job in queued_jobs(net.broker, Priority.NORMAL)] == [handle]
    assert net.broker.running_count() == 0


# ---------------------------------------------------------------------- version


def test_version_defaults_to_the_package_version(net: Net) -> None:
    adm = net.connect()
    assert net.admin(adm, b"version\n") == b"OK " + gear.__version__.encode() + b"\n"


def test_version_can_be_configured() -> None:
    net = Net(version=b"1.1.20")
    adm = net.connect()
    assert net.admin(adm, b"version\n") == b"OK 1.1.20\n"


# ---------------------------------------------------------------------- fast path


def test_fast_and_general_submit_paths_agree() -> None:
    """A plain submit (fast path) and a checked one (general path, forced here by an ACL that
    allows everything) produce the same bytes, handles, queue order and wake-ups."""
    acl = ACL()
    acl.add(ACLEntry("c", register=".*", invoke=".*"))
    transcripts = []
    for config in ({}, {"acl": acl}):
        net = Net(**config)  # type: ignore[arg-type]
        w = net.connect("c")
        net.send(w, c.CAN_DO, b"f")
        net.sleep(w)
        cl = net.connect("c")
        seen = []
        for ptype in (c.SUBMIT_JOB_BG, c.SUBMIT_JOB_HIGH, c.SUBMIT_JOB_LOW_BG, c.SUBMIT_JOB):
            net.send(cl, ptype, b"f", b"", b"d%d" % ptype)
            seen.append(net.take(cl))
            seen.append(net.take(w))
        order = []
        for _ in range(4):
            ptype, args = net.grab(w)
            order.append((ptype, args))
            net.send(w, c.WORK_COMPLETE, args[0], b"r")
        seen.append(net.take(cl))
        transcripts.append((seen, order, dict(net.broker.jobs)))
    assert transcripts[0] == transcripts[1]
    seen, order, jobs = transcripts[0]
    assert seen[1] == res(c.NOOP) and seen[3] == b""  # one NOOP per sleep cycle
    assert [args[3] for _, args in order] == [b"d21", b"d18", b"d7", b"d34"]  # HIGH, FIFO, LOW
    assert jobs == {}
    # The foreground jobs' results went to the client, the background ones' to nobody.
    assert seen[-1] == res(c.WORK_COMPLETE, b"H:t:2", b"r") + res(c.WORK_COMPLETE, b"H:t:4", b"r")


def test_fast_path_job_coalesces_and_reports_status(net: Net) -> None:
    """Jobs made by the fast path have every field the rest of the broker reads."""
    cl, other = net.connect(), net.connect()
    w = net.worker(b"f")
    handle = net.submit(cl, b"f", data=b"x")  # plain: fast path
    job = net.broker.jobs[handle]
    assert (job.when, job.reducer, job.retries, job.key, job.keep, job.ignore) == (
        0, None, 0, None, False, False)
    view = GearJob(net.broker, job)  # gear's names for the fields the fast path set
    assert view.client_connection.peer is cl and not view.running
    net.grab(w)
    net.send(w, c.WORK_STATUS, handle, b"1", b"4")
    assert net.recv(cl) == [(c.WORK_STATUS, handle + b"\x001\x004")]
    net.send(other, c.GET_STATUS, handle)
    assert net.recv(other) == [(c.STATUS_RES, handle + b"\x001\x001\x001\x004")]
    # A later job's own status fields are untouched by another job's.
    second = net.submit(other, b"f", ptype=c.SUBMIT_JOB_BG)
    assert (net.broker.jobs[second].numerator, net.broker.jobs[second].clients) == (0, ())
    net.broker.disconnect(w)  # requeue: retries counted on that job only
    assert (job.retries, net.broker.jobs[second].retries) == (1, 0)


def test_fast_path_handles_across_digit_boundaries(net: Net) -> None:
    """The JOB_CREATED header cached by the fast path follows the handle's length."""
    cl = net.connect()
    net.send(cl, c.CAN_DO, b"f")  # any peer registering makes the function known
    handles = [net.submit(cl, b"f", ptype=c.SUBMIT_JOB_BG) for _ in range(9)]
    assert handles[-1] == b"H:t:9"
    assert net.submit(cl, b"f", ptype=c.SUBMIT_JOB_BG) == b"H:t:10"
    net.broker._counter = 98  # jump ahead: the next plain submissions get 99, 100, 101
    net.send(cl, c.SUBMIT_JOB_BG, b"f", b"", b"a")
    net.send(cl, c.SUBMIT_JOB_BG, b"f", b"", b"b")
    net.send(cl, c.SUBMIT_JOB_BG, b"f", b"u", b"")  # general path in between: 101
    net.send(cl, c.SUBMIT_JOB_BG, b"f", b"", b"c")
    assert net.take(cl) == b"".join(
        res(c.JOB_CREATED, h) for h in (b"H:t:99", b"H:t:100", b"H:t:101", b"H:t:102"))
    assert {net.broker.jobs[h].arguments for h in (b"H:t:99", b"H:t:100", b"H:t:102")} == {
        b"a", b"b", b"c"}
