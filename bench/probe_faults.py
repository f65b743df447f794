"""Fault probes, geard beside gearmand 1.1 in one run (issue 13): the figures for the note.

Run: ``python3 bench/probe_faults.py [--only stall,rss,fds] [--servers geard,gearmand]
[--behind 100000] [--leaving 10000] [--jobs 20000] [--result 10000] [--nofile 1024:2048]``

1. ``stall``: a client with ``--leaving`` foreground jobs queued behind ``--behind`` others
   disconnects; a ping loop (ECHO round trips on a third connection, in a thread) gives the
   longest gap while the server handles it, beside the longest gap of a quiet stretch as long;
2. ``rss``: a client submits ``--jobs`` foreground jobs whose results are ``--result`` bytes
   and never reads; one worker completes them. The server's RSS growth (peak, from /proc) and
   whether the client was cut. geard runs with its default output limits and with a 16M hard
   limit, gearmand as it is;
3. ``fds``: the server starts with RLIMIT_NOFILE ``--nofile`` (soft:hard); connections are
   opened (each sends an ECHO) until 20 in a row go unanswered for a second: how many it held,
   whether one opened connection is still served at the limit, and whether a new one is
   answered after 50 are closed; plus the server's log lines about it.

Servers are fresh processes per probe on port 0 (tests/support/peers.py): geard with
``--queue memory``, gearmand with ``--threads=0``. Figures on a shared 2-CPU machine are
indicative; nothing is asserted (the tests under tests/server/ assert the bounds).
"""

from __future__ import annotations

import argparse
import resource
import select
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from tests.support.load import (  # noqa: E402
    Pinger,
    RawWorker,
    drain,
    open_fds,
    queued_total,
    rss,
    submit_many,
)
from tests.support.peers import GeardProcess, GearmandProcess, ServerProcess  # noqa: E402
from tests.support.raw import connect, read_packet  # noqa: E402

from gear import constants as c  # noqa: E402
from gear.protocol.packets import request  # noqa: E402

MiB = 1024 * 1024


def start(kind: str, *args: str, preexec: Callable[[], None] | None = None) -> ServerProcess:
    cls: type[ServerProcess] = GeardProcess if kind == "geard" else GearmandProcess
    if preexec is not None:
        cls = type(f"Limited{cls.__name__}", (cls,), {"preexec": staticmethod(preexec)})
    if kind == "geard":
        return cls("--queue", "memory", *args)
    return cls(*args)


def probe_stall(kind: str, behind: int, leaving: int) -> str:
    server = start(kind)
    try:
        port = server.port
        front = connect(port, timeout=120)
        submit_many(front, b"f", behind, b"front")
        drain(front, timeout=120)
        leaver = connect(port, timeout=120)
        submit_many(leaver, b"f", leaving, b"leaver")
        drain(leaver, timeout=120)
        pinger = Pinger(port)
        pinger.wait_rounds(400)
        pinger.reset()
        begin = time.perf_counter()
        leaver.close()
        # geard forgets the jobs at once: wait for that. gearmand keeps them counted until a
        # worker reaps them, so its stretch is a fixed 3 s (the disconnect's work is in it).
        window = time.monotonic() + 3.0
        while time.monotonic() < window:
            if kind == "geard" and queued_total(port, b"f") == behind:
                break
            time.sleep(0.01)  # polling another process; the ping thread keeps the GIL free
        pinger.wait_rounds(400)
        stall = pinger.gap()
        pinger.reset()
        pinger.wait_seconds(time.perf_counter() - begin)
        quiet = pinger.gap()
        pinger.stop()
        front.close()
        return (f"stall {stall * 1000:.1f} ms (quiet stretch as long: {quiet * 1000:.1f} ms), "
                f"{leaving} jobs behind {behind}")
    finally:
        server.stop()


