"""Durable background-submit throughput: geard (sqlite queue) vs gearmand (libsqlite3 queue).

Run: ``python3 bench/bench_durable.py [--seconds 4] [--rounds 2] [--connections 4] [--window 256]``

Measures, in the same run and with the same load generator, JOB_CREATED per second for
background submits (unique ids on every job, as libgearman sends):

* gearmand ``-q libsqlite3 --libsqlite3-db <tmp>`` (durable: one COMMIT per submit);
* geard ``--queue sqlite:///<tmp>`` (durable: group commit, fsync per batch);
* geard ``--queue memory`` (no persistence: the ceiling for the durable rate).

and prints the absolute rates and the ratios the issue targets: geard durable >= 20x gearmand
durable, and geard durable >= 0.5x geard in-memory. Targets are rounds interleaved so that drift
on a shared machine hits every target alike; the best round of each is reported.

The load generator is one thread driving every connection through a selector, sending
pre-encoded submits in windowed pipelines, so per-job Python cost on the client side is small.
Nothing here is asserted: benchmarks never gate the test suite.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))
# The geard children (python -m gear.server) import this checkout's gear, installed or not.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])

from tests.support.peers import GeardProcess, GearmandProcess  # noqa: E402

from gear import constants as c  # noqa: E402
from gear.protocol.packets import request  # noqa: E402

HEADER = struct.Struct(">4sII")


def Geard(queue: str) -> GeardProcess:
    """geard on 127.0.0.1 and a free port with the given --queue, logging nothing."""
    return GeardProcess("-l", "none", "--queue", queue, timeout=30)


class Submits:
    """Background submits with a fresh unique each (libgearman sends a UUID per job): a unique
    that repeats would coalesce onto the queued job and never reach the store
    (docs/protocol.md §3.2). Fixed-width uniques keep the header constant, so a packet costs one
    bytes formatting."""

    def __init__(self, tag: bytes) -> None:
        sample = request(c.SUBMIT_JOB_BG, b"bench", tag + b"-%012d" % 0, b"x" * 64)
        self.prefix = sample[:12] + b"bench\0" + tag + b"-"
        self.suffix = b"\0" + b"x" * 64
        self.next = 0

    def chunk(self, k: int) -> bytes:
        start, self.next = self.next, self.next + k
        prefix, suffix = self.prefix, self.suffix
        return b"".join([prefix + b"%012d" % i + suffix for i in range(start, start + k)])


def load(port: int, seconds: float, connections: int, window: int, tag: bytes) -> float:
    """Pipelined background submits on ``connections`` sockets; JOB_CREATED per second."""
    sel = selectors.DefaultSelector()
    packets = Submits(tag)
    state: dict[socket.socket, list[int]] = {}  # sock -> [outstanding]
    buffers: dict[socket.socket, bytearray] = {}
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        state[sock] = [0]
        buffers[sock] = bytearray()
        sel.register(sock, selectors.EVENT_READ)

    def top_up(sock: socket.socket) -> None:
        st = state[sock]
        k = window - st[0]
        if k <= 0:
            return
        chunk = packets.chunk(k)
        st[0] += k
        sock.setblocking(True)
        sock.sendall(chunk)
        sock.setblocking(False)

    for sock in state:
        top_up(sock)
    created = errors = 0
    begin = time.perf_counter()
    deadline = begin + seconds
    while True:
        now = time.perf_counter()
        if now >= deadline:
            break
        for key, _ in sel.select(deadline - now):
            sock = key.fileobj  # type: ignore[assignment]
            assert isinstance(sock, socket.socket)
            data = sock.recv(1 << 20)
            if not data:
                raise SystemExit("server closed a load connection")
            buf = buffers[sock]
            buf += data
            pos = 0
            n = len(buf)
            answered = 0
            while n - pos >= 12:
                _magic, ptype, size = HEADER.unpack_from(buf, pos)
                if n - pos < 12 + size:
                    break
                pos += 12 + size
                answered += 1
                if ptype == c.JOB_CREATED:
                    created += 1
                else:
                    errors += 1
            del buf[:pos]
            st = state[sock]
            st[0] -= answered
            if st[0] <= window // 2:  # refill in half-window steps: fewer, larger writes
                top_up(sock)
    elapsed = time.perf_counter() - begin
    for sock in state:
        sel.unregister(sock)
        sock.close()
    if errors:
        print(f"    ({errors} non-JOB_CREATED answers)")
    return created / elapsed


def writer_rate(path: Path, seconds: float, in_flight: int) -> float:
    """Jobs/s through StorageWriter into SQLite in this process: the durable path's ceiling
    without sockets or the broker (``in_flight`` jobs outstanding, like clients' windows).
    Submitted as the server does: ``add_many`` per window refill, one ``on_batch`` answer per
    committed batch, the server's switch interval."""
    import asyncio

    from gear.server.config import DURABLE_SWITCH_INTERVAL
    from gear.server.storage import StoredJob
    from gear.server.storage.sqlite import SqliteStorage
    from gear.server.storage.writer import StorageWriter

    async def run() -> float:
        state = {"outstanding": 0, "done": 0, "failed": 0}
        room = asyncio.Event()

        def on_batch(tokens: list[object], exc: BaseException | None) -> None:
            state["outstanding"] -= len(tokens)
            state["done" if exc is None else "failed"] += len(tokens)
            if state["outstanding"] <= in_flight // 2:
                room.set()

        writer = StorageWriter(SqliteStorage(path), on_batch=on_batch,
                               switch_interval=DURABLE_SWITCH_INTERVAL)
        await writer.start()
        loop = asyncio.get_running_loop()
        data = b"x" * 64
        key = 0
        deadline = loop.time() + seconds
        begin = loop.time()
        while loop.time() < deadline:
            k = in_flight - state["outstanding"]
            records = [StoredJob(n, b"bench", b"w-%012d" % n, data)
                       for n in range(key + 1, key + k + 1)]
            key += k
            writer.add_many(records, [None] * k)
            state["outstanding"] += k
            room.clear()
            await room.wait()
        rate = state["done"] / (loop.time() - begin)
        await writer.close()
        if state["failed"]:
            print(f"    ({state['failed']} jobs failed to store)")
        return rate

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per target and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--window", type=int, default=256, help="submits in flight per connection")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-durable-"))
    counter = iter(range(1 << 30))

    def gearmand_durable() -> tuple[Callable[[], None], int]:
        db = tmp / f"gearmand-{next(counter)}.db"
        server = GearmandProcess("-q", "libsqlite3", f"--libsqlite3-db={db}")
        return server.stop, server.port

    def geard(queue_for: Callable[[], str]) -> Callable[[], tuple[Callable[[], None], int]]:
        def start() -> tuple[Callable[[], None], int]:
            server = Geard(queue_for())
            return server.stop, server.port
        return start

    targets: dict[str, Callable[[], tuple[Callable[[], None], int]]] = {
        "gearmand libsqlite3 (durable)": gearmand_durable,
        "geard sqlite (durable)": geard(lambda: f"sqlite://{tmp}/geard-{next(counter)}.db"),
        "geard memory": geard(lambda: "memory"),
    }
    print(f"background submits, 64-byte payloads, {args.connections} connections x "
          f"{args.window} in flight, {args.seconds:g} s per target, best of {args.rounds}")
    best: dict[str, float] = dict.fromkeys(targets, 0.0)
    try:
        for rnd in range(args.rounds):
            for name, start in targets.items():
                stop, port = start()
                try:
                    rate = load(port, args.seconds, args.connections, args.window,
                                b"r%d-%d" % (rnd, os.getpid()))
                finally:
                    stop()
                best[name] = max(best[name], rate)
                print(f"  round {rnd + 1}: {name:32s} {rate:>10,.0f} jobs/s")
    finally:
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    tmp.mkdir(exist_ok=True)
    try:
        ceiling = max(writer_rate(tmp / f"writer-{n}.db", args.seconds,
                                  args.connections * args.window) for n in range(args.rounds))
    finally:
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    print(f"  StorageWriter -> sqlite, in-process, no network: {ceiling:>10,.0f} jobs/s")
    print()
    for name, rate in best.items():
        print(f"{name:32s} {rate:>10,.0f} jobs/s")
    gm, durable, memory = (best[n] for n in targets)
    vs_gearmand = durable / gm if gm else float("inf")
    vs_memory = durable / memory if memory else 0.0
    print(f"\ngeard durable / gearmand durable: {vs_gearmand:6.1f}x   (target >= 20x)")
    print(f"geard durable / geard in-memory:  {vs_memory:6.2f}x   (target >= 0.5x)")


if __name__ == "__main__":
    main()
