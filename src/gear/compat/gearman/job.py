"""python-gearman 2.0's ``gearman.job``: :class:`GearmanJob` and :class:`GearmanJobRequest`.

Plain records, as in python-gearman: the client and worker fill them in. ``GearmanJob`` is one
job (``connection``, ``handle``, ``task``, ``unique``, ``data``); ``GearmanJobRequest`` is a
client's view of a submission: its ``state`` (``gearman.constants.JOB_*``), ``result``,
``exception``, ``data_updates``, ``warning_updates``, ``status`` (a dict), ``timed_out`` and the
connection attempts. On Python 3 ``handle`` and the results are bytes (docs/migrating.md).
Imports only this package's constants.
"""

from __future__ import annotations

import collections
from typing import Any

from gear.compat.gearman.constants import (
    JOB_COMPLETE,
    JOB_CREATED,
    JOB_FAILED,
    JOB_UNKNOWN,
    PRIORITY_NONE,
)

__all__ = ["GearmanJob", "GearmanJobRequest"]


class GearmanJob:
    """One job: where it runs (``connection``, ``handle``) and what it is."""

    def __init__(self, connection: Any, handle: Any, task: Any, unique: Any, data: Any) -> None:
        self.connection = connection
        self.handle = handle
        self.task = task
        self.unique = unique
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        return dict(task=self.task, job_handle=self.handle, unique=self.unique, data=self.data)

    def __repr__(self) -> str:
        return (f"<GearmanJob connection/handle=({self.connection!r}, {self.handle!r}), "
                f"task={self.task}, unique={self.unique}, data={self.data!r}>")


class GearmanJobRequest:
    """A client's submission of one :class:`GearmanJob` and everything the server said about it."""

    def __init__(self, gearman_job: GearmanJob, initial_priority: Any = PRIORITY_NONE,
                 background: bool = False, max_attempts: int = 1) -> None:
        self.gearman_job = gearman_job
        self.priority = initial_priority
        self.background = background
        self.connection_attempts = 0
        self.max_connection_attempts = max_attempts
        self.initialize_request()

    def initialize_request(self) -> None:
        #: WORK_COMPLETE's data (decoded by the client's data_encoder).
        self.result: Any = None
        #: WORK_EXCEPTION's data.
        self.exception: Any = None
        self.warning_updates: collections.deque[Any] = collections.deque()
        self.data_updates: collections.deque[Any] = collections.deque()
        #: The last WORK_STATUS or STATUS_RES, as python-gearman's dict.
        self.status: dict[str, Any] = {}
        self.state: str = JOB_UNKNOWN
        self.timed_out = False

    def reset(self) -> None:
        """Forget every answer, to submit the request again."""
        self.initialize_request()
        self.gearman_job.connection = None
        self.gearman_job.handle = None

    @property
    def status_updates(self) -> collections.deque[tuple[int, int]]:
        """Deprecated in python-gearman 2.0.1: the last status as ``(numerator, denominator)``."""
        out: collections.deque[tuple[int, int]] = collections.deque()
        if self.status:
            out.append((self.status.get("numerator", 0), self.status.get("denominator", 0)))
        return out

    @property
    def server_status(self) -> dict[str, Any]:
        """Deprecated in python-gearman 2.0.1: :attr:`status`."""
        return self.status

    @property
    def job(self) -> GearmanJob:
        return self.gearman_job

    @property
    def unique(self) -> Any:
        """``job.unique``: python-gearman's own documented example reads
        ``job_request.unique``, which its request object lacked (docs/migrating.md)."""
        return self.gearman_job.unique

    @property
    def complete(self) -> bool:
        """Background: accepted. Foreground: WORK_COMPLETE or WORK_FAIL arrived."""
        if self.background:
            return self.state == JOB_CREATED
        return self.state in (JOB_FAILED, JOB_COMPLETE)

    def __repr__(self) -> str:
        return (f"<GearmanJobRequest task={self.job.task!r}, unique={self.job.unique!r}, "
                f"priority={self.priority!r}, background={self.background!r}, "
                f"state={self.state!r}, timed_out={self.timed_out!r}>")
