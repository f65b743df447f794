"""A geard killed with SIGKILL keeps the harp records its writer had committed (docs/harp.md,
"Storage": write-behind, at most the last flush interval is lost)."""

from __future__ import annotations

import signal
import socket
import sqlite3
from pathlib import Path

from tests.server.harp.conftest import RawWorker
from tests.server.harp.test_harp_store import ask, read_all, submit
from tests.support.peers import GeardProcess, listening_ports, wait_for


def ports(server: GeardProcess) -> tuple[int, int]:
    """(Gearman port, harp port) of a geard listening on both."""
    found = wait_for(lambda: (lambda p: p if len(p) == 2 else None)(
        listening_ports(server.pid)), what="both ports")
    for port in found:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"version\n")
            if sock.recv(100).startswith(b"OK "):
                return port, next(p for p in found if p != port)
    raise AssertionError(f"no Gearman port among {found}")


def committed(db: Path, done: str, running: str) -> bool:
    """Whether the ended call (reply and 2 messages) and the started one are on disk."""
    with sqlite3.connect(db) as conn:
        reply = conn.execute("SELECT reply FROM harp_calls WHERE id = ?", (done,)).fetchone()
        n = conn.execute("SELECT count(*) FROM harp_stream WHERE id = ?", (done,)).fetchone()
        start = conn.execute("SELECT start FROM harp_calls WHERE id = ?", (running,)).fetchone()
    return bool(reply and reply[0] and n[0] == 2 and start and start[0])


def test_committed_records_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "queue.db"
    server = GeardProcess("--queue", f"sqlite://{db}", "--harp-port", "0")
    try:
        gearman, harp = ports(server)
        worker = RawWorker(gearman, "h/echo")
        try:
            job_id = submit(harp)
            handle, _, _ = worker.grab()
            worker.data(handle, "one")
            worker.data(handle, "two")
            worker.complete(handle, {"done": 1})
            assert ask(harp, {"get_result": job_id, "wait": True}) == {"result": {"done": 1}}
            running = submit(harp)
            worker.grab()
        finally:
            worker.close()
        wait_for(lambda: committed(db, job_id, running), what="the records' commit")
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
        server.port = 0
        server.start()
        gearman, harp = ports(server)
        assert ask(harp, {"get_result": job_id}) == {"result": {"done": 1}}
        assert read_all(harp, {"read_stream": job_id}) == [
            {"packet": 0, "data": "one"}, {"packet": 1, "data": "two"}, {"result": {"done": 1}}]
        assert ask(harp, {"get_result": running})["error"]["type"] == "server_restarted"
        assert ask(harp, {"get_status": running})["time"]["start"] is not None
    finally:
        server.stop()
