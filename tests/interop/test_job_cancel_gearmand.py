"""JOB_CANCEL's opt-in against a real gearmand (docs/protocol.md §1.7): gearmand answers
OPTION_REQ ``job_cancel`` with ERROR UNKNOWN_OPTION; the threaded and the asyncio worker take
that quietly (no warning, no failed request) and serve jobs as before."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

import gear
from gear import aio
from tests.aio.helpers import run
from tests.support.peers import GearmandProcess

pytestmark = pytest.mark.interop

WAIT = 10.0


@pytest.fixture
def client(gearmand: GearmandProcess) -> Iterator[gear.Client]:
    c = gear.Client("cancel-interop-client")
    c.addServer(gearmand.host, gearmand.port)
    c.waitForServer(WAIT)
    yield c
    c.shutdown()


def _round_trip(client: gear.Client, worker: gear.Worker, data: bytes) -> None:
    job = gear.Job("rev", data)
    client.submitJob(job)
    got = worker.getJob()
    assert not got.cancelled
    got.sendWorkComplete(bytes(got.arguments)[::-1])
    assert job.wait(WAIT) and job.data == [data[::-1]]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_threaded_worker_opted_in_at_connect(gearmand: GearmandProcess, client: gear.Client,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gear")
    w = gear.Worker("cancel-interop", job_cancel=True)
    try:
        w.addServer(gearmand.host, gearmand.port)
        w.registerFunction("rev")
        w.waitForServer(WAIT)
        _round_trip(client, w, b"abc")
        (session,) = w._sessions.values()
        assert session.cancel_option is False  # refused: JOB_CANCEL never comes
        _round_trip(client, w, b"second")
    finally:
        w.shutdown()
    assert _warnings(caplog) == []
    assert any("JOB_CANCEL" in r.getMessage() for r in caplog.records)


def test_threaded_worker_opted_in_on_a_live_connection(
        gearmand: GearmandProcess, client: gear.Client,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gear")
    w = gear.Worker("cancel-interop-late")
    try:
        w.addServer(gearmand.host, gearmand.port)
        w.registerFunction("rev")
        w.waitForServer(WAIT)
        _round_trip(client, w, b"before")
        w.enableJobCancel()  # what the harp helper does
        _round_trip(client, w, b"after")
        (session,) = w._sessions.values()
        assert session.cancel_option is False
    finally:
        w.shutdown()
    assert _warnings(caplog) == []


def test_aio_worker_opts_in_by_default_and_works(gearmand: GearmandProcess,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gear")

    async def main() -> None:
        worker = aio.Worker("cancel-interop-aio")

        @worker.function("rev")
        async def rev(job: aio.WorkerJob) -> bytes:
            assert not job.cancelled
            return job.arguments[::-1]

        worker.add_server(gearmand.host, gearmand.port)
        await worker.start(concurrency=2)
        try:
            await worker.wait_for_server(WAIT)
            async with aio.Client() as client:
                client.add_server(gearmand.host, gearmand.port)
                await client.wait_for_server(WAIT)
                results = await asyncio.gather(
                    *(client.run("rev", b"x%d" % i, timeout=WAIT) for i in range(5)))
                assert results == [b"%dx" % i for i in range(5)]
            assert worker._connections[0].session.cancel_option is False
        finally:
            await worker.stop(drain=False)

    run(main())
    assert _warnings(caplog) == []
