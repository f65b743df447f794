"""What the threaded client waits on, and how a connection's session reaches gear's Jobs.

Owns ``Task`` (a held lock as the latch), ``SubmitJobTask``, ``OptionReqTask``, the batch tasks of
``Client.submitJobs``, and ``JobUpdater``: the :class:`gear.protocol.client.SessionHandler` of one
threaded ``Connection``, which turns the session's decisions (a handle for a submission, an ERROR,
a WORK_* packet's effect) into gear's ``Job`` attributes (docs/gear-compat.md §3.3, §3.10) and
completed tasks. What a packet means is decided by the session, not here.

Names are gear's camelCase on purpose. Must not import the client, connection, worker or server
modules, nor ``gear.aio``.
"""

from __future__ import annotations

import threading
from typing import Any

from gear import constants
from gear.protocol.messages import JobStatus

__all__ = [
    "JobUpdater",
    "OptionReqTask",
    "SubmitJobTask",
    "Task",
]


class Task:
    """Something a caller waits for until the poll thread completes it.

    A held lock is the latch: setComplete releases it. Waking a thread blocked on a bare lock
    costs about half of what a threading.Event handoff costs, and every synchronous submit
    pays one such handoff.
    """

    #: The reply type that answers this request (the session's FIFO matches on it).
    expect = 0
    job: Any = None
    background = False

    def __init__(self) -> None:
        self._latch = threading.Lock()
        self._latch.acquire()
        self._complete = False
        #: Set when the request failed (ServerError for an ERROR reply, ConnectionError).
        self.error: BaseException | None = None

    def setComplete(self) -> None:
        if self._complete:
            return
        self._complete = True
        try:
            self._latch.release()
        except RuntimeError:
            pass  # completed concurrently from another thread

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for completion; True if completed within ``timeout``."""
        if self._complete:
            return True
        if self._latch.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            self._latch.release()  # let any other waiter through too
        return self._complete


class SubmitJobTask(Task):
    """A submission waiting for its JOB_CREATED (or ERROR)."""

    expect = constants.JOB_CREATED

    def __init__(self, job: Any, background: bool = False) -> None:
        super().__init__()
        self.job = job
        self.background = background


class Batch:
    """Completion of a group of submissions, with one event for the whole group."""

    __slots__ = ("event", "lock", "remaining")

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.lock = threading.Lock()
        self.event = threading.Event()

    def one_done(self) -> None:
        with self.lock:
            self.remaining -= 1
            last = self.remaining == 0
        if last:
            self.event.set()


class BatchSubmitTask(SubmitJobTask):
    """A SubmitJobTask of submitJobs: completes into its batch instead of its own event."""

    def __init__(self, job: Any, background: bool, batch: Batch) -> None:
        # No per-task event: the caller waits once for the whole batch.
        self.job = job
        self.background = background
        self.error = None
        self.batch = batch
        self.done = False

    def setComplete(self) -> None:
        if not self.done:
            self.done = True
            self.batch.one_done()

    def wait(self, timeout: float | None = None) -> bool:
        self.batch.event.wait(timeout)
        return self.done


class OptionReqTask(Task):
    """An OPTION_REQ waiting for its OPTION_RES (or ERROR)."""

    expect = constants.OPTION_RES


def fraction(numerator: bytes, denominator: bytes) -> float | None:
    """gear's ``fraction_complete``: numerator / denominator, None if either is no number."""
    try:
        return float(numerator) / float(denominator)
    except Exception:
        return None


def apply_status(job: Any, status: JobStatus, fields: list[bytes]) -> None:
    """A STATUS_RES as gear's Job attributes (numerator/denominator stay the bytes sent)."""
    job.known = status.known
    job.running = status.running
    job.numerator = fields[3]
    job.denominator = fields[4]
    job.fraction_complete = fraction(fields[3], fields[4])


class JobUpdater:
    """The session handler of one threaded connection (module docstring)."""

    __slots__ = ("connection",)

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def created(self, task: Any, handle: bytes) -> None:
        job = task.job
        job.handle = handle
        job.connection = self.connection
        task.setComplete()

    def refused(self, task: Any, error: BaseException) -> None:
        task.error = error
        task.setComplete()

    def replied(self, task: Any, reply: Any) -> None:
        if task.expect == constants.OPTION_RES:
            self.connection.handleOptionRes(reply)
        task.setComplete()

    def data(self, job: Any, data: bytes) -> None:
        if data:
            job.data.append(data)

    def warning(self, job: Any, data: bytes) -> None:
        if data:
            job.data.append(data)
        job.warning = True

    def status(self, job: Any, numerator: bytes, denominator: bytes) -> None:
        job.numerator = numerator
        job.denominator = denominator
        job.fraction_complete = fraction(numerator, denominator)

    def complete(self, job: Any, data: bytes) -> None:
        if data:
            job.data.append(data)
        job.failure = False
        job.complete = True

    def fail(self, job: Any) -> None:
        job.failure = True
        job.complete = True

    def exception(self, job: Any, data: bytes) -> None:
        job.exception = data
        job.failure = True
        job.complete = True

    def status_res(self, job: Any, status: JobStatus, fields: list[bytes]) -> None:
        apply_status(job, status, fields)

    def lost(self, job: Any, error: BaseException) -> None:
        pass  # the client calls its handleDisconnect(job) hook for each lost job
