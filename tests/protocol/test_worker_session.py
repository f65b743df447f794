"""WorkerSession without sockets: registration, the grab/sleep cycle, the window, assignments."""

from __future__ import annotations

import pytest

from gear import constants as c
from gear.errors import InvalidDataError, ProtocolError
from gear.protocol.packets import Decoder, Frame, request, response
from gear.protocol.worker import (
    CancelOption,
    JobAssignment,
    JobCancel,
    NoJob,
    Noop,
    ServerError,
    WorkerSession,
    registration,
)


def sent(session: WorkerSession) -> list[tuple[int, list[bytes]]]:
    """The packets the session has queued, as (type, args)."""
    out = []
    for item in Decoder().feed(session.data_to_send()):
        assert isinstance(item, Frame) and item.is_request
        out.append((item.ptype, item.args()))
    return out


def test_registration_on_every_connect() -> None:
    session = WorkerSession(b"w1")
    assert session.state == "INIT" and not session.can_grab
    session.connection_made([(b"a", None), (b"b", 2.5)])
    assert sent(session) == [
        (c.SET_CLIENT_ID, [b"w1"]),
        (c.CAN_DO, [b"a"]),
        (c.CAN_DO_TIMEOUT, [b"b", b"2500"]),  # seconds -> milliseconds
    ]
    assert session.data_to_send() == b""  # sent once
    assert session.state == "IDLE" and session.can_grab
    session.grab()
    assert session.connection_lost() == 1  # the GRAB in flight is void
    assert session.state == "INIT" and not session.can_grab
    session.connection_made([(b"a", None)])  # after a reconnect: all of it again
    assert [p for p, _ in sent(session)] == [c.SET_CLIENT_ID, c.CAN_DO]
    assert session.outstanding == 0 and session.can_grab
    assert registration(b"", [(b"x", None)]) == request(c.CAN_DO, b"x")  # no id: no SET_CLIENT_ID


def test_grab_no_job_pre_sleep_noop_cycle() -> None:
    session = WorkerSession()
    session.connection_made()
    assert session.grab() == request(c.GRAB_JOB_UNIQ)
    assert session.state == "GRAB_WAIT" and not session.can_grab  # window 1
    assert session.no_job()
    assert sent(session) == [(c.PRE_SLEEP, [])]
    assert session.state == "SLEEP" and not session.can_grab  # no busy loop
    assert session.noop()  # it was asleep
    assert session.state == "IDLE" and session.can_grab
    session.grab()
    assignment = session.job_assigned(c.JOB_ASSIGN_UNIQ, [b"H:1", b"fn", b"u", b"data"])
    assert assignment == JobAssignment(b"H:1", b"fn", b"u", b"", b"data")
    assert session.state == "IDLE" and session.can_grab  # more may be queued
    assert session.data_to_send() == b""


def test_unexpected_no_job_and_noop_change_nothing() -> None:
    session = WorkerSession()
    session.connection_made()
    assert not session.no_job()  # no GRAB in flight: ignored, no PRE_SLEEP
    assert session.data_to_send() == b"" and session.outstanding == 0
    assert not session.noop()  # awake already
    assert session.can_grab


def test_window_slow_starts_on_jobs_and_falls_back_on_no_job() -> None:
    # The first job of a run keeps the window at one, each further job doubles it.
    session = WorkerSession(max_window=4)
    session.connection_made()
    session.grab()
    assert not session.can_grab
    windows = []
    for i in range(4):
        session.job_assigned(c.JOB_ASSIGN, [b"H:%d" % i, b"fn", b""])
        windows.append(session.window)
        while session.can_grab:
            session.grab()
    assert windows == [1, 2, 4, 4]
    assert session.outstanding == 4
    assert session.no_job() and session.data_to_send() == b""  # GRABs still in flight
    assert session.window == 1 and not session.hungry
    for _ in range(2):
        session.no_job()
    assert session.data_to_send() == b""
    assert session.no_job()  # the last one answered: now sleep
    assert sent(session) == [(c.PRE_SLEEP, [])]
    assert session.state == "SLEEP"


