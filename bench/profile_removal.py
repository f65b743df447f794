"""In-process measure of the broker's stall when a client with queued jobs leaves (issue 13).

Run: ``python3 bench/profile_removal.py [--behind N] [--jobs M] [--repeat R]``

Queues ``--behind`` foreground jobs from one client, then ``--jobs`` from a second one behind
them, and times ``Broker.disconnect`` of the second (wall milliseconds, best and median of
``--repeat``): while it runs no other connection is served, so it is the stall every other
client sees. Broker only, like bench/profile_server.py (no sockets, no event loop, no peer to
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


def one(behind: int, jobs: int) -> float:
    """Milliseconds the disconnect of the ``jobs`` client took."""
    broker = Broker(BrokerConfig(handle_prefix=b"H:bench"))
    front = broker.connect("127.0.0.1", 1, 1)
    leaver = broker.connect("127.0.0.1", 2, 2)
    for peer, n, tag in ((front, behind, b"a"), (leaver, jobs, b"b")):
        broker.feed(peer, b"".join(request(c.SUBMIT_JOB, b"f", b"", tag + b"%d" % i)
                                   for i in range(n)))
        peer.out.clear()
    start = time.perf_counter()
    broker.disconnect(leaver)
    return (time.perf_counter() - start) * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--behind", type=int, default=100_000)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    ms = [one(args.behind, args.jobs) for _ in range(args.repeat)]
    print(f"disconnect of {args.jobs} jobs behind {args.behind}: best {min(ms):.1f} ms, "
          f"median {statistics.median(ms):.1f} ms (broker wall time, indicative)")


if __name__ == "__main__":
    main()
