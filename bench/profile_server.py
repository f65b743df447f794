"""In-process micro-benchmarks of the broker's hot paths (no sockets, no event loop).

Run: ``python3 bench/profile_server.py [--jobs N] [--repeat R] [--profile {bg,fg,drain}]
[--observe] [--loads bg,fg,...] [--callgrind]``

The quickest loop for optimising :mod:`gear.server.broker` (the framing loop and runs of submits
in ``pipeline.py``, submissions and handlers in ``requests.py``, queues and the one job exit in
``core.py``, the store hand-off in ``durable.py``): it feeds pre-encoded request bytes
straight into ``Broker.feed`` the way the network layer does and reports broker CPU
microseconds per job (``time.process_time``, best of ``--repeat``; CPU time rather than wall
time, so other processes on a shared machine disturb it little):

* ``bg``: SUBMIT_JOB_BG in reads of 500 packets (the bench ``bg`` load; jobs pile up in memory
  as they do there);
* ``fg``: SUBMIT_JOB from one client in reads of 4, four workers each GRAB_JOB_UNIQ ->
  JOB_ASSIGN_UNIQ -> WORK_COMPLETE + GRAB_JOB_UNIQ, results forwarded to the client;
* ``drain``: the same workers emptying a deep queue of background jobs.
* ``uniq``: ``bg`` with a distinct unique per job (what libgearman and bench_durable send);
* ``durable``: ``uniq`` with a batched store (``store_batched``): the records go to a list as
  ``StorageWriter.add_many`` would take them, and each read's batch is answered with one
  ``stored_batch`` call as the writer's commit does. ``durable - uniq`` is the per-job CPU the
  durable path adds on the event loop thread (the writer thread's own work is not included).
* ``durable-bg``: ``bg`` (empty unique, 16-byte data, reads of 500) with that batched store:
  what ``bench_server.py --only geard-durable --loads bg`` sends to geard's default SQLite
  queue. ``durable-bg - bg`` is what durability costs the loop thread there.

``--observe`` registers ``geard --http-port``'s metrics observer
(:class:`~gear.server.observe.metrics.JobMetrics`) on every broker: the difference is what the
metrics cost the broker per job (docs/operations.md §5).

``--loads`` picks the loads to run (default: all). ``--callgrind`` counts instead of timing: each
chosen load runs under ``valgrind --tool=callgrind`` at ``--jobs`` and at twice that, without
and with the observer, and the difference in instructions divided by the difference in jobs is
printed (start-up and the load's set-up cancel out). Instruction counts do not depend on the
machine's load, so they compare a change before and after; run with ``PYTHONHASHSEED=0``
(set for the children if unset) and the same interpreter.

The garbage collector is tuned as geard tunes it (``engine.tune_gc``). ``--profile LOAD`` runs
that load under cProfile and prints the top functions. Nothing here is asserted. Must not import
the network layer's event loop code beyond ``tune_gc``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from gear import constants as c  # noqa: E402
from gear.protocol.packets import request  # noqa: E402
from gear.server.broker import Broker, BrokerConfig, Job, Peer  # noqa: E402
from gear.server.engine import tune_gc  # noqa: E402

FUNCTION = b"bench"
HEADER_SIZE = 12


#: Set by ``--observe``: every broker gets the metrics observer.
OBSERVE = False


#: broker -> its metrics' count (``--observe``).
_COUNTS: dict[Broker, Callable[[], None]] = {}
#: Ended jobs the job log holds before ``_end_pass`` counts it (geard counts it every
#: ``metrics.COUNT_INTERVAL``, 0.1 s: about this many jobs under the fg load).
COUNT_EVERY = 1024


def _observed(broker: Broker) -> Broker:
    """With ``--observe``: the metrics on ``broker``, its log counted by :func:`_end_pass`
    every :data:`COUNT_EVERY` entries (geard counts it on a timer)."""
    if OBSERVE:
        from gear.server.observe.metrics import JobMetrics

        metrics = JobMetrics()
        metrics.bind(broker)
        _COUNTS[broker] = metrics.count
    return broker


def _end_pass(broker: Broker) -> None:
    """What the server's flush does at the end of an event-loop pass, but the writes: the
    dirty set emptied and, with ``--observe``, the job log counted once it holds
    :data:`COUNT_EVERY` entries, completed jobs' columns included (geard's timer does that). A
    pass here is one round of a load's loop (one client read and the workers' replies to it, or
    one read of 500 submits); a live geard's passes are smaller (one or two jobs under the fg
    and deep loads)."""
    broker.dirty.clear()
    count = _COUNTS.get(broker)
    if count is not None:
        pending = len(broker.job_log)  # type: ignore[arg-type]  # set with the metrics
        for f in broker.log_functions:
            pending += len(f.log_ended)
        if pending >= COUNT_EVERY:
            count()


def _broker() -> Broker:
    return _observed(Broker(BrokerConfig(handle_prefix=b"H:bench-host")))


def _take(peer: Peer) -> bytes:
    data = b"".join(peer.out)
    peer.out.clear()
    return data


def _workers(broker: Broker, n: int) -> list[Peer]:
    workers = [broker.connect("127.0.0.1", 2000 + i, 20 + i) for i in range(n)]
    for w in workers:
        broker.feed(w, request(c.CAN_DO, FUNCTION))
    return workers


def _work(broker: Broker, workers: list[Peer], grab: bytes) -> int:
    """Every worker grabs one job and completes it (the reply + next GRAB in one read)."""
    done = 0
    for w in workers:
        broker.feed(w, grab)
        out = _take(w)
        if out[7] == c.JOB_ASSIGN_UNIQ:
            handle = out[HEADER_SIZE : out.index(b"\x00", HEADER_SIZE)]
            broker.feed(w, request(c.WORK_COMPLETE, handle, b"ok"))
            done += 1
    return done


def load_bg(jobs: int) -> float:
    broker = _broker()
    client = broker.connect("127.0.0.1", 1000, 10)
    chunk = request(c.SUBMIT_JOB_BG, FUNCTION, b"", b"x" * 16) * 500
    t0 = time.process_time()
    for _ in range(jobs // 500):
        broker.feed(client, chunk)
        client.out.clear()
        _end_pass(broker)
    return time.process_time() - t0


def _unique_chunks(jobs: int, size: int) -> list[bytes]:
    head = request(c.SUBMIT_JOB_BG, FUNCTION, b"u-%012d" % 0, b"x" * 64)[:12]
    return [b"".join([head + FUNCTION + b"\x00u-%012d\x00" % i + b"x" * 64
                      for i in range(start, start + size)])
            for start in range(0, jobs - size + 1, size)]


def load_uniq(jobs: int) -> float:
    broker = _broker()
    client = broker.connect("127.0.0.1", 1000, 10)
    chunks = _unique_chunks(jobs, 256)
    t0 = time.process_time()
    for chunk in chunks:
        broker.feed(client, chunk)
        client.out.clear()
        _end_pass(broker)
    return time.process_time() - t0


def _durable_run(chunks: list[bytes]) -> float:
    """Feed ``chunks`` to a broker with a batched store, each read's batch answered at once."""
    records: list[object] = []
    tokens: list[Job] = []
    lock = threading.Lock()  # StorageWriter.add's lock, to count its cost

    def add(new: list[object], jobs: list[Job]) -> None:
        with lock:
            records.extend(new)
            tokens.extend(jobs)

    broker = _observed(Broker(BrokerConfig(handle_prefix=b"H:bench-host", store_batched=add)))
    client = broker.connect("127.0.0.1", 1000, 10)
    t0 = time.process_time()
    for chunk in chunks:
        broker.feed(client, chunk)
        batch = tokens[:]
        tokens.clear()
        records.clear()
        broker.stored_batch(batch, None)
        client.out.clear()
        _end_pass(broker)
    return time.process_time() - t0


