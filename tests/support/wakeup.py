"""The wake-up load of issue 15 (a), shared by a test and bench/stress_worker_wakeup.py.

Each round, ``threads`` threads call ``getJob`` on one shared ``gear.Worker`` exactly ``quota``
times each (sending WORK_COMPLETE for every job), while ``clients`` threads submit
``threads * quota`` background jobs between them. A round *stalls* when its jobs are not all
delivered within ``stall_after`` seconds: a job waits on the server while threads wait idle.
After a stall the round is finished by nudging the worker (so the run can go on and count).

:func:`run_aio_rounds` is the same load on one ``gear.aio.Worker`` with ``concurrency`` slots.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import gear
from gear import aio


@dataclass
class Result:
    rounds: int = 0
    stalls: int = 0
    #: Jobs not delivered when each stalled round was declared stalled.
    missing: list[int] = field(default_factory=list)


def run_rounds(
    host: str,
    port: int,
    rounds: int,
    threads: int = 4,
    quota: int = 25,
    clients: int = 2,
    stall_after: float = 5.0,
    function: str = "wakeup",
) -> Result:
    jobs = threads * quota
    worker = gear.Worker("wakeup-worker")
    worker.registerFunction(function)
    worker.addServer(host, port)
    submitters = []
    for i in range(clients):
        client = gear.Client(f"wakeup-client-{i}")
        client.addServer(host, port)
        submitters.append(client)
    result = Result()
    cond = threading.Condition()
    delivered = 0
    start = threading.Barrier(threads + clients + 1)
    end = threading.Barrier(threads + clients + 1)

    def all_in() -> bool:
        return delivered == jobs

    def take() -> None:
        nonlocal delivered
        for _ in range(rounds):
            start.wait()
            for _ in range(quota):
                job = worker.getJob()
                job.sendWorkComplete(b"")
                with cond:
                    delivered += 1
                    cond.notify_all()
            end.wait()

    def submit(client: gear.Client, count: int) -> None:
        for _ in range(rounds):
            start.wait()
            for _ in range(count):
                client.submitJob(gear.Job(function, b"x"), background=True)
            end.wait()

    try:
        worker.waitForServer(10)
        for client in submitters:
            client.waitForServer(10)
        pool = [threading.Thread(target=take, daemon=True) for _ in range(threads)]
        share = [jobs // clients + (1 if i < jobs % clients else 0) for i in range(clients)]
        pool += [threading.Thread(target=submit, args=(c, n), daemon=True)
                 for c, n in zip(submitters, share, strict=True)]
        for thread in pool:
            thread.start()
        for _ in range(rounds):
            with cond:
                delivered = 0
            start.wait()
            with cond:
                if not cond.wait_for(all_in, stall_after):
                    result.stalls += 1
                    result.missing.append(jobs - delivered)
            for _ in range(30):  # nudge until the round is done (it may stall again)
                with cond:
                    if delivered == jobs:
                        break
                with worker.job_lock:  # grab for the waiting threads
                    worker._updateStateMachines()
                with cond:
                    cond.wait_for(all_in, stall_after)
            else:
                raise AssertionError("no recovery")
            end.wait()
            result.rounds += 1
        for thread in pool:
            thread.join(10)
    finally:
        worker.shutdown()
        for client in submitters:
            client.shutdown()
    return result


def run_aio_rounds(
    host: str,
    port: int,
    rounds: int,
    concurrency: int = 4,
    jobs: int = 100,
    clients: int = 2,
    stall_after: float = 5.0,
    function: str = "wakeup-aio",
) -> Result:
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever, daemon=True)
    loop_thread.start()
    cond = threading.Condition()
    delivered = 0

    def all_in() -> bool:
        return delivered == jobs

    async def handler(job: aio.WorkerJob) -> bytes:
        nonlocal delivered
        with cond:
            delivered += 1
            cond.notify_all()
        return b""

    async def start() -> aio.Worker:
        worker = aio.Worker("wakeup-aio-worker")
        worker.register(function, handler)
        worker.add_server(host, port)
        await worker.start(concurrency)
        await worker.wait_for_server(10)
        return worker

    worker = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    submitters = []
    for i in range(clients):
        client = gear.Client(f"wakeup-aio-client-{i}")
        client.addServer(host, port)
        client.waitForServer(10)
        submitters.append(client)
    result = Result()
    share = [jobs // clients + (1 if i < jobs % clients else 0) for i in range(clients)]
    try:
        for _ in range(rounds):
            with cond:
                delivered = 0
            senders = [
                threading.Thread(
                    target=lambda c=c, n=n: [
                        c.submitJob(gear.Job(function, b"x"), background=True) for _ in range(n)
                    ],
                    daemon=True,
                )
                for c, n in zip(submitters, share, strict=True)
            ]
            for thread in senders:
                thread.start()
            with cond:
                if not cond.wait_for(all_in, stall_after):
                    result.stalls += 1
                    result.missing.append(jobs - delivered)
                    assert cond.wait_for(all_in, 30), "no recovery"
            for thread in senders:
                thread.join(10)
            result.rounds += 1
    finally:
        asyncio.run_coroutine_threadsafe(worker.stop(drain=False), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join(10)
        loop.close()
        for client in submitters:
            client.shutdown()
    return result
