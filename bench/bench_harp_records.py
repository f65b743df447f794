"""Memory and disk per kept harp call record (docs/harp.md, "Retention"; docs/benchmarks.md).

Usage: ``python3 bench/bench_harp_records.py [--records N] [--result-bytes B] [--messages M]
[--message-bytes B] [--postgres URL]``

Builds ``--records`` ended calls (default 10,000), each with a ``--result-bytes`` JSON string
result (default 1 KB) and ``--messages`` stream messages (default 10, 100 bytes each), through
the harp service's own paths (the call request, WORK_DATA, WORK_COMPLETE handling) with the
SQLite record store of a durable queue attached (its group-commit writer thread), then prints:

* the process's RSS before and after (``/proc/self/statm``, after a full GC), per record;
* the SQLite file (database + WAL) before and after, per record;
* the byte count the ``--harp-max-bytes`` bound sees, per record (what the bound compares);
* the writer's transactions (group commit: far fewer than the changes it wrote);
* with ``--postgres URL`` (a ``--queue`` URL), the harp tables' ``pg_total_relation_size``.

Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gear import constants as c  # noqa: E402
from gear.server.broker import Broker, BrokerConfig  # noqa: E402
from gear.server.harp.service import HarpService  # noqa: E402
from gear.server.storage.harp_writer import HarpWriter, open_harp_store  # noqa: E402


def rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Sink:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data = data

    def done(self, close: bool = False) -> None:
        pass


def build(service: HarpService, args: argparse.Namespace) -> None:
    result = json.dumps("r" * args.result_bytes).encode()
    message = json.dumps({"line": "m" * max(0, args.message_bytes - 11)}).encode()
    for i in range(args.records):
        sink = Sink()
        line = {"harpcaller": 1, "host": "bench", "procedure": "echo", "arguments": [i],
                "info": {"n": i}}
        service.handle_line(json.dumps(line).encode(), sink)
        job_id = json.loads(sink.data)["job_id"]
        rec = service.records.get(job_id)
        assert rec is not None and rec.handle is not None
        # What a worker's packets look like on the service's link.
        for _ in range(args.messages):
            service._packet(c.WORK_DATA, rec.handle + b"\0" + message)
        service._packet(c.WORK_COMPLETE, rec.handle + b"\0" + result)
        # Its Gearman job is done; the broker forgets it as it would after WORK_COMPLETE.
        job = service.broker.jobs.get(rec.handle)
        if job is not None:
            service.broker.cancel(job)


async def main(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp(prefix="bench-harp-records-")
    url = args.postgres or f"sqlite://{tmp}/queue.db"
    from gear.server.storage import open_storage

    queue = open_storage(url)  # the queue's tables first, as geard opens them
    assert queue is not None
    queue.load()
    store = open_harp_store(url)
    assert store is not None
    writer = HarpWriter(store)
    await writer.start()
    disk0 = store.size()
    broker = Broker(BrokerConfig(), time.time)
    service = HarpService(broker, time.time, lambda: None, store=writer)
    mem0 = rss()
    t0 = time.perf_counter()
    build(service, args)
    built = time.perf_counter() - t0
    mem1 = rss()
    await writer.close()
    queue.close()
    n = args.records
    print(f"{n} records, result {args.result_bytes} B, {args.messages} messages of "
          f"{args.message_bytes} B; built in {built:.2f} s ({n / built:.0f} records/s)")
    print(f"RSS: {mem0 / 1e6:.1f} MB -> {mem1 / 1e6:.1f} MB: {(mem1 - mem0) / n:.0f} B/record")
    print(f"counted by the byte bound: {service.records.bytes / n:.0f} B/record")
    print(f"store transactions: {writer.batches} for {writer.changes} changes")
    if args.postgres:
        import psycopg

        calls = store.calls_name  # type: ignore[attr-defined]
        with psycopg.connect(store.conninfo) as conn:  # type: ignore[attr-defined]
            size = sum(conn.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0]
                       for t in (calls, calls.replace("_harp_calls", "_harp_stream")))
        print(f"postgres harp tables: {size / 1e6:.1f} MB: {size / n:.0f} B/record")
    else:
        store2 = open_harp_store(url)
        assert store2 is not None
        disk1 = store2.size()  # after close: the WAL was checkpointed into the file
        print(f"SQLite file: {disk0 / 1e6:.2f} MB -> {disk1 / 1e6:.2f} MB: "
              f"{(disk1 - disk0) / n:.0f} B/record")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=10000)
    p.add_argument("--result-bytes", type=int, default=1000)
    p.add_argument("--messages", type=int, default=10)
    p.add_argument("--message-bytes", type=int, default=100)
    p.add_argument("--postgres", default=None, metavar="URL",
                   help="a postgresql:// queue URL instead of a temporary SQLite file")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
