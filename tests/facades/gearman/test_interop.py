"""The python-gearman API with other Gearman software, on geard and gearmand: a facade client
with gear's threaded worker and libgearman's ``gearman -w``, and the reverse (gear's client and
libgearman's ``gearman`` client with a facade worker)."""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import gear
from gear.compat import gearman
from tests.facades.gearman.helpers import worker_running
from tests.support.peers import ServerProcess, require_tool

pytestmark = pytest.mark.interop


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def libgearman(server: ServerProcess, *args: str, input: bytes | None = None
               ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([require_tool("gearman"), "-h", server.host, "-p", str(server.port),
                           *args], input=input, capture_output=True, timeout=30)


@pytest.fixture
def gear_worker(server: ServerProcess) -> Iterator[gear.Worker]:
    worker = gear.Worker("gear-worker")
    worker.addServer(server.host, server.port)
    worker.waitForServer(10)
    yield worker
    worker.shutdown()


def test_facade_client_with_libgearman_worker(server: ServerProcess, hosts: list[str]) -> None:
    task = fresh("rev")
    worker = subprocess.Popen([require_tool("gearman"), "-h", server.host, "-p",
                               str(server.port), "-w", "-c", "3", "-f", task, "--", "rev"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        client = gearman.GearmanClient(hosts)
        requests = client.submit_multiple_jobs(
            [dict(task=task, data=f"{text}\n") for text in ("hello", "abc", "x" * 5000)],
            poll_timeout=20)
        assert [r.result for r in requests] == [b"olleh\n", b"cba\n", b"x" * 5000 + b"\n"]
        assert worker.wait(20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_facade_client_with_gear_worker(gear_worker: gear.Worker, hosts: list[str]) -> None:
    task = fresh("upd")
    gear_worker.registerFunction(task)

    def serve() -> None:
        job = gear_worker.getJob()
        job.sendWorkData(b"part")
        job.sendWorkWarning(b"careful")
        job.sendWorkStatus(1, 4)
        job.sendWorkComplete(job.arguments.upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    request = gearman.GearmanClient(hosts).submit_job(task, b"payload", poll_timeout=10)
    thread.join(10)
    assert request.result == b"PAYLOAD"
    assert list(request.data_updates) == [b"part"]
    assert list(request.warning_updates) == [b"careful"]
    assert (request.status["numerator"], request.status["denominator"]) == (1, 4)


def test_libgearman_client_with_facade_worker(server: ServerProcess, hosts: list[str]) -> None:
    task = fresh("up")
    with worker_running(hosts, {task: lambda w, job: job.data.upper()}):
        for text in (b"hello", b"x" * 10000):
            result = libgearman(server, "-f", task, input=text)
            assert result.returncode == 0, result.stderr
            assert result.stdout.rstrip(b"\n") == text.upper()
        background = libgearman(server, "-b", "-f", task, "bg")
        assert background.returncode == 0


def test_gear_client_with_facade_worker(server: ServerProcess, hosts: list[str]) -> None:
    task = fresh("gear")

    def work(worker: Any, job: Any) -> bytes:
        worker.send_job_data(job, b"chunk")
        worker.send_job_status(job, 2, 3)
        return job.data[::-1]

    client = gear.Client("gear-client")
    client.addServer(server.host, server.port)
    client.waitForServer(10)
    try:
        with worker_running(hosts, {task: work}):
            job = gear.Job(task, b"abc")
            client.submitJob(job)
            assert job.wait(10)
        assert job.data == [b"chunk", b"cba"]
        assert (job.numerator, job.denominator) == (b"2", b"3")
        assert not job.failure
        # a task that raises: python-gearman sends WORK_FAIL only
        with worker_running(hosts, {task: lambda w, j: 1 / 0}):
            failing = gear.Job(task, b"x")
            client.submitJob(failing)
            assert failing.wait(10)
        assert failing.failure and failing.exception is None
    finally:
        client.shutdown()
