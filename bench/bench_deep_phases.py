"""The deep load's two phases apart: server CPU per job for submitting and for draining, per thread.

Run: ``python3 bench/bench_deep_phases.py [--jobs 10000,200000]
[--only geard-durable,geard,gearmand] [--src DIR]``

``bench_server.py --loads deep`` reports one CPU figure for both phases together; this runs the
same load (``loadgen``'s submitter, then its pool of 4 workers) against a fresh server per run
and reads the server's CPU from ``/proc/<pid>/task/*/stat`` before the submits, between the
phases and after the drain, so the drain's cost is seen apart from the submits' and the durable
geard's writer thread apart from its event loop (docs/benchmarks.md, "Draining a durable
queue"). ``--src`` runs geard from another checkout's ``src`` (e.g. an unchanged copy made with
``git archive main src | tar -x -C /tmp/base``), for before/after figures under the same
conditions. CPU per job is the figure to compare: the drain's rate is bound by the workers'
round trips and moves with whatever else the machine runs. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import loadgen  # noqa: E402
from bench_server import ServerProcess, geard_args, gearmand_args  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of ``pid``, by ``name:tid`` (``main``: the
    first thread, geard's event loop)."""
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        label = "main" if tid == str(pid) else name
        out[f"{label}:{tid}"] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def start(server: str, src: str, tmp: str) -> ServerProcess:
    env = dict(os.environ, PYTHONPATH=src)
    if server == "gearmand":
        return ServerProcess(server, gearmand_args())
    queue = "memory" if server == "geard" else "sqlite:///" + os.path.join(tmp, "queue.db")
    return ServerProcess(server, geard_args(True, None, queue), env=env)


def one(server: str, jobs: int, src: str) -> None:
    tmp = tempfile.mkdtemp(prefix="bench-deep-")
    proc = start(server, src, tmp)
    try:
        pid = proc.proc.pid
        t0 = thread_cpu(pid)
        submitted = loadgen._submit(proc.port, 1, jobs, 500, True, 120.0,
                                    loadgen.FUNCTIONS["deep"])
        t1 = thread_cpu(pid)
        began = time.perf_counter()
        pool = loadgen._WorkerPool(proc.port, 4, 1, loadgen.FUNCTIONS["deep"])
        while pool.counter.value < submitted.jobs and time.perf_counter() - began < 300:
            time.sleep(0.002)
        wall = time.perf_counter() - began
        drained = pool.counter.value
        t2 = thread_cpu(pid)
        pool.close()
    finally:
        proc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    per_sub = 1e6 / max(submitted.jobs, 1)
    per_drain = 1e6 / max(drained, 1)
    print(f"{server:14s} {jobs:>9,} jobs  submit {submitted.rate:9,.0f}/s "
          f"{(sum(t1.values()) - sum(t0.values())) * per_sub:5.1f} us/job   drain "
          f"{drained / wall if wall else 0:8,.0f}/s "
          f"{(sum(t2.values()) - sum(t1.values())) * per_drain:5.1f} us/job", flush=True)
    if server != "gearmand":
        for name in t2:
            sub = (t1.get(name, 0) - t0.get(name, 0)) * per_sub
            drain = (t2[name] - t1.get(name, 0)) * per_drain
            print(f"    thread {name:28s} submit {sub:5.1f}  drain {drain:5.1f} us/job", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="10000,200000")
    parser.add_argument("--only", default="geard-durable,geard,gearmand")
    parser.add_argument("--src", default=str(REPO / "src"), help="geard's sources")
    args = parser.parse_args(argv)
    for jobs in (int(n) for n in args.jobs.split(",")):
        for server in args.only.split(","):
            one(server, jobs, os.path.abspath(args.src))
    return 0


if __name__ == "__main__":
    sys.exit(main())
