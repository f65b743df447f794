"""gear-admin's one-shot exchange with a server: gearadmin's connect, send and read rules.

Owns :func:`run_commands`, which does what gearadmin 1.1's run loop does, so that the two tools
print the same bytes for the same server (docs/gear-admin.md §4):

* the host and port are resolved with ``getaddrinfo`` (a port may be a service name) and each
  address is tried in turn; when none connects the error is ``Error connecting to HOST.``;
* all commands go over one connection, one at a time: the command is sent, then the reply is
  what one ``recv`` returns plus whatever else arrives with no gap longer than 5 ms (gearadmin
  does not parse the reply; neither do we, or the outputs could differ);
* a reply starting ``OK `` prints the rest, ``OK\\r`` prints ``OK``, ``ERR `` prints the rest
  after ``Error: `` on stderr (and does not change the exit status), anything else prints as is;
* the server closing the connection ends the run: ``Socket was shutdown while reading from
  HOST`` (except after our ``shutdown``, where it is the expected end of the reply).

Beyond gearadmin: a ``timeout`` (seconds) bounds the connect and every read (gearadmin waits
forever), and TLS comes from :func:`gear.net.client_tls_context`.

:func:`ask` is the other way to read, for what gear-admin adds (``top``, ``dead``, ``harp``):
the reply is framed by :class:`gear.protocol.admin.AdminReply` (a ``.``-ended list or one line),
so it is complete whatever the timing, and the next reply cannot be mixed into it.

Must not import the server, the threaded API or asyncio.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from gear import net
from gear.protocol.admin import AdminReply, admin_command

__all__ = ["AdminError", "Framed", "Reply", "TlsFiles", "connect", "read_reply", "run_commands"]

#: What one read asks for (gearadmin reads into a BUFSIZ buffer: 8192 with glibc).
READ_SIZE = 8192
#: gearadmin keeps reading while more data arrives within this many seconds.
MORE_TO_READ = 0.005

#: Where a TLS-enabled gearadmin looks for its files (environment variable, default path).
GEARADMIN_TLS_FILES = {
    "ca": ("GEARMAND_CA_CERTIFICATE", "/etc/ssl/certs/gearmand-ca.pem"),
    "cert": ("GEARMAN_CLIENT_PEM", "/etc/ssl/certs/gearman.pem"),
    "key": ("GEARMAN_CLIENT_KEY", "/etc/ssl/certs/gearman.key"),
}


class AdminError(Exception):
    """The run stopped; ``str()`` is the text gearadmin prints after ``Error: ``."""


@dataclass(frozen=True)
class TlsFiles:
    """The TLS files to use; None for a file not to load (server-only TLS needs only ``ca``)."""

    ca: str | None
    cert: str | None
    key: str | None

    @classmethod
    def gearadmin_defaults(cls) -> TlsFiles:
        """What ``-S`` alone loads: gearadmin's environment variables or its default paths."""
        files = {k: os.environ.get(env) or path for k, (env, path) in GEARADMIN_TLS_FILES.items()}
        return cls(files["ca"], files["cert"], files["key"])

    def context(self) -> ssl.SSLContext:
        """The client context; :class:`AdminError` with gearadmin's wording when a file fails."""
        if self.ca is not None and not os.path.isfile(self.ca):
            raise AdminError(f"Error loading CA file {self.ca}")
        if self.cert is not None and not os.path.isfile(self.cert):
            raise AdminError(f"Error loading certificate file {self.cert}")
        if self.key is not None and not os.path.isfile(self.key):
            raise AdminError(f"Error loading private key file {self.key}")
        try:
            return net.client_tls_context(self.key, self.cert, self.ca)
        except (ssl.SSLError, OSError, ValueError):
            raise AdminError("Error checking private key")


@dataclass(frozen=True)
class Reply:
    """One command's reply as gearadmin judges it: success, and the text it prints."""

    ok: bool
    text: bytes

    @classmethod
    def of(cls, data: bytes) -> Reply:
        if data.startswith(b"OK\r"):
            return cls(True, b"OK\n")
        if data.startswith(b"OK "):
            return cls(True, data[3:] or b"OK\n")
        if data.startswith(b"ERR "):
            return cls(False, data[4:])
        return cls(True, data)


def connect(host: str, port: str, timeout: float | None = None,
            tls: ssl.SSLContext | None = None) -> socket.socket:
    """A connected socket to ``host``:``port``, trying each address ``getaddrinfo`` gives."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                       proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise AdminError(f"Failed to connect on {host}:{port} with {reason}")
    except OverflowError as exc:
        raise AdminError(f"Failed to connect on {host}:{port} with {exc}")
    for family, kind, proto, _name, address in addresses:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            continue
        net.set_nodelay(sock)
        if tls is None:
            return sock
        try:
            return tls.wrap_socket(sock, server_hostname=None)
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise AdminError(f"TLS handshake with {host} failed: {exc}")
    raise AdminError(f"Error connecting to {host}.\n")


def read_reply(sock: socket.socket, host: str, timeout: float | None,
               closing: bool = False) -> bytes:
    """gearadmin's read: one blocking read, then more while data keeps coming within 5 ms.

    ``closing``: the command makes the server close the connection (``shutdown``), so the end
    of the connection ends the reply instead of being an error."""
    data = b""
    while True:
        try:
            chunk = sock.recv(READ_SIZE)
        except TimeoutError:
            raise AdminError(f"Timed out after {timeout:g} seconds reading from {host}")
        except OSError:
            raise AdminError(f"Error occurred while reading data from {host}")
        if not chunk:
            if closing:
                return data
            raise AdminError(f"Socket was shutdown while reading from {host}")
        data += chunk
        if not _more_to_read(sock):
            return data


class Framed:
    """Admin commands on one connection, each reply read to its end by its framing."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    def ask(self, command: bytes) -> AdminReply:
        """Send ``command`` (one line, no line ending) and read its whole reply.

        :class:`AdminError` when the server closes the connection first; socket errors
        (including a timeout) are raised as they are."""
        self.sock.sendall(admin_command(command))
        reply = AdminReply(command)
        while True:
            while b"\n" in self._buffer:
                line, _, self._buffer = self._buffer.partition(b"\n")
                if reply.add(line.rstrip(b"\r")):
                    return reply
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AdminError("the server closed the connection")
            self._buffer += chunk


def _more_to_read(sock: socket.socket) -> bool:
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    readable, _, _ = select.select([sock], [], [], MORE_TO_READ)
    return bool(readable)


def run_commands(
    host: str,
    port: str,
    commands: list[bytes],
    on_reply: Callable[[Reply], None],
    timeout: float | None = None,
    tls: TlsFiles | None = None,
) -> None:
    """Send each of ``commands`` (full lines) in order on one connection, handing each reply
    to ``on_reply``. Raises :class:`AdminError` when the run cannot go on."""
    context = tls.context() if tls is not None else None
    sock = connect(host, port, timeout, context)
    with sock:
        for line in commands:
            try:
                sock.sendall(line)
            except TimeoutError:
                raise AdminError(f"Timed out after {timeout:g} seconds sending to {host}")
            except OSError as exc:
                raise AdminError(f"Failed during send({os.strerror(exc.errno or 0)})")
            closing = line.startswith(b"shutdown")
            on_reply(Reply.of(read_reply(sock, host, timeout, closing)))
