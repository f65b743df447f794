"""The examples of HarpCaller's Python API documentation (the seed's synopsis and method
descriptions), ported to Python 3 and run against geard with a Python worker."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import gear
import gear.harp as harp
from gear.threaded.harp_worker import HarpWorker
from tests.harp.conftest import WAIT
from tests.server.harp.conftest import LiveServer


@pytest.fixture
def rpc(live: LiveServer) -> Iterator[harp.HarpCaller]:
    w = gear.Worker("seed")
    w.addServer("127.0.0.1", live.port)
    w.waitForServer(WAIT)
    hw = HarpWorker(w, "localhost")

    @hw.procedure()
    def stream_infinity() -> Iterator[dict[str, int]]:
        # "infinity" cut short, so that the follow ends.
        for i in range(3):
            yield {"tick": i}
        return "enough"  # type: ignore[return-value]

    @hw.procedure()
    def return_immediate(*args: str) -> list[str]:
        return list(args)

    @hw.procedure()
    def nginx_status() -> str:
        return "running"

    @hw.procedure()
    def restart_nginx() -> bool:
        return True

    hw.start(threads=2)
    try:
        yield harp.HarpCaller("127.0.0.1", live.harp_port, timeout=WAIT)
    finally:
        hw.stop()
        w.shutdown()


def test_synopsis(rpc: harp.HarpCaller) -> None:
    host = rpc.localhost(queue={"foo": "bar"}, max_exec_time=15)
    # or: host = rpc.host(host="localhost", queue=...)
    job = host.stream_infinity()
    printed = [json.dumps(msg) for msg in job.follow(since=0)]
    assert printed == ['{"tick": 0}', '{"tick": 1}', '{"tick": 2}']
    assert len(job.id()) == 36
    assert job.result() == "enough"

    result = rpc("localhost").return_immediate("bar", "baz").get()
    assert result == ["bar", "baz"]

    result = rpc.job(job.id()).result()
    if result is harp.CALL_NOT_FINISHED:
        pytest.fail("still running")
    elif result is harp.CALL_CANCELLED:
        pytest.fail("cancelled")
    assert result == "enough"


def test_getattr_example(rpc: harp.HarpCaller) -> None:
    # get nginx' status on web01, no job configuration
    assert rpc.localhost.nginx_status().get() == "running"
    # enqueue nginx restart request
    call = rpc.localhost(queue={"service": "nginx", "host": "localhost"}).restart_nginx()
    assert call.get() is True


def test_follow_and_stream_usage(rpc: harp.HarpCaller) -> None:
    job_id = rpc.localhost.stream_infinity().id()
    job = rpc.job(job_id)
    assert job.get() == "enough"
    consumed = []
    for msg in job.stream():
        consumed.append(msg)
    for i, msg in job.stream(numbered=True):
        consumed.append((i, msg))
    assert consumed == [{"tick": 0}, {"tick": 1}, {"tick": 2},
                        (0, {"tick": 0}), (1, {"tick": 1}), (2, {"tick": 2})]


def test_json_connection_example(live: LiveServer) -> None:
    with harp.JSONConnection("127.0.0.1", live.harp_port) as conn:
        conn.send({"key": "value"})
        reply = conn.receive()
    assert reply["error"]["type"] == "invalid_version"
