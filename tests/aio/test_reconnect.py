"""Connection loss: jobs in flight fail clearly, both sides reconnect and carry on."""

from __future__ import annotations

import asyncio

import pytest

from gear import aio
from gear.errors import ConnectionError, NoConnectedServersError
from tests.aio.helpers import GearmandUnderTest, ServerUnderTest, run

pytestmark = pytest.mark.interop


def test_restart_fails_jobs_in_flight_then_both_sides_continue(server: ServerUnderTest) -> None:
    worker = aio.Worker(client_id="survivor", reconnect_max=0.2)
    started: asyncio.Event | None = None
    stuck_release: asyncio.Event | None = None
    calls: list[bytes] = []

    @worker.function("job")
    async def job_fn(job: aio.WorkerJob) -> bytes:
        assert started is not None and stuck_release is not None
        calls.append(job.arguments)
        if job.arguments == b"stuck":
            started.set()
            await stuck_release.wait()  # finishes after the restart: its result goes nowhere
        return b"ok " + job.arguments

    async def main() -> None:
        nonlocal started, stuck_release
        started, stuck_release = asyncio.Event(), asyncio.Event()
        worker.add_server(server.host, server.port)
        await worker.start(concurrency=2)
        async with aio.Client(reconnect_max=0.2) as client:
            client.add_server(server.host, server.port)
            await client.wait_for_server(5)
            assert await client.run("job", b"before", timeout=5) == b"ok before"
            in_flight = await client.submit("job", b"stuck")
            await started.wait()

            await asyncio.to_thread(server.restart)

            with pytest.raises(ConnectionError) as info:
                await in_flight.result(timeout=10)
            assert "lost" in str(info.value) and str(server.port) in str(info.value)
            assert in_flight.failed and isinstance(in_flight.error, ConnectionError)
            stuck_release.set()

            # the client reconnects; the worker re-registers (CAN_DO again) and serves new jobs
            await client.wait_for_server(10)
            assert await client.run("job", b"after", timeout=10) == b"ok after"
            async with aio.Admin(server.host, server.port) as admin:
                ids = [w.client_id for w in await admin.workers()]
                assert b"survivor" in ids  # SET_CLIENT_ID re-sent on reconnect
        await worker.stop(timeout=5)
        assert calls[0] == b"before" and calls[-1] == b"after"

    run(main(), timeout=30)


def test_submit_while_disconnected_raises_then_recovers(server: ServerUnderTest) -> None:
    async def main() -> None:
        async with aio.Client(reconnect_min=0.01, reconnect_max=0.1) as client:
            client.add_server(server.host, server.port)
            await client.wait_for_server(5)
            probe = await client.submit("nobody", b"")  # no worker: it waits until the loss
            await asyncio.to_thread(server.stop)
            with pytest.raises(ConnectionError):
                await probe.result(10)
            assert client.connected_servers == []
            with pytest.raises(NoConnectedServersError):
                await client.submit("fn", b"x", background=True)
            await asyncio.to_thread(server.restart)
            await client.wait_for_server(10)
            job = await client.submit("fn", b"x", background=True)
            assert job.handle

    run(main(), timeout=30)


def test_failover_to_the_next_server(server: ServerUnderTest) -> None:
    other = GearmandUnderTest()

    async def main() -> None:
        async with aio.Client(reconnect_max=0.1) as client:
            client.add_server(server.host, server.port)
            client.add_server(other.host, other.port)
            await client.wait_for_server(5, all_servers=True)
            probes = [await client.submit("nobody", b"") for _ in range(2)]
            assert {probe.server for probe in probes} == set(client.servers)  # round robin
            await asyncio.to_thread(other.stop)
            lost = next(probe for probe in probes if probe.server == client.servers[1])
            with pytest.raises(ConnectionError):
                await lost.result(10)
            assert client.connected_servers == [client.servers[0]]
            for _ in range(3):
                job = await client.submit("rr", background=True)
                assert job.server is not None and job.server.port == server.port

    try:
        run(main(), timeout=30)
    finally:
        other.stop()
