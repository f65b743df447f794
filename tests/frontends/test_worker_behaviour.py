"""One behaviour, two workers: the threaded ``gear.Worker`` and ``gear.aio.Worker`` against a
real in-process server (``gear.Server`` on port 0), seen through a recording proxy.

Both drive the same :class:`gear.protocol.worker.WorkerSession`; these tests hold them to the
same wire behaviour: registration and re-registration after a reconnect, the grab/sleep cycle
(a job submitted while the worker sleeps wakes it with NOOP), the one reconnect back-off,
CAN_DO_TIMEOUT, and the WORK_* packets a job sends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import gear
from gear import constants as c
from gear.protocol import backoff
from tests.frontends.workers import FRONTS, WAIT, Front, JobView, Proxy


@pytest.fixture
def server() -> Iterator[gear.Server]:
    srv = gear.Server(0, host="127.0.0.1")
    try:
        yield srv
    finally:
        srv.shutdown()


@pytest.fixture
def proxy(server: gear.Server) -> Iterator[Proxy]:
    p = Proxy("127.0.0.1", int(server.port))
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def client(server: gear.Server) -> Iterator[gear.Client]:
    cl = gear.Client("frontends")
    cl.addServer("127.0.0.1", int(server.port))
    cl.waitForServer(WAIT)
    try:
        yield cl
    finally:
        cl.shutdown()


@pytest.fixture(params=sorted(FRONTS))
def front(request: pytest.FixtureRequest) -> Iterator[Front]:
    f = FRONTS[request.param]()
    try:
        yield f
    finally:
        f.stop()


def echo(job: JobView) -> None:
    job.complete(job.arguments)


def run_job(client: gear.Client, name: str, arguments: bytes = b"") -> gear.Job:
    job = gear.Job(name, arguments)
    client.submitJob(job)
    assert job.wait(WAIT), f"{name} did not finish"
    return job


def test_registration_and_reregistration_after_a_reconnect(
    front: Front, proxy: Proxy, client: gear.Client
) -> None:
    front.register("echo", echo)
    front.register("slow", echo, timeout=2.5)
    front.start("127.0.0.1", proxy.port)
    proxy.wait_count(c.CAN_DO_TIMEOUT, 1)
    assert [f.body for f in proxy.frames(c.SET_CLIENT_ID)] == [b"front"]
    assert [f.body for f in proxy.frames(c.CAN_DO)] == [b"echo"]
    assert [f.args() for f in proxy.frames(c.CAN_DO_TIMEOUT)] == [[b"slow", b"2500"]]
    assert run_job(client, "echo", b"one").data == [b"one"]

    proxy.drop()  # the worker reconnects on its own and registers everything again
    proxy.wait_count(c.CAN_DO_TIMEOUT, 2)
    assert [f.body for f in proxy.frames(c.SET_CLIENT_ID)] == [b"front", b"front"]
    assert [f.body for f in proxy.frames(c.CAN_DO)] == [b"echo", b"echo"]
    assert proxy.accepted == 2
    assert run_job(client, "echo", b"two").data == [b"two"]


def test_a_job_submitted_while_the_worker_sleeps_wakes_it(
    front: Front, proxy: Proxy, client: gear.Client
) -> None:
    front.register("echo", echo)
    front.start("127.0.0.1", proxy.port)
    # Nothing queued: GRAB_JOB_UNIQ -> NO_JOB -> PRE_SLEEP, then the worker waits quietly.
    proxy.wait_count(c.PRE_SLEEP, 1)
    assert proxy.count(c.NO_JOB, sent=False) >= 1
    proxy.wait(lambda: all(s == "SLEEP" for s in front.states()), "the worker to sleep")
    grabs = proxy.count(c.GRAB_JOB_UNIQ)
    noops = proxy.count(c.NOOP, sent=False)

    job = run_job(client, "echo", b"wake up")
    assert job.data == [b"wake up"]
    assert proxy.count(c.NOOP, sent=False) > noops  # the server woke it
    assert proxy.count(c.GRAB_JOB_UNIQ) > grabs  # and it grabbed the job
    proxy.wait_count(c.PRE_SLEEP, 2)  # then back to sleep: no busy loop


def test_reconnects_back_off_with_the_one_policy(
    front: Front, proxy: Proxy, client: gear.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[int] = []
    resets = 0
    cond = threading.Condition()

    def next_delay(self: backoff.Backoff) -> float:
        with cond:
            attempts.append(self.attempt)
            cond.notify_all()
        self.attempt += 1
        return 0.01

    def reset(self: backoff.Backoff) -> None:
        nonlocal resets
        with cond:
            resets += 1
        self.attempt = 0

    front.register("echo", echo)
    front.start("127.0.0.1", proxy.port)
    proxy.wait_count(c.CAN_DO, 1)
    monkeypatch.setattr(backoff.Backoff, "next_delay", next_delay)
    monkeypatch.setattr(backoff.Backoff, "reset", reset)
    proxy.stop_listening()
    proxy.drop()
    with cond:
        assert cond.wait_for(lambda: len(attempts) >= 4, WAIT)
    proxy.listen_again()
    proxy.wait_count(c.CAN_DO, 2)
    assert run_job(client, "echo", b"back").data == [b"back"]
    # Each failed attempt waits one step longer than the last, from the first step on.
    assert attempts[:4] == [0, 1, 2, 3]
    with cond:
        assert resets >= 1  # the connection that worked started the back-off afresh


def test_can_do_timeout_fails_the_job_and_the_worker_goes_on(
    front: Front, proxy: Proxy, client: gear.Client
) -> None:
    release = threading.Event()

    def stuck(job: JobView) -> None:
        release.wait(WAIT)
        job.complete(b"too late")

    front.register("stuck", stuck, timeout=0.3)
    front.register("echo", echo)
    front.start("127.0.0.1", proxy.port)
    proxy.wait_count(c.CAN_DO, 1)
    assert [f.args() for f in proxy.frames(c.CAN_DO_TIMEOUT)] == [[b"stuck", b"300"]]
    job = run_job(client, "stuck")
    assert job.failure and not job.data  # the server failed it after 300 ms
    release.set()
    assert run_job(client, "echo", b"next").data == [b"next"]


def test_work_packets_sent_by_the_worker(
    front: Front, proxy: Proxy, client: gear.Client
) -> None:
    def chatty(job: JobView) -> None:
        job.data(b"d1")
        job.warning(b"w1")
        job.status(1, 4)
        job.complete(b"done")

    def failing(job: JobView) -> None:
        job.fail()

    def raising(job: JobView) -> None:
        job.exception(b"boom")

    front.register("chatty", chatty)
    front.register("failing", failing)
    front.register("raising", raising)
    front.start("127.0.0.1", proxy.port)
    proxy.wait_count(c.CAN_DO, 3)

    job = run_job(client, "chatty")
    handle = job.handle
    assert job.data == [b"d1", b"w1", b"done"] and job.warning
    assert (job.numerator, job.denominator) == (b"1", b"4")
    assert [f.args() for f in proxy.frames(c.WORK_DATA)] == [[handle, b"d1"]]
    assert [f.args() for f in proxy.frames(c.WORK_WARNING)] == [[handle, b"w1"]]
    assert [f.args() for f in proxy.frames(c.WORK_STATUS)] == [[handle, b"1", b"4"]]
    assert [f.args() for f in proxy.frames(c.WORK_COMPLETE)] == [[handle, b"done"]]

    failed = run_job(client, "failing")
    assert failed.failure
    assert [f.body for f in proxy.frames(c.WORK_FAIL)] == [failed.handle]  # no trailing NUL

    raised = run_job(client, "raising")
    assert raised.failure
    assert [f.args() for f in proxy.frames(c.WORK_EXCEPTION)] == [[raised.handle, b"boom"]]
    assert proxy.frames(c.WORK_FAIL)[1:] == []  # WORK_EXCEPTION alone ends the job
