"""gear's job classes: what a client submits, what a worker receives, and their text variants.

Owns ``convert_to_bytes``, ``FunctionRecord``, ``BaseJob``, ``Job``, ``WorkerJob``, the
``Text*``/``Binary*`` variants and ``ServerJob`` (docs/gear-compat.md §3.10), with gear's
attribute names and types (names bytes on the wire, ``name`` decoded for display).

Fixed gear bugs (docs/gear-compat.md §6): ``TextList.extend`` works; ``TextJob.exception =
None`` and ``unique = None`` are allowed. Added: ``Job.wait(timeout)``, backed by a latch (a held
lock) that is released whenever ``complete`` becomes true; ``WorkerJob.cancelled`` and
``WorkerJob.waitForCancel(timeout)``, set when geard cancels the job while the worker runs it
(JOB_CANCEL, docs/protocol.md §1.7; the Worker opts in with ``job_cancel=True``).

Names are gear's camelCase on purpose. Must not import the connection, client, worker or
server modules (a WorkerJob only calls ``self.connection.sendPacket``/``sendRaw``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, SupportsIndex

from gear import constants
from gear.protocol.messages import to_bytes
from gear.protocol.packets import request

__all__ = [
    "BaseBinaryJob",
    "BaseJob",
    "BinaryJob",
    "BinaryWorkerJob",
    "FunctionRecord",
    "Job",
    "ServerJob",
    "TextJob",
    "TextJobArguments",
    "TextJobUnique",
    "TextList",
    "TextWorkerJob",
    "WorkerJob",
    "convert_to_bytes",
]

#: Guards the lazy creation of Job._done (most jobs are never waited on).
_WAIT_LOCK = threading.Lock()


def _held_latch() -> threading.Lock:
    latch = threading.Lock()
    latch.acquire()
    return latch


def _open(latch: threading.Lock) -> None:
    try:
        latch.release()
    except RuntimeError:
        pass  # open already (completed twice, or opened by a waiter passing through)


def convert_to_bytes(data: Any) -> Any:
    """``data`` encoded as UTF-8 if it is a str; anything else (bytes, None) unchanged.

    gear's lenient form of :func:`gear.protocol.messages.to_bytes`, kept for its callers.
    """
    if isinstance(data, str):
        return to_bytes(data)
    return data


class FunctionRecord:
    """A function a worker can perform.

    :arg bytes name: the function name.
    :arg timeout: seconds the server may let one job of it run (CAN_DO_TIMEOUT), or None.
    """

    def __init__(self, name: str | bytes, timeout: float | int | str | bytes | None = None) -> None:
        self.name = name
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<gear.FunctionRecord 0x{id(self):x} name: {self.name!r} timeout: {self.timeout!r}>"


class BaseJob:
    """Common attributes of client and worker jobs: name, arguments, unique, handle."""

    def __init__(
        self,
        name: str | bytes,
        arguments: Any,
        unique: str | bytes | None = None,
        handle: bytes | None = None,
    ) -> None:
        # bytes (what a worker receives) skip the conversion call: one job each, three fields.
        self._name: bytes = name if type(name) is bytes else convert_to_bytes(name)
        self._validate_arguments(arguments)
        self._arguments: bytes = (
            arguments if type(arguments) is bytes else convert_to_bytes(arguments)
        )
        self._unique: bytes | None = unique if type(unique) is bytes else convert_to_bytes(unique)
        self.handle = handle
        self.connection: Any = None

    def _validate_arguments(self, arguments: Any) -> None:
        if not isinstance(arguments, (bytes, bytearray)):
            raise TypeError("arguments must be of type bytes or bytearray")

    @property
    def arguments(self) -> Any:
        return self._arguments

    @arguments.setter
    def arguments(self, value: Any) -> None:
        self._arguments = value

    @property
    def unique(self) -> Any:
        return self._unique

    @unique.setter
    def unique(self, value: Any) -> None:
        self._unique = value

    @property
    def name(self) -> Any:
        if isinstance(self._name, bytes):
            return self._name.decode("utf-8")
        return self._name

    @name.setter
    def name(self, value: Any) -> None:
        if isinstance(value, str):
            value = value.encode("utf-8")
        self._name = value

    @property
    def binary_name(self) -> bytes:
        return self._name

    @property
    def binary_arguments(self) -> bytes:
        return self._arguments

    @property
    def binary_unique(self) -> bytes | None:
        return self._unique

    def __repr__(self) -> str:
        return (
            f"<gear.Job 0x{id(self):x} handle: {self.handle!r} name: {self.name!r} "
            f"unique: {self.unique!r}>"
        )


class Job(BaseJob):
    """A job to run or being run by Gearman, as the client sees it.

    :arg str name: the function name.
    :arg bytes arguments: the opaque data to send to the worker.
    :arg str unique: a unique identifier; equal (function, unique) submissions may be coalesced.

    Attributes updated by the client as packets arrive: ``handle``, ``data`` (list of WORK_DATA /
    WORK_WARNING / WORK_COMPLETE payloads), ``exception``, ``warning``, ``complete``,
    ``failure``, ``numerator``, ``denominator``, ``fraction_complete``, ``known``, ``running``.
    Use :meth:`wait` to block until the job completes.
    """

    data_type: type = list

    def __init__(
        self, name: str | bytes, arguments: Any, unique: str | bytes | None = None
    ) -> None:
        super().__init__(name, arguments, unique)
        self._data = self.data_type()
        self._exception: Any = None
        self._done: threading.Lock | None = None  # the latch, made by the first wait()
        self.warning = False
        self._complete = False
        self.failure = False
        self.numerator: Any = None
        self.denominator: Any = None
        self.fraction_complete: float | None = None
        self.known: bool | None = None
        self.running: bool | None = None

    @property
    def complete(self) -> bool:
        """Whether the job has finished (WORK_COMPLETE, WORK_FAIL or WORK_EXCEPTION)."""
        return self._complete

    @complete.setter
    def complete(self, value: bool) -> None:
        # _complete is written before _done is read, and wait() publishes _done before it
        # reads _complete, so one of the two always sees the other (no lost wakeup).
        self._complete = value
        done = self._done
        if done is None:
            return
        if not value:
            # Not complete again: later waiters need a held latch. Waiters on the old one
            # are let go and, seeing a new latch, wait on it (wait()).
            with _WAIT_LOCK:
                self._done = _held_latch()
        _open(done)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job completes; True if it did within ``timeout`` seconds."""
        if self._complete:
            return True
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0)
        while True:
            done = self._done
            if done is None:
                with _WAIT_LOCK:
                    done = self._done
                    if done is None:
                        # A held lock is the latch (as gear.threaded.tasks.Task): completion
                        # releases it. A threading.Event would allocate a lock and go through
                        # a Condition on every wait (issue 14).
                        done = self._done = _held_latch()
                        if self._complete:
                            _open(done)
            wait = -1.0 if deadline is None else max(deadline - time.monotonic(), 0.0)
            if done.acquire(timeout=wait):
                _open(done)  # let the next waiter through too
            if self._complete:
                return True
            if self._done is done:
                return False  # timed out
            # complete was set back to False meanwhile: wait on the new latch.

    @property
    def binary_data(self) -> Iterator[bytes]:
        for value in self._data:
            if isinstance(value, str):
                value = value.encode("utf-8")
            yield value

    @property
    def data(self) -> Any:
        """The data chunks received so far (the live list)."""
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        if not isinstance(value, self.data_type):
            raise ValueError(f"data attribute must be {self.data_type}")
        self._data = value

    @property
    def exception(self) -> Any:
        return self._exception

    @exception.setter
    def exception(self, value: Any) -> None:
        self._exception = value