def load_durable(jobs: int) -> float:
    return _durable_run(_unique_chunks(jobs, 256))


def load_durable_bg(jobs: int) -> float:
    chunk = request(c.SUBMIT_JOB_BG, FUNCTION, b"", b"x" * 16) * 500
    return _durable_run([chunk] * (jobs // 500))


def load_fg(jobs: int) -> float:
    broker = _broker()
    client = broker.connect("127.0.0.1", 1000, 10)
    workers = _workers(broker, 4)
    chunk = request(c.SUBMIT_JOB, FUNCTION, b"", b"x" * 16) * 4
    grab = request(c.GRAB_JOB_UNIQ)
    t0 = time.process_time()
    for _ in range(jobs // 4):
        broker.feed(client, chunk)
        _work(broker, workers, grab)
        client.out.clear()
        _end_pass(broker)
    return time.process_time() - t0


def load_drain(jobs: int) -> float:
    broker = _broker()
    client = broker.connect("127.0.0.1", 1000, 10)
    broker.feed(client, request(c.SUBMIT_JOB_BG, FUNCTION, b"", b"x" * 16) * jobs)
    workers = _workers(broker, 4)
    grab = request(c.GRAB_JOB_UNIQ)
    t0 = time.process_time()
    while _work(broker, workers, grab):
        _end_pass(broker)
    return time.process_time() - t0


#: Each returns the CPU seconds of its measured phase (drain: the draining only).
LOADS: dict[str, Callable[[int], float]] = {
    "bg": load_bg, "fg": load_fg, "drain": load_drain, "uniq": load_uniq, "durable": load_durable,
    "durable-bg": load_durable_bg,
}


def _instructions(load: str, jobs: int, observe: bool) -> int:
    """Instructions callgrind counts for one run of ``load`` with ``jobs`` jobs."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
               sys.executable, __file__, "--loads", load, "--jobs", str(jobs), "--repeat", "1"]
        if observe:
            cmd.append("--observe")
        env = dict(os.environ)
        env.setdefault("PYTHONHASHSEED", "0")
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
        if match is None:
            raise SystemExit(f"no instruction total in {out}")
        return int(match.group(1))


def callgrind(loads: list[str], jobs: int) -> None:
    """Instructions per job of each load, without and with the metrics observer."""
    for name in loads:
        per_job = []
        for observe in (False, True):
            low = _instructions(name, jobs, observe)
            high = _instructions(name, 2 * jobs, observe)
            per_job.append((high - low) / jobs)
        plain, observed = per_job
        print(f"{name:10} {plain:9,.0f} instr/job without metrics, {observed:9,.0f} with "
              f"({(observed / plain - 1) * 100:+.1f}%)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", choices=sorted(LOADS), default=None)
    parser.add_argument("--observe", action="store_true",
                        help="register geard --http-port's metrics observer on every broker")
    parser.add_argument("--loads", default=",".join(LOADS),
                        help="comma-separated loads to run (default: all)")
    parser.add_argument("--callgrind", action="store_true",
                        help="instructions per job under valgrind, without and with --observe")
    args = parser.parse_args(argv)
    loads = args.loads.split(",")
    unknown = set(loads) - set(LOADS)
    if unknown:
        parser.error(f"unknown loads: {', '.join(sorted(unknown))}")
    if args.callgrind:
        callgrind(loads, args.jobs)
        return 0
    global OBSERVE
    OBSERVE = args.observe
    tune_gc()
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(LOADS[args.profile], args.jobs)
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        return 0
    for name in loads:
        load = LOADS[name]
        times = []
        for _ in range(args.repeat):
            gc.collect()  # the previous run's broker is cyclic garbage: not on this run's clock
            times.append(load(args.jobs))
            _COUNTS.clear()  # the broker is garbage now, with or without --observe
        best = min(times) * 1e6 / args.jobs
        print(f"{name:10} {best:6.2f} us/job (broker CPU, best of {args.repeat}; "
              f"median {sorted(times)[len(times) // 2] * 1e6 / args.jobs:6.2f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
