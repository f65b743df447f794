"""Raw-socket helpers for tests that speak the protocol byte by byte to a live server."""

from __future__ import annotations

import socket
import struct

from gear import constants as c


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    """A blocking TCP_NODELAY connection to 127.0.0.1:``port``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_packet(sock: socket.socket) -> tuple[int, list[bytes]]:
    """Read one ``\\0RES`` packet: its type and its body split on every NUL."""

    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("connection closed")
            buf += chunk
        return buf

    magic, ptype, size = struct.unpack("!4sII", exactly(12))
    assert magic == c.RES
    body = exactly(size)
    return ptype, body.split(b"\x00")