def _handle_of(job: BaseJob) -> bytes:
    handle = job.handle
    if handle is None:
        raise ValueError("the job has no handle")
    return bytes(handle)


class WorkerJob(BaseJob):
    """A job that a worker is processing; its ``sendWork*`` methods report to the server.

    :arg bytes handle: the job handle assigned by the server.
    :arg str name: the function name.
    :arg bytes arguments: the data sent by the client.
    :arg bytes unique: the unique id sent by the client, or None.

    ``cancelled`` becomes True when the server cancels the job while it runs (JOB_CANCEL,
    docs/protocol.md §1.7, on a Worker made with ``job_cancel=True``); :meth:`waitForCancel`
    waits for that. The job should then stop and :meth:`sendWorkFail`: the server drops
    whatever it sends for the job, and the end packet frees the server's slot.
    """

    #: The server cancelled the job (class defaults: nothing per job until it is cancelled).
    cancelled = False
    _cancel_event: threading.Event | None = None
    # Where the Worker keeps the jobs it may be told to cancel, and this job's key there.
    _cancel_registry: dict[Any, WorkerJob] | None = None
    _cancel_key: Any = None

    def __init__(
        self, handle: bytes, name: str | bytes, arguments: Any, unique: str | bytes | None = None
    ) -> None:
        super().__init__(name, arguments, unique)
        self.handle = handle

    def _send(self, data: bytes) -> None:
        self.connection.sendRaw(data)

    def _end(self, data: bytes) -> None:
        """Send the job's end packet; the Worker no longer needs to find it for a cancel."""
        registry = self._cancel_registry
        if registry is not None:
            registry.pop(self._cancel_key, None)
            self._cancel_registry = None
        self._send(data)

    def _markCancelled(self) -> None:
        with _WAIT_LOCK:
            self.cancelled = True
            event = self._cancel_event
        if event is not None:
            event.set()

    def waitForCancel(self, timeout: float | None = None) -> bool:
        """Wait until the server cancels the job; returns :attr:`cancelled` (False on timeout)."""
        with _WAIT_LOCK:
            if self.cancelled:
                return True
            event = self._cancel_event
            if event is None:
                event = self._cancel_event = threading.Event()
        return event.wait(timeout)

    def sendWorkData(self, data: bytes = b"") -> None:
        """Send a WORK_DATA packet (intermediate data) to the client."""
        self._send(request(constants.WORK_DATA, _handle_of(self), bytes(data)))

    def sendWorkWarning(self, data: bytes = b"") -> None:
        """Send a WORK_WARNING packet to the client."""
        self._send(request(constants.WORK_WARNING, _handle_of(self), bytes(data)))

    def sendWorkStatus(self, numerator: Any, denominator: Any) -> None:
        """Send a WORK_STATUS packet (``numerator`` out of ``denominator`` done)."""
        self._send(
            request(
                constants.WORK_STATUS,
                _handle_of(self),
                str(numerator).encode("utf-8"),
                str(denominator).encode("utf-8"),
            )
        )

    def sendWorkComplete(self, data: bytes = b"") -> None:
        """Send a WORK_COMPLETE packet: the job finished successfully with ``data``."""
        self._end(request(constants.WORK_COMPLETE, _handle_of(self), bytes(data)))

    def sendWorkFail(self) -> None:
        """Send a WORK_FAIL packet: the handle with no trailing NUL (docs/protocol.md §1.3)."""
        self._end(request(constants.WORK_FAIL, _handle_of(self)))

    def sendWorkException(self, data: bytes = b"") -> None:
        """Send a WORK_EXCEPTION packet: the job failed with ``data`` as the exception."""
        self._end(request(constants.WORK_EXCEPTION, _handle_of(self), bytes(data)))


