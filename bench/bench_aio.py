"""Foreground end-to-end throughput: gear.aio vs the threaded gear API vs libgearman's CLI.

Usage: ``python3 bench/bench_aio.py [--jobs N] [--window-jobs N] [--rounds N] [--quick]``
(``--quick``: only the window-1 aio, threaded and cross pairs, to check per-job latency).

One gearmand (Debian gearman-job-server, ``--threads=0`` like the test fixture) serves every run.
Each run uses its own function name, one worker *process* and a client in this process, and
measures submit -> WORK_COMPLETE for foreground jobs with a small payload (echoed back):

* window 1: one job in flight at a time (latency bound);
* window 100: the client keeps 100 jobs in flight.

Pairs measured (client <- worker):

* aio Client <- aio Worker (concurrency = window, one connection; and concurrency 4 at window 100)
* threaded gear.Client <- threaded gear.Worker (window 1: one worker thread; window 100: four
  threads, each its own gear.Worker, since a gear Worker runs one job at a time). gear.Client
  blocks in submitJob until JOB_CREATED, so its window is filled by one thread submitting and
  completions counted in handleWorkComplete.
* aio Client <- ``gearman -w -f fn`` (libgearman worker: writes each workload to its stdout,
  returns an empty WORK_COMPLETE; one job at a time)
* ``gearman -n -f fn`` (libgearman client: one synchronous job per stdin line, window 1 only)
  <- aio Worker and <- ``gearman -w``
* cross pairs (aio client <- threaded worker and the reverse) to see which side is faster
* the aio pair on uvloop (``uvloop`` extra), when it is installed

Absolute rates drift on shared machines: compare the ratios printed at the end, measured in the
same run. Not a test: nothing is asserted. Must stay under ~2 minutes with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.support.peers import GearmandProcess  # noqa: E402

from gear import aio  # noqa: E402
from rounds import Rates, end_process  # noqa: E402

PAYLOAD = b"x" * 32
Run = tuple[str, str, int, int]  # client kind, worker kind, window, worker slots


# --- worker processes ----------------------------------------------------------------------


def _asyncio_run(main: Any, use_uvloop: bool) -> Any:
    if use_uvloop:
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def serve_aio(port: int, function: str, concurrency: int, use_uvloop: bool = False) -> None:
    async def main() -> None:
        worker = aio.Worker(client_id="bench-aio")

        @worker.function(function)
        async def echo(job: aio.WorkerJob) -> bytes:
            return job.arguments

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(worker.stop(False)))
        worker.add_server("127.0.0.1", port)
        await worker.run(concurrency)

    _asyncio_run(main(), use_uvloop)


def serve_threaded(port: int, function: str, threads: int) -> None:
    import gear

    def loop() -> None:
        worker = gear.Worker("bench-threaded")
        worker.addServer("127.0.0.1", port)
        worker.registerFunction(function)
        while True:
            job = worker.getJob()
            job.sendWorkComplete(job.arguments)

    for _ in range(threads):
        threading.Thread(target=loop, daemon=True).start()
    signal.sigwait({signal.SIGTERM})


@contextmanager
def worker_process(kind: str, port: int, function: str, slots: int) -> Iterator[None]:
    if kind == "gearman":
        cmd = [shutil.which("gearman") or "gearman", "-w", "-h", "127.0.0.1", "-p", str(port),
               "-f", function]
    else:
        cmd = [sys.executable, __file__, "--serve", kind, "--port", str(port),
               "--function", function, "--slots", str(slots)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_registered(port, function, 4 if kind == "threaded" and slots > 1 else 1, proc)
        yield
    finally:
        end_process(proc)


def wait_registered(port: int, function: str, workers: int, proc: subprocess.Popen[bytes]) -> None:
    """Poll the server (another process) until the worker process has registered."""

    async def check() -> None:
        async with aio.Admin("127.0.0.1", port) as admin:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    raise RuntimeError(f"worker exited with {proc.returncode}: {err[-300:]}")
                for status in await admin.status():
                    if status.name == function.encode() and status.workers >= workers:
                        return
                await asyncio.sleep(0.02)
        raise RuntimeError(f"worker for {function} did not register")

    asyncio.run(check())


# --- clients -------------------------------------------------------------------------------


def client_aio(
    port: int, function: str, jobs: int, window: int, use_uvloop: bool = False
) -> float:
    async def main() -> float:
        async with aio.Client(client_id="bench") as client:
            client.add_server("127.0.0.1", port)
            await client.wait_for_server(5)
            for _ in range(min(200, jobs)):  # warm-up
                await client.run(function, PAYLOAD)
            remaining = jobs

            async def lane() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    await client.run(function, PAYLOAD)

            start = time.perf_counter()
            await asyncio.gather(*(lane() for _ in range(window)))
            return time.perf_counter() - start

    return float(_asyncio_run(main(), use_uvloop))


def client_threaded(port: int, function: str, jobs: int, window: int) -> float:
    import gear

    done = threading.Semaphore(0)

    class CountingClient(gear.Client):  # type: ignore[misc, name-defined]
        def handleWorkComplete(self, packet: Any) -> Any:
            job = super().handleWorkComplete(packet)
            done.release()
            return job

    client = CountingClient("bench")
    client.addServer("127.0.0.1", port)
    client.waitForServer(5)
    try:
        for _ in range(min(200, jobs)):  # warm-up
            client.submitJob(gear.Job(function, PAYLOAD))
            done.acquire()
        start = time.perf_counter()
        in_flight = 0
        for _ in range(jobs):
            if in_flight >= window:
                done.acquire()
                in_flight -= 1
            client.submitJob(gear.Job(function, PAYLOAD))
            in_flight += 1
        for _ in range(in_flight):
            done.acquire()
        return time.perf_counter() - start
    finally:
        client.shutdown()


def client_gearman_cli(port: int, function: str, jobs: int, window: int) -> float:
    assert window == 1, "the gearman CLI runs one synchronous job at a time"
    lines = b"".join(b"%d\n" % i for i in range(jobs))
    cmd = [shutil.which("gearman") or "gearman", "-h", "127.0.0.1", "-p", str(port),
           "-n", "-f", function]
    start = time.perf_counter()
    subprocess.run(cmd, input=lines, stdout=subprocess.DEVNULL, check=True, timeout=120)
    return time.perf_counter() - start


CLIENTS: dict[str, Callable[[int, str, int, int], float]] = {
    "aio": client_aio,
    "uvloop": functools.partial(client_aio, use_uvloop=True),
    "threaded": client_threaded,
    "gearman": client_gearman_cli,
}


def threaded_available() -> str | None:
    try:
        import gear

        gear.Client  # noqa: B018 - resolve the lazy names now
        gear.Worker  # noqa: B018
    except Exception as exc:  # pragma: no cover - reported, not fatal
        return f"{type(exc).__name__}: {exc}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1500, help="jobs per window-1 run")
    parser.add_argument("--window-jobs", type=int, default=8000, help="jobs per window-100 run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--quick", action="store_true",
                        help="window-1 aio/threaded pairs and cross pairs only (~10 s)")
    parser.add_argument("--serve", choices=["aio", "uvloop", "threaded"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--function", help=argparse.SUPPRESS)
    parser.add_argument("--slots", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve in ("aio", "uvloop"):
        return serve_aio(args.port, args.function, args.slots, args.serve == "uvloop")
    if args.serve == "threaded":
        return serve_threaded(args.port, args.function, args.slots)

    threaded_error = threaded_available()
    have_cli = shutil.which("gearman") is not None
    runs: list[Run] = [  # client, worker, window, worker slots
        ("aio", "aio", 1, 1),
        ("threaded", "threaded", 1, 1),
        ("aio", "gearman", 1, 1),
        ("gearman", "aio", 1, 1),
        ("gearman", "gearman", 1, 1),
        ("aio", "aio", 100, 100),
        ("aio", "aio", 100, 4),
        ("threaded", "threaded", 100, 4),
        ("aio", "gearman", 100, 1),
        ("aio", "threaded", 1, 1),
        ("threaded", "aio", 1, 1),
        ("aio", "threaded", 100, 4),
        ("threaded", "aio", 100, 100),
        ("uvloop", "uvloop", 1, 1),
        ("uvloop", "uvloop", 100, 100),
    ]
    if args.quick:
        runs = [r for r in runs if r[2] == 1 and "gearman" not in r[:2] and "uvloop" not in r[:2]]
    if threaded_error:
        print(f"threaded gear.Client/gear.Worker not importable ({threaded_error}): skipped")
        runs = [r for r in runs if "threaded" not in r[:2]]
    try:
        import uvloop  # noqa: F401
    except ImportError:
        print("uvloop is not installed (extra `uvloop`): uvloop rows skipped")
        runs = [r for r in runs if "uvloop" not in r[:2]]
    if not have_cli:
        print("the gearman CLI (gearman-tools) is not installed: libgearman rows skipped")
        runs = [r for r in runs if "gearman" not in r[:2]]
    server = GearmandProcess()
    rates = Rates()
    print(f"gearmand {server.port}; payload {len(PAYLOAD)} B; python {sys.version.split()[0]}; "
          f"{os.cpu_count()} CPUs; {args.rounds} interleaved rounds, best and median shown")
    try:
        for round_no in range(args.rounds):
            for n, run in enumerate(runs):
                if rates.failed(run):
                    continue
                client, worker, window, slots = run
                jobs = args.jobs if window == 1 or worker == "gearman" else args.window_jobs
                function = f"bench{round_no}_{n}"
                with rates.measuring(run) as sample, \
                        worker_process(worker, server.port, function, slots):
                    sample.jobs = jobs
                    sample.seconds = CLIENTS[client](server.port, function, jobs, window)
    finally:
        server.stop()

    print(f"{'client':>9} <- {'worker':<9} {'window':>6} {'slots':>5} {'best/s':>9} "
          f"{'median/s':>9}")
    for run in runs:
        client, worker, window, slots = run
        print(f"{client:>9} <- {worker:<9} {window:>6} {slots:>5} {rates.row(run)}")
    # The ratios are of the medians of the interleaved rounds, as docs/benchmarks.md says.
    ratio = functools.partial(rates.ratio, width=60)

    print(f"ratios of the median rates ({args.rounds} interleaved rounds, same run):")
    ratio(("aio", "aio", 1, 1), ("threaded", "threaded", 1, 1),
          "aio pair / threaded pair, window 1")
    ratio(("aio", "aio", 100, 100), ("threaded", "threaded", 100, 4),
          "aio pair (100 slots) / threaded pair (4 threads), window 100")
    ratio(("aio", "aio", 100, 4), ("threaded", "threaded", 100, 4),
          "aio pair (4 slots) / threaded pair (4 threads), window 100")
    ratio(("aio", "aio", 1, 1), ("gearman", "gearman", 1, 1),
          "aio pair / libgearman CLI pair, window 1")
    ratio(("gearman", "aio", 1, 1), ("gearman", "gearman", 1, 1),
          "aio worker / gearman -w, both serving the gearman CLI client")
    ratio(("aio", "aio", 1, 1), ("aio", "gearman", 1, 1),
          "aio worker / gearman -w, both serving the aio client, window 1")
    ratio(("aio", "aio", 1, 1), ("threaded", "aio", 1, 1),
          "aio client / threaded client, both served by the aio worker, w 1")
    ratio(("aio", "aio", 1, 1), ("aio", "threaded", 1, 1),
          "aio worker / threaded worker, both serving the aio client, w 1")
    ratio(("uvloop", "uvloop", 1, 1), ("aio", "aio", 1, 1),
          "aio pair on uvloop / on asyncio, window 1")
    ratio(("uvloop", "uvloop", 100, 100), ("aio", "aio", 100, 100),
          "aio pair on uvloop / on asyncio, window 100")


if __name__ == "__main__":
    main()
