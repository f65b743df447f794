"""Job metrics for ``/metrics`` and ``/status``: a reader of the broker's lifecycle records.

Owns :class:`JobMetrics` (finished jobs per function and outcome, the queue-wait and run-time
histograms, read from the broker's job log), :class:`Histogram` (cumulative buckets, no
lock: every observation runs on the broker's thread) and :class:`Labels` (the bounded function
label). Never a second decoder of traffic: everything here comes from the broker's lifecycle
records or its own counts, read at scrape time (docs/operations.md §5).

Decisions:

* Submitted jobs are not counted per job: a function's jobs submitted so far is what it holds
  now (``Function.total``) plus the jobs that left it (the log's entries), minus the jobs
  cancelled while running that are still with their worker (logged already, still counted in
  ``total``). Exact, and free on the hot path. A submission coalesced onto a job already
  queued or running is not a new job and is not counted (docs/protocol.md §3.2).
* Queue wait is from the job's creation (or its requeue) to its assignment; run time from its
  assignment to its result (complete, fail, exception, timeout).
* The broker does not call this module: it reads the clock it is given
  (``Broker.log_clock``, :attr:`JobMetrics.clock`) into the job when it is made or requeued
  (once per pipelined run of submits) and into ``peer.worker_jobs`` when it is assigned, and
  appends a completed job's three times to its function's columns (``Function.log_born``,
  ``log_assigned``, ``log_ended``) and one tuple per other ending or requeue to
  ``Broker.job_log`` (no Python frame; unlike a ``JobEvents`` observer it keeps the pipelined
  fast path on; broker/core.py's docstring has the shapes). Nothing runs per event-loop
  pass: :meth:`JobMetrics.count` empties the log on a timer (:data:`COUNT_INTERVAL`, started
  by the HTTP side) and before every read. An earlier version stamped one object per loop pass
  and gave it its time at the pass's end; in a live geard a pass ends one or two jobs, so that
  per-pass call cost more than the clock readings it saved (docs/operations.md §5).
* Label cardinality: the first ``max_functions`` function names seen keep their own label;
  every later one is folded into :data:`OTHER` (counters, histograms and gauges alike).

Must not import the engine, the transport, admin or asyncio; reaches the broker through what it
is given (``job_log``, ``log_clock``, ``peers``) and the lifecycle types.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from operator import sub
from typing import Any

from gear.server.broker.lifecycle import FORGOTTEN, Outcome
from gear.server.broker.model import Function, Job, JobState

__all__ = ["COUNT_INTERVAL", "OTHER", "Histogram", "JobMetrics", "Labels", "Series",
           "outcome_label"]

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
_OUTCOMES = tuple(o.value for o in Outcome)
_DONE = JobState.DONE
#: Seconds between two counts of the job log on the server's loop (and it is counted before
#: every read): the log holds at most this long's ended jobs.
COUNT_INTERVAL = 0.1
#: One entry of the broker's job log (``Broker.job_log``): function, outcome value (None: a
#: requeue), born (``FORGOTTEN``: skip the entry), assigned (None: never), and now (for a
#: cancelled job: the job).
Entry = tuple[Any, ...]
_CANCELLED_VALUE = Outcome.CANCELLED.value
_COMPLETE_VALUE = Outcome.COMPLETE.value


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


def _observe_sorted(h: Histogram, values: list[float]) -> None:
    """Observe every one of ``values`` in ``h`` (sorting them): a bucket's count is the
    difference of two searches (bucket i holds the values in (bounds[i-1], bounds[i]], as
    :meth:`Histogram.observe` puts them)."""
    values.sort()
    counts = h.counts
    below = 0
    for i, bound in enumerate(h.bounds):
        upto = bisect_right(values, bound, below)
        counts[i] += upto - below
        below = upto
    counts[-1] += len(values) - below
    h.sum += sum(values)


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


class JobMetrics:
    """Counts and times every job's life from the broker's job log (register with
    :meth:`bind`; call :meth:`count` every :data:`COUNT_INTERVAL` on the broker's thread).

    Nothing here runs per job on the broker's hot path: the broker reads :attr:`clock` into
    ``job.born`` when it makes (or requeues) a job and into ``peer.worker_jobs`` when it assigns
    one, and appends a completed job's times to its function's columns, any other ending or
    requeue to its ``job_log``.
    :meth:`count` turns the log into counters and histograms.
    """

    def __init__(self, max_functions: int = 100,
                 clock: Callable[[], float] = time.monotonic) -> None:
        #: The job log's clock (``Broker.log_clock``): every wait and run is a difference of
        #: two of its readings.
        self.clock = clock
        self.label = Labels(max_functions)
        # label -> Series, and function name -> its label's Series.
        self._series: dict[str, Series] = {}
        self._by_name: dict[bytes, Series] = {}
        #: Batch commit latency of the durable store (observed on the writer thread).
        self.store_latency = Histogram(STORE_BUCKETS)
        self.store_jobs = 0
        self._store_lock = threading.Lock()
        # Jobs cancelled while running: finished, still counted by their function.
        self._lingering: dict[Job, None] = {}
        self._broker: Any = None
        self._log: list[Entry] = []
        self._functions: list[Function] = []  # the broker's log_functions, once bound

    def bind(self, broker: Any) -> None:
        """Read ``broker``'s job log (a :class:`~gear.server.broker.Broker`) from now on. Jobs
        made before have no birth time: their queue wait is not observed."""
        self._broker = broker
        for job in broker.jobs.by_number.values():
            # the broker leaves it unset while no log is read
            job.born = FORGOTTEN if job.ignore else None
        broker.job_log = self._log
        self._functions = broker.log_functions
        broker.log_clock = self.clock

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

    # -- every COUNT_INTERVAL and before every read (the broker's thread) --------------------

    def count(self) -> None:
        """Count the log and empty it.

        Completed jobs, most of it, come in columns, one set per function: a function's waits
        and runs are differences of two columns (``map``), and a histogram takes a sorted
        column with one search per bound (:func:`_observe_sorted`), so no Python code runs per
        completed job, only per function and bucket. The tuples of every other ending (another
        outcome, a requeue, a cancel) are counted one by one (:meth:`_count_each`), and so are
        a function's columns when they hold a job made before :meth:`bind` or cancelled while
        running (a time that is not a number)."""
        functions = self._functions
        try:
            for f in functions:
                self._count_completed(f)
        finally:  # what could not be counted must not stay (nor grow the columns)
            for f in functions:
                f.log_born.clear()
                f.log_assigned.clear()
                f.log_ended.clear()
            functions.clear()
        log = self._log
        if log:
            try:
                self._count_each(log)
            finally:
                log.clear()

    def _count_completed(self, f: Function) -> None:
        """Count function ``f``'s columns of completed jobs."""
        born, assigned, ended = f.log_born, f.log_assigned, f.log_ended
        try:
            waits = list(map(sub, assigned, born))
            runs = list(map(sub, ended, assigned))
        except TypeError:  # a born None or FORGOTTEN, an assigned None: one by one
            self._count_each([(f, _COMPLETE_VALUE, b, a, e)
                              for b, a, e in zip(born, assigned, ended, strict=True)])
            return
        s = self._by_name.get(f.name) or self.series(f.name)
        _observe_sorted(s.wait, waits)
        _observe_sorted(s.run, runs)
        s.finished[_COMPLETE_VALUE] += len(ended)

    def _count_each(self, entries: list[Entry]) -> None:
        """Count ``entries``, job log tuples, one at a time."""
        by_name = self._by_name
        for f, value, born, assigned, ended in entries:
            if born is FORGOTTEN:  # a late entry of a job cancelled while running
                continue
            s = by_name.get(f.name) or self.series(f.name)
            if assigned is not None:
                if born is not None:  # None: made before bind()
                    s.wait.observe(assigned - born)
                if value in _TIMED:
                    s.run.observe(ended - assigned)
            if value is not None:  # None: requeued (it waits again from then)
                s.finished[value] += 1
                if value == _CANCELLED_VALUE and ended.state is not _DONE:
                    # cancelled while running (``ended`` is the job): still counted by its
                    # function until its worker lets go
                    self._lingering[ended] = None

    def _running_waits(self) -> dict[str, Histogram]:
        """The queue waits of the jobs running now (counted in the log when they leave)."""
        out: dict[str, Histogram] = {}
        for peer in self._broker.peers if self._broker is not None else ():
            for job, assigned in peer.worker_jobs.items():
                born = job.born
                if assigned is None or born is None or job.ignore:
                    continue
                label = self.series(job.name).label
                h = out.get(label)
                if h is None:
                    h = out[label] = Histogram(TIME_BUCKETS)
                h.observe(assigned - born)
        return out

    # -- the series, read at scrape time ---------------------------------------------------

    def _read(self) -> None:
        self.count()

    @property
    def finished_jobs(self) -> dict[tuple[str, str], int]:
        """(function label, outcome label) -> jobs finished so."""
        self._read()
        return {(s.label, value.replace(" ", "_")): n for s in self._series.values()
                for value, n in s.finished.items() if n}

    @property
    def left(self) -> dict[str, int]:
        """Function label -> jobs that left the broker (any outcome)."""
        self._read()
        out = {s.label: sum(s.finished.values()) for s in self._series.values()}
        return {label: n for label, n in out.items() if n}

    @property
    def queue_wait(self) -> dict[str, Histogram]:
        """Function label -> queue waits: of the jobs that left, were requeued or run now."""
        self._read()
        out: dict[str, Histogram] = {}
        running = self._running_waits()
        for s in self._series.values():
            h = Histogram(TIME_BUCKETS)
            h.add(s.wait)
            extra = running.get(s.label)
            if extra is not None:
                h.add(extra)
            if h.count:
                out[s.label] = h
        return out

    @property
    def run_time(self) -> dict[str, Histogram]:
        self._read()
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
        return out
