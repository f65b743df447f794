"""GearmanWorker of gear.compat.gearman: the work loop, its hooks and the job updates."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from gear.compat import gearman
from gear.compat.gearman import errors
from gear.compat.gearman.admin_client import GearmanAdminClient
from tests.facades.gearman.helpers import FakeServer, WorkerThread, hang_up, reverse, worker_running


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_after_job_stops_work_after_each_job(hosts: list[str]) -> None:
    task = fresh("count")
    client = gearman.GearmanClient(hosts)
    client.submit_multiple_jobs([dict(task=task, data=b"%d" % i) for i in range(3)],
                                background=True, poll_timeout=10)

    class Worker(gearman.GearmanWorker):
        jobs = 0

        def after_job(self) -> bool:
            self.jobs += 1
            return self.jobs < 3

    worker = Worker(hosts)
    seen: list[bytes] = []
    worker.register_task(task, lambda w, job: seen.append(job.data) or b"")
    worker.work(poll_timeout=10)  # returns once after_job said False
    assert sorted(seen) == [b"0", b"1", b"2"]
    assert not any(c.connected for c in worker.connection_list)


def test_the_last_result_is_written_before_work_returns(hosts: list[str]) -> None:
    task = fresh("last")
    client = gearman.GearmanClient(hosts)
    request = client.submit_job(task, b"abc", wait_until_complete=False, poll_timeout=10)

    class Worker(gearman.GearmanWorker):
        def after_job(self) -> bool:
            return False

    worker = Worker(hosts)
    worker.register_task(task, reverse)
    worker.work(poll_timeout=10)
    client.wait_until_jobs_completed([request], poll_timeout=10)
    assert request.result == b"cba"


def test_after_poll_false_on_idle_timeout_returns(hosts: list[str]) -> None:
    calls: list[bool] = []

    class Worker(gearman.GearmanWorker):
        def after_poll(self, any_activity: bool) -> bool:
            calls.append(any_activity)
            return len(calls) < 3

    worker = Worker(hosts)
    worker.register_task(fresh("idle"), reverse)
    worker.work(poll_timeout=0.05)
    assert len(calls) == 3


def test_set_client_id_and_tasks_show_in_workers(hosts: list[str]) -> None:
    """Registration changes made in a job (the worker's own thread) reach the server at once."""
    task, other, control = fresh("listed"), fresh("added"), fresh("control")
    admin = GearmanAdminClient(hosts)
    client_id = fresh("pyworker")
    client = gearman.GearmanClient(hosts)

    def reconfigure(worker: Any, job: Any) -> bytes:
        worker.register_task(other, lambda w, j: b"added")
        worker.unregister_task(task)
        return b"ok"

    with worker_running(hosts, {task: reverse, control: reconfigure}, client_id=client_id):
        # a job through the worker proves it is registered before we look
        assert client.submit_job(task, b"ab", poll_timeout=10).result == b"ba"
        mine = [w for w in admin.get_workers() if w["client_id"] == client_id]
        assert [sorted(w["tasks"]) for w in mine] == [sorted((task, control))]
        assert client.submit_job(control, b"", poll_timeout=10).result == b"ok"
        assert client.submit_job(other, b"", poll_timeout=10).result == b"added"
        request = client.submit_job(task, b"x", poll_timeout=0.5)
        assert request.timed_out and request.state == gearman.JOB_CREATED


def test_task_raising_sends_fail_and_send_job_exception_sends_exception(hosts: list[str]
                                                                        ) -> None:
    task = fresh("boom")
    hooks: list[str] = []

    class Worker(gearman.GearmanWorker):
        def on_job_exception(self, current_job: Any, exc_info: Any) -> bool:
            hooks.append(exc_info[0].__name__)
            return super().on_job_exception(current_job, exc_info)

    def work(worker: Any, job: Any) -> bytes:
        raise ValueError("nope")

    with worker_running(hosts, {task: work}, cls=Worker):
        request = gearman.GearmanClient(hosts).submit_job(task, b"x", poll_timeout=10)
    assert request.state == gearman.JOB_FAILED and request.complete
    assert hooks == ["ValueError"]


def test_send_job_exception_and_server_errors_reach_the_hook(hosts: list[str]) -> None:
    """WORK_EXCEPTION ends the job on the server, so python-gearman's WORK_FAIL after it is
    answered with ERROR JOB_NOT_FOUND: the worker's on_gearman_error hears it."""
    task = fresh("exc")
    heard: list[Any] = []
    done = threading.Event()

    class Worker(gearman.GearmanWorker):
        def on_gearman_error(self, error_code: Any, error_text: Any) -> bool:
            heard.append(error_code)
            done.set()
            return False

    def work(worker: Any, job: Any) -> bytes:
        worker.send_job_exception(job, b"boom")
        raise RuntimeError("after the exception")

    with worker_running(hosts, {task: work}, cls=Worker):
        request = gearman.GearmanClient(hosts).submit_job(task, b"x", poll_timeout=10)
        assert done.wait(10)
    assert request.state == gearman.JOB_FAILED
    assert heard[0] == b"JOB_NOT_FOUND"


def test_status_and_updates_in_order(hosts: list[str]) -> None:
    task = fresh("progress")

    def work(worker: Any, job: Any) -> bytes:
        for i in range(3):
            worker.send_job_data(job, b"chunk%d" % i)
        worker.send_job_status(job, 3, 4)
        worker.wait_until_updates_sent([job], poll_timeout=5)
        assert not job.connection.writable()
        return b"end"

    with worker_running(hosts, {task: work}):
        request = gearman.GearmanClient(hosts).submit_job(task, b"", poll_timeout=10)
    assert list(request.data_updates) == [b"chunk0", b"chunk1", b"chunk2"]
    assert (request.status["numerator"], request.status["denominator"]) == (3, 4)
    assert request.result == b"end"


def test_one_job_at_a_time_across_connections(server: Any, hosts: list[str]) -> None:
    """Two connections to the same server: still one job running at any moment."""
    task = fresh("serial")
    running = threading.Semaphore(1)
    overlaps: list[bool] = []

    def work(worker: Any, job: Any) -> bytes:
        got = running.acquire(blocking=False)
        overlaps.append(not got)
        if got:
            running.release()
        return job.data

    with worker_running(hosts * 2, {task: work}):
        requests = gearman.GearmanClient(hosts).submit_multiple_jobs(
            [dict(task=task, data=b"%d" % i) for i in range(20)], poll_timeout=20)
    assert [r.result for r in requests] == [b"%d" % i for i in range(20)]
    assert overlaps == [False] * 20


def test_losing_the_only_server_ends_work_and_work_again_reconnects(
        hosts: list[str], server: Any) -> None:
    """python-gearman's loop: the last connection gone -> ServerUnavailable out of work();
    callers loop around work(), and the next call connects again."""
    task = fresh("again")
    worker = gearman.GearmanWorker(hosts)
    worker.register_task(task, reverse)
    thread = WorkerThread(worker, poll_timeout=0.1)
    assert gearman.GearmanClient(hosts).submit_job(task, b"12", poll_timeout=10).result == b"21"
    server.restart()
    thread.thread.join(10)
    assert isinstance(thread.error, errors.ServerUnavailable)
    again = WorkerThread(worker, poll_timeout=0.1)
    try:
        request = gearman.GearmanClient(hosts).submit_job(task, b"34", poll_timeout=10)
        assert request.result == b"43"
    finally:
        again.stop()
    assert again.error is None


def test_work_with_no_server_is_server_unavailable() -> None:
    fake = FakeServer(hang_up)
    fake.close_listener()
    worker = gearman.GearmanWorker([fake.host])
    worker.register_task("t", reverse)
    with pytest.raises(errors.ServerUnavailable):
        worker.work(poll_timeout=0.1)


def test_a_connection_lost_mid_job_ends_work_with_server_unavailable() -> None:
    """The job's updates after the loss go nowhere (the server re-queues the job); work()
    then reports the last connection gone, as python-gearman's loop does."""
    from gear import constants as c
    from gear.protocol.packets import response

    assigned = threading.Event()
    closed = threading.Event()

    def assign_then_close(conn: Any, decoder: Any) -> None:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            if any(getattr(item, "ptype", None) == c.GRAB_JOB_UNIQ
                   for item in decoder.feed_all(data)):
                conn.sendall(response(c.JOB_ASSIGN_UNIQ, b"H:fake:1", b"t", b"u", b"data"))
                assigned.wait(10)
                conn.close()
                closed.set()
                return

    fake = FakeServer(assign_then_close)
    sent: list[int] = []

    def work(worker: Any, job: Any) -> bytes:
        assigned.set()
        closed.wait(10)
        for i in range(20):
            worker.send_job_data(job, b"x" * 65536)
            sent.append(i)
        return b"never delivered"

    worker = gearman.GearmanWorker([fake.host])
    worker.register_task("t", work)
    with pytest.raises(errors.ServerUnavailable):
        worker.work(poll_timeout=5)
    assert sent == list(range(20))
    fake.close_listener()
