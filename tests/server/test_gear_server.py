"""``gear.Server``: gear 0.16's embeddable server API on top of the production engine."""

from __future__ import annotations

import inspect
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gear
from gear import constants as c
from gear.errors import GearmanError
from gear.protocol.packets import request
from gear.server.gear_server import Server
from tests.support.pki import PKI, make_pki
from tests.support.raw import connect, read_packet


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(0, host="127.0.0.1")
    try:
        yield srv
    finally:
        srv.shutdown()


def test_constructor_signature_is_gears() -> None:
    params = inspect.signature(Server.__init__).parameters
    assert [(p.name, p.default) for p in list(params.values())[1:]] == [
        ("port", 4730), ("ssl_key", None), ("ssl_cert", None), ("ssl_ca", None),
        ("statsd_host", None), ("statsd_port", 8125), ("statsd_prefix", None),
        ("server_id", None), ("acl", None), ("host", None), ("keepalive", False),
        ("tcp_keepidle", 7200), ("tcp_keepintvl", 75), ("tcp_keepcnt", 9),
    ]
    assert gear.Server is Server


def test_port_zero_listens_before_the_constructor_returns(server: Server) -> None:
    assert server.port > 0
    sock = connect(server.port)  # no waiting: already listening
    sock.sendall(request(c.ECHO_REQ, b"hi"))
    assert read_packet(sock) == (c.ECHO_RES, [b"hi"])


def test_shutdown_is_idempotent_and_closes_connections() -> None:
    srv = Server(0, host="127.0.0.1")
    sock = connect(srv.port)
    srv.shutdown()
    srv.shutdown()
    assert sock.recv(10) == b""
    with pytest.raises(OSError):
        connect(srv.port)


def test_port_in_use_raises_from_the_constructor(server: Server) -> None:
    with pytest.raises(GearmanError, match="cannot listen"):
        Server(server.port, host="127.0.0.1")


def test_queue_views_follow_the_jobs(server: Server) -> None:
    client = connect(server.port)
    for ptype, name in ((c.SUBMIT_JOB_LOW_BG, b"low"), (c.SUBMIT_JOB_BG, b"norm1"),
                        (c.SUBMIT_JOB_HIGH_BG, b"high"), (c.SUBMIT_JOB_BG, b"norm2")):
        client.sendall(request(ptype, b"fn", name, b"data-" + name))
        assert read_packet(client)[0] == c.JOB_CREATED
    assert [j.unique for j in server.normal_queue] == [b"norm1", b"norm2"]
    assert [j.unique for j in server.high_queue] == [b"high"]
    assert [j.unique for j in server.low_queue] == [b"low"]
    assert [j.unique for j in server.getQueue()] == [b"high", b"norm1", b"norm2", b"low"]
    assert len(server.jobs) == 4 and server.total_jobs == 4 and server.waiting_jobs == 4
    worker = connect(server.port)
    worker.sendall(request(c.CAN_DO, b"fn") + request(c.GRAB_JOB_UNIQ))
    ptype, args = read_packet(worker)
    assert ptype == c.JOB_ASSIGN_UNIQ and args[2] == b"high"
    assert server.high_queue == []  # a running job has left its queue
    job = server.jobs[args[0]]
    assert job.running and job.name == b"fn" and job.arguments == b"data-high"
    assert server.running_jobs == 1
    assert b"fn" in server.functions
    assert len(server.active_connections) == 2
    assert any(b"fn" in peer.functions for peer in server.active_connections)


def test_jobs_and_connections_carry_gears_server_names(server: Server) -> None:
    client = connect(server.port)
    client.sendall(request(c.SUBMIT_JOB, b"fn", b"u", b"x"))
    handle = read_packet(client)[1][0]
    worker = connect(server.port)
    worker.sendall(request(c.CAN_DO, b"fn") + request(c.GRAB_JOB_UNIQ))
    assert read_packet(worker)[0] == c.JOB_ASSIGN_UNIQ
    job = server.jobs[handle]
    conns = server.active_connections
    runner = next(conn for conn in conns if b"fn" in conn.functions)
    submitter = next(conn for conn in conns if conn != runner)
    assert job.running and job.worker_connection == runner and job.client_connection == submitter
    assert list(runner.related_jobs) == [handle] and list(submitter.related_jobs) == [handle]
    assert runner.related_jobs[handle] == job and job in server.jobs.values()
    job.waiting = True  # what Zuul's servers set on their jobs: kept on the job
    assert server.jobs[handle].waiting is True


class HoldingServer(Server):
    """Zuul-style: jobs whose name starts with ``hold:`` stay queued while ``hold`` is set."""

    hold = True

    def getJobForConnection(self, connection: Any, peek: bool = False) -> Any:
        for job in self.getQueue():  # on the server thread: read directly, no deadlock
            if self.hold and job.name.startswith(b"hold:"):
                continue
            if job.name in connection.functions:
                return job  # the broker assigns it (unless peeking)
        return None


