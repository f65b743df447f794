"""Helpers for the gear.aio tests: the servers under test, a loop runner, client/worker blocks.

:class:`GearmandUnderTest` (the real gearmand, Debian gearman-job-server) and
:class:`EmbeddedUnderTest` (``gear.Server``, our engine, embedded on port 0) both expose
``host``, ``port``, ``restart()`` (same port) and ``stop()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from gear import aio
from tests.support.peers import GearmandProcess

T = TypeVar("T")


class ServerUnderTest(Protocol):
    host: str
    port: int
    kind: str

    def restart(self) -> None: ...

    def stop(self) -> None: ...


class GearmandUnderTest:
    kind = "gearmand"

    def __init__(self) -> None:
        self.proc = GearmandProcess()
        self.host = self.proc.host
        self.port = self.proc.port

    def restart(self) -> None:
        self.proc.restart()

    def stop(self) -> None:
        self.proc.stop()


class EmbeddedUnderTest:
    """``gear.Server`` in this process (its own loop in a thread), on 127.0.0.1 port 0."""

    kind = "geard"

    def __init__(self) -> None:
        import gear

        self.host = "127.0.0.1"
        self.server: Any = gear.Server(0, host=self.host)
        self.port = int(self.server.port)

    def restart(self) -> None:
        import gear

        self.server.shutdown()
        self.server = gear.Server(self.port, host=self.host)

    def stop(self) -> None:
        self.server.shutdown()


def run(coro: Awaitable[T], timeout: float = 20.0) -> T:
    """Run one test coroutine on a fresh loop, failing (not hanging) after ``timeout``."""

    async def main() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(main())


@asynccontextmanager
async def client_for(server: ServerUnderTest, **kwargs: Any) -> AsyncIterator[aio.Client]:
    async with aio.Client(client_id="test-client", **kwargs) as client:
        client.add_server(server.host, server.port)
        await client.wait_for_server(timeout=5)
        yield client


@asynccontextmanager
async def worker_for(
    server: ServerUnderTest | list[ServerUnderTest],
    worker: aio.Worker,
    concurrency: int = 4,
    drain: bool = False,
) -> AsyncIterator[aio.Worker]:
    """Run ``worker`` against ``server`` for the duration of the block; stop it afterwards."""
    for srv in server if isinstance(server, list) else [server]:
        worker.add_server(srv.host, srv.port)
    await worker.start(concurrency)
    await worker.wait_for_server(timeout=5)
    try:
        yield worker
    finally:
        await worker.stop(drain=drain, timeout=5)
