"""HarpCaller calls through geard's harp port, against the same load on plain Gearman.

Usage: ``python3 bench/bench_harp.py [--seconds S] [--threads N] [--stream N] [--quick]
[--worker-loop asyncio|uvloop]``

One geard (``--harp-port``, memory queue, no log) serves every run. A worker *process* serves
procedure ``echo`` of host ``bench`` (Gearman function ``bench/echo``) and the plain Gearman
function ``echo``, built on the harp worker helper: ``gear.aio.HarpWorker`` (an ``async def``)
and ``gear.threaded.harp_worker.HarpWorker`` (threads), each measured. The load, from this
process:

* harp, as HarpCaller clients do: per call one connection for the call request and one for
  ``get_result`` with ``wait`` (``gear.harp``: ``rpc.bench.echo(x).get()``), serially and from
  ``--threads`` client threads; calls/s and p50/p99 latency of a whole call;
* harp-raw: the same two requests from a bare socket client (blocking sockets, no client
  library), which shows what ``gear.harp`` itself costs;
* plain Gearman: a foreground SUBMIT_JOB through gear's threaded ``Client`` (one connection per
  client thread, kept open), waiting for WORK_COMPLETE; same threads; the harp/Gearman ratio;
* a stream: one call yielding ``--stream`` messages, followed live (``follow(since=0)``):
  messages/s from submission to the end line.

Absolute rates drift on shared machines: compare the ratios printed, measured in the same run.

``--callgrind`` counts instructions instead (user space only; they do not depend on the
machine's load): geard, the aio worker and a client process each run under ``valgrind
--tool=callgrind``; after ``--warmup`` calls every counter is zeroed (``callgrind_control
-z``), then ``--calls`` calls run from ``--threads`` client threads (default 1) and every
process dumps its counters (``callgrind_control -d``): instructions per call for each. The
client's load (``--callgrind-load``): ``harp``, ``gear.harp``'s call; ``raw``, the bare socket
client's; ``status``, one ``get_status`` of an unknown id per connection (what a connection
itself costs). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.support.peers import GeardProcess, listening_ports, wait_for  # noqa: E402

import gear  # noqa: E402
import gear.harp as harp  # noqa: E402
from gear import aio  # noqa: E402

PAYLOAD = "x" * 32


# --- the worker process -------------------------------------------------------------------


def serve_aio(port: int, ready: Callable[[], None], loop: str = "asyncio") -> None:
    async def main() -> None:
        worker = aio.Worker(client_id="bench-harp-aio")
        worker.add_server("127.0.0.1", port)
        hw = aio.HarpWorker(worker, "bench")

        @hw.procedure()
        async def echo(x: Any) -> Any:
            return x

        @hw.procedure()
        async def stream(n: int) -> Any:
            for i in range(n):
                yield i

        @worker.function("echo")
        async def plain_echo(job: aio.WorkerJob) -> bytes:
            return job.arguments

        await worker.start(concurrency=16)
        await worker.wait_for_server(10)
        ready()
        await asyncio.Event().wait()  # until SIGTERM

    if loop == "uvloop":  # gear.aio runs on it too (docs/aio.md)
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def serve_threaded(port: int, ready: Callable[[], None]) -> None:
    from gear.threaded.harp_worker import HarpWorker

    # One Worker connection with 8 threads in getJob, as the plain worker below.
    w = gear.Worker("bench-harp-threaded")
    w.addServer("127.0.0.1", port)
    w.waitForServer(10)
    hw = HarpWorker(w, "bench")
    hw.register("echo", lambda x: x)

    def stream(n: int) -> Any:
        yield from range(n)

    hw.register("stream", stream)
    hw.start(threads=8)
    plain = gear.Worker("bench-plain-threaded")
    plain.addServer("127.0.0.1", port)
    plain.waitForServer(10)
    plain.registerFunction("echo")

    def plain_loop() -> None:
        while True:
            job = plain.getJob()
            job.sendWorkComplete(job.arguments)

    for _ in range(8):
        threading.Thread(target=plain_loop, daemon=True).start()
    ready()
    threading.Event().wait()


def worker_main(kind: str, port: int) -> None:
    def ready() -> None:
        print("ready", flush=True)

    if kind.startswith("aio"):
        serve_aio(port, ready, kind.partition(":")[2] or "asyncio")
    else:
        serve_threaded(port, ready)


class WorkerProcess:
    def __init__(self, kind: str, port: int) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve-worker", kind,
                                      str(port)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"the {kind} worker did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# --- the load -----------------------------------------------------------------------------


def run_load(call: Callable[[], None], seconds: float, threads: int) -> tuple[int, float,
                                                                             list[float]]:
    """Calls done, elapsed seconds, and every call's latency, from ``threads`` threads."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    deadline = [0.0]

    def loop(mine: list[float]) -> None:
        start.wait()
        clock = time.perf_counter
        end = deadline[0]
        while True:
            t0 = clock()
            if t0 >= end:
                return
            call()
            mine.append(clock() - t0)

    pool = [threading.Thread(target=loop, args=(lat,)) for lat in latencies]
    for t in pool:
        t.start()
    t0 = time.perf_counter()
    deadline[0] = t0 + seconds
    start.wait()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    flat = [x for lat in latencies for x in lat]
    return len(flat), elapsed, flat


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def harp_call(rpc: harp.HarpCaller) -> Callable[[], None]:
    def call() -> None:
        if rpc.bench.echo(PAYLOAD).get() != PAYLOAD:
            raise SystemExit("harp echo returned something else")
    return call


