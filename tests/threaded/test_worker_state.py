"""The worker's grab state machine, driven through a socketpair by a scripted server (and a
thread pool sharing one Worker against gear.Server on port 0)."""

from __future__ import annotations

import queue
import threading
import warnings

import pytest

import gear
from gear import constants
from tests.threaded.fakes import Peer, get_job_in_thread


def test_grab_sleep_noop_assign_cycle(worker: gear.Worker) -> None:
    peer = Peer(worker)
    t, out = get_job_in_thread(worker)
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
    threads = [get_job_in_thread(worker) for _ in range(3)]
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
    t, out = get_job_in_thread(worker)
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
    t, out = get_job_in_thread(worker)
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
    t, out = get_job_in_thread(w)
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
    t, out = get_job_in_thread(worker)
    peer.expect(constants.GRAB_JOB_UNIQ)
    peer.send(constants.JOB_ASSIGN_ALL, b"H:7", b"fn", b"u7", b"reducer", b"args")
    t.join(5)
    (job,) = out
    assert isinstance(job, gear.WorkerJob)
    assert (job.handle, job.name, job.arguments, job.unique) == (b"H:7", "fn", b"args", b"u7")
    assert peer.conn.state == "IDLE"


class _GatedQueue:
    """The worker's job queue, except that a *blocking* get waits for ``gate`` first: it holds a
    getJob caller that is already waiting while another takes the job queued for it."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.gate = threading.Event()
        self.blocked = threading.Event()
        self.cond = threading.Condition()

    def empty(self) -> bool:
        return self.queue.empty()

    def put(self, item: object) -> None:
        with self.cond:
            self.queue.put(item)
            self.cond.notify_all()

    def get(self, block: bool = True) -> object:
        if block:
            self.blocked.set()
            self.gate.wait(5)
        return self.queue.get(block)


def test_taking_a_queued_job_while_others_wait_keeps_grabbing(worker: gear.Worker) -> None:
    # Issue 15 (a): thread A waits; the job assigned for it is queued; before A wakes, thread B
    # calls getJob and takes that job. A still waits, so the connection must grab for it.
    # (A, the only waiter, reads the JOB_ASSIGN itself and then blocks on the queue; with
    # more waiters the poll thread reads it: either way A is blocked with H:1 queued.)
    gated = _GatedQueue()
    worker.job_queue = gated  # type: ignore[assignment]
    peer = Peer(worker)
    t, out = get_job_in_thread(worker)  # A
    peer.expect(constants.GRAB_JOB_UNIQ)
    peer.send(constants.JOB_ASSIGN, b"H:1", b"fn", b"a")
    assert gated.blocked.wait(5)
    with gated.cond:
        assert gated.cond.wait_for(lambda: not gated.empty(), 5)
    assert worker.waiting_for_jobs == 0
    job = worker.getJob()  # B: takes H:1 at once, while A still waits
    assert job.handle == b"H:1"
    assert worker.waiting_for_jobs == 1
    peer.expect(constants.GRAB_JOB_UNIQ)  # the grab for A: without it A waits forever
    peer.send(constants.JOB_ASSIGN, b"H:2", b"fn", b"b")
    gated.gate.set()
    t.join(5)
    assert [j.handle for j in out] == [b"H:2"]  # type: ignore[attr-defined]
    assert worker.waiting_for_jobs == 0


def test_a_thread_pool_sharing_one_worker_never_stalls() -> None:
    # Issue 15 (a) end to end: 4 threads call getJob exactly 25 times each per round while 2
    # client threads submit 100 jobs; every round must deliver all 100 (bench/
    # stress_worker_wakeup.py runs the same for 1,000 rounds).
    from tests.support.wakeup import run_rounds

    server = gear.Server(0, host="127.0.0.1")
    try:
        result = run_rounds("127.0.0.1", int(server.port), rounds=50, stall_after=3.0)
    finally:
        server.shutdown()
    assert result.stalls == 0, result
    assert result.rounds == 50
