"""The harp port's options, and record retention, without a server."""

from __future__ import annotations

from gear.server import cli
from gear.server.harp.records import CallRecord, RecordTable


def test_harp_options_parse_with_defaults() -> None:
    args = cli.parse_args([])
    assert (args.harp_port, args.harp_address, args.harp_retention) == (None, "127.0.0.1",
                                                                        604800)
    args = cli.parse_args(["--harp-port", "3502", "--harp-address", "0.0.0.0",
                           "--harp-retention", "60"])
    assert (args.harp_port, args.harp_address, args.harp_retention) == (3502, "0.0.0.0", 60.0)


def test_retention_forgets_only_ended_records_past_it() -> None:
    table = RecordTable(retention=10)
    old = CallRecord("a", "h", "p", [], None, 0.0)
    new = CallRecord("b", "h", "p", [], None, 0.0)
    running = CallRecord("c", "h", "p", [], None, 0.0)
    for rec in (old, new, running):
        table.add(rec)
    old.end({"result": 1}, 1.0)
    table.ended(old, 1.0)
    new.end({"result": 2}, 5.0)
    table.ended(new, 5.0)
    assert table.prune(12.0) == ["a"]
    assert table.get("a") is None and table.get("b") is new and table.get("c") is running
    assert table.prune(100.0) == ["b"]
    assert table.get("c") is running and len(table) == 1