def test_a_job_answering_the_last_grab_after_a_no_job_keeps_the_session_awake() -> None:
    # NO_JOB for one GRAB and a job for the next (a job was submitted in between): no sleep.
    session = WorkerSession(max_window=2)
    session.connection_made()
    session.grab()
    session.job_assigned(c.JOB_ASSIGN, [b"H:1", b"fn", b""])
    session.grab()
    session.grab()
    assert session.no_job()
    assert not session.hungry and session.data_to_send() == b""
    session.job_assigned(c.JOB_ASSIGN, [b"H:2", b"fn", b""])
    assert session.hungry and session.can_grab and not session.sleeping


def test_wake_after_a_new_function_grabs_without_noop() -> None:
    session = WorkerSession()
    session.connection_made()
    session.grab()
    session.no_job()
    session.data_to_send()
    session.wake()  # CAN_DO wakes nobody on the server side: ask again
    assert session.state == "IDLE" and session.can_grab
    lost = WorkerSession()
    lost.wake()  # not connected: nothing to want
    assert not lost.can_grab


def test_grab_refused_falls_back_to_plain_grab_job() -> None:
    session = WorkerSession(grab_type=c.GRAB_JOB_ALL)
    session.connection_made()
    assert session.grab() == request(c.GRAB_JOB_ALL)
    assert not session.grab_refused(b"JOB_NOT_FOUND")
    assert session.grab_refused(b"INVALID_COMMAND")
    assert session.outstanding == 0 and session.grab() == request(c.GRAB_JOB)
    assert not session.grab_refused(b"INVALID_COMMAND")  # GRAB_JOB is as plain as it gets


def test_bytes_in_events_out() -> None:
    session = WorkerSession(b"w")
    session.connection_made([(b"fn", None)])
    session.data_to_send()
    session.grab()
    session.receive_data(response(c.NO_JOB) + response(c.NOOP)[:5])
    assert session.events_received() == [NoJob()]
    assert sent(session) == [(c.PRE_SLEEP, [])]
    session.receive_data(response(c.NOOP)[5:])
    assert session.events_received() == [Noop()]
    session.grab()
    session.receive_data(
        response(c.JOB_ASSIGN_ALL, b"H:3", b"fn", b"u", b"r", b"x")
        + response(c.ERROR, b"JOB_NOT_FOUND", b"gone")
        + response(c.ECHO_RES, b"ignored")
        + response(c.NO_JOB)  # unexpected: no GRAB in flight, no event
    )
    assert session.events_received() == [
        JobAssignment(b"H:3", b"fn", b"u", b"r", b"x"),
        ServerError(b"JOB_NOT_FOUND", b"gone", False),
    ]
    assert session.events_received() == []
    with pytest.raises(ProtocolError):
        session.receive_data(b"\x00XYZ\x00\x00\x00\x06\x00\x00\x00\x00")  # bad magic


def test_bad_assignment_changes_no_state() -> None:
    session = WorkerSession()
    session.connection_made()
    session.grab()
    with pytest.raises(InvalidDataError):
        session.job_assigned(c.JOB_ASSIGN_UNIQ, [b"H:1", b"fn"])
    assert session.outstanding == 1


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        WorkerSession(grab_type=c.CAN_DO)
    with pytest.raises(ValueError):
        WorkerSession(max_window=0)


# -- JOB_CANCEL, geard's extension (docs/protocol.md §1.7) ---------------------------------------


def test_job_cancel_opt_in_on_every_connect_and_geards_answer() -> None:
    session = WorkerSession(b"w", job_cancel=True)
    session.connection_made([(b"f", None)])
    assert sent(session) == [(c.SET_CLIENT_ID, [b"w"]), (c.CAN_DO, [b"f"]),
                             (c.OPTION_REQ, [b"job_cancel"])]
    assert session.cancel_option is None
    session.receive_data(response(c.OPTION_RES, b"job_cancel")
                         + response(c.JOB_CANCEL, b"H:x:7"))
    assert session.events_received() == [CancelOption(True), JobCancel(b"H:x:7")]
    assert session.cancel_option is True
    session.connection_lost()
    assert session.cancel_option is None
    session.connection_made([])
    assert sent(session) == [(c.SET_CLIENT_ID, [b"w"]), (c.OPTION_REQ, [b"job_cancel"])]


