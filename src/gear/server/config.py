"""The job server's own settings: :class:`ServerConfig` and the listen/transport defaults.

Owns every default a user can set for the server outside the scheduler (where to listen, TLS
files, keepalive tunables, write high-water mark, backlog, storage URL, shutdown timeout) and
the fixed limits of the transport. The scheduling options (retries, wake-ups, handle prefix,
ACL...) are ``BrokerConfig``, in the broker.

Must not import anything beyond the standard library: it is plain data, read by the engine,
the transport, ``gear.Server`` and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Default write-buffer high-water mark per connection (bytes of unsent output). Above it we stop
#: reading that peer (asyncio calls pause_writing); below the low-water mark we resume.
DEFAULT_HIGH_WATER = 4 * 1024 * 1024
#: A TLS handshake that does not finish in this many seconds drops the connection.
TLS_HANDSHAKE_TIMEOUT = 10.0
#: listen() backlog (gearmand's is 32, gear's 1; bursts of reconnecting workers need more).
DEFAULT_BACKLOG = 1024
#: ``sys.setswitchinterval`` while a durable queue's writer thread runs (seconds): the writer
#: gets the GIL back within this after each SQLite statement (storage/writer.py, "GIL").
DURABLE_SWITCH_INTERVAL = 0.0001


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
    backlog: int = DEFAULT_BACKLOG
    #: HarpCaller's protocol on this port (docs/harp.md); None: off. 0 picks a free one.
    harp_port: int | None = None
    #: Address of the harp port (HarpCaller's dispatcher listens on localhost by default).
    harp_host: str | None = "127.0.0.1"
    #: Seconds an ended harp call's record is kept (default 7 days).
    harp_retention: float = 7 * 24 * 3600.0
    #: Bound on the bytes the harp records take (oldest ended ones go first; docs/harp.md).
    harp_max_bytes: int = 1 << 30
