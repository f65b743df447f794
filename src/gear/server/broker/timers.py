"""The broker's timers: one heap of deadlines, cancelled lazily, compacted when mostly dead.

Owns :class:`Timers` and the timer kinds (:data:`EPOCH`: an epoch job becomes runnable;
:data:`TIMEOUT`: a CAN_DO_TIMEOUT expires). It only keeps deadlines: what a due timer does is
the scheduler's (``Broker.run_timers`` in ``core.py``). Must not import ``core.py``, sockets,
asyncio or threads.
"""

from __future__ import annotations

import heapq

from gear.server.broker.model import Job, Timer

__all__ = ["EPOCH", "TIMEOUT", "Timers"]

EPOCH = 0
TIMEOUT = 1

#: Compact once more than this many cancelled entries are in the heap and they are the majority
#: (finished jobs with a long timeout would otherwise pile up).
_COMPACT_AT = 1024


class Timers:
    """A min-heap of ``(deadline, sequence, Timer)``; the sequence breaks ties, so timers
    themselves are never compared. A cancelled timer stays in the heap with ``job`` None until
    it reaches the top (or a compaction)."""

    __slots__ = ("_cancelled", "_seq", "heap")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, Timer]] = []
        self._seq = 0
        self._cancelled = 0

    def __len__(self) -> int:
        return len(self.heap)

    def add(self, deadline: float, job: Job, kind: int) -> None:
        """Arm a timer of ``kind`` for ``job`` (its ``job.timer``)."""
        self._seq += 1
        timer = job.timer = Timer(job, kind)
        heapq.heappush(self.heap, (deadline, self._seq, timer))

    def cancel(self, job: Job) -> None:
        """Disarm ``job``'s timer, if it has one."""
        timer = job.timer
        if timer is not None:
            timer.job = None  # lazily deleted: skipped when it reaches the top of the heap
            job.timer = None
            self._cancelled += 1
            heap = self.heap
            if self._cancelled > _COMPACT_AT and self._cancelled * 2 > len(heap):
                heap[:] = [e for e in heap if e[2].job is not None]
                heapq.heapify(heap)
                self._cancelled = 0

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None."""
        heap = self.heap
        while heap and heap[0][2].job is None:
            heapq.heappop(heap)
            self._cancelled -= 1
        return heap[0][0] if heap else None

    def due(self, now: float) -> bool:
        """Whether the earliest entry (live or not) is due at ``now``."""
        heap = self.heap
        return bool(heap) and heap[0][0] <= now

    def pop_due(self, now: float) -> list[Timer]:
        """Remove and return the live timers due at ``now``, earliest first; each one's job has
        ``timer`` cleared."""
        heap = self.heap
        fired = []
        pop = heapq.heappop
        while heap and heap[0][0] <= now:
            timer = pop(heap)[2]
            job = timer.job
            if job is None:
                self._cancelled -= 1
                continue
            job.timer = None
            fired.append(timer)
        return fired
