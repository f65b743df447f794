"""What the aio Worker's grab cycle costs against real servers (gearmand and geard): GRABs per
job for one job at a time (the sleep probe: no GRAB that can only come back NO_JOB) and for a
deep queue (the slow start fills the window). docs/protocol.md §3.5, gear.protocol.worker."""

from __future__ import annotations

import asyncio

from gear import aio
from gear import constants as c
from gear.protocol.packets import request
from tests.aio.helpers import ServerUnderTest, client_for, run, worker_for

_GRAB = request(c.GRAB_JOB_UNIQ)


def test_grabs_per_job_one_at_a_time_and_for_a_deep_queue(server: ServerUnderTest) -> None:
    worker = aio.Worker(grab_window=8)
    deep_done = asyncio.Event()
    deep: list[bytes] = []

    @worker.function("echo")
    async def echo(job: aio.WorkerJob) -> bytes:
        return job.arguments

    async def deep_job(job: aio.WorkerJob) -> None:
        deep.append(job.arguments)
        if len(deep) == 300:
            deep_done.set()

    async def main() -> None:
        async with worker_for(server, worker, concurrency=16), client_for(server) as client:
            conn = worker._connections[0]
            grabs = 0
            most_in_flight = 0
            send = conn.send

            def counting_send(packet: bytes) -> None:
                nonlocal grabs, most_in_flight
                if packet == _GRAB:
                    grabs += 1
                    most_in_flight = max(most_in_flight, conn.session.outstanding)
                send(packet)

            conn.send = counting_send  # type: ignore[method-assign]
            for i in range(40):
                assert await client.run("echo", b"%d" % i) == b"%d" % i
            # Before the probe: 3 GRABs per job (two NO_JOB). Now about 1.1: the first job of
            # a wake-up is followed by PRE_SLEEP, and a wake-up answering it guesses that more
            # is queued (one more GRAB) less and less often while the guesses are wrong.
            assert grabs <= 40 * 1.25, grabs
            assert most_in_flight == 1

            # A deep queue: jobs of a function the worker does not have yet, then CAN_DO.
            for i in range(300):
                await client.submit("deep", b"%d" % i, background=True)
            grabs = most_in_flight = 0
            worker.register("deep", deep_job)
            await asyncio.wait_for(deep_done.wait(), 10)
            assert sorted(deep) == sorted(b"%d" % i for i in range(300))
            assert most_in_flight == 8  # the window filled
            # one per job, plus the probe's, plus those in flight when the queue ran dry
            assert grabs <= 300 + 1 + 8, grabs

    run(main())
