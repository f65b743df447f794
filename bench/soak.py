"""Soak: hours of mixed load on a real geard, watching its memory, descriptors and latency.

Run: ``python3 bench/soak.py [--minutes 20] [--interval 10] [--clients 4] [--workers 6]
[--rate 60] [--restart-at 0.5] [--csv FILE]``

The deployment shape (docs/benchmarks.md, "Soak"):

* a geard **subprocess** with its default durable storage (sqlite, in a temporary data dir; the
  queue file is named with ``--queue`` so that the restart, on the port the first start got,
  opens the same file), on port 0 (the port is read from /proc);
* ``--clients`` client **processes**, each a loop of short sessions (client churn: connect,
  submit a few batches, leave): foreground and background submits of every priority, some
  background jobs with a unique, some foreground jobs with a unique shared by every client (so
  that coalescing happens), and now and then a session that submits foreground jobs and leaves
  without waiting for them;
* ``--workers`` worker **processes** with churn: each does a random number of jobs and exits,
  one exit in five abruptly while it holds a job (the server must requeue it), and a new worker
  process takes its place;
* a geard **restart** at ``--restart-at`` of the run (SIGTERM: the graceful shutdown; then a new
  geard on the same port and data dir); clients and workers reconnect by themselves.

Every ``--interval`` seconds one line: geard's RSS, open descriptors, connections (admin
``workers``), queued jobs, completed jobs/s, and the p50/p99/max latency of the foreground jobs
completed in the interval. At ``--minutes`` the clients stop, the workers drain what is queued,
and the summary compares the last third of the samples against the second third (RSS and
descriptors "flat once warm") and counts every acknowledged background job by id: submitted
(JOB_CREATED received) against completed (a worker ran it). A job never completed is lost; the
exit status is 1 when one is, or when RSS or descriptors grew. Foreground jobs cut by the
restart are counted apart: a foreground job is not stored, by design.

The clients and workers speak the protocol on raw sockets (bench/loadgen.py's framing), not
through the package, so that the load does not depend on the code under test. Must not import
the server. Nothing here is asserted by the test suite beyond a few-second smoke run.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from tests.support.peers import listening_ports, wait_for  # noqa: E402

from loadgen import HEADER, packet  # noqa: E402

# Packet types (docs/protocol.md has the table).
CAN_DO, PRE_SLEEP, NOOP, SUBMIT_JOB, JOB_CREATED, GRAB_JOB, NO_JOB = 1, 4, 6, 7, 8, 9, 10
WORK_COMPLETE, WORK_FAIL, SUBMIT_JOB_BG, ERROR = 13, 14, 18, 19
SUBMIT_JOB_HIGH, WORK_EXCEPTION, SUBMIT_JOB_HIGH_BG = 21, 25, 32
GRAB_JOB_UNIQ, JOB_ASSIGN_UNIQ, SUBMIT_JOB_LOW, SUBMIT_JOB_LOW_BG = 30, 31, 33, 34
FG_TYPES = (SUBMIT_JOB, SUBMIT_JOB, SUBMIT_JOB, SUBMIT_JOB_HIGH, SUBMIT_JOB_LOW)
BG_TYPES = (SUBMIT_JOB_BG, SUBMIT_JOB_BG, SUBMIT_JOB_BG, SUBMIT_JOB_HIGH_BG, SUBMIT_JOB_LOW_BG)
#: How many NUL-separated arguments each reply we read has (the rest is data).
ARGS = {JOB_CREATED: 1, WORK_COMPLETE: 2, WORK_FAIL: 1, WORK_EXCEPTION: 2, ERROR: 2,
        JOB_ASSIGN_UNIQ: 4, NOOP: 0, NO_JOB: 0}
FUNCTION = b"soak"
#: Shared uniques for foreground jobs: concurrent clients coalesce on them.
SHARED_UNIQUES = 16


class Lost(Exception):
    """The connection to geard closed (a restart, or geard refused us)."""


class Conn:
    """One blocking connection to geard that yields whole reply packets."""

    def __init__(self, port: int, timeout: float) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=2.0)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise Lost(str(exc)) from exc

    def read(self) -> list[tuple[int, list[bytes]]]:
        """The packets that one recv completes ([] on the read timeout)."""
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return []
        except OSError as exc:
            raise Lost(str(exc)) from exc
        if not data:
            raise Lost("closed")
        self.buf += data
        out = []
        while len(self.buf) >= 12:
            magic, ptype, size = HEADER.unpack_from(self.buf)
            if magic != b"\x00RES":
                raise Lost(f"bad reply {self.buf[:40]!r}")
            if len(self.buf) < 12 + size:
                break
            body = self.buf[12:12 + size]
            self.buf = self.buf[12 + size:]
            n = ARGS.get(ptype, 1)
            out.append((ptype, body.split(b"\x00", n - 1) if n else []))
        return out

    def finish(self) -> None:
        """Leave politely: half-close, then read until geard closes. A close with unread
        input sends RST instead of FIN, and RST makes the kernel drop what geard had not
        read yet, such as our last WORK_COMPLETE (the job would then run again)."""
        self.sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                if not self.sock.recv(65536):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


def connect(port: int, timeout: float, stop: Any) -> Conn | None:
    """Connect, retrying with a back-off while geard is down; None once ``stop`` is set."""
    delay = 0.05
    while not stop.is_set():
        try:
            return Conn(port, timeout)
        except OSError:
            time.sleep(delay)  # geard is restarting: a back-off, not a synchronisation
            delay = min(delay * 2, 1.0)
    return None


# -- clients ---------------------------------------------------------------------------------

@dataclass
class ClientReport:
    """What one client process did since its last report."""

    index: int
    fg_done: int = 0
    fg_failed: int = 0
    fg_cut: int = 0
    errors: list[bytes] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    bg_acked: list[int] = field(default_factory=list)


def client_main(index: int, port: int, rate: float, stop: Any, out: Any, seed: int) -> None:
    """Sessions until ``stop``: connect, a few batches (paced to ``rate`` jobs/s), leave."""
    rnd = random.Random(seed)
    report = ClientReport(index)
    last = time.monotonic()
    # One counter for the process, advanced per job submitted whatever happens to its batch:
    # an id is never reused (a reused id would hide a lost job behind its namesake).
    seq = itertools.count(1)
    while not stop.is_set():
        conn = connect(port, 0.5, stop)
        if conn is None:
            break
        batches = rnd.randint(1, 20)
        leaver = rnd.random() < 0.1
        try:
            for _ in range(batches):
                if stop.is_set():
                    break
                started = time.monotonic()
                size = rnd.randint(1, 8)
                _batch(conn, rnd, index, seq, size, report, leaver)
                if leaver:
                    break
                now = time.monotonic()
                if now - last >= 0.5:
                    out.put(report)
                    report, last = ClientReport(index), now
                # Pacing to the offered rate (a load generator's think time).
                time.sleep(max(0.0, size / rate - (now - started)))
        except Lost:
            pass
        conn.close()
    out.put(report)


def _batch(conn: Conn, rnd: random.Random, index: int, seq: Iterator[int], size: int,
           report: ClientReport, leaver: bool) -> None:
    """Submit ``size`` jobs (ids from ``seq``) and wait for every reply."""
    pending: deque[tuple[int, float]] = deque()  # (bg id or -1 for fg, submit time)
    wire = []
    shared_used = False
    for _ in range(size):
        n = next(seq)
        if rnd.random() < 0.5:
            job_id = (index << 40) | n
            unique = b"%d" % job_id if rnd.random() < 0.5 else b""
            wire.append(packet(rnd.choice(BG_TYPES), FUNCTION, unique, b"bg:%d" % job_id))
            pending.append((job_id, 0.0))
        else:
            unique = b""
            if not shared_used and rnd.random() < 0.3:
                unique, shared_used = b"s%d" % rnd.randrange(SHARED_UNIQUES), True
            wire.append(packet(rnd.choice(FG_TYPES), FUNCTION, unique, b"fg:%d" % n))
            pending.append((-1, time.monotonic()))
    conn.send(b"".join(wire))
    if leaver:
        return  # submit and leave: the server must cope with the orphans
    running: dict[bytes, list[float]] = {}
    try:
        while pending or running:
            for ptype, args in conn.read():
                if ptype == JOB_CREATED:
                    job_id, t0 = pending.popleft()
                    if job_id >= 0:
                        report.bg_acked.append(job_id)
                    else:
                        running.setdefault(args[0], []).append(t0)
                elif ptype == WORK_COMPLETE:
                    now = time.monotonic()
                    for t0 in running.pop(args[0], []):
                        report.fg_done += 1
                        report.latencies.append(now - t0)
                elif ptype in (WORK_FAIL, WORK_EXCEPTION):
                    report.fg_failed += len(running.pop(args[0], []))
                elif ptype == ERROR:
                    report.errors.append(b" ".join(args))
                    pending.popleft()
    except Lost:
        report.fg_cut += sum(len(v) for v in running.values())
        report.fg_cut += sum(1 for job_id, _ in pending if job_id < 0)
        raise


# -- workers ---------------------------------------------------------------------------------

def worker_main(index: int, port: int, jobs: int, abrupt: bool, work_ms: float, stop: Any,
                out: Any, seed: int) -> None:
    """Do ``jobs`` jobs, then leave (``abrupt``: exit while holding the next one)."""
    rnd = random.Random(seed)
    done: list[int] = []
    fg = 0
    last = time.monotonic()
    grab = packet(GRAB_JOB_UNIQ)
    while jobs > 0 and not stop.is_set():
        conn = connect(port, 0.5, stop)
        if conn is None:
            break
        try:
            conn.send(packet(CAN_DO, FUNCTION) + grab)
            while jobs > 0 and not stop.is_set():
                for ptype, args in conn.read():
                    if ptype == NO_JOB:
                        conn.send(packet(PRE_SLEEP))
                    elif ptype == NOOP:
                        conn.send(grab)
                    elif ptype == JOB_ASSIGN_UNIQ:
                        handle, data = args[0], args[3]
                        if abrupt and jobs == 1:
                            out.put(("w", index, done, fg))
                            out.close()
                            out.join_thread()
                            os._exit(3)  # dies holding a job: geard must requeue it
                        if work_ms:
                            time.sleep(rnd.expovariate(1.0 / work_ms) / 1000.0)
                        jobs -= 1
                        # No GRAB after the last one: no job is handed to a leaving worker.
                        conn.send(packet(WORK_COMPLETE, handle, data) + (grab if jobs else b""))
                        if data.startswith(b"bg:"):
                            done.append(int(data[3:]))
                        else:
                            fg += 1
                now = time.monotonic()
                if now - last >= 0.5:
                    out.put(("w", index, done, fg))
                    done, fg, last = [], 0, now
            conn.finish()
        except Lost:
            pass
        conn.close()
    out.put(("w", index, done, fg))


# -- geard -----------------------------------------------------------------------------------

class Geard:
    """geard as a subprocess, restartable on the same port and data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]))

    def start(self) -> None:
        args = [sys.executable, "-m", "gear.server", "-d", "-p", str(self.port),
                "--listen-address", "127.0.0.1", "--data-dir", str(self.data_dir),
                "--queue", f"sqlite:///{self.data_dir / 'queue.db'}",
                "-l", str(self.data_dir / "geard.log")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=self.env)
        proc = self.proc

        def ready() -> int | None:
            if proc.poll() is not None:
                log = (self.data_dir / "geard.log").read_text(errors="replace")
                raise SystemExit(f"geard exited with {proc.returncode}: {log[-2000:]}")
            ports = listening_ports(proc.pid)
            return ports[0] if ports else None

        self.port = wait_for(ready, timeout=60, what="geard to listen")

    def stop(self) -> float:
        """SIGTERM (the graceful shutdown) and wait; the seconds it took."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.monotonic() - t0

    def rss_kib(self) -> int:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fds(self) -> int:
        assert self.proc is not None
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def admin(self, command: bytes) -> list[bytes]:
        """One admin command on a fresh connection; the reply's lines ([] if geard is away)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sock.sendall(command + b"\n")
                buf = b""
                while not buf.endswith(b".\n"):
                    data = sock.recv(65536)
                    if not data:
                        break
                    buf += data
        except OSError:
            return []
        return buf.split(b"\n")[:-2]

    def connections(self) -> int:
        return max(0, len(self.admin(b"workers")) - 1)  # less our own admin connection

    def queued(self) -> int:
        total = 0
        for line in self.admin(b"status"):
            cols = line.split(b"\t")
            if len(cols) == 4 and cols[0] == FUNCTION:
                total += int(cols[1]) - int(cols[2])
        return total


