"""python-gearman 2.0's documented client examples (the seed ``002``), run against geard and
gearmand with the one-line change ``from gear.compat import gearman``.

The examples' code is kept as written, ported to Python 3 only where Python 2 syntax forces it
(``print`` is a function; its ``%`` formatting is kept). ``localhost:4730`` becomes the test
server's address; a worker serving ``task_name`` and ``other_task`` runs beside them. Where an
example cannot run as written, the test says what it changed and why.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gear.compat import gearman
from gear.compat.gearman import client as client_module
from gear.compat.gearman.constants import JOB_UNKNOWN
from tests.facades.gearman.helpers import FakeServer, created_then_close, worker_running

printed: list[str] = []


def print(*args: Any) -> None:  # the examples' print, recorded
    printed.append(" ".join(str(a) for a in args))


# The seed's "Function available to all examples", ported to Python 3.
def check_request_status(job_request: Any) -> None:
    if job_request.complete:
        print("Job %s finished! Result: %s - %s" % (job_request.job.unique,  # noqa: UP031
                                                     job_request.state, job_request.result))
    elif job_request.timed_out:
        print("Job %s timed out!" % job_request.unique)  # noqa: UP031
    elif job_request.state == JOB_UNKNOWN:
        print("Job %s connection failed!" % job_request.unique)  # noqa: UP031


@pytest.fixture
def localhost(hosts: list[str]) -> Iterator[str]:
    """The server's address (the examples' ``localhost:4730``), with the examples' worker."""
    del printed[:]
    with worker_running(hosts, {"task_name": lambda w, job: b"done:" + job.data,
                                "other_task": lambda w, job: b"other:" + job.data}):
        yield hosts[0]


def test_simple_blocking_job(localhost: str) -> None:
    gm_client = gearman.GearmanClient([localhost, "otherhost:4730"])
    # See gearman/job.py to see attributes on the GearmanJobRequest
    # Defaults to PRIORITY_NONE, background=False (synchronous task), wait_until_complete=True
    completed_job_request = gm_client.submit_job("task_name", "arbitrary binary data")
    check_request_status(completed_job_request)

    assert completed_job_request.result == b"done:arbitrary binary data"
    assert printed == [f"Job {completed_job_request.job.unique} finished! Result: COMPLETE - "
                       "b'done:arbitrary binary data'"]


def test_high_priority_background_job(localhost: str) -> None:
    gm_client = gearman.GearmanClient([localhost, "otherhost:4730"])
    # See gearman/job.py to see attributes on the GearmanJobRequest
    submitted_job_request = gm_client.submit_job("task_name", "arbitrary binary data",
                                                 priority=gearman.PRIORITY_HIGH,
                                                 background=True)
    check_request_status(submitted_job_request)

    assert submitted_job_request.state == gearman.JOB_CREATED
    assert printed == [f"Job {submitted_job_request.job.unique} finished! Result: CREATED - "
                       "None"]


def test_multiple_jobs_non_blocking(localhost: str) -> None:
    import time

    gm_client = gearman.GearmanClient([localhost])
    list_of_jobs = [dict(task="task_name", data="binary data"),
                    dict(task="other_task", data="other binary data")]
    submitted_requests = gm_client.submit_multiple_jobs(list_of_jobs, background=False,
                                                        wait_until_complete=False)
    # Once we know our jobs are accepted, we can do other stuff and wait for results later
    # in the function. Similar to multithreading and doing a join except this is all done in
    # a single process
    time.sleep(1.0)  # the example's own "do other stuff", not a synchronisation
    # Wait at most 5 seconds before timing out incomplete requests
    completed_requests = gm_client.wait_until_jobs_completed(submitted_requests,
                                                             poll_timeout=5.0)
    for completed_job_request in completed_requests:
        check_request_status(completed_job_request)

    assert [r.result for r in completed_requests] == [b"done:binary data",
                                                      b"other:other binary data"]
    assert len(printed) == 2 and all("finished! Result: COMPLETE" in p for p in printed)


def test_recovering_from_failed_connections(localhost: str, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    """The example "pretends" the servers failed; here one really does: it accepts the jobs
    and hangs up. Two changes make the example run: it asks for ``max_retries=1`` (with the
    default 0 the resubmission raises ExceededConnectionAttempts, as python-gearman does), and
    its undefined ``retried_requests`` is the list the line before made. The server rotation
    is random; the test pins it so the failing server comes first, and connects both servers
    first so that losing one leaves the client a live one."""
    failing = FakeServer(created_then_close(2))
    monkeypatch.setattr(client_module.random, "shuffle", lambda items: None)

    gm_client = gearman.GearmanClient([failing.host, localhost])
    for connection in gm_client.connection_list:
        gm_client.establish_connection(connection)
    assert failing.accepted.wait(10)  # accepted: closing the listener cannot reset it
    failing.close_listener()

    list_of_jobs = [dict(task="task_name", data="task binary string"),
                    dict(task="other_task", data="other binary string")]
    failed_requests = gm_client.submit_multiple_jobs(list_of_jobs, background=False,
                                                     max_retries=1)

    # Let's pretend our assigned requests' Gearman servers all failed
    assert all(request.state == JOB_UNKNOWN for request in failed_requests), \
        "All connections didn't fail!"

    # Let's pretend our assigned requests' don't fail but some simply timeout
    retried_connection_failed_requests = gm_client.submit_multiple_requests(
        failed_requests, wait_until_complete=True, poll_timeout=1.0)
    retried_requests = retried_connection_failed_requests
    timed_out_requests = [job_request for job_request in retried_requests
                          if job_request.timed_out]

    # For our timed out requests, lets wait a little longer until they're complete
    retried_timed_out_requests = gm_client.submit_multiple_requests(
        timed_out_requests, wait_until_complete=True, poll_timeout=4.0)

    assert retried_timed_out_requests == []
    assert [r.result for r in retried_requests] == [b"done:task binary string",
                                                    b"other:other binary string"]


def test_pickle_data_encoder(hosts: list[str]) -> None:
    # By default, GearmanClient's can only send off byte-strings
    # If we want to be able to send out Python objects, we can specify a data encoder
    # This will automatically convert byte strings <-> Python objects for ALL commands that
    # have the 'data' field
    import pickle

    class PickleDataEncoder(gearman.DataEncoder):
        @classmethod
        def encode(cls, encodable_object: Any) -> bytes:
            return pickle.dumps(encodable_object)

        @classmethod
        def decode(cls, decodable_string: bytes) -> Any:
            return pickle.loads(decodable_string)

    class PickleExampleClient(gearman.GearmanClient):
        data_encoder = PickleDataEncoder

    class PickleWorker(gearman.GearmanWorker):  # the test's: the example has no worker
        data_encoder = PickleDataEncoder

    localhost = hosts[0]
    with worker_running(hosts, {"task_name": lambda w, job: {"echo": job.data}},
                        cls=PickleWorker):
        my_python_object = {"hello": "there"}

        gm_client = PickleExampleClient([localhost])
        request = gm_client.submit_job("task_name", my_python_object)

    assert request.state == gearman.JOB_COMPLETE
    assert request.result == {"echo": my_python_object}


def test_check_request_status_on_a_timed_out_request(hosts: list[str]) -> None:
    """The examples' helper reads ``job_request.unique`` for a timed-out request: it works."""
    del printed[:]
    request = gearman.GearmanClient(hosts).submit_job("nobody_serves_this", "x",
                                                      poll_timeout=0.2)
    check_request_status(request)
    assert printed == [f"Job {request.job.unique} timed out!"]
