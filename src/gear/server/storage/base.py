"""The storage contract every backend implements, and the record it stores.

Owns: :class:`StoredJob` (what survives a restart: docs/protocol.md §4.1, plus our
own key so that jobs with an empty unique never overwrite each other) and :class:`Storage` (the
backend interface). Backends live beside this file; the group-commit writer that drives them from
the event loop is ``writer.py``.

Must not import the broker, the network layer or asyncio: backends are blocking and are run
off the event loop by the writer.

Semantics (docs/semantics.md, "Background jobs and durability"):

* ``add`` is durable when it returns: one transaction and one fsync for the whole batch.
* ``remove`` deletes finished jobs; it may lag (write-behind), so a crash can replay a job that
  already completed: delivery is at-least-once.
* ``load`` returns every stored job, for replay on start, and creates the schema when missing. A
  database that cannot be read raises :class:`StorageError`, never returns a partial list.
* The dead-letter list (docs/semantics.md, "Poison jobs and the dead-letter list"): ``bury``
  marks stored jobs dead (their retries ran out), ``revive`` makes them live again,
  ``load_dead`` returns them at start (``load`` does not), and ``remove`` deletes a key whether
  it is live or dead. Like ``remove``, ``bury`` and ``revive`` are write-behind: a crash can
  leave a job live that was buried (it runs again) or dead that was revived (it stays listed).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import NamedTuple

from gear.errors import GearmanError
from gear.protocol.messages import Priority

#: Priorities as stored: :class:`~gear.protocol.messages.Priority`, gearmand's numbering
#: (docs/protocol.md §4.2): 0 = high, 1 = normal, 2 = low. The names are aliases of its members.
PRIORITY_HIGH = Priority.HIGH
PRIORITY_NORMAL = Priority.NORMAL
PRIORITY_LOW = Priority.LOW


class StorageError(GearmanError):
    """The storage backend failed (unreadable, corrupt, full disk, lost connection...)."""


class StorageLockedError(StorageError):
    """Another server holds the store (its lock): each server needs a queue of its own."""


class StoredJob(NamedTuple):
    """One background job as stored.

    ``key`` is assigned by the server, unique among stored jobs, and never reused while the
    store holds it (the server starts its counter above the largest key ``load`` returned).
    ``when`` is the Unix time an epoch job becomes runnable, 0 for "now". ``reducer`` is the
    reducer of a SUBMIT_REDUCE_JOB_BACKGROUND job (handed out by GRAB_JOB_ALL), else None.

    A NamedTuple rather than a frozen dataclass: one is built per durable submit on the event
    loop, and a tuple is about five times cheaper to construct (measured: ~0.2 us vs ~1 us).
    """

    key: int
    function: bytes
    unique: bytes
    data: bytes
    priority: int = PRIORITY_NORMAL
    when: int = 0
    reducer: bytes | None = None


class DeadJob(NamedTuple):
    """A stored background job in the dead-letter list: its record, the attempts it was given
    and the Unix time its retries ran out."""

    job: StoredJob
    attempts: int
    died: float


class Storage(abc.ABC):
    """A backend. Methods are blocking and are called from one writer thread at a time."""

    #: Short name for logs and ``--queue`` URLs ("memory", "sqlite", "postgres").
    name: str = "?"

    @property
    def where(self) -> str:
        """Where the jobs are kept, for logs ("sqlite /var/lib/geard/queue.db"), no secrets."""
        return self.name

    @abc.abstractmethod
    def load(self) -> list[StoredJob]:
        """Open the store (creating it if needed) and return every stored job, oldest first."""

    @abc.abstractmethod
    def add(self, jobs: Sequence[StoredJob]) -> None:
        """Store ``jobs`` durably, all or nothing; raise :class:`StorageError` on failure."""

    @abc.abstractmethod
    def remove(self, keys: Sequence[int]) -> None:
        """Delete the jobs with these keys, live or dead (unknown keys are ignored)."""

    @abc.abstractmethod
    def load_dead(self) -> list[DeadJob]:
        """Every dead job, oldest key first (after :meth:`load`, which opened the store)."""

    @abc.abstractmethod
    def bury(self, jobs: Sequence[DeadJob]) -> None:
        """Mark the stored jobs ``job.key`` dead, with their attempts and time (unknown keys
        are ignored)."""

    @abc.abstractmethod
    def revive(self, keys: Sequence[int]) -> None:
        """Make the dead jobs with these keys live again (unknown keys are ignored)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the backend's resources."""
