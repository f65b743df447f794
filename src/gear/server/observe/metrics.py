"""Job metrics for ``/metrics`` and ``/status``: an observer of the broker's lifecycle seam.

Owns :class:`JobMetrics` (a ``JobEvents`` observer: finished jobs per function and outcome, the
queue-wait and run-time histograms), :class:`Histogram` (cumulative buckets, no lock: every
observation runs on the broker's thread) and :class:`Labels` (the bounded function label).
Never a second decoder of traffic: everything here comes from job events or from the broker's
own counts, read at scrape time (docs/operations.md §5).

Decisions:

* Submitted jobs are not counted per event: the pipelined fast path makes jobs without telling
  anyone one by one. A function's jobs submitted so far is what it holds now (``Function.total``)
  plus the jobs that left it (``finished`` events), minus the jobs cancelled while running that
  are still with their worker (told ``finished`` already, still counted in ``total``). Exact,
  and free on the hot path. A submission coalesced onto a job already queued or running is not
  a new job and is not counted (docs/protocol.md §3.2).
* Queue wait is from the job's creation (or its requeue) to its assignment; run time from its
  assignment to its result (complete, fail, exception, timeout). The creation time of jobs made
  on the fast path comes from one ``created_run`` per run (``bulk_created``): a checkpoint list
  of (first number, time), looked up by bisection when the job is assigned; checkpoints older
  than the oldest job in memory are pruned.
* Time is read once per event-loop pass, not per event: the broker's calls only record the job
  in a list or dict (C methods bound in place of the ``JobEvents`` methods: no Python frame per
  job on the broker's hot path), and :meth:`JobMetrics.settle`, which the server calls once per
  pass (its flush) and every read calls first, stamps them with that pass's time and counts
  them. An event's time is thus late by at most the rest of its pass (docs/operations.md §5).
* Label cardinality: the first ``max_functions`` function names seen keep their own label;
  every later one is folded into :data:`OTHER` (counters, histograms and gauges alike).

Must not import the engine, the transport, admin or asyncio; reaches the broker through what it
is given (``functions``, ``jobs``) and the lifecycle types.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from typing import Any

from gear.server.broker.lifecycle import JobEvents, Outcome
from gear.server.broker.model import Job, JobState

__all__ = ["OTHER", "Histogram", "JobMetrics", "Labels", "Series", "outcome_label"]

#: The label value every function past ``max_functions`` is folded into.
OTHER = "__other__"
#: Queue wait and run time buckets (seconds): 100 us to an hour.
TIME_BUCKETS: tuple[float, ...] = (
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
    1800.0, 3600.0,
)
#: Storage batch commit buckets (seconds).
STORE_BUCKETS: tuple[float, ...] = (
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
)
#: Outcomes whose run time is observed (the worker gave a result or its time ran out), by
#: value.
_TIMED = frozenset(o.value for o in (Outcome.COMPLETE, Outcome.FAIL, Outcome.EXCEPTION,
                                     Outcome.TIMEOUT))
_CANCELLED = Outcome.CANCELLED
_OUTCOMES = tuple(o.value for o in Outcome)
_DONE = JobState.DONE
#: Checkpoints kept before a prune is tried without a scrape.
_PRUNE_EVERY = 4096


def outcome_label(outcome: Outcome) -> str:
    """The ``outcome`` label value: the enum's value with ``_`` for spaces."""
    return outcome.value.replace(" ", "_")


class Histogram:
    """Cumulative-bucket histogram of seconds (the Prometheus kind), updated without a lock."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        #: counts[i]: observations <= bounds[i] and > bounds[i-1]; the last one is +Inf.
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def add(self, other: Histogram) -> None:
        """Fold ``other`` (same bounds) into this one."""
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.sum += other.sum

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative (le, count) pairs, ending with ``+Inf`` (the exposition's form)."""
        out = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return out

    @property
    def count(self) -> int:
        return sum(self.counts)


