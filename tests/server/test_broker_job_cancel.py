"""The JOB_CANCEL extension in the broker (docs/protocol.md §1.7): bytes in, bytes out.

A worker that opted in with OPTION_REQ ``job_cancel`` gets one JOB_CANCEL with the handle when
a job it runs is cancelled (admin ``cancel job``, which a harp cancel and the harp time limits
use too) or times out (CAN_DO_TIMEOUT); a worker that did not opt in gets nothing, as before.
"""

from __future__ import annotations

import struct

import pytest

from gear import constants as c
from gear.protocol.packets import request
from tests.server.helpers import Net, error, res


@pytest.fixture
def net() -> Net:
    return Net()


def opted_in(net: Net, *functions: bytes) -> object:
    w = net.worker(*functions)
    net.send(w, c.OPTION_REQ, b"job_cancel")
    assert net.recv(w) == [(c.OPTION_RES, b"job_cancel")]
    return w


def test_the_option_is_accepted_and_echoed_in_any_case(net: Net) -> None:
    w = net.connect()
    net.send(w, c.OPTION_REQ, b"JOB_Cancel")
    assert net.recv(w) == [(c.OPTION_RES, b"JOB_Cancel")]
    assert w.job_cancel and not w.exceptions
    plain = net.connect()
    assert not plain.job_cancel


def test_cancel_of_a_running_job_tells_an_opted_in_worker_once(net: Net) -> None:
    adm, cl = net.connect(), net.connect()
    h = net.submit(cl, b"f")
    w = opted_in(net, b"f")
    assert net.grab(w)[1][0] == h
    assert net.admin(adm, b"cancel job " + h + b"\n") == b"OK\r\n"
    assert net.take(w) == res(c.JOB_CANCEL, h)
    assert net.take(cl) == res(c.WORK_FAIL, h)
    # Already cancelled: a second cancel is refused and sends nothing more.
    assert net.admin(adm, b"cancel job " + h + b"\n") == b"ERR UNKNOWN_JOB\r\n"
    assert net.broker.cancel(net.broker.jobs[h]) is False
    assert net.take(w) == b""
    # The worker stops and says so: its WORK_FAIL frees the job quietly.
    net.send(w, c.WORK_FAIL, h)
    assert net.take(w) == b"" and net.take(cl) == b""
    assert h not in net.broker.jobs
    assert net.broker.functions[b"f"].running == 0


def test_a_worker_that_did_not_opt_in_gets_nothing(net: Net) -> None:
    adm, cl = net.connect(), net.connect()
    a = net.submit(cl, b"f", b"", b"a")
    b = net.submit(cl, b"f", b"", b"b")
    plain = net.worker(b"f")
    told = opted_in(net, b"f")
    assert net.grab(plain)[1][0] == a
    assert net.grab(told)[1][0] == b
    assert net.admin(adm, b"cancel job " + a + b"\n") == b"OK\r\n"
    assert net.take(plain) == b"" and net.take(told) == b""
    assert net.admin(adm, b"cancel job " + b + b"\n") == b"OK\r\n"
    assert net.take(told) == res(c.JOB_CANCEL, b) and net.take(plain) == b""
    # The plain worker's late result is dropped, as before the extension.
    net.send(plain, c.WORK_COMPLETE, a, b"late")
    assert net.take(plain) == b"" and net.take(cl) == res(c.WORK_FAIL, a) + res(c.WORK_FAIL, b)


def test_a_queued_job_or_a_finished_one_sends_no_job_cancel(net: Net) -> None:
    adm, cl = net.connect(), net.connect()
    w = opted_in(net, b"f")
    net.sleep(w)
    queued = net.submit(cl, b"f")
    assert net.take(w) == res(c.NOOP)
    assert net.admin(adm, b"cancel job " + queued + b"\n") == b"OK\r\n"
    assert net.take(w) == b"" and net.take(cl) == res(c.WORK_FAIL, queued)
    done = net.submit(cl, b"f")
    net.take(w)
    assert net.grab(w)[1][0] == done
    net.send(w, c.WORK_COMPLETE, done, b"r")
    net.send(w, c.WORK_EXCEPTION, b"H:t:99", b"x")  # unknown: the usual ERROR, nothing else
    assert [t for t, _ in net.recv(w)] == [c.ERROR]


def test_can_do_timeout_tells_an_opted_in_worker(net: Net) -> None:
    cl = net.connect()
    h = net.submit(cl, b"f")
    w = net.connect()
    net.send(w, c.OPTION_REQ, b"job_cancel")
    net.send(w, c.CAN_DO_TIMEOUT, b"f", b"1000")
    net.take(w)
    net.grab(w)
    net.now += 1.0
    net.broker.run_timers()
    assert net.take(cl) == res(c.WORK_FAIL, h)
    assert net.take(w) == res(c.JOB_CANCEL, h)
    assert w.worker_jobs == {}
    net.send(w, c.WORK_FAIL, h)  # the job is gone: JOB_NOT_FOUND, as for any late result
    assert net.recv(w) == [error(b"JOB_NOT_FOUND", b"Job given in work result not found")]


def test_a_lost_opted_in_worker_requeues_without_writing(net: Net) -> None:
    cl = net.connect()
    h = net.submit(cl, b"f")
    w = opted_in(net, b"f")
    net.grab(w)
    net.broker.disconnect(w)
    assert w.out == [] and w not in net.broker.dirty
    w2 = opted_in(net, b"f")
    assert net.grab(w2)[1][0] == h


def test_job_cancel_sent_to_the_server_is_an_invalid_command(net: Net) -> None:
    p = net.connect()
    net.send(p, c.JOB_CANCEL, b"H:t:1")
    net.raw(p, b"\x00RES" + struct.pack("!II", c.JOB_CANCEL, 5) + b"H:t:1")
    net.send(p, c.ECHO_REQ, b"still open")
    assert net.recv(p) == [
        error(b"INVALID_COMMAND", b"Command not expected"),
        error(b"INVALID_MAGIC", b"Request magic expected"),
        (c.ECHO_RES, b"still open"),
    ]
    assert not p.closing
    # Types between gearmand's last (42) and the extension stay unknown: the connection closes.
    net.raw(p, b"\x00REQ" + struct.pack("!II", 50, 0))
    assert p.closing


def test_the_opt_in_keeps_the_fast_path(net: Net) -> None:
    # The flag is per peer and read only when a running job is cancelled or times out:
    # functions stay on the pipelined path (Function.plain) and plain jobs run as before.
    w = opted_in(net, b"f")
    cl = net.connect()
    f = net.broker.functions[b"f"]
    assert f.plain
    net.raw(cl, b"".join(request(c.SUBMIT_JOB, b"f", b"", b"%d" % i) for i in range(3)))
    handles = [body for _, body in net.recv(cl)]
    for h in handles:
        assert net.grab(w)[1][0] == h
        net.send(w, c.WORK_COMPLETE, h, b"r")
    assert net.take(w) == b"" and f.plain and net.broker.jobs == {}
