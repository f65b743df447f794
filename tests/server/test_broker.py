"""Unit tests of gear.server.broker: bytes in, bytes out, with an injected clock.

The helpers (:class:`Net`, :class:`Store`...) are in tests/server/helpers.py.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from gear import constants as c
from gear.protocol.messages import Priority
from gear.protocol.packets import REQ, RES, encode, request
from gear.server.broker import Broker, Job, Peer
from gear.server.gear_server import queued_jobs
from gear.server.storage.base import StoredJob
from tests.server.helpers import Net, Store, error, res


@pytest.fixture
def net() -> Net:
    return Net()


# ---------------------------------------------------------------------- basics


def test_round_trip_bytes(net: Net) -> None:
    w = net.worker(b"rev")
    net.sleep(w)
    cl = net.connect()
    net.send(cl, c.SUBMIT_JOB, b"rev", b"u1", b"hello")
    assert net.take(cl) == res(c.JOB_CREATED, b"H:t:1")
    assert net.take(w) == res(c.NOOP)
    net.send(w, c.GRAB_JOB_ALL)
    assert net.take(w) == res(c.JOB_ASSIGN_UNIQ, b"H:t:1", b"rev", b"u1", b"hello")
    net.send(w, c.WORK_DATA, b"H:t:1", b"part")
    net.send(w, c.WORK_COMPLETE, b"H:t:1", b"olleh")
    assert net.take(cl) == res(c.WORK_DATA, b"H:t:1", b"part") + res(
        c.WORK_COMPLETE, b"H:t:1", b"olleh")
    assert net.take(w) == b""
    assert net.broker.jobs == {}


def test_handles_count_from_one_and_default_prefix() -> None:
    net = Net(handle_prefix=None)
    cl = net.connect()
    host = socket.gethostname().encode()
    assert net.submit(cl, b"f", ptype=c.SUBMIT_JOB_BG) == b"H:" + host + b":1"
    assert net.submit(cl, b"f", ptype=c.SUBMIT_JOB_BG) == b"H:" + host + b":2"


def test_grab_job_variants(net: Net) -> None:
    cl = net.connect()
    net.send(cl, c.SUBMIT_REDUCE_JOB_BACKGROUND, b"f", b"u1", b"red", b"", b"d1")
    assert net.recv(cl) == [(c.JOB_CREATED, b"H:t:1")]
    net.submit(cl, b"f", b"u2", b"d2", c.SUBMIT_JOB_BG)
    net.send(cl, c.SUBMIT_REDUCE_JOB, b"f", b"u3", b"red2", b"agg", b"d3")
    net.recv(cl)
    w = net.worker(b"f")
    assert net.grab(w, c.GRAB_JOB_ALL) == (c.JOB_ASSIGN_ALL, [b"H:t:1", b"f", b"u1", b"red", b"d1"])
    assert net.grab(w, c.GRAB_JOB_ALL) == (c.JOB_ASSIGN_UNIQ, [b"H:t:2", b"f", b"u2", b"d2"])
    assert net.grab(w, c.GRAB_JOB) == (c.JOB_ASSIGN, [b"H:t:3", b"f", b"d3"])
    assert net.grab(w, c.GRAB_JOB) == (c.NO_JOB, [b""])


def test_echo_option_and_client_id(net: Net) -> None:
    p = net.connect()
    net.send(p, c.ECHO_REQ, b"hello\x00world")
    net.send(p, c.ECHO_REQ, b"")
    net.send(p, c.OPTION_REQ, b"EXCEPTIONS")
    net.send(p, c.OPTION_REQ, b"nope")
    assert net.recv(p) == [
        (c.ECHO_RES, b"hello\x00world"),
        (c.ECHO_RES, b""),
        (c.OPTION_RES, b"EXCEPTIONS"),
        error(b"UNKNOWN_OPTION", b"Server does not recognize given option"),
    ]
    assert p.exceptions
    net.send(p, c.SET_CLIENT_ID, b"x" * 200)
    assert p.client_id == b"x" * 127


def test_can_do_does_not_deduplicate(net: Net) -> None:
    w = net.worker(b"dup", b"dup")
    assert net.broker.functions[b"dup"].workers == 2
    net.send(w, c.CANT_DO, b"dup")
    assert net.broker.functions[b"dup"].workers == 0
    assert w.functions == []


# ---------------------------------------------------------------------- priorities


def test_priority_and_fifo_within_a_function(net: Net) -> None:
    cl = net.connect()
    for data, ptype in ((b"low1", c.SUBMIT_JOB_LOW_BG), (b"norm1", c.SUBMIT_JOB_BG),
                        (b"high1", c.SUBMIT_JOB_HIGH_BG), (b"low2", c.SUBMIT_JOB_LOW),
                        (b"norm2", c.SUBMIT_JOB), (b"high2", c.SUBMIT_JOB_HIGH)):
        net.submit(cl, b"f", b"", data, ptype)
    w = net.worker(b"f")
    got = [net.grab(w)[1][3] for _ in range(6)]
    assert got == [b"high1", b"high2", b"norm1", b"norm2", b"low1", b"low2"]


def test_priority_is_global_across_functions(net: Net) -> None:
    cl = net.connect()
    net.submit(cl, b"a", b"", b"a-low", c.SUBMIT_JOB_LOW_BG)
    net.submit(cl, b"b", b"", b"b-norm1", c.SUBMIT_JOB_BG)
    net.submit(cl, b"a", b"", b"a-norm2", c.SUBMIT_JOB_BG)
    net.submit(cl, b"b", b"", b"b-high", c.SUBMIT_JOB_HIGH_BG)
    net.submit(cl, b"a", b"", b"a-high", c.SUBMIT_JOB_HIGH_BG)
    net.submit(cl, b"c", b"", b"c-high", c.SUBMIT_JOB_HIGH_BG)  # not the worker's function
    w = net.worker(b"a", b"b")
    got = [net.grab(w)[1][3] for _ in range(5)]
    # HIGH of every function first, oldest first; then NORMAL in submission order; then LOW.
    assert got == [b"b-high", b"a-high", b"b-norm1", b"a-norm2", b"a-low"]
    assert net.grab(w)[0] == c.NO_JOB
    assert [j.arguments for j in queued_jobs(net.broker, Priority.HIGH)] == [b"c-high"]


# ---------------------------------------------------------------------- coalescing


def test_coalescing_foreground_clients_all_get_results(net: Net) -> None:
    c1, c2 = net.connect(), net.connect()
    h = net.submit(c1, b"f", b"same", b"one")
    assert net.submit(c2, b"f", b"same", b"two", c.SUBMIT_JOB_HIGH) == h
    assert net.submit(c1, b"f", b"same", b"three") == h  # same connection twice
    assert len(net.broker.jobs) == 1
    w = net.worker(b"f")
    assert net.grab(w)[1] == [h, b"f", b"same", b"one"]  # first data and priority kept
    net.send(w, c.WORK_STATUS, h, b"1", b"4")
    net.send(cl := net.connect(), c.GET_STATUS_UNIQUE, b"same")
    assert net.recv(cl) == [(c.STATUS_RES_UNIQUE, b"same\x001\x001\x001\x004\x003")]
    net.send(w, c.WORK_COMPLETE, h, b"r")
    status, complete = res(c.WORK_STATUS, h, b"1", b"4"), res(c.WORK_COMPLETE, h, b"r")
    assert net.take(c2) == status + complete
    assert net.take(c1) == status * 2 + complete * 2  # attached twice: everything twice
    # Gone after completion: the same unique makes a new job.
    assert net.submit(c1, b"f", b"same") != h


def test_coalescing_background_and_foreground(net: Net) -> None:
    c1, c2 = net.connect(), net.connect()
    h = net.submit(c1, b"f", b"u", b"bg", c.SUBMIT_JOB_BG)
    assert net.submit(c2, b"f", b"u", b"fg") == h  # foreground attaches to a background job
    assert net.submit(c1, b"g", b"u", b"other function") != h
    w = net.worker(b"f")
    net.grab(w)
    net.send(w, c.WORK_COMPLETE, h, b"done")
    assert net.recv(c2) == [(c.WORK_COMPLETE, h + b"\x00done")]
    assert net.recv(c1) == []


def test_empty_unique_never_coalesces_and_dash_coalesces_on_data(net: Net) -> None:
    cl = net.connect()
    assert net.submit(cl, b"f", b"", b"d") != net.submit(cl, b"f", b"", b"d")
    a = net.submit(cl, b"f", b"-", b"payload", c.SUBMIT_JOB_BG)
    assert net.submit(cl, b"f", b"-", b"payload", c.SUBMIT_JOB_BG) == a
    assert net.submit(cl, b"f", b"-", b"other", c.SUBMIT_JOB_BG) != a
    e = net.submit(cl, b"f", b"-", b"", c.SUBMIT_JOB_BG)
    assert net.submit(cl, b"f", b"-", b"", c.SUBMIT_JOB_BG) != e


def test_unique_size_limit(net: Net) -> None:
    cl = net.connect()
    net.send(cl, c.SUBMIT_JOB_BG, b"f", b"u" * 65, b"d")
    assert net.recv(cl) == [error(b"ARGUMENT_TOO_LARGE", b"Unique value too large")]
    h = net.submit(cl, b"f", b"u" * 64, b"d", c.SUBMIT_JOB_BG)
    assert net.submit(cl, b"f", b"u" * 64, b"d", c.SUBMIT_JOB_BG) == h  # kept whole, coalesces
    net.send(cl, c.SUBMIT_REDUCE_JOB, b"f", b"u", b"r" * 65, b"", b"d")
    assert net.recv(cl) == [error(b"ARGUMENT_TOO_LARGE", b"Unique value too large")]


# ---------------------------------------------------------------------- worker loss, retries


def test_worker_lost_requeues_to_front_and_counts_retries(net: Net) -> None:
    cl = net.connect()
    first = net.submit(cl, b"f", b"", b"first")
    net.submit(cl, b"f", b"", b"second")
    w1 = net.worker(b"f")
    assert net.grab(w1)[1][0] == first
    net.send(w1, c.WORK_STATUS, first, b"1", b"2")
    net.recv(cl)
    sleeper = net.worker(b"f")
    net.broker.disconnect(w1)
    assert net.recv(cl) == []  # clients are not told (3.6)
    assert net.broker.jobs[first].retries == 1
    net.send(cl, c.GET_STATUS, first)
    assert net.recv(cl) == [(c.STATUS_RES, first + b"\x001\x000\x000\x000")]
    assert net.grab(sleeper)[1][3] == b"first"  # front of the queue, before "second"


def test_job_retries_limit_fails_the_job() -> None:
    net = Net(job_retries=2)
    cl = net.connect()
    h = net.submit(cl, b"f")
    for attempt in (1, 2):
        w = net.worker(b"f")
        assert net.grab(w)[1][0] == h
        net.broker.disconnect(w)
        if attempt == 1:
            assert net.recv(cl) == []
    assert net.take(cl) == res(c.WORK_FAIL, h)  # the handle, no trailing NUL
    assert net.broker.jobs == {}


def test_cant_do_requeues_held_jobs(net: Net) -> None:
    cl = net.connect()
    h = net.submit(cl, b"f")
    w = net.worker(b"f", b"g")
    net.grab(w)
    net.send(w, c.CANT_DO, b"f")
    assert w.functions == [b"g"]
    net.send(w, c.WORK_COMPLETE, h, b"late")
    assert net.recv(w) == [error(b"JOB_NOT_FOUND", b"Job given in work result not found")]
    w2 = net.worker(b"f")
    assert net.grab(w2)[1][0] == h
    net.send(w2, c.RESET_ABILITIES)
    assert net.broker.jobs[h].state == 0 and net.broker.jobs[h].retries == 2


def test_last_foreground_client_gone(net: Net) -> None:
    c1, c2 = net.connect(), net.connect()
    queued = net.submit(c1, b"f", b"", b"queued")
    running = net.submit(c1, b"g", b"", b"running")
    kept = net.submit(c1, b"f", b"k", b"kept")
    assert net.submit(c2, b"f", b"k", b"kept", c.SUBMIT_JOB_BG) == kept
    w = net.worker(b"g")
    assert net.grab(w)[1][0] == running
    net.broker.disconnect(c1)
    assert queued not in net.broker.jobs  # removed at once (gearmand: counted until reaped)
    assert kept in net.broker.jobs  # a background submitter still wants it
    assert net.admin(c2, b"status\n") == b"f\t1\t0\t0\ng\t1\t1\t1\n.\n"
    net.send(w, c.WORK_COMPLETE, running, b"nobody listens")
    assert net.recv(w) == []
    assert running not in net.broker.jobs


# ---------------------------------------------------------------------- results


def test_results_for_unknown_or_foreign_handles(net: Net) -> None:
    cl = net.connect()
    h = net.submit(cl, b"f")
    w, other = net.worker(b"f"), net.worker(b"f")
    net.grab(w)
    for ptype, args in ((c.WORK_COMPLETE, (h, b"r")), (c.WORK_FAIL, (h,)),
                        (c.WORK_STATUS, (h, b"1", b"2"))):
        net.send(other, ptype, *args)
        assert net.recv(other) == [error(b"JOB_NOT_FOUND", b"Job given in work result not found")]
    for ptype in (c.WORK_DATA, c.WORK_WARNING):
        net.send(other, ptype, h, b"d")
        assert net.recv(other) == [error(b"JOB_NOT_FOUND", b"Job does not exist on server")]
    net.send(other, c.WORK_EXCEPTION, b"H:t:99", b"boom")
    assert net.recv(other) == [
        error(b"JOB_NOT_FOUND", b"An exception was received for a job that does not exist")]
    net.send(other, c.WORK_FAIL, b"H" * 64)
    assert net.recv(other) == [error(
        b"ARGUMENT_TOO_LARGE",
        b"Error occurred due to GEARMAND_JOB_HANDLE_SIZE being too small from snprintf")]
    assert net.recv(cl) == []
    net.send(w, c.WORK_FAIL, h)
    assert net.take(cl) == res(c.WORK_FAIL, h)


def test_exceptions_option(net: Net) -> None:
    with_opt, without = net.connect(), net.connect()
    net.send(with_opt, c.OPTION_REQ, b"exceptions")
    net.recv(with_opt)
    h = net.submit(with_opt, b"f", b"u")
    net.submit(without, b"f", b"u")
    w = net.worker(b"f")
    net.grab(w)
    net.send(w, c.WORK_EXCEPTION, h, b"boom\x00bytes")
    assert net.take(with_opt) == res(c.WORK_EXCEPTION, h, b"boom\x00bytes")
    assert net.take(without) == res(c.WORK_FAIL, h)  # no trailing NUL
    net.send(w, c.WORK_FAIL, h)  # the job is finished: a later fail is unknown
    assert net.recv(w) == [error(b"JOB_NOT_FOUND", b"Job given in work result not found")]


def test_exceptions_default() -> None:
    net = Net(exceptions_default=True)
    cl = net.connect()
    h = net.submit(cl, b"f")
    w = net.worker(b"f")
    net.grab(w)
    net.send(w, c.WORK_EXCEPTION, h, b"e")
    assert net.take(cl) == res(c.WORK_EXCEPTION, h, b"e")


def test_get_status_bytes(net: Net) -> None:
    cl = net.connect()
    net.send(cl, c.GET_STATUS, b"H:nope:1")
    assert net.take(cl) == res(c.STATUS_RES, b"H:nope:1", b"0", b"0", b"0", b"0")
    h = net.submit(cl, b"f", ptype=c.SUBMIT_JOB_BG)
    net.send(cl, c.GET_STATUS, h)
    assert net.take(cl) == res(c.STATUS_RES, h, b"1", b"0", b"0", b"0")
    w = net.worker(b"f")
    net.grab(w)
    net.send(w, c.WORK_STATUS, h, b"1", b"4")
    net.send(cl, c.GET_STATUS, h)
    assert net.take(cl) == res(c.STATUS_RES, h, b"1", b"1", b"1", b"4")
    net.send(w, c.WORK_STATUS, h, b"-1", b"junk")  # atoi, printed as uint32 (1.2)
    net.send(cl, c.GET_STATUS, h)
    assert net.take(cl) == res(c.STATUS_RES, h, b"1", b"1", b"4294967295", b"0")
    net.send(w, c.WORK_COMPLETE, h, b"")
    net.send(cl, c.GET_STATUS, h)
    assert net.take(cl) == res(c.STATUS_RES, h, b"0", b"0", b"0", b"0")
    net.send(cl, c.GET_STATUS_UNIQUE, b"nouniq")
    assert net.take(cl) == res(c.STATUS_RES_UNIQUE, b"nouniq", b"0", b"0", b"0", b"0", b"0")


# ---------------------------------------------------------------------- CAN_DO_TIMEOUT


def test_can_do_timeout_fails_the_job_and_frees_the_worker(net: Net) -> None:
    cl = net.connect()
    h = net.submit(cl, b"f")
    w = net.connect()
    net.send(w, c.CAN_DO_TIMEOUT, b"f", b"10")  # below the 1000 ms minimum
    net.grab(w)
    assert net.broker.next_deadline() == net.now + 1.0
    net.now += 0.999
    net.broker.run_timers()
    assert net.recv(cl) == []
    net.now += 0.001
    net.broker.run_timers()
    assert net.take(cl) == res(c.WORK_FAIL, h)
    assert w.worker_jobs == {} and net.broker.functions[b"f"].running == 0
    net.send(w, c.WORK_COMPLETE, h, b"late")
    assert net.recv(w) == [error(b"JOB_NOT_FOUND", b"Job given in work result not found")]
    assert net.broker.next_deadline() is None


def test_can_do_timeout_timer_per_job_and_cancelled(net: Net) -> None:
    cl = net.connect()
    a = net.submit(cl, b"f", b"", b"a")
    b = net.submit(cl, b"f", b"", b"b")
    w = net.connect()
    net.send(w, c.CAN_DO_TIMEOUT, b"f", b"5000")
    net.grab(w)
    net.now += 2
    net.grab(w)  # a second job, its own timer
    net.send(w, c.PRE_SLEEP)  # does not cancel timers (gearmand bug 3.18.5)
    net.send(w, c.WORK_COMPLETE, a, b"")
    assert net.broker.next_deadline() == net.now + 5
    net.now += 5
    net.broker.run_timers()
    assert net.recv(cl) == [(c.WORK_COMPLETE, a + b"\x00"), (c.WORK_FAIL, b)]


def test_disconnect_cancels_timers_and_never_writes_to_the_gone_peer() -> None:
    net = Net(job_retries=1)
    both = net.connect()
    net.send(both, c.CAN_DO_TIMEOUT, b"f", b"2000")
    h = net.submit(both, b"f")
    net.grab(both)
    other = net.connect()
    assert net.submit(other, b"f", b"", b"second") != h
    net.grab(both)
    net.broker.disconnect(both)
    assert both.out == [] and both not in net.broker.dirty
    assert net.broker.next_deadline() is None
    assert net.take(other) == res(c.WORK_FAIL, b"H:t:2")  # retry limit 1: failed at once
    assert net.broker.jobs == {}


@pytest.mark.parametrize("value", [b"0", b"-5", b"abc"])
def test_can_do_timeout_without_timer(net: Net, value: bytes) -> None:
    cl = net.connect()
    net.submit(cl, b"f")
    w = net.connect()
    net.send(w, c.CAN_DO_TIMEOUT, b"f", value)
    assert w.functions == [b"f"]
    net.grab(w)
    assert net.broker.next_deadline() is None


def test_can_do_timeout_value_too_long_closes(net: Net) -> None:
    w = net.connect()
    net.send(w, c.CAN_DO_TIMEOUT, b"f", b"1" * 21)
    assert w.closing and w.functions == []


# ---------------------------------------------------------------------- epoch jobs


def test_epoch_job_runs_at_its_time(net: Net) -> None:
    w = net.worker(b"f")
    net.sleep(w)
    cl = net.connect()
    when = int(net.now) + 10
    net.send(cl, c.SUBMIT_JOB_EPOCH, b"f", b"u", str(when).encode(), b"later")
    assert net.recv(cl) == [(c.JOB_CREATED, b"H:t:1")]
    assert net.recv(w) == []  # not runnable yet: no NOOP
    assert net.admin(cl, b"prioritystatus\n") == b"f\t0\t1\t0\t1\n.\n"
    assert net.broker.next_deadline() == when
    net.now = when - 0.5
    net.broker.run_timers()
    assert net.recv(w) == []
    net.now = when
    net.broker.run_timers()
    assert net.recv(w) == [(c.NOOP, b"")]
    assert net.grab(w)[1] == [b"H:t:1", b"f", b"u", b"later"]


def test_epoch_in_the_past_or_junk_runs_now(net: Net) -> None:
    cl = net.connect()
    net.send(cl, c.SUBMIT_JOB_EPOCH, b"f", b"", b"12", b"past")
    net.send(cl, c.SUBMIT_JOB_EPOCH, b"f", b"", b"abc", b"junk")
    net.recv(cl)
    w = net.worker(b"f")
    assert [net.grab(w)[1][3] for _ in range(2)] == [b"past", b"junk"]


def test_epoch_overflow_closes(net: Net) -> None:
    cl = net.connect()
    net.send(cl, c.SUBMIT_JOB_EPOCH, b"f", b"", b"9" * 30, b"d")
    assert cl.closing and net.recv(cl) == []


def test_future_epoch_job_does_not_block_low_jobs_peek_equals_take(net: Net) -> None:
    cl = net.connect()
    net.send(cl, c.SUBMIT_JOB_EPOCH, b"f", b"", str(int(net.now) + 100).encode(), b"later")
    net.recv(cl)
    net.submit(cl, b"f", b"", b"low", c.SUBMIT_JOB_LOW_BG)
    w = net.worker(b"f")
    net.send(w, c.PRE_SLEEP)
    assert net.recv(w) == [(c.NOOP, b"")]  # peek sees the LOW job...
    assert net.grab(w)[1][3] == b"low"  # ...and take delivers it
    net.send(w, c.PRE_SLEEP)
    assert net.recv(w) == []  # nothing runnable: sleeps, no NOOP loop


def test_grab_runs_overdue_timers_itself(net: Net) -> None:
    cl = net.connect()
    net.send(cl, c.SUBMIT_JOB_EPOCH, b"f", b"", str(int(net.now) + 5).encode(), b"d")
    w = net.worker(b"f")
    net.now += 5  # the network layer has not called run_timers yet
    assert net.grab(w)[0] == c.JOB_ASSIGN_UNIQ


# ---------------------------------------------------------------------- wakeups


def test_one_noop_per_sleep_cycle_for_all_sleepers(net: Net) -> None:
    workers = [net.worker(b"f") for _ in range(3)]
    busy = net.worker(b"f")  # never sleeps: never NOOPed
    for w in workers:
        net.sleep(w)
    cl = net.connect()
    net.submit(cl, b"f", ptype=c.SUBMIT_JOB_BG)
    net.submit(cl, b"f", ptype=c.SUBMIT_JOB_BG)
    for w in workers:
        assert net.recv(w) == [(c.NOOP, b"")]
    assert net.recv(busy) == []
    net.submit(cl, b"g", ptype=c.SUBMIT_JOB_BG)  # another function wakes nobody
    assert all(net.recv(w) == [] for w in workers)


def test_pre_sleep_with_work_waiting_gets_an_immediate_noop(net: Net) -> None:
    cl = net.connect()
    net.submit(cl, b"f", ptype=c.SUBMIT_JOB_BG)
    w = net.worker(b"f")
    net.send(w, c.PRE_SLEEP)
    assert net.recv(w) == [(c.NOOP, b"")]


def test_worker_wakeup_spreads() -> None:
    net = Net(worker_wakeup=1)
    a, b, c_ = net.worker(b"f"), net.worker(b"f"), net.worker(b"f")
    for w in (a, b, c_):
        net.sleep(w)
    cl = net.connect()
    net.submit(cl, b"f", ptype=c.SUBMIT_JOB_BG)
    assert (net.recv(a), net.recv(b), net.recv(c_)) == ([(c.NOOP, b"")], [], [])
    net.submit(cl, b"f", ptype=c.SUBMIT_JOB_BG)
    assert (net.recv(a), net.recv(b), net.recv(c_)) == ([], [(c.NOOP, b"")], [])
    net.grab(a)
    net.send(a, c.PRE_SLEEP)  # work is still queued: immediate NOOP
    assert net.recv(a) == [(c.NOOP, b"")]


def test_sleeping_worker_registering_a_busy_function_is_woken(net: Net) -> None:
    cl = net.connect()
    net.submit(cl, b"g", ptype=c.SUBMIT_JOB_BG)
    w = net.worker(b"f")
    net.sleep(w)
    net.send(w, c.CAN_DO, b"g")
    assert net.recv(w) == [(c.NOOP, b"")]


def test_requeue_wakes_sleepers(net: Net) -> None:
    cl = net.connect()
    net.submit(cl, b"f")
    w1, w2 = net.worker(b"f"), net.worker(b"f")
    net.grab(w1)
    net.sleep(w2)
    net.broker.disconnect(w1)
    assert net.recv(w2) == [(c.NOOP, b"")]


# ---------------------------------------------------------------------- limits, ACL


def test_maxqueue_compares_the_function_total(net: Net) -> None:
    adm = net.connect()
    net.admin(adm, b"create function f\r\n")
    assert net.admin(adm, b"maxqueue f 10 3 100\r\n") == b"OK\r\n"
    cl = net.connect()
    for i in range(3):
        net.submit(cl, b"f", b"u%d" % i, ptype=c.SUBMIT_JOB_HIGH_BG)
    w = net.worker(b"f")
    net.grab(w)  # running jobs count too
    net.send(cl, c.SUBMIT_JOB_BG, b"f", b"", b"x")
    assert net.recv(cl) == [error(b"QUEUE_ERROR", b"Job queue is full")]
    net.submit(cl, b"f", b"", ptype=c.SUBMIT_JOB_HIGH_BG)
    net.submit(cl, b"f", b"u1", ptype=c.SUBMIT_JOB_BG)  # coalesced: always accepted
    net.submit(cl, b"f", b"", ptype=c.SUBMIT_JOB_LOW_BG)


class _DenyAll:
    def canInvoke(self, subject: str | None, name: str) -> bool:
        return subject == "ok" and name == "f"

    def canRegister(self, subject: str | None, name: str) -> bool:
        return subject == "ok"


def test_acl_enforcement() -> None:
    net = Net(acl=_DenyAll())
    bad, good = net.connect(), net.connect("ok")
    net.send(bad, c.SUBMIT_JOB, b"f", b"", b"d")
    assert net.recv(bad) == [error(b"PERMISSION_DENIED", b"Permission denied by ACL")]
    net.submit(good, b"f")
    net.send(bad, c.CAN_DO, b"f")
    assert bad.functions == [] and net.recv(bad) == []
    net.send(good, c.CAN_DO, b"f")
    assert good.functions == [b"f"]


# ---------------------------------------------------------------------- bad input


def test_bad_input_closes_or_answers_like_gearmand(net: Net) -> None:
    p = net.connect()
    net.raw(p, encode(RES, c.ECHO_REQ, [b"x"]) + request(c.ECHO_REQ, b"y"))
    assert net.recv(p) == [error(b"INVALID_MAGIC", b"Request magic expected"), (c.ECHO_RES, b"y")]
    for ptype in (c.NOOP, c.JOB_CREATED, c.NO_JOB, c.ECHO_RES, c.OPTION_RES, 5, c.ALL_YOURS):
        net.raw(p, struct.pack("!4sII", REQ, ptype, 0))
        assert net.recv(p) == [error(b"INVALID_COMMAND", b"Command not expected")], ptype
    net.send(p, c.SUBMIT_JOB_SCHED, b"f", b"u", b"1", b"2", b"3", b"4", b"5", b"d")
    assert net.recv(p) == [error(b"INVALID_COMMAND", b"Command not expected")]
    assert not p.closing


@pytest.mark.parametrize(
    "data",
    [
        b"\x00REX" + struct.pack("!II", c.ECHO_REQ, 0),  # bad magic
        struct.pack("!4sII", REQ, 0, 0),  # type 0
        struct.pack("!4sII", REQ, 43, 0),  # type 43
        struct.pack("!4sII", REQ, c.SUBMIT_JOB_BG, 5) + b"fn\x00da",  # too few fields
        struct.pack("!4sII", REQ, c.SUBMIT_REDUCE_JOB, 7) + b"f\x00u\x00r\x00d",  # 3-arg reduce
        struct.pack("!4sII", REQ, c.SUBMIT_JOB_SCHED, 5) + b"f\x00u\x00d",
        struct.pack("!4sII", REQ, c.ECHO_REQ, 2**31),  # oversize
        request(c.GET_STATUS, b"H" * 64),
        request(c.GET_STATUS_UNIQUE, b"u" * 64),
        struct.pack("!4sII", REQ, c.WORK_COMPLETE, 5) + b"H:t:1",  # no separator
    ],
)
def test_malformed_input_closes_silently(net: Net, data: bytes) -> None:
    p = net.connect()
    net.raw(p, data + request(c.ECHO_REQ, b"after"))
    assert p.closing and p in net.broker.dirty
    assert net.recv(p) == []
    net.raw(p, request(c.ECHO_REQ, b"ignored"))
    assert net.recv(p) == []
    assert net.broker.jobs == {}


def test_output_before_a_bad_packet_is_kept(net: Net) -> None:
    p = net.connect()
    net.raw(p, request(c.ECHO_REQ, b"before") + struct.pack("!4sII", REQ, 99, 0))
    assert p.closing and net.recv(p) == [(c.ECHO_RES, b"before")]


def test_any_chunking_gives_the_same_output(net: Net) -> None:
    stream = b"".join([request(c.SUBMIT_JOB_BG, b"f", b"", b"d%d" % i) for i in range(5)])
    stream += b"status\r\n" + request(c.ECHO_REQ, b"e")
    whole = Net()
    p = whole.connect()
    whole.raw(p, stream)
    expected = whole.take(p)
    q = net.connect()
    for i in range(len(stream)):
        net.raw(q, stream[i:i + 1])
    assert net.take(q) == expected


@pytest.mark.parametrize("chunk", [7, 4096, 65536])
def test_large_packets_in_chunks(net: Net, chunk: int) -> None:
    big = bytes(range(256)) * 1024  # 256 KiB: more than the fast path keeps aside
    stream = (request(c.ECHO_REQ, b"a") + request(c.SUBMIT_JOB_BG, b"f", b"", big)
              + b"status\n" + encode(RES, c.ECHO_REQ, [b"r"]) + request(c.ECHO_REQ, b"z"))
    p = net.connect()
    for i in range(0, len(stream), chunk):
        net.raw(p, stream[i:i + chunk])
    assert net.take(p) == (res(c.ECHO_RES, b"a") + res(c.JOB_CREATED, b"H:t:1") + b"f\t1\t0\t0\n.\n"
                           + res(c.ERROR, b"INVALID_MAGIC", b"Request magic expected")
                           + res(c.ECHO_RES, b"z"))
    assert net.broker.jobs[b"H:t:1"].arguments == big


def test_packet_size_limit_is_configurable() -> None:
    net = Net(max_packet_size=100)
    p = net.connect()
    net.send(p, c.ECHO_REQ, b"x" * 100)
    assert net.recv(p) == [(c.ECHO_RES, b"x" * 100)]
    net.send(p, c.ECHO_REQ, b"x" * 101)
    assert p.closing and net.recv(p) == []


# ---------------------------------------------------------------------- durability


@pytest.fixture(params=[False, True], ids=["callback", "batched"])
def store(request: pytest.FixtureRequest) -> Store:
    return Store(batched=request.param)


def test_store_holds_output_in_order_until_done(store: Store) -> None:
    net = store.net()
    cl, other = net.connect(), net.connect()
    w = net.worker(b"f")
    net.sleep(w)
    net.send(cl, c.SUBMIT_JOB_BG, b"f", b"u1", b"one")
    net.send(cl, c.SUBMIT_JOB_LOW_BG, b"f", b"", b"two")
    net.send(cl, c.ECHO_REQ, b"after")
    net.send(other, c.ECHO_REQ, b"other")
    assert net.recv(cl) == [] and net.recv(w) == []
    assert net.recv(other) == [(c.ECHO_RES, b"other")]  # other peers unaffected
    assert [r.key for r, _ in store.pending] == [1, 2]
    first = store.pending[0][0]
    assert (first.function, first.unique, first.data, first.priority) == (b"f", b"u1", b"one", 1)
    assert store.pending[1][0].priority == 2
    net.send(w, c.GRAB_JOB_UNIQ)
    assert net.recv(w) == [(c.NO_JOB, b"")]  # not runnable before done
    store.finish(1)  # the second store completes first: still held behind the first
    assert net.recv(cl) == []
    store.finish(0)
    assert net.recv(cl) == [(c.JOB_CREATED, b"H:t:1"), (c.JOB_CREATED, b"H:t:2"),
                            (c.ECHO_RES, b"after")]
    net.send(cl, c.ECHO_REQ, b"direct")
    assert net.recv(cl) == [(c.ECHO_RES, b"direct")]
    assert net.grab(w)[1][0] == b"H:t:1"
    net.send(w, c.WORK_COMPLETE, b"H:t:1", b"")
    assert store.removed == [1]


def test_store_failure_answers_queue_error(store: Store) -> None:
    net = store.net()
    cl, fg = net.connect(), net.connect()
    net.send(cl, c.SUBMIT_JOB_BG, b"f", b"u", b"d")
    net.send(fg, c.SUBMIT_JOB, b"f", b"u", b"d")  # coalesces onto the held job: waits too
    net.send(fg, c.SUBMIT_JOB, b"f", b"", b"foreground")  # never stored
    assert len(store.pending) == 1
    store.finish(0, OSError("disk full"))
    assert net.recv(cl) == [error(b"QUEUE_ERROR", b"disk full")]
    assert net.recv(fg) == [error(b"QUEUE_ERROR", b"disk full"), (c.JOB_CREATED, b"H:t:2")]
    assert list(net.broker.jobs) == [b"H:t:2"] and store.removed == []
    store.pending.clear()


def test_store_raising_at_once_answers_queue_error() -> None:
    def store(record: StoredJob, done: object) -> None:
        raise OSError("database is locked")

    net = Net(store=store)
    cl = net.connect()
    net.send(cl, c.SUBMIT_JOB_BG, b"f", b"", b"d")
    net.send(cl, c.ECHO_REQ, b"next")
    assert net.recv(cl) == [error(b"QUEUE_ERROR", b"database is locked"), (c.ECHO_RES, b"next")]
    assert net.broker.jobs == {}


def test_store_done_after_disconnect_still_runs_the_job(store: Store) -> None:
    net = store.net()
    cl = net.connect()
    net.send(cl, c.SUBMIT_JOB_BG, b"f", b"", b"d")
    net.broker.disconnect(cl)
    store.finish()
    assert net.broker.dirty == set()
    w = net.worker(b"f")
    assert net.grab(w)[1][3] == b"d"


def test_cancel_and_retry_exhaustion_remove_stored_jobs(store: Store) -> None:
    net = store.net(job_retries=1)
    cl = net.connect()
    net.send(cl, c.SUBMIT_JOB_BG, b"f", b"", b"a")
    net.send(cl, c.SUBMIT_JOB_BG, b"f", b"", b"b")
    store.finish()
    store.finish()
    assert net.admin(cl, b"show jobs\n").count(b"\n") == 3  # jobs plus the "." line
    assert net.admin(cl, b"cancel job H:t:1\r\n") == b"OK\r\n"
    w = net.worker(b"f")
    net.grab(w)
    net.broker.disconnect(w)
    assert store.removed == [1, 2]
    assert net.broker.jobs == {}


def test_replay(store: Store) -> None:
    net = store.net()
    net.broker.replay([
        StoredJob(7, b"f", b"u", b"first", 1, 0),
        StoredJob(9, b"f", b"u", b"dup", 1, 0),
        StoredJob(8, b"f", b"", b"high", 0, 0),
        StoredJob(10, b"f", b"", b"epoch", 1, int(net.now) + 60),
    ])
    assert store.removed == [9]
    cl = net.connect()
    assert net.submit(cl, b"f", b"u", b"again", c.SUBMIT_JOB_BG) == b"H:t:1"  # coalesced
    net.send(cl, c.SUBMIT_JOB_BG, b"f", b"new", b"d")
    assert store.pending[0][0].key == 11
    w = net.worker(b"f")
    assert [net.grab(w)[1][3] for _ in range(2)] == [b"high", b"first"]
    assert net.grab(w)[0] == c.NO_JOB


# ---------------------------------------------------------------------- extension points


def test_take_job_can_be_overridden() -> None:
    class Holding(Broker):
        def take_job(self, peer: Peer, peek: bool = False) -> Job | None:
            job = super().take_job(peer, peek=True)
            if job is None or job.arguments == b"hold":
                return None
            return super().take_job(peer, peek)

    net = Net()
    net.broker = Holding(net.broker.config, clock=lambda: net.now)
    cl = net.connect()
    net.submit(cl, b"f", b"", b"hold", c.SUBMIT_JOB_BG)
    w = net.worker(b"f")
    assert net.grab(w)[0] == c.NO_JOB
    queued = [job for p in Priority for job in queued_jobs(net.broker, p)]
    assert [j.arguments for j in queued] == [b"hold"]
    assert queued_jobs(net.broker, Priority.NORMAL)[0].client_connection is None


def test_finished_jobs_do_not_pile_up_timers(net: Net) -> None:
    cl = net.connect()
    w = net.connect()
    net.send(w, c.CAN_DO_TIMEOUT, b"f", b"60000")
    for _ in range(3000):
        h = net.submit(cl, b"f", ptype=c.SUBMIT_JOB_BG)
        net.grab(w)
        net.send(w, c.WORK_COMPLETE, h, b"")
    assert len(net.broker._timers) <= 2048  # cancelled entries are compacted away
    assert net.broker.next_deadline() is None


def test_handles_with_a_trailing_nul_are_tolerated(net: Net) -> None:
    cl = net.connect()
    h = net.submit(cl, b"f")
    net.send(cl, c.GET_STATUS, h + b"\x00")
    assert net.recv(cl) == [(c.STATUS_RES, h + b"\x00\x001\x000\x000\x000")]
    w = net.worker(b"f")
    net.grab(w)
    net.send(w, c.WORK_FAIL, h + b"\x00")  # as gearmand itself used to send it (3.9)
    assert net.take(cl) == res(c.WORK_FAIL, h + b"\x00")  # forwarded as received
    assert net.broker.jobs == {}


def test_store_done_twice_is_harmless(store: Store) -> None:
    net = store.net()
    cl = net.connect()
    net.send(cl, c.SUBMIT_JOB_BG, b"f", b"", b"d")
    _, done = store.pending[0]
    store.finish()
    store.answer(done, OSError("late"))
    assert net.recv(cl) == [(c.JOB_CREATED, b"H:t:1")]
    assert list(net.broker.jobs) == [b"H:t:1"]


# ---------------------------------------------------------------------- batched durability


def test_batched_store_gets_one_call_per_feed_and_answers_in_order() -> None:
    store = Store(batched=True)
    net = store.net()
    cl, other = net.connect(), net.connect()
    net.raw(cl, request(c.SUBMIT_JOB_BG, b"f", b"a", b"1")
            + request(c.SUBMIT_JOB_HIGH_BG, b"f", b"b", b"2")
            + request(c.ECHO_REQ, b"between")
            + request(c.SUBMIT_JOB_LOW_BG, b"g", b"", b"3"))
    assert store.calls == 1  # one store call for the whole read
    assert [(r.key, r.function, r.unique, r.data, r.priority) for r, _ in store.pending] == [
        (1, b"f", b"a", b"1", 1), (2, b"f", b"b", b"2", 0), (3, b"g", b"", b"3", 2)]
    net.send(other, c.SUBMIT_JOB_BG, b"f", b"a", b"coalesced")  # waits for job 1's store
    assert store.calls == 1 and net.recv(other) == [] and net.recv(cl) == []
    assert cl.pending == 3 and other.pending == 1
    jobs = [job for _, job in store.pending]
    assert store.broker is not None
    store.broker.stored_batch(jobs[1:], None)  # 2 and 3 first: cl still waits for 1
    assert net.recv(cl) == [] and net.recv(other) == [] and cl.pending == 1
    store.broker.stored_batch(jobs[:1], None)
    assert net.recv(cl) == [(c.JOB_CREATED, b"H:t:1"), (c.JOB_CREATED, b"H:t:2"),
                            (c.ECHO_RES, b"between"), (c.JOB_CREATED, b"H:t:3")]
    assert net.recv(other) == [(c.JOB_CREATED, b"H:t:1")]
    assert cl.pending == other.pending == 0
    w = net.worker(b"f", b"g")
    assert [net.grab(w)[1][3] for _ in range(3)] == [b"2", b"1", b"3"]  # runnable by priority


def test_batched_store_failure_answers_every_waiter() -> None:
    store = Store(batched=True)
    net = store.net()
    cl, fg = net.connect(), net.connect()
    net.raw(cl, request(c.SUBMIT_JOB_BG, b"f", b"u", b"d")
            + request(c.SUBMIT_JOB_BG, b"f", b"", b"e"))
    net.send(fg, c.SUBMIT_JOB, b"f", b"u", b"d")  # foreground attached to the held job
    net.send(cl, c.ECHO_REQ, b"after")
    assert store.broker is not None
    store.broker.stored_batch([job for _, job in store.pending], OSError("disk full"))
    assert net.recv(cl) == [error(b"QUEUE_ERROR", b"disk full")] * 2 + [(c.ECHO_RES, b"after")]
    assert net.recv(fg) == [error(b"QUEUE_ERROR", b"disk full")]
    assert net.broker.jobs == {} and store.removed == []
    store.broker.stored_batch([job for _, job in store.pending], None)  # answered twice: no-op
    assert net.recv(cl) == [] and net.broker.jobs == {}


def test_batched_store_raising_at_once_fails_that_feed() -> None:
    def store_batched(records: list[StoredJob], jobs: list[Job]) -> None:
        raise OSError("database is locked")

    net = Net(store_batched=store_batched)
    cl = net.connect()
    net.raw(cl, request(c.SUBMIT_JOB_BG, b"f", b"", b"d") + request(c.ECHO_REQ, b"next")
            + request(c.SUBMIT_JOB_BG, b"f", b"", b"e"))
    assert net.recv(cl) == [error(b"QUEUE_ERROR", b"database is locked"), (c.ECHO_RES, b"next"),
                            error(b"QUEUE_ERROR", b"database is locked")]
    assert net.broker.jobs == {}


def test_every_background_submit_survives_a_restart(tmp_path: Path) -> None:
    """Each stored submit type comes back from storage as it was submitted: function, unique,
    data, priority, epoch time and the reducer of a background reduce job."""
    from gear.server.storage.sqlite import SqliteStorage

    storage = SqliteStorage(tmp_path / "queue.db")
    assert storage.load() == []
    store = Store(batched=True)
    net = store.net()
    cl = net.connect()
    later = int(net.now) + 60
    net.send(cl, c.SUBMIT_JOB_BG, b"f", b"u-normal", b"normal")
    net.send(cl, c.SUBMIT_JOB_HIGH_BG, b"f", b"u-high", b"high")
    net.send(cl, c.SUBMIT_JOB_LOW_BG, b"f", b"", b"low")
    net.send(cl, c.SUBMIT_REDUCE_JOB_BACKGROUND, b"f", b"u-reduce", b"red", b"", b"reduce")
    net.send(cl, c.SUBMIT_JOB_EPOCH, b"f", b"u-epoch", b"%d" % later, b"epoch")
    records = [record for record, _ in store.pending]
    storage.add(records)
    storage.close()

    storage = SqliteStorage(tmp_path / "queue.db")
    replayed = storage.load()
    storage.close()
    assert replayed == records
    restarted = Net()
    restarted.now = net.now
    restarted.broker.replay(replayed)
    w = restarted.worker(b"f")
    grabs = [restarted.grab(w, c.GRAB_JOB_ALL) for _ in range(4)]
    assert [(ptype, body[2:]) for ptype, body in grabs] == [
        (c.JOB_ASSIGN_UNIQ, [b"u-high", b"high"]),
        (c.JOB_ASSIGN_UNIQ, [b"u-normal", b"normal"]),
        (c.JOB_ASSIGN_ALL, [b"u-reduce", b"red", b"reduce"]),  # its reducer survived
        (c.JOB_ASSIGN_UNIQ, [b"", b"low"]),
    ]
    assert restarted.grab(w, c.GRAB_JOB_ALL)[0] == c.NO_JOB  # the epoch job waits for its time
    restarted.now = later
    restarted.broker.run_timers()
    assert restarted.grab(w, c.GRAB_JOB_ALL) == (
        c.JOB_ASSIGN_UNIQ, [b"H:t:5", b"f", b"u-epoch", b"epoch"])