# -- the run ---------------------------------------------------------------------------------

@dataclass
class Sample:
    """One interval's line."""

    at: float
    rss_kib: int
    fds: int
    conns: int
    queued: int
    jobs_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    #: Which geard process (1, then 2 after the restart) and how long it had been up.
    gen: int = 1
    up: float = 0.0


@dataclass
class Tally:
    """Everything the clients and workers reported."""

    bg_acked: set[int] = field(default_factory=set)
    bg_done: set[int] = field(default_factory=set)
    bg_runs: int = 0
    fg_done: int = 0
    fg_failed: int = 0
    fg_cut: int = 0
    worker_fg: int = 0
    errors: list[bytes] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    all_latencies: list[float] = field(default_factory=list)
    completed: int = 0
    #: (id, worker, when reported) of each background job that ran again.
    twice: list[tuple[int, int, float]] = field(default_factory=list)

    def take(self, msg: Any) -> None:
        if isinstance(msg, ClientReport):
            self.bg_acked.update(msg.bg_acked)
            self.fg_done += msg.fg_done
            self.fg_failed += msg.fg_failed
            self.fg_cut += msg.fg_cut
            self.errors.extend(msg.errors)
            self.latencies.extend(msg.latencies)
        else:
            _, worker, done, fg = msg
            self.bg_runs += len(done)
            now = time.monotonic()
            self.twice.extend((job_id, worker, now) for job_id in done if job_id in self.bg_done)
            self.bg_done.update(done)
            self.worker_fg += fg
            self.completed += len(done) + fg


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Soak:
    """The parent: geard, the processes, the samples."""

    def __init__(self, args: argparse.Namespace, data_dir: Path) -> None:
        self.args = args
        self.ctx = mp.get_context("fork")
        self.stop_clients = self.ctx.Event()
        self.stop_workers = self.ctx.Event()
        self.out: Any = self.ctx.Queue()
        self.geard = Geard(data_dir)
        self.tally = Tally()
        self.samples: list[Sample] = []
        self.workers: dict[int, Any] = {}
        self.clients: list[Any] = []
        self.rnd = random.Random(args.seed)
        self.next_worker = 0
        self.worker_starts = 0
        self.abrupt_exits = 0
        self.gen = 1
        self.t0 = self.started = 0.0  # when the current geard started (monotonic)

    def spawn_worker(self, slot: int) -> None:
        abrupt = self.rnd.random() < 0.2
        jobs = self.rnd.randint(self.args.worker_jobs // 2, self.args.worker_jobs * 3 // 2)
        self.next_worker += 1
        p = self.ctx.Process(target=worker_main, daemon=True, args=(
            self.next_worker, self.geard.port, jobs, abrupt, self.args.work_ms,
            self.stop_workers, self.out, self.rnd.randrange(1 << 30)))
        p.start()
        self.workers[slot] = p
        self.worker_starts += 1

    def churn(self) -> None:
        """Replace the worker processes that left."""
        for slot, p in list(self.workers.items()):
            if not p.is_alive():
                p.join()
                if p.exitcode == 3:
                    self.abrupt_exits += 1
                if not self.stop_workers.is_set():
                    self.spawn_worker(slot)

    def collect(self, until: float) -> None:
        """Take reports until ``until`` (monotonic)."""
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return
            try:
                self.tally.take(self.out.get(timeout=min(left, 0.2)))
            except queue.Empty:
                pass

    def sample(self, t0: float, seconds: float) -> None:
        lat = self.tally.latencies
        self.tally.all_latencies.extend(lat)
        s = Sample(time.monotonic() - t0, self.geard.rss_kib(), self.geard.fds(),
                   self.geard.connections(), self.geard.queued(),
                   (self.tally.completed / seconds) if seconds else 0.0,
                   percentile(lat, 0.5) * 1e3, percentile(lat, 0.99) * 1e3,
                   (max(lat) if lat else 0.0) * 1e3, self.gen, time.monotonic() - self.started)
        self.tally.latencies, self.tally.completed = [], 0
        self.samples.append(s)
        print(f"{s.at:7.0f} {s.rss_kib / 1024:8.1f} {s.fds:5d} {s.conns:5d} {s.queued:6d} "
              f"{s.jobs_s:7.0f} {s.p50_ms:7.1f} {s.p99_ms:7.1f} {s.max_ms:8.1f}", flush=True)

    def run(self) -> int:
        a = self.args
        self.geard.start()
        self.started = time.monotonic()
        print(f"geard pid {self.geard.proc.pid if self.geard.proc else 0} port "
              f"{self.geard.port}, data dir {self.geard.data_dir}; {a.clients} client and "
              f"{a.workers} worker processes, {a.rate:g} jobs/s per client, "
              f"{a.minutes:g} min", flush=True)
        print("      s  RSS MiB   fds conns queued  jobs/s p50 ms  p99 ms   max ms", flush=True)
        for slot in range(a.workers):
            self.spawn_worker(slot)
        for i in range(a.clients):
            p = self.ctx.Process(target=client_main, daemon=True, args=(
                1000 + i, self.geard.port, a.rate, self.stop_clients, self.out,
                self.rnd.randrange(1 << 30)))
            p.start()
            self.clients.append(p)
        self.t0 = t0 = time.monotonic()
        end = t0 + a.minutes * 60
        restart_at = t0 + a.minutes * 60 * a.restart_at if a.restart_at else None
        restarted = None
        tick = t0
        while tick < end:
            nxt = min(tick + a.interval, end)
            while time.monotonic() < nxt:
                self.collect(min(nxt, time.monotonic() + 1.0))
                self.churn()
                if restart_at is not None and time.monotonic() >= restart_at:
                    took = self.geard.stop()
                    self.geard.start()
                    self.gen, self.started = self.gen + 1, time.monotonic()
                    restart_at = None
                    restarted = time.monotonic() - t0
                    print(f"-- geard restarted at {restarted:.0f} s (graceful stop took "
                          f"{took:.1f} s), pid {self.geard.proc.pid if self.geard.proc else 0}",
                          flush=True)
            self.sample(t0, nxt - tick)
            tick = nxt
        return self.finish(restarted)

    def finish(self, restarted: float | None) -> int:
        """Stop the clients, let the workers drain, then the summary."""
        self.stop_clients.set()
        deadline = time.monotonic() + 30
        for p in self.clients:
            while p.is_alive() and time.monotonic() < deadline:
                self.collect(time.monotonic() + 0.2)
            p.join(timeout=1)
        # The drain: workers run what is still queued (a job reaches them at most once more
        # per requeue); done when every acknowledged id was completed, or after the timeout.
        deadline = time.monotonic() + self.args.drain
        while time.monotonic() < deadline and self.tally.bg_acked - self.tally.bg_done:
            self.collect(time.monotonic() + 0.5)
            self.churn()
        self.stop_workers.set()
        for p in self.workers.values():
            while p.is_alive():
                self.collect(time.monotonic() + 0.2)
            p.join()
        self.collect(time.monotonic() + 0.5)
        queued = self.geard.queued()
        self.geard.stop()
        return self.summary(restarted, queued)

    def summary(self, restarted: float | None, queued: int) -> int:
        t = self.tally
        lost = t.bg_acked - t.bg_done
        print("\nsummary")
        n = len(self.samples)
        flat = True
        if n >= 3:
            second, last = self.samples[n // 3:2 * n // 3], self.samples[2 * n // 3:]
            for name, get, slack in (("RSS MiB", lambda s: s.rss_kib / 1024, 4.0),
                                     ("fds", lambda s: float(s.fds), 8.0)):
                a = sorted(get(s) for s in second)
                b = sorted(get(s) for s in last)
                ma, mb = a[len(a) // 2], b[len(b) // 2]
                ok = mb <= ma * 1.10 + slack and max(b) <= max(a) * 1.25 + slack
                flat = flat and ok
                print(f"  {name:8s} start {get(self.samples[0]):.1f}, second third median "
                      f"{ma:.1f} (max {max(a):.1f}), last third median {mb:.1f} "
                      f"(max {max(b):.1f}): {'flat once warm' if ok else 'GREW'}")
        for gen in sorted({s.gen for s in self.samples}):
            mine = [s for s in self.samples if s.gen == gen]
            warm = next((s for s in mine if s.up >= 60), mine[0])
            print(f"  geard {gen}: RSS {warm.rss_kib / 1024:.1f} MiB, {warm.fds} fds at "
                  f"{warm.at:.0f} s ({warm.up:.0f} s up) -> {mine[-1].rss_kib / 1024:.1f} MiB, "
                  f"{mine[-1].fds} fds at {mine[-1].at:.0f} s")
        lat = t.all_latencies
        print(f"  foreground: {t.fg_done} completed, latency p50 {percentile(lat, .5) * 1e3:.1f}"
              f" ms, p99 {percentile(lat, .99) * 1e3:.1f} ms, max {max(lat, default=0) * 1e3:.1f}"
              f" ms; {t.fg_failed} failed, {t.fg_cut} cut by the restart or a leaving client")
        print(f"  background: {len(t.bg_acked)} acknowledged, {len(t.bg_done & t.bg_acked)} "
              f"completed, {t.bg_runs - len(t.bg_done)} ran twice (at-least-once: a WORK_COMPLETE "
              "not counted before its worker left or geard stopped), "
              f"{len(t.bg_done - t.bg_acked)} ran unacknowledged; jobs lost: {len(lost)}")
        print(f"  workers: {self.worker_starts} processes started, {self.abrupt_exits} died "
              f"holding a job; restart at {restarted:.0f} s" if restarted is not None else
              f"  workers: {self.worker_starts} processes started, {self.abrupt_exits} died "
              "holding a job; no restart")
        print(f"  server errors: {len(t.errors)} {sorted(set(t.errors))[:5]}; left queued: "
              f"{queued}")
        if lost:
            print(f"  lost ids (first 10): {sorted(lost)[:10]}")
        if t.twice:
            print("  ran again (id, worker, reported at s): "
                  + ", ".join(f"{i:#x} w{w} {at - self.t0:.1f}" for i, w, at in t.twice[:10]))
        if self.args.csv:
            with open(self.args.csv, "w") as f:
                f.write("seconds,rss_kib,fds,connections,queued,jobs_s,p50_ms,p99_ms,max_ms\n")
                for s in self.samples:
                    f.write(f"{s.at:.0f},{s.rss_kib},{s.fds},{s.conns},{s.queued},"
                            f"{s.jobs_s:.1f},{s.p50_ms:.2f},{s.p99_ms:.2f},{s.max_ms:.2f}\n")
        return 0 if flat and not lost and not t.errors else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--minutes", type=float, default=20.0, help="length of the load phase")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between lines")
    p.add_argument("--clients", type=int, default=4, help="client processes")
    p.add_argument("--workers", type=int, default=6, help="worker processes at any time")
    p.add_argument("--rate", type=float, default=60.0, help="jobs/s offered by each client")
    p.add_argument("--worker-jobs", type=int, default=1500,
                   help="mean jobs a worker process does before it leaves")
    p.add_argument("--work-ms", type=float, default=2.0, help="mean work per job (ms)")
    p.add_argument("--restart-at", type=float, default=0.5,
                   help="restart geard at this fraction of the run (0: never)")
    p.add_argument("--drain", type=float, default=120.0,
                   help="seconds the workers get to drain the queue at the end")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--csv", help="also write the samples to this CSV file")
    p.add_argument("--data-dir", type=Path, help="geard's data dir (its queue and log), kept "
                   "after the run (default: a temporary directory, removed)")
    args = p.parse_args(argv)
    if args.data_dir is not None:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        return Soak(args, args.data_dir).run()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        return Soak(args, Path(tmp)).run()


if __name__ == "__main__":
    sys.exit(main())
