"""The Worker's direct reads (issue 14): the only thread waiting in getJob reads its one
connection itself instead of waiting for the poll thread's hand-off, and gives it back."""

from __future__ import annotations

import linecache
import select
import struct
import sys
import threading

import pytest

import gear
from gear import constants
from tests.support.peers import wait_for
from tests.threaded.fakes import Peer, get_job_in_thread


def _peer(worker: gear.Worker) -> Peer:
    peer = Peer(worker)

    def taken_up() -> bool:
        # The poll thread has taken the connection up, read the wake Peer wrote AND is back in
        # poll() with that set: a build begun before that wake has the connection too, but the
        # wake then rebuilds the poll set, and a getJob during the rebuild (from the wake's
        # drain to the next build) finds no poller and does not read directly.
        pending_wake = select.select([worker.wake_read], [], [], 0)[0]
        frame = sys._current_frames().get(worker.poll_thread.ident or -1)
        polling = (frame is not None and frame.f_code.co_name == "_pollSet"
                   and "poll.poll()" in linecache.getline(frame.f_code.co_filename,
                                                          frame.f_lineno))
        return peer.conn in worker._polled and not pending_wake and polling

    wait_for(taken_up, 5.0)
    return peer



def _echo_in_thread(conn: object) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(conn.echo(b"ping", 5)),  # type: ignore[attr-defined]
                         daemon=True)
    t.start()
    return t, out


def _answer_echo(peer: Peer) -> None:
    assert peer.expect(constants.ECHO_REQ).body == b"ping"
    peer.send(constants.ECHO_RES, b"ping")


def test_the_only_waiter_reads_its_connection_then_hands_it_back(worker: gear.Worker) -> None:
    peer = _peer(worker)
    t, out = get_job_in_thread(worker)
    peer.expect(constants.GRAB_JOB_UNIQ)
    wait_for(lambda: worker._direct is peer.conn, 5.0)
    # The whole grab cycle is read by the getJob thread: NO_JOB -> PRE_SLEEP -> NOOP -> GRAB.
    peer.send(constants.NO_JOB)
    peer.expect(constants.PRE_SLEEP)
    peer.send(constants.NOOP)
    peer.expect(constants.GRAB_JOB_UNIQ)
    peer.send(constants.JOB_ASSIGN_UNIQ, b"H:1", b"fn", b"u", b"a")
    t.join(5)
    (job,) = out
    assert isinstance(job, gear.WorkerJob) and job.handle == b"H:1"
    assert worker._direct is None and worker.waiting_for_jobs == 0
    # The poll thread reads the connection again while the job runs.
    e, answer = _echo_in_thread(peer.conn)
    _answer_echo(peer)
    e.join(5)
    assert answer == [b"ping"]
    job.sendWorkComplete(b"done")
    assert peer.expect(constants.WORK_COMPLETE).body == b"H:1\x00done"


def test_replies_for_other_threads_are_read_by_the_direct_reader(worker: gear.Worker) -> None:
    peer = _peer(worker)
    t, out = get_job_in_thread(worker)
    peer.expect(constants.GRAB_JOB_UNIQ)
    peer.send(constants.NO_JOB)
    peer.expect(constants.PRE_SLEEP)
    assert worker._direct is peer.conn
    e, answer = _echo_in_thread(peer.conn)
    _answer_echo(peer)
    e.join(5)
    assert answer == [b"ping"]
    worker.stopWaitingForJobs()
    t.join(5)
    assert len(out) == 1 and isinstance(out[0], gear.InterruptedError)
    assert worker._direct is None


def test_two_threads_get_distinct_jobs_while_one_reads_directly(worker: gear.Worker) -> None:
    peer = _peer(worker)
    a = get_job_in_thread(worker)
    peer.expect(constants.GRAB_JOB_UNIQ)
    wait_for(lambda: worker._direct is peer.conn, 5.0)
    b = get_job_in_thread(worker)
    wait_for(lambda: worker.waiting_for_jobs == 2, 5.0)
    peer.send(constants.JOB_ASSIGN, b"H:1", b"fn", b"a")
    peer.expect(constants.GRAB_JOB_UNIQ)  # one grab in flight: the next one, for the other
    peer.send(constants.JOB_ASSIGN, b"H:2", b"fn", b"b")
    handles = set()
    for t, out in (a, b):
        t.join(5)
        handles.add(out[0].handle)  # type: ignore[attr-defined]
    assert handles == {b"H:1", b"H:2"}
    assert worker.waiting_for_jobs == 0


def test_a_second_connection_ends_the_direct_read(worker: gear.Worker) -> None:
    first = _peer(worker)
    t, out = get_job_in_thread(worker)
    first.expect(constants.GRAB_JOB_UNIQ)
    first.send(constants.NO_JOB)
    first.expect(constants.PRE_SLEEP)
    assert worker._direct is first.conn
    second = Peer(worker)
    worker._onActiveConnection(second.conn)  # what the connect thread does next
    second.expect(constants.GRAB_JOB_UNIQ)
    second.send(constants.JOB_ASSIGN, b"H:9", b"fn", b"x")
    t.join(5)
    assert [j.handle for j in out] == [b"H:9"]  # type: ignore[attr-defined]
    assert worker._direct is None


