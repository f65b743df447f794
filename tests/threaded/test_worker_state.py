"""The worker's grab state machine, driven through a socketpair by a scripted server."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator

import pytest

import gear
from gear import constants
from tests.threaded.fakes import Peer


@pytest.fixture
def worker() -> Iterator[gear.Worker]:
    w = gear.Worker("w1")
    yield w
    w.shutdown()


def _get_job_in_thread(worker: gear.Worker) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(worker.getJob())
        except gear.InterruptedError as e:
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_grab_sleep_noop_assign_cycle(worker: gear.Worker) -> None:
    peer = Peer(worker)
    t, out = _get_job_in_thread(worker)
    peer.expect(constants.GRAB_JOB_UNIQ)
    assert peer.conn.state == "GRAB_WAIT"
    peer.send(constants.NO_JOB)
    peer.expect(constants.PRE_SLEEP)
    assert peer.conn.state == "SLEEP"
    peer.send(constants.NOOP)
    peer.expect(constants.GRAB_JOB_UNIQ)
    peer.send(constants.JOB_ASSIGN_UNIQ, b"H:1", b"fn", b"", b"arg\x00s")
    t.join(5)
    (job,) = out
    assert isinstance(job, gear.WorkerJob)
    assert (job.handle, job.name, job.arguments, job.unique) == (b"H:1", "fn", b"arg\x00s", None)
    assert job.connection is peer.conn
    assert peer.conn.state == "IDLE"
    job.sendWorkComplete(b"ok")
    assert peer.expect(constants.WORK_COMPLETE).body == b"H:1\x00ok"


def test_plain_job_assign_and_many_waiting_threads(worker: gear.Worker) -> None:
    peer = Peer(worker)
    threads = [_get_job_in_thread(worker) for _ in range(3)]
    for i in range(3):
        peer.expect(constants.GRAB_JOB_UNIQ)  # one grab in flight per connection
        peer.send(constants.JOB_ASSIGN, b"H:%d" % i, b"fn", b"a")
    handles = set()
    for t, out in threads:
        t.join(5)
        handles.add(out[0].handle)  # type: ignore[attr-defined]
    assert handles == {b"H:0", b"H:1", b"H:2"}
    assert worker.waiting_for_jobs == 0


def test_register_function_while_sleeping_grabs_again(worker: gear.Worker) -> None:
    peer = Peer(worker)
    t, out = _get_job_in_thread(worker)
    peer.expect(constants.GRAB_JOB_UNIQ)
    peer.send(constants.NO_JOB)
    peer.expect(constants.PRE_SLEEP)
    worker.registerFunction("late", timeout=1.5)
    frame = peer.expect(constants.CAN_DO_TIMEOUT)
    assert frame.args() == [b"late", b"1500"]  # seconds -> milliseconds
    peer.expect(constants.GRAB_JOB_UNIQ)
    peer.send(constants.JOB_ASSIGN_UNIQ, b"H:9", b"late", b"u", b"")
    t.join(5)
    assert out[0].unique == b"u"  # type: ignore[attr-defined]


def test_stop_waiting_waits_for_grab_answer(worker: gear.Worker) -> None:
    peer = Peer(worker)
    t, out = _get_job_in_thread(worker)
    peer.expect(constants.GRAB_JOB_UNIQ)
    stopper = threading.Thread(target=worker.stopWaitingForJobs)
    stopper.start()
    stopper.join(0.05)
    assert stopper.is_alive()  # a grab is in flight: a job may still be assigned
    peer.send(constants.NO_JOB)
    stopper.join(5)
    t.join(5)
    assert not stopper.is_alive() and not t.is_alive()
    assert isinstance(out[0], gear.InterruptedError)
    assert worker.waiting_for_jobs == 0


def test_reconnect_sends_client_id_and_functions_in_one_write(worker: gear.Worker) -> None:
    worker.registerFunction("a")
    worker.registerFunction("b", timeout=2)
    peer = Peer(worker, state="INIT")
    worker._onConnect(peer.conn)
    assert peer.expect(constants.SET_CLIENT_ID).body == b"w1"
    assert peer.expect(constants.CAN_DO).body == b"a"
    assert peer.expect(constants.CAN_DO_TIMEOUT).body == b"b\x002000"
    assert peer.conn.state == "IDLE"


def test_set_functions_and_unregister(worker: gear.Worker) -> None:
    peer = Peer(worker)
    worker.setFunctions([gear.FunctionRecord("x"), gear.FunctionRecord(b"y", 3)])
    peer.expect(constants.RESET_ABILITIES)
    peer.expect(constants.CAN_DO)
    peer.expect(constants.CAN_DO_TIMEOUT)
    assert set(worker.functions) == {b"x", b"y"}
    worker.unRegisterFunction("x")
    assert peer.expect(constants.CANT_DO).body == b"x"
    with pytest.raises(gear.InvalidDataError):
        worker.setFunctions(["x"])  # type: ignore[list-item]


def test_worker_id_is_a_deprecated_alias() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w = gear.Worker(worker_id="legacy")
    try:
        assert w.client_id == b"legacy"
        assert any(issubclass(c.category, DeprecationWarning) for c in caught)
    finally:
        w.shutdown()
    with pytest.raises(gear.ConfigurationError):
        gear.Worker()


def test_shutdown_interrupts_get_job() -> None:
    w = gear.TextWorker("w2")
    t, out = _get_job_in_thread(w)
    while w.waiting_for_jobs == 0:
        t.join(0.001)
    w.shutdown()
    t.join(5)
    assert isinstance(out[0], gear.InterruptedError)
    with pytest.raises(gear.InterruptedError):
        w.getJob()


def test_job_assign_all_is_read_by_the_shared_parser(worker: gear.Worker) -> None:
    # Only a GRAB_JOB_ALL (sent by a subclass) gets this; the reducer has no WorkerJob field.
    peer = Peer(worker)
    t, out = _get_job_in_thread(worker)
    peer.expect(constants.GRAB_JOB_UNIQ)
    peer.send(constants.JOB_ASSIGN_ALL, b"H:7", b"fn", b"u7", b"reducer", b"args")
    t.join(5)
    (job,) = out
    assert isinstance(job, gear.WorkerJob)
    assert (job.handle, job.name, job.arguments, job.unique) == (b"H:7", "fn", b"args", b"u7")
    assert peer.conn.state == "IDLE"
