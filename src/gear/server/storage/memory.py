"""An in-process storage backend: the reference implementation of the contract in ``base``.

Owns :class:`MemoryStorage`. It persists nothing across processes: ``open_storage("memory")``
returns ``None`` (no persistence) for the server, and this class exists for embedding (a store that
outlives a :class:`~gear.server.storage.writer.StorageWriter` inside one process) and as the
baseline the shared contract test suite holds every other backend to.

Must not import the broker, the network layer or asyncio.
"""

from __future__ import annotations

from collections.abc import Sequence

from gear.server.storage.base import DeadJob, Storage, StorageError, StoredJob


class MemoryStorage(Storage):
    """Jobs in a dict keyed by :attr:`StoredJob.key`; ``load`` returns the lowest key first."""

    name = "memory"

    def __init__(self) -> None:
        self._jobs: dict[int, StoredJob] = {}
        self._dead: dict[int, DeadJob] = {}

    def load(self) -> list[StoredJob]:
        # Keys come from the server's counter, so key order is submission order.
        return [self._jobs[key] for key in sorted(self._jobs)]

    def add(self, jobs: Sequence[StoredJob]) -> None:
        # All or nothing, like a database transaction: check every key before storing any.
        seen: set[int] = set()
        for job in jobs:
            if job.key in self._jobs or job.key in self._dead or job.key in seen:
                raise StorageError(f"memory storage: job key {job.key} is already stored")
            seen.add(job.key)
        for job in jobs:
            self._jobs[job.key] = job

    def remove(self, keys: Sequence[int]) -> None:
        for key in keys:
            self._jobs.pop(key, None)
            self._dead.pop(key, None)

    def load_dead(self) -> list[DeadJob]:
        return [self._dead[key] for key in sorted(self._dead)]

    def bury(self, jobs: Sequence[DeadJob]) -> None:
        for dead in jobs:
            stored = self._jobs.pop(dead.job.key, None)
            if stored is not None:  # the stored record is kept, as a database keeps its row
                self._dead[stored.key] = DeadJob(stored, dead.attempts, dead.died)

    def revive(self, keys: Sequence[int]) -> None:
        for key in keys:
            dead = self._dead.pop(key, None)
            if dead is not None:
                self._jobs[key] = dead.job

    def __len__(self) -> int:
        return len(self._jobs)

    def __repr__(self) -> str:
        return f"<MemoryStorage jobs={len(self._jobs)} dead={len(self._dead)}>"
