"""pygear's ``Task``: one job a Client submitted (or a status query), as its callbacks see it.

pygear's Task wrapped libgearman's ``gearman_task_st``; its methods read the task's state:
``function_name``, ``unique``, ``job_handle``, ``is_known``, ``is_running``, ``numerator``,
``denominator``, ``error``, ``returncode``, ``strstate``, ``result`` (the payload of the packet
being handled, through the serializer), ``data_size`` and ``set_serializer``. A bare
``Task(None, None)`` answers None, 0 or False to all of them and ``returncode()`` is
INVALID_ARGUMENT, as pygear's tests check.

Unlike pygear's (whose ``add_task`` returned a Task already cut off from its libgearman task, so
every method answered None), the Task ``add_task*`` returns is live: after ``run_tasks`` it
holds the job's handle, its final return code and its last payload. The protocol side (what a
packet means) is the client session's (gear.protocol.client); :class:`Request` is what waits in
its pending FIFO.

Imports only the pygear front's own modules.
"""

from __future__ import annotations

from typing import Any

from gear.compat.pygear import serializer as ser
from gear.compat.pygear.errors import CODE

# libgearman's task states, by gearman_task_strstate's names. As in libgearman, a submitted task
# is in WORK while its callbacks run (even the final one) and FINISHED afterwards.
NEW = "GEARMAN_TASK_STATE_NEW"
SUBMIT = "GEARMAN_TASK_STATE_SUBMIT"
WORK = "GEARMAN_TASK_STATE_WORK"
FINISHED = "GEARMAN_TASK_STATE_FINISHED"

#: What a Task is: a job to submit, a status query by handle or by unique, an echo.
SUBMIT_KIND, STATUS_KIND, UNIQUE_STATUS_KIND, ECHO_KIND = "submit", "status", "unique", "echo"


class Request:
    """A request in the session's pending FIFO (gear.protocol.client.PendingRequest)."""

    __slots__ = ("background", "expect", "job")

    def __init__(self, expect: int, job: Task | None, background: bool = False) -> None:
        self.expect = expect
        self.job = job
        self.background = background


class Task:
    """pygear.Task (module docstring). The constructor's arguments are ignored, as pygear's."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self._serializer: Any = ser.DEFAULT
        self._function: str | None = None
        self._unique: str | None = None
        self._handle: str | None = None
        self._known = False
        self._running = False
        self._numerator = 0
        self._denominator = 0
        self._data: bytes | None = None
        self._returncode = CODE["INVALID_ARGUMENT"]
        self._state: str | None = None
        self._error: str | None = None
        # What the client needs to run it.
        self._kind = SUBMIT_KIND
        self._packet = b""
        self._background = False
        self._actions = False
        self._done = False
        self._server = -1

    @classmethod
    def _make(cls, kind: str, packet: bytes, serializer: Any, *, function: str | None = None,
              unique: str | None = None, handle: str | None = None, background: bool = False,
              actions: bool = False) -> Task:
        task = cls()
        task._kind = kind
        task._packet = packet
        task._serializer = serializer
        task._function = function
        task._unique = unique
        task._handle = handle
        task._background = background
        task._actions = actions
        # libgearman's result code of a task that has no outcome yet.
        task._returncode = CODE["UNKNOWN_STATE"]
        task._state = NEW
        return task

    def __repr__(self) -> str:
        return (f"<pygear.Task {self._function!r} handle={self._handle!r} "
                f"state={self._state}>")

    # -- what the client records ---------------------------------------------------------------

    def _finish(self, code: str, error: str | None = None) -> None:
        """Record the outcome; the state stays WORK until :meth:`_finished` (after callbacks)."""
        self._done = True
        self._returncode = CODE[code]
        if error is not None:
            self._error = error

    def _finished(self) -> None:
        self._state = FINISHED

    # -- pygear's methods ----------------------------------------------------------------------

    def function_name(self) -> str | None:
        return self._function

    def unique(self) -> str | None:
        return self._unique

    def job_handle(self) -> str | None:
        return self._handle

    def is_known(self) -> bool:
        return self._known

    def is_running(self) -> bool:
        return self._running

    def numerator(self) -> int:
        return self._numerator

    def denominator(self) -> int:
        return self._denominator

    def error(self) -> str | None:
        return self._error

    def returncode(self) -> int:
        return self._returncode

    def strstate(self) -> str | None:
        return self._state

    def result(self) -> Any:
        """The payload of the packet being handled (the result, a data chunk, the exception),
        through the serializer; None when there is none."""
        return ser.loads(self._serializer, self._data)

    def data_size(self) -> int:
        return len(self._data) if self._data else 0

    def set_serializer(self, serializer: Any) -> None:
        self._serializer = ser.check(serializer)
