"""The ``harp`` admin command on geard's admin text port (docs/harp.md, "Admin commands")."""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace
from typing import Any

from gear.server.harp.admin import HarpAdmin
from tests.server.harp.conftest import LiveServer, RawWorker
from tests.server.harp.test_harp_store import ask, submit


def admin(port: int, line: str) -> bytes:
    """One admin line; the reply up to its ``.`` line or its single OK/ERR line."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(line.encode() + b"\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {data!r}"
            data += chunk
            if data.startswith((b"OK", b"ERR")) and data.endswith(b"\n"):
                return data
            if data == b".\n" or data.endswith(b"\n.\n"):
                return data


def listing(port: int, line: str) -> list[Any]:
    reply = admin(port, line)
    assert reply.endswith(b".\n"), reply
    return [json.loads(x) for x in reply[:-2].splitlines()]


def test_list_info_cancel(live: LiveServer, worker: RawWorker) -> None:
    port = live.port
    running = submit(live.harp_port, info={"k": 1})
    handle, _, _ = worker.grab()
    worker.data(handle, "m")
    queued = submit(live.harp_port, procedure="nobody")
    done = submit(live.harp_port, procedure="nobody")
    assert ask(live.harp_port, {"cancel": done}) == {"cancelled": True}
    # The start time is stamped when the worker took the call: wait for it through get_status.
    assert ask(live.harp_port, {"get_status": running})["time"]["start"] is not None
    calls = listing(port, "harp list")
    assert {(c["job_id"], c["state"]) for c in calls} == {(running, "running"),
                                                          (queued, "queued")}
    assert {c["job_id"] for c in listing(port, "HARP LIST ALL")} == {running, queued, done}
    info = listing(port, f"harp info {running}")
    assert len(info) == 1
    assert info[0]["arguments"] == {"x": 1} and info[0]["info"] == {"k": 1}
    assert info[0]["outcome"] is None and info[0]["procedure"] == "echo"
    assert listing(port, f"harp info {done}")[0]["outcome"] == {"cancelled": True}
    assert admin(port, f"harp cancel {running}") == b"OK\r\n"
    assert ask(live.harp_port, {"get_result": running}) == {"cancelled": True}
    assert admin(port, f"harp cancel {running}").startswith(b"ERR NOT_RUNNING")
    assert admin(port, "harp cancel nope") == b"ERR UNKNOWN_JOB\r\n"
    assert admin(port, "harp info nope") == b"ERR UNKNOWN_JOB\r\n"
    assert [c["job_id"] for c in listing(port, "harp list")] == [queued]
    # Plain gearmand commands still answer on the same connection type.
    assert admin(port, "version").startswith(b"OK ")


def test_queues_and_queue_cancel(live: LiveServer) -> None:
    port, harp = live.port, live.harp_port
    name = {"tenant": "a b"}
    ids = [submit(harp, procedure="nobody", queue={"name": name, "concurrency": 2})
           for _ in range(4)]
    assert listing(port, "harp queues") == [
        {"queue": name, "concurrency": 2, "running": 2, "waiting": 2}]
    assert [c["job_id"] for c in listing(port, 'harp queue {"tenant": "a b"}')] == ids
    assert admin(port, 'harp cancel queue {"tenant": "a b"}') == b"OK 4\n"
    for job_id in ids:
        assert ask(harp, {"get_result": job_id}) == {"cancelled": True}
    assert listing(port, "harp queues") == []
    assert admin(port, 'harp cancel queue {"tenant": "a b"}') == b"ERR UNKNOWN_QUEUE\r\n"


def test_prune(live: LiveServer) -> None:
    port, harp = live.port, live.harp_port
    job_id = submit(harp, procedure="nobody")
    kept = submit(harp, procedure="nobody")
    assert admin(port, "harp prune") == b"OK 0\n"  # ended too recently for the retention
    ask(harp, {"cancel": job_id})
    assert admin(port, "harp prune 0") == b"OK 1\n"
    assert ask(harp, {"get_result": job_id})["error"]["type"] == "invalid_jobid"
    assert ask(harp, {"get_result": kept, "wait": False}) == {"no_result": True}


def test_bad_arguments(live: LiveServer) -> None:
    port = live.port
    for line in ("harp", "harp frobnicate", "harp list some", "harp info", "harp info a b",
                 "harp cancel", "harp queue [1]", "harp queue {bad", "harp cancel queue 3",
                 "harp queues x", "harp prune soon", "harp prune -1", "harp prune nan"):
        reply = admin(port, line)
        assert reply.startswith(b"ERR INVALID_ARGUMENTS ") and reply.endswith(b"\r\n"), line
    assert admin(port, "harp queue {\"none\": 1}") == b".\n"
    assert admin(port, "status").endswith(b".\n")  # the server goes on


class DenyingACL:
    def __init__(self, invoke: bool) -> None:
        self.invoke = invoke
        self.asked: list[tuple[Any, ...]] = []

    def canInvoke(self, subject: str | None, name: str) -> bool:
        self.asked.append(("invoke", subject, name))
        return self.invoke

    def canGrant(self, subject: str | None) -> bool:
        self.asked.append(("grant", subject))
        return False


def test_acl_denies_cancel_and_prune(live: LiveServer) -> None:
    harp = live.harp_port
    job_id = submit(harp, procedure="nobody", queue={"name": {"q": 1}})
    command = HarpAdmin(live.server.harp.service)
    acl = DenyingACL(invoke=False)
    broker = SimpleNamespace(config=SimpleNamespace(acl=acl))
    peer = SimpleNamespace(ssl_subject="client1")

    def run(line: str) -> bytes:
        return bytes(live.call(lambda: command(broker, peer, line.encode())))

    assert run(f"harp cancel {job_id}") == b"ERR PERMISSION_DENIED\r\n"
    assert run('harp cancel queue {"q": 1}') == b"ERR PERMISSION_DENIED\r\n"
    assert run("harp prune 0") == b"ERR PERMISSION_DENIED\r\n"
    assert ("invoke", "client1", "h/nobody") in acl.asked and ("grant", "client1") in acl.asked
    # Nothing was cancelled:
    assert ask(harp, {"get_result": job_id, "wait": False}) == {"no_result": True}
    acl.invoke = True
    assert run(f"harp cancel {job_id}") == b"OK\r\n"
    assert run("harp list") == b".\n"  # listings need no permission
