"""``GET /status``: a JSON snapshot of the broker, the same numbers as admin ``status`` and
``workers`` at the same instant (docs/operations.md §3).

Owns :func:`snapshot` (the JSON document) and :func:`connection_roles` (connections by role, for
``geard_connections``). Everything is read from the broker's own state when asked (its query
interface, ``function_stats``, and its peers in connect order) plus the job counters of
:class:`~gear.server.observe.metrics.JobMetrics`; nothing is cached.

The document: ``version``, ``uptime_seconds``, ``functions`` (one entry per admin ``status``
line, in its order: ``name``, ``total`` — the admin TOTAL column: queued, running, held and
epoch jobs — ``running``, ``waiting`` = total - running, ``workers`` — CAN_DO registrations —,
``waiting_by_priority``: the admin ``prioritystatus`` columns), ``workers`` (one entry per admin
``workers`` line, in its order, newest connection first: ``id`` — the client id, ``-`` until
SET_CLIENT_ID —, ``fd``, ``address``, ``functions`` as admin prints them, ``running``: the
handles of the jobs it runs) and ``totals`` (sums over functions; ``workers``: connections that
registered a function; ``connections``: every connection; ``jobs_submitted`` and
``jobs_completed``: jobs made, and jobs that left the broker with any outcome, since start).

Must not import the engine, the transport, admin or asyncio.
"""

from __future__ import annotations

import time
from typing import Any

from gear.server.observe.metrics import JobMetrics

__all__ = ["connection_roles", "snapshot"]


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def connection_roles(broker: Any) -> dict[str, int]:
    """Connections by role: ``worker`` (registered a function) and ``client`` (any other)."""
    workers = sum(1 for p in broker.peers if p.functions)
    return {"worker": workers, "client": len(broker.peers) - workers}


def snapshot(broker: Any, metrics: JobMetrics, started: float,
             version: str) -> dict[str, Any]:
    """The ``/status`` document (see the module docstring); ``started`` is the server's start
    on the ``time.monotonic`` clock."""
    functions = []
    total = running = 0
    for f in broker.function_stats():
        high, normal, low = f.queued
        functions.append({
            "name": _text(f.name),
            "total": f.total,
            "running": f.running,
            "waiting": f.total - f.running,
            "workers": f.workers,
            "waiting_by_priority": {"high": high, "normal": normal, "low": low},
        })
        total += f.total
        running += f.running
    workers = []
    registered = 0
    for p in reversed(list(broker.peers)):  # admin ``workers``: newest first
        if p.functions:
            registered += 1
        workers.append({
            "id": _text(p.client_id),
            "fd": p.fd,
            "address": p.host,
            "functions": [_text(name) for name in reversed(p.functions)],
            "running": [_text(job.handle) for job in p.worker_jobs],
        })
    submitted = metrics.submitted(broker.functions.values())
    return {
        "version": version,
        "uptime_seconds": round(time.monotonic() - started, 3),
        "functions": functions,
        "workers": workers,
        "totals": {
            "total": total,
            "running": running,
            "waiting": total - running,
            "workers": registered,
            "connections": len(broker.peers),
            "jobs_submitted": sum(submitted.values()),
            "jobs_completed": sum(metrics.left.values()),
        },
    }
