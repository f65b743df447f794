"""Where background jobs survive a restart: one contract (``base``), several backends.

Owns :func:`open_storage`, which turns a ``--queue`` URL into a backend:

* ``memory`` -> ``None``: no persistence (jobs live in the broker's memory only).
* ``sqlite:///abs/path/queue.db`` (absolute; ``sqlite:////abs/...`` too) or
  ``sqlite:relative/queue.db``; option
  ``?max_size=100M`` caps the file (adds then fail like on a full disk).
* ``postgres://...`` / ``postgresql://...``: a libpq connection URL handed to psycopg, e.g.
  ``postgresql://geard@db.example/jobs`` or ``postgresql:///jobs?host=/run/postgresql``; our own
  option ``?table=name`` (default ``gear_queue``, may be ``schema.name``) is removed before.

Backends are imported on use, so psycopg is only needed for a ``postgres`` queue. Must not import
the broker or the network layer.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import gear.server.config as config
from gear.errors import ConfigurationError
from gear.server.storage.base import (
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_NORMAL,
    DeadJob,
    Storage,
    StorageError,
    StorageLockedError,
    StoredJob,
)
from gear.server.storage.memory import MemoryStorage

__all__ = [
    "PRIORITY_HIGH",
    "PRIORITY_LOW",
    "PRIORITY_NORMAL",
    "SCHEMES",
    "DeadJob",
    "MemoryStorage",
    "Storage",
    "StorageError",
    "StorageLockedError",
    "StoredJob",
    "open_storage",
    "parse_size",
]

#: The URL schemes :func:`open_storage` understands.
SCHEMES = ("memory", "sqlite", "postgres", "postgresql")

def parse_size(text: str) -> int:
    """A positive size in the grammar of :func:`gear.server.config.parse_size` (``"512"``,
    ``"64K"``, ``"1.5M"``, ``"2GiB"``) -> bytes; ConfigurationError otherwise."""
    try:
        value = config.parse_size(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigurationError(f"invalid size {text!r} (examples: 65536, 64K, 100M, 2G)")
    return value


def open_storage(url: str) -> Storage | None:
    """Build the backend for a ``--queue`` URL (not opened yet: the writer calls ``load()``).

    Returns ``None`` for ``memory`` (no persistence). Raises :class:`ConfigurationError` for an
    unknown scheme or a malformed URL.
    """
    text = url.strip()
    scheme, sep, _rest = text.partition(":")
    scheme = scheme.lower()
    if scheme == "memory" and text.lower() in ("memory", "memory:", "memory://"):
        return None
    if not sep or scheme not in SCHEMES:
        raise ConfigurationError(
            f"unknown queue {url!r}: use one of {', '.join(s + ':' for s in SCHEMES[1:])}"
            f" or 'memory' (schemes: {', '.join(SCHEMES)})")
    if scheme == "sqlite":
        return _open_sqlite(text)
    if scheme in ("postgres", "postgresql"):
        return _open_postgres(text)
    raise ConfigurationError(f"invalid memory queue URL {url!r}: use 'memory'")


def _open_sqlite(url: str) -> Storage:
    from gear.server.storage.sqlite import SqliteStorage

    parts = urlsplit(url)
    if parts.netloc:
        raise ConfigurationError(
            f"invalid sqlite queue URL {url!r}: use sqlite:///absolute/path.db or "
            "sqlite:relative/path.db (no host part)")
    path = unquote(parts.path)
    if path.startswith("//"):  # sqlite:////abs/path (SQLAlchemy's spelling) is absolute too
        path = "/" + path.lstrip("/")
    if not path or path.endswith("/"):
        raise ConfigurationError(f"invalid sqlite queue URL {url!r}: no database file name")
    max_size: int | None = None
    for name, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if name == "max_size":
            max_size = parse_size(value)
        else:
            raise ConfigurationError(f"unknown sqlite queue option {name!r} (known: max_size)")
    return SqliteStorage(path, max_size=max_size)


def _open_postgres(url: str) -> Storage:
    from gear.server.storage.postgres import DEFAULT_TABLE, PostgresStorage

    parts = urlsplit(url)
    table = DEFAULT_TABLE
    kept: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "table":
            table = value
        else:
            kept.append((name, value))
    # Rebuild by hand: urlunsplit() would drop the empty host of "postgresql:///db?host=/sock".
    # libpq percent-decodes query values but does not turn "+" into a space: quote, not quote_plus.
    base = url.split("?", 1)[0]
    conninfo = base + ("?" + urlencode(kept, quote_via=quote) if kept else "")
    return PostgresStorage(conninfo, table)
