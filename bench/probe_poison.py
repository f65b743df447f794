"""Probe: dying workers beside normal ones, geard (requeue to the front or the tail) vs gearmand.

Usage: ``python3 bench/probe_poison.py [--jobs 2000] [--dying 4] [--good 2] [--retries 5]
[--poison 0] [--repeat 1] [--limit 120]``

A client submits ``--jobs`` foreground jobs of one function in one burst. ``--good`` workers
complete every job they get; ``--dying`` workers grab a job and close their connection without
a result, then reconnect and do it again (a crashing deployment). With ``--poison N`` the
burst starts with N poison jobs instead, which make *any* worker that takes one close its
connection and reconnect (use it with ``--dying 0``). Each job ends with WORK_COMPLETE, or
WORK_FAIL once its attempts are used up. The figure is the time from the first grab until
every normal job has ended, with how many failed, for each server:

* geard with a requeued job put back at the front of its queue, and at its tail, each with
  ``-j N`` and ``-j 0`` (broker subclasses run only here force the position; geard itself
  uses the front with ``-j N`` and the tail with ``-j 0``, docs/semantics.md);
* gearmand 1.1 (tail requeue) with ``-j N`` and with its default ``-j 0``.

All servers keep jobs in memory. Not a test: nothing is asserted, and absolute times drift on
a shared machine, so compare the rows of one run. ``--serve`` is internal (the geard child).
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.support.peers import GearmandProcess, listening_ports, wait_for  # noqa: E402

from gear import constants as c  # noqa: E402
from gear.protocol.packets import request  # noqa: E402

FUNCTION = b"probe"


# -- the geard child ---------------------------------------------------------------------------


def serve(mode: str, retries: int) -> None:
    """Run an in-memory geard on a free port until killed (the port is read from /proc)."""
    from gear.server.broker import Broker, BrokerConfig, Job, JobState
    from gear.server.config import ServerConfig
    from gear.server.engine import JobServer

    class TailBroker(Broker):
        """Always requeues to the tail of the queue, as gearmand does."""

        def _requeue(self, job: Job) -> None:
            super()._requeue(job)
            queue = job.function.queues[job.priority]
            if job.state is JobState.QUEUED and len(queue) > 1 and queue[0] is job:
                queue.popleft()
                self._seq += 1
                job.seq = self._seq
                queue.append(job)

    class FrontBroker(Broker):
        """Always requeues to the front of the queue (geard's choice with finite retries)."""

        def _requeue(self, job: Job) -> None:
            super()._requeue(job)
            queue = job.function.queues[job.priority]
            if job.state is JobState.QUEUED and len(queue) > 1 and queue[-1] is job:
                queue.pop()
                self._front -= 1
                job.seq = self._front
                queue.appendleft(job)

    async def main() -> None:
        server = JobServer(ServerConfig(host="127.0.0.1", port=0, queue="memory"),
                           BrokerConfig(job_retries=retries),
                           broker_class={"tail": TailBroker, "front": FrontBroker}[mode])
        await server.start()
        await server.wait_closed()

    asyncio.run(main())


class GeardChild:
    """``probe_poison.py --serve`` as a child process."""

    def __init__(self, mode: str, retries: int) -> None:
        args = [sys.executable, __file__, "--serve", mode, "--retries", str(retries)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.port = wait_for(lambda: (listening_ports(self.proc.pid) or [None])[0],
                                 timeout=60, what="geard to listen")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# -- the load ----------------------------------------------------------------------------------


async def read(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    _magic, ptype, size = struct.unpack("!4sII", await reader.readexactly(12))
    return ptype, await reader.readexactly(size)


async def worker(port: int, dying: bool, stop: asyncio.Event, counts: dict[str, int]) -> None:
    """Grab jobs until ``stop``: complete each one, or (dying, or a poison job) close and
    reconnect."""
    while not stop.is_set():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request(c.CAN_DO, FUNCTION) + request(c.GRAB_JOB))
        try:
            while not stop.is_set():
                ptype, body = await read(reader)
                if ptype == c.JOB_ASSIGN:
                    if dying or body.endswith(b"\x00poison"):
                        counts["deaths"] += 1
                        break
                    handle = body.split(b"\x00", 1)[0]
                    writer.write(request(c.WORK_COMPLETE, handle, b"") + request(c.GRAB_JOB))
                elif ptype == c.NO_JOB:
                    writer.write(request(c.PRE_SLEEP))
                elif ptype == c.NOOP:
                    writer.write(request(c.GRAB_JOB))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def run_load(port: int, jobs: int, dying: int, good: int, poison: int,
                   limit: float) -> tuple[float, int, int, int]:
    """(seconds until every normal job ended or ``limit``, normal jobs failed, normal jobs
    ended, worker deaths)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(request(c.SUBMIT_JOB, FUNCTION, b"", b"poison")
                          for i in range(poison))
                 + b"".join(request(c.SUBMIT_JOB, FUNCTION, b"", b"%d" % i)
                            for i in range(jobs)))
    poisoned: set[bytes] = set()
    for i in range(poison + jobs):
        ptype, body = await read(reader)
        assert ptype == c.JOB_CREATED, ptype
        if i < poison:
            poisoned.add(body)
    stop = asyncio.Event()
    counts = {"deaths": 0}
    began = time.perf_counter()
    tasks = [asyncio.create_task(worker(port, i < dying, stop, counts))
             for i in range(dying + good)]
    failed = ended = 0
    deadline = began + limit
    try:
        while ended < jobs:
            ptype, body = await asyncio.wait_for(read(reader),
                                                 max(0.0, deadline - time.perf_counter()))
            if body in poisoned:
                continue
            failed += ptype == c.WORK_FAIL
            ended += 1
    except TimeoutError:
        pass
    took = time.perf_counter() - began
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    writer.close()
    return took, failed, ended, counts["deaths"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--dying", type=int, default=4)
    parser.add_argument("--good", type=int, default=2)
    parser.add_argument("--retries", type=int, default=5)
    parser.add_argument("--poison", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per row (the median)")
    parser.add_argument("--limit", type=float, default=120.0,
                        help="give up on a server after this many seconds")
    parser.add_argument("--serve", choices=("front", "tail"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.retries)
        return
    n = args.retries
    rows: list[tuple[str, object]] = [
        (f"geard, front requeue, -j {n}", lambda: GeardChild("front", n)),
        (f"geard, tail requeue,  -j {n}", lambda: GeardChild("tail", n)),
        ("geard, front requeue, -j 0", lambda: GeardChild("front", 0)),
        ("geard, tail requeue,  -j 0", lambda: GeardChild("tail", 0)),
        (f"gearmand (tail),      -j {n}", lambda: GearmandProcess(f"--job-retries={n}")),
        ("gearmand (tail),      -j 0", lambda: GearmandProcess()),
    ]
    print(f"{args.jobs} foreground jobs, {args.poison} poison jobs first, {args.dying} dying + "
          f"{args.good} good workers; median of {args.repeat} run(s)")
    for name, start in rows:
        runs = []
        for _ in range(args.repeat):
            server = start()  # type: ignore[operator]
            try:
                runs.append(asyncio.run(run_load(
                    server.port, args.jobs, args.dying, args.good, args.poison, args.limit)))
            finally:
                server.stop()
        runs.sort()
        took, failed, ended, deaths = runs[len(runs) // 2]
        unfinished = f" ({args.jobs - ended} NOT ended: gave up)" if ended < args.jobs else ""
        spread = f" (runs: {', '.join(f'{r[0] * 1000:.0f}' for r in runs)} ms)"
        print(f"{name}: {took * 1000:8.0f} ms to end every normal job, {failed:5d} failed, "
              f"{deaths:6d} worker deaths{unfinished}{spread if len(runs) > 1 else ''}",
              flush=True)

if __name__ == "__main__":
    main()
