"""CPU per job of one threaded ``gear.Worker`` draining a full gearmand queue (issue 14).

    python3 bench/bench_worker_drain.py [--jobs 2000] [--rounds 5]

One gearmand on a free port is preloaded with background jobs (pipelined SUBMIT_JOB_BG on a raw
socket), so the worker never sleeps: every job is one GRAB_JOB_UNIQ, one JOB_ASSIGN_UNIQ and one
WORK_COMPLETE, and what is measured is the worker's own cost per job. Our Worker runs the
``getJob`` / ``sendWorkComplete`` loop of bench/bench_client_worker.py's workers for ``--rounds``
rounds of ``--jobs`` jobs; then, on the same server, a floor: a single-threaded raw-socket
worker in Python that sends the same packets with the same two writes per job and no threads.

Prints per round's best: CPU microseconds per job (``time.process_time``, all threads),
voluntary context switches per job (``getrusage``: a thread hand-off costs at least two), and
ours / floor. Absolute CPU times drift with the machine's load; the ratio, taken minutes apart
on the same machine, drifts less. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import resource
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FUNCTION = b"bench"


def _preload(host: str, port: int, jobs: int) -> None:
    from gear import constants
    from gear.protocol.packets import HEADER_SIZE, request

    with socket.create_connection((host, port)) as s:
        s.sendall(b"".join(request(constants.SUBMIT_JOB_BG, FUNCTION, b"", b"x")
                           for _ in range(jobs)))
        buf = b""
        while jobs:  # one JOB_CREATED per job
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("gearmand closed the preload connection")
            buf += chunk
            while len(buf) >= HEADER_SIZE:
                end = HEADER_SIZE + int.from_bytes(buf[8:12], "big")
                if len(buf) < end:
                    break
                buf = buf[end:]
                jobs -= 1


def _measure(run: object, jobs: int) -> tuple[float, float]:
    """(CPU us per job, voluntary context switches per job) of ``run(jobs)``."""
    cs0 = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
    t0 = time.process_time()
    run(jobs)  # type: ignore[operator]
    cpu = time.process_time() - t0
    cs = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - cs0
    return cpu / jobs * 1e6, cs / jobs


def ours(host: str, port: int, jobs: int, rounds: int) -> list[tuple[float, float]]:
    import gear

    worker = gear.Worker("drain-worker")
    worker.addServer(host, port)
    worker.waitForServer()
    worker.registerFunction(FUNCTION)

    def run(n: int) -> None:
        for _ in range(n):
            job = worker.getJob()
            job.sendWorkComplete(job.arguments)

    try:
        run(200)  # warm up
        return [_measure(run, jobs) for _ in range(rounds)]
    finally:
        worker.shutdown()


def floor(host: str, port: int, jobs: int, rounds: int) -> list[tuple[float, float]]:
    from gear import constants
    from gear.protocol.packets import HEADER_SIZE, request

    grab = request(constants.GRAB_JOB_UNIQ)
    with socket.create_connection((host, port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(request(constants.CAN_DO, FUNCTION))

        def run(n: int) -> None:
            for _ in range(n):
                s.sendall(grab)
                buf = s.recv(65536)
                while len(buf) < HEADER_SIZE or len(buf) < HEADER_SIZE + int.from_bytes(
                        buf[8:12], "big"):
                    buf += s.recv(65536)
                handle = buf[HEADER_SIZE:].split(b"\0", 1)[0]
                s.sendall(request(constants.WORK_COMPLETE, handle, b"x"))

        run(200)
        return [_measure(run, jobs) for _ in range(rounds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    sys.path.insert(0, str(REPO))
    from tests.support.peers import GearmandProcess

    server = GearmandProcess()
    try:
        _preload(server.host, server.port, 2 * (args.jobs * args.rounds + 200))
        results = {}
        for name, fn in (("ours", ours), ("floor", floor)):
            best = min(fn(server.host, server.port, args.jobs, args.rounds))
            results[name] = best[0]
            print(f"{name:>6}: {best[0]:6.1f} us CPU/job  {best[1]:5.2f} voluntary context "
                  f"switches/job", flush=True)
        print(f"ours / floor = {results['ours'] / results['floor']:.2f}x")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
