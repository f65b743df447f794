"""Job-server throughput: geard vs gearmand vs gear 0.16's server, in ONE run, same load generator.

Run: ``python3 bench/bench_server.py [--quick] [--rounds 3] [--seconds 2.5] [--deep-jobs 200000]
[--only geard,gearmand,gear016,geard-durable,geard+scrape] [--loads bg,fg,deep] [--no-uvloop]
[--profile DIR]``

Loads (bench/loadgen.py; docs/benchmarks.md):

1. ``bg``   background submits, 1 connection, 500 in flight (JOB_CREATED/s);
2. ``fg``   foreground end to end, 2 clients x 100 in flight, 4 raw workers
            (GRAB_JOB_UNIQ -> WORK_COMPLETE) (WORK_COMPLETE/s at the clients);
3. ``deep`` N background jobs submitted, then drained by 4 workers (submit/s, drain/s).

Servers, each restarted for every run so that no run sees another's leftovers:

* geard: ``python3 -m gear.server -d --queue memory -l none`` (uvloop when installed);
* gearmand: Debian's 1.1.x with its DEFAULTS (``-t 4`` I/O threads, default hash table), plus
  only ``--listen=127.0.0.1 --port=0 --log-file=none``; nothing tuned;
* gear 0.16.0's ``gear.Server`` from the gear016 venv (tests/support/peers.py);
* ``geard-durable`` (only when named in ``--only``): geard with a SQLite queue in a fresh
  temporary directory, what ``geard -d`` runs by default; the summary prints its ratios to
  gearmand (issue 14's goals for the default server);
* ``geard+scrape`` (only when named in ``--only``): geard with ``--http-port 0``, its
  ``/metrics`` fetched every second during the load, as Prometheus would (docs/operations.md
  §5: what the metrics cost). ``--only geard,geard+scrape`` prints the ratio of the two.

Trustworthy on a noisy 2-core machine: every load runs ``--rounds`` alternating rounds (geard,
gearmand, geard, gearmand...; gear 0.16 once, it is ~100x slower), and the summary gives the
MEDIAN rate per server and the ratio of the medians. Each run also reports the server's CPU
per job (all threads, from /proc: the figure least disturbed by other processes) and syscalls
per job, and the load generator's own CPU (share of a core) so that a saturated generator is
visible. Default ~2.5 min; ``--quick`` is one short round (~40 s).
``--profile DIR`` runs geard under cProfile and writes one .prof file per run.
Nothing here is asserted: benchmarks never gate the test suite.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "src"))  # this checkout's gear, installed or not

from tests.support.peers import gear016_python, listening_ports, require_tool, wait_for  # noqa: E402

import loadgen  # noqa: E402

#: geard's environment: this checkout's src/ first, so that ``python3 bench/bench_server.py``
#: runs without installing the package (gear 0.16's server must NOT get it: same import name).
OUR_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(
    [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]))

GEAR016_SERVER = """
import signal, sys, gear
server = gear.Server(0, host="127.0.0.1")
print(server.port, flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
"""


class ServerProcess:
    """One server under test in a child process; ``port`` once it listens."""

    def __init__(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=env)

        def ready() -> int | None:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise SystemExit(f"{name} exited with {self.proc.returncode}: {err}")
            ports = listening_ports(self.proc.pid)
            return ports[0] if ports else None

        self.port = int(wait_for(ready, timeout=20, what=f"{name} to listen"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()


class ScrapedServer(ServerProcess):
    """geard with ``--http-port 0`` whose ``/metrics`` a thread fetches every second."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        super().__init__("geard+scrape", [*args, "--http-port", "0"], env=env)
        ports = wait_for(lambda: (p if len(p := listening_ports(self.proc.pid)) >= 2 else None),
                         timeout=20, what="geard's two ports")
        self.http_port = next(p for p in ports if _answers_http(p))
        self.port = next(p for p in ports if p != self.http_port)
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._scrape, daemon=True)
        self._thread.start()

    def _scrape(self) -> None:
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        while not self._stop.wait(1.0):
            with urllib.request.urlopen(url, timeout=10) as reply:
                reply.read()
            self.scrapes += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        super().stop()


