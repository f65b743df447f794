"""GearmanClient of gear.compat.gearman: what python-gearman users rely on, plus the Python 3
decisions (docs/migrating.md), against geard and gearmand."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import pytest

from gear.compat import gearman
from gear.compat.gearman import errors
from gear.compat.gearman.admin_client import GearmanAdminClient
from gear.errors import InvalidDataError
from tests.facades.gearman.helpers import (
    FakeServer,
    created_then_close,
    hang_up,
    reverse,
    worker_running,
)


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_str_task_and_data_are_sent_utf8_and_results_are_bytes(hosts: list[str]) -> None:
    task = fresh("täsk")
    seen: list[Any] = []

    def work(worker: Any, job: Any) -> str:
        seen.append((job.task, job.data, type(job.handle), type(job.unique)))
        return "é" + job.data.decode()

    with worker_running(hosts, {task: work}):
        request = gearman.GearmanClient(hosts).submit_job(task, "héllo", unique="ü1",
                                                          poll_timeout=10)
    assert request.state == gearman.JOB_COMPLETE
    assert request.result == "éhéllo".encode()
    assert request.job.unique == "ü1"
    assert seen == [(task, "héllo".encode(), bytes, bytes)]


def test_bytes_task_names_reach_a_str_registered_worker(hosts: list[str]) -> None:
    task = fresh("rev")
    with worker_running(hosts, {task: reverse}):
        request = gearman.GearmanClient(hosts).submit_job(task.encode(), b"abc", poll_timeout=10)
    assert request.result == b"cba"


def test_json_encoder_returning_str_works(hosts: list[str]) -> None:
    class JSONEncoder(gearman.DataEncoder):
        @classmethod
        def encode(cls, encodable_object: Any) -> str:
            return json.dumps(encodable_object)

        @classmethod
        def decode(cls, decodable_string: bytes) -> Any:
            return json.loads(decodable_string)

    class Client(gearman.GearmanClient):
        data_encoder = JSONEncoder

    class Worker(gearman.GearmanWorker):
        data_encoder = JSONEncoder

    task = fresh("json")
    with worker_running(hosts, {task: lambda w, job: {"sum": sum(job.data)}}, cls=Worker):
        request = Client(hosts).submit_job(task, [1, 2, 3], poll_timeout=10)
    assert request.result == {"sum": 6}


def test_not_waiting_then_status_and_completion(hosts: list[str]) -> None:
    task = fresh("later")
    client = gearman.GearmanClient(hosts)
    requests = client.submit_multiple_jobs(
        [dict(task=task, data=b"1"), dict(task=task, data=b"22")], wait_until_complete=False,
        poll_timeout=10)
    assert [r.state for r in requests] == [gearman.JOB_CREATED] * 2
    assert not any(r.complete for r in requests)
    client.get_job_statuses(requests, poll_timeout=10)
    assert [(r.status["known"], r.status["running"], r.timed_out) for r in requests] == [
        (True, False, False)] * 2
    with worker_running(hosts, {task: reverse}):
        client.wait_until_jobs_completed(requests, poll_timeout=10)
    assert [r.result for r in requests] == [b"1", b"22"]


def test_server_error_fails_the_request_and_calls_the_hook(hosts: list[str]) -> None:
    """A full queue answers ERROR: the request fails (python-gearman left it pending).

    maxqueue applies to a function the server knows (docs/protocol.md §3.13): one job first.
    """
    task = fresh("full")
    heard: list[tuple[Any, Any]] = []

    class Client(gearman.GearmanClient):
        def on_gearman_error(self, error_code: Any, error_text: Any) -> bool:
            heard.append((error_code, error_text))
            return False

    client = Client(hosts)
    first = client.submit_job(task, b"a", background=True, poll_timeout=10)
    assert GearmanAdminClient(hosts).send_maxqueue(task, 1) == "OK"
    second = client.submit_job(task, b"b", background=True, poll_timeout=10)
    assert first.state == gearman.JOB_CREATED
    assert second.state == gearman.JOB_FAILED and not second.timed_out
    assert heard and heard[0][0] == b"QUEUE_ERROR"


def test_a_too_long_unique_is_refused_before_sending(hosts: list[str]) -> None:
    with pytest.raises(InvalidDataError):
        gearman.GearmanClient(hosts).submit_job("t", b"x", unique="u" * 64, poll_timeout=5)


def test_unknown_priority_is_refused(hosts: list[str]) -> None:
    with pytest.raises(errors.InvalidClientState):
        gearman.GearmanClient(hosts).submit_job("t", b"x", priority="URGENT", poll_timeout=5)


def test_failover_past_a_dead_server(hosts: list[str]) -> None:
    dead = FakeServer(hang_up)
    dead.close_listener()
    task = fresh("rev")
    with worker_running(hosts, {task: reverse}):
        request = gearman.GearmanClient([dead.host, *hosts]).submit_job(task, b"ab",
                                                                        poll_timeout=10)
    assert request.result == b"ba"


def test_connection_lost_before_accepted_exceeds_the_attempts() -> None:
    """max_retries=0: one attempt; the lost connection makes the resend raise."""
    fake = FakeServer(hang_up)
    with pytest.raises(errors.ExceededConnectionAttempts):
        gearman.GearmanClient([fake.host]).submit_job("t", b"x", poll_timeout=10)
    assert fake.connections == 1
    fake.close_listener()


def test_a_retry_is_sent_then_the_last_server_counts_as_gone() -> None:
    """python-gearman's loop stops polling a connection once it broke: the retry goes out on a
    new connection, but with no other server connected the wait ends in ServerUnavailable."""
    fake = FakeServer(hang_up)
    with pytest.raises(errors.ServerUnavailable):
        gearman.GearmanClient([fake.host]).submit_job("t", b"x", max_retries=2,
                                                      poll_timeout=10)
    assert fake.wait_connections(2) == 2
    fake.close_listener()


def test_a_retry_goes_to_another_connected_server(hosts: list[str]) -> None:
    fake = FakeServer(hang_up)
    task = fresh("retry")
    client = gearman.GearmanClient([fake.host, *hosts])
    for connection in client.connection_list:
        client.establish_connection(connection)
    assert fake.accepted.wait(10)  # accepted: closing the listener cannot reset it
    fake.close_listener()  # once lost, the fake cannot be reconnected: the retry must move on
    with worker_running(hosts, {task: reverse}):
        request = client.submit_job(task, b"xy", max_retries=1, poll_timeout=10)
    assert request.result == b"yx"
    assert request.connection_attempts in (1, 2)


def test_connection_lost_after_accepted_leaves_the_request_unknown() -> None:
    """python-gearman: the last connection gone -> ServerUnavailable; the request is UNKNOWN."""
    fake = FakeServer(created_then_close())
    client = gearman.GearmanClient([fake.host])
    request = client.submit_job("t", b"x", wait_until_complete=False, poll_timeout=10)
    assert request.state == gearman.JOB_CREATED and request.job.handle == b"H:fake:1"
    with pytest.raises(errors.ServerUnavailable):
        client.wait_until_jobs_completed([request], poll_timeout=10)
    assert request.state == gearman.JOB_UNKNOWN
    fake.close_listener()


def test_server_down_is_server_unavailable() -> None:
    fake = FakeServer(hang_up)
    fake.close_listener()
    with pytest.raises(errors.ServerUnavailable):
        gearman.GearmanClient([fake.host]).submit_job("t", b"x", poll_timeout=5)


def test_errors_are_gear_errors() -> None:
    from gear.errors import GearmanError

    assert issubclass(errors.ServerUnavailable, errors.GearmanError)
    assert issubclass(errors.GearmanError, GearmanError)


def test_many_jobs_through_one_connection(hosts: list[str]) -> None:
    task = fresh("many")
    payloads = [random.randbytes(random.randrange(0, 3000)) for _ in range(200)]
    with worker_running(hosts, {task: reverse}):
        requests = gearman.GearmanClient(hosts).submit_multiple_jobs(
            [dict(task=task, data=p) for p in payloads], poll_timeout=30)
    assert [r.result for r in requests] == [p[::-1] for p in payloads]
