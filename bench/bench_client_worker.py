"""Foreground jobs end to end through gearmand: our threaded Client+Worker versus PyPI gear 0.16.0
and libgearman, all in one run, with 1 and with 100 jobs in flight.

    python3 bench/bench_client_worker.py [--seconds 3] [--workers 4] [--skip-libgearman]

Every implementation runs the same shape: a gearmand (Debian gearman-job-server) on a free port,
worker processes (1 for window 1, ``--workers`` for window 100) that complete each job at once,
and one client process that keeps WINDOW foreground jobs in flight for ``--seconds`` and counts
completions. Python clients submit synchronously (submitJob waits for JOB_CREATED), from
``--client-threads`` threads at window 100 so that their round trips overlap, and track
completion by overriding ``handleWorkComplete``, which gear 0.16 and ours both support, so the
same code runs in gear 0.16's venv (``tests.support.peers.gear016_python``). libgearman's peer
is ``bench/c/gear_bench.c``, compiled here with gcc against libgearman-dev
(``apt-get install -y libgearman-dev``); its window-100 client runs batches of 100 tasks.

Prints jobs/s per implementation and window, the client's and the workers' CPU time per job
(the figure least moved by a busy machine), and the ratios ours/gear016 and ours/libgearman.
Nothing here is asserted; absolute numbers drift on shared machines, ratios less so.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FUNCTION = "bench"


# --- roles run in child processes (must work with PyPI gear 0.16.0 too) ---------------------


def role_worker(host: str, port: int) -> None:
    import gear

    worker = gear.Worker("bench-worker")
    worker.addServer(host, port)
    worker.waitForServer()
    worker.registerFunction(FUNCTION)
    print("ready", flush=True)
    while True:
        job = worker.getJob()
        job.sendWorkComplete(job.arguments)


def role_client(host: str, port: int, window: int, seconds: float, threads: int) -> None:
    import gear

    cond = threading.Condition()
    state = {"done": 0}

    class BenchClient(gear.Client):
        def handleWorkComplete(self, packet: Any) -> Any:
            job = super().handleWorkComplete(packet)
            with cond:
                state["done"] += 1
                cond.notify_all()
            return job

    client = BenchClient("bench-client")
    client.addServer(host, port)
    client.waitForServer()
    # Warm up: one job end to end (connections, registration, code paths).
    client.submitJob(gear.Job(FUNCTION, b"x"))
    with cond:
        while state["done"] < 1:
            cond.wait()
    base = state["done"]
    cpu0 = os.times()
    start = time.monotonic()
    end = start + seconds
    counts = {"submitted": 0}

    def submitter() -> None:
        # submitJob is synchronous (it waits for JOB_CREATED), so several threads overlap
        # their round trips; together they keep at most ``window`` jobs in flight.
        while True:
            with cond:
                while counts["submitted"] - (state["done"] - base) >= window:
                    if time.monotonic() >= end:
                        return
                    cond.wait(0.5)
                if time.monotonic() >= end:
                    return
                counts["submitted"] += 1
            client.submitJob(gear.Job(FUNCTION, b"x"))

    def batch_submitter() -> None:
        # Ours only, shaped like the libgearman client: submit ``window`` jobs in one
        # pipelined submitJobs call, wait for all of them to complete, repeat.
        while time.monotonic() < end:
            jobs = [gear.Job(FUNCTION, b"x") for _ in range(window)]
            with cond:
                counts["submitted"] += window
                target = counts["submitted"]
            client.submitJobs(jobs)
            with cond:
                while state["done"] - base < target:
                    cond.wait(0.5)

    target = batch_submitter if threads == 0 else submitter
    pool = [threading.Thread(target=target, daemon=True) for _ in range(max(threads, 1))]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.monotonic() - start
    cpu1 = os.times()
    with cond:
        completed = state["done"] - base
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    print(f"{completed} {elapsed:.6f} {cpu:.6f}", flush=True)
    os._exit(0)  # gear 0.16's shutdown can hang on a blocked poll thread; nothing to clean


# --- orchestration ----------------------------------------------------------------------------


def _wait_registered(host: str, port: int, workers: int, timeout: float = 20) -> None:
    """Wait until gearmand reports ``workers`` workers for the function (admin ``status``)."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.create_connection((host, port)) as s:
            s.sendall(b"status\n")
            data = b""
            while not data.endswith(b".\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        for line in data.decode().splitlines():
            parts = line.split("\t")
            if parts[0] == FUNCTION and len(parts) == 4 and int(parts[3]) >= workers:
                return
        time.sleep(0.05)  # polling another process (gearmand) for registration
    raise RuntimeError("workers did not register")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()


def _proc_cpu(pid: int) -> float:
    """utime + stime of a live process, seconds (``/proc/<pid>/stat``; 0.0 if unreadable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_one(impl: str, python: str | None, cbench: str | None, window: int, workers: int,
            seconds: float, threads: int) -> tuple[float, float, float]:
    """One run: (jobs/s, client CPU us per job, all workers' CPU us per job).

    The client's CPU covers its measured window (a Python client reports ``os.times()``
    around it, libgearman's client is measured from ``getrusage`` of the child, start up
    included); the workers' is read from ``/proc`` before and after the client runs.
    """
    sys.path.insert(0, str(REPO))
    from tests.support.peers import GearmandProcess

    server = GearmandProcess()
    host, port = server.host, server.port
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    if impl == "gear016":
        env.pop("PYTHONPATH")  # the venv's gear, not ours
    me = str(Path(__file__).resolve())
    try:
        if impl == "libgearman":
            assert cbench is not None
            wcmd = [cbench, "worker", host, str(port), FUNCTION]
            ccmd = [cbench, "client", host, str(port), FUNCTION, str(window), str(seconds)]
        else:
            assert python is not None
            wcmd = [python, me, "--role", "worker", "--host", host, "--port", str(port)]
            ccmd = [python, me, "--role", "client", "--host", host, "--port", str(port),
                    "--window", str(window), "--seconds", str(seconds),
                    "--client-threads", str(threads)]
        procs = []
        for _ in range(workers):
            procs.append(subprocess.Popen(wcmd, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, env=env))
        try:
            _wait_registered(host, port, workers)
            wcpu0 = sum(_proc_cpu(p.pid) for p in procs)
            child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            out = subprocess.run(ccmd, capture_output=True, text=True, env=env,
                                 timeout=seconds + 60)
            child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            wcpu = sum(_proc_cpu(p.pid) for p in procs) - wcpu0
            if out.returncode != 0:
                raise RuntimeError(f"{impl} client failed: {out.stderr[-500:]}")
            fields = out.stdout.split()
            if impl == "libgearman":
                done, elapsed = fields[-2:]
                ccpu = (child1.ru_utime - child0.ru_utime) + (child1.ru_stime - child0.ru_stime)
            else:
                done, elapsed, cpu = fields[-3:]
                ccpu = float(cpu)
            jobs = max(int(done), 1)
            return int(done) / float(elapsed), ccpu / jobs * 1e6, wcpu / jobs * 1e6
        finally:
            _stop(procs)
    finally:
        server.stop()


def build_cbench() -> str | None:
    gcc = shutil.which("gcc")
    if gcc is None or not Path("/usr/include/libgearman-1.0/gearman.h").exists():
        return None
    out = Path(tempfile.gettempdir()) / "geartrain_gear_bench"
    proc = subprocess.run([gcc, "-O2", "-o", str(out), str(REPO / "bench/c/gear_bench.c"),
                           "-lgearman"], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"libgearman peer did not build: {proc.stderr[-300:]}", file=sys.stderr)
        return None
    return str(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["bench", "worker", "client"], default="bench")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--window", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=4, help="worker processes at window 100")
    parser.add_argument("--client-threads", type=int, default=4,
                        help="submitting threads at window 100 (Python clients; 0 = submitJobs)")
    parser.add_argument("--skip-libgearman", action="store_true")
    parser.add_argument("--skip-gear016", action="store_true")
    args = parser.parse_args()
    if args.role == "worker":
        role_worker(args.host, args.port)
        return
    if args.role == "client":
        role_client(args.host, args.port, args.window, args.seconds, args.client_threads)
        return

    sys.path.insert(0, str(REPO))
    impls: dict[str, tuple[str | None, str | None]] = {"ours": (sys.executable, None)}
    if not args.skip_gear016:
        from tests.support.peers import gear016_python

        impls["gear016"] = (gear016_python(), None)
    if not args.skip_libgearman:
        cbench = build_cbench()
        if cbench:
            impls["libgearman"] = (None, cbench)
        else:
            print("libgearman peer unavailable (apt-get install -y libgearman-dev gcc)")
    results: dict[tuple[str, int], float] = {}
    runs: list[tuple[str, int, int, int]] = []  # (impl, window, workers, client threads)
    for impl in impls:
        runs.append((impl, 1, 1, 1))
    for impl in impls:
        runs.append((impl, 100, args.workers, args.client_threads))
    # Ours again at window 100 with the batch API, in batches like libgearman's run_tasks.
    if args.client_threads:  # (with 0 the run above is that one)
        runs.append(("ours", 100, args.workers, 0))
    for impl, window, workers, threads in runs:
        python, cbench = impls[impl]
        rate, ccpu, wcpu = run_one(impl, python, cbench, window, workers, args.seconds, threads)
        batch = impl == "ours" and threads == 0
        how = ("batched submitJobs" if batch else
               f"{threads} submit thread(s)" if python else "libgearman batches")
        label = "ours-batch" if batch else impl
        results[(label, window)] = rate
        print(f"{label:>10}  window {window:>3}  workers {workers}  {how:<22} "
              f"{rate:10.1f} jobs/s   CPU us/job: client {ccpu:6.1f}  workers {wcpu:6.1f}",
              flush=True)
    print()
    for mine, window in (("ours", 1), ("ours", 100), ("ours-batch", 100)):
        ours = results.get((mine, window))
        if ours is None:  # --client-threads 0: the window-100 run of ours is the batch one
            continue
        for peer in ("gear016", "libgearman"):
            if (peer, window) in results and results[(peer, window)] > 0:
                print(f"window {window:>3}: {mine:<10} / {peer:<10} = "
                      f"{ours / results[(peer, window)]:8.2f}x")


if __name__ == "__main__":
    main()
