"""ClientSession without sockets: bytes in, handler calls and events out, bytes to send."""

from __future__ import annotations

from typing import Any

import pytest

from gear import constants as c
from gear.errors import ConnectionError, ProtocolError, ServerError
from gear.protocol.client import ClientSession, Unsolicited
from gear.protocol.messages import JobStatus, coalescing_key, submit_job
from gear.protocol.packets import request, response


class Req:
    """A pending request as a front-end would queue it."""

    def __init__(self, expect: int, job: Any = None, background: bool = False) -> None:
        self.expect = expect
        self.job = job
        self.background = background


class Recorder:
    """A SessionHandler that records every call as a tuple."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def created(self, request: Any, handle: bytes) -> None:
        self.calls.append(("created", request.job, handle))

    def refused(self, request: Any, error: BaseException) -> None:
        self.calls.append(("refused", request, error))

    def replied(self, request: Any, reply: Any) -> None:
        self.calls.append(("replied", request, reply))

    def data(self, job: Any, data: bytes) -> None:
        self.calls.append(("data", job, data))

    def warning(self, job: Any, data: bytes) -> None:
        self.calls.append(("warning", job, data))

    def status(self, job: Any, numerator: bytes, denominator: bytes) -> None:
        self.calls.append(("status", job, numerator, denominator))

    def complete(self, job: Any, data: bytes) -> None:
        self.calls.append(("complete", job, data))

    def fail(self, job: Any) -> None:
        self.calls.append(("fail", job))

    def exception(self, job: Any, data: bytes) -> None:
        self.calls.append(("exception", job, data))

    def status_res(self, job: Any, status: JobStatus, fields: list[bytes]) -> None:
        self.calls.append(("status_res", job, status.known, fields[3]))

    def lost(self, job: Any, error: BaseException) -> None:
        self.calls.append(("lost", job, type(error)))

    def take(self) -> list[tuple[Any, ...]]:
        calls, self.calls = self.calls, []
        return calls


def new() -> tuple[ClientSession, Recorder]:
    rec = Recorder()
    return ClientSession(rec), rec


def submit(session: ClientSession, job: str, unique: bytes = b"", bg: bool = False) -> Req:
    req = Req(c.JOB_CREATED, job, bg)
    key = coalescing_key(b"fn", unique, b"x") if unique and not bg else None
    session.send(req, submit_job(b"fn", unique, b"x", bg), key)
    return req


def test_replies_match_the_fifo_and_requests_go_out_in_order() -> None:
    session, rec = new()
    submit(session, "a")
    refused = submit(session, "b")
    submit(session, "c")
    option = Req(c.OPTION_RES)
    session.send(option, request(c.OPTION_REQ, b"exceptions"))
    out = session.data_to_send()
    assert out == b"".join(
        [submit_job(b"fn", b"", b"x")] * 3 + [request(c.OPTION_REQ, b"exceptions")]
    )
    assert session.data_to_send() == b""
    session.receive_data(
        response(c.JOB_CREATED, b"H:1")
        + response(c.ERROR, b"QUEUE_ERROR", b"full\x00")
        + response(c.JOB_CREATED, b"H:3")
        + response(c.OPTION_RES, b"exceptions")
    )
    calls = rec.take()
    assert calls[0] == ("created", "a", b"H:1")
    assert calls[1][:2] == ("refused", refused)
    error = calls[1][2]
    assert isinstance(error, ServerError) and (error.code, error.text) == (b"QUEUE_ERROR", b"full")
    assert calls[2:] == [("created", "c", b"H:3"), ("replied", option, b"exceptions")]
    assert session.jobs == {b"H:1": "a", b"H:3": "c"} and not session.pending


def test_a_reply_to_the_wrong_request_is_a_protocol_error() -> None:
    session, rec = new()
    session.expect(Req(c.OPTION_RES))
    with pytest.raises(ProtocolError, match="expected OPTION_RES, got JOB_CREATED"):
        session.receive_data(response(c.JOB_CREATED, b"H:1"))
    assert len(session.pending) == 1  # left for connection_lost to refuse
    with pytest.raises(ProtocolError):
        ClientSession(rec).job_created(b"H:1")  # nothing pending at all


def test_each_work_packet_has_one_meaning() -> None:
    session, rec = new()
    for i in range(4):
        submit(session, f"j{i}")
    session.receive_data(b"".join(response(c.JOB_CREATED, b"H:%d" % i) for i in range(4)))
    rec.take()
    session.receive_data(
        response(c.WORK_DATA, b"H:0", b"a\x00b")  # the data may contain NULs
        + response(c.WORK_WARNING, b"H:0", b"w")
        + response(c.WORK_STATUS, b"H:0", b"1", b"4")
        + response(c.WORK_COMPLETE, b"H:0", b"done")
        + response(c.WORK_FAIL, b"H:1")
        + response(c.WORK_FAIL, b"H:2\x00")  # gearmand's converted WORK_EXCEPTION (§1.5)
        + response(c.WORK_EXCEPTION, b"H:3", b"trace")
        + response(c.WORK_DATA, b"H:0", b"late")  # the handle has ended: nobody gets it
        + response(c.NOOP)
    )
    assert rec.take() == [
        ("data", "j0", b"a\x00b"),
        ("warning", "j0", b"w"),
        ("status", "j0", b"1", b"4"),
        ("complete", "j0", b"done"),
        ("fail", "j1"),
        ("fail", "j2"),
        ("exception", "j3", b"trace"),
    ]
    assert session.jobs == {} and session.events_received() == []


def test_background_jobs_are_not_tracked() -> None:
    session, rec = new()
    submit(session, "bg", unique=b"u", bg=True)
    session.receive_data(response(c.JOB_CREATED, b"H:1"))
    assert rec.take() == [("created", "bg", b"H:1")]
    assert session.jobs == {} and session.live == {}


def test_local_coalescing_after_job_created() -> None:
    session, rec = new()
    submit(session, "first", unique=b"u")
    session.receive_data(response(c.JOB_CREATED, b"H:1"))
    key = coalescing_key(b"fn", b"u", b"other workload")  # the workload does not matter
    assert session.attach(key, Req(c.JOB_CREATED, "second"))
    assert session.data_to_send() == submit_job(b"fn", b"u", b"x")  # the first one only
    session.receive_data(
        response(c.WORK_DATA, b"H:1", b"d")
        + response(c.STATUS_RES, b"H:1", b"1", b"1", b"3", b"4")
        + response(c.WORK_COMPLETE, b"H:1", b"r")
    )
    assert rec.take() == [
        ("created", "first", b"H:1"),
        ("created", "second", b"H:1"),
        ("data", "first", b"d"),
        ("data", "second", b"d"),
        ("status_res", "first", True, b"3"),
        ("status_res", "second", True, b"3"),
        ("complete", "first", b"r"),
        ("complete", "second", b"r"),
    ]
    # The STATUS_RES nobody asked for in order is an event (the threaded API matches by handle).
    (event,) = session.events_received()
    assert isinstance(event, Unsolicited) and event.ptype == c.STATUS_RES
    assert event.reply.handle == b"H:1" and event.reply.numerator == 3
    # ended: the next submission with the unique is a new job
    assert not session.attach(key, Req(c.JOB_CREATED, "third"))
    assert session.followers == {} and session.live == {}


def test_attach_before_job_created_and_refusal() -> None:
    session, rec = new()
    submit(session, "first", unique=b"u")
    key = coalescing_key(b"fn", b"u", b"x")
    follower = Req(c.JOB_CREATED, "early")
    assert session.attach(key, follower)
    assert rec.take() == []  # waits for the live job's handle
    session.receive_data(response(c.JOB_CREATED, b"H:1"))
    assert rec.take() == [("created", "first", b"H:1"), ("created", "early", b"H:1")]

    submit(session, "again", unique=b"v")
    key_v = coalescing_key(b"fn", b"v", b"x")
    late = Req(c.JOB_CREATED, "late")
    assert session.attach(key_v, late)
    session.receive_data(response(c.ERROR, b"QUEUE_ERROR", b"full"))
    calls = rec.take()
    assert [(name, req.job) for name, req, _ in calls] == [
        ("refused", "late"), ("refused", "again")
    ]
    assert not session.attach(key_v, Req(c.JOB_CREATED, "next"))  # refused: not live any more


def test_dash_unique_coalesces_on_the_workload() -> None:
    session, _ = new()
    submit(session, "first", unique=b"-")
    assert not session.attach(coalescing_key(b"fn", b"-", b"different"), Req(c.JOB_CREATED, "x"))
    assert session.attach(coalescing_key(b"fn", b"-", b"x"), Req(c.JOB_CREATED, "y"))


def test_unexpect_takes_back_an_unsent_submission() -> None:
    session, _ = new()
    req = submit(session, "first", unique=b"u")
    session.unexpect(req)
    assert not session.pending and session.live == {}


def test_status_and_echo_replies_answer_queued_requests() -> None:
    session, rec = new()
    status_req, unique_req, echo_req = (
        Req(c.STATUS_RES), Req(c.STATUS_RES_UNIQUE), Req(c.ECHO_RES)
    )
    for req in (status_req, unique_req, echo_req):
        session.expect(req)
    session.receive_data(
        response(c.STATUS_RES, b"H:9", b"0", b"0", b"", b"")
        + response(c.STATUS_RES_UNIQUE, b"u", b"1", b"1", b"2", b"5", b"3")
        + response(c.ECHO_RES, b"ping")
    )
    (_, r1, s1), (_, r2, s2), (_, r3, echoed) = rec.take()
    assert (r1, r2, r3) == (status_req, unique_req, echo_req)
    assert s1 == JobStatus(b"H:9", False, False, 0, 0)
    assert s2 == JobStatus(b"u", True, True, 2, 5, 3)
    assert echoed == b"ping"
    assert session.events_received() == []
    session.receive_data(response(c.ERROR, b"JOB_NOT_FOUND", b"gone"))  # nothing pending
    (event,) = session.events_received()
    assert event.ptype == c.ERROR and event.reply.code == b"JOB_NOT_FOUND"


def test_connection_lost_refuses_pending_and_loses_running_jobs() -> None:
    session, rec = new()
    submit(session, "running", unique=b"u")
    session.receive_data(response(c.JOB_CREATED, b"H:1"))
    session.attach(coalescing_key(b"fn", b"u", b"x"), Req(c.JOB_CREATED, "attached"))
    waiting = submit(session, "waiting", unique=b"w")
    early = Req(c.JOB_CREATED, "early")
    session.attach(coalescing_key(b"fn", b"w", b"x"), early)
    rec.take()
    pending, jobs = session.pending, session.jobs
    lost = session.connection_lost(ConnectionError("gone"))
    assert lost == ["running", "attached"]
    calls = rec.take()
    assert [call[:2] for call in calls[:2]] == [("refused", waiting), ("refused", early)]
    assert calls[2:] == [
        ("lost", "running", ConnectionError), ("lost", "attached", ConnectionError)
    ]
    # emptied in place (the threaded Connection shares these as pending_tasks/related_jobs)
    assert session.pending is pending and session.jobs is jobs
    assert not pending and not jobs and not session.live and not session.followers


def test_text_lines_are_a_protocol_error() -> None:
    session, _ = new()
    with pytest.raises(ProtocolError):
        session.receive_data(b"OK\n")