def raw_harp_call(port: int) -> Callable[[], None]:
    """The harp call of :func:`harp_call` from a bare socket client: one blocking connection
    per request, as HarpCaller clients do, and no client library."""
    request = b'{"harpcaller":1,"host":"bench","procedure":"echo","arguments":["%s"]}\n' \
        % PAYLOAD.encode()
    expected = b'{"result":"%s"}\n' % PAYLOAD.encode()
    address = ("127.0.0.1", port)

    def ask(line: bytes) -> bytes:
        with socket.create_connection(address) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(line)
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise SystemExit("the harp port closed before its reply")
                reply += chunk
            return reply

    def call() -> None:
        job_id = json.loads(ask(request))["job_id"]
        if ask(b'{"harpcaller":1,"get_result":"%s","wait":true}\n' % job_id.encode()) \
                != expected:
            raise SystemExit("raw harp echo returned something else")
    return call


def gearman_call() -> Callable[[], None]:
    local = threading.local()
    expected = PAYLOAD.encode()

    def call() -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = gear.Client("bench-plain")
            client.addServer("127.0.0.1", GEARMAN_PORT[0])
            client.waitForServer(10)
        job = gear.Job("echo", expected)
        client.submitJob(job)
        job.wait(30)
        if b"".join(job.data) != expected:
            raise SystemExit("gearman echo returned something else")
    return call


GEARMAN_PORT = [0]


def stream_rate(rpc: harp.HarpCaller, messages: int) -> float:
    t0 = time.perf_counter()
    call = rpc.bench.stream(messages)
    count = sum(1 for _ in call.follow(since=0))
    elapsed = time.perf_counter() - t0
    if count != messages:
        raise SystemExit(f"followed {count} of {messages} stream messages")
    return messages / elapsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_geard() -> tuple[GeardProcess, int, int]:
    harp_port = free_port()
    server = GeardProcess("--queue", "memory", "-l", "none", "--harp-port", str(harp_port))
    ports = wait_for(lambda: (p if len(p := listening_ports(server.pid)) >= 2 else None),
                     what="geard's two ports")
    gearman_port = next(p for p in ports if p != harp_port)
    return server, gearman_port, harp_port


# --- instruction counts (--callgrind) -------------------------------------------------------


def status_call(port: int) -> Callable[[], None]:
    """One connection, one ``get_status`` of an unknown id, its reply read, closed."""
    line = b'{"harpcaller":1,"get_status":"00000000-0000-4000-8000-000000000000"}\n'

    def call() -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(line)
            if not sock.recv(65536).endswith(b"\n"):
                raise SystemExit("get_status: no whole reply line")
    return call


