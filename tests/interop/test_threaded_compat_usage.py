"""Code written the way gear 0.16 users (Zuul, Nodepool) write it, run against gearmand."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import gear
from tests.support.peers import GearmandProcess

pytestmark = pytest.mark.interop


class RecordingClient(gear.Client):
    """A Zuul-style client: overrides the handlers, calls super and uses the returned job."""

    def __init__(self, client_id: str) -> None:
        super().__init__(client_id)
        self.finished: dict[bytes, str] = {}
        self.status_seen = threading.Event()
        self.done = threading.Event()

    def handleWorkComplete(self, packet: gear.Packet) -> Any:
        job = super().handleWorkComplete(packet)
        self.finished[job.handle] = "complete:" + "".join(job.data)
        self.done.set()
        return job

    def handleWorkFail(self, packet: gear.Packet) -> Any:
        job = super().handleWorkFail(packet)
        self.finished[job.handle] = "fail"
        self.done.set()
        return job

    def handleStatusRes(self, packet: gear.Packet) -> Any:
        job = super().handleStatusRes(packet)
        self.status_seen.set()
        return job


@pytest.fixture
def pair(gearmand: GearmandProcess) -> Iterator[tuple[RecordingClient, gear.TextWorker]]:
    client = RecordingClient("zuul")
    worker = gear.TextWorker("executor")
    for obj in (client, worker):
        obj.addServer(gearmand.host, gearmand.port, keepalive=True, tcp_keepidle=60,
                      tcp_keepintvl=30, tcp_keepcnt=5)
        obj.waitForServer(10)
    yield client, worker
    client.shutdown()
    worker.shutdown()


def test_subclassed_client_and_text_worker(pair: tuple[RecordingClient, gear.TextWorker]) -> None:
    client, worker = pair
    worker.registerFunction("build:project")
    job = gear.TextJob("build:project", '{"ref": "main"}', unique="uuid-1")
    client.submitJob(job, precedence=gear.PRECEDENCE_HIGH, timeout=300)
    wjob = worker.getJob()
    assert isinstance(wjob, gear.TextWorkerJob)
    assert wjob.name == "build:project" and wjob.arguments == '{"ref": "main"}'
    assert wjob.unique == "uuid-1" and wjob.handle == job.handle
    # Zuul asks for the status with a hand-built packet on the job's connection.
    job.connection.sendPacket(gear.Packet(gear.constants.REQ, gear.constants.GET_STATUS,
                                          job.handle))
    assert client.status_seen.wait(10)
    assert job.known and job.running
    wjob.sendWorkData("línea 1")
    wjob.sendWorkComplete("ok")
    assert client.done.wait(10)
    assert job.data == ["línea 1", "ok"]
    assert client.finished[job.handle] == "complete:línea 1ok"


def test_status_admin_request_on_every_connection(
    pair: tuple[RecordingClient, gear.TextWorker],
) -> None:
    client, worker = pair
    worker.registerFunction("counted")
    # CAN_DO travels on the worker's connection and the status request on the client's: an
    # echo on the worker's connection is answered only after its CAN_DO was handled.
    for connection in worker.active_connections:
        connection.echo(timeout=10)
    client.submitJob(gear.TextJob("counted", "x"), background=True)
    rows: dict[str, list[int]] = {}
    for connection in client.active_connections:
        req = gear.StatusAdminRequest()
        connection.sendAdminRequest(req, timeout=5)
        for line in req.response.decode("utf8").split("\n"):
            parts = [x.strip() for x in line.split("\t")]
            if len(parts) < 4:
                continue
            rows[parts[0]] = [int(p) for p in parts[1:4]]
    assert rows["counted"][2] == 1  # one worker
    assert rows["counted"][0] >= 0


def test_sockets_have_nodelay_and_keepalive(
    pair: tuple[RecordingClient, gear.TextWorker],
) -> None:
    client, worker = pair
    for obj in (client, worker):
        sock = obj.active_connections[0].conn
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60


def test_round_robin_across_servers(gearmand_factory: Any) -> None:
    servers = [gearmand_factory(), gearmand_factory()]
    client = gear.Client("rr")
    try:
        for s in servers:
            client.addServer(s.host, s.port)
        with pytest.raises(gear.ConfigurationError):
            client.addServer(servers[0].host, servers[0].port)
        client.waitForServer(10)
        # Wait until both are connected: waitForServer returns on the first one.
        with client.connections_condition:
            client.connections_condition.wait_for(lambda: len(client.active_connections) == 2, 10)
        used = set()
        for _ in range(4):
            job = gear.Job("rr", b"", unique=None)
            client.submitJob(job, background=True)
            used.add(job.connection)
        assert used == set(client.active_connections)
    finally:
        client.shutdown()


def test_wait_for_server_times_out_and_shutdown_twice() -> None:
    client = gear.Client()
    client.addServer("127.0.0.1", 0)  # nothing listens on port 0
    with pytest.raises(gear.TimeoutError):
        client.waitForServer(timeout=0.2)
    client.shutdown()
    client.shutdown()
