"""broker.jobs, the JobTable: a handle -> job mapping keyed inside by handle number.

A handle is found only when it is exactly what the broker sent (gearmand compares handles as
strings), whether a client asks (GET_STATUS), a worker reports (WORK_*), or the admin cancels.
"""

from __future__ import annotations

import pytest

from gear import constants as c
from gear.server import broker as b
from gear.server.broker import wire
from tests.server.helpers import Net, error


def test_mapping_of_handles() -> None:
    net = Net()
    cl = net.connect()
    handles = [net.submit(cl, b"f", data=b"%d" % i, ptype=c.SUBMIT_JOB_BG) for i in range(3)]
    jobs = net.broker.jobs
    assert isinstance(jobs, b.JobTable)
    assert list(jobs) == handles == [b"H:t:1", b"H:t:2", b"H:t:3"]
    assert len(jobs) == 3 and b"H:t:2" in jobs and b"H:t:4" not in jobs and "H:t:2" not in jobs
    assert [job.arguments for job in jobs.values()] == [b"0", b"1", b"2"]
    assert jobs[b"H:t:3"].handle == b"H:t:3" and jobs[b"H:t:3"].number == 3
    assert dict(jobs) == {h: jobs[h] for h in handles} and jobs != {}
    with pytest.raises(KeyError):
        jobs[b"H:t:9"]


@pytest.mark.parametrize("handle", [
    b"H:t:01", b"H:t:+1", b"H:t: 1", b"H:t:1 ", b"H:t:1_0", b"H:t:", b"H:u:1", b"h:t:1",
    b"H:t:1\x00", b"H:t:0", b"H:t:" + b"1" * 30, b"", b"1",
])
def test_only_the_exact_handle_is_found(handle: bytes) -> None:
    net = Net()
    cl = net.connect()
    net.submit(cl, b"f", ptype=c.SUBMIT_JOB_BG)
    assert net.broker.jobs.get(handle) is None and handle not in net.broker.jobs
    body = handle.rstrip(b"\x00")
    if len(body) < wire.HANDLE_LIMIT and body != b"H:t:1":
        net.send(cl, c.GET_STATUS, body)
        assert net.recv(cl) == [(c.STATUS_RES, body + b"\x000\x000\x000\x000")]


def test_a_worker_with_many_jobs_reports_each_and_not_anothers() -> None:
    """Up to four running jobs are searched on the worker; more go through the table."""
    net = Net()
    cl = net.connect()
    handles = [net.submit(cl, b"f", data=b"%d" % i) for i in range(7)]
    w, other = net.worker(b"f"), net.worker(b"f")
    for _ in range(6):
        net.grab(w)
    net.grab(other)
    assert len(w.worker_jobs) == 6
    net.send(other, c.WORK_COMPLETE, handles[0], b"no")
    assert net.recv(other) == [error(b"JOB_NOT_FOUND", b"Job given in work result not found")]
    for h in reversed(handles[:6]):
        net.send(w, c.WORK_COMPLETE, h, b"r" + h)
        assert net.recv(cl) == [(c.WORK_COMPLETE, h + b"\x00r" + h)]
    assert net.recv(w) == [] and list(net.broker.jobs) == [handles[6]]
    net.send(w, c.WORK_COMPLETE, handles[6], b"no")  # other's job
    assert net.recv(w) == [error(b"JOB_NOT_FOUND", b"Job given in work result not found")]
    net.send(other, c.WORK_COMPLETE, handles[6], b"ok")
    assert net.recv(cl) == [(c.WORK_COMPLETE, handles[6] + b"\x00ok")]


def test_admin_cancel_finds_jobs_by_exact_handle() -> None:
    net = Net()
    cl, adm = net.connect(), net.connect()
    h = net.submit(cl, b"f", ptype=c.SUBMIT_JOB_BG)
    assert net.admin(adm, b"cancel job H:t:01\n") == b"ERR UNKNOWN_JOB\r\n"
    assert net.admin(adm, b"cancel job " + h + b"\n") == b"OK\r\n"
    assert len(net.broker.jobs) == 0
