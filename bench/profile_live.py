"""Instructions per job of a live geard, without and with ``--http-port`` (issue 12's cost).

    python3 bench/profile_live.py [--loads deep,fg] [--jobs 10000] [--src DIR ...]

Each run starts ``python3 -m gear.server --queue memory`` under ``valgrind --tool=callgrind``
(user-space instructions: they do not move with the machine's load), runs one load of
bench/loadgen.py against it (``deep``: the jobs submitted in the background, then drained by 4
workers; ``fg``: foreground jobs end to end, 2 clients x 100 in flight, 4 workers) and stops it.
Runs at ``--jobs`` and at twice that give instructions per job as their difference divided by
``--jobs`` (start-up cancels out). Without and with ``--http-port 0`` (nothing scrapes it: the
scrape's own cost is apart, docs/operations.md §5), for this checkout's ``src`` or each
``--src`` (another checkout's ``src`` directory, e.g. a worktree of an older commit).

Unlike bench/profile_server.py, which drives the broker alone in fixed rounds, this is the real
server with its event loop, so the jobs a loop pass handles are what the server makes of the
load. Under valgrind the server is slower than its load generator, so its passes are larger
than at full speed (the foreground load's most of all). Each run takes tens of seconds.
Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from tests.support.peers import listening_ports, wait_for  # noqa: E402

import loadgen  # noqa: E402


def _gearman_port(ports: list[int]) -> int:
    """The one of geard's ports that does not answer HTTP."""
    for port in ports:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5).close()
        except (OSError, http.client.HTTPException):
            return port
    raise SystemExit("no Gearman port among " + repr(ports))


def instructions(src: str, with_http: bool, load: str, jobs: int) -> int:
    """Instructions callgrind counts in one geard for one run of ``load``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
               "-m", "gear.server", "-d", "-p", "0", "-L", "127.0.0.1", "-l", "none",
               "--queue", "memory"]
        if with_http:
            cmd += ["--http-port", "0"]
        env = dict(os.environ, PYTHONPATH=src, PYTHONHASHSEED="0")
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            want = 2 if with_http else 1
            ports = wait_for(lambda: (p if len(p := listening_ports(proc.pid)) >= want
                                      else None), timeout=120, what="geard to listen")
            port = _gearman_port(ports) if with_http else ports[0]
            if load == "deep":
                loadgen.load_deep(port, jobs, 3600.0)
            else:
                loadgen.load_fg(port, 3600.0, jobs)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(300)
        match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
        if match is None:
            raise SystemExit(f"no instruction total in {out}")
        return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", default="deep,fg")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--src", action="append", default=None,
                        help="a checkout's src directory (default: this one's); repeatable")
    args = parser.parse_args(argv)
    sources = args.src or [str(REPO / "src")]
    for load in args.loads.split(","):
        if load not in ("deep", "fg"):
            parser.error(f"unknown load {load!r}")
        for src in sources:
            per_job = []
            for with_http in (False, True):
                low = instructions(src, with_http, load, args.jobs)
                high = instructions(src, with_http, load, 2 * args.jobs)
                per_job.append((high - low) / args.jobs)
            plain, observed = per_job
            print(f"{load:5} {src}: {plain:9,.0f} instr/job without --http-port, "
                  f"{observed:9,.0f} with ({(observed / plain - 1) * 100:+.1f}%)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
