"""In-process measure of the broker's stall when a client with queued jobs leaves (issue 13).

Run: ``python3 bench/profile_removal.py [--behind N] [--jobs M] [--repeat R]``

Queues ``--behind`` foreground jobs from one client, then ``--jobs`` from a second one behind
them, and times ``Broker.disconnect`` of the second and the ``run_deferred`` slices that
finish it (wall milliseconds, best and median of ``--repeat``): while one slice runs no other
connection is served, so the longest slice is the stall every other client sees, and the sum
is the whole cost. Broker only, like bench/profile_server.py (no sockets, no event loop, no peer to
compare with in-process); figures on a shared machine are indicative. Nothing is asserted.
Must not import the network layer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from gear import constants as c  # noqa: E402
from gear.protocol.packets import request  # noqa: E402
from gear.server.broker import Broker, BrokerConfig  # noqa: E402


def one(behind: int, jobs: int) -> tuple[float, float]:
    """Milliseconds of the longest slice of the ``jobs`` client's disconnect (what other
    connections wait for) and of all its slices together."""
    broker = Broker(BrokerConfig(handle_prefix=b"H:bench"))
    front = broker.connect("127.0.0.1", 1, 1)
    leaver = broker.connect("127.0.0.1", 2, 2)
    for peer, n, tag in ((front, behind, b"a"), (leaver, jobs, b"b")):
        broker.feed(peer, b"".join(request(c.SUBMIT_JOB, b"f", b"", tag + b"%d" % i)
                                   for i in range(n)))
        peer.out.clear()
    start = time.perf_counter()
    broker.disconnect(leaver)
    slices = [time.perf_counter() - start]
    more = True
    while more:
        start = time.perf_counter()
        more = broker.run_deferred()
        slices.append(time.perf_counter() - start)
    return max(slices) * 1000.0, sum(slices) * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--behind", type=int, default=100_000)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    runs = [one(args.behind, args.jobs) for _ in range(args.repeat)]
    longest = [r[0] for r in runs]
    total = [r[1] for r in runs]
    print(f"disconnect of {args.jobs} jobs behind {args.behind}: longest slice best "
          f"{min(longest):.1f} ms, median {statistics.median(longest):.1f} ms; all slices "
          f"best {min(total):.1f} ms, median {statistics.median(total):.1f} ms "
          f"(broker wall time, indicative)")


if __name__ == "__main__":
    main()
