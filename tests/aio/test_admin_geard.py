"""gear.aio.Admin's wrappers of geard's own admin commands: the dead-letter list and the harp
records (docs/server.md "Poison jobs", docs/harp.md "Admin commands"), on a live geard; and the
framing they rely on: a listing read whole, so the next command's reply is its own."""

from __future__ import annotations

import asyncio

import pytest

from gear import aio
from gear import constants as c
from gear.errors import ConfigurationError, ServerError
from gear.protocol.packets import request
from tests.server.harp.conftest import LiveServer, RawWorker, live  # noqa: F401
from tests.server.harp.test_harp_store import ask, submit
from tests.support.peers import GeardProcess
from tests.support.raw import connect, read_packet


def make_dead(port: int, function: bytes, unique: bytes) -> None:
    """A background job whose one attempt died with its worker."""
    client = connect(port)
    client.sendall(request(c.SUBMIT_JOB_BG, function, unique, b"payload"))
    assert read_packet(client)[0] == c.JOB_CREATED
    worker = connect(port)
    worker.sendall(request(c.CAN_DO, function) + request(c.GRAB_JOB))
    assert read_packet(worker)[0] == c.JOB_ASSIGN
    worker.close()
    client.close()


def test_dead_letter_wrappers() -> None:
    geard = GeardProcess("--queue", "memory", "-l", "none", "--job-retries", "1")
    make_dead(geard.port, b"resize", b"a")
    make_dead(geard.port, b"thumb", b"b")

    async def main() -> None:
        async with aio.Admin("127.0.0.1", geard.port, timeout=10) as admin:
            dead = await admin.dead_jobs()
            for _ in range(100):  # the server handles each worker's close in turn
                if len(dead) == 2:
                    break
                dead = await admin.dead_jobs()
            assert [(d.function, d.unique, d.attempts, d.size) for d in dead] == [
                (b"resize", b"a", 1, 7), (b"thumb", b"b", 1, 7)]
            # The listing was read whole: the next reply is the next command's.
            assert (await admin.version())[0].isdigit()
            assert [d.function for d in await admin.dead_jobs("thumb")] == [b"thumb"]
            await admin.retry_dead_job(dead[0].handle)
            with pytest.raises(ServerError) as err:
                await admin.drop_dead_job(dead[0].handle)
            assert err.value.code == b"UNKNOWN_JOB"
            assert await admin.retry_dead_jobs("nothing") == 0
            assert await admin.drop_dead_jobs() == 1
            assert await admin.dead_jobs() == []
            assert [s.name for s in await admin.status() if s.total] == [b"resize"]

    try:
        asyncio.run(main())
    finally:
        geard.stop()


def test_harp_wrappers(live: LiveServer) -> None:  # noqa: F811
    worker = RawWorker(live.port, "h/echo")
    running = submit(live.harp_port, queue={"name": {"q": 1}, "concurrency": 1})
    waiting = submit(live.harp_port, queue={"name": {"q": 1}})
    worker.grab()

    async def main() -> None:
        async with aio.Admin("127.0.0.1", live.port, timeout=10) as admin:
            calls = {r["job_id"]: r["state"] for r in await admin.harp_list()}
            assert calls == {running: "running", waiting: "queued"}
            assert (await admin.harp_info(running))["arguments"] == {"x": 1}
            assert await admin.harp_queues() == [
                {"queue": {"q": 1}, "concurrency": 1, "running": 1, "waiting": 1}]
            assert [r["job_id"] for r in await admin.harp_queue({"q": 1})] == [running, waiting]
            await admin.harp_cancel(running)
            assert ask(live.harp_port, {"get_result": running}) == {"cancelled": True}
            with pytest.raises(ServerError) as err:
                await admin.harp_cancel(running)
            assert err.value.code == b"NOT_RUNNING"
            assert await admin.harp_cancel_queue({"q": 1}) == 1
            with pytest.raises(ServerError) as err:
                await admin.harp_info("no-such-id")
            assert err.value.code == b"UNKNOWN_JOB"
            with pytest.raises(ConfigurationError):
                await admin.harp_queue("q")  # type: ignore[arg-type]
            assert {r["state"] for r in await admin.harp_list(all=True)} == {"ended"}
            assert await admin.harp_prune(0) == 2
            assert await admin.harp_list(all=True) == []

    try:
        asyncio.run(main())
    finally:
        worker.close()
