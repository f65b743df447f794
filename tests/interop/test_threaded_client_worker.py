"""The threaded Client/Worker against a real gearmand (Debian gearman-job-server 1.1.x)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import gear
from gear.protocol import admin as admin_text
from tests.support.peers import GearmandProcess, require_tool, wait_for

pytestmark = pytest.mark.interop


@pytest.fixture
def client(gearmand: GearmandProcess) -> Iterator[gear.Client]:
    c = gear.Client("interop-client")
    c.addServer(gearmand.host, gearmand.port)
    c.waitForServer(10)
    yield c
    c.shutdown()


@pytest.fixture
def make_worker(gearmand: GearmandProcess) -> Iterator[Callable[..., gear.Worker]]:
    workers: list[gear.Worker] = []

    def make(cls: type[gear.Worker] = gear.Worker, name: str = "interop-worker") -> gear.Worker:
        w = cls(name)
        w.addServer(gearmand.host, gearmand.port)
        w.waitForServer(10)
        workers.append(w)
        return w

    yield make
    for w in workers:
        w.shutdown()


def serve(worker: gear.Worker, handler: Callable[[Any], None], count: int = 1) -> threading.Thread:
    """Run ``handler`` on the next ``count`` jobs in a thread."""

    def run() -> None:
        for _ in range(count):
            try:
                job = worker.getJob()
            except gear.InterruptedError:
                return
            handler(job)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def admin(conn: Any, req: gear.AdminRequest) -> list[bytes]:
    conn.sendAdminRequest(req, timeout=5)
    assert req.response is not None
    return [line for line in req.response.split(b"\n") if line and line != b"."]


def test_submit_and_work_updates(client: gear.Client, make_worker: Callable[..., gear.Worker]
                                 ) -> None:
    worker = make_worker()
    worker.registerFunction("updates")

    def handle(job: gear.WorkerJob) -> None:
        job.sendWorkData(b"data")
        job.sendWorkWarning(b"careful")
        job.sendWorkStatus(1, 4)
        job.sendWorkComplete(job.arguments.upper())

    t = serve(worker, handle)
    job = gear.Job("updates", b"payload")
    client.submitJob(job)
    assert job.handle and job.handle.startswith(b"H:")
    assert job.wait(10)
    t.join(5)
    assert job.data == [b"data", b"careful", b"PAYLOAD"]
    assert job.warning and not job.failure
    assert (job.numerator, job.denominator, job.fraction_complete) == (b"1", b"4", 0.25)


def test_exception_needs_the_option_and_fail(client: gear.Client,
                                              make_worker: Callable[..., gear.Worker]) -> None:
    worker = make_worker()
    worker.registerFunction("exc")
    t = serve(worker, lambda job: job.sendWorkException(b"boom"), count=3)
    plain = gear.Job("exc", b"1")
    client.submitJob(plain)
    assert plain.wait(10)
    # gearmand turns WORK_EXCEPTION into WORK_FAIL "handle\0" for clients without the option.
    assert plain.failure and plain.exception is None
    assert client.setOption("exceptions") is True
    with_option = gear.Job("exc", b"2")
    client.submitJob(with_option)
    assert with_option.wait(10)
    assert with_option.failure and with_option.exception == b"boom"
    assert client.setOption("no-such-option") is False
    t.join(0)
    worker2 = make_worker(name="failer")
    worker2.registerFunction("failing")
    serve(worker2, lambda job: job.sendWorkFail())
    failed = gear.Job("failing", b"")
    client.submitJob(failed)
    assert failed.wait(10) and failed.failure and failed.data == []


def test_background_job_survives_client_and_is_shown(gearmand: GearmandProcess,
                                                     client: gear.Client,
                                                     make_worker: Callable[..., gear.Worker]
                                                     ) -> None:
    job = gear.Job("bgfn", b"bg", unique="bg-unique")
    client.submitJob(job, background=True)
    assert job.handle
    conn = client.active_connections[0]
    assert conn.related_jobs == {}  # background jobs get no WORK_* packets
    shown = admin(conn, gear.ShowJobsAdminRequest())
    assert any(line.startswith(job.handle + b"\t") for line in shown)
    uniques = admin(conn, gear.ShowUniqueJobsAdminRequest())
    assert b"bg-unique" in uniques
    rows = admin_text.parse_status(admin(conn, gear.StatusAdminRequest()))
    status = {s.name: s for s in rows}
    assert status[b"bgfn"].total == 1
    assert client.getStatus(job).known is True and job.running is False
    client.shutdown()
    worker = make_worker()
    got: list[gear.WorkerJob] = []
    worker.registerFunction("bgfn")
    t = serve(worker, lambda j: (got.append(j), j.sendWorkComplete()))
    t.join(10)
    assert got[0].handle == job.handle and got[0].unique == b"bg-unique"


def test_priorities_high_normal_low(client: gear.Client,
                                    make_worker: Callable[..., gear.Worker]) -> None:
    order = [
        (gear.PRECEDENCE_LOW, b"low"),
        (gear.PRECEDENCE_NORMAL, b"normal"),
        (gear.PRECEDENCE_HIGH, b"high"),
    ]
    for precedence, arg in order:
        client.submitJob(gear.Job("prio", arg), background=True, precedence=precedence)
    worker = make_worker()
    worker.registerFunction("prio")
    got: list[bytes] = []
    serve(worker, lambda j: (got.append(j.arguments), j.sendWorkComplete()), count=3).join(10)
    assert got == [b"high", b"normal", b"low"]


def test_coalesced_unique_completes_both_jobs(client: gear.Client,
                                              make_worker: Callable[..., gear.Worker],
                                              gearmand: GearmandProcess) -> None:
    first = gear.Job("coal", b"x", unique="same-unique")
    second = gear.Job("coal", b"x", unique="same-unique")
    client.submitJob(first)
    client.submitJob(second)  # attached to `first` on this client: not submitted again
    assert first.handle == second.handle
    other = gear.Client("interop-other")  # another client: gearmand coalesces it
    other.addServer(gearmand.host, gearmand.port)
    other.waitForServer(10)
    try:
        third = gear.Job("coal", b"x", unique="same-unique")
        other.submitJob(third)
        assert third.handle == first.handle
        unique_status = client.getStatusUnique("same-unique")
        assert unique_status.known and unique_status.client_count == 2
        worker = make_worker()
        worker.registerFunction("coal")
        serve(worker, lambda j: (j.sendWorkData(b"partial"), j.sendWorkComplete(b"done")))
        assert first.wait(10) and second.wait(10) and third.wait(10)
        assert first.data == second.data == third.data == [b"partial", b"done"]
    finally:
        other.shutdown()


def test_get_status_of_running_job(client: gear.Client,
                                   make_worker: Callable[..., gear.Worker]) -> None:
    worker = make_worker()
    worker.registerFunction("slow")
    started = threading.Event()
    release = threading.Event()

    def handle(job: gear.WorkerJob) -> None:
        job.sendWorkStatus(3, 10)
        started.set()
        release.wait(10)
        job.sendWorkComplete(b"")

    serve(worker, handle)
    job = gear.Job("slow", b"", unique="slow-1")
    client.submitJob(job)
    assert started.wait(10)
    client.getStatus(job)
    assert job.known and job.running
    status = client.getStatusUnique("slow-1")
    assert status.known and status.running and status.handle == b"slow-1"
    missing = client.getStatusUnique("never-submitted")
    assert not missing.known
    release.set()
    assert job.wait(10)


def test_echo_and_admin_requests(client: gear.Client,
                                 make_worker: Callable[..., gear.Worker]) -> None:
    conn = client.active_connections[0]
    assert conn.echo(b"ping\x00pong", timeout=5) == b"ping\x00pong"
    assert conn.echo(timeout=5)  # random data
    worker = make_worker(name="admin-worker")
    worker.registerFunction("adminfn")
    # An echo on the worker's own connection: gearmand answers in order, so CAN_DO is processed.
    worker.active_connections[0].echo(timeout=5)
    workers = admin_text.parse_workers(admin(conn, gear.WorkersAdminRequest()))
    assert any(w.client_id == b"admin-worker" and b"adminfn" in w.functions for w in workers)
    version = gear.VersionAdminRequest()
    conn.sendAdminRequest(version, timeout=5)
    assert version.response is not None and version.response.startswith(b"OK ")
    job = gear.Job("nobody-serves-this", b"")
    client.submitJob(job, background=True)
    cancel = gear.CancelJobAdminRequest(job.handle)  # type: ignore[arg-type]
    conn.sendAdminRequest(cancel, timeout=5)
    # a queued background job is cancelled (docs/protocol.md §2.2: "OK\r\n")
    assert cancel.response == b"OK\r\n"
    conn.echo(timeout=5)  # the stream is still in sync after the one-line reply


def test_epoch_submission(client: gear.Client, make_worker: Callable[..., gear.Worker]) -> None:
    future = gear.Job("epochfn", b"later")
    client.submitJob(future, background=True, when=int(time.time()) + 3600)
    assert future.handle
    client.getStatus(future)
    assert future.known and not future.running
    past = gear.Job("epochfn2", b"now")
    client.submitJob(past, background=True, when=int(time.time()) - 10)
    worker = make_worker()
    worker.registerFunction("epochfn2")
    got: list[bytes] = []
    serve(worker, lambda j: (got.append(j.handle), j.sendWorkComplete())).join(10)
    assert got == [past.handle]


def test_libgearman_worker_serves_our_client(gearmand: GearmandProcess,
                                             client: gear.Client) -> None:
    tool = require_tool("gearman")
    proc = subprocess.Popen(
        [tool, "-w", "-h", gearmand.host, "-p", str(gearmand.port), "-f", "upper", "-c", "1",
         "--", "tr", "a-z", "A-Z"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        conn = client.active_connections[0]
        wait_for(
            lambda: any(s.name == b"upper" and s.workers for s in
                        admin_text.parse_status(admin(conn, gear.StatusAdminRequest()))),
            what="the gearman worker to register",
        )
        job = gear.Job("upper", b"hello gearman")
        client.submitJob(job)
        assert job.wait(10)
        assert b"".join(job.data) == b"HELLO GEARMAN"
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def test_our_worker_serves_gearman_cli(gearmand: GearmandProcess,
                                       make_worker: Callable[..., gear.Worker]) -> None:
    tool = require_tool("gearman")
    worker = make_worker(gear.TextWorker)
    worker.registerFunction("reverse")
    t = serve(worker, lambda job: job.sendWorkComplete(job.arguments[::-1]))
    out = subprocess.run(
        [tool, "-h", gearmand.host, "-p", str(gearmand.port), "-f", "reverse", "-s",
         "--", "abc def"],
        capture_output=True,
        timeout=20,
    )
    t.join(5)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == b"fed cba"


def test_reconnect_after_server_restart(gearmand: GearmandProcess, client: gear.Client,
                                        make_worker: Callable[..., gear.Worker]) -> None:
    worker = make_worker()
    worker.registerFunction("again")
    assert client.setOption("exceptions")

    def handle(j: gear.WorkerJob) -> None:
        if j.arguments == b"raise":
            j.sendWorkException(b"boom")
        else:
            j.sendWorkComplete(b"ok:" + j.arguments)

    t = serve(worker, handle, count=3)
    job = gear.Job("again", b"1")
    client.submitJob(job)
    assert job.wait(10)
    client_conn = client.active_connections[0]
    worker_conn = worker.active_connections[0]
    before = (client_conn.connect_time, worker_conn.connect_time)
    gearmand.restart()
    # Both reconnect on their own (back-off from 50 ms); the worker re-sends SET_CLIENT_ID and
    # CAN_DO and grabs again because a thread is still waiting in getJob.
    wait_for(lambda: client.active_connections and worker.active_connections
             and client_conn.connect_time != before[0]
             and worker_conn.connect_time != before[1], what="reconnect")
    job2 = gear.Job("again", b"2")
    client.submitJob(job2)
    assert job2.wait(10)
    assert job2.data == [b"ok:2"]
    # The exceptions option was re-sent on reconnect: WORK_EXCEPTION still reaches us.
    job3 = gear.Job("again", b"raise")
    client.submitJob(job3)
    assert job3.wait(10)
    assert job3.exception == b"boom"
    assert b"exceptions" in client.active_connections[0].options
    t.join(5)


def test_submit_jobs_batch(client: gear.Client, make_worker: Callable[..., gear.Worker]) -> None:
    worker = make_worker()
    worker.registerFunction("batch")
    serve(worker, lambda j: j.sendWorkComplete(j.arguments), count=20)
    jobs = [gear.Job("batch", b"%d" % i) for i in range(20)]
    client.submitJobs(jobs)
    assert len({j.handle for j in jobs}) == 20
    for i, job in enumerate(jobs):
        assert job.wait(10) and job.data == [b"%d" % i]


def test_many_threads_submit_and_work(client: gear.Client,
                                      make_worker: Callable[..., gear.Worker]) -> None:
    worker = make_worker()
    worker.registerFunction("many")
    workers = [serve(worker, lambda j: j.sendWorkComplete(j.arguments[::-1]), count=10**6)
               for _ in range(3)]
    results: dict[bytes, gear.Job] = {}
    lock = threading.Lock()

    def submit(offset: int) -> None:
        for i in range(50):
            arg = b"job-%d" % (offset + i)
            job = gear.Job("many", arg)
            client.submitJob(job)
            with lock:
                results[arg] = job

    submitters = [threading.Thread(target=submit, args=(k * 1000,)) for k in range(4)]
    for t in submitters:
        t.start()
    for t in submitters:
        t.join(20)
    assert len(results) == 200
    for arg, job in results.items():
        assert job.wait(10), arg
        assert job.data == [arg[::-1]]
    # stopWaitingForJobs only interrupts threads waiting right now (as in gear); a thread
    # between jobs would wait again. shutdown() also refuses later getJob calls.
    worker.shutdown()
    for t in workers:
        t.join(5)
        assert not t.is_alive()
