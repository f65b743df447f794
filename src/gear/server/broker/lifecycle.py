"""The lifecycle seam of the broker: what happens to a job, told to whoever listens.

Owns :class:`Outcome` (the eight ways a job leaves the broker) and :class:`JobEvents` (the
receiver: ``created``, ``assigned``, ``progressed``, ``finished``, ``requeued``). A receiver is
either an observer of every job (``Broker.add_observer``: metrics, logging) or the policy of one
function (``Broker.set_policy``: later limits, retries, result storage). Modelled on dramatiq's
middleware (``before_*``/``after_*`` hooks with no-op defaults), reduced to "after" events.

:class:`Receivers` (mixed into ``core.Broker``) registers them and keeps each function's
``events`` tuple and fast-path flag ``plain`` up to date.

Cost: nothing when nobody listens. Each event site tests one tuple (``Function.events``) and a
function with receivers leaves the pipelined fast path (``Function.plain``), so a server without
observers or policies runs exactly the code it ran before this seam existed.

Bulk creation: an observer whose class sets :attr:`JobEvents.bulk_created` keeps the fast path
on. The jobs ``pipeline.submit_run`` makes inline are then not told one by one: at the end of
each run the broker calls ``created_run(first, last)`` once, with the handle numbers of the jobs
the run made (``Job.number``, consecutive; jobs of the run that took the general path are in the
range too and were also told ``created(job)``). Every other event is told per job as usual. This
is how the Prometheus metrics stay an observer without slowing pipelined submits (docs/operations.md
§5): they read per-function job counts from the broker at scrape time and need only the time a
job was made.

Receivers run on the broker's thread, inside the broker call that caused the event; they must
not block and must not call back into the broker (queue a change for later instead). An
exception from a receiver propagates into the broker call that emitted it. Must not import
``core.py``, sockets, asyncio or threads.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

from gear.server.broker.model import Function, Job, Peer

if TYPE_CHECKING:
    from gear.acl import ACL

#: The ``born`` time of a job cancelled while running (it stays with its worker): the job
#: log's reader skips every later entry of such a job, so the broker's hot path need not test
#: ``job.ignore`` before it logs (``Broker.job_log``, docs/operations.md §5).
FORGOTTEN: Any = object()

__all__ = ["JobEvents", "Outcome", "Receivers"]


class Outcome(Enum):
    """How a job left the broker (``JobEvents.finished``)."""

    #: WORK_COMPLETE from its worker.
    COMPLETE = "complete"
    #: WORK_FAIL from its worker.
    FAIL = "fail"
    #: WORK_EXCEPTION from its worker (clients without the exceptions option got WORK_FAIL).
    EXCEPTION = "exception"
    #: Its worker's CAN_DO_TIMEOUT expired (WORK_FAIL to its clients).
    TIMEOUT = "timeout"
    #: Admin ``cancel job`` (WORK_FAIL to its clients). A running job stays with its worker
    #: until it reports, but it is finished for everyone else from here on.
    CANCELLED = "cancelled"
    #: Its worker went away and the ``job_retries`` limit was reached (WORK_FAIL to clients).
    RETRIES_EXHAUSTED = "retries exhausted"
    #: Nobody waits for it any more (its last client left, and it is not background).
    ORPHANED = "orphaned"
    #: Its store failed: it never became runnable (ERROR QUEUE_ERROR to its submitters).
    STORE_FAILED = "store failed"


class JobEvents:
    """Receiver of job events; every method is a no-op here, override the ones you need.

    ``job`` is the broker's live :class:`~gear.server.broker.Job`: read it, do not change it.
    """

    #: True: jobs made on the pipelined fast path are told in bulk (:meth:`created_run`), so
    #: this observer does not turn the fast path off (see the module docstring).
    bulk_created = False

    def created_run(self, first: int, last: int) -> None:
        """(``bulk_created`` observers only) the fast path made the jobs numbered ``first`` to
        ``last`` (inclusive) just now."""

    def created(self, job: Job) -> None:
        """A new job was accepted (submitted or replayed from storage); not yet announced
        when it waits for its store."""

    def assigned(self, job: Job, worker: Peer) -> None:
        """``worker`` took ``job``."""

    def progressed(self, job: Job, kind: int, body: bytes) -> None:
        """Its worker sent WORK_DATA, WORK_WARNING or WORK_STATUS (``kind``, the packet type);
        ``body`` is the packet's body as received."""

    def requeued(self, job: Job) -> None:
        """Its worker let go of it without a result (disconnect, CANT_DO, RESET_ABILITIES):
        it is back in its queue (at the front, or the tail with no retry limit)."""

    def finished(self, job: Job, outcome: Outcome) -> None:
        """``job`` left the broker (see :class:`Outcome`); called once per job."""


class Receivers:
    """The broker's registry of lifecycle receivers (a mixin of ``core.Broker``)."""

    if TYPE_CHECKING:  # what it uses of the broker, defined in core.py
        functions: dict[bytes, Function]
        _observers: tuple[JobEvents, ...]
        _bulk: tuple[JobEvents, ...]
        _acl: ACL | None
        _durable: bool

        def get_function(self, name: bytes) -> Function: ...

    def add_observer(self, observer: JobEvents) -> None:
        """Tell ``observer`` every job's events from now on (see ``lifecycle.py``). Functions
        leave the pipelined fast path while any observer is registered, unless every observer
        is ``bulk_created``."""
        self._observers = (*self._observers, observer)
        self._bulk = tuple(o for o in self._observers if o.bulk_created)
        for f in self.functions.values():
            self._replan(f)

    def set_policy(self, name: bytes, policy: JobEvents | None) -> None:
        """Give function ``name`` (created if new) its own receiver, or none."""
        f = self.get_function(name)
        f.policy = policy
        self._replan(f)

    def _replan(self, f: Function) -> None:
        """Recompute ``f.events`` and the fast-path gate ``f.plain`` from what they depend on."""
        events: tuple[Any, ...] = self._observers
        if f.policy is not None:
            events = (*events, f.policy)
        f.events = events
        # Observers told in bulk (bulk_created) keep the fast path; anything else turns it off.
        slow = len(events) > len(self._bulk)
        f.plain = not (slow or f.max_queue is not None or self._acl is not None)

