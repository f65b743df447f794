"""The broker's interface for admin: read-only records of its state, and the admin actions.

Owns :class:`AdminInterface` (mixed into ``core.Broker``): ``function_stats``,
``connections``, ``job_records`` and ``running_count``/``job_count`` read the scheduler's state
as records (``model.py``); ``cancellable``/``cancel_job``, ``create_function``,
``drop_function``, ``set_max_queue`` and ``request_shutdown`` are the only ways admin changes
it. ``gear.server.admin`` uses nothing else of the broker but the dead-letter list's
interface (``dead.py``), ``write``, ``close``, ``version`` and ``config``. Must not import
``core.py``, admin, sockets, asyncio or threads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from gear.protocol.messages import Priority
from gear.server.broker.model import (
    ConnectionInfo,
    Function,
    FunctionStats,
    Job,
    JobRecord,
    JobState,
    JobTable,
    Peer,
)

__all__ = ["AdminInterface"]

HIGH, NORMAL, LOW = Priority.HIGH, Priority.NORMAL, Priority.LOW
HELD = JobState.HELD


class AdminInterface:
    """Admin's view of the broker and its actions on it (a mixin: ``self`` is the broker)."""

    if TYPE_CHECKING:  # what it uses of the broker, defined in core.py
        functions: dict[bytes, Function]
        peers: dict[Peer, None]
        jobs: JobTable
        shutdown_requested: str | None

        def get_function(self, name: bytes) -> Function: ...
        def cancel(self, job: Job) -> bool: ...
        def _replan(self, f: Function) -> None: ...

    def function_stats(self) -> list[FunctionStats]:
        """Every function, in first-seen order (admin ``status``, ``prioritystatus``)."""
        return [FunctionStats(f.name, f.total, f.running, f.workers,
                              (f.queued(HIGH), f.queued(NORMAL), f.queued(LOW)))
                for f in self.functions.values()]

    def connections(self) -> list[ConnectionInfo]:
        """Every connection, in connect order (admin ``workers``)."""
        return [ConnectionInfo(p.fd, p.host, p.client_id, tuple(p.functions))
                for p in self.peers]

    def job_records(self) -> list[JobRecord]:
        """Every job in memory, in creation order (admin ``show jobs``)."""
        return [JobRecord(job.handle, job.unique, job.retries, job.orphaned, job.background)
                for job in self.jobs.values()]

    def cancellable(self, handle: bytes) -> bytes | None:
        """The function name of job ``handle`` if :meth:`cancel_job` can cancel it, else None
        (no such job, its store is pending, or it is cancelled already)."""
        job = self.jobs.get(handle)
        if job is None or job.state is HELD or job.ignore:
            return None
        return job.name

    def cancel_job(self, handle: bytes) -> bool:
        """Admin ``cancel job``: :meth:`cancel` the job ``handle``; False when there is none
        or it cannot be cancelled."""
        job = self.jobs.get(handle)
        return job is not None and self.cancel(job)

    def create_function(self, name: bytes) -> None:
        """Admin ``create function``: make ``name`` known (listed by ``status``)."""
        self.get_function(name)

    def drop_function(self, f: Function | bytes) -> bool | None:
        """Forget a function without workers or jobs (admin ``drop function``). ``f`` is a
        Function or a name, matched case-insensitively as gearmand does (docs/protocol.md
        §2.2): None when no function has that name, False when it is in use."""
        if isinstance(f, bytes):
            wanted = f.lower()
            found = next((g for g in self.functions.values() if g.name.lower() == wanted), None)
            if found is None:
                return None
            f = found
        if f.workers or f.total:
            return False
        del self.functions[f.name]
        return True

    def set_max_queue(self, name: bytes, limits: Iterable[int] | None) -> bool:
        """Admin ``maxqueue``: the queue limits of function ``name`` per priority (HIGH,
        NORMAL, LOW; 0 = none), or None to lift them. False when no such function."""
        f = self.functions.get(name)
        if f is None:
            return False
        values = list(limits) if limits is not None else []
        f.max_queue = values if any(values) else None
        self._replan(f)
        return True

    def request_shutdown(self, graceful: bool) -> None:
        """Admin ``shutdown [graceful]``: ask the server to stop (it polls
        :attr:`shutdown_requested`). An immediate request overrides a graceful one, never
        the reverse."""
        if not graceful:
            self.shutdown_requested = "immediate"
        elif self.shutdown_requested is None:
            self.shutdown_requested = "graceful"

    def job_count(self) -> int:
        """Jobs in memory."""
        return len(self.jobs)


    def running_count(self) -> int:
        """Jobs assigned to a worker right now (graceful shutdown waits for 0)."""
        return sum(f.running for f in self.functions.values())
