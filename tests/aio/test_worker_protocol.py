"""The aio Worker's GRAB / PRE_SLEEP / NOOP state machine, packet by packet, against a scripted
in-process fake server: registration, no busy loop, no missed wakeup, pipelined GRABs bounded by
free slots (docs/protocol.md §1.3 and §3.5)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from gear import aio
from gear import constants as c
from tests.aio.fake import fake_server
from tests.aio.helpers import run


def test_registration_sleep_and_wakeup() -> None:
    release = None

    async def main() -> None:
        nonlocal release
        release = asyncio.Event()
        worker = aio.Worker(client_id="w1")

        @worker.function("fn", timeout=2.5)
        async def fn(job: aio.WorkerJob) -> bytes:
            assert release is not None
            await release.wait()
            return job.arguments.upper()

        async with fake_server() as server:
            worker.add_server("127.0.0.1", server.port)
            await worker.start(concurrency=2)
            assert (await server.expect(c.SET_CLIENT_ID)).body == b"w1"
            # seconds -> milliseconds (docs/protocol.md §3.8)
            assert (await server.expect(c.CAN_DO_TIMEOUT)).args() == [b"fn", b"2500"]
            await server.expect(c.GRAB_JOB_UNIQ)
            server.send(c.NO_JOB)
            await server.expect(c.PRE_SLEEP)
            await server.assert_quiet()  # sleeping: no polling

            server.send(c.NOOP)
            await server.expect(c.GRAB_JOB_UNIQ)  # exactly one GRAB after a wakeup
            server.send(c.JOB_ASSIGN_UNIQ, b"H:1", b"fn", b"u1", b"abc")
            # The first job of a wake-up: PRE_SLEEP asks whether more is queued (a server with
            # more answers NOOP at once), rather than a GRAB that would come back NO_JOB.
            await server.expect(c.PRE_SLEEP)
            await server.assert_quiet()

            release.set()
            assert (await server.expect(c.WORK_COMPLETE)).args() == [b"H:1", b"ABC"]
            await server.assert_quiet()  # still asleep: a free slot alone does not GRAB
            server.send(c.NOOP)
            await server.expect(c.GRAB_JOB_UNIQ)
            await worker.stop(drain=False)

    run(main())


def test_pipelined_grabs_never_exceed_free_slots() -> None:
    async def main() -> None:
        releases: dict[bytes, asyncio.Event] = {}
        worker = aio.Worker()

        @worker.function("fn")
        async def fn(job: aio.WorkerJob) -> bytes:
            await releases.setdefault(job.arguments, asyncio.Event()).wait()
            return b""

        async with fake_server() as server:
            worker.add_server("127.0.0.1", server.port)
            await worker.start(concurrency=5)
            await server.expect(c.CAN_DO)
            await server.expect(c.GRAB_JOB_UNIQ)
            server.send(c.JOB_ASSIGN_UNIQ, b"H:1", b"fn", b"", b"1")
            await server.expect(c.PRE_SLEEP)  # the sleep probe
            server.send(c.NOOP)  # more is queued
            await server.expect(c.GRAB_JOB_UNIQ)
            server.send(c.JOB_ASSIGN_UNIQ, b"H:2", b"fn", b"", b"2")
            await server.expect(c.GRAB_JOB_UNIQ)  # woken by the probe: one more GRAB
            await server.assert_quiet()  # the window is still one
            server.send(c.JOB_ASSIGN_UNIQ, b"H:3", b"fn", b"", b"3")
            # a second job in a row: the window doubles, two GRABs in flight, sent before
            # either is answered
            await server.expect(c.GRAB_JOB_UNIQ)
            await server.expect(c.GRAB_JOB_UNIQ)
            server.send(c.JOB_ASSIGN_UNIQ, b"H:4", b"fn", b"", b"4")
            await server.assert_quiet()  # window 4, but 4 running + 1 GRAB = 5 slots
            server.send(c.JOB_ASSIGN_UNIQ, b"H:5", b"fn", b"", b"5")
            await server.assert_quiet()  # 5 running, no free slot, no GRAB
            assert worker.running_jobs == 5

            releases[b"2"].set()
            assert (await server.expect(c.WORK_COMPLETE)).args() == [b"H:2", b""]
            await server.expect(c.GRAB_JOB_UNIQ)  # the freed slot, and only that one
            await server.assert_quiet()
            server.send(c.NO_JOB)
            await server.expect(c.PRE_SLEEP)
            await worker.stop(drain=False)

    run(main())


def test_unsupported_grab_falls_back_to_grab_job() -> None:
    async def main() -> None:
        worker = aio.Worker()
        seen: list[bytes] = []

        @worker.function("fn")
        async def fn(job: aio.WorkerJob) -> bytes:
            seen.append(job.unique)
            return b"ok"

        async with fake_server() as server:
            worker.add_server("127.0.0.1", server.port)
            await worker.start(concurrency=1)
            await server.expect(c.CAN_DO)
            await server.expect(c.GRAB_JOB_UNIQ)
            server.send(c.ERROR, b"INVALID_COMMAND", b"Command not expected")
            await server.expect(c.GRAB_JOB)
            server.send(c.JOB_ASSIGN, b"H:9", b"fn", b"data")
            done = await server.expect_unordered(c.WORK_COMPLETE, c.PRE_SLEEP)
            assert done[c.WORK_COMPLETE].args() == [b"H:9", b"ok"]
            server.send(c.NOOP)
            await server.expect(c.GRAB_JOB)
            await worker.stop(drain=False)
        assert seen == [b""]

    run(main())


def test_registering_while_asleep_asks_for_jobs() -> None:
    async def main() -> None:
        worker = aio.Worker()

        @worker.function("first")
        async def first(job: aio.WorkerJob) -> None:
            return None

        async with fake_server() as server:
            worker.add_server("127.0.0.1", server.port)
            await worker.start(concurrency=1)
            await server.expect(c.CAN_DO)
            await server.expect(c.GRAB_JOB_UNIQ)
            server.send(c.NO_JOB)
            await server.expect(c.PRE_SLEEP)

            async def late(job: aio.WorkerJob) -> bytes:
                return b"late"

            # jobs of a new function may already be queued, and CAN_DO wakes nobody
            # (docs/protocol.md §3.4)
            worker.register("late", late)
            assert (await server.expect(c.CAN_DO)).body == b"late"
            await server.expect(c.GRAB_JOB_UNIQ)
            server.send(c.JOB_ASSIGN_UNIQ, b"H:5", b"late", b"", b"")
            done = await server.expect_unordered(c.WORK_COMPLETE, c.PRE_SLEEP)
            assert done[c.WORK_COMPLETE].args() == [b"H:5", b"late"]
            await worker.stop(drain=False)

    run(main())


def test_unregister_sends_cant_do_and_drain_waits_for_grabs() -> None:
    async def main() -> None:
        worker = aio.Worker()

        @worker.function("a")
        async def a(job: aio.WorkerJob) -> bytes:
            return b"a"

        async with fake_server() as server:
            worker.add_server("127.0.0.1", server.port)
            await worker.start(concurrency=1)
            await server.expect(c.CAN_DO)
            await server.expect(c.GRAB_JOB_UNIQ)
            worker.unregister("a")
            assert (await server.expect(c.CANT_DO)).body == b"a"
            # stop(drain=True) waits for the GRAB in flight: its job must still be run
            stopping = asyncio.create_task(worker.stop(drain=True, timeout=5))
            await server.assert_quiet()
            assert not stopping.done()
            worker.register("a", a)  # re-registered before the assignment arrives
            await server.expect(c.CAN_DO)
            server.send(c.JOB_ASSIGN_UNIQ, b"H:1", b"a", b"", b"")
            done = await server.expect_unordered(c.WORK_COMPLETE, c.PRE_SLEEP)
            assert done[c.WORK_COMPLETE].args() == [b"H:1", b"a"]
            await asyncio.wait_for(stopping, 5)
            assert server.packets.empty()  # no GRAB after the drain started

    run(main())


def test_a_handler_past_its_can_do_timeout_is_cancelled() -> None:
    # Issue 15 (b): the server has failed the job when its CAN_DO_TIMEOUT expires; the handler
    # is cancelled, nothing of the job is sent, and its slot takes the next job.
    async def main() -> None:
        worker = aio.Worker()
        cancelled = asyncio.Event()

        @worker.function("slow", timeout=0.1)
        async def slow(job: aio.WorkerJob) -> bytes:
            try:
                await asyncio.Event().wait()  # never set: runs until cancelled
            except asyncio.CancelledError:
                cancelled.set()
                job.send_data(b"too late")  # dropped: the server has failed the job
                raise
            return b"unreachable"

        @worker.function("fast")
        async def fast(job: aio.WorkerJob) -> bytes:
            return b"ok"

        async with fake_server() as server:
            worker.add_server("127.0.0.1", server.port)
            await worker.start(concurrency=1)
            assert (await server.expect(c.CAN_DO_TIMEOUT)).args() == [b"slow", b"100"]
            await server.expect(c.CAN_DO)
            await server.expect(c.GRAB_JOB_UNIQ)
            server.send(c.JOB_ASSIGN_UNIQ, b"H:1", b"slow", b"", b"")
            await server.expect(c.PRE_SLEEP)  # the sleep probe
            server.send(c.NOOP)  # more work
            # concurrency 1: the next GRAB needs the slot the cancelled handler gives back
            await server.expect(c.GRAB_JOB_UNIQ)
            assert cancelled.is_set()
            assert worker.running_jobs == 0
            server.send(c.JOB_ASSIGN_UNIQ, b"H:2", b"fast", b"", b"")
            assert (await server.expect(c.WORK_COMPLETE)).args() == [b"H:2", b"ok"]
            await worker.stop(drain=False)

    run(main())


def test_a_def_handler_past_its_can_do_timeout_keeps_its_slot_and_its_result_is_dropped() -> None:
    async def main() -> None:
        worker = aio.Worker()
        release = threading.Event()
        loop = asyncio.get_running_loop()
        expired = asyncio.Event()
        original = worker._expire

        def expire(*args: Any) -> None:
            original(*args)
            expired.set()

        worker._expire = expire  # type: ignore[method-assign]

        @worker.function("slow", timeout=0.1)
        def slow(job: aio.WorkerJob) -> bytes:
            release.wait(5)
            return b"too late"

        async with fake_server() as server:
            worker.add_server("127.0.0.1", server.port)
            await worker.start(concurrency=1)
            await server.expect(c.CAN_DO_TIMEOUT)
            await server.expect(c.GRAB_JOB_UNIQ)
            server.send(c.JOB_ASSIGN_UNIQ, b"H:1", b"slow", b"", b"")
            await server.expect(c.PRE_SLEEP)  # the sleep probe
            server.send(c.NOOP)  # more work, but no free slot
            await expired.wait()
            await server.assert_quiet()  # the thread still runs: no slot, no GRAB
            await loop.run_in_executor(None, release.set)
            await server.expect(c.GRAB_JOB_UNIQ)  # its result is dropped, its slot is free
            await worker.stop(drain=False)

    run(main())
