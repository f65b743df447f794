"""A pipelined raw-socket Gearman load generator (used by bench_server.py; runnable alone).

Run: ``python3 bench/loadgen.py PORT {bg,fg,deep} [--seconds S] [--jobs N]``

Clients run in one process and workers in another (each a selector over its sockets), apart
from the server, with TCP_NODELAY, pre-encoded packets and batched writes. Few processes on
purpose: on a 2-core machine every extra runnable process takes CPU from the server under test
(a multi-threaded server gets more scheduler share against many load processes than a
single-threaded one does):

* ``submitter``: keeps ``inflight`` SUBMIT_JOB_BG (or SUBMIT_JOB) requests outstanding and
  counts replies by scanning the byte stream for the reply header with ``bytes.count`` (C speed;
  handles are ASCII, so a header cannot appear inside one).
* ``worker``: CAN_DO, then GRAB_JOB_UNIQ; JOB_ASSIGN_UNIQ -> WORK_COMPLETE + the next GRAB_JOB_UNIQ
  in one write; NO_JOB -> PRE_SLEEP; NOOP -> GRAB_JOB_UNIQ.

Loads (the loads of docs/benchmarks.md):

* ``bg``: background submits, 1 connection, 500 in flight.
* ``fg``: foreground end to end, 2 clients x 100 in flight, 4 workers.
* ``deep``: N background jobs submitted (pipelined), then drained by 4 workers.

Every load stops at its job count or its time cap (``--seconds``; deep: for each phase),
whichever comes first, and reports the jobs it completed and the seconds it took; replies still
in flight at the cap are not counted. Each load submits to a function of its own, and fg and
deep refuse to run on a server that still holds queued jobs (a bg run leaves its jobs queued):
restart the server between runs. Must not import the server.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import select
import selectors
import socket
import struct
import sys
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from typing import Any

REQ = b"\x00REQ"
HEADER = struct.Struct("!4sII")
CAN_DO, PRE_SLEEP, NOOP, SUBMIT_JOB, JOB_CREATED = 1, 4, 6, 7, 8
NO_JOB, WORK_COMPLETE, SUBMIT_JOB_BG, ERROR, GRAB_JOB_UNIQ, JOB_ASSIGN_UNIQ = 10, 13, 18, 19, 30, 31
#: Each load its own function, so that one never runs jobs another left queued (fg after bg on
#: the same server used to drain bg's 300,000 jobs first and report 21 jobs/s).
FUNCTIONS = {"bg": b"bench-bg", "fg": b"bench-fg", "deep": b"bench-deep"}
#: Processes the 4 workers of fg and deep are spread over (see the module docstring).
WORKER_PROCS = int(os.environ.get("LOADGEN_WORKER_PROCS", "1"))


def packet(ptype: int, *args: bytes) -> bytes:
    body = b"\x00".join(args)
    return HEADER.pack(REQ, ptype, len(body)) + body


def reply_marker(ptype: int) -> bytes:
    """The first 8 header bytes of a server reply of this type (magic + type)."""
    return b"\x00RES" + struct.pack("!I", ptype)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return sock


class _Submitter:
    """One client connection keeping ``inflight`` submits outstanding until ``total`` done."""

    def __init__(self, port: int, total: int, inflight: int, background: bool,
                 function: bytes) -> None:
        ptype = SUBMIT_JOB_BG if background else SUBMIT_JOB
        self.one = packet(ptype, function, b"", b"x" * 16)
        # A background submit is done at JOB_CREATED, a foreground one at WORK_COMPLETE.
        self.marker = reply_marker(JOB_CREATED if background else WORK_COMPLETE)
        self.keep = len(self.marker) - 1
        self.sock = _connect(port)
        self.total = total
        self.inflight = inflight
        self.sent = self.done = 0
        self.tail = b""
        self.finished = False

    def begin(self) -> None:
        self.sent = min(self.inflight, self.total)
        self.sock.sendall(self.one * self.sent)

    def on_data(self, data: bytes, accepting: bool) -> None:
        buf = self.tail + data
        n = buf.count(self.marker)
        if n:
            self.done += n
            more = min(n, self.total - self.sent)
            if more > 0 and accepting:
                self.sock.sendall(self.one * more)
                self.sent += more
        elif _ERROR in buf:
            raise SystemExit(f"server answered ERROR: {buf[:200]!r}")
        self.tail = buf[-self.keep:]
        if self.done >= self.sent:
            self.finished = True


_ERROR = reply_marker(ERROR)


def submitters(port: int, clients: int, total: int, inflight: int, background: bool,
               seconds: float, start_at: float, result: Any, function: bytes) -> None:
    """``clients`` connections in ONE process (a selector): each submits ``total`` jobs with
    ``inflight`` outstanding, until the time cap. Puts (done, elapsed): what is still in flight
    at the cap is not counted, so a run never outlasts ``seconds``."""
    conns = [_Submitter(port, total, inflight, background, function) for _ in range(clients)]
    sel = selectors.DefaultSelector()
    for conn in conns:
        sel.register(conn.sock, selectors.EVENT_READ, conn)
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.perf_counter()
    deadline = t0 + seconds
    for conn in conns:
        conn.begin()
    active = len(conns)
    while active:
        left = deadline - time.perf_counter()
        if left <= 0:
            break
        for key, _ in sel.select(left):
            conn = key.data
            data = conn.sock.recv(1 << 20)
            if not data:
                raise SystemExit("server closed the connection")
            conn.on_data(data, True)
            if conn.finished:
                sel.unregister(conn.sock)
                active -= 1
    result.put((sum(c.done for c in conns), time.perf_counter() - t0, time.process_time()))
    for conn in conns:
        conn.sock.close()


class _Worker:
    """One raw worker connection: GRAB_JOB_UNIQ -> WORK_COMPLETE + GRAB_JOB_UNIQ in one write."""

    grab = packet(GRAB_JOB_UNIQ)
    pre_sleep = packet(PRE_SLEEP)
    complete_head = REQ + struct.pack("!I", WORK_COMPLETE)

    def __init__(self, port: int, function: bytes) -> None:
        self.sock = _connect(port)
        self.sock.sendall(packet(CAN_DO, function) + self.grab)
        self.buf = b""

    def on_data(self, data: bytes) -> int:
        buf = self.buf + data if self.buf else data
        pos = 0
        n = len(buf)
        out: list[bytes] = []
        done = 0
        unpack_from = HEADER.unpack_from
        while n - pos >= 12:
            _magic, ptype, size = unpack_from(buf, pos)
            end = pos + 12 + size
            if end > n:
                break
            if ptype == JOB_ASSIGN_UNIQ:
                handle = buf[pos + 12 : buf.index(b"\x00", pos + 12)]
                body = handle + b"\x00ok"
                out.append(self.complete_head + struct.pack("!I", len(body)) + body)
                out.append(self.grab)
                done += 1
            elif ptype == NO_JOB:
                out.append(self.pre_sleep)
            elif ptype == NOOP:
                out.append(self.grab)
            pos = end
        self.buf = buf[pos:]
        if out:
            self.sock.sendall(b"".join(out))
        return done


def workers(port: int, count: int, counter: Synchronized[int], stop: Any,
            cpu: Synchronized[float], function: bytes) -> None:
    """``count`` raw workers in ONE process until ``stop`` is set; ``cpu`` gets the CPU seconds
    this process used up to each reported batch.

    Kept cheap on purpose (the drain load saturated a selectors-based version before the
    server): epoll directly, one recv and at most one send per wake-up and connection.
    """
    conns = [_Worker(port, function) for _ in range(count)]
    by_fd = {conn.sock.fileno(): conn for conn in conns}
    ep = select.epoll()
    for fd in by_fd:
        ep.register(fd, select.EPOLLIN)
    poll = ep.poll
    is_set = stop.is_set
    passes = 0
    try:
        while True:
            # mp.Event.is_set takes a lock: checked every 64 passes, not per wake-up.
            passes += 1
            if not passes & 63 and is_set():
                break
            done = 0
            events = poll(0.1)
            if not events and is_set():
                break
            for fd, _ in events:
                conn = by_fd[fd]
                data = conn.sock.recv(1 << 20)
                if not data:
                    return
                done += conn.on_data(data)
            if done:
                with counter.get_lock():
                    counter.value += done
                cpu.value = time.process_time()
    finally:
        ep.close()
        for conn in conns:
            conn.sock.close()


@dataclass
class Result:
    jobs: int
    seconds: float
    #: CPU seconds the load generator's own processes used (to show it is not the bottleneck).
    loadgen_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else 0.0


def _ctx() -> Any:
    return mp.get_context("fork")


def queued_jobs(port: int) -> int:
    """Jobs queued (not running) on the server, from the admin ``status`` command."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"status\n")
        buf = b""
        while not (buf == b".\n" or buf.endswith(b"\n.\n")):
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
    queued = 0
    for line in buf.decode("utf-8", "replace").splitlines():
        parts = line.split("\t")
        if len(parts) >= 4 and parts[1].isdigit() and parts[2].isdigit():
            queued += int(parts[1]) - int(parts[2])
    return queued