class Labels:
    """Function name -> label value, bounded: past ``limit`` names, :data:`OTHER`."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self._labels: dict[bytes, str] = {}

    def __call__(self, name: bytes) -> str:
        label = self._labels.get(name)
        if label is None:
            # (a function really named __other__ shares the folded series)
            label = name.decode("utf-8", "replace") if len(self._labels) < self.limit else OTHER
            self._labels[name] = label
        return label

    @property
    def folded(self) -> int:
        """Names folded into :data:`OTHER`."""
        return sum(1 for v in self._labels.values() if v == OTHER)


class Series:
    """What one function label accumulates (several functions share :data:`OTHER`'s)."""

    __slots__ = ("finished", "label", "run", "wait")

    def __init__(self, label: str) -> None:
        self.label = label
        self.wait = Histogram(TIME_BUCKETS)
        self.run = Histogram(TIME_BUCKETS)
        #: ``Outcome._value_`` -> jobs finished so (every outcome present: one store per event).
        self.finished: dict[str, int] = dict.fromkeys(_OUTCOMES, 0)


class JobMetrics(JobEvents):
    """Counts and times every job's life (register with :meth:`bind`).

    The event methods are the hot path of a server with ``--http-port`` (two per job on a
    foreground load), so they are written flat: one dict lookup by function name for the
    :class:`Series`, buckets bisected inline, outcomes keyed by their (hash-cached) value
    string rather than by the enum, whose hash is a Python call.
    """

    bulk_created = True

    def __init__(self, max_functions: int = 100,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.label = Labels(max_functions)
        # label -> Series, and function name -> its label's Series (the events' lookup).
        self._series: dict[str, Series] = {}
        self._by_name: dict[bytes, Series] = {}
        #: Batch commit latency of the durable store (observed on the writer thread).
        self.store_latency = Histogram(STORE_BUCKETS)
        self.store_jobs = 0
        self._store_lock = threading.Lock()
        # job number -> when it became queued (general path and requeues).
        self._born: dict[int, float] = {}
        # fast-path runs: first job number, and when the run was made.
        self._run_first: list[int] = []
        self._run_time: list[float] = []
        self._prune_at = _PRUNE_EVERY
        # job number -> when it was assigned.
        self._started: dict[int, float] = {}
        # Jobs cancelled while running: told finished, still counted by their function.
        self._lingering: dict[Job, None] = {}
        # The broker's job table by number, in creation order (bind()): its first key is the
        # oldest job in memory.
        self._jobs: dict[int, Any] = {}
        self._bind_events()

    def bind(self, broker: Any) -> None:
        """Observe ``broker`` (a :class:`~gear.server.broker.Broker`) from now on."""
        self._jobs = broker.jobs.by_number
        broker.add_observer(self)

    def series(self, name: bytes) -> Series:
        """The :class:`Series` function ``name`` counts into."""
        s = self._by_name.get(name)
        if s is None:
            label = self.label(name)
            s = self._series.get(label)
            if s is None:
                s = self._series[label] = Series(label)
            self._by_name[name] = s
        return s

    # -- events (the broker's thread) ------------------------------------------------------
    #
    # created, created_run, assigned and finished are not Python methods: __init__ binds them
    # to C methods of plain containers (``list.append``, ``dict.__setitem__``), so that the
    # broker's call costs no Python frame and no clock reading per job. :meth:`settle`, called
    # once per event-loop pass (and before every read), gives everything recorded since the
    # last pass that pass's time and does the counting.

    def _bind_events(self) -> None:
        self._new_jobs: list[Job] = []
        self._new_runs: dict[int, int] = {}
        self._assigned: dict[Job, Any] = {}
        self._finished: dict[Job, Outcome] = {}
        self.created = self._new_jobs.append  # type: ignore[method-assign,assignment]
        self.created_run = self._new_runs.__setitem__  # type: ignore[method-assign,assignment]
        self.assigned = self._assigned.__setitem__  # type: ignore[method-assign,assignment]
        self.finished = self._finished.__setitem__  # type: ignore[method-assign,assignment]

    def requeued(self, job: Job) -> None:
        # Rare: settle what came before, so that its assignment is not mistaken for a later one.
        self.settle()
        n = job.number
        self._started.pop(n, None)
        self._born[n] = self.clock()

    def settle(self) -> None:
        """Count and time every event recorded since the last call, at the time of this call
        (so each event's time is off by at most one event-loop pass)."""
        if not (self._new_jobs or self._new_runs or self._assigned or self._finished):
            return
        now = self.clock()
        born = self._born
        if self._new_jobs:
            for job in self._new_jobs:
                born[job.number] = now
            self._new_jobs.clear()
        firsts = self._run_first
        if self._new_runs:
            times = self._run_time
            for first in self._new_runs:
                firsts.append(first)
                times.append(now)
            self._new_runs.clear()
            if len(firsts) >= self._prune_at:
                self._prune()
                self._prune_at = len(self._run_first) + _PRUNE_EVERY
        by_name = self._by_name
        started = self._started
        if self._assigned:
            for job in self._assigned:
                n = job.number
                started[n] = now
                t = born.pop(n, None) if born else None
                if t is None:
                    if firsts and n >= firsts[-1]:  # the latest run: no search
                        t = self._run_time[-1]
                    else:
                        i = bisect_right(firsts, n) - 1
                        if i < 0:
                            continue  # made before this observer was registered
                        t = self._run_time[i]
                s = by_name.get(job.name) or self.series(job.name)
                h = s.wait
                h.counts[bisect_left(TIME_BUCKETS, now - t)] += 1
                h.sum += now - t
            self._assigned.clear()
        if self._finished:
            for job, outcome in self._finished.items():
                n = job.number
                t = started.pop(n, None)
                if t is None and born:
                    born.pop(n, None)
                s = by_name.get(job.name) or self.series(job.name)
                key = outcome._value_
                if t is not None and key in _TIMED:
                    h = s.run
                    h.counts[bisect_left(TIME_BUCKETS, now - t)] += 1
                    h.sum += now - t
                elif outcome is _CANCELLED and job.state is not _DONE:
                    self._lingering[job] = None  # cancelled while running: still counted
                s.finished[key] += 1
            self._finished.clear()

    # -- the series, read at scrape time ---------------------------------------------------

    @property
    def finished_jobs(self) -> dict[tuple[str, str], int]:
        """(function label, outcome label) -> jobs finished so."""
        self.settle()
        return {(s.label, value.replace(" ", "_")): n for s in self._series.values()
                for value, n in s.finished.items() if n}

    @property
    def left(self) -> dict[str, int]:
        """Function label -> jobs that left the broker (any outcome)."""
        self.settle()
        out = {s.label: sum(s.finished.values()) for s in self._series.values()}
        return {label: n for label, n in out.items() if n}

    @property
    def queue_wait(self) -> dict[str, Histogram]:
        self.settle()
        return {s.label: s.wait for s in self._series.values() if s.wait.count}

    @property
    def run_time(self) -> dict[str, Histogram]:
        self.settle()
        return {s.label: s.run for s in self._series.values() if s.run.count}

    # -- the storage writer (its own thread) -----------------------------------------------

    def store_batch(self, seconds: float, jobs: int) -> None:
        """One committed (or failed) batch of ``jobs`` stored in ``seconds``."""
        with self._store_lock:
            self.store_latency.observe(seconds)
            self.store_jobs += jobs

    def store_snapshot(self) -> tuple[list[tuple[str, int]], float, int]:
        """(buckets, sum, jobs) of the store latency, consistent with each other."""
        with self._store_lock:
            h = self.store_latency
            return h.buckets(), h.sum, self.store_jobs

    # -- reading (at scrape time) ----------------------------------------------------------

    def submitted(self, functions: Iterable[Any]) -> dict[str, int]:
        """Jobs submitted per function label, from the broker's ``functions`` (see the module
        docstring)."""
        self.settle()
        out: dict[str, int] = dict(self.left)
        for f in functions:
            if f.total:
                label = self.label(f.name)
                out[label] = out.get(label, 0) + f.total
        if self._lingering:
            for job in list(self._lingering):
                if job.state is _DONE:
                    del self._lingering[job]
                else:
                    label = self.label(job.name)
                    out[label] = out.get(label, 0) - 1
        self._prune()
        return out

    def _prune(self) -> None:
        """Drop the checkpoints of runs whose every job has left: jobs numbered below the
        oldest in memory are gone; the checkpoint covering the oldest stays."""
        oldest = next(iter(self._jobs), None)
        if oldest is None:
            self._run_first.clear()
            self._run_time.clear()
            return
        i = bisect_right(self._run_first, oldest) - 1
        if i > 0:
            del self._run_first[:i]
            del self._run_time[:i]
