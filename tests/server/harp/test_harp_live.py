"""geard's harp port against raw JSON lines and a raw-socket Gearman worker (docs/harp.md)."""

from __future__ import annotations

import socket
import time

import pytest

from gear import constants as c
from tests.server.harp.conftest import Harp, LiveServer, RawWorker

NO_ID = {"error": {"type": "invalid_jobid", "message": "no job with this ID"}}


def submit(live: LiveServer, **call: object) -> str:
    h = Harp(live.harp_port)
    try:
        reply = h.ask({"host": "h", "procedure": "echo", "arguments": [1, "a"], **call})
    finally:
        h.close()
    assert set(reply) == {"harpcaller", "job_id"} and reply["harpcaller"] == 1
    return reply["job_id"]


def ask(live: LiveServer, obj: dict[str, object]) -> object:
    h = Harp(live.harp_port)
    try:
        return h.ask(obj)
    finally:
        h.close()


def test_call_stream_result_and_status(live: LiveServer, worker: RawWorker) -> None:
    job_id = submit(live, info={"who": "me"})
    status = ask(live, {"get_status": job_id})
    assert status["call"] == {"procedure": "echo", "arguments": [1, "a"], "host": "h"}
    assert status["info"] == {"who": "me"}
    handle, fn, args = worker.grab()
    assert (fn, args) == ("h/echo", [1, "a"])
    worker.data(handle, {"n": 0})
    worker.data(handle, "second")
    worker.echo()
    # A live follow from the start sees the stored messages, then the live ones, then the end.
    follower = Harp(live.harp_port)
    follower.send({"follow_stream": job_id, "since": 0})
    assert follower.recv() == {"packet": 0, "data": {"n": 0}}
    assert follower.recv() == {"packet": 1, "data": "second"}
    assert ask(live, {"get_result": job_id, "wait": False}) == {"no_result": True}
    assert ask(live, {"read_stream": job_id, "recent": 1}) == {"packet": 1, "data": "second"}
    worker.data(handle, [3])
    assert follower.recv() == {"packet": 2, "data": [3]}
    worker.complete(handle, {"ok": True})
    assert follower.recv() == {"result": {"ok": True}}
    follower.close()
    assert ask(live, {"get_result": job_id}) == {"result": {"ok": True}}
    status = ask(live, {"get_status": job_id})
    t = status["time"]
    assert None not in t.values() and t["submit"] <= t["start"] <= t["end"]
    # Paging: read_stream since, then the end reply; follow of an ended call with recent.
    h = Harp(live.harp_port)
    h.send({"read_stream": job_id, "since": 1})
    assert [h.recv(), h.recv(), h.recv()] == [
        {"packet": 1, "data": "second"}, {"packet": 2, "data": [3]}, {"result": {"ok": True}}]
    h.send({"follow_stream": job_id, "recent": 1})
    assert [h.recv(), h.recv()] == [{"packet": 2, "data": [3]}, {"result": {"ok": True}}]
    h.close()


def test_read_stream_of_running_call_ends_with_continue(live: LiveServer,
                                                        worker: RawWorker) -> None:
    job_id = submit(live)
    handle, _, _ = worker.grab()
    worker.data(handle, 1)
    worker.echo()
    h = Harp(live.harp_port)
    h.send({"read_stream": job_id})
    assert [h.recv(), h.recv()] == [{"packet": 0, "data": 1}, {"continue": True}]
    h.close()


def test_get_result_waits_from_another_connection(live: LiveServer, worker: RawWorker) -> None:
    job_id = submit(live)
    waiter = Harp(live.harp_port)
    waiter.send({"get_result": job_id})  # "wait" defaults to true (the protocol text)
    handle, _, _ = worker.grab()
    worker.complete(handle, 42)
    assert waiter.recv() == {"result": 42}
    waiter.close()


def test_exception_and_fail_replies(live: LiveServer, worker: RawWorker) -> None:
    first, second = submit(live), submit(live)
    h1, _, _ = worker.grab()
    worker.send(c.WORK_EXCEPTION, h1,
                b'{"type": "ValueError", "message": "bad", "data": {"x": 1}}')
    h2, _, _ = worker.grab()
    worker.send(c.WORK_FAIL, h2)
    assert ask(live, {"get_result": first}) == {
        "exception": {"type": "ValueError", "message": "bad", "data": {"x": 1}}}
    assert ask(live, {"get_result": second}) == {
        "error": {"type": "failed", "message": "the worker reported WORK_FAIL"}}