def require_idle(port: int, load: str) -> None:
    """Refuse to measure ``load`` on a server that still holds queued jobs (a bg run leaves its
    jobs queued): the figure would be of that backlog, not of the load."""
    queued = queued_jobs(port)
    if queued:
        raise SystemExit(f"{load}: the server holds {queued:,} queued jobs (left by an earlier "
                         f"bg or deep run?): restart it, or the figure would measure them")


def _submit(port: int, clients: int, per_client: int, inflight: int, background: bool,
            seconds: float, function: bytes) -> Result:
    ctx = _ctx()
    results = ctx.Queue()
    start_at = time.time() + 0.3  # connected before the clock starts
    proc = ctx.Process(target=submitters, args=(port, clients, per_client, inflight, background,
                                                seconds, start_at, results, function))
    proc.start()
    done, elapsed, cpu = results.get(timeout=seconds + 120)
    proc.join()
    return Result(done, elapsed, cpu)


class _WorkerPool:
    """``count`` workers spread over ``procs`` processes sharing one job counter."""

    def __init__(self, port: int, count: int, procs: int, function: bytes) -> None:
        ctx = _ctx()
        self.counter = ctx.Value("q", 0)
        self.stop = ctx.Event()
        self.cpus = [ctx.Value("d", 0.0) for _ in range(procs)]
        self.procs = []
        for i, cpu in enumerate(self.cpus):
            n = count // procs + (1 if i < count % procs else 0)
            proc = ctx.Process(target=workers,
                               args=(port, n, self.counter, self.stop, cpu, function))
            proc.start()
            self.procs.append(proc)

    @property
    def cpu(self) -> float:
        return sum(cpu.value for cpu in self.cpus)

    def close(self) -> None:
        self.stop.set()
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()


