"""Cancel reaches the worker, end to end against a live geard (docs/protocol.md §1.7): admin
``cancel job``, a harp cancel and a harp ``max_exec_time`` expiry each stop a long job or
generator in the threaded and the asyncio worker within a deadline, and the workers go on."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

import gear
import gear.harp as harp
from gear import aio
from gear.errors import JobFailedError
from gear.harp.messages import HarpCall
from gear.threaded.harp_worker import HarpWorker
from tests.aio.helpers import run
from tests.harp.conftest import WAIT
from tests.server.harp.conftest import LiveServer


def admin_cancel(port: int, handle: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(b"cancel job " + handle + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(100)
            assert chunk, reply
            reply += chunk
    return reply


# -- plain Gearman jobs: admin cancel job ---------------------------------------------------------


def test_threaded_worker_learns_of_an_admin_cancel(live: LiveServer) -> None:
    w = gear.Worker("cancel-threaded", job_cancel=True)
    client = gear.Client("cancel-client")
    try:
        w.addServer("127.0.0.1", live.port)
        w.registerFunction("long")
        w.waitForServer(WAIT)
        client.addServer("127.0.0.1", live.port)
        client.waitForServer(WAIT)
        job = gear.Job("long", b"x")
        client.submitJob(job)
        running = w.getJob()
        assert not running.cancelled and not running.waitForCancel(0)
        assert admin_cancel(live.port, running.handle) == b"OK\r\n"
        assert running.waitForCancel(WAIT) and running.cancelled
        assert job.wait(WAIT) and job.failure  # the client's WORK_FAIL came from the cancel
        running.sendWorkFail()  # frees the server's job; nothing reaches the client
        # The worker goes on, and an uncancelled job is not flagged.
        second = gear.Job("long", b"y")
        client.submitJob(second)
        again = w.getJob()
        again.sendWorkComplete(b"done")
        assert second.wait(WAIT) and second.data == [b"done"] and not again.cancelled
        assert w._cancellable == {}  # ended jobs are not kept
    finally:
        client.shutdown()
        w.shutdown()


def test_aio_worker_learns_of_an_admin_cancel(live: LiveServer) -> None:
    async def main() -> None:
        worker = aio.Worker("cancel-aio")
        handles: asyncio.Queue[bytes] = asyncio.Queue()
        saw: list[bool] = []

        @worker.function("long")
        async def long(job: aio.WorkerJob) -> bytes:
            handles.put_nowait(job.handle)
            await asyncio.wait_for(job.cancel_event.wait(), WAIT)
            saw.append(job.cancelled)
            return b"late"  # dropped by the server: the job was cancelled

        @worker.function("quick")
        async def quick(job: aio.WorkerJob) -> bytes:
            return b"ok"

        worker.add_server("127.0.0.1", live.port)
        await worker.start(concurrency=2)
        await worker.wait_for_server(WAIT)
        try:
            async with aio.Client() as client:
                client.add_server("127.0.0.1", live.port)
                await client.wait_for_server(WAIT)
                job = await client.submit("long", b"x")
                handle = await asyncio.wait_for(handles.get(), WAIT)
                loop = asyncio.get_running_loop()
                reply = await loop.run_in_executor(None, admin_cancel, live.port, handle)
                assert reply == b"OK\r\n"
                with pytest.raises(JobFailedError):
                    await job.result(timeout=WAIT)
                assert await client.run("quick", b"", timeout=WAIT) == b"ok"
                assert saw == [True]
        finally:
            await worker.stop(drain=False)

    run(main())


# -- harp calls: cancel and max_exec_time, through the helpers -----------------------------------


def test_threaded_harp_worker_stops_a_generator_on_cancel_and_max_exec_time(
        live: LiveServer) -> None:
    w = gear.Worker("cancel-harp-threaded")  # the helper opts the worker in
    w.addServer("127.0.0.1", live.port)
    w.waitForServer(WAIT)
    hw = HarpWorker(w, "box")
    started, closed = threading.Semaphore(0), threading.Semaphore(0)
    polled: list[bool] = []

    @hw.procedure(pass_call=True)
    def ticker(call: HarpCall) -> Iterator[int]:
        try:
            for i in range(10_000):
                yield i
                if i == 0:
                    started.release()
                # Pace the stream by waiting for the cancel itself (no sleep): a long wait
                # that the cancel ends at once.
                call.job.waitForCancel(0.02)
        finally:
            closed.release()

    @hw.procedure(pass_call=True)
    def poller(call: HarpCall) -> str:  # a long plain function polls the flag
        started.release()
        polled.append(call.job.waitForCancel(WAIT) and call.cancelled)
        closed.release()
        return "stopped"

    @hw.procedure()
    def echo(x: int) -> int:
        return x

    hw.start(threads=2)
    try:
        rpc = harp.HarpCaller("127.0.0.1", live.harp_port, timeout=WAIT)
        call = rpc.box.ticker()
        assert started.acquire(timeout=WAIT)
        assert call.cancel() is True
        assert closed.acquire(timeout=WAIT)  # the generator was closed at its next yield
        assert call.result() is harp.CALL_CANCELLED
        limited = rpc.box(max_exec_time=0.3).ticker()
        assert started.acquire(timeout=WAIT)
        outcome = limited.result(wait=True)
        assert isinstance(outcome, harp.RemoteError) and outcome.type == "timeout"
        assert closed.acquire(timeout=WAIT)
        plain = rpc.box.poller()
        assert started.acquire(timeout=WAIT)
        assert plain.cancel() is True
        assert plain.result() is harp.CALL_CANCELLED
        assert closed.acquire(timeout=WAIT) and polled == [True]
        assert rpc.box.echo(5).get() == 5  # the worker goes on
    finally:
        hw.stop()
        w.shutdown()


def test_aio_harp_worker_stops_procedures_on_cancel_and_max_exec_time(live: LiveServer) -> None:
    async def main() -> None:
        worker = aio.Worker("cancel-harp-aio")
        worker.add_server("127.0.0.1", live.port)
        hw = aio.HarpWorker(worker, "web")
        started: asyncio.Queue[str] = asyncio.Queue()
        closed: asyncio.Queue[str] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        @hw.procedure()
        async def tail() -> AsyncIterator[int]:
            try:
                yield 0
                started.put_nowait("tail")
                await asyncio.sleep(WAIT * 3)  # interrupted by the cancel (cancel_task)
                yield 1
            finally:
                closed.put_nowait("tail")

        @hw.procedure()
        async def wait_long() -> str:
            try:
                started.put_nowait("wait_long")
                await asyncio.sleep(WAIT * 3)
                return "never"
            finally:
                closed.put_nowait("wait_long")

        @hw.procedure()
        def sync_gen() -> Iterator[int]:  # in the worker's thread pool
            try:
                for i in range(10_000):
                    yield i
                    if i == 0:
                        loop.call_soon_threadsafe(started.put_nowait, "sync_gen")
                    threading.Event().wait(0.02)
            finally:
                loop.call_soon_threadsafe(closed.put_nowait, "sync_gen")

        @hw.procedure()
        async def echo(x: int) -> int:
            return x

        await worker.start(concurrency=4)
        await worker.wait_for_server(WAIT)
        client = aio.HarpClient("127.0.0.1", live.harp_port, timeout=WAIT)
        try:
            for name in ("tail", "wait_long", "sync_gen"):
                job_id = await client.submit("web", name)
                assert await asyncio.wait_for(started.get(), WAIT) == name
                assert await client.cancel(job_id) is True
                assert await asyncio.wait_for(closed.get(), WAIT) == name
                assert await client.result(job_id) is harp.CALL_CANCELLED
            job_id = await client.submit("web", "tail", max_exec_time=0.3)
            assert await asyncio.wait_for(started.get(), WAIT) == "tail"
            assert await asyncio.wait_for(closed.get(), WAIT) == "tail"
            with pytest.raises(harp.RemoteError) as info:
                await client.get(job_id)
            assert info.value.type == "timeout"
            assert await client.get(await client.submit("web", "echo", 7)) == 7
            assert hw.running == {}
        finally:
            await worker.stop(drain=False)

    run(main(), timeout=60)