def test_cancel_queued_call(live: LiveServer) -> None:
    job_id = submit(live)
    assert ask(live, {"cancel": job_id}) == {"cancelled": True}
    assert ask(live, {"cancel": job_id}) == {"cancelled": False}
    assert ask(live, {"get_result": job_id}) == {"cancelled": True}
    t = ask(live, {"get_status": job_id})["time"]
    assert t["start"] is None and t["end"] is not None
    # The Gearman job is gone too: a worker gets the next call, not the cancelled one.
    other = submit(live, arguments=["next"])
    w = RawWorker(live.port, "h/echo")
    _, _, args = w.grab()
    assert args == ["next"]
    w.close()
    assert other != job_id


def test_cancel_running_call_drops_the_workers_answer(live: LiveServer,
                                                      worker: RawWorker) -> None:
    job_id = submit(live)
    handle, _, _ = worker.grab()
    worker.data(handle, "before")
    worker.echo()
    assert ask(live, {"cancel": job_id}) == {"cancelled": True}
    worker.data(handle, "after")
    worker.complete(handle, "late")
    worker.echo()
    assert ask(live, {"get_result": job_id}) == {"cancelled": True}
    h = Harp(live.harp_port)
    h.send({"read_stream": job_id})
    assert [h.recv(), h.recv()] == [{"packet": 0, "data": "before"}, {"cancelled": True}]
    h.close()
    # The worker was freed by its WORK_COMPLETE: it takes the next call.
    nxt = submit(live, arguments=[2])
    handle2, _, args = worker.grab()
    assert args == [2]
    worker.complete(handle2, "ok")
    assert ask(live, {"get_result": nxt}) == {"result": "ok"}


@pytest.mark.parametrize("request_", [
    {"get_result": "not-a-uuid"},
    {"get_result": "8e3fa645-d424-4559-b8dc-5ec5250c94c5"},
    {"get_status": "8e3fa645-d424-4559-b8dc-5ec5250c94c5"},
    {"get_status": 7},
])
def test_unknown_ids(live: LiveServer, request_: dict[str, object]) -> None:
    assert ask(live, request_) == NO_ID


def test_cancel_unknown_id(live: LiveServer) -> None:
    assert ask(live, {"cancel": "nope"}) == {"cancelled": False}


@pytest.mark.parametrize(("line", "type_"), [
    (b"{not json\n", "invalid_json"),
    (b'{"host": "h", "procedure": "p"}\n', "invalid_version"),
    (b'{"harpcaller": 2, "host": "h", "procedure": "p"}\n', "invalid_version"),
    (b'{"harpcaller": 1, "frobnicate": 1}\n', "invalid_request"),
    (b'[1, 2]\n', "invalid_request"),
    (b'{"harpcaller": 1, "read_stream": "x", "since": 1, "recent": 1}\n', "invalid_request"),
    (b'{"harpcaller": 1, "host": "h", "procedure": "p", "queue": {"name": "q"}}\n',
     "invalid_request"),
    (b'{"harpcaller": 1, "host": "h", "procedure": "p", "timeout": -1}\n', "invalid_request"),
    (b'{"harpcaller": 1, "host": "h", "procedure": "p", "arguments": 5}\n', "invalid_request"),
    (b'{"harpcaller": 1, "follow_stream": "8e3fa645-d424-4559-b8dc-5ec5250c94c5"}\n',
     "invalid_jobid"),
])
def test_bad_request_answered_then_closed(live: LiveServer, worker: RawWorker, line: bytes,
                                          type_: str) -> None:
    h = Harp(live.harp_port)
    h.send(line)
    reply = h.recv()
    assert reply["error"]["type"] == type_ and reply["error"]["message"]
    assert h.closed()
    h.close()
    # The server goes on: a call still works end to end.
    job_id = submit(live)
    handle, _, _ = worker.grab()
    worker.complete(handle, "fine")
    assert ask(live, {"get_result": job_id}) == {"result": "fine"}


