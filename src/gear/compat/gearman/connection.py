"""python-gearman 2.0's ``gearman.connection``: :class:`GearmanConnection`, one server socket.

Owns the socket of one server: connecting (TCP_NODELAY always, TLS with
:func:`gear.net.client_tls_context` when ``keyfile``/``certfile``/``ca_certs`` are given, as
python-gearman's SSL host entries), a bounded connect timeout, and moving bytes: :meth:`send`
queues, :meth:`flush` writes what the socket takes without blocking, :meth:`recv` reads what
has arrived. The socket is non-blocking once connected, so one poll loop (``select``) can serve
every connection of a client or worker, as python-gearman's does. Any socket failure is this
package's :class:`~gear.compat.gearman.errors.ConnectionError`; the connection manager then
drops the connection.

What the bytes mean is not decided here: the command handlers feed them to the shared sessions
of :mod:`gear.protocol`. Imports ``gear.net`` and this package's errors; no protocol logic.
"""

from __future__ import annotations

import socket
import ssl

from gear import net
from gear.compat.gearman.constants import DEFAULT_GEARMAN_PORT
from gear.compat.gearman.errors import ConnectionError

__all__ = ["GearmanConnection"]

_READ_SIZE = 65536


class GearmanConnection:
    """One connection to ``host:port`` (python-gearman's attributes: ``gearman_host``,
    ``gearman_port``, ``connected``, ``gearman_socket``)."""

    #: Seconds a connect (and TLS handshake) may take; python-gearman had none.
    connect_timeout: float = 10.0

    def __init__(self, host: str | None = None, port: int = DEFAULT_GEARMAN_PORT,
                 keyfile: str | None = None, certfile: str | None = None,
                 ca_certs: str | None = None) -> None:
        if host is None:
            raise ConnectionError("No host specified")
        self.gearman_host = host
        self.gearman_port = int(port)
        self.keyfile = keyfile
        self.certfile = certfile
        self.ca_certs = ca_certs
        self.use_ssl = bool(keyfile or certfile or ca_certs)
        self.gearman_socket: socket.socket | None = None
        self.connected = False
        self._out = bytearray()

    def __repr__(self) -> str:
        return (f"<GearmanConnection {self.gearman_host}:{self.gearman_port} "
                f"connected={self.connected}>")

    def fileno(self) -> int:
        assert self.gearman_socket is not None
        return self.gearman_socket.fileno()

    def connect(self) -> None:
        """Connect (a no-op when connected); ConnectionError when the server cannot be reached."""
        if self.connected:
            return
        self._out.clear()
        try:
            sock = socket.create_connection((self.gearman_host, self.gearman_port),
                                            timeout=self.connect_timeout)
        except OSError as exc:
            raise ConnectionError(
                f"Could not connect to {self.gearman_host}:{self.gearman_port}: {exc}"
            ) from exc
        net.set_nodelay(sock)
        if self.use_ssl:
            try:
                context = net.client_tls_context(self.keyfile, self.certfile, self.ca_certs)
                sock = context.wrap_socket(sock)
            except (OSError, ssl.SSLError) as exc:
                sock.close()
                raise ConnectionError(f"TLS with {self.gearman_host}: {exc}") from exc
        sock.setblocking(False)
        self.gearman_socket = sock
        self.connected = True

    def close(self) -> None:
        """Close the socket; the connection may be connected again later."""
        sock, self.gearman_socket = self.gearman_socket, None
        self.connected = False
        self._out.clear()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    # -- bytes ----------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue ``data``; :meth:`flush` (the poll loop) writes it."""
        self._out += data

    def readable(self) -> bool:
        """Whether the connection can be read (it is connected), as python-gearman's."""
        return self.connected

    def writable(self) -> bool:
        """Whether queued bytes wait to be written."""
        return bool(self._out)

    def flush(self) -> None:
        """Write as much of the queue as the socket takes now."""
        out = self._out
        sock = self.gearman_socket
        if not out or sock is None:
            return
        try:
            sent = sock.send(out)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return
        except OSError as exc:
            raise ConnectionError(f"send to {self.gearman_host}: {exc}") from exc
        del out[:sent]

    def recv(self) -> bytes:
        """Every byte that has arrived (b"" when none yet); ConnectionError on EOF or error."""
        sock = self.gearman_socket
        if sock is None:
            raise ConnectionError("not connected")
        chunks: list[bytes] = []
        while True:
            try:
                data = sock.recv(_READ_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except OSError as exc:
                raise ConnectionError(f"recv from {self.gearman_host}: {exc}") from exc
            if not data:
                if chunks:
                    break  # deliver what came before the EOF; the next read reports it
                raise ConnectionError(f"{self.gearman_host}:{self.gearman_port} closed")
            chunks.append(data)
            if len(data) < _READ_SIZE and not (self.use_ssl and sock.pending()):  # type: ignore[attr-defined]
                break
        return b"".join(chunks)