def callgrind_client(port: int, load: str, threads: int, warmup: int, calls: int) -> None:
    """The client process of --callgrind: warm up, say so, wait for "go", run, say "done"."""
    if load == "raw":
        call = raw_harp_call(port)
    elif load == "status":
        call = status_call(port)
    else:
        call = harp_call(harp.HarpCaller("127.0.0.1", port, timeout=60))
    for _ in range(warmup):
        call()
    print("warm", flush=True)
    sys.stdin.readline()
    per = calls // threads
    pool = [threading.Thread(target=lambda: [call() for _ in range(per)])
            for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    print("done", flush=True)
    sys.stdin.readline()


def _instructions(out: str) -> int:
    """The instruction total of the newest callgrind dump whose name starts with ``out``."""
    files = sorted(glob.glob(out + "*"), key=os.path.getmtime)
    for name in reversed(files):
        text = Path(name).read_text(errors="replace")
        m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        if m:
            return int(m.group(1))
    raise SystemExit(f"no callgrind dump at {out}")


def callgrind_main(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp(prefix="bench-harp-cg-")
    env = dict(os.environ, PYTHONHASHSEED="0")

    def valgrind(name: str, *cmd: str, **kw: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(["valgrind", "--tool=callgrind", "-q",
                                 f"--callgrind-out-file={tmp}/{name}.out", *cmd],
                                env=env, text=True, **kw)

    harp_port = free_port()
    data = tempfile.mkdtemp(prefix="bench-harp-data-")
    geard = valgrind("geard", sys.executable, "-m", "gear.server", "-d", "-p", "0",
                     "--listen-address", "127.0.0.1", "--data-dir", data, "--queue", "memory",
                     "-l", "none", "--harp-port", str(harp_port))
    procs = [geard]
    try:
        ports = wait_for(lambda: (p if len(p := listening_ports(geard.pid)) >= 2 else None),
                         what="geard's two ports", timeout=120)
        gearman_port = next(p for p in ports if p != harp_port)
        worker = valgrind("worker", sys.executable, __file__, "--serve-worker",
                          f"aio:{args.worker_loop}", str(gearman_port), stdout=subprocess.PIPE)
        procs.append(worker)
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "ready":
            raise SystemExit("the worker did not start")
        client = valgrind("client", sys.executable, __file__, "--callgrind-client",
                          str(harp_port), args.callgrind_load,
                          str(args.threads), str(args.warmup), str(args.calls),
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        procs.append(client)
        assert client.stdout is not None and client.stdin is not None
        if client.stdout.readline().strip() != "warm":
            raise SystemExit("the client did not warm up")
        named = (("geard", geard), ("worker", worker), ("client", client))
        for _, proc in named:
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True,
                           capture_output=True)
        client.stdin.write("go\n")
        client.stdin.flush()
        if client.stdout.readline().strip() != "done":
            raise SystemExit("the client failed")
        calls = args.calls // args.threads * args.threads
        for _, proc in named:
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True,
                           capture_output=True)
        for name, _ in named:
            total = _instructions(f"{tmp}/{name}.out")
            print(f"{name:7} {total / calls / 1000:8.1f}k instructions per call "
                  f"({calls} calls, {args.threads} client threads)", flush=True)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per run (default 4)")
    parser.add_argument("--threads", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--stream", type=int, default=20000, help="stream messages")
    parser.add_argument("--workers", default="aio,threaded", help="worker kinds to measure")
    parser.add_argument("--quick", action="store_true", help="1 s runs, aio worker only")
    parser.add_argument("--worker-loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="the event loop of the aio worker (default asyncio)")
    parser.add_argument("--callgrind", action="store_true",
                        help="count instructions per call of geard, worker and client")
    parser.add_argument("--callgrind-load", choices=("harp", "raw", "status"), default="harp",
                        help="with --callgrind: gear.harp's call (default), the bare socket "
                        "client's, or one get_status per connection")
    parser.add_argument("--calls", type=int, default=300, help="--callgrind: calls counted")
    parser.add_argument("--warmup", type=int, default=30, help="--callgrind: calls first")
    parser.add_argument("--serve-worker", nargs=2, metavar=("KIND", "PORT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--callgrind-client", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.callgrind_client:
        port, kind, threads, warmup, calls = args.callgrind_client
        callgrind_client(int(port), kind, int(threads), int(warmup), int(calls))
        return
    if args.callgrind:
        if "--threads" not in sys.argv:
            args.threads = 1
        callgrind_main(args)
        return
    if args.serve_worker:
        worker_main(args.serve_worker[0], int(args.serve_worker[1]))
        return
    if args.quick:
        args.seconds, args.workers, args.stream = 1.0, "aio", 5000
    server, gearman_port, harp_port = start_geard()
    GEARMAN_PORT[0] = gearman_port
    rpc = harp.HarpCaller("127.0.0.1", harp_port, timeout=30)
    print(f"geard pid {server.pid}: Gearman port {gearman_port}, harp port {harp_port}; "
          f"{args.seconds:g} s per run, {os.cpu_count()} CPUs; aio worker on "
          f"{args.worker_loop}")
    header = f"{'worker':9} {'load':9} {'clients':>7} {'calls/s':>9} {'p50 ms':>8} " \
             f"{'p99 ms':>8} {'harp/gearman':>13}   CPU us per call: geard worker client"
    print(header)
    try:
        for kind in args.workers.split(","):
            worker = WorkerProcess(f"aio:{args.worker_loop}" if kind == "aio" else kind,
                                   gearman_port)
            try:
                for threads in (1, args.threads):
                    rates = {}
                    for load, call in (("gearman", gearman_call()), ("harp", harp_call(rpc)),
                                       ("harp-raw", raw_harp_call(harp_port))):
                        run_load(call, min(0.3, args.seconds), threads)  # warm up
                        pids = (server.pid, worker.proc.pid, os.getpid())
                        before = [cpu_seconds(p) for p in pids]
                        n, elapsed, lat = run_load(call, args.seconds, threads)
                        cpu = [(cpu_seconds(p) - b) / max(n, 1) * 1e6
                               for p, b in zip(pids, before, strict=True)]
                        rates[load] = n / elapsed
                        ratio = f"{rates[load] / rates['gearman']:.2f}" \
                            if load != "gearman" else ""
                        print(f"{kind:9} {load:9} {threads:>7} {n / elapsed:>9.0f} "
                              f"{pct(lat, 0.5):>8.2f} {pct(lat, 0.99):>8.2f} {ratio:>13}"
                              f"   {cpu[0]:>6.0f} {cpu[1]:>6.0f} {cpu[2]:>6.0f}",
                              flush=True)
                rate = statistics.median(stream_rate(rpc, args.stream) for _ in range(3))
                print(f"{kind:9} stream: {args.stream} messages followed live, "
                      f"{rate:,.0f} messages/s (median of 3)", flush=True)
            finally:
                worker.stop()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
