"""The aio Client packet by packet against a scripted fake server: set-up on every (re)connect,
reply matching in order, the NUL-terminated WORK_FAIL gearmand sends, and connection loss."""

from __future__ import annotations

import asyncio

import pytest

from gear import aio
from gear import constants as c
from gear.errors import ConnectionError, JobFailedError, ServerError
from tests.aio.fake import fake_server
from tests.aio.helpers import run


def test_options_on_every_connect_and_in_order_replies() -> None:
    async def main() -> None:
        async with fake_server() as server, aio.Client(
            client_id="cid", reconnect_min=0.01, reconnect_max=0.05
        ) as client:
            client.add_server("127.0.0.1", server.port)
            await client.wait_for_server(5)
            assert (await server.expect(c.SET_CLIENT_ID)).body == b"cid"
            assert (await server.expect(c.OPTION_REQ)).body == b"exceptions"
            server.send(c.OPTION_RES, b"exceptions")

            # three submissions pipelined; the second is refused: replies match in send order
            tasks = [asyncio.create_task(client.submit("fn", b"%d" % i)) for i in range(3)]
            for i in range(3):
                frame = await server.expect(c.SUBMIT_JOB)
                assert frame.args() == [b"fn", b"", b"%d" % i]
            server.send(c.JOB_CREATED, b"H:1")
            server.send(c.ERROR, b"QUEUE_ERROR", b"Job queue is full")
            server.send(c.JOB_CREATED, b"H:3")
            first = await tasks[0]
            with pytest.raises(ServerError) as info:
                await tasks[1]
            assert (info.value.code, info.value.text) == (b"QUEUE_ERROR", b"Job queue is full")
            third = await tasks[2]
            assert (first.handle, third.handle) == (b"H:1", b"H:3")

            # gearmand turns WORK_EXCEPTION into `WORK_FAIL handle\0` for clients without the
            # option (docs/protocol.md §1.5); it must still fail the job, not hang it
            server.send(c.WORK_FAIL, b"H:1\x00")
            with pytest.raises(JobFailedError):
                await first.result(5)

            # losing the connection fails the job in flight, then the set-up is sent again
            server.drop()
            with pytest.raises(ConnectionError):
                await third.result(5)
            await server.expect(c.SET_CLIENT_ID)
            assert (await server.expect(c.OPTION_REQ)).body == b"exceptions"
            assert server.connections == 2

    run(main())


def test_background_unique_and_epoch_packets() -> None:
    async def main() -> None:
        async with fake_server() as server, aio.Client() as client:
            client.add_server("127.0.0.1", server.port)
            await client.wait_for_server(5)
            await server.expect(c.OPTION_REQ)
            task = asyncio.create_task(
                client.submit("fn", b"data", background=True, priority=aio.LOW)
            )
            frame = await server.expect(c.SUBMIT_JOB_LOW_BG)
            name, unique, data = frame.args()
            assert (name, data) == (b"fn", b"data") and len(unique) == 32
            server.send(c.OPTION_RES, b"exceptions")
            server.send(c.JOB_CREATED, b"H:7")
            job = await task
            assert job.unique == unique and job.done()

            task = asyncio.create_task(
                client.submit("fn", b"x", background=True, unique="mine", when=1700000000)
            )
            frame = await server.expect(c.SUBMIT_JOB_EPOCH)
            assert frame.args() == [b"fn", b"mine", b"1700000000", b"x"]
            server.send(c.JOB_CREATED, b"H:8")
            assert (await task).handle == b"H:8"

    run(main())
