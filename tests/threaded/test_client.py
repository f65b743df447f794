"""Client behaviour against a scripted server on a socketpair: submissions, replies, errors."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import gear
from gear import constants
from tests.threaded.fakes import Peer


@pytest.fixture
def client() -> Iterator[gear.Client]:
    c = gear.Client("c1")
    yield c
    c.shutdown()


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as e:
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_submit_without_servers_raises_no_connected_servers(client: gear.Client) -> None:
    with pytest.raises(gear.NoConnectedServersError):
        client.submitJob(gear.Job("fn", b""))
    assert issubclass(gear.NoConnectedServersError, gear.GearmanError)


def test_submit_types_and_epoch(client: gear.Client) -> None:
    peer = Peer(client)
    cases = [
        ({}, constants.SUBMIT_JOB),
        ({"precedence": gear.PRECEDENCE_HIGH}, constants.SUBMIT_JOB_HIGH),
        ({"precedence": gear.PRECEDENCE_LOW, "background": True}, constants.SUBMIT_JOB_LOW_BG),
        ({"background": True, "when": 2000000000}, constants.SUBMIT_JOB_EPOCH),
    ]
    for i, (kwargs, ptype) in enumerate(cases):
        job = gear.Job("fn", b"data", unique=f"u{i}")
        t, out = _in_thread(lambda job=job, kwargs=kwargs: client.submitJob(job, **kwargs))
        frame = peer.expect(ptype)
        if ptype == constants.SUBMIT_JOB_EPOCH:
            assert frame.args() == [b"fn", b"u3", b"2000000000", b"data"]
        else:
            assert frame.args() == [b"fn", b"u%d" % i, b"data"]
        peer.send(constants.JOB_CREATED, b"H:%d" % i)
        t.join(5)
        assert out == [None] and job.handle == b"H:%d" % i and job.connection is peer.conn
    with pytest.raises(gear.ConfigurationError):
        client.submitJob(gear.Job("fn", b""), when=1)  # epoch jobs are background only
    with pytest.raises(gear.ConfigurationError):
        client.submitJob(gear.Job("fn", b""), precedence=7)


def test_error_reply_raises_server_error(client: gear.Client) -> None:
    peer = Peer(client)
    t, out = _in_thread(lambda: client.submitJob(gear.Job("fn", b"")))
    peer.expect(constants.SUBMIT_JOB)
    peer.send(constants.ERROR, b"QUEUE_ERROR", b"queue full")
    t.join(5)
    (err,) = out
    assert isinstance(err, gear.ServerError)
    assert (err.code, err.text) == (b"QUEUE_ERROR", b"queue full")
    assert peer.conn in client.active_connections  # an ERROR is not a lost connection


def test_coalesced_jobs_all_receive_every_update(client: gear.Client) -> None:
    peer = Peer(client)
    jobs = [gear.Job("fn", b"x", unique="same") for _ in range(2)]
    t, _ = _in_thread(lambda: client.submitJob(jobs[0]))
    peer.expect(constants.SUBMIT_JOB)
    peer.send(constants.JOB_CREATED, b"H:7")
    t.join(5)
    # The same (function, unique) while the first is live: attached locally, not submitted
    # again (one coalescing rule, gear.protocol.client), so it has the handle at once.
    client.submitJob(jobs[1], timeout=5)
    assert jobs[1].handle == b"H:7" and jobs[1].connection is peer.conn
    t, _ = _in_thread(lambda: client.submitJob(gear.Job("fn", b"y", unique="other")))
    assert peer.expect(constants.SUBMIT_JOB).args() == [b"fn", b"other", b"y"]  # the next one
    peer.send(constants.JOB_CREATED, b"H:8")
    t.join(5)
    assert peer.conn.related_jobs[b"H:7"] is jobs[0]  # gear-compatible: the first job
    # One packet stream per handle: every job gets each packet once (docs/protocol.md §3.2).
    peer.send(constants.WORK_DATA, b"H:7", b"d")
    peer.send(constants.WORK_STATUS, b"H:7", b"1", b"2")
    assert not jobs[1].complete
    peer.send(constants.WORK_COMPLETE, b"H:7", b"r")
    for job in jobs:
        assert job.wait(5)
        assert job.data == [b"d", b"r"] and job.fraction_complete == 0.5
        assert not job.failure
    assert b"H:7" not in peer.conn.related_jobs and peer.conn.session.followers == {}


def test_fail_with_trailing_nul_and_exception(client: gear.Client) -> None:
    peer = Peer(client)
    jobs = []
    for i in range(2):
        job = gear.Job("fn", b"")
        t, _ = _in_thread(lambda job=job: client.submitJob(job))
        peer.expect(constants.SUBMIT_JOB)
        peer.send(constants.JOB_CREATED, b"H:%d" % i)
        t.join(5)
        jobs.append(job)
    peer.sock.sendall(gear.Packet(constants.RES, constants.WORK_FAIL, b"H:0\x00").toBinary())
    peer.send(constants.WORK_EXCEPTION, b"H:1", b"trace")
    assert jobs[0].wait(5) and jobs[0].failure and jobs[0].exception is None
    assert jobs[1].wait(5) and jobs[1].failure and jobs[1].exception == b"trace"


def test_get_status_updates_job(client: gear.Client) -> None:
    peer = Peer(client)
    job = gear.Job("fn", b"")
    job.handle, job.connection = b"H:3", peer.conn  # a background job: not in related_jobs
    t, out = _in_thread(lambda: client.getStatus(job, timeout=5))
    assert peer.expect(constants.GET_STATUS).body == b"H:3"
    peer.send(constants.STATUS_RES, b"H:3", b"1", b"0", b"3", b"4")
    t.join(5)
    assert out == [job]
    assert job.known is True and job.running is False and job.fraction_complete == 0.75


def test_get_status_unique(client: gear.Client) -> None:
    peer = Peer(client)
    t, out = _in_thread(lambda: client.getStatusUnique("u9", timeout=5))
    assert peer.expect(constants.GET_STATUS_UNIQUE).body == b"u9"
    peer.send(constants.STATUS_RES_UNIQUE, b"u9", b"1", b"1", b"2", b"4", b"3")
    t.join(5)
    (status,) = out
    assert status.known and status.running and status.client_count == 3
    assert status.fraction_complete == 0.5


def test_echo_round_trip(client: gear.Client) -> None:
    peer = Peer(client)
    t, out = _in_thread(lambda: peer.conn.echo(b"hello\x00world", timeout=5))
    assert peer.expect(constants.ECHO_REQ).body == b"hello\x00world"
    peer.send(constants.ECHO_RES, b"hello\x00world")
    t.join(5)
    assert out == [b"hello\x00world"]


def test_set_option_success_and_refusal(client: gear.Client) -> None:
    peer = Peer(client)
    t, out = _in_thread(lambda: client.setOption("exceptions", timeout=5))
    assert peer.expect(constants.OPTION_REQ).body == b"exceptions"
    peer.send(constants.OPTION_RES, b"exceptions")
    t.join(5)
    assert out == [True] and peer.conn.options == {b"exceptions"}
    t, out = _in_thread(lambda: client.setOption("bogus", timeout=5))
    peer.expect(constants.OPTION_REQ)
    peer.send(constants.ERROR, b"UNKNOWN_OPTION", b"Server does not recognize given option")
    t.join(5)
    assert out == [False]


def test_lost_connection_fails_pending_submit_and_calls_handle_disconnect() -> None:
    seen: list[gear.Job] = []
    disconnected = threading.Event()

    class MyClient(gear.Client):
        def handleDisconnect(self, job: Any) -> Any:
            job = super().handleDisconnect(job)
            seen.append(job)
            disconnected.set()
            return job

    client = MyClient("c2")
    try:
        peer = Peer(client)
        running = gear.Job("fn", b"")
        t, _ = _in_thread(lambda: client.submitJob(running))
        peer.expect(constants.SUBMIT_JOB)
        peer.send(constants.JOB_CREATED, b"H:1")
        t.join(5)
        t, out = _in_thread(lambda: client.submitJob(gear.Job("fn", b""), timeout=30))
        peer.expect(constants.SUBMIT_JOB)
        peer.close()  # the server goes away before JOB_CREATED
        t.join(5)
        assert not t.is_alive()
        assert isinstance(out[0], gear.GearmanError)
        # The pending submit's waiter is woken before the hook runs for the running job (the
        # poll thread fails the waiters first), so wait for the hook rather than race it.
        assert disconnected.wait(5)
        assert seen == [running]
        assert peer.conn not in client.active_connections
    finally:
        client.shutdown()


def test_unknown_handle_is_ignored_and_poll_loop_survives(client: gear.Client) -> None:
    peer = Peer(client)
    peer.send(constants.WORK_COMPLETE, b"H:unknown", b"")
    t, out = _in_thread(lambda: peer.conn.echo(b"still alive", timeout=5))
    peer.expect(constants.ECHO_REQ)
    peer.send(constants.ECHO_RES, b"still alive")
    t.join(5)
    assert out == [b"still alive"]


def test_submit_jobs_pipelines_in_one_write(client: gear.Client) -> None:
    peer = Peer(client)
    jobs = [gear.Job("fn", b"%d" % i) for i in range(3)]
    t, out = _in_thread(lambda: client.submitJobs(jobs, background=True))
    data = peer.sock.recv(65536)  # all three submissions arrive in one segment
    assert data.count(b"\x00REQ") == 3
    for i in range(3):
        peer.send(constants.JOB_CREATED, b"H:%d" % i)
    t.join(5)
    assert out == [None]
    assert [j.handle for j in jobs] == [b"H:0", b"H:1", b"H:2"]


def test_too_long_unique_is_refused_before_anything_is_sent(client: gear.Client) -> None:
    # docs/protocol.md §1.2: gearmand refuses >64 bytes and never coalesces exactly 64 (truncated)
    peer = Peer(client)
    with pytest.raises(gear.InvalidDataError, match="unique is 64 bytes; at most 63"):
        client.submitJob(gear.Job("fn", b"", unique="u" * 64))
    ok, too_long = gear.Job("fn", b"", unique="ok"), gear.Job("fn", b"", unique="u" * 65)
    with pytest.raises(gear.InvalidDataError):
        client.submitJobs([ok, too_long], background=True)
    assert ok.handle is None
    # nothing went out: the next submission is the first packet the server sees
    job = gear.Job("fn", b"", unique="u" * 63)
    t, out = _in_thread(lambda: client.submitJob(job, background=True))
    assert peer.expect(constants.SUBMIT_JOB_BG).args()[1] == b"u" * 63
    peer.send(constants.JOB_CREATED, b"H:1")
    t.join(5)
    assert out == [None] and job.handle == b"H:1"


def test_error_reply_is_raised_and_logged_not_printed(
    client: gear.Client, caplog: pytest.LogCaptureFixture
) -> None:
    # issue 15: the refused submit raises; the ERROR is a log record below WARNING, which
    # logging's last-resort handler (no logging configured) would print on stderr.
    peer = Peer(client)
    with caplog.at_level(logging.DEBUG, logger="gear"):
        t, out = _in_thread(lambda: client.submitJob(gear.Job("fn", b"")))
        peer.expect(constants.SUBMIT_JOB)
        peer.send(constants.ERROR, b"QUEUE_ERROR", b"queue full")
        t.join(5)
    assert isinstance(out[0], gear.ServerError)
    (record,) = [r for r in caplog.records if "Received ERROR packet" in r.getMessage()]
    assert record.levelno < logging.lastResort.level
    assert "QUEUE_ERROR" in record.getMessage()


def test_error_reply_prints_nothing_without_logging_configured() -> None:
    # A fresh interpreter with no logging set up, so the last-resort handler is in play.
    script = textwrap.dedent(
        """
        import socket, gear
        server = gear.Server(0, host="127.0.0.1")
        client = gear.Client("c")
        client.addServer("127.0.0.1", server.port)
        client.waitForServer(10)
        client.submitJob(gear.Job("limited", b"1"), timeout=10)
        with socket.create_connection(("127.0.0.1", server.port), 10) as admin:
            admin.sendall(b"maxqueue limited 1\\n")
            assert admin.recv(100).startswith(b"OK")
        try:
            client.submitJob(gear.Job("limited", b"2"), timeout=10)
        except gear.ServerError as e:
            print("raised", e.code.decode())
        client.shutdown()
        server.shutdown()
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "raised QUEUE_ERROR"
    assert "Received ERROR packet" not in proc.stderr
