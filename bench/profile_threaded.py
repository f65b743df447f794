"""Per-job work of the threaded gear API, counted rather than timed (issue 14).

    python3 bench/profile_threaded.py [--role worker|client|both] [--jobs 2000] [--top 25]

One gearmand on a free port. ``--role worker``: our ``gear.Worker`` runs in this process
(``getJob`` then ``sendWorkComplete``, as bench/bench_client_worker.py's workers do), fed by that
benchmark's client in a child process at window 1. ``--role client``: our ``gear.Client``
runs here (``submitJob``, then ``Job.wait``), served by one of that benchmark's workers.
After 200 warm-up jobs a profile hook on every thread (``threading.setprofile``) counts each
Python function and C call for ``--jobs`` jobs, and the script prints, per job: all calls,
lock operations (acquire/release/with), socket calls (send, recv, poll) and the thread
hand-offs of the worker's job queue, then the ``--top`` most frequent calls.

Counts do not move with the machine's load the way rates and CPU times do, so they compare a
change before and after on a shared machine (CPU per job is in bench_client_worker.py; for
instructions per job run a role under ``valgrind --tool=callgrind``). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "bench_client_worker.py"
WARM_UP = 200

LOCKS = ("acquire", "release", "__enter__", "__exit__")
SOCKET = ("sendall", "send", "recv", "poll")
HANDOFF = ("SimpleQueue.put", "SimpleQueue.get")


class Counter:
    """A profile hook counting calls while ``on`` is set."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.on = False

    def hook(self, frame: FrameType, event: str, arg: Any) -> None:
        if not self.on:
            return
        if event == "call":
            code = frame.f_code
            self.counts[f"{Path(code.co_filename).name}:{code.co_name}"] += 1
        elif event == "c_call":
            self.counts[f"C:{getattr(arg, '__qualname__', arg)}"] += 1


def _child_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))


def run_role(role: str, jobs: int, counter: Counter) -> None:
    from tests.support.peers import GearmandProcess

    import gear

    server = GearmandProcess()
    addr = ["--host", server.host, "--port", str(server.port)]
    child: subprocess.Popen[bytes] | None = None
    try:
        if role == "worker":
            worker = gear.Worker("profile-worker")
            worker.addServer(server.host, server.port)
            worker.waitForServer()
            worker.registerFunction("bench")
            child = subprocess.Popen(
                [sys.executable, str(BENCH), "--role", "client", *addr, "--window", "1",
                 "--seconds", "600", "--client-threads", "1"],
                stdout=subprocess.DEVNULL, env=_child_env())
            for i in range(WARM_UP + jobs):
                if i == WARM_UP:
                    counter.on = True
                job = worker.getJob()
                job.sendWorkComplete(job.arguments)
            counter.on = False
            worker.shutdown()
        else:
            child = subprocess.Popen([sys.executable, str(BENCH), "--role", "worker", *addr],
                                     stdout=subprocess.PIPE, env=_child_env())
            assert child.stdout is not None
            child.stdout.readline()  # "ready": registered
            client = gear.Client("profile-client")
            client.addServer(server.host, server.port)
            client.waitForServer()
            for i in range(WARM_UP + jobs):
                if i == WARM_UP:
                    counter.on = True
                job = gear.Job("bench", b"x")
                client.submitJob(job)
                if not job.wait(30):
                    raise RuntimeError("a job did not complete")
            counter.on = False
            client.shutdown()
    finally:
        if child is not None:
            child.kill()
            child.wait()
        server.stop()


def report(role: str, jobs: int, counts: collections.Counter[str], top: int) -> None:
    def per_job(names: tuple[str, ...]) -> float:
        return sum(n for k, n in counts.items() if k.startswith("C:") and k.endswith(names)) / jobs

    total = sum(counts.values()) / jobs
    print(f"{role}: {jobs} jobs, per job: {total:.1f} calls, {per_job(LOCKS):.1f} lock "
          f"operations, {per_job(SOCKET):.1f} socket calls, "
          f"{sum(counts[f'C:{h}'] for h in HANDOFF) / jobs / 2:.1f} job-queue hand-offs")
    for name, n in counts.most_common(top):
        print(f"  {n / jobs:6.2f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["worker", "client", "both"], default="both")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    sys.path.insert(0, str(REPO))
    roles = ["worker", "client"] if args.role == "both" else [args.role]
    for role in roles:
        counter = Counter()
        threading.setprofile(counter.hook)
        sys.setprofile(counter.hook)
        start = time.monotonic()
        try:
            run_role(role, args.jobs, counter)
        finally:
            sys.setprofile(None)
            threading.setprofile(None)  # type: ignore[arg-type]
        report(role, args.jobs, counter.counts, args.top)
        print(f"  ({time.monotonic() - start:.1f} s)")


if __name__ == "__main__":
    main()