def test_gearmands_refusal_is_no_server_error_and_only_once() -> None:
    session = WorkerSession(job_cancel=True)
    session.connection_made([(b"f", None)])
    session.data_to_send()
    session.receive_data(response(c.ERROR, b"UNKNOWN_OPTION", b"Server does not recognize given"))
    assert session.events_received() == [CancelOption(False)]
    assert session.cancel_option is False and session.can_grab
    # A later UNKNOWN_OPTION is not ours any more: an ordinary ServerError.
    session.receive_data(response(c.ERROR, b"UNKNOWN_OPTION", b"again"))
    assert session.events_received() == [ServerError(b"UNKNOWN_OPTION", b"again", False)]
    # An OPTION_RES nobody asked for is ignored.
    session.receive_data(response(c.OPTION_RES, b"job_cancel"))
    assert session.events_received() == [] and session.cancel_option is False


def test_without_the_option_nothing_is_asked_and_a_late_opt_in_asks_once() -> None:
    session = WorkerSession()
    assert session.request_job_cancel() == b""  # not connected: asked on the next connect
    session = WorkerSession()
    session.connection_made([(b"f", None)])
    assert [p for p, _ in sent(session)] == [c.CAN_DO]
    session.receive_data(response(c.ERROR, b"UNKNOWN_OPTION", b"x"))  # not ours
    assert [type(e) for e in session.events_received()] == [ServerError]
    assert session.request_job_cancel() == request(c.OPTION_REQ, b"job_cancel")
    assert session.request_job_cancel() == b""  # in flight already
    session.receive_data(response(c.OPTION_RES, b"JOB_CANCEL"))
    assert session.events_received() == [CancelOption(True)]
    assert session.request_job_cancel() == b""


# -- how many GRABs a job costs: the slow start and the sleep probe ------------------------------


class ScriptedServer:
    """A server's side of the grab cycle (docs/protocol.md §3.5) for one worker connection:
    ``queued`` jobs, requests answered in order, PRE_SLEEP with work waiting answered with NOOP."""

    def __init__(self, session: WorkerSession) -> None:
        self.session = session
        self.queued = 0
        self.asleep = False
        self.counts = {c.GRAB_JOB_UNIQ: 0, c.NO_JOB: 0, c.PRE_SLEEP: 0, c.NOOP: 0}
        self.most_in_flight = 0
        self.replies: list[tuple[int, list[bytes]]] = []
        self.jobs = 0

    def submit(self, n: int = 1) -> None:
        self.queued += n
        if self.asleep:
            self.asleep = False
            self._reply(c.NOOP)

    def _reply(self, ptype: int, *args: bytes) -> None:
        if ptype in self.counts:
            self.counts[ptype] += 1
        self.replies.append((ptype, list(args)))

    def serve(self, requests: list[int]) -> None:
        for ptype in requests:
            if ptype == c.PRE_SLEEP:
                self.counts[c.PRE_SLEEP] += 1
                if self.queued:
                    self._reply(c.NOOP)
                else:
                    self.asleep = True
            else:
                assert ptype == c.GRAB_JOB_UNIQ
                self.counts[ptype] += 1
                self.asleep = False
                if self.queued:
                    self.queued -= 1
                    self.jobs += 1
                    self._reply(c.JOB_ASSIGN_UNIQ, b"H:%d" % self.jobs, b"fn", b"", b"")
                else:
                    self._reply(c.NO_JOB)

    def run(self) -> None:
        """Worker and server in turn until both are quiet; every job ends at once (a worker
        with free slots, as gear.aio's grabs while it has some)."""
        session = self.session
        while True:
            requests = [p for p, _ in sent(session)]
            while session.can_grab:
                session.grab()
                requests.append(c.GRAB_JOB_UNIQ)
            self.most_in_flight = max(self.most_in_flight, session.outstanding)
            if not requests and not self.replies:
                return
            self.serve(requests)
            replies, self.replies = self.replies, []
            for ptype, args in replies:
                session.receive_frame(ptype, args)