class TextJobArguments:
    """Mixin: ``arguments`` is str (UTF-8 on the wire)."""

    _arguments: bytes

    def _validate_arguments(self, arguments: Any) -> None:
        pass

    @property
    def arguments(self) -> Any:
        args = self._arguments
        if isinstance(args, bytes):
            return args.decode("utf-8")
        return args

    @arguments.setter
    def arguments(self, value: Any) -> None:
        if not isinstance(value, bytes):
            value = value.encode("utf-8")
        self._arguments = value


class TextJobUnique:
    """Mixin: ``unique`` is str (UTF-8 on the wire); None is allowed."""

    _unique: bytes | None

    @property
    def unique(self) -> Any:
        unique = self._unique
        if isinstance(unique, bytes):
            return unique.decode("utf-8")
        return unique

    @unique.setter
    def unique(self, value: Any) -> None:
        if value is not None and not isinstance(value, bytes):
            value = value.encode("utf-8")
        self._unique = value


class TextList(list):
    """A list that decodes bytes items to str as they are added."""

    @staticmethod
    def _decode(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.decode("utf-8")
        return value

    def append(self, x: Any) -> None:
        super().append(self._decode(x))

    def extend(self, iterable: Iterable[Any]) -> None:
        super().extend(self._decode(v) for v in iterable)

    def insert(self, i: SupportsIndex, x: Any) -> None:
        super().insert(i, self._decode(x))


class TextJob(TextJobArguments, TextJobUnique, Job):
    """A Job whose arguments, unique, data and exception are str (UTF-8 on the wire)."""

    data_type = TextList

    @property
    def exception(self) -> Any:
        exc = self._exception
        if isinstance(exc, bytes):
            return exc.decode("utf-8")
        return exc

    @exception.setter
    def exception(self, value: Any) -> None:
        if value is not None and not isinstance(value, bytes):
            value = value.encode("utf-8")
        self._exception = value


class TextWorkerJob(TextJobArguments, TextJobUnique, WorkerJob):
    """A WorkerJob whose arguments and unique are str and whose sendWork* accept str."""

    def sendWorkData(self, data: Any = "") -> None:
        super().sendWorkData(convert_to_bytes(data))

    def sendWorkWarning(self, data: Any = "") -> None:
        super().sendWorkWarning(convert_to_bytes(data))

    def sendWorkComplete(self, data: Any = "") -> None:
        super().sendWorkComplete(convert_to_bytes(data))

    def sendWorkException(self, data: Any = "") -> None:
        super().sendWorkException(convert_to_bytes(data))


class BaseBinaryJob:
    """Mixin: ``name`` is the raw bytes function name."""

    _name: bytes

    @property
    def name(self) -> bytes:
        return self._name


class BinaryWorkerJob(BaseBinaryJob, WorkerJob):
    """A WorkerJob whose ``name`` is bytes."""


class BinaryJob(BaseBinaryJob, Job):
    """A Job whose ``name`` is bytes."""


class ServerJob(BinaryJob):
    """A job as a server tracks it: the submitting client's connection and, once assigned,
    the worker's. It has no ``connection`` attribute (gear deletes it)."""

    def __init__(
        self,
        handle: bytes,
        name: str | bytes,
        arguments: Any,
        client_connection: Any,
        unique: str | bytes | None = None,
    ) -> None:
        super().__init__(name, arguments, unique)
        self.handle = handle
        self.client_connection = client_connection
        self.worker_connection: Any = None
        del self.connection
