"""gear-harpd: direct calls (``HarpServer``, harpd's protocol over TLS) and calls through geard.

Usage: ``python3 bench/bench_harpd.py [--seconds S] [--threads N] [--stream N]``

Starts a geard (``--harp-port``, memory queue) and one ``gear-harpd`` child serving procedures
``echo`` and ``stream`` of host ``bench`` to it and on a TLS listen port (a throwaway PKI).
Measures, from this process: direct calls (one TLS connection each, as the seed's client
does), serially and from ``--threads`` client threads, calls/s and p50/p99; the same
procedure through geard's harp port (``rpc.bench.echo(x).get()``); and a direct stream of
``--stream`` messages, messages/s. Reuses bench_harp's load loop. Not a test: nothing is
asserted.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from tests.support.peers import ServerProcess  # noqa: E402
from tests.support.pki import make_pki  # noqa: E402

import gear.harp as harp  # noqa: E402
from bench_harp import pct, run_load, start_geard  # noqa: E402

PROCEDURES = '''
import gear.harp as harp

@harp.procedure()
def echo(x):
    return x

@harp.procedure()
def stream(n):
    for i in range(n):
        yield i
    return n
'''


class Harpd(ServerProcess):
    what = "gear-harpd"

    def __init__(self, *args: str) -> None:
        self.args = list(args)
        super().__init__()

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gear.harp.daemon", *self.args,
                "--listen", f"127.0.0.1:{self.port}"]


def report(name: str, calls: int, elapsed: float, latencies: list[float]) -> None:
    print(f"{name:34s} {calls / elapsed:9.0f} calls/s  p50 {pct(latencies, 0.5):6.2f} ms"
          f"  p99 {pct(latencies, 0.99):6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per run (default 4)")
    parser.add_argument("--threads", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--stream", type=int, default=20000, help="stream messages")
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-harpd-"))
    pki = make_pki(work)
    (work / "bench_procs.py").write_text(PROCEDURES)
    geard, gearman_port, harp_port = start_geard()
    daemon = Harpd("--procedures", str(work / "bench_procs.py"), "--host", "bench",
                   "--server", f"127.0.0.1:{gearman_port}", "--threads", str(options.threads),
                   "--listen-cert", pki.server_cert, "--listen-key", pki.server_key,
                   "--user", "bench", "--password", "bench", "--log-level", "WARNING")
    try:
        direct = harp.HarpServer("127.0.0.1", "bench", "bench", port=daemon.port,
                                 ca_file=pki.ca, timeout=30)
        rpc = harp.HarpCaller("127.0.0.1", harp_port, timeout=30)
        assert direct.echo("warm") == "warm" and rpc.bench.echo("warm").get() == "warm"
        for threads in (1, options.threads):
            report(f"direct (TLS), {threads} client threads",
                   *run_load(lambda: direct.echo("x"), options.seconds, threads))
            report(f"through geard, {threads} client threads",
                   *run_load(lambda: rpc.bench.echo("x").get(), options.seconds, threads))
        t0 = time.perf_counter()
        stream = direct.stream(options.stream)
        count = len(stream.messages())
        elapsed = time.perf_counter() - t0
        print(f"{'direct stream':34s} {count / elapsed:9.0f} messages/s ({count} messages)")
    finally:
        daemon.stop(signal.SIGTERM)
        geard.stop()


if __name__ == "__main__":
    main()
