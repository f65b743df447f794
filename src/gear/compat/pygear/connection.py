"""The I/O under the pygear front: server addresses, one socket each, a select loop.

pygear wrapped libgearman, whose calls block inside C where Ctrl-C could not reach them (the
README's own warning). Here every wait is a ``select`` in Python on the connections involved,
bounded by the call's deadline, so:

* a timeout is a deadline for the whole call (``set_timeout`` in milliseconds; negative means
  none), and :class:`~gear.compat.pygear.errors.TIMEOUT` is raised when it passes;
* Ctrl-C raises KeyboardInterrupt at once while blocked: ``select`` returns to the interpreter
  on a signal, whose handler raises (PEP 475 restarts the wait only when the handler returns),
  unlike a wait inside libgearman's C code, where the handler could not run until it returned;
  one ``select`` lasts at most :data:`SLICE` seconds, after which the loop re-reads the clock;
* every socket sets TCP_NODELAY (gear.net), so a request is never held back by Nagle.

Also the address rules of libgearman that pygear inherits: ``add_server(host, port)`` with port
0 meaning 4730 and ``None`` meaning localhost, ``add_servers`` entries as ``HOST[:PORT]``, and
names resolved when added (an unknown host raises GETADDRINFO there, as pygear's tests expect).

May import ``gear.net``, ``gear.protocol``, ``gear.errors`` and ``gear.constants``; never the
server, the threaded API or gear.aio.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass
from typing import Protocol, TypeVar

from gear.compat.pygear import errors
from gear.net import set_nodelay

DEFAULT_PORT = 4730
#: The longest a single select waits before the loop looks again (seconds).
SLICE = 0.5
#: A connection silent this long (seconds) is checked for a server-side close before use.
IDLE = 0.05
_RECV_SIZE = 65536


@dataclass(frozen=True)
class Address:
    """A resolved server: the name as given and the socket address to connect to."""

    host: str
    port: int
    #: Every (family, sockaddr) the name resolved to, tried in order on connect.
    targets: tuple[tuple[int, tuple[object, ...]], ...]

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def resolve(host: str | None, port: int) -> Address:
    """libgearman's add_server: port 0 is 4730, host None is localhost; GETADDRINFO if bad."""
    name = "localhost" if host is None else host
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise errors.GETADDRINFO(f"GETADDRINFO: bad port {port!r}")
    port = port or DEFAULT_PORT
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise errors.GETADDRINFO(f"GETADDRINFO: {name}:{port}: {exc}") from None
    targets = tuple((family, tuple(sockaddr)) for family, _, _, _, sockaddr in infos)
    return Address(name, port, targets)


def parse_server(entry: str) -> Address:
    """One ``add_servers`` entry, ``HOST[:PORT]`` (``[v6]:PORT`` for IPv6)."""
    if not isinstance(entry, str):
        raise TypeError(f"a server must be a str 'HOST[:PORT]', not {type(entry).__name__}")
    host, port = entry, DEFAULT_PORT
    if entry.startswith("["):
        inside, _, rest = entry[1:].partition("]")
        host = inside
        if rest.startswith(":"):
            port = _port(entry, rest[1:])
    elif entry.count(":") == 1:
        host, _, text = entry.partition(":")
        port = _port(entry, text)
    return resolve(host, port)