def test_getJobForConnection_override_decides_what_a_worker_gets() -> None:
    srv = HoldingServer(0, host="127.0.0.1")
    try:
        client = connect(srv.port)
        client.sendall(request(c.SUBMIT_JOB_BG, b"hold:a", b"", b"1"))
        read_packet(client)
        client.sendall(request(c.SUBMIT_JOB_BG, b"free", b"", b"2"))
        read_packet(client)
        worker = connect(srv.port)
        worker.sendall(request(c.CAN_DO, b"hold:a") + request(c.CAN_DO, b"free"))
        worker.sendall(request(c.GRAB_JOB_UNIQ))
        ptype, args = read_packet(worker)
        assert (ptype, args[1]) == (c.JOB_ASSIGN_UNIQ, b"free")
        worker.sendall(request(c.GRAB_JOB_UNIQ))
        assert read_packet(worker)[0] == c.NO_JOB  # held
        worker.sendall(request(c.PRE_SLEEP))  # nothing it may take: it sleeps
        srv.hold = False
        srv.wakeConnections()  # what Zuul does after releasing held jobs
        assert read_packet(worker) == (c.NOOP, [b""])
        worker.sendall(request(c.GRAB_JOB_UNIQ))
        ptype, args = read_packet(worker)
        assert (ptype, args[1]) == (c.JOB_ASSIGN_UNIQ, b"hold:a")
        assert srv.getQueue() == []
    finally:
        srv.shutdown()


def test_statsd_reports_gears_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gear.server.observe.statsd.GAUGE_INTERVAL", 0.05)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    srv = Server(0, host="127.0.0.1", statsd_host="127.0.0.1",
                 statsd_port=receiver.getsockname()[1], statsd_prefix="zuul.geard")
    try:
        sock = connect(srv.port)
        sock.sendall(request(c.ECHO_REQ, b"x") + request(c.SUBMIT_JOB_BG, b"f", b"", b"d"))
        read_packet(sock)
        read_packet(sock)
        seen: set[bytes] = set()
        wanted = {b"zuul.geard.packet.ECHO_REQ", b"zuul.geard.packet.SUBMIT_JOB_BG",
                  b"zuul.geard.queue.total"}
        while not wanted <= {line.split(b":")[0] for line in seen}:
            seen.update(receiver.recv(4096).splitlines())
        assert b"zuul.geard.packet.ECHO_REQ:1|c" in seen
        assert any(m.startswith(b"zuul.geard.packet.ECHO_REQ:") and m.endswith(b"|ms")
                   for m in seen)
        assert b"zuul.geard.queue.total:1|g" in seen
    finally:
        srv.shutdown()
        receiver.close()


def test_mutual_tls_like_gear(tmp_path: Path) -> None:
    pki: PKI = make_pki(tmp_path)
    srv = Server(0, ssl_key=pki.server_key, ssl_cert=pki.server_cert, ssl_ca=pki.ca,
                 host="127.0.0.1")
    try:
        ctx = ssl.create_default_context(cafile=pki.ca)
        ctx.check_hostname = False
        ctx.load_cert_chain(pki.client_cert, pki.client_key)
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        sock = ctx.wrap_socket(raw)
        sock.sendall(request(c.ECHO_REQ, b"tls"))
        assert read_packet(sock) == (c.ECHO_RES, [b"tls"])  # type: ignore[arg-type]
        assert [p.ssl_subject for p in srv.active_connections] == ["worker1"]
    finally:
        srv.shutdown()


def test_views_are_safe_from_many_threads(server: Server) -> None:
    client = connect(server.port)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(200):
                server.getQueue()
                server.jobs  # noqa: B018 - the property read is the test
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(200):
        client.sendall(request(c.SUBMIT_JOB_BG, b"f", b"u%d" % i, b"d"))
        read_packet(client)
    for t in threads:
        t.join()
    assert errors == []
    assert len(server.getQueue()) == 200


def test_missing_statsd_is_logged_like_gear(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "statsd", None)
    srv = Server(0, host="127.0.0.1", statsd_host="127.0.0.1")
    try:
        assert "Unable to import statsd module" in caplog.text
        sock = connect(srv.port)
        sock.sendall(request(c.ECHO_REQ, b"still serving"))
        assert read_packet(sock) == (c.ECHO_RES, [b"still serving"])
    finally:
        srv.shutdown()


MASS_DO = 100  # a packet type of the subclass's own: CAN_DO for many functions at once
MASS_DONE = 101


