"""``GET /metrics``: the Prometheus text exposition of the job server (docs/operations.md §2).

Owns :class:`Exposition`: a ``prometheus_client`` collector that builds every family at scrape
time from the broker's state and :class:`~gear.server.observe.metrics.JobMetrics`, rendered by
``prometheus_client`` itself (so every counter is typed ``counter`` and every name, label and
escape is exact), in a private registry with the process, platform and GC collectors.

Why ``prometheus_client`` renders but does not count: its metric objects take a lock and walk
their buckets on every observation; the job events run on the broker's hot path, so the
counting is ours (plain ints and bisected buckets, one thread) and the library only writes
the text. The reply's Content-Type is :data:`CONTENT_TYPE` (text format 0.0.4: the library's
own default names a newer version that older scrapers do not know).

The families: the community exporter's per-function gauges (``gearman_jobs`` = admin
``status`` total, ``gearman_jobs_running``, ``gearman_jobs_waiting`` = total - running,
``gearman_workers``), ``gearman_up`` and ``gearman_version_info``; then ``geard_*``: jobs
submitted and completed (by outcome), queue wait and run time histograms per function,
connections by role, jobs by priority, the durable store's batch latency, uptime, and how many
function names were folded into the ``__other__`` label.

``prometheus_client`` is optional (the ``metrics`` extra): :func:`require` raises
:class:`~gear.errors.ConfigurationError` naming the extra when it is missing.

Must not import the engine, the transport, admin or asyncio.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from gear.errors import ConfigurationError
from gear.server.observe.metrics import JobMetrics
from gear.server.observe.status import connection_roles

__all__ = ["CONTENT_TYPE", "Exposition", "require"]

#: The ``Content-Type`` of a ``/metrics`` reply.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def require() -> None:
    """Raise ConfigurationError unless ``prometheus_client`` can be imported."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "geard --http-port needs the 'prometheus_client' package: "
            "pip install geartrain[metrics]"
        ) from None


class Exposition:
    """The ``/metrics`` text of one server (``render()``), built when asked."""

    def __init__(self, broker: Any, metrics: JobMetrics, started: float, version: str) -> None:
        require()
        from prometheus_client import (
            CollectorRegistry,
            GCCollector,
            PlatformCollector,
            ProcessCollector,
        )

        self.broker = broker
        self.metrics = metrics
        self.started = started
        self.version = version
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def render(self) -> bytes:
        """The exposition text (text format 0.0.4)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def collect(self) -> Iterator[Any]:
        """Every family, read now (the collector interface of ``prometheus_client``)."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        broker = self.broker
        metrics = self.metrics
        label = metrics.label
        up = GaugeMetricFamily("gearman_up", "1: the job server answers.")
        up.add_metric([], 1)
        yield up
        info = GaugeMetricFamily("gearman_version_info", "The job server's version.",
                                 labels=["version"])
        info.add_metric([self.version], 1)
        yield info

        # Per function, folded past the label limit (sums of the folded functions).
        per: dict[str, list[int]] = {}
        for f in broker.function_stats():
            row = per.setdefault(label(f.name), [0, 0, 0, 0, 0, 0])
            row[0] += f.total
            row[1] += f.running
            row[2] += f.workers
            for i in range(3):
                row[3 + i] += f.queued[i]
        families = [
            ("gearman_jobs", "Jobs of the function in the server: waiting plus running "
             "(admin status TOTAL).", lambda r: r[0]),
            ("gearman_jobs_running", "Jobs of the function assigned to a worker.",
             lambda r: r[1]),
            ("gearman_jobs_waiting", "Jobs of the function not running (total - running).",
             lambda r: r[0] - r[1]),
            ("gearman_workers", "Workers registered for the function (CAN_DO registrations).",
             lambda r: r[2]),
        ]
        for name, doc, value in families:
            g = GaugeMetricFamily(name, doc, labels=["function"])
            for fname, row in per.items():
                g.add_metric([fname], value(row))
            yield g
        queued = GaugeMetricFamily("geard_jobs_queued", "Jobs of the function waiting to run, "
                                   "by priority (admin prioritystatus).",
                                   labels=["function", "priority"])
        for fname, row in per.items():
            for i, priority in enumerate(("high", "normal", "low")):
                queued.add_metric([fname, priority], row[3 + i])
        yield queued

        submitted = CounterMetricFamily("geard_jobs_submitted", "Jobs made (submitted or "
                                        "replayed) since start; coalesced submissions are "
                                        "one job.", labels=["function"])
        for fname, n in metrics.submitted(broker.functions.values()).items():
            submitted.add_metric([fname], n)
        yield submitted
        completed = CounterMetricFamily("geard_jobs_completed", "Jobs that left the server, "
                                        "by outcome.", labels=["function", "outcome"])
        for (fname, outcome), n in metrics.finished_jobs.items():
            completed.add_metric([fname, outcome], n)
        yield completed
        for name, doc, hists in (
            ("geard_job_queue_wait_seconds", "From submission (or requeue) to a worker "
             "taking the job.", metrics.queue_wait),
            ("geard_job_run_seconds", "From a worker taking the job to its result.",
             metrics.run_time),
        ):
            h = HistogramMetricFamily(name, doc, labels=["function"])
            for fname, hist in hists.items():
                h.add_metric([fname], hist.buckets(), hist.sum)
            yield h

        conns = GaugeMetricFamily("geard_connections", "Open Gearman connections by role "
                                  "(worker: registered a function).", labels=["role"])
        for role, n in connection_roles(broker).items():
            conns.add_metric([role], n)
        yield conns
        buckets, total, jobs = metrics.store_snapshot()
        store = HistogramMetricFamily("geard_store_batch_seconds", "Time to commit one batch "
                                      "of background jobs to the durable store.")
        store.add_metric([], buckets, total)
        yield store
        stored = CounterMetricFamily("geard_store_jobs", "Background jobs written to the "
                                     "durable store.")
        stored.add_metric([], jobs)
        yield stored
        uptime = GaugeMetricFamily("geard_uptime_seconds", "Seconds since the server started.")
        uptime.add_metric([], time.monotonic() - self.started)
        yield uptime
        folded = GaugeMetricFamily("geard_functions_folded", "Function names counted under "
                                   "the __other__ label (past --metrics-max-functions).")
        folded.add_metric([], label.folded)
        yield folded

    def describe(self) -> list[Any]:
        return []
