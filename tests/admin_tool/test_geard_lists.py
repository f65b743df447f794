"""``gear-admin dead ...`` and ``gear-admin harp ...`` against a live geard, and gearmand's answer
(docs/gear-admin.md §6).

The installed console script runs as a subprocess against an in-process geard (a dead-letter
list made by a raw worker that grabs and goes away; harp calls made on the harp port), so what
is asserted is what an operator sees: the tables, the JSON, the messages and the exit status.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from gear import constants as c
from gear.admin_tool.geard_lists import table
from gear.protocol.admin import is_multiline, parse_show_dead_jobs
from gear.protocol.packets import request
from tests.admin_tool.conftest import gear_admin, submit_background
from tests.server.harp.conftest import LiveServer, RawWorker, live  # noqa: F401
from tests.server.harp.test_harp_store import ask, submit
from tests.support.peers import GeardProcess, GearmandProcess
from tests.support.raw import connect, read_packet


def hp(port: int) -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(port)]


def kill_once(port: int, function: bytes) -> None:
    """A worker that takes the next job of ``function`` and goes away without a result."""
    worker = connect(port)
    worker.sendall(request(c.CAN_DO, function) + request(c.GRAB_JOB))
    assert read_packet(worker)[0] == c.JOB_ASSIGN
    worker.close()


def wait_dead(port: int, count: int) -> None:
    """Until ``show dead jobs`` lists ``count`` jobs (the server handled the worker's close)."""
    for _ in range(200):
        code, out, _err = gear_admin(*hp(port), "dead", "list", "--json")
        if code == 0 and len(out.splitlines()) == count:
            return
    raise AssertionError(f"never {count} dead jobs")


@pytest.fixture
def dead_geard() -> Iterator[GeardProcess]:
    """geard with two dead jobs of ``resize`` and one of ``thumb`` (one attempt each)."""
    server = GeardProcess("--queue", "memory", "-l", "none", "--job-retries", "1")
    clients = []
    try:
        for function, unique in ((b"resize", b"img\t7"), (b"resize", b"img-8"),
                                 (b"thumb", b"t-1")):
            sock, _handle = submit_background(server.port, function, unique)
            clients.append(sock)
            kill_once(server.port, function)
        wait_dead(server.port, 3)
        yield server
    finally:
        for sock in clients:
            sock.close()
        server.stop()


def test_dead_list_prints_a_table_and_json(dead_geard: GeardProcess) -> None:
    code, out, err = gear_admin(*hp(dead_geard.port), "dead", "list")
    assert (code, err) == (0, b"")
    lines = out.decode().splitlines()
    assert lines[0].split() == ["HANDLE", "FUNCTION", "UNIQUE", "ATTEMPTS", "DIED", "(UTC)",
                                "BYTES"]
    assert [line.split()[1] for line in lines[1:]] == ["resize", "resize", "thumb"]
    assert all(line.split()[-1] == "4" for line in lines[1:])  # b"data"
    code, out, err = gear_admin(*hp(dead_geard.port), "dead", "list", "resize", "--json")
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["function"], r["unique"], r["attempts"]) for r in records] == [
        ("resize", "img\t7", 1), ("resize", "img-8", 1)]


def test_dead_retry_and_drop(dead_geard: GeardProcess) -> None:
    port = dead_geard.port
    _c, out, _e = gear_admin(*hp(port), "dead", "list", "--json")
    first = json.loads(out.splitlines()[0])["handle"]
    assert gear_admin(*hp(port), "dead", "retry", first) == (0, f"retried {first}\n".encode(),
                                                             b"")
    assert gear_admin(*hp(port), "dead", "retry", first) == (
        1, b"", b"gear-admin: UNKNOWN_JOB\n")
    # The retried job is queued again: the admin status shows it.
    assert gear_admin(*hp(port), "--status")[1].startswith(b"resize\t1\t0\t0\n")
    assert gear_admin(*hp(port), "dead", "drop", "--all", "thumb") == (0, b"dropped 1\n", b"")
    assert gear_admin(*hp(port), "dead", "drop", "--all") == (0, b"dropped 1\n", b"")
    assert gear_admin(*hp(port), "dead", "list") == (
        0, b"HANDLE  FUNCTION  UNIQUE  ATTEMPTS  DIED (UTC)  BYTES\n", b"")


