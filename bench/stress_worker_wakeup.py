"""Long run of the worker wake-up load (issue 15 a): rounds and stalls, threaded and gear.aio.

Usage: ``python3 bench/stress_worker_wakeup.py [--rounds N] [--server geard|gearmand]``

Threaded: 4 threads share one ``gear.Worker``, each calling ``getJob`` exactly 25 times per
round, while 2 client threads submit the round's 100 background jobs. gear.aio: one
``gear.aio.Worker`` with 4 slots takes the same 100 jobs per round. A round stalls when its
jobs are not all delivered within ``--stall-after`` seconds (then the run nudges the worker and
goes on). Prints rounds and stalls for each; not a test, nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.support.peers import GearmandProcess  # noqa: E402
from tests.support.wakeup import run_aio_rounds, run_rounds  # noqa: E402

import gear  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--server", choices=("geard", "gearmand"), default="geard")
    parser.add_argument("--stall-after", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.server == "gearmand":
        proc = GearmandProcess()
        host, port, stop = proc.host, proc.port, proc.stop
    else:
        server = gear.Server(0, host="127.0.0.1")
        host, port, stop = "127.0.0.1", int(server.port), server.shutdown
    try:
        for name, run in (("threaded, 4 threads x 25 getJob", run_rounds),
                          ("gear.aio, concurrency 4", run_aio_rounds)):
            began = time.perf_counter()
            result = run(host, port, args.rounds, stall_after=args.stall_after)
            took = time.perf_counter() - began
            print(f"{args.server}: {name}: {result.rounds} rounds, {result.stalls} stalls "
                  f"(jobs missing per stall: {result.missing}) in {took:.1f}s", flush=True)
    finally:
        stop()


if __name__ == "__main__":
    main()
