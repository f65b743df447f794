"""The asyncio flavour: :class:`gear.aio.HarpClient` against a live geard, with procedures served
by :class:`gear.aio.HarpWorker` (coroutines, async generators, and plain functions and
generators in the worker's thread pool)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

import gear.harp as harp
from gear import aio
from tests.harp.conftest import WAIT
from tests.server.harp.conftest import LiveServer


class AioProcedures:
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.closed = asyncio.Event()
        self.thread_names: list[str] = []

    async def echo(self, *args: Any) -> list[Any]:
        return list(args)

    async def tail(self, n: int) -> AsyncIterator[dict[str, int]]:
        for i in range(n):
            yield {"line": i}

    async def slow_tail(self) -> AsyncIterator[int]:
        try:
            yield 0
            self.started.set()
            await asyncio.wait_for(self.gate.wait(), WAIT)
            yield 1
            yield 2
        finally:
            self.closed.set()

    async def fail(self) -> None:
        raise harp.RemoteException("aio_type", "aio message", [1])

    async def fail_in_stream(self) -> AsyncIterator[int]:
        yield 1
        raise KeyError("gone")

    def plain(self, a: int, b: int) -> int:
        self.thread_names.append(threading.current_thread().name)
        return a + b

    def plain_gen(self, n: int) -> Iterator[str]:
        for i in range(n):
            yield f"m{i}"
        return "plain done"  # type: ignore[return-value]


async def _with_worker(live: LiveServer, body: Callable[[aio.HarpClient, AioProcedures,
                                                          aio.HarpWorker], Awaitable[None]]
                       ) -> None:
    procs = AioProcedures()
    worker = aio.Worker("harp-aio")
    worker.add_server("127.0.0.1", live.port)
    hw = aio.HarpWorker(worker, "web01")
    for name in ("echo", "tail", "fail", "fail_in_stream", "plain", "plain_gen"):
        hw.register(name, getattr(procs, name))
    hw.register("slow_tail", procs.slow_tail)
    await worker.start(concurrency=4)
    await worker.wait_for_server(WAIT)
    try:
        await body(aio.HarpClient("127.0.0.1", live.harp_port, timeout=WAIT), procs, hw)
    finally:
        procs.gate.set()
        await worker.stop(drain=False)


def run(live: LiveServer, body: Callable[..., Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(_with_worker(live, body), 60))


def test_submit_result_follow(live: LiveServer) -> None:
    async def body(client: aio.HarpClient, procs: AioProcedures, hw: aio.HarpWorker) -> None:
        job_id = await client.submit("web01", "echo", 1, "x", info={"k": "v"})
        assert await client.get(job_id) == [1, "x"]
        assert await client.result(job_id, wait=False) == [1, "x"]
        status = await client.status(job_id)
        assert (status.host, status.procedure, status.arguments, status.info) == (
            "web01", "echo", [1, "x"], {"k": "v"})
        assert status.submit is not None and status.submit <= status.start <= status.end

        job_id = await client.submit("web01", "tail", 3)
        assert [m async for m in client.follow(job_id, since=0)] == [
            {"line": 0}, {"line": 1}, {"line": 2}]
        assert [m async for m in client.follow(job_id, recent=1, numbered=True)] == [
            (2, {"line": 2})]
        assert [m async for m in client.stream(job_id, since=1)] == [{"line": 1}, {"line": 2}]
        assert await client.get(job_id) is None  # an async generator's result is null

        job_id = await client.submit("web01", "plain", kwargs={"a": 2, "b": 3})
        assert await client.get(job_id) == 5
        assert procs.thread_names and procs.thread_names[0] != threading.main_thread().name
        job_id = await client.submit("web01", "plain_gen", 2)
        assert [m async for m in client.follow(job_id, since=0)] == ["m0", "m1"]
        assert await client.get(job_id) == "plain done"
    run(live, body)


def test_live_follow_and_cancel(live: LiveServer) -> None:
    async def body(client: aio.HarpClient, procs: AioProcedures, hw: aio.HarpWorker) -> None:
        job_id = await client.submit("web01", "slow_tail")
        follow = client.follow(job_id, since=0, numbered=True)
        assert await follow.__anext__() == (0, 0)
        await procs.started.wait()
        assert await client.result(job_id, wait=False) is harp.CALL_NOT_FINISHED
        assert [m async for m in client.stream(job_id)] == [0]
        procs.gate.set()
        assert [m async for m in follow] == [(1, 1), (2, 2)]
        assert await client.get(job_id) is None

        procs.gate.clear()
        procs.started.clear()
        job_id = await client.submit("web01", "slow_tail")
        await procs.started.wait()
        (call,) = hw.running.values()
        assert call.job_id == job_id and (call.host, call.procedure) == ("web01", "slow_tail")
        assert await client.cancel(job_id) is True
        assert await client.result(job_id) is harp.CALL_CANCELLED
        with pytest.raises(harp.CancelledException):
            await client.get(job_id)
        assert await client.cancel(job_id) is False
        # The cancel reaches the worker (JOB_CANCEL, docs/protocol.md §1.7): the async
        # generator's task is cancelled in its wait (the gate stays shut) and the generator
        # closed; nothing more is stored.
        await asyncio.wait_for(procs.closed.wait(), WAIT)
        assert call.cancelled and call.job.cancelled and not procs.gate.is_set()
        assert [m async for m in client.stream(job_id)] == [0]
        assert await client.get(await client.submit("web01", "echo", 1)) == [1]  # worker goes on
    run(live, body)


def test_exceptions_and_errors(live: LiveServer) -> None:
    async def body(client: aio.HarpClient, procs: AioProcedures, hw: aio.HarpWorker) -> None:
        job_id = await client.submit("web01", "fail")
        with pytest.raises(harp.RemoteException) as info:
            await client.get(job_id)
        assert (info.value.type, info.value.message, info.value.data) == (
            "aio_type", "aio message", [1])
        job_id = await client.submit("web01", "fail_in_stream")
        outcome = await client.result(job_id)
        assert isinstance(outcome, harp.RemoteException) and outcome.type == "KeyError"
        assert [m async for m in client.stream(job_id)] == [1]
        unknown = "3f22e0d4-c8ed-11e5-8d66-001e8c140268"
        with pytest.raises(harp.RemoteError) as err:
            await client.status(unknown)
        assert err.value.type == "invalid_jobid"
        with pytest.raises(harp.RemoteError):
            [m async for m in client.follow(unknown)]
        with pytest.raises(harp.RemoteError) as err:
            await client.submit("web01", "echo", queue="not an object")
        assert err.value.type == "invalid_request"
    run(live, body)


def test_refused_is_communication_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> None:
        client = aio.HarpClient("127.0.0.1", port, timeout=WAIT)
        with pytest.raises(harp.CommunicationError):
            await client.submit("h", "p")
        assert isinstance(await client.result("3f22e0d4-c8ed-11e5-8d66-001e8c140268"),
                          harp.CommunicationError)
    asyncio.run(main())
