"""``--queue sqlite:///...?max_size=``: a live geard at its cap (docs/server.md, Queue URLs).

At the cap a submit is refused cleanly (the client gets ERROR QUEUE_ERROR, not a hang), the
server goes on serving, the database and its WAL stay under the cap together, and every job
the server acknowledged is still in the queue after it stops.
"""

from __future__ import annotations

from pathlib import Path

from gear import constants as c
from gear.protocol.packets import request
from gear.server.storage.sqlite import SqliteStorage
from tests.support.peers import GeardProcess
from tests.support.raw import connect, read_packet


def test_submit_at_the_cap_gets_an_error_and_nothing_acknowledged_is_lost(
    tmp_path: Path,
) -> None:
    db = tmp_path / "q.db"
    server = GeardProcess("--queue", f"sqlite://{db}?max_size=192K", "-l", "none",
                          log=tmp_path / "geard.err")
    acknowledged: list[bytes] = []
    try:
        sock = connect(server.port, timeout=10)  # a hang would raise socket.timeout
        for n in range(1000):
            unique = b"u%d" % n
            sock.sendall(request(c.SUBMIT_JOB_BG, b"capped", unique, b"x" * 5000))
            ptype, args = read_packet(sock)
            if ptype == c.ERROR:
                assert args[0] == b"QUEUE_ERROR"
                break
            assert ptype == c.JOB_CREATED
            acknowledged.append(unique)
        else:
            raise AssertionError("the queue never filled up")
        wal = Path(f"{db}-wal")
        assert db.stat().st_size + (wal.stat().st_size if wal.exists() else 0) <= 192 * 1024
        assert len(acknowledged) > 5
        sock.sendall(request(c.ECHO_REQ, b"still serving"))
        assert read_packet(sock) == (c.ECHO_RES, [b"still serving"])
    finally:
        assert server.stop() == 0
    store = SqliteStorage(db)
    try:
        assert [job.unique for job in store.load()] == acknowledged
    finally:
        store.close()