def test_dead_retry_needs_a_handle_or_all() -> None:
    code, out, err = gear_admin("dead", "retry")
    assert code == 2 and b"retry needs a HANDLE, or --all" in err and out == b""


def test_harp_list_info_cancel_and_queues(live: LiveServer) -> None:  # noqa: F811
    worker = RawWorker(live.port, "h/echo")
    try:
        running = submit(live.harp_port, info={"k": 1}, queue={"name": {"q": 1},
                                                               "concurrency": 1})
        waiting = submit(live.harp_port, queue={"name": {"q": 1}})
        handle, _fn, _args = worker.grab()
        code, out, err = gear_admin(*hp(live.port), "harp", "list")
        assert (code, err) == (0, b"")
        rows = [line.split() for line in out.decode().splitlines()]
        assert rows[0] == ["JOB", "ID", "STATE", "HOST", "PROCEDURE", "QUEUE", "SUBMIT",
                           "START", "END"]
        assert {(r[0], r[1]) for r in rows[1:]} == {(running, "running"), (waiting, "queued")}

        code, out, _err = gear_admin(*hp(live.port), "harp", "info", running)
        info = json.loads(out)
        assert (code, info["job_id"], info["info"], info["arguments"]) == (
            0, running, {"k": 1}, {"x": 1})

        code, out, _err = gear_admin(*hp(live.port), "harp", "queue-list")
        assert out.decode().splitlines()[1].split() == ['{"q":', '1}', "1", "1", "1"]
        code, out, _err = gear_admin(*hp(live.port), "harp", "queue-list", '{"q": 1}', "--json")
        assert [json.loads(line)["job_id"] for line in out.splitlines()] == [running, waiting]

        assert gear_admin(*hp(live.port), "harp", "cancel", running) == (
            0, f"cancelled {running}\n".encode(), b"")
        assert ask(live.harp_port, {"get_result": running}) == {"cancelled": True}
        assert gear_admin(*hp(live.port), "harp", "cancel", running) == (
            1, b"", b"gear-admin: NOT_RUNNING the call has ended\n")
        # The freed slot went to the waiting call; cancelling the queue ends it too.
        assert worker.grab()[0] != handle
        assert gear_admin(*hp(live.port), "harp", "queue-cancel", '{"q":1}') == (
            0, b"cancelled 1\n", b"")
        code, out, _err = gear_admin(*hp(live.port), "harp", "list", "--all", "--json")
        assert {json.loads(line)["state"] for line in out.splitlines()} == {"ended"}
        assert gear_admin(*hp(live.port), "harp", "prune-jobs", "0") == (0, b"pruned 2\n", b"")
        assert gear_admin(*hp(live.port), "harp", "info", running) == (
            1, b"", b"gear-admin: UNKNOWN_JOB\n")
    finally:
        worker.close()


def test_harp_queue_name_must_be_a_json_object() -> None:
    code, _out, err = gear_admin("harp", "queue-cancel", "db")
    assert code == 2 and b"a queue name is a JSON object" in err


def test_against_gearmand_the_refusal_is_clear() -> None:
    server = GearmandProcess()
    try:
        code, out, err = gear_admin(*hp(server.port), "harp", "list")
        assert (code, out) == (1, b"") and err.startswith(b"gear-admin: UNKNOWN_COMMAND")
    finally:
        server.stop()


def test_a_server_that_is_not_there() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = gear_admin(*hp(port), "dead", "list")
    assert (code, out, err) == (1, b"", b"Error: Error connecting to 127.0.0.1.\n\n")


def test_framing_and_parsing_of_the_listings() -> None:
    assert is_multiline(b"show dead jobs") and is_multiline(b"show dead jobs resize")
    assert is_multiline(b"harp list all") and is_multiline(b'harp queue {"a":1}')
    assert is_multiline(b"harp info X") and is_multiline(b"harp queues")
    assert not is_multiline(b'harp cancel queue {"a":1}') and not is_multiline(b"harp prune")
    assert not is_multiline(b"retry dead jobs")
    dead = parse_show_dead_jobs([b"H:x:1\tf\ta\tb\t3\t1700000000\t9", b"garbage"])
    assert [(d.handle, d.unique, d.attempts, d.died, d.size) for d in dead] == [
        (b"H:x:1", b"a\tb", 3, 1700000000, 9)]
    assert table(["A", "LONG"], [["xyz", None]]) == "A    LONG\nxyz  -\n"
