"""gear.aio Client and Worker end to end against a real server (gearmand and our own)."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

import gear
from gear import aio
from gear.errors import (
    ConfigurationError,
    InvalidDataError,
    JobExceptionError,
    JobFailedError,
    NoConnectedServersError,
    ServerError,
    TimeoutError,
)
from tests.aio.helpers import (
    GearmandUnderTest,
    ServerUnderTest,
    client_for,
    run,
    worker_for,
)

pytestmark = pytest.mark.interop


def test_priorities_are_gears_precedence_values() -> None:
    assert (aio.HIGH, aio.NORMAL, aio.LOW) == (
        gear.PRECEDENCE_HIGH,
        gear.PRECEDENCE_NORMAL,
        gear.PRECEDENCE_LOW,
    )


def test_submit_and_result(server: ServerUnderTest) -> None:
    worker = aio.Worker(client_id="rev-worker")
    seen: list[tuple[bytes, bytes, bytes]] = []

    @worker.function("rev")
    async def rev(job: aio.WorkerJob) -> bytes:
        seen.append((job.name, job.unique, job.arguments))
        return job.arguments[::-1]

    async def main() -> None:
        async with worker_for(server, worker), client_for(server) as client:
            job = await client.submit("rev", b"hello\x00world")
            assert job.handle  # set by JOB_CREATED before submit returns
            assert await job.result(timeout=5) == b"dlrow\x00olleh"
            assert job.done() and not job.failed
            assert await client.run("rev", "abc", unique="u-1") == b"cba"
            # window of 50 concurrent submissions on one connection: replies matched in order
            results = await asyncio.gather(*(client.run("rev", b"%d" % i) for i in range(50)))
            assert results == [(b"%d" % i)[::-1] for i in range(50)]

    run(main())
    # foreground jobs without a unique send an empty one (no coalescing); given ones pass through
    assert seen[0] == (b"rev", b"", b"hello\x00world")
    assert seen[1] == (b"rev", b"u-1", b"abc")


def test_background_job_gets_a_generated_unique(server: ServerUnderTest) -> None:
    worker = aio.Worker()
    got: asyncio.Queue[aio.WorkerJob] | None = None

    @worker.function("bg")
    async def bg(job: aio.WorkerJob) -> None:
        assert got is not None
        got.put_nowait(job)

    async def main() -> None:
        nonlocal got
        got = asyncio.Queue()
        async with client_for(server) as client:
            job = await client.submit("bg", b"payload", background=True)
            assert job.done() and job.handle
            assert len(job.unique) == 32 and int(job.unique, 16) >= 0  # uuid4 hex
            with pytest.raises(ConfigurationError):
                await job.result()
            assert [u async for u in job.updates()] == []
            async with worker_for(server, worker):
                wjob = await asyncio.wait_for(got.get(), 5)
        assert wjob.unique == job.unique and wjob.handle == job.handle
        assert wjob.arguments == b"payload"

    run(main())


def test_priorities_high_normal_low_with_one_worker(server: ServerUnderTest) -> None:
    order: list[bytes] = []
    worker = aio.Worker()

    @worker.function("prio")
    async def prio(job: aio.WorkerJob) -> bytes:
        order.append(job.arguments)
        return job.arguments

    async def main() -> None:
        async with client_for(server) as client:
            jobs = []
            # queued before any worker exists, in the worst order
            for data, priority in [(b"low1", aio.LOW), (b"norm1", aio.NORMAL),
                                   (b"high1", aio.HIGH), (b"low2", aio.LOW),
                                   (b"norm2", aio.NORMAL), (b"high2", aio.HIGH)]:
                jobs.append(await client.submit("prio", data, priority=priority))
            async with worker_for(server, worker, concurrency=1):
                await asyncio.gather(*(job.result(5) for job in jobs))

    run(main())
    assert order == [b"high1", b"high2", b"norm1", b"norm2", b"low1", b"low2"]


def test_updates_stream_as_they_arrive(server: ServerUnderTest) -> None:
    worker = aio.Worker()
    step: asyncio.Event | None = None

    @worker.function("stream")
    async def stream(job: aio.WorkerJob) -> bytes:
        assert step is not None
        await job.send_data(b"chunk1")
        await step.wait()  # the client must have seen chunk1 before we go on
        step.clear()
        await job.send_warning(b"careful")
        await job.send_status(1, 2)
        await step.wait()
        await job.send_data(b"chunk2")
        return b"done"

    async def main() -> None:
        nonlocal step
        step = asyncio.Event()
        async with worker_for(server, worker), client_for(server) as client:
            job = await client.submit("stream", b"")
            updates = []
            async for update in job.updates():
                updates.append(update)
                if len(updates) in (1, 3):
                    assert not job.done()
                    step.set()
            assert updates == [
                aio.Update("data", b"chunk1"),
                aio.Update("warning", b"careful"),
                aio.Update("status", b"", 1, 2),
                aio.Update("data", b"chunk2"),
            ]
            assert await job.result(5) == b"done"
            assert (job.numerator, job.denominator) == (1, 2)
            assert job.data == [b"chunk1", b"chunk2"] and job.warnings == [b"careful"]
            # an iterator started after the end replays everything and ends
            assert len([u async for u in job.updates()]) == 4

    run(main())


def test_handler_exception_becomes_job_exception(server: ServerUnderTest) -> None:
    worker = aio.Worker()

    @worker.function("boom")
    async def boom(job: aio.WorkerJob) -> bytes:
        raise ValueError("no thumbnails today")

    @worker.function("boom_sync")
    def boom_sync(job: aio.WorkerJob) -> bytes:
        raise KeyError("sync")

    async def main() -> None:
        async with worker_for(server, worker), client_for(server) as client:
            with pytest.raises(JobExceptionError) as info:
                await client.run("boom", b"x", timeout=5)
            assert info.value.data == b"ValueError: no thumbnails today"
            assert isinstance(info.value, JobFailedError)
            with pytest.raises(JobExceptionError) as info:
                await client.run("boom_sync", b"x", timeout=5)
            assert info.value.data == b"KeyError: 'sync'"
            # the connection is still usable
            await client.echo(b"still here", timeout=5)

    run(main())


def test_work_fail(server: ServerUnderTest) -> None:
    worker = aio.Worker()

    @worker.function("fail")
    async def fail(job: aio.WorkerJob) -> bytes:
        await job.send_fail()
        return b"ignored"

    async def main() -> None:
        async with worker_for(server, worker), client_for(server) as client:
            job = await client.submit("fail")
            with pytest.raises(JobFailedError) as info:
                await job.result(5)
            assert not isinstance(info.value, JobExceptionError)
            assert info.value.handle == job.handle
            assert job.failed and job.error is info.value

    run(main())


def test_concurrency_never_exceeds_n_across_connections(
    server: ServerUnderTest,
) -> None:

    second = GearmandUnderTest()
    worker = aio.Worker()
    running = 0
    peak = 0

    @worker.function("slow")
    async def slow(job: aio.WorkerJob) -> bytes:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)  # simulated work, not synchronisation
        running -= 1
        return b"ok"

    async def main() -> None:
        async with worker_for([server, second], worker, concurrency=3), aio.Client() as client:
            client.add_server(server.host, server.port)
            client.add_server(second.host, second.port)
            await client.wait_for_server(5, all_servers=True)
            results = await asyncio.gather(*(client.run("slow", timeout=10) for _ in range(30)))
            assert results == [b"ok"] * 30

    try:
        run(main())
    finally:
        second.stop()
    assert peak == 3


def test_sync_handlers_run_in_threads_without_blocking_the_loop(server: ServerUnderTest) -> None:
    worker = aio.Worker()
    release = threading.Event()
    threads: set[int] = set()

    @worker.function("blocking")
    def blocking(job: aio.WorkerJob) -> bytes:
        threads.add(threading.get_ident())
        job.send_data(b"from thread")  # thread-safe without await
        assert release.wait(5)
        return b"unblocked"

    @worker.function("quick")
    async def quick(job: aio.WorkerJob) -> str:
        return "quick"

    async def main() -> None:
        async with worker_for(server, worker, concurrency=2), client_for(server) as client:
            slow_job = await client.submit("blocking")
            async for update in slow_job.updates():
                assert update.data == b"from thread"
                break
            # the loop is free: another job completes while the thread handler blocks
            assert await client.run("quick", timeout=5) == b"quick"
            assert not slow_job.done()
            release.set()
            assert await slow_job.result(5) == b"unblocked"

    run(main())
    assert threading.get_ident() not in threads


def test_stop_drains_running_jobs_and_grabs_no_more(server: ServerUnderTest) -> None:
    worker = aio.Worker()
    started: asyncio.Event | None = None
    release: asyncio.Event | None = None
    calls: list[bytes] = []

    @worker.function("drain")
    async def drain(job: aio.WorkerJob) -> bytes:
        assert started is not None and release is not None
        calls.append(job.arguments)
        started.set()
        await release.wait()
        return b"finished " + job.arguments

    async def main() -> None:
        nonlocal started, release
        started, release = asyncio.Event(), asyncio.Event()
        worker.add_server(server.host, server.port)
        async with client_for(server) as client, aio.Admin(server.host, server.port) as admin:
            run_task = asyncio.create_task(worker.run(concurrency=2))
            first = await client.submit("drain", b"first")
            await started.wait()
            stop_task = asyncio.create_task(worker.stop(drain=True, timeout=10))
            await asyncio.sleep(0)  # let stop() take effect before the next submission
            second = await client.submit("drain", b"second")
            await client.echo(timeout=5)  # the server has seen everything we sent
            assert not stop_task.done() and not first.done()
            release.set()
            assert await first.result(5) == b"finished first"
            await asyncio.wait_for(stop_task, 5)
            await asyncio.wait_for(run_task, 5)
            # the second job was never grabbed: still queued on the server
            assert calls == [b"first"]
            status = {s.name: s for s in await admin.status()}
            assert status[b"drain"].total == 1 and status[b"drain"].running == 0
            assert not second.done()

    run(main())


def test_stop_without_drain_cancels_and_server_requeues(server: ServerUnderTest) -> None:
    worker = aio.Worker()
    started: asyncio.Event | None = None
    cancelled = False

    @worker.function("hang")
    async def hang(job: aio.WorkerJob) -> bytes:
        nonlocal cancelled
        assert started is not None
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled = True
            raise
        return b""

    async def main() -> None:
        nonlocal started
        started = asyncio.Event()
        worker.add_server(server.host, server.port)
        async with client_for(server) as client:
            await worker.start(1)
            job = await client.submit("hang", background=True)
            await started.wait()
            await worker.stop(drain=False)
            assert cancelled
            # re-queued on the server: a new worker gets it
            again = aio.Worker()
            got = asyncio.Event()

            @again.function("hang")
            async def hang2(wjob: aio.WorkerJob) -> None:
                assert wjob.handle == job.handle
                got.set()

            async with worker_for(server, again):
                await asyncio.wait_for(got.wait(), 5)

    run(main())


def test_cancelling_a_result_wait_leaves_the_connection_usable(server: ServerUnderTest) -> None:
    worker = aio.Worker()
    release: asyncio.Event | None = None

    @worker.function("wait")
    async def wait(job: aio.WorkerJob) -> bytes:
        assert release is not None
        await release.wait()
        return b"late"

    @worker.function("echo")
    async def echo(job: aio.WorkerJob) -> bytes:
        return job.arguments

    async def main() -> None:
        nonlocal release
        release = asyncio.Event()
        async with worker_for(server, worker), client_for(server) as client:
            job = await client.submit("wait")
            waiter = asyncio.create_task(job.result())
            await asyncio.sleep(0)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            with pytest.raises(TimeoutError):
                await job.result(timeout=0.01)
            assert await client.run("echo", b"works", timeout=5) == b"works"
            release.set()
            assert await job.result(5) == b"late"  # the job itself was never cancelled
            # a cancelled submit does not desynchronise JOB_CREATED matching either
            submit = asyncio.create_task(client.submit("echo", b"abandoned"))
            await asyncio.sleep(0)
            submit.cancel()
            results = await asyncio.gather(*(client.run("echo", b"%d" % i) for i in range(5)))
            assert results == [b"%d" % i for i in range(5)]

    run(main())


def test_coalescing_same_unique_gives_both_results(server: ServerUnderTest) -> None:
    worker = aio.Worker()
    release: asyncio.Event | None = None
    started: asyncio.Event | None = None
    calls = 0

    @worker.function("co")
    async def co(job: aio.WorkerJob) -> bytes:
        nonlocal calls
        assert release is not None and started is not None
        calls += 1
        started.set()
        await release.wait()
        await job.send_data(b"d")
        return b"shared"

    async def main() -> None:
        nonlocal release, started
        release, started = asyncio.Event(), asyncio.Event()
        async with worker_for(server, worker), client_for(server) as one, \
                client_for(server) as two:
            a = await one.submit("co", b"1", unique="same")
            await started.wait()
            b = await one.submit("co", b"2", unique="same")  # same connection
            c = await two.submit("co", b"3", unique="same")  # another connection
            assert a.handle == b.handle == c.handle
            release.set()
            assert [await j.result(5) for j in (a, b, c)] == [b"shared"] * 3
            assert a.data == b.data == c.data == [b"d"]  # every job got every update once

    run(main())
    assert calls == 1


def test_get_status_by_handle_and_by_unique(server: ServerUnderTest) -> None:
    worker = aio.Worker()
    release: asyncio.Event | None = None

    @worker.function("progress")
    async def progress(job: aio.WorkerJob) -> bytes:
        assert release is not None
        await job.send_status(1, 4)
        await release.wait()
        return b""

    async def main() -> None:
        nonlocal release
        release = asyncio.Event()
        async with worker_for(server, worker), client_for(server) as client:
            job = await client.submit("progress", unique="status-u")
            async for update in job.updates():
                assert update.kind == "status"
                break
            status = await client.get_status(job)
            assert (status.handle, status.known, status.running) == (job.handle, True, True)
            assert (status.numerator, status.denominator) == (1, 4)
            assert status.fraction_complete == 0.25
            assert job.handle is not None
            assert (await client.get_status(job.handle.decode())).known
            by_unique = await client.get_status(unique="status-u")
            assert by_unique.known and by_unique.running and by_unique.client_count == 1
            release.set()
            await job.result(5)
            assert not (await client.get_status(job)).known
            assert not (await client.get_status(unique="nope")).known

    run(main())


def test_server_error_reply_and_local_validation(server: ServerUnderTest) -> None:
    async def main() -> None:
        async with client_for(server) as client, aio.Admin(server.host, server.port) as admin:
            await admin.create_function("limited")
            await admin.maxqueue("limited", 1)
            await client.submit("limited", background=True)
            with pytest.raises(ServerError) as info:
                await client.submit("limited", background=True)
            assert info.value.code == b"QUEUE_ERROR"
            # the ERROR answered that submission only: the next request still lines up
            await client.echo(timeout=5)
            with pytest.raises(InvalidDataError):
                await client.submit("x", unique="u" * 64)
            with pytest.raises(ConfigurationError):
                await client.submit("x", priority=7)

    run(main())


def test_epoch_job_runs(server: ServerUnderTest) -> None:
    worker = aio.Worker()
    got: asyncio.Event | None = None

    @worker.function("later")
    async def later(job: aio.WorkerJob) -> None:
        assert got is not None
        got.set()

    async def main() -> None:
        nonlocal got
        got = asyncio.Event()
        async with worker_for(server, worker), client_for(server) as client:
            import time

            job = await client.submit("later", background=True, when=int(time.time()) - 1)
            assert job.handle
            await asyncio.wait_for(got.wait(), 5)

    run(main())


def test_no_server_errors() -> None:
    async def main() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # bound but not listening: connections are refused
            async with aio.Client() as client:
                with pytest.raises(NoConnectedServersError):
                    await client.wait_for_server()
                client.add_server("127.0.0.1", port)
                with pytest.raises(TimeoutError) as info:
                    await client.wait_for_server(timeout=0.2)
                assert "refused" in str(info.value).lower() or "connect" in str(info.value)
                with pytest.raises(NoConnectedServersError):
                    await client.submit("fn", b"x")

    run(main())


def test_socket_options(server: ServerUnderTest) -> None:
    async def main() -> None:
        async with aio.Client() as client:
            client.add_server(server.host, server.port, keepalive=True, tcp_keepidle=30,
                              tcp_keepintvl=5, tcp_keepcnt=3)
            await client.wait_for_server(5)
            protocol = client._connections[0].link.protocol
            assert protocol is not None and protocol.transport is not None
            sock = protocol.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3

    run(main())


def test_runs_on_uvloop(server: ServerUnderTest) -> None:
    uvloop = pytest.importorskip("uvloop", reason="the optional `uvloop` extra is not installed")
    worker = aio.Worker()

    @worker.function("uv")
    async def uv(job: aio.WorkerJob) -> bytes:
        await job.send_data(b"d")
        return job.arguments * 2

    async def main() -> None:
        async with worker_for(server, worker), client_for(server) as client:
            job = await client.submit("uv", b"ab")
            assert await job.result(5) == b"abab" and job.data == [b"d"]

    uvloop.run(asyncio.wait_for(main(), 20))


def test_grab_job_all_worker(server: ServerUnderTest) -> None:
    worker = aio.Worker(grab="all")
    seen: list[bytes] = []

    @worker.function("all")
    async def all_fn(job: aio.WorkerJob) -> bytes:
        seen.append(job.unique)
        return b"ok"

    async def main() -> None:
        async with worker_for(server, worker), client_for(server) as client:
            assert await client.run("all", unique="via-grab-all", timeout=5) == b"ok"

    run(main())
    # GRAB_JOB_ALL is answered with JOB_ASSIGN_UNIQ for jobs without a reducer (1.4 #39)
    assert seen == [b"via-grab-all"]


def test_large_payloads_and_many_updates(server: ServerUnderTest) -> None:
    worker = aio.Worker()
    chunk = bytes(range(256)) * 256  # 64 KiB

    @worker.function("big")
    async def big(job: aio.WorkerJob) -> bytes:
        for _ in range(64):  # 4 MiB of WORK_DATA, awaiting flow control
            await job.send_data(chunk)
        return job.arguments[::-1]

    async def main() -> None:
        arguments = bytes(range(256)) * 4096  # 1 MiB each way
        async with worker_for(server, worker), client_for(server) as client:
            job = await client.submit("big", arguments)
            received = [update.data async for update in job.updates()]
            assert await job.result(10) == arguments[::-1]
            assert received == [chunk] * 64

    run(main(), timeout=30)


def test_dash_unique_coalesces_on_the_workload(server: ServerUnderTest) -> None:
    worker = aio.Worker()
    release: asyncio.Event | None = None
    calls: list[bytes] = []

    @worker.function("dash")
    async def dash(job: aio.WorkerJob) -> bytes:
        assert release is not None
        calls.append(job.arguments)
        await release.wait()
        return job.arguments.upper()

    async def main() -> None:
        nonlocal release
        release = asyncio.Event()
        async with worker_for(server, worker), client_for(server) as client:
            a = await client.submit("dash", b"same", unique="-")
            b = await client.submit("dash", b"same", unique="-")
            c = await client.submit("dash", b"other", unique="-")
            assert a.handle == b.handle != c.handle
            release.set()
            assert [await j.result(5) for j in (a, b, c)] == [b"SAME", b"SAME", b"OTHER"]

    run(main())
    assert sorted(calls) == [b"other", b"same"]
