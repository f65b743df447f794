"""Test doubles for the threaded API: scripted sockets and in-process socket pairs.

``ScriptedSocket`` returns pre-set chunks from ``recv`` (one chunk per call at most) and records
``sendall``; ``Peer`` attaches one end of a ``socket.socketpair`` to a Client/Worker as an
active connection, so the object's real poll thread runs while the test plays the server on
the other end; ``get_job_in_thread`` runs a Worker's blocking ``getJob`` in a thread. No TCP,
no ports.
"""

from __future__ import annotations

import errno
import socket
import threading
from typing import Any

import gear
from gear import constants
from gear.protocol.packets import AdminLine, Decoder, Frame, response
from gear.threaded.connection import Connection


class ScriptedSocket:
    """``recv`` returns the scripted chunks in order (split to the requested size), then
    raises ``EOFError`` (blocking) or an EAGAIN ``OSError`` (non-blocking). A ``None`` chunk
    raises EAGAIN once, like gear's FakeSocket between its chunks."""

    def __init__(self, chunks: list[bytes | None] | None = None, blocking: bool = True) -> None:
        self.chunks = list(chunks or [])
        self.blocking = blocking
        self.recv_calls = 0
        self.sent: list[bytes] = []

    def recv(self, n: int) -> bytes:
        self.recv_calls += 1
        if not self.chunks:
            if self.blocking:
                raise EOFError("no more scripted data")
            e = OSError("would block")
            e.errno = errno.EAGAIN
            raise e
        chunk = self.chunks.pop(0)
        if chunk is None:
            e = OSError("would block")
            e.errno = errno.EAGAIN
            raise e
        if len(chunk) > n:
            self.chunks.insert(0, chunk[n:])
            chunk = chunk[:n]
        return chunk

    def setblocking(self, flag: int) -> None:
        self.blocking = bool(flag)

    def sendall(self, data: bytes) -> None:
        self.sent.append(bytes(data))

    def send(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return len(data)

    def close(self) -> None:
        pass


def scripted_connection(chunks: list[bytes | None]) -> tuple[Connection, ScriptedSocket]:
    conn = Connection("127.0.0.1", 4730)
    sock = ScriptedSocket(chunks)
    conn.conn = sock
    conn.connected = True
    return conn, sock


class Peer:
    """The server side of a socketpair attached to ``owner`` (a Client or Worker)."""

    def __init__(self, owner: Any, state: str = "IDLE") -> None:
        a, b = socket.socketpair()
        self.sock = b
        self.sock.settimeout(5)
        self.decoder = Decoder()
        self.pending: list[Frame | AdminLine] = []
        self.conn = Connection("127.0.0.1", 0, client_id=owner.client_id)
        self.conn.conn = a
        self.conn.connected = True
        self.conn.changeState(state)
        with owner.connections_condition:
            owner.active_connections.append(self.conn)
            owner.connections_condition.notify_all()
        owner._wake()

    def send(self, ptype: int, *args: bytes) -> None:
        self.sock.sendall(response(ptype, *args))

    def expect(self, ptype: int) -> Frame:
        """The next packet the owner sent; it must have type ``ptype``."""
        while not self.pending:
            data = self.sock.recv(65536)
            assert data, "connection closed"
            self.pending.extend(self.decoder.feed(data))
        item = self.pending.pop(0)
        assert isinstance(item, Frame), item
        assert item.ptype == ptype, (constants.types.get(item.ptype), item)
        return item

    def nothing_pending(self) -> bool:
        """True if the owner sent nothing more (non-blocking check)."""
        if self.pending:
            return False
        self.sock.setblocking(False)
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return True
        finally:
            self.sock.settimeout(5)
        self.pending.extend(self.decoder.feed(data))
        return not self.pending

    def close(self) -> None:
        self.sock.close()


def get_job_in_thread(worker: gear.Worker) -> tuple[threading.Thread, list[object]]:
    """``worker.getJob()`` in a daemon thread; its job (or InterruptedError) lands in the list."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(worker.getJob())
        except gear.InterruptedError as e:
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out