def load_bg(port: int, seconds: float = 5.0, jobs: int = 5_000_000) -> Result:
    """(1) background submits, 1 connection, 500 in flight (the time cap ends it)."""
    return _submit(port, 1, jobs, 500, True, seconds, FUNCTIONS["bg"])


def load_fg(port: int, seconds: float = 5.0, jobs: int = 1_000_000,
            worker_procs: int = WORKER_PROCS) -> Result:
    """(2) foreground end to end, 2 clients x 100 in flight, 4 raw workers."""
    require_idle(port, "fg")
    pool = _WorkerPool(port, 4, worker_procs, FUNCTIONS["fg"])
    try:
        cpu0 = pool.cpu  # connected and registered before the clients start
        result = _submit(port, 2, jobs // 2, 100, False, seconds, FUNCTIONS["fg"])
        result.loadgen_cpu += pool.cpu - cpu0
        return result
    finally:
        pool.close()


def load_deep(port: int, jobs: int = 200_000, seconds: float = 20.0,
              worker_procs: int = WORKER_PROCS) -> tuple[Result, Result]:
    """(3) ``jobs`` background jobs submitted, then drained by 4 workers: (submit, drain)."""
    require_idle(port, "deep")
    submitted = _submit(port, 1, jobs, 500, True, seconds, FUNCTIONS["deep"])
    t0 = time.perf_counter()
    pool = _WorkerPool(port, 4, worker_procs, FUNCTIONS["deep"])
    deadline = t0 + seconds
    counter = pool.counter
    while counter.value < submitted.jobs and time.perf_counter() < deadline:
        time.sleep(0.002)
    drained = Result(counter.value, time.perf_counter() - t0, pool.cpu)
    pool.close()
    return submitted, drained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("load", choices=["bg", "fg", "deep"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args(argv)
    if args.load == "bg":
        r = load_bg(args.port, args.seconds, args.jobs or 300_000)
        print(f"bg: {r.jobs} jobs in {r.seconds:.2f}s = {r.rate:,.0f}/s")
    elif args.load == "fg":
        r = load_fg(args.port, args.seconds, args.jobs or 100_000)
        print(f"fg: {r.jobs} jobs in {r.seconds:.2f}s = {r.rate:,.0f}/s")
    else:
        s, d = load_deep(args.port, args.jobs or 200_000, args.seconds)
        print(f"deep: submit {s.rate:,.0f}/s ({s.jobs}), drain {d.rate:,.0f}/s ({d.jobs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
    os._exit(0)
