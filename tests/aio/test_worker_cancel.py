"""The aio Worker and geard's JOB_CANCEL (docs/protocol.md §1.7), packet by packet against the
scripted fake server: the opt-in, ``job.cancelled`` / ``job.cancel_event``, ``cancel_task``, and
a server that refuses the option like gearmand."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from gear import aio
from gear import constants as c
from tests.aio.fake import fake_server
from tests.aio.helpers import run


def test_a_cancelled_job_sees_its_flag_and_event_and_ends() -> None:
    async def main() -> None:
        worker = aio.Worker()
        seen: list[bool] = []

        @worker.function("long")
        async def long(job: aio.WorkerJob) -> bytes:
            await job.send_data(b"started")
            await job.cancel_event.wait()
            seen.append(job.cancelled)
            return b"stopped early"

        async with fake_server() as server:
            worker.add_server("127.0.0.1", server.port)
            await worker.start(concurrency=1)
            await server.expect(c.CAN_DO)
            await server.expect(c.GRAB_JOB_UNIQ)
            assert server.job_cancel_requests == 1  # opted in by default
            server.send(c.OPTION_RES, b"job_cancel")
            server.send(c.JOB_ASSIGN_UNIQ, b"H:1", b"long", b"", b"")
            await server.expect_unordered(c.WORK_DATA, c.PRE_SLEEP)  # PRE_SLEEP: the probe
            server.send(c.NOOP)  # more work, but no free slot
            server.send(c.JOB_CANCEL, b"H:9")  # not ours: ignored
            server.send(c.JOB_CANCEL, b"H:1")
            assert (await server.expect(c.WORK_COMPLETE)).args() == [b"H:1", b"stopped early"]
            assert seen == [True]
            await server.expect(c.GRAB_JOB_UNIQ)  # the slot is free again
            assert worker._connections[0].session.cancel_option is True
            await worker.stop(drain=False)

    run(main())


def test_cancel_task_cancels_an_async_handler_and_sends_work_fail() -> None:
    async def main() -> None:
        worker = aio.Worker()
        cleaned = asyncio.Event()

        @worker.function("forever", cancel_task=True)
        async def forever(job: aio.WorkerJob) -> bytes:
            try:
                await asyncio.Event().wait()  # never set: runs until cancelled
            finally:
                cleaned.set()
            return b"unreachable"

        @worker.function("after")
        async def after(job: aio.WorkerJob) -> bytes:
            return b"ok"

        async with fake_server() as server:
            worker.add_server("127.0.0.1", server.port)
            await worker.start(concurrency=1)
            await server.expect(c.CAN_DO)
            await server.expect(c.CAN_DO)
            await server.expect(c.GRAB_JOB_UNIQ)
            server.send(c.JOB_ASSIGN_UNIQ, b"H:1", b"forever", b"", b"")
            await server.expect(c.PRE_SLEEP)  # the sleep probe
            server.send(c.NOOP)  # more work
            await server.assert_quiet()  # concurrency 1: no GRAB while it runs
            server.send(c.JOB_CANCEL, b"H:1")
            assert (await server.expect(c.WORK_FAIL)).args() == [b"H:1"]
            assert cleaned.is_set() and worker.running_jobs == 0
            await server.expect(c.GRAB_JOB_UNIQ)
            server.send(c.JOB_ASSIGN_UNIQ, b"H:2", b"after", b"", b"")
            assert (await server.expect(c.WORK_COMPLETE)).args() == [b"H:2", b"ok"]
            await worker.stop(drain=False)

    run(main())


def test_a_def_handler_polls_the_flag() -> None:
    async def main() -> None:
        worker = aio.Worker(cancel_tasks=True)  # no effect on a def handler: it cannot be
        started = threading.Event()              # interrupted, it polls

        @worker.function("poll")
        def poll(job: aio.WorkerJob) -> bytes:
            started.set()
            for _ in range(500):
                if job.cancelled:
                    job.send_fail()
                    return b""
                threading.Event().wait(0.01)
            return b"never cancelled"

        async with fake_server() as server:
            worker.add_server("127.0.0.1", server.port)
            await worker.start(concurrency=1)
            await server.expect(c.CAN_DO)
            await server.expect(c.GRAB_JOB_UNIQ)
            server.send(c.JOB_ASSIGN_UNIQ, b"H:1", b"poll", b"", b"")
            await server.expect(c.PRE_SLEEP)  # the sleep probe
            await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
            server.send(c.JOB_CANCEL, b"H:1")
            assert (await server.expect(c.WORK_FAIL)).args() == [b"H:1"]
            await worker.stop(drain=False)

    run(main())


def test_gearmands_refusal_is_taken_quietly(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        worker = aio.Worker()

        @worker.function("fn")
        async def fn(job: aio.WorkerJob) -> bytes:
            return b"done"

        async with fake_server() as server:
            worker.add_server("127.0.0.1", server.port)
            await worker.start(concurrency=1)
            await server.expect(c.CAN_DO)
            await server.expect(c.GRAB_JOB_UNIQ)
            server.send(c.ERROR, b"UNKNOWN_OPTION", b"Server does not recognize given option")
            server.send(c.JOB_ASSIGN_UNIQ, b"H:1", b"fn", b"", b"")
            done = await server.expect_unordered(c.WORK_COMPLETE, c.PRE_SLEEP)
            assert done[c.WORK_COMPLETE].args() == [b"H:1", b"done"]
            assert worker._connections[0].session.cancel_option is False
            await worker.stop(drain=False)

    with caplog.at_level(logging.INFO, logger="gear.aio.worker"):
        run(main())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("JOB_CANCEL" in r.getMessage() for r in caplog.records)


def test_without_job_cancel_nothing_is_asked() -> None:
    async def main() -> None:
        worker = aio.Worker(job_cancel=False)
        worker.register("fn", lambda job: b"")
        async with fake_server() as server:
            worker.add_server("127.0.0.1", server.port)
            await worker.start(concurrency=1)
            await server.expect(c.CAN_DO)
            await server.expect(c.GRAB_JOB_UNIQ)
            assert server.job_cancel_requests == 0
            await worker.stop(drain=False)

    run(main())
