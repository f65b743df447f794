"""Memory per queued background job: in-process (tracemalloc, RSS) and in a live geard.

Run: ``python3 bench/profile_memory.py [--jobs N] [--mode {inproc,live,both}]
[--queue {memory,sqlite}]``

The load of issue 14's memory goal: background jobs with a 64-byte payload and a distinct
unique each (``u-%012d``), to one function, never drained.

* ``inproc``: the jobs are fed into a :class:`~gear.server.broker.Broker` in reads of 256
  packets the way the network layer feeds them (as ``bench/profile_server.py`` does); reports
  the bytes tracemalloc sees allocated per job, and the process's RSS growth per job (RSS
  counts allocator slack and freed-but-kept arenas that tracemalloc does not).
* ``live``: starts ``geard --queue memory`` on a free port (from this checkout's ``src``),
  submits the jobs over one raw socket, pipelined (10,000 in flight), waits for every
  JOB_CREATED, and reports geard's RSS growth (``/proc/PID/status`` VmRSS) per job.
  ``--queue sqlite`` starts the default durable geard instead (a fresh SQLite queue in a
  temporary directory): what it keeps in memory per queued job beside the stored copy.

Figures depend on the allocator, not on the load of the machine. Nothing here is asserted.
Must not import the network layer.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

FUNCTION = b"bench-mem"
SUBMIT_JOB_BG, JOB_CREATED = 18, 8
PAYLOAD = b"x" * 64


def _packet(i: int) -> bytes:
    body = FUNCTION + b"\x00u-%012d\x00" % i + PAYLOAD
    return struct.pack("!4sII", b"\x00REQ", SUBMIT_JOB_BG, len(body)) + body


def _chunks(start: int, stop: int, size: int) -> list[bytes]:
    return [b"".join([_packet(i) for i in range(s, min(s + size, stop))])
            for s in range(start, stop, size)]


def rss(pid: int | str = "self") -> int:
    """Resident set size in bytes (``VmRSS`` of ``/proc/PID/status``)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def inproc(jobs: int) -> tuple[float, float]:
    """(tracemalloc bytes per job, RSS bytes per job) of ``jobs`` queued in a broker."""
    from gear.server.broker import Broker, BrokerConfig
    from gear.server.engine import tune_gc

    tune_gc()
    broker = Broker(BrokerConfig(handle_prefix=b"H:bench-host"))
    client = broker.connect("127.0.0.1", 1000, 10)
    warm = 2000  # past the first 999 handles and the first dict resizes' noise
    for chunk in _chunks(0, warm, 256):
        broker.feed(client, chunk)
    client.out.clear()
    gc.collect()
    r0 = rss()
    tracemalloc.start()
    t0 = tracemalloc.get_traced_memory()[0]
    for s in range(warm, warm + jobs, 256):
        # One read at a time, generated as it goes: only the broker's own memory stays.
        broker.feed(client, _chunks(s, min(s + 256, warm + jobs), 256)[0])
        client.out.clear()
        broker.dirty.clear()
    gc.collect()
    t1 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    traced = (t1 - t0) / jobs
    assert broker.functions[FUNCTION].total == warm + jobs
    # RSS without tracemalloc's own bookkeeping: a second broker, same load.
    del broker, client
    gc.collect()
    broker = Broker(BrokerConfig(handle_prefix=b"H:bench-host"))
    client = broker.connect("127.0.0.1", 1000, 10)
    for chunk in _chunks(0, warm, 256):
        broker.feed(client, chunk)
    client.out.clear()
    gc.collect()
    r0 = rss()
    for s in range(warm, warm + jobs, 256):
        broker.feed(client, _chunks(s, min(s + 256, warm + jobs), 256)[0])
        client.out.clear()
        broker.dirty.clear()
    gc.collect()
    return traced, (rss() - r0) / jobs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def live(jobs: int, tmp: Path, queue: str = "memory") -> float:
    """geard's RSS growth per job after ``jobs`` queued background submissions (``queue``:
    ``memory``, or ``sqlite`` for a fresh SQLite queue in ``tmp``)."""
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    geard = "from gear.server.cli import main; main()"
    url = "memory" if queue == "memory" else f"sqlite://{(tmp / 'queue.db').absolute()}"
    proc = subprocess.Popen(
        [sys.executable, "-c", geard, "-d", "--port", str(port),
         "--queue", url, "--listen", "127.0.0.1", "--pid-file", str(tmp / "geard.pid"),
         "--log-file", str(tmp / "geard.log")], env=env, cwd=tmp)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("geard did not start") from None
                time.sleep(0.05)  # polling a starting server, not synchronising a test
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        marker = b"\x00RES" + struct.pack("!I", JOB_CREATED)
        warm = 2000

        def submit(start: int, stop: int) -> None:
            done = 0
            tail = b""
            sent = start
            inflight = 10_000
            while done < stop - start:
                if sent < stop and sent - start - done < inflight:
                    upto = min(stop, sent + 1000)
                    sock.sendall(b"".join([_packet(i) for i in range(sent, upto)]))
                    sent = upto
                    continue
                data = sock.recv(1 << 20)
                if not data:
                    raise RuntimeError("geard closed the connection")
                buf = tail + data
                done += buf.count(marker)
                tail = buf[-(len(marker) - 1):]

        submit(0, warm)
        r0 = rss(proc.pid)
        submit(warm, warm + jobs)
        r1 = rss(proc.pid)
        sock.close()
        return (r1 - r0) / jobs
    finally:
        proc.terminate()
        proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--mode", choices=("inproc", "live", "both"), default="both")
    parser.add_argument("--queue", choices=("memory", "sqlite"), default="memory",
                        help="live mode: geard's queue (default memory)")
    args = parser.parse_args(argv)
    if args.mode in ("inproc", "both"):
        traced, grown = inproc(args.jobs)
        print(f"inproc {args.jobs} jobs: {traced:6.1f} B/job traced, {grown:6.1f} B/job RSS",
              flush=True)
    if args.mode in ("live", "both"):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            grown = live(args.jobs, Path(tmp), args.queue)
            print(f"live   {args.jobs} jobs, --queue {args.queue}: {grown:6.1f} B/job geard RSS",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
