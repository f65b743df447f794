"""libgearman peers: the `gearman` CLI as a client of our worker, and as a worker for our client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from gear import aio
from tests.aio.helpers import ServerUnderTest, client_for, run, worker_for
from tests.support.peers import require_tool

pytestmark = pytest.mark.interop


def test_gearman_cli_client_served_by_aio_worker(server: ServerUnderTest) -> None:
    gearman = require_tool("gearman")
    worker = aio.Worker()
    uniques: list[bytes] = []

    @worker.function("upper")
    async def upper(job: aio.WorkerJob) -> bytes:
        uniques.append(job.unique)
        await job.send_status(1, 2)
        return job.arguments.upper()

    async def main() -> None:
        async with worker_for(server, worker):
            proc = await asyncio.create_subprocess_exec(
                gearman, "-h", server.host, "-p", str(server.port), "-f", "upper",
                "hello", "world",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 10)
            assert proc.returncode == 0, err
            # results, and our WORK_STATUS as libgearman prints it
            assert b"HELLO" in out and b"WORLD" in out
            assert out.count(b"50% Complete\n") == 2

    run(main())
    # libgearman always sends a UUID unique (docs/protocol.md §1.3)
    assert len(uniques) == 2 and all(len(u) == 36 for u in uniques)


@contextlib.asynccontextmanager
async def cli_worker(server: ServerUnderTest, *command: str) -> AsyncIterator[None]:
    gearman = require_tool("gearman")
    proc = await asyncio.create_subprocess_exec(
        gearman, "-w", "-h", server.host, "-p", str(server.port), "-f", "shout", "--",
        *command,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.kill()
        await proc.wait()


def test_aio_client_served_by_gearman_cli_worker(server: ServerUnderTest) -> None:
    async def main() -> None:
        async with cli_worker(server, "tr", "a-z", "A-Z"), client_for(server) as client:
            results = await asyncio.gather(
                *(client.run("shout", f"job {i}\n", timeout=10) for i in range(3))
            )
            assert results == [f"JOB {i}\n".encode() for i in range(3)]
            job = await client.submit("shout", b"bg", background=True)
            assert len(job.unique) == 32

    run(main())


def test_gearman_cli_worker_failure_reaches_aio_client(server: ServerUnderTest) -> None:
    from gear.errors import JobFailedError

    async def main() -> None:
        async with cli_worker(server, "false"), client_for(server) as client:
            with pytest.raises(JobFailedError):
                await client.run("shout", b"x", timeout=10)

    run(main())
