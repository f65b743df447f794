"""gear.harp against a live ``geard --harp-port`` with Python workers built on
:class:`gear.threaded.harp_worker.HarpWorker`: results, exceptions, errors, streams, cancel,
queues, time limits, the call's record, and what a dead or broken dispatcher looks like."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import gear.harp as harp
from tests.harp.conftest import WAIT, Procedures

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("worker")


def test_result_and_record(rpc: harp.HarpCaller) -> None:
    call = rpc.localhost(info={"who": "test"}).echo(1, "two", [3])
    assert isinstance(call.id(), str)
    assert call.get() == [1, "two", [3]]
    assert call.result() == [1, "two", [3]]
    assert (call.host(), call.procedure(), call.args()) == ("localhost", "echo", [1, "two", [3]])
    assert call.info() == {"who": "test"}
    assert call.submit_time() <= call.start_time() <= call.end_time()


def test_keyword_arguments_and_mixed_refused(rpc: harp.HarpCaller) -> None:
    assert rpc.localhost.kw(a=1, b=[2]).get() == {"a": 1, "b": [2]}
    with pytest.raises(harp.HarpException, match="mixed"):
        rpc.localhost.kw(1, a=2)


def test_host_forms(rpc: harp.HarpCaller) -> None:
    assert rpc.host("localhost").echo("x").get() == ["x"]
    assert rpc("localhost").echo("y").get() == ["y"]
    proc = rpc.localhost.echo
    assert (proc.host(), proc.procedure()) == ("localhost", "echo")
    assert str(rpc.localhost) == "localhost"


def test_result_by_id_from_a_second_process(rpc: harp.HarpCaller) -> None:
    call = rpc.localhost.count(3)
    assert call.get() == "done"
    script = (
        "import json, sys\n"
        "import gear.harp as harp\n"
        "job = harp.HarpCaller('127.0.0.1', int(sys.argv[1]), timeout=10).job(sys.argv[2])\n"
        "print(json.dumps([job.get(), job.stream().all(), job.procedure()]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", script, str(rpc._port), call.id()],
                         capture_output=True, text=True, timeout=60, env=env, check=True)
    assert json.loads(out.stdout) == ["done", [0, 1, 2], "count"]


def test_exception_reply(rpc: harp.HarpCaller) -> None:
    call = rpc.localhost.raise_remote("disk_full")
    with pytest.raises(harp.RemoteException) as info:
        call.get()
    assert (info.value.type, info.value.message, info.value.data) == (
        "disk_full", "disk_full happened", {"detail": [1, 2]})
    outcome = call.result()
    assert isinstance(outcome, harp.RemoteException) and outcome.type == "disk_full"
    plain = rpc.localhost.boom().result(wait=True)
    assert isinstance(plain, harp.RemoteException)
    assert (plain.type, plain.message, plain.data) == ("ValueError", "bad value", None)


def test_error_reply_for_an_unknown_job(rpc: harp.HarpCaller) -> None:
    call = rpc.job("3f22e0d4-c8ed-11e5-8d66-001e8c140268")
    with pytest.raises(harp.RemoteError) as info:
        call.get()
    assert info.value.type == "invalid_jobid"
    assert isinstance(call.result(), harp.RemoteError)
    with pytest.raises(harp.RemoteError):
        call.submit_time()
    assert call.cancel() is False


def test_not_finished_is_not_remembered(rpc: harp.HarpCaller, procs: Procedures) -> None:
    call = rpc.localhost.hold("nf")
    procs.wait_until(lambda: "nf" in procs.started, "the call to start")
    assert call.result() is harp.CALL_NOT_FINISHED
    assert call.get(wait=False) is harp.CALL_NOT_FINISHED
    assert call.end_time() is None
    procs.gate("nf").set()
    assert call.get() == "nf"
    assert call.result(wait=False) == "nf"


def test_follow_since_recent_numbered(rpc: harp.HarpCaller) -> None:
    call = rpc.localhost.count(5)
    assert call.get() == "done"
    assert call.follow(since=0).all() == [0, 1, 2, 3, 4]
    assert call.follow(since=3, numbered=True).all() == [(3, 3), (4, 4)]
    assert call.follow(recent=2).all() == [3, 4]
    assert call.follow().all() == []  # recent=0 on an ended call: nothing, then the end
    assert list(call.stream(recent=1, numbered=True)) == [(4, 4)]
    it = call.follow(since=4)
    assert next(it) == 4
    with pytest.raises(StopIteration):
        next(it)
    with pytest.raises(harp.HarpException):
        call.follow(since=1, recent=1)


def test_follow_live_and_stream_paging(rpc: harp.HarpCaller, procs: Procedures) -> None:
    call = rpc.localhost.feed("live")
    procs.wait_until(lambda: "live" in procs.started, "the call to start")
    feed = procs.feed_queue("live")
    follow = call.follow(since=0, numbered=True)
    feed.put({"n": 0})
    assert next(follow) == (0, {"n": 0})
    feed.put({"n": 1})
    assert next(follow) == (1, {"n": 1})
    # read_stream pages through what is stored and stops ("continue") while the call runs.
    assert call.stream().all() == [{"n": 0}, {"n": 1}]
    assert call.stream(since=1, numbered=True).all() == [(1, {"n": 1})]
    assert call.result() is harp.CALL_NOT_FINISHED
    feed.put("last")
    assert next(follow) == (2, "last")
    feed.put(None)
    with pytest.raises(StopIteration):
        next(follow)
    # The follow's end line was the result: remembered, no request needed.
    assert call._result == "live fed"
    assert call.get() == "live fed"
    assert call.stream(since=2).all() == ["last"]


def test_cancel_running(rpc: harp.HarpCaller, procs: Procedures) -> None:
    call = rpc.localhost.hold("running")
    procs.wait_until(lambda: "running" in procs.started, "the call to start")
    assert call.cancel() is True
    assert call.result() is harp.CALL_CANCELLED
    with pytest.raises(harp.CancelledException):
        call.get()
    assert call.cancel() is False
    assert call.start_time() is not None and call.end_time() is not None
    procs.gate("running").set()
    # The worker's late WORK_COMPLETE is dropped: still cancelled, and the worker goes on.
    assert rpc.localhost.echo("after").get() == ["after"]
    assert rpc.job(call.id()).result() is harp.CALL_CANCELLED


def test_cancel_queued_and_times(rpc: harp.HarpCaller, procs: Procedures) -> None:
    first = rpc.localhost(queue={"q": "cancel"}, concurrency=1).hold("first")
    second = rpc.localhost(queue={"q": "cancel"}, concurrency=1).hold("second")
    procs.wait_until(lambda: "first" in procs.started, "the first call to start")
    assert second.start_time() is None and second.end_time() is None
    assert second.submit_time() is not None
    assert second.cancel() is True
    assert second.result() is harp.CALL_CANCELLED
    assert second.start_time() is None
    assert second.end_time() >= second.submit_time()
    procs.gate("first").set()
    assert first.get() == "first"
    assert "second" not in procs.started


def test_concurrency_two_never_runs_three(rpc: harp.HarpCaller, procs: Procedures) -> None:
    server = rpc.localhost(queue={"pool": "two"}, concurrency=2)
    names = [f"c{i}" for i in range(6)]
    calls = [server.hold(name) for name in names]
    for released, name in enumerate(names):
        # The worker has 4 threads; the queue lets 2 in. Wait for the 2 (or the last one),
        # check no third ever started, and let the oldest go.
        expected = min(2, len(names) - released)
        procs.wait_until(lambda e=expected: procs.running == e, f"{expected} running")
        assert procs.max_running <= 2
        procs.gate(name).set()
    assert [c.get() for c in calls] == names
    assert procs.max_running == 2
    assert procs.started == names  # in order


def test_timeout_fires(rpc: harp.HarpCaller, procs: Procedures) -> None:
    call = rpc.localhost(timeout=0.3).hold("silent")
    with pytest.raises(harp.RemoteError) as info:
        call.get()
    assert (info.value.type, info.value.message) == ("timeout", "reading result timed out")


def test_max_exec_time_fires(rpc: harp.HarpCaller, procs: Procedures) -> None:
    call = rpc.localhost(max_exec_time=0.3).feed("chatty")
    procs.wait_until(lambda: "chatty" in procs.started, "the call to start")
    procs.feed_queue("chatty").put("tick")
    with pytest.raises(harp.RemoteError) as info:
        call.get()
    assert (info.value.type, info.value.message) == ("timeout",
                                                     "maximum execution time exceeded")
    assert call.stream().all() == ["tick"]


def test_request_and_connect(rpc: harp.HarpCaller) -> None:
    job_id = rpc.localhost.echo(7).id()
    assert rpc.request({"harpcaller": 1, "get_result": job_id, "wait": True}) == {"result": [7]}
    with rpc.connect() as conn:
        conn.send({"harpcaller": 1, "get_status": job_id})
        assert conn.receive()["call"]["procedure"] == "echo"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_is_communication_error() -> None:
    rpc = harp.HarpCaller("127.0.0.1", _closed_port(), timeout=WAIT)
    with pytest.raises(harp.CommunicationError, match="can't connect"):
        rpc.localhost.echo(1)
    call = rpc.job("3f22e0d4-c8ed-11e5-8d66-001e8c140268")
    assert isinstance(call.result(), harp.CommunicationError)
    with pytest.raises(harp.CommunicationError):
        call.get()
    with pytest.raises(harp.CommunicationError):
        call.follow()


class BadServer:
    """A listener that answers every connection with ``reply`` (bytes) and closes."""

    def __init__(self, reply: bytes) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.makefile("rb").readline()
                conn.sendall(self.reply)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("reply", [b"", b"not json\n", b'{"what": 1}\n', b"[1, 2]\n"])
def test_bad_server_is_communication_error(reply: bytes) -> None:
    server = BadServer(reply)
    try:
        rpc = harp.HarpCaller("127.0.0.1", server.port, timeout=WAIT)
        with pytest.raises(harp.CommunicationError):
            rpc.localhost.echo(1)
        outcome: Any = rpc.job("3f22e0d4-c8ed-11e5-8d66-001e8c140268").result()
        assert isinstance(outcome, harp.CommunicationError)
        assert ("EOF" in str(outcome)) == (reply == b"")
    finally:
        server.close()


def test_a_host_name_is_looked_up(live: Any) -> None:
    rpc = harp.HarpCaller("localhost", live.harp_port, timeout=WAIT)
    assert rpc.localhost.echo("by name").get() == ["by name"]
    with pytest.raises(TypeError, match="unknown job options"):
        rpc.localhost(queues={"typo": 1})
    with pytest.raises(AttributeError):
        rpc.__wrapped__  # noqa: B018 - dunder names are not hosts (copy, pickle, inspect)


def test_a_silent_dispatcher_times_out() -> None:
    """The read timeout is the kernel's (SO_RCVTIMEO) on plain TCP: same error, same bound."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        rpc = harp.HarpCaller("127.0.0.1", listener.getsockname()[1], timeout=0.3)
        t0 = time.monotonic()
        with pytest.raises(harp.CommunicationError, match=r"can.t read .*timed out"):
            rpc.localhost.echo(1)
        assert 0.25 < time.monotonic() - t0 < 5