def test_one_job_at_a_time_costs_one_grab_per_job_with_the_probe_or_two_without() -> None:
    # The serial load of bench_harp (one call at a time): before the slow start and the probe
    # gear.aio sent three GRABs per job, two of them answered NO_JOB. With the probe, a guess
    # that comes back NO_JOB is made rarer and rarer (1, 2, 4, 8 wake-ups skip it).
    for probe, grabs, no_jobs in ((True, 1.12, 0.12), (False, 2, 1)):
        session = WorkerSession(max_window=16, probe_sleep=probe)
        session.connection_made()
        server = ScriptedServer(session)
        server.run()  # connect: GRAB, NO_JOB, PRE_SLEEP
        server.counts = dict.fromkeys(server.counts, 0)
        for _ in range(100):
            server.submit()
            server.run()
        assert server.jobs == 100 and server.queued == 0
        assert server.counts[c.GRAB_JOB_UNIQ] / 100 == grabs, probe
        assert server.counts[c.NO_JOB] / 100 == no_jobs, probe
        assert server.counts[c.PRE_SLEEP] == server.counts[c.NOOP] == 100  # one sleep per job
        assert server.most_in_flight == 1
        assert session.state == "SLEEP" and server.asleep  # no busy loop, no lost wake-up


def test_a_deep_queue_fills_the_window() -> None:
    for probe, serial_first in ((True, False), (False, False), (True, True)):
        session = WorkerSession(max_window=16, probe_sleep=probe)
        session.connection_made()
        server = ScriptedServer(session)
        server.run()
        for _ in range(50 if serial_first else 0):  # guesses at their rarest
            server.submit()
            server.run()
        assert session._guess_skips == (8 if serial_first else 0)
        server.jobs = 0
        server.counts = dict.fromkeys(server.counts, 0)
        server.submit(1000)
        server.run()
        assert server.jobs == 1000 and server.queued == 0
        assert server.most_in_flight == 16
        # one GRAB per job, plus those in flight when the queue ran dry, plus the probe's
        assert server.counts[c.GRAB_JOB_UNIQ] <= 1000 + 16 + 1
        # the submit's NOOP, and one per probe: the first, at most 8 more (skipped guesses)
        noops = server.counts[c.NOOP]
        assert noops <= 1 + probe * 9 if serial_first else noops == 1 + probe
        assert session._guess_skips == 0  # the guess paid off
        assert session.state == "SLEEP" and server.asleep


def test_the_probe_is_never_sent_with_a_grab_in_flight() -> None:
    session = WorkerSession(max_window=4, probe_sleep=True)
    session.connection_made()
    session.grab()
    session.grab()  # wake() may leave two GRABs in flight at the start of a run
    session.job_assigned(c.JOB_ASSIGN, [b"H:1", b"fn", b""])
    assert session.data_to_send() == b"" and session.outstanding == 1  # no PRE_SLEEP yet
    assert session.no_job()
    assert sent(session) == [(c.PRE_SLEEP, [])]  # now, with nothing in flight
    assert session.noop()
    session.grab()
    session.job_assigned(c.JOB_ASSIGN, [b"H:2", b"fn", b""])
    assert sent(session) == [(c.PRE_SLEEP, [])]  # the probe
    assert session.state == "SLEEP" and not session.can_grab
    session.wake()  # a new function: grab anyway
    assert session.can_grab
    session.grab()
    assert session.state == "GRAB_WAIT"
    session.job_assigned(c.JOB_ASSIGN, [b"H:3", b"fn", b""])  # a second job in a row
    assert session.window == 2 and session.can_grab and session.data_to_send() == b""


def test_one_grab_at_a_time_is_unchanged_for_the_threaded_worker() -> None:
    # max_window=1 and no probe (gear.Worker, the compat fronts): after every job the session
    # wants one more GRAB, and sleeps only after NO_JOB, as gear does.
    session = WorkerSession()
    session.connection_made()
    for i in range(3):
        session.grab()
        session.job_assigned(c.JOB_ASSIGN, [b"H:%d" % i, b"fn", b""])
        assert session.window == 1 and session.can_grab and session.data_to_send() == b""
    session.grab()
    session.no_job()
    assert sent(session) == [(c.PRE_SLEEP, [])]
