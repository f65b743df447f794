"""The same user-visible client behaviour from the threaded ``gear.Client`` and ``gear.aio``.

Every test runs once per front-end (tests/frontends/clients.py) against ``gear.Server`` (our
engine) in this process on port 0, with a threaded ``gear.Worker`` the test drives packet by
packet. Both clients share one ClientSession (gear/protocol/client.py), so what a reply or a
WORK_* packet does must look the same from either.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import gear
from gear.errors import GearmanError, ServerError
from tests.frontends.clients import FRONTS, TIMEOUT, Front


@pytest.fixture
def server() -> Iterator[gear.Server]:
    srv = gear.Server(0, host="127.0.0.1")
    try:
        yield srv
    finally:
        srv.shutdown()


@pytest.fixture(params=sorted(FRONTS))
def front(request: pytest.FixtureRequest, server: gear.Server) -> Iterator[Front]:
    f = FRONTS[request.param]("127.0.0.1", int(server.port))
    try:
        yield f
    finally:
        f.close()


@pytest.fixture
def worker(server: gear.Server) -> Iterator[gear.Worker]:
    w = gear.Worker("frontends-worker")
    w.addServer("127.0.0.1", int(server.port))
    w.waitForServer(TIMEOUT)
    try:
        yield w
    finally:
        w.shutdown()


def admin(server: gear.Server, command: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", int(server.port)), TIMEOUT) as sock:
        sock.sendall(command + b"\n")
        return sock.recv(4096)


def test_each_work_packet_reaches_the_job(front: Front, worker: gear.Worker) -> None:
    worker.registerFunction("fn")
    job = front.submit("fn", b"in")
    assert job.handle
    wjob = worker.getJob()
    assert wjob.arguments == b"in"
    wjob.sendWorkData(b"a")
    wjob.sendWorkWarning(b"w")
    wjob.sendWorkStatus(1, 4)
    wjob.sendWorkComplete(b"result")
    assert job.wait()
    assert job.outcome == ("complete", b"result")
    assert job.payloads == [b"a", b"w"] and job.warned
    assert job.status == (1, 4)


def test_fail_and_exception(front: Front, worker: gear.Worker) -> None:
    worker.registerFunction("fn")
    failing = front.submit("fn", b"1")
    raising = front.submit("fn", b"2")
    first, second = worker.getJob(), worker.getJob()
    first.sendWorkFail()
    second.sendWorkException(b"trace")
    assert failing.wait() and raising.wait()
    assert failing.outcome == ("fail",)
    assert raising.outcome == ("exception", b"trace")
    assert failing.payloads == [] and not failing.warned and failing.status is None


def test_coalescing_one_submission_both_jobs_see_everything(
    front: Front, worker: gear.Worker
) -> None:
    worker.registerFunction("co")
    first = front.submit("co", b"x", unique="same")
    second = front.submit("co", b"y", unique="same")  # same (function, unique): one job
    assert first.handle == second.handle
    # One rule for both front-ends: attached locally, so the server has one waiting client.
    assert front.client_count("same") == 1
    wjob = worker.getJob()
    assert wjob.arguments == b"x"
    wjob.sendWorkData(b"d")
    wjob.sendWorkStatus(1, 2)
    wjob.sendWorkComplete(b"shared")
    for job in (first, second):
        assert job.wait()
        assert job.outcome == ("complete", b"shared")
        assert job.payloads == [b"d"] and job.status == (1, 2)
    # It ended: the unique makes a new job now.
    third = front.submit("co", b"z", unique="same")
    assert third.handle != first.handle
    assert worker.getJob().arguments == b"z"


def test_error_reply_to_a_submission(front: Front, server: gear.Server) -> None:
    first = front.submit("limited", b"1")  # queued (no worker); the function now exists
    assert admin(server, b"maxqueue limited 1").startswith(b"OK")
    with pytest.raises(ServerError) as info:
        front.submit("limited", b"2")
    assert info.value.code == b"QUEUE_ERROR"
    assert first.outcome is None  # the refusal touched only its own submission
    assert front.submit("other", b"3").handle  # and the connection is still usable


def test_server_lost_with_jobs_queued_and_running(
    front: Front, server: gear.Server, worker: gear.Worker
) -> None:
    worker.registerFunction("run")
    running = front.submit("run", b"1")
    worker.getJob()
    queued = front.submit("nobody", b"2")
    server.shutdown()
    for job in (running, queued):
        assert job.wait()
        assert job.outcome == ("lost",)
    with pytest.raises(GearmanError):
        front.submit("run", b"3")