def _port(entry: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise errors.GETADDRINFO(f"GETADDRINFO: bad port in {entry!r}") from None


def deadline_of(timeout_ms: int) -> float | None:
    """The monotonic deadline of a call under ``timeout_ms`` (negative: none; 0: now)."""
    if timeout_ms < 0:
        return None
    return time.monotonic() + timeout_ms / 1000.0


class Link:
    """One TCP connection to a server, non-blocking under select (None when not connected)."""

    __slots__ = ("address", "heard", "sock")

    def __init__(self, address: Address) -> None:
        self.address = address
        self.sock: socket.socket | None = None
        #: When the server last sent something (monotonic seconds).
        self.heard = 0.0

    def __repr__(self) -> str:
        return f"<Link {self.address} {'up' if self.sock else 'down'}>"

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def fileno(self) -> int:
        assert self.sock is not None
        return self.sock.fileno()

    def connect(self, deadline: float | None) -> None:
        """Connect to the first address of the name that accepts (COULD_NOT_CONNECT if none
        does, TIMEOUT if the deadline passes first)."""
        address = self.address
        failure: BaseException | None = None
        for family, sockaddr in address.targets:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(_remaining(deadline, SLICE * 20))
                sock.connect(sockaddr)
            except OSError as exc:
                sock.close()
                failure = exc
                if deadline is not None and time.monotonic() >= deadline:
                    raise errors.TIMEOUT(f"TIMEOUT: connecting to {address}") from None
                continue
            except BaseException:
                sock.close()
                raise
            set_nodelay(sock)
            # Non-blocking from here on: every wait is a select (module docstring).
            sock.setblocking(False)
            self.sock = sock
            return
        raise errors.COULD_NOT_CONNECT(f"COULD_NOT_CONNECT: {address}: {failure}")

    def closed_by_peer(self) -> bool:
        """Whether an idle connection was closed by the server (it is then closed here too).

        Called before a new request goes out on a connection that sat idle: a server that
        restarted in between would otherwise cost the request (sent into a dead socket).
        """
        sock = self.sock
        if sock is None:
            return True
        if time.monotonic() - self.heard < IDLE:
            return False  # it answered a moment ago: not worth a system call per request
        ready, _, _ = select.select([sock], [], [], 0)
        if not ready:
            return False
        try:
            data = sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if data:
            return False
        self.close()
        return True

    def send(self, data: bytes, deadline: float | None = None) -> None:
        """Write all of ``data``; LOST_CONNECTION (and the link closes) if the server is gone,
        TIMEOUT if it stops reading until ``deadline``."""
        sock = self.sock
        if sock is None:
            raise errors.LOST_CONNECTION(f"LOST_CONNECTION: not connected to {self.address}")
        view = memoryview(data)
        try:
            while view:
                try:
                    sent = sock.send(view)
                except BlockingIOError:
                    if not _wait_writable(sock, deadline):
                        self.close()
                        raise errors.TIMEOUT(f"TIMEOUT: sending to {self.address}") from None
                    continue
                view = view[sent:]
        except OSError as exc:
            self.close()
            raise errors.LOST_CONNECTION(f"LOST_CONNECTION: {self.address}: {exc}") from None

    def recv(self) -> bytes | None:
        """Read what is there: None if nothing is (yet), b"" if the server closed."""
        sock = self.sock
        if sock is None:
            return b""
        try:
            data = sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""
        if data:
            self.heard = time.monotonic()
        return data

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


def _wait_writable(sock: socket.socket, deadline: float | None) -> bool:
    """Wait until ``sock`` takes more bytes; False when ``deadline`` passed first."""
    while True:
        wait = SLICE
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            wait = min(wait, left)
        _, ready, _ = select.select([], [sock], [], wait)
        if ready:
            return True


def _remaining(deadline: float | None, default: float | None) -> float | None:
    if deadline is None:
        return default
    return max(0.001, deadline - time.monotonic())


class Selectable(Protocol):
    def fileno(self) -> int: ...


S = TypeVar("S", bound=Selectable)


def wait_readable(links: list[S], deadline: float | None) -> list[S] | None:
    """Block until some of ``links`` can be read; None when ``deadline`` passed first.

    Waits in slices of at most :data:`SLICE` seconds (module docstring). ``links`` must be
    connected; with none, it just waits out the slice (the caller reconnects in between).
    """
    while True:
        wait = SLICE
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            wait = min(wait, left)
        if not links:
            select.select([], [], [], wait)
            return []
        ready, _, _ = select.select(links, [], [], wait)
        if ready:
            return ready
