"""The harp port's options, and record retention, without a server."""

from __future__ import annotations

import os
import uuid
from typing import Any

from gear.server import cli
from gear.server.harp.protocol import new_job_id, parse_request
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


def test_new_job_ids_are_canonical_version_4_uuids() -> None:
    ids = {new_job_id() for _ in range(200)}
    assert len(ids) == 200
    for job_id in ids:
        parsed = uuid.UUID(job_id)
        assert str(parsed) == job_id
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_job_ids_across_random_blocks_are_distinct(monkeypatch: Any) -> None:
    # The random bytes are read a block at a time: ids on both sides of a block's end, and
    # from a pool emptied as a forked child's is, are all distinct version 4 UUIDs.
    from gear.server.harp import protocol

    reads: list[int] = []
    real = os.urandom

    def counting(n: int) -> bytes:
        reads.append(n)
        return real(n)

    monkeypatch.setattr(protocol.os, "urandom", counting)
    protocol._POOL.reset()
    per_block = protocol._RandomPool.SIZE // 16
    ids = [new_job_id() for _ in range(per_block + 1)]
    assert reads == [protocol._RandomPool.SIZE, protocol._RandomPool.SIZE]
    protocol._POOL.reset()  # what os.register_at_fork runs in a child
    ids.append(new_job_id())
    assert len(reads) == 3
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 4 for i in ids)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_job_id()  # the parent's pool holds unused bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id must differ from the parent's next one
        os.close(read)
        os.write(write, new_job_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert uuid.UUID(child).version == 4
    assert child != new_job_id()


def test_job_ids_in_requests_are_normalised() -> None:
    job_id = new_job_id()
    assert parse_request(b'{"harpcaller":1,"get_status":"%s"}' % job_id.encode()).job_id \
        == job_id
    upper = parse_request(b'{"harpcaller":1,"get_status":"%s"}' % job_id.upper().encode())
    assert upper.job_id == job_id
    assert parse_request(b'{"harpcaller":1,"get_status":"nope"}').job_id is None


def test_loads_is_json_loads() -> None:
    import json

    import pytest

    from gear.server.harp.protocol import loads

    for data in [b'{"a":1}', b' {"a": 1} ', b'\xef\xbb\xbf{"a":1}', b"[1]\t", b"NaN", b'"\\u00e9"',
                 "é".encode(), '"é"'.encode(), b"1 2", b"{", b"\xff", b"", b"[1]x", b"\x0b1",
                 b'{"a":1}\n', b"1\n\n", b"\n", b"[1]\r\n"]:
        for value in (data, data.decode("utf-8", "replace")):
            try:
                expected: object = json.loads(value)
            except ValueError as exc:
                with pytest.raises(type(exc)):
                    loads(value)
                continue
            got = loads(value)
            assert got == expected or (got != got and expected != expected)  # NaN


def test_compact_is_json_dumps() -> None:
    # The encoders made once give json.dumps's text, and its errors, for every value.
    import json

    from gear.harp.messages import _Compact
    from gear.server.harp.protocol import compact, compact_sorted

    assert compact._encoder is not None  # the C encoder is in use on this Python

    def outcome(encode: Any, value: Any) -> Any:
        try:
            return encode(value)
        except Exception as exc:
            return type(exc), str(exc)

    circular: list[Any] = []
    circular.append(circular)
    looped: dict[str, Any] = {}
    looped["x"] = [looped]
    values = [1, "x", "é\n\x00", [1, {"b": 2, "a": [None, 1.5]}], {"é": "\n"}, float("inf"),
              float("nan"), {1: 2, False: 3, None: 4, 1.5: 5}, circular, looped,
              {"x": object()}, {(1, 2): 3}, [[[[[]]]]] * 3, 10**30, -0.0, (1, 2), {}]
    for value in values:
        assert outcome(compact, value) == outcome(
            lambda v: json.dumps(v, separators=(",", ":")), value), value
        assert outcome(compact_sorted, value) == outcome(
            lambda v: json.dumps(v, separators=(",", ":"), sort_keys=True), value), value
    # Without the C encoder (another Python's json): the plain encoder, the same text.
    plain = _Compact()
    plain._encoder = None
    assert plain({"b": [1, "é"]}) == json.dumps({"b": [1, "é"]}, separators=(",", ":"))
    # After an error the shared encoder still works (it keeps no state between calls).
    assert compact([1, {"a": None}]) == '[1,{"a":null}]'
