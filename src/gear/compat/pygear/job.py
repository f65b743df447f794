"""pygear's ``Job``: the job a worker function is given.

Methods as pygear's job.c: ``send_data``, ``send_warning``, ``send_exception`` and
``send_complete`` (each value through the serializer), ``send_status(numerator,
denominator)``, ``send_fail``, ``handle``, ``function_name``, ``unique``, ``workload`` (loaded
through the serializer), ``workload_size`` (bytes on the wire), ``error`` and
``set_serializer``.

Differences that fix pygear's bugs, not its API: ``unique()`` is the unique the client
submitted (the worker grabs with GRAB_JOB_UNIQ; pygear's never did, so it was always empty), and
once a job is finished (WORK_COMPLETE, WORK_FAIL or WORK_EXCEPTION sent) a second final report
is not sent (libgearman's rule too), so a function may call ``send_complete`` and return.

Imports only the pygear front's own modules and gear.protocol.messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gear.compat.pygear import serializer as ser
from gear.protocol import messages


class Job:
    """pygear.Job. Made by the Worker; ``Job()`` alone is an empty job, as pygear allowed."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self._serializer: Any = ser.DEFAULT
        self._handle = b""
        self._function = b""
        self._unique = b""
        self._workload = b""
        self._send: Callable[[bytes], None] | None = None
        self._finished = False
        self._error: str | None = None

    @classmethod
    def _assigned(cls, assignment: messages.JobAssignment, serializer: Any,
                  send: Callable[[bytes], None], function: bytes) -> Job:
        job = cls()
        job._serializer = serializer
        job._handle = assignment.handle
        job._function = function
        job._unique = assignment.unique
        job._workload = assignment.data
        job._send = send
        return job

    def __repr__(self) -> str:
        return f"<pygear.Job {self._function!r} handle={self._handle!r}>"

    def _report(self, packet: bytes, final: bool) -> None:
        if self._finished:
            return
        if final:
            self._finished = True
        if self._send is None:
            return
        try:
            self._send(packet)
        except Exception as exc:
            self._error = str(exc)
            raise

    # -- what the function reports -------------------------------------------------------------

    def send_data(self, data: Any) -> None:
        self._report(messages.work_data(self._handle, ser.dumps(self._serializer, data)), False)

    def send_warning(self, data: Any) -> None:
        self._report(messages.work_warning(self._handle, ser.dumps(self._serializer, data)),
                     False)

    def send_status(self, numerator: int, denominator: int) -> None:
        self._report(messages.work_status(self._handle, int(numerator), int(denominator)), False)

    def send_complete(self, result: Any) -> None:
        self._report(messages.work_complete(self._handle, ser.dumps(self._serializer, result)),
                     True)

    def send_exception(self, data: Any) -> None:
        self._report(messages.work_exception(self._handle, ser.dumps(self._serializer, data)),
                     True)

    def send_fail(self) -> None:
        self._report(messages.work_fail(self._handle), True)

    # -- what the job is -----------------------------------------------------------------------

    def handle(self) -> str | None:
        return ser.decoded(self._handle) if self._handle else None

    def function_name(self) -> str | None:
        return ser.decoded(self._function) if self._function else None

    def unique(self) -> str | None:
        return ser.decoded(self._unique) if self._send is not None else None

    def workload(self) -> Any:
        return self._serializer.loads(self._workload)

    def workload_size(self) -> int:
        return len(self._workload)

    def error(self) -> str | None:
        return self._error

    def set_serializer(self, serializer: Any) -> None:
        self._serializer = ser.check(serializer)
