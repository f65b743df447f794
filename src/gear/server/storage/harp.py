"""Durable storage of geard's HarpCaller call records and streams (docs/harp.md, "Storage").

Owns the row types (:class:`HarpRow`, :class:`HarpBatch`), the backend contract
(:class:`HarpStore`) and the in-process reference backend (:class:`MemoryHarpStore`). The
records live in the same place as the durable queue (``--queue``): the same SQLite file or the
same PostgreSQL database, in tables of their own (``harp_sqlite.py``, ``harp_postgres.py``).

The harp tables are created with ``CREATE TABLE IF NOT EXISTS`` and versioned by a row of their
own (``harp_meta``), independently of the queue schema's version: the queue's tables and
upgrades are untouched.

Values are stored as JSON text the harp side produced (this package never parses JSON); times
are Unix seconds as floats. The group-commit writer thread that drives a store from the event
loop, and ``open_harp_store``, are in ``harp_writer.py``. Sans-I/O itself (the harp service
imports the row type): must not import sockets, asyncio, threads, the broker, the harp side or
the network layer.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["HARP_SCHEMA_VERSION", "HarpBatch", "HarpRow", "HarpStore", "MemoryHarpStore"]

#: The version of the harp tables (the ``harp_meta`` row ``schema``), not the queue's.
HARP_SCHEMA_VERSION = 1


class HarpRow(NamedTuple):
    """One call record as stored (JSON texts as the harp side encoded them)."""

    id: str
    host: str
    procedure: str
    arguments: str
    info: str
    queue: str | None
    concurrency: int
    timeout: float | None
    max_exec_time: float | None
    submit: float
    start: float | None
    end: float | None
    #: The end reply's JSON, None while the call has not ended.
    reply: str | None


@dataclass
class HarpBatch:
    """One transaction's worth of changes: saves first, then stream appends, then deletes."""

    saves: dict[str, HarpRow] = field(default_factory=dict)
    #: (job id, packet number, message JSON), in arrival order.
    stream: list[tuple[str, int, str]] = field(default_factory=list)
    deletes: set[str] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.saves) + len(self.stream) + len(self.deletes)

    def merge_newer(self, newer: HarpBatch) -> None:
        """Fold ``newer`` (later changes) into this batch."""
        self.saves.update(newer.saves)
        self.stream += newer.stream
        self.deletes |= newer.deletes


class HarpStore(abc.ABC):
    """A backend. Methods block and are called from one writer thread at a time."""

    name = "?"

    @abc.abstractmethod
    def load(self) -> tuple[list[HarpRow], dict[str, list[str]]]:
        """Open (creating the tables if needed): every record, oldest submit first, and the
        kept stream of each (message JSON texts in packet order)."""

    @abc.abstractmethod
    def write(self, batch: HarpBatch) -> None:
        """Apply ``batch`` in one transaction; raise :class:`StorageError` on failure."""

    def size(self) -> int:
        """Bytes the store occupies on disk, when it can tell (0 otherwise)."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the backend's resources."""


class MemoryHarpStore(HarpStore):
    """Rows in dicts: the reference backend (and a store that outlives a writer in tests)."""

    name = "memory"

    def __init__(self) -> None:
        self.rows: dict[str, HarpRow] = {}
        self.streams: dict[str, list[str]] = {}
        #: How many times :meth:`write` ran (what group commit keeps low).
        self.writes = 0

    def load(self) -> tuple[list[HarpRow], dict[str, list[str]]]:
        rows = sorted(self.rows.values(), key=lambda r: r.submit)
        return rows, {k: list(v) for k, v in self.streams.items() if k in self.rows}

    def write(self, batch: HarpBatch) -> None:
        self.writes += 1
        self.rows.update(batch.saves)
        for job_id, n, text in batch.stream:
            stream = self.streams.setdefault(job_id, [])
            if n == len(stream):
                stream.append(text)
        for job_id in batch.deletes:
            self.rows.pop(job_id, None)
            self.streams.pop(job_id, None)