def test_connection_lost_during_a_direct_wait_reconnects_and_grabs_again() -> None:
    server = gear.Server(0, host="127.0.0.1")
    worker = gear.Worker("w-lost")
    client = gear.Client("c-lost")
    try:
        worker.addServer("127.0.0.1", int(server.port))
        client.addServer("127.0.0.1", int(server.port))
        worker.waitForServer(10)
        client.waitForServer(10)
        worker.registerFunction("fn")
        (conn,) = worker.active_connections
        wait_for(lambda: conn in worker._polled, 5.0)
        t, out = get_job_in_thread(worker)
        wait_for(lambda: worker._direct is conn, 5.0)
        sock = conn.conn
        sock.shutdown(2)  # the connection dies under the waiting getJob thread
        wait_for(lambda: worker._direct is None, 5.0)
        assert t.is_alive()  # getJob keeps waiting across the reconnect, as in gear
        worker.waitForServer(10)
        wait_for(lambda: conn.conn is not None and conn.conn is not sock
                 and conn in worker.active_connections, 5.0)
        job = gear.Job("fn", b"again")
        client.submitJob(job)
        t.join(10)
        (got,) = out
        assert isinstance(got, gear.WorkerJob) and got.arguments == b"again"
        got.sendWorkComplete(b"ok")
        assert job.wait(10) and job.data == [b"ok"]
    finally:
        client.shutdown()
        worker.shutdown()
        server.shutdown()


def test_shutdown_ends_a_direct_wait() -> None:
    worker = gear.Worker("w-shut")
    peer = _peer(worker)
    t, out = get_job_in_thread(worker)
    peer.expect(constants.GRAB_JOB_UNIQ)
    wait_for(lambda: worker._direct is peer.conn, 5.0)
    worker.shutdown()
    t.join(5)
    assert len(out) == 1 and isinstance(out[0], gear.InterruptedError)
    assert worker._direct is None and worker._direct_wake_read == -1


def test_a_packet_split_across_reads_is_reassembled_by_the_direct_reader(
    worker: gear.Worker,
) -> None:
    peer = _peer(worker)
    t, out = get_job_in_thread(worker)
    peer.expect(constants.GRAB_JOB_UNIQ)
    wait_for(lambda: worker._direct is peer.conn, 5.0)
    from gear.protocol.packets import response

    data = response(constants.JOB_ASSIGN_UNIQ, b"H:5", b"fn", b"u", b"payload")
    peer.sock.sendall(data[:7])
    t.join(0.05)
    assert t.is_alive()
    peer.sock.sendall(data[7:])
    t.join(5)
    assert [j.handle for j in out] == [b"H:5"]  # type: ignore[attr-defined]


def test_a_subclass_with_its_own_hooks_keeps_them_on_the_poll_thread() -> None:
    threads: list[str] = []

    class Hooked(gear.Worker):
        def handleJobAssign(self, packet: gear.Packet) -> None:
            threads.append(threading.current_thread().name)
            super().handleJobAssign(packet)

    for plain in (gear.Worker("w"), gear.TextWorker("w")):  # TextWorker adds no hook
        assert plain._direct_reads is True
        plain.shutdown()
    worker = Hooked("w-hooked")
    try:
        assert worker._direct_reads is False
        peer = _peer(worker)
        t, out = get_job_in_thread(worker)
        peer.expect(constants.GRAB_JOB_UNIQ)
        assert worker._direct is None
        peer.send(constants.JOB_ASSIGN, b"H:3", b"fn", b"a")
        t.join(5)
        assert [j.handle for j in out] == [b"H:3"]  # type: ignore[attr-defined]
        assert threads == ["Gearman client poll"]
    finally:
        worker.shutdown()


def test_a_malformed_job_assign_uniq_is_refused_and_the_next_one_served(
    worker: gear.Worker, caplog: pytest.LogCaptureFixture,
) -> None:
    peer = _peer(worker)
    t, out = get_job_in_thread(worker)
    peer.expect(constants.GRAB_JOB_UNIQ)
    body = b"H:1\x00fn"  # two fields of four (response() refuses to build it)
    peer.sock.sendall(b"\x00RES" + struct.pack(">II", constants.JOB_ASSIGN_UNIQ, len(body)) + body)
    peer.send(constants.JOB_ASSIGN_UNIQ, b"H:2", b"fn", b"", b"a\x00b")
    t.join(5)
    (job,) = out
    assert isinstance(job, gear.WorkerJob)
    assert (job.handle, job.name, job.unique, job.arguments) == (b"H:2", "fn", None, b"a\x00b")
    assert "Exception handling" in caplog.text