def test_several_requests_on_one_connection(live: LiveServer, worker: RawWorker) -> None:
    h = Harp(live.harp_port)
    h.send(b"".join(
        __import__("json").dumps({"harpcaller": 1, **r}).encode() + b"\n"
        for r in ({"host": "h", "procedure": "echo", "arguments": {"k": 1}},)))
    job_id = h.recv()["job_id"]
    handle, _, args = worker.grab()
    assert args == {"k": 1}
    h.send({"get_result": job_id, "wait": False})
    assert h.recv() == {"no_result": True}
    h.send({"get_result": job_id})
    h.send({"get_status": job_id})  # queued behind the waiting get_result, answered in order
    worker.complete(handle, 1)
    assert h.recv() == {"result": 1}
    assert h.recv()["time"]["end"] is not None
    h.close()


def test_queue_concurrency_two_never_runs_three(live: LiveServer) -> None:
    queue = {"name": {"q": "one"}, "concurrency": 2}
    ids = [submit(live, queue=queue, arguments=[i]) for i in range(4)]
    workers = [RawWorker(live.port, "h/echo") for _ in range(3)]
    first = workers[0].grab()
    second = workers[1].grab()
    assert {first[2][0], second[2][0]} == {0, 1}
    # The third worker gets nothing while two run: it sleeps, and its GRAB got NO_JOB.
    workers[2].send(c.GRAB_JOB_UNIQ)
    from tests.support.raw import read_packet
    assert read_packet(workers[2].sock)[0] == c.NO_JOB
    status = ask(live, {"get_status": ids[2]})
    assert status["time"]["start"] is None
    # Cancelling a queued call frees nothing; finishing a running one lets the next in.
    assert ask(live, {"cancel": ids[2]}) == {"cancelled": True}
    workers[0].complete(first[0], "done")
    third = workers[2].grab()
    assert third[2] == [3]
    workers[1].complete(second[0], "done")
    workers[2].complete(third[0], "done")
    assert [ask(live, {"get_result": i}) for i in ids] == [
        {"result": "done"}, {"result": "done"}, {"cancelled": True}, {"result": "done"}]
    for w in workers:
        w.close()


def test_timeout_between_messages(live: LiveServer, worker: RawWorker) -> None:
    job_id = submit(live, timeout=0.3)
    handle, _, _ = worker.grab()
    started = time.monotonic()
    worker.data(handle, 1)
    waiter = Harp(live.harp_port)
    assert waiter.ask({"get_result": job_id}) == {
        "error": {"type": "timeout", "message": "reading result timed out"}}
    assert time.monotonic() - started >= 0.25
    worker.complete(handle, "late")  # dropped
    worker.echo()
    assert waiter.ask({"get_result": job_id})["error"]["type"] == "timeout"
    waiter.close()


def test_max_exec_time_counts_from_start(live: LiveServer) -> None:
    job_id = submit(live, max_exec_time=0.3, timeout=60)
    h = Harp(live.harp_port)
    # Queued (no worker) for longer than max_exec_time: still not ended.
    h.send({"get_result": job_id})
    w = RawWorker(live.port, "h/echo")
    _handle, _, _ = w.grab()
    started = time.monotonic()
    assert h.recv() == {"error": {"type": "timeout",
                                  "message": "maximum execution time exceeded"}}
    assert time.monotonic() - started >= 0.25
    h.close()
    w.close()


def test_connection_closed_once_the_client_half_closes(live: LiveServer,
                                                       worker: RawWorker) -> None:
    # HarpCaller's clients send one request and close: geard must close its side too, or
    # every call would keep a file descriptor for ever.
    h = Harp(live.harp_port)
    job_id = h.ask({"host": "h", "procedure": "echo", "arguments": [1]})["job_id"]
    h.sock.shutdown(socket.SHUT_WR)
    assert h.closed()
    h.close()
    # A request still being answered when the EOF comes: answered, then closed.
    h = Harp(live.harp_port)
    h.send({"get_result": job_id, "wait": True})
    h.send(b"\n\r\n")
    h.sock.shutdown(socket.SHUT_WR)
    handle, _, _ = worker.grab()
    worker.complete(handle, "late")
    assert h.recv() == {"result": "late"}
    assert h.closed()
    h.close()
    # Only blank lines before the EOF: closed without a reply.
    h = Harp(live.harp_port)
    h.send(b"\n")
    h.sock.shutdown(socket.SHUT_WR)
    assert h.closed()
    h.close()