def _answers_http(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as reply:
            return bool(reply.status == 200)
    except (OSError, ValueError, http.client.HTTPException):
        return False


def geard_args(uvloop: bool, profile: str | None, queue: str = "memory") -> list[str]:
    prefix = [sys.executable]
    if profile:
        prefix += ["-m", "cProfile", "-o", profile]
    return [*prefix, "-m", "gear.server", "-d", "-p", "0", "-L", "127.0.0.1", "-l", "none",
            "--queue", queue, "--uvloop" if uvloop else "--no-uvloop"]


class DurableServer(ServerProcess):
    """geard with a fresh SQLite queue, what ``geard -d`` stores in by default (docs/server.md),
    in a temporary directory removed when it stops, so that no run sees another's jobs."""

    def __init__(self, uvloop: bool, profile: str | None, env: dict[str, str]) -> None:
        self.dir = tempfile.mkdtemp(prefix="bench-server-")
        queue = "sqlite:///" + os.path.join(self.dir, "queue.db")
        super().__init__("geard-durable", geard_args(uvloop, profile, queue), env=env)

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def gearmand_args() -> list[str]:
    return [require_tool("gearmand"), "--listen=127.0.0.1", "--port=0", "--log-file=none"]


def gear016_args() -> list[str]:
    return [gear016_python(), "-c", GEAR016_SERVER]


Load = Callable[[int], Any]


def process_cost(pid: int) -> tuple[float, int]:
    """(CPU seconds, read+write syscalls) the process has used so far, all threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    calls = 0
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith(("syscr", "syscw")):
                    calls += int(line.split()[1])
    except OSError:
        pass
    return cpu, calls


@dataclass
class Sample:
    """One run of one load against one fresh server."""

    rate: float
    #: Server CPU microseconds (all threads, from /proc) and read+write syscalls per job.
    cpu_us: float
    calls: float
    #: The load generator's CPU as a share of the wall time (1.0 = one core saturated).
    loadgen_load: float


#: (server, load key) -> samples, one per round.
SAMPLES: dict[tuple[str, str], list[Sample]] = {}


def run_load(starter: Callable[[], ServerProcess], load: Load) -> Any:
    """Run ``load`` against a fresh server and record a :class:`Sample` per reported rate.

    Server CPU per job comes from /proc around the whole load (robust against other processes
    on a shared machine, unlike rates). deep records the submit and drain rates separately
    and the CPU of both phases under the drain key.
    """
    server = starter()
    try:
        cpu0, calls0 = process_cost(server.proc.pid)
        result = load(server.port)
        cpu1, calls1 = process_cost(server.proc.pid)
    finally:
        server.stop()
    return result, cpu1 - cpu0, calls1 - calls0


def record(name: str, key: str, r: Any, cpu: float, calls: int, jobs: int) -> Sample:
    per = max(jobs, 1)
    sample = Sample(r.rate, cpu * 1e6 / per, calls / per,
                    r.loadgen_cpu / r.seconds if r.seconds > 0 else 0.0)
    SAMPLES.setdefault((name, key), []).append(sample)
    return sample


def calls_text(calls: float | None) -> str:
    """Syscalls per job, or "n/a": /proc/<pid>/io counts read()/write() calls only, so a
    server doing its socket I/O with recv()/send() (gear 0.16's) shows none at all."""
    if not calls:
        return "  n/a"
    return f"{calls:5.2f}"


def med(name: str, key: str, attr: str) -> float | None:
    samples = SAMPLES.get((name, key))
    if not samples:
        return None
    return float(statistics.median(getattr(s, attr) for s in samples))


def _ratio(ours: float | None, other: float | None) -> float | None:
    return ours / other if ours is not None and other else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one short round of each load (~40 s): a smoke test, not a figure")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 3)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="time cap per bg/fg run (default 2.5)")
    parser.add_argument("--deep-jobs", type=int, default=None,
                        help="default 200000 (the issue's deep queue)")
    parser.add_argument("--only", default="geard,gearmand,gear016")
    parser.add_argument("--loads", default="bg,fg,deep")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--profile", default=None, help="directory for geard cProfile output")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    secs = args.seconds or (1.0 if args.quick else 2.5)
    deep_jobs = args.deep_jobs or (30_000 if args.quick else 200_000)
    names = args.only.split(",")
    loads = args.loads.split(",")
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    uvloop = not args.no_uvloop
    if uvloop:
        try:
            import uvloop as _  # noqa: F401
        except ImportError:
            uvloop = False

    def starter(name: str, load: str, rnd: int) -> Callable[[], ServerProcess]:
        if name == "geard":
            prof = (os.path.join(args.profile, f"geard-{load}-{rnd + 1}.prof")
                    if args.profile else None)
            return lambda: ServerProcess(name, geard_args(uvloop, prof), env=OUR_ENV)
        if name == "geard-durable":
            prof = (os.path.join(args.profile, f"geard-durable-{load}-{rnd + 1}.prof")
                    if args.profile else None)
            return lambda: DurableServer(uvloop, prof, OUR_ENV)
        if name == "geard+scrape":
            return lambda: ScrapedServer(geard_args(uvloop, None), env=OUR_ENV)
        if name == "gearmand":
            return lambda: ServerProcess(name, gearmand_args())
        return lambda: ServerProcess(name, gear016_args())

    def run_round(name: str, load: str, rnd: int) -> None:
        if load == "deep":
            cap = 30.0 if name != "gear016" else 10.0

            def fn(port: int) -> Any:
                return loadgen.load_deep(port, deep_jobs, cap)
        elif load == "bg":
            def fn(port: int) -> Any:
                return loadgen.load_bg(port, secs)
        else:
            def fn(port: int) -> Any:
                return loadgen.load_fg(port, secs)
        result, cpu, calls = run_load(starter(name, load, rnd), fn)
        if load == "deep":
            sub, drain = result
            # Submit and drain share one server process: its CPU is split by phase only in
            # total, so the per-job figure covers submit + drain of each job.
            record(name, "deep-submit", sub, 0.0, 0, sub.jobs)
            s = record(name, "deep-drain", drain, cpu, calls, drain.jobs)
            print(f"  deep round {rnd + 1} {name:9} submit {sub.jobs:7d} jobs {sub.rate:10,.0f}/s"
                  f"   drain {drain.jobs:7d} jobs {drain.rate:10,.0f}/s  server "
                  f"{s.cpu_us:5.1f} us/job  loadgen {s.loadgen_load:4.0%} CPU", flush=True)
        else:
            s = record(name, load, result, cpu, calls, result.jobs)
            print(f"  {load:4} round {rnd + 1} {name:9} {result.jobs:8d} jobs "
                  f"{result.seconds:5.2f}s {result.rate:10,.0f}/s  server {s.cpu_us:5.1f} us/job "
                  f"{calls_text(s.calls)} calls/job  loadgen {s.loadgen_load:4.0%} CPU",
                  flush=True)

    print(f"geard event loop: {'uvloop' if uvloop else 'asyncio'}; gearmand: package defaults "
          f"(-t 4); machine: {os.cpu_count()} CPUs; {rounds} alternating round(s), {secs}s per "
          f"bg/fg run, deep {deep_jobs} jobs", flush=True)
    t_start = time.perf_counter()
    for load in ("bg", "fg", "deep"):
        if load not in loads:
            continue
        # Alternate servers round by round (geard, gearmand, geard, gearmand...) so that drift
        # on a shared machine hits all of them alike; gear 0.16 is slow and far off: one round.
        for rnd in range(rounds):
            for name in names:
                if name == "gear016" and rnd > 0:
                    continue
                run_round(name, load, rnd)

    keys = [k for k in ("bg", "fg", "deep-submit", "deep-drain")
            if any((n, k) in SAMPLES for n in names)]
    print(f"\nmedian rates (jobs/s) over the rounds; ratios are ratios of medians "
          f"[{time.perf_counter() - t_start:.0f} s]")
    header = f"{'load':12}" + "".join(f"{n:>12}" for n in names)
    if "geard" in names:
        header += "".join(f"{'geard/' + n:>16}" for n in names if n != "geard")
    print(header)
    for key in keys:
        row = f"{key:12}" + "".join(f"{med(n, key, 'rate') or 0:12,.0f}" for n in names)
        ours = med("geard", key, "rate")
        if ours is not None:
            for n in names:
                if n != "geard":
                    other = med(n, key, "rate")
                    row += f"{(ours / other if other else float('nan')):15.2f}x"
        print(row)
    if "geard-durable" in names and "gearmand" in names:
        print("geard-durable/gearmand (issue 14's goals: bg >= 1.2x, fg >= 1.5x):", "  ".join(
            f"{key} {ratio:.2f}x" for key in keys
            if (ratio := _ratio(med("geard-durable", key, "rate"), med("gearmand", key, "rate")))
            is not None))
    print("\nserver cost per job (median; CPU of all its threads from /proc, read+write "
          "syscalls) and load generator CPU (share of one core, max of its processes' sum):")
    for key in ("bg", "fg", "deep-drain"):
        cells = []
        for n in names:
            cpu = med(n, key, "cpu_us")
            if cpu is not None:
                cells.append(f"{n} {cpu:6.1f} us {calls_text(med(n, key, 'calls'))} calls "
                             f"(loadgen {med(n, key, 'loadgen_load'):4.0%})")
        if cells:
            label = "deep" if key == "deep-drain" else key
            print(f"  {label:5} " + "   ".join(cells))
    print("\ntargets: geard/gearmand >= 1.00x on every load; geard/gear016 >= 10x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