def probe_rss(kind: str, jobs: int, result: int, *args: str) -> str:
    server = start(kind, *args)
    worker: RawWorker | None = None
    try:
        port = server.port
        worker = RawWorker(port, b"big", result)
        base = rss(server.pid)
        sink = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sink.connect(("127.0.0.1", port))
        submit_many(sink, b"big", jobs, b"sink")
        peak = base
        deadline = time.monotonic() + 120
        cut = False
        while time.monotonic() < deadline:
            peak = max(peak, rss(server.pid))
            if worker.done >= jobs:
                break
            if worker.done and queued_total(port, b"big") == 0:
                cut = True  # its queued jobs went with it: the server closed it
                break
            time.sleep(0.05)
        peak = max(peak, rss(server.pid))
        held = rss(server.pid) - base
        sink.close()
        return (f"RSS growth peak {(peak - base) / MiB:.1f} MiB, still held "
                f"{held / MiB:.1f} MiB; {worker.done} of {jobs} results produced; "
                f"{'client cut' if cut else 'client kept'}")
    finally:
        if worker is not None:
            worker.stop()
        server.stop()


def probe_fds(kind: str, soft: int, hard: int) -> str:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    server = start(kind, preexec=lower)
    conns: list[socket.socket] = []
    try:
        port = server.port
        keeper = connect(port)
        keeper.sendall(request(c.ECHO_REQ, b"k"))
        read_packet(keeper)
        answered = 1
        misses = 0
        while misses < 20 and len(conns) < hard + 100:
            sock = connect(port, timeout=1)
            conns.append(sock)
            sock.sendall(request(c.ECHO_REQ, b"x"))
            try:
                read_packet(sock)
                answered += 1
                misses = 0
            except (OSError, EOFError):
                misses += 1
        fds = open_fds(server.pid)
        keeper.settimeout(5)
        try:
            keeper.sendall(request(c.ECHO_REQ, b"still"))
            served = read_packet(keeper)[1] == [b"still"]
        except (OSError, EOFError):
            served = False
        for sock in conns[:50]:
            sock.close()
        late = connect(port, timeout=5)
        late.sendall(request(c.ECHO_REQ, b"late"))
        readable, _, _ = select.select([late], [], [], 5)
        accepted_again = bool(readable)
        late.close()
        log = server.log.read_text().splitlines()
        lines = [line for line in log if "descriptor" in line.lower() or "open files" in line
                 or "too many" in line.lower()]
        return (f"held {answered} connections (server fds {fds}, limit {soft}:{hard}); "
                f"open connection served at the limit: {served}; new one answered after 50 "
                f"closed: {accepted_again}; log lines about it: {len(lines)}"
                + "".join(f"\n      | {line[:150]}" for line in lines[:4]))
    finally:
        for sock in conns:
            sock.close()
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="stall,rss,fds")
    ap.add_argument("--servers", default="geard,gearmand")
    ap.add_argument("--behind", type=int, default=100_000)
    ap.add_argument("--leaving", type=int, default=10_000)
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--result", type=int, default=10_000)
    ap.add_argument("--nofile", default="1024:2048")
    args = ap.parse_args()
    soft, hard = (int(x) for x in args.nofile.split(":"))
    own_soft, own_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if own_soft < hard + 200:  # this process opens that many sockets itself
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(own_hard, hard + 400), own_hard))
    probes = args.only.split(",")
    for kind in args.servers.split(","):
        if "stall" in probes:
            print(f"{kind:9} stall: {probe_stall(kind, args.behind, args.leaving)}", flush=True)
        if "rss" in probes:
            variants: list[tuple[str, tuple[str, ...]]] = [("", ())]
            if kind == "geard":
                variants = [("default limits", ()),
                            ("--output-limit-hard 16M", ("--output-limit-hard", "16M"))]
            for label, extra in variants:
                figure = probe_rss(kind, args.jobs, args.result, *extra)
                print(f"{kind:9} rss{' (' + label + ')' if label else ''}: {figure}", flush=True)
        if "fds" in probes:
            print(f"{kind:9} fds: {probe_fds(kind, soft, hard)}", flush=True)


if __name__ == "__main__":
    main()
