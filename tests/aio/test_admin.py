"""gear.aio.Admin: every command answered as parsed records from gear.protocol.messages."""

from __future__ import annotations

import asyncio
import os

import pytest

from gear import aio
from gear.errors import ServerError
from gear.protocol.admin import FunctionStatus, JobInfo, PriorityStatus
from tests.aio.helpers import ServerUnderTest, client_for, run, worker_for

pytestmark = pytest.mark.interop


def test_admin_commands_parse(server: ServerUnderTest) -> None:
    worker = aio.Worker(client_id="thumbnailer")

    @worker.function("served")
    async def served(job: aio.WorkerJob) -> bytes:
        return b""

    async def main() -> None:
        async with worker_for(server, worker), client_for(server) as client, \
                aio.Admin(server.host, server.port) as admin:
            await client.echo(timeout=5)
            # queued jobs for a function without workers, one per priority (plus one more HIGH)
            handles = []
            for priority in (aio.HIGH, aio.HIGH, aio.NORMAL, aio.LOW):
                job = await client.submit("queued", b"", unique=f"u{priority}-{len(handles)}",
                                          background=True, priority=priority)
                handles.append(job.handle)

            version, pid = await asyncio.gather(admin.version(), admin.getpid())
            assert version and version[0].isdigit()
            if server.kind == "gearmand":
                assert pid == server.proc.proc.pid  # type: ignore[attr-defined]
            else:
                assert pid == os.getpid()

            status = {s.name: s for s in await admin.status()}
            assert status[b"queued"] == FunctionStatus(b"queued", 4, 0, 0)
            assert status[b"queued"].queued == 4
            assert status[b"served"].workers == 1

            prio = {p.name: p for p in await admin.prioritystatus()}
            assert prio[b"queued"] == PriorityStatus(b"queued", 2, 1, 1, 0)

            workers = {w.client_id: w for w in await admin.workers()}
            assert workers[b"thumbnailer"].functions == (b"served",)
            assert workers[b"thumbnailer"].address == b"127.0.0.1"

            jobs = {j.handle: j for j in await admin.show_jobs()}
            assert jobs[handles[0]] == JobInfo(handles[0], 0, False, True)
            uniques = await admin.show_unique_jobs()
            assert sorted(u for u in uniques if u.startswith(b"u")) == sorted(
                [b"u2-0", b"u2-1", b"u0-2", b"u1-3"]
            )

            await admin.cancel_job(handles[0])
            with pytest.raises(ServerError) as info:
                await admin.cancel_job(b"H:no:such")
            assert info.value.code == b"UNKNOWN_JOB"

            await admin.create_function("made")
            assert b"made" in {s.name for s in await admin.status()}
            await admin.maxqueue("made", high=5, normal=1)
            await client.submit("made", background=True)
            with pytest.raises(ServerError):
                await client.submit("made", background=True)
            await admin.maxqueue("made")  # unlimited again
            await client.submit("made", background=True)
            with pytest.raises(ServerError):
                await admin.drop_function("served")  # a worker is registered
            await admin.create_function("gone")
            await admin.drop_function("gone")
            assert b"gone" not in {s.name for s in await admin.status()}
            with pytest.raises(ServerError):
                await admin.drop_function("gone")

    run(main())
