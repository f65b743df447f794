"""Foreground jobs/s through the pygear facade (client and worker both through it) against the
threaded gear API, gear.aio and libgearman (the ``gearman`` CLI), in one run.

Usage: ``python3 bench/bench_facade_pygear.py [--jobs N] [--rounds N]``

One gearmand (Debian gearman-job-server) serves every run; each run has its own function name,
one worker *process* and the client in this process, echoing a 32-byte payload:

* window 1: ``pygear.Client.do`` <- ``pygear.Worker.work`` (the facade's whole path), the same
  shape through the threaded gear API, gear.aio and the ``gearman`` CLI pair (libgearman), and
  the cross pairs (facade client <- aio worker, aio client <- facade worker) that show which half
  costs what;
* window 100: ``add_task`` x 100 then ``run_tasks`` (the widest window pygear's API has) against
  one facade worker, and the threaded client with 100 in flight against one threaded worker.

The pygear runs use a pass-through serializer, so every pair moves the same bytes. Rounds
alternate between the runs and the ratios are of the medians (docs/benchmarks.md). Not a test:
nothing is asserted. The goal: the facade pair within 2x of the threaded gear pair.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from tests.support.peers import GearmandProcess  # noqa: E402

import bench_aio  # noqa: E402
from rounds import Rates, end_process  # noqa: E402

PAYLOAD = bench_aio.PAYLOAD
Run = tuple[str, str, int]  # client kind, worker kind, window


class Raw:
    """A pass-through serializer: bytes in, bytes out."""

    @staticmethod
    def dumps(value: Any) -> Any:
        return value

    @staticmethod
    def loads(value: Any) -> Any:
        return value


def serve_pygear(port: int, function: str) -> None:
    from gear.compat import pygear

    worker = pygear.Worker()
    worker.set_serializer(Raw())
    worker.add_server("127.0.0.1", port)
    worker.add_function(function, 0, lambda job: job.workload())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        worker.work()


@contextmanager
def worker_process(kind: str, port: int, function: str) -> Iterator[None]:
    if kind != "pygear":
        with bench_aio.worker_process(kind, port, function, 1):
            yield
        return
    proc = subprocess.Popen([sys.executable, __file__, "--serve", "--port", str(port),
                             "--function", function],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        bench_aio.wait_registered(port, function, 1, proc)
        yield
    finally:
        end_process(proc)


def client_pygear(port: int, function: str, jobs: int, window: int) -> float:
    from gear.compat import pygear

    client = pygear.Client()
    client.set_serializer(Raw())
    client.add_server("127.0.0.1", port)
    client.set_timeout(30000)
    for _ in range(min(200, jobs)):  # warm-up
        client.do(function, PAYLOAD)
    start = time.perf_counter()
    if window == 1:
        for _ in range(jobs):
            client.do(function, PAYLOAD)
    else:
        left = jobs
        while left > 0:
            for _ in range(min(window, left)):
                client.add_task(function, PAYLOAD)
            left -= window
            client.run_tasks()
    return time.perf_counter() - start


CLIENTS: dict[str, Callable[[int, str, int, int], float]] = {
    "pygear": client_pygear,
    "threaded": bench_aio.client_threaded,
    "aio": bench_aio.client_aio,
    "gearman": bench_aio.client_gearman_cli,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1500, help="jobs per run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating repetitions")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--function", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve_pygear(args.port, args.function)

    runs: list[Run] = [
        ("pygear", "pygear", 1),
        ("threaded", "threaded", 1),
        ("aio", "aio", 1),
        ("gearman", "gearman", 1),
        ("pygear", "aio", 1),
        ("aio", "pygear", 1),
        ("pygear", "pygear", 100),
        ("threaded", "threaded", 100),
    ]
    if shutil.which("gearman") is None:
        print("the gearman CLI (gearman-tools) is not installed: libgearman rows skipped")
        runs = [r for r in runs if "gearman" not in r[:2]]
    server = GearmandProcess()
    rates = Rates()
    print(f"gearmand {server.port}; payload {len(PAYLOAD)} B; {args.jobs} jobs per run; "
          f"python {sys.version.split()[0]}; {os.cpu_count()} CPUs; {args.rounds} rounds")
    try:
        for round_no in range(args.rounds):
            for n, run in enumerate(runs):
                if rates.failed(run):
                    continue
                client, worker, window = run
                function = f"pygear{round_no}_{n}"
                with rates.measuring(run) as sample, \
                        worker_process(worker, server.port, function):
                    sample.jobs = args.jobs
                    sample.seconds = CLIENTS[client](server.port, function, args.jobs, window)
    finally:
        server.stop()

    print(f"{'client':>9} <- {'worker':<9} {'window':>6} {'best/s':>9} {'median/s':>9}")
    for run in runs:
        client, worker, window = run
        print(f"{client:>9} <- {worker:<9} {window:>6} {rates.row(run)}")
    ratio = rates.ratio

    print(f"ratios of the median rates ({args.rounds} alternating rounds, same run):")
    ratio(("pygear", "pygear", 1), ("threaded", "threaded", 1),
          "pygear facade pair / threaded gear pair, window 1 (goal >= 0.5)")
    ratio(("pygear", "pygear", 1), ("aio", "aio", 1), "pygear facade pair / aio pair, window 1")
    ratio(("pygear", "pygear", 1), ("gearman", "gearman", 1),
          "pygear facade pair / libgearman CLI pair, window 1")
    ratio(("pygear", "aio", 1), ("aio", "aio", 1),
          "facade client / aio client, both served by the aio worker")
    ratio(("aio", "pygear", 1), ("aio", "aio", 1),
          "facade worker / aio worker, both serving the aio client")
    ratio(("pygear", "pygear", 100), ("threaded", "threaded", 100),
          "facade run_tasks x100 / threaded 100 in flight, one worker each")


if __name__ == "__main__":
    main()
