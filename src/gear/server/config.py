"""The job server's own settings: :class:`ServerConfig` and the listen/transport defaults.

Owns every default a user can set for the server outside the scheduler (where to listen, TLS
files, keepalive tunables, write high-water mark, per-connection output limits, backlog,
storage URL, shutdown timeout), the fixed limits of the transport, and :func:`parse_size`
(``64M``-style sizes for the options that take bytes). The scheduling options (retries,
wake-ups, handle prefix, ACL...) are ``BrokerConfig``, in the broker.

Must not import anything beyond the standard library: it is plain data, read by the engine,
the transport, ``gear.Server`` and the CLI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Default write-buffer high-water mark per connection (bytes of unsent output). Above it we stop
#: reading that peer (asyncio calls pause_writing); below the low-water mark we resume.
DEFAULT_HIGH_WATER = 4 * 1024 * 1024
#: Per-connection output limits (docs/semantics.md, "Output limits"): a connection holding more
#: unsent output than the hard limit, or more than the soft limit for the soft time, is closed
#: and handled as a disconnect. The hard limit is twice the default largest packet, so one
#: result of the largest size never cuts a reader; the soft limit catches a client that has
#: stopped reading long before the hard one, without cutting a reader that is only behind.
DEFAULT_OUTPUT_LIMIT_HARD = 128 * 1024 * 1024
DEFAULT_OUTPUT_LIMIT_SOFT = 32 * 1024 * 1024
DEFAULT_OUTPUT_LIMIT_SOFT_SECONDS = 60.0
#: A TLS handshake that does not finish in this many seconds drops the connection.
TLS_HANDSHAKE_TIMEOUT = 10.0
#: listen() backlog (gearmand's is 32, gear's 1; bursts of reconnecting workers need more).
DEFAULT_BACKLOG = 1024
#: ``sys.setswitchinterval`` while a durable queue's writer thread runs (seconds): the writer
#: gets the GIL back within this after each SQLite statement (storage/writer.py, "GIL").
DURABLE_SWITCH_INTERVAL = 0.0001
#: How long a finished durable job's delete may wait to be grouped with others (seconds), and
#: how many pending deletes go at once without waiting (storage/writer.py, "Removes are
#: grouped"; deletes are write-behind, docs/server.md "What is stored, and when").
DURABLE_REMOVE_DELAY = 0.1
DURABLE_REMOVE_BATCH = 4096


@dataclass
class ServerConfig:
    """How the server listens and stores; the scheduling options live in ``BrokerConfig``."""

    #: Address to listen on. None or "" means every address, IPv4 and IPv6.
    host: str | None = None
    #: TCP port; 0 picks a free one (see :attr:`gear.server.engine.JobServer.port`).
    port: int = 4730
    ssl_key: str | None = None
    ssl_cert: str | None = None
    #: With key and cert: require and verify client certificates signed by this CA (mutual TLS).
    ssl_ca: str | None = None
    #: Apply the keepalive tunables below to accepted sockets (SO_KEEPALIVE itself is always on).
    keepalive: bool = False
    tcp_keepidle: int = 7200
    tcp_keepintvl: int = 75
    tcp_keepcnt: int = 9
    #: Largest packet body a peer may send (None: the broker's default).
    max_packet_size: int | None = None
    #: Storage URL: "memory", "sqlite:///path", "postgres://...".
    queue: str = "memory"
    #: Graceful shutdown waits this long for running jobs before closing connections.
    shutdown_timeout: float = 30.0
    write_high_water: int = DEFAULT_HIGH_WATER
    #: Unsent output (bytes) past which a connection is closed at once; 0: no hard limit.
    output_limit_hard: int = DEFAULT_OUTPUT_LIMIT_HARD
    #: Unsent output (bytes) a connection may hold for ``output_limit_soft_seconds`` at most;
    #: 0: no soft limit.
    output_limit_soft: int = DEFAULT_OUTPUT_LIMIT_SOFT
    output_limit_soft_seconds: float = DEFAULT_OUTPUT_LIMIT_SOFT_SECONDS
    backlog: int = DEFAULT_BACKLOG
    #: HarpCaller's protocol on this port (docs/harp.md); None: off. 0 picks a free one.
    harp_port: int | None = None
    #: Address of the harp port (HarpCaller's dispatcher listens on localhost by default).
    harp_host: str | None = "127.0.0.1"
    #: Seconds an ended harp call's record is kept (default 7 days).
    harp_retention: float = 7 * 24 * 3600.0
    #: HTTP port of /metrics, /status and the live page (docs/operations.md); None: off.
    #: 0 picks a free one.
    http_port: int | None = None
    #: Address of the HTTP port.
    http_host: str | None = "127.0.0.1"
    #: Function names with their own metrics label; later ones share ``__other__``.
    metrics_max_functions: int = 100
    #: Bound on the bytes the harp records take (oldest ended ones go first; docs/harp.md).
    harp_max_bytes: int = 1 << 30
    #: Seconds a harp call waits for a worker of its host before ``unknown_host``; 0: for ever.
    harp_unknown_host_wait: float = 10.0


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Bytes from ``text``: a number, optionally followed by K, M, G or T (binary multiples:
    ``64M`` is 64 MiB; ``64MB``, ``64MiB``, lower case and fractions like ``1.5M`` too). The one
    size grammar of geard: its options, TOML keys and the queue URL's ``max_size``. Raises
    ValueError (argparse reports it as an invalid value)."""
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"size must not be negative: {text}")
        return text
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (bytes, or a number with K, M, G or T)")
    return int(float(match[1]) * _UNITS[match[2].lower()])