class MassDoServer(Server):
    """A custom-packet server as gear users write them: handlePacket adds a type."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.seen: list[int] = []
        super().__init__(*args, **kw)

    def handlePacket(self, packet: Any) -> None:
        self.seen.append(packet.ptype)
        if packet.ptype == MASS_DO:
            names = packet.data.split(b"\x00")
            for name in names:
                super().handlePacket(gear.Packet(c.REQ, c.CAN_DO, name, packet.connection))
            reply = gear.Packet(c.RES, MASS_DONE, b"%d" % len(names))
            packet.connection.sendPacket(reply)
        elif packet.ptype == c.ECHO_REQ and packet.data == b"boom":
            raise RuntimeError("a bug in the override")
        else:
            super().handlePacket(packet)


def test_statsd_times_a_handlePacket_override_and_its_own_types() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    srv = MassDoServer(0, host="127.0.0.1", statsd_host="127.0.0.1",
                       statsd_port=receiver.getsockname()[1], statsd_prefix="s")
    try:
        worker = connect(srv.port)
        worker.sendall(_raw(MASS_DO, b"a\x00b") + request(c.ECHO_REQ, b"x"))
        assert read_packet(worker) == (MASS_DONE, [b"2"])  # the override handled its type
        assert read_packet(worker) == (c.ECHO_RES, [b"x"])
        assert srv.seen == [MASS_DO, c.ECHO_REQ]
        seen: set[bytes] = set()
        while not {b"s.packet.UNKNOWN:1|c", b"s.packet.ECHO_REQ:1|c"} <= seen:
            seen.update(receiver.recv(4096).splitlines())
    finally:
        srv.shutdown()
        receiver.close()


def _raw(ptype: int, body: bytes) -> bytes:
    return c.REQ + ptype.to_bytes(4, "big") + len(body).to_bytes(4, "big") + body


def test_handlePacket_override_sees_every_packet_and_adds_its_own_types(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gear.Server")
    srv = MassDoServer(0, host="127.0.0.1")
    try:
        worker = connect(srv.port)
        worker.sendall(_raw(MASS_DO, b"a\x00b\x00c"))
        assert read_packet(worker) == (MASS_DONE, [b"3"])
        client = connect(srv.port)
        client.sendall(request(c.SUBMIT_JOB, b"b", b"", b"x"))  # the plain path, hooked too
        assert read_packet(client)[0] == c.JOB_CREATED
        worker.sendall(request(c.GRAB_JOB))
        ptype, args = read_packet(worker)
        assert (ptype, args[1:]) == (c.JOB_ASSIGN, [b"b", b"x"])
        worker.sendall(request(c.WORK_COMPLETE, args[0], b"done"))
        assert read_packet(client) == (c.WORK_COMPLETE, [args[0], b"done"])
        # An exception in the override is logged; the connection keeps being served.
        worker.sendall(request(c.ECHO_REQ, b"boom") + request(c.ECHO_REQ, b"ok"))
        assert read_packet(worker) == (c.ECHO_RES, [b"ok"])
        # A type nobody handles is logged and ignored, as gear does, when an override exists.
        worker.sendall(_raw(MASS_DO + 5, b"?") + request(c.ECHO_REQ, b"still"))
        assert read_packet(worker) == (c.ECHO_RES, [b"still"])
        assert srv.seen == [MASS_DO, c.SUBMIT_JOB, c.GRAB_JOB, c.WORK_COMPLETE, c.ECHO_REQ,
                            c.ECHO_REQ, MASS_DO + 5, c.ECHO_REQ]
        assert sorted(srv.functions) == [b"a", b"b", b"c"]
    finally:
        srv.shutdown()
    logged = [(r.levelname, r.getMessage().split(" <")[0]) for r in caplog.records]
    assert ("ERROR", "Exception handling packet") in logged
    assert ("ERROR", "Received unknown packet:") in logged


def test_without_an_override_an_unknown_type_closes_the_connection(server: Server) -> None:
    sock = connect(server.port)
    sock.sendall(_raw(MASS_DO, b"a"))
    assert sock.recv(100) == b""  # as gearmand: closed without a reply


def test_work_exception_reaches_a_client_that_did_not_ask_for_it(server: Server) -> None:
    """gear's server forwarded WORK_EXCEPTION to every client; gear.Server does by default
    (docs/semantics.md, Failures and exceptions). geard keeps gearmand's WORK_FAIL."""
    client = connect(server.port)  # never sends OPTION_REQ exceptions
    client.sendall(request(c.SUBMIT_JOB, b"fn", b"u1", b"data"))
    ptype, (handle,) = read_packet(client)
    assert ptype == c.JOB_CREATED
    worker = connect(server.port)
    worker.sendall(request(c.CAN_DO, b"fn") + request(c.GRAB_JOB))
    assert read_packet(worker)[0] == c.JOB_ASSIGN
    worker.sendall(request(c.WORK_EXCEPTION, handle, b"boom"))
    assert read_packet(client) == (c.WORK_EXCEPTION, [handle, b"boom"])
