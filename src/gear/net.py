"""Stdlib socket helpers of the client-side I/O layers: TLS contexts and TCP options.

Owns what the threaded API (``gear.threaded.connection``) and ``gear.aio``
(``gear.aio.connection``) both do to a socket before and after connecting:

* :func:`tls_context` and :func:`client_tls_context`: gear's mutual TLS on the client side (our
  key and certificate; the server's certificate must chain to ``ssl_ca``; its host name is not
  checked, since Gearman deployments address servers by IP; TLS 1.2 or newer, TLS 1.3 enabled);
* :func:`tcp_options` / :func:`apply_tcp_options` / :func:`set_nodelay`: TCP_NODELAY on every
  connection (small request/response packets: without it Nagle plus delayed ACK cost ~40 ms per
  round trip, docs/benchmarks.md) and TCP keepalive tuning;
* :func:`tls_refusal`: the reason to give when a mutual-TLS server refuses this client.

The job server keeps its own TLS and TCP option code in ``gear.server`` for now (the server-side
context, the peer certificate's CN); the option lists here are what it can share later.

Must not import anything of the package but ``gear.errors``: no protocol, no front-end, no server.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any

__all__ = [
    "NODELAY",
    "apply_tcp_options",
    "client_tls_context",
    "set_nodelay",
    "tcp_options",
    "tls_context",
    "tls_refusal",
]

log = logging.getLogger("gear.net")

#: A socket option: (level, option, value) for ``socket.setsockopt``.
SocketOption = tuple[int, int, int]

#: Disable Nagle: what every Gearman connection sets.
NODELAY: SocketOption = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

#: Whether this platform can tune keepalive timing (Linux and most BSDs can).
KEEPALIVE_TUNING = hasattr(socket, "TCP_KEEPIDLE")


def tls_context(server_side: bool = False) -> ssl.SSLContext:
    """A bare TLS context: TLS 1.2 or newer, TLS 1.3 enabled, nothing loaded yet."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def client_tls_context(
    ssl_key: str | None = None,
    ssl_cert: str | None = None,
    ssl_ca: str | None = None,
) -> ssl.SSLContext:
    """A client context for gear's mutual TLS: our key/cert; the server verified by ``ssl_ca``.

    Like gear, the server certificate must chain to ``ssl_ca`` (the system's CAs without one)
    but its host name is not checked. Unlike gear, TLS 1.3 stays enabled: gear turned it off to
    dodge a poll()-based reader hang that neither of our readers has (docs/gear-compat.md §3.2).
    """
    context = tls_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    if ssl_ca:
        context.load_verify_locations(ssl_ca)
    else:
        context.load_default_certs()
    if ssl_cert:
        context.load_cert_chain(ssl_cert, ssl_key)
    return context


def tcp_options(
    keepalive: bool = False,
    tcp_keepidle: int = 7200,
    tcp_keepintvl: int = 75,
    tcp_keepcnt: int = 9,
) -> list[SocketOption]:
    """The options a Gearman TCP connection gets: TCP_NODELAY, and keepalive when asked.

    Keepalive timing (idle seconds, interval seconds, probe count) is added only where the
    platform has it; elsewhere the system's timing applies and a warning says so.
    """
    options = [NODELAY]
    if keepalive:
        options.append((socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
        if KEEPALIVE_TUNING:
            options += [
                (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, tcp_keepidle),
                (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, tcp_keepintvl),
                (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, tcp_keepcnt),
            ]
        else:  # pragma: no cover - not Linux
            log.warning("TCP keepalive tuning is not available on this platform")
    return options


def apply_tcp_options(sock: Any, options: list[SocketOption]) -> None:
    """Set ``options`` on a TCP socket; nothing on a socket of another family (AF_UNIX)."""
    if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return
    for level, option, value in options:
        sock.setsockopt(level, option, value)


def set_nodelay(sock: Any) -> None:
    """Disable Nagle on ``sock`` if it is a TCP socket (test doubles may lack ``setsockopt``)."""
    setsockopt = getattr(sock, "setsockopt", None)
    if setsockopt is None:
        return
    try:
        setsockopt(*NODELAY)
    except OSError:
        pass  # not a TCP socket (e.g. AF_UNIX)


#: OpenSSL reasons of the alerts a server sends when it refuses the client's certificate.
_REFUSAL_ALERTS = frozenset({
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "TLSV1_ALERT_UNKNOWN_CA",
    "TLSV1_ALERT_ACCESS_DENIED",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
})

_REFUSED = (
    "the server refused this client's TLS certificate: it wants mutual TLS and got no "
    "certificate, or one it does not trust (give ssl_key and ssl_cert signed by a CA the "
    "server trusts, with ssl_ca)"
)


def tls_refusal(exc: BaseException | None, *, handshake_done: bool) -> str | None:
    """The reason to give when ``exc`` ended a TLS connection because the server refused our
    certificate (none sent, or one it does not trust); None when it looks like anything else.

    Servers that send an alert name the refusal (certificate required, bad certificate, unknown
    CA). Others just close: during the handshake with TLS 1.2 (an EOF there), or, with TLS
    1.3, right after it, where the client has already finished its side: so an end with
    nothing received soon after the handshake (``handshake_done``; the caller decides what
    "soon" is) counts as a refusal too.
    """
    reason = getattr(exc, "reason", None)
    if reason in _REFUSAL_ALERTS:
        return f"{_REFUSED}; the server said {reason}"
    if handshake_done:
        if exc is None or isinstance(exc, (ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            return f"{_REFUSED}; it closed the connection right after the handshake"
        return None
    if isinstance(exc, (ssl.SSLEOFError, ConnectionResetError)) or (
        isinstance(exc, ssl.SSLError) and reason == "UNEXPECTED_EOF_WHILE_READING"
    ):
        return f"{_REFUSED}; it closed the connection during the handshake"
    return None
