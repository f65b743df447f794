"""Foreground end-to-end throughput through ``gear.compat.gearman`` (python-gearman's API) against
the same load through the threaded gear API, gear.aio and libgearman, in one run.

Usage: ``python3 bench/bench_facades.py [--jobs N] [--window-jobs N] [--rounds N]``

One gearmand (Debian gearman-job-server, ``--threads=0``) serves every run; each run has its own
function, a worker *process* and a client in this process, and times submit -> WORK_COMPLETE of
foreground jobs with a 32-byte payload echoed back. Client and worker are both of the API named:

* window 1: one job in flight (``submit_job`` in a loop for the facade; the latency bound);
* window 100: as each API allows it: the facade submits ``submit_multiple_jobs`` batches of 100
  and waits for each batch (python-gearman has no sliding window), the threaded client keeps
  100 in flight, aio runs 100 lanes; the facade and threaded workers are 4 threads with a
  worker each (one job at a time per worker object), aio's worker has 100 slots.
* libgearman: ``gearman -n -f`` (one synchronous job per stdin line) with ``gearman -w``, and
  the facade client against ``gearman -w`` (interop shape); and, when libgearman-dev and gcc
  are there, bench/c's C client and worker (bench_client_worker.py builds it): the C pair at
  windows 1 and 100 (batches of 100, 4 worker processes), and each side against the facade.

The pairs run in interleaved rounds and the ratios printed at the end are of the median rates
(docs/benchmarks.md); the goal is the facade within 2x of the threaded gear API. Each row also
shows the CPU time per job of the client (this process, or the ``gearman`` CLI child) and of
the worker process (from /proc), medians over the rounds: on a loaded machine the rates swing
with the neighbours' load, the CPU per job much less. Not a test:
nothing is asserted. The threaded, aio and libgearman roles are bench/bench_aio.py's.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import bench_aio
from bench_aio import PAYLOAD, GearmandProcess
from gear.compat import gearman
from rounds import Rates, end_process

Run = tuple[str, str, int, int]  # client kind, worker kind, window, worker slots


def serve_facade(port: int, function: str, threads: int) -> None:
    """``threads`` GearmanWorkers, each in its own thread, echoing every job (until SIGTERM)."""

    def loop() -> None:
        worker = gearman.GearmanWorker([f"127.0.0.1:{port}"])
        worker.set_client_id("bench-facade")
        worker.register_task(function, lambda w, job: job.data)
        worker.work(poll_timeout=60)

    for _ in range(threads):
        threading.Thread(target=loop, daemon=True).start()
    signal.sigwait({signal.SIGTERM})


#: bench/c/gear_bench.c built against libgearman (bench_client_worker.build_cbench), or None.
CBENCH: list[str | None] = [None]
#: How many jobs the last time-bound client run did (None: the ``jobs`` it was asked for).
LAST_DONE: list[int | None] = [None]


@contextmanager
def worker_process(kind: str, port: int, function: str, slots: int) -> Iterator[None]:
    if kind not in ("facade", "cbench"):
        with bench_aio.worker_process(kind, port, function, slots):
            yield
        return
    if kind == "cbench":
        assert CBENCH[0] is not None
        cmds = [[CBENCH[0], "worker", "127.0.0.1", str(port), function]] * slots
    else:
        cmds = [[sys.executable, __file__, "--serve", "facade", "--port", str(port),
                 "--function", function, "--slots", str(slots)]]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for cmd in cmds]
    try:
        for proc in procs:
            bench_aio.wait_registered(port, function, slots, proc)
        yield
    finally:
        for proc in procs:
            end_process(proc)


def client_cbench(port: int, function: str, jobs: int, window: int) -> float:
    """libgearman's client (bench/c): it runs for a time (long enough for about ``jobs``), not
    a count; the jobs it did are left in LAST_DONE (window 1: gearman_client_do; else batches
    of ``window``)."""
    assert CBENCH[0] is not None
    seconds = max(1.0, jobs / 5000)
    out = subprocess.run([CBENCH[0], "client", "127.0.0.1", str(port), function, str(window),
                          str(seconds)], capture_output=True, text=True, timeout=seconds + 60,
                         check=True)
    done, elapsed = out.stdout.split()[-2:]
    LAST_DONE[0] = int(done)  # for the CPU per job
    return float(elapsed)


def client_facade(port: int, function: str, jobs: int, window: int) -> float:
    client = gearman.GearmanClient([f"127.0.0.1:{port}"])
    try:
        for _ in range(min(200, jobs)):  # warm-up
            client.submit_job(function, PAYLOAD, poll_timeout=30)
        start = time.perf_counter()
        if window == 1:
            for _ in range(jobs):
                request = client.submit_job(function, PAYLOAD, poll_timeout=30)
                if request.state != gearman.JOB_COMPLETE:
                    raise RuntimeError(f"job ended {request.state}")
        else:
            left = jobs
            while left > 0:
                batch = min(window, left)
                requests = client.submit_multiple_jobs(
                    [dict(task=function, data=PAYLOAD)] * batch, poll_timeout=60)
                if any(r.state != gearman.JOB_COMPLETE for r in requests):
                    raise RuntimeError("a batch did not complete")
                left -= batch
        return time.perf_counter() - start
    finally:
        client.shutdown()


CLIENTS: dict[str, Callable[[int, str, int, int], float]] = {
    "facade": client_facade, "cbench": client_cbench, **bench_aio.CLIENTS}

_TICK = os.sysconf("SC_CLK_TCK")


def _children_cpu(exclude: int) -> float:
    """CPU seconds (user + system) of this process's live children but ``exclude`` (gearmand):
    the worker process of the run, read from /proc (Linux)."""
    total = 0.0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            continue
        for pid in pids:
            if pid == exclude:
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def _own_cpu() -> float:
    """CPU seconds of this process (the Python clients) and its finished children (the
    gearman CLI client)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1500, help="jobs per window-1 run")
    parser.add_argument("--window-jobs", type=int, default=6000, help="jobs per window-100 run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--serve", choices=["facade"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--function", help=argparse.SUPPRESS)
    parser.add_argument("--slots", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "facade":
        return serve_facade(args.port, args.function, args.slots)

    runs: list[Run] = [
        ("facade", "facade", 1, 1),
        ("threaded", "threaded", 1, 1),
        ("aio", "aio", 1, 1),
        ("gearman", "gearman", 1, 1),
        ("facade", "gearman", 1, 1),
        ("gearman", "facade", 1, 1),
        ("facade", "facade", 100, 4),
        ("threaded", "threaded", 100, 4),
        ("aio", "aio", 100, 100),
    ]
    if shutil.which("gearman") is None:
        print("the gearman CLI (gearman-tools) is not installed: libgearman rows skipped")
        runs = [r for r in runs if "gearman" not in r[:2]]
    from bench_client_worker import build_cbench

    CBENCH[0] = build_cbench()
    if CBENCH[0]:
        runs += [("cbench", "cbench", 1, 1), ("cbench", "cbench", 100, 4),
                 ("facade", "cbench", 100, 4), ("cbench", "facade", 100, 4)]
    else:
        print("bench/c's libgearman peer unavailable (apt-get install -y libgearman-dev gcc)")
    server = GearmandProcess()
    rates = Rates()
    cpu: dict[Run, list[tuple[float, float]]] = {}
    print(f"gearmand {server.port}; payload {len(PAYLOAD)} B; python {sys.version.split()[0]}; "
          f"{os.cpu_count()} CPUs; {args.rounds} interleaved rounds, best and median shown")
    try:
        for round_no in range(args.rounds):
            for n, run in enumerate(runs):
                if rates.failed(run):
                    continue
                client, worker, window, slots = run
                jobs = args.jobs if window == 1 else args.window_jobs
                function = f"facade{round_no}_{n}"
                with rates.measuring(run) as sample, \
                        worker_process(worker, server.port, function, slots):
                    worker_cpu, client_cpu = _children_cpu(server.pid), _own_cpu()
                    LAST_DONE[0] = None
                    sample.seconds = CLIENTS[client](server.port, function, jobs, window)
                    worker_cpu = _children_cpu(server.pid) - worker_cpu
                    client_cpu = _own_cpu() - client_cpu
                    sample.jobs = done = LAST_DONE[0] or jobs
                    # warm-up jobs included in the CPU figures: at most 200 of them
                    cpu.setdefault(run, []).append((client_cpu * 1e6 / done,
                                                    worker_cpu * 1e6 / done))
    finally:
        server.stop()

    print(f"{'client':>9} <- {'worker':<9} {'window':>6} {'slots':>5} {'best/s':>9} "
          f"{'median/s':>9} {'client us/job':>13} {'worker us/job':>13}")
    for run in runs:
        client, worker, window, slots = run
        line = f"{client:>9} <- {worker:<9} {window:>6} {slots:>5} {rates.row(run)}"
        if run in cpu:
            client_us = statistics.median(c for c, _ in cpu[run])
            worker_us = statistics.median(w for _, w in cpu[run])
            line += f" {client_us:>13.0f} {worker_us:>13.0f}"
        print(line)
    ratio = functools.partial(rates.ratio, width=70)

    print(f"ratios of the median rates ({args.rounds} interleaved rounds, same run):")
    ratio(("facade", "facade", 1, 1), ("threaded", "threaded", 1, 1),
          "facade pair / threaded gear pair, window 1 (goal >= 0.5)")
    ratio(("facade", "facade", 100, 4), ("threaded", "threaded", 100, 4),
          "facade pair / threaded gear pair, window 100 (goal >= 0.5)")
    ratio(("facade", "facade", 1, 1), ("aio", "aio", 1, 1), "facade pair / aio pair, window 1")
    ratio(("facade", "facade", 100, 4), ("aio", "aio", 100, 100),
          "facade pair / aio pair, window 100")
    ratio(("facade", "facade", 1, 1), ("gearman", "gearman", 1, 1),
          "facade pair / libgearman CLI pair, window 1")
    ratio(("gearman", "facade", 1, 1), ("gearman", "gearman", 1, 1),
          "facade worker / gearman -w, both serving the gearman CLI client")
    ratio(("facade", "gearman", 1, 1), ("gearman", "gearman", 1, 1),
          "facade client / gearman CLI client, both served by gearman -w")
    ratio(("facade", "facade", 1, 1), ("cbench", "cbench", 1, 1),
          "facade pair / libgearman C pair (bench/c), window 1")
    ratio(("facade", "facade", 100, 4), ("cbench", "cbench", 100, 4),
          "facade pair / libgearman C pair (bench/c), window 100")
    ratio(("facade", "cbench", 100, 4), ("cbench", "cbench", 100, 4),
          "facade client / C client, both served by 4 C workers, window 100")
    ratio(("cbench", "facade", 100, 4), ("cbench", "cbench", 100, 4),
          "facade workers / C workers (4 each), both serving the C client, w 100")


if __name__ == "__main__":
    main()
