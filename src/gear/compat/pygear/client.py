"""pygear's ``Client``: blocking ``do*``, ``do*_background``, queued ``add_task*`` + ``run_tasks``
with callbacks, ``job_status``, echo, and libgearman's option and error accessors.

The methods, argument orders and return shapes are pygear 0.9's (client.c), with the seed's
``do_background`` shape: ``{'result': None, 'job_handle': handle}``; ``job_status`` takes that
dict or a bare handle (what pygear's later releases returned). Workloads go through the
serializer (JSON by default, docs/migrating.md §"From pygear"); ``do()`` returns the loaded
WORK_COMPLETE payload, None when it is empty.

Underneath is one :class:`gear.protocol.client.ClientSession` per server connection: it decides
what every reply and WORK_* packet means; this module only sends requests, waits on the sockets
(gear.compat.pygear.connection: deadlines, Ctrl-C) and turns the session's calls into Task state
and pygear's callbacks. Connections stay open between calls; a call that is interrupted or times
out closes the connections it was waiting on, so a late reply can never answer a later call.

Which server: the first one (in the order added) that accepts a connection, the next ones as
fail-over; a status query goes to the server that created the handle when this client knows it.
Every connection sends ``OPTION_REQ exceptions`` first, as pygear did in ``add_server``, so
WORK_EXCEPTION reaches the exception callback.

May import gear.protocol, gear.net, gear.errors and gear.constants; not the server, the threaded
API or gear.aio.
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Callable
from typing import Any

from gear import constants as c
from gear.compat.pygear import errors
from gear.compat.pygear import serializer as ser
from gear.compat.pygear.connection import (
    Address,
    Link,
    deadline_of,
    wait_readable,
)
from gear.compat.pygear.endpoint import Endpoint
from gear.compat.pygear.task import (
    ECHO_KIND,
    STATUS_KIND,
    SUBMIT,
    SUBMIT_KIND,
    UNIQUE_STATUS_KIND,
    WORK,
    Request,
    Task,
)
from gear.errors import GearmanError, ServerError
from gear.protocol.client import ClientSession
from gear.protocol.messages import HIGH, LOW, NORMAL, JobStatus, check_unique, submit_job
from gear.protocol.packets import request

_OPTION = request(c.OPTION_REQ, b"exceptions")
_CALLBACKS = ("workload", "created", "data", "warning", "status", "complete", "exception", "fail")
#: How many handle -> server entries a client remembers for job_status.
_ORIGINS = 4096


def server_error(error: BaseException) -> str:
    """The return code name for a refused request (an ERROR reply, or the connection lost)."""
    if isinstance(error, ServerError):
        code = error.code if isinstance(error.code, bytes) else str(error.code).encode()
        if b"QUEUE" in code:
            return "JOB_QUEUE_FULL"
        if b"TOO_LARGE" in code:
            return "ARGUMENT_TOO_LARGE"
        return "SERVER_ERROR"
    return "LOST_CONNECTION"


class _Conn:
    """One server: its address, its socket and its session."""

    __slots__ = ("index", "link", "session")

    def __init__(self, index: int, address: Address, handler: _Events) -> None:
        self.index = index
        self.link = Link(address)
        self.session = ClientSession(handler)

    def fileno(self) -> int:
        return self.link.fileno()

    def drop(self, error: BaseException) -> None:
        self.link.close()
        self.session.connection_lost(error)


class _Events:
    """The session handler: packets to Task state, and to pygear's callbacks in run_tasks."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def _call(self, task: Task, name: str) -> None:
        if not task._actions:
            return
        fn = self.client._callbacks.get(name)
        if fn is None:
            return
        try:
            fn(task)
        except Exception:  # pygear prints a failing callback's error and goes on
            traceback.print_exc()

    def _end(self, task: Task, code: str, name: str, data: bytes | None = None,
             error: str | None = None) -> None:
        task._data = data
        task._finish(code, error)
        self._call(task, name)
        task._finished()

    def created(self, req: Request, handle: bytes) -> None:
        task = req.job
        if task is None or task._done:
            return
        task._handle = handle.decode("utf-8", "replace")
        task._known = True
        task._data = None
        task._state = WORK
        self.client._remember(task)
        self._call(task, "created")
        if task._background:
            task._finish("SUCCESS")
            task._finished()

    def refused(self, req: Request, error: BaseException) -> None:
        task = req.job
        if task is not None and not task._done:
            self._end(task, server_error(error), "fail", error=str(error))

    def replied(self, req: Request, reply: Any) -> None:
        task = req.job
        if task is None or task._done:
            return
        if isinstance(reply, JobStatus):
            self._status(task, reply)
            self._end(task, "SUCCESS", "status")
        else:
            self._end(task, "SUCCESS", "", reply)

    @staticmethod
    def _status(task: Task, status: JobStatus) -> None:
        task._known = status.known
        task._running = status.running
        task._numerator = status.numerator
        task._denominator = status.denominator

    def data(self, task: Task, data: bytes) -> None:
        if not task._done:
            task._data = data
            self._call(task, "data")

    def warning(self, task: Task, data: bytes) -> None:
        if not task._done:
            task._data = data
            self._call(task, "warning")

    def status(self, task: Task, numerator: bytes, denominator: bytes) -> None:
        if task._done:
            return
        task._known = task._running = True
        task._numerator = _int(numerator)
        task._denominator = _int(denominator)
        task._data = None
        self._call(task, "status")

    def complete(self, task: Task, data: bytes) -> None:
        if not task._done:
            self._end(task, "SUCCESS", "complete", data)

    def fail(self, task: Task) -> None:
        if not task._done:
            self._end(task, "WORK_FAIL", "fail")

    def exception(self, task: Task, data: bytes) -> None:
        if not task._done:
            self._end(task, "WORK_EXCEPTION", "exception", data)

    def status_res(self, task: Task, status: JobStatus, fields: list[bytes]) -> None:
        if not task._done:
            self._status(task, status)

    def lost(self, task: Task, error: BaseException) -> None:
        if not task._done:
            task._finish("LOST_CONNECTION", str(error))
            task._finished()


def _int(value: bytes) -> int:
    try:
        return int(value or b"0")
    except ValueError:
        return 0


class Client(Endpoint):
    """pygear.Client (module docstring)."""

    OPTION_NAMES = ("non_blocking", "unbuffered_result", "free_tasks", "generate_unique")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__()
        self._conns: list[_Conn] = []
        self._events = _Events(self)
        self._timeout = -1
        self._serializer: Any = ser.DEFAULT
        self._callbacks: dict[str, Callable[[Task], Any]] = {}
        self._queued: list[Task] = []
        self._origins: dict[str, int] = {}
        self._last: Task | None = None

    # -- servers -------------------------------------------------------------------------------

    def _add(self, address: Address) -> None:
        super()._add(address)
        self._conns.append(_Conn(len(self._conns), address, self._events))

    def remove_servers(self) -> None:
        for conn in self._conns:
            conn.drop(errors.LOST_CONNECTION("servers removed"))
        self._addresses.clear()
        self._conns.clear()
        self._origins.clear()

    def clone(self) -> Client:
        """A new client with the same servers, timeout, options and serializer."""
        other = Client()
        for address in self._addresses:
            other._add(address)
        other._timeout = self._timeout
        other._serializer = self._serializer
        other._options = dict(self._options)
        return other

    # -- connections and the wait loop ---------------------------------------------------------

    def _connect(self, conn: _Conn, deadline: float | None) -> bool:
        if conn.link.connected:
            if not conn.link.closed_by_peer():
                return True
            conn.session.connection_lost(errors.LOST_CONNECTION("LOST_CONNECTION"))
        try:
            conn.link.connect(deadline)
        except errors.COULD_NOT_CONNECT as exc:
            self._note(exc)
            return False
        conn.session.send(Request(c.OPTION_RES, None), _OPTION)
        return True

    def _conn_for(self, task: Task, deadline: float | None) -> _Conn:
        if not self._conns:
            raise errors.NO_SERVERS("NO_SERVERS")
        order = self._conns
        if task._kind == STATUS_KIND and task._handle in self._origins:
            first = self._origins[task._handle]
            if first < len(order):
                order = [order[first], *order[:first], *order[first + 1:]]
        for conn in order:
            if self._connect(conn, deadline):
                return conn
        raise errors.COULD_NOT_CONNECT(
            f"COULD_NOT_CONNECT: no server of {[str(a) for a in self._addresses]} accepted")

    def _remember(self, task: Task) -> None:
        if task._handle is None or task._server < 0:
            return
        origins = self._origins
        origins[task._handle] = task._server
        if len(origins) > _ORIGINS:
            del origins[next(iter(origins))]

    def _run(self, tasks: list[Task]) -> None:
        """Send every task, then wait until each is finished (or the deadline passes)."""
        deadline = deadline_of(self._timeout)
        used: dict[int, _Conn] = {}
        try:
            for task in tasks:
                conn = self._conn_for(task, deadline)
                task._server = conn.index
                task._state = SUBMIT
                conn.session.send(Request(_EXPECT[task._kind], task, task._background),
                                  task._packet)
                used[conn.index] = conn
            for conn in used.values():
                self._flush(conn, deadline)
            self._wait(tasks, used, deadline)
        except BaseException as exc:
            self._abandon(tasks, used, exc)
            raise

    def _flush(self, conn: _Conn, deadline: float | None) -> None:
        data = conn.session.data_to_send()
        if data:
            try:
                conn.link.send(data, deadline)
            except (errors.LOST_CONNECTION, errors.TIMEOUT) as exc:
                conn.session.connection_lost(exc)
                raise

    def _wait(self, tasks: list[Task], used: dict[int, _Conn], deadline: float | None) -> None:
        remaining = [t for t in tasks if not t._done]
        while remaining:
            conns = [conn for conn in used.values() if conn.link.connected]
            if not conns:
                break
            ready = wait_readable(conns, deadline)
            if ready is None:
                raise errors.TIMEOUT(f"TIMEOUT: no answer within {self._timeout} ms")
            for conn in ready:
                self._receive(conn)
            remaining = [t for t in remaining if not t._done]

    def _receive(self, conn: _Conn) -> None:
        data = conn.link.recv()
        if data is None:
            return
        if not data:
            conn.drop(errors.LOST_CONNECTION(f"LOST_CONNECTION: {conn.link.address} closed"))
            return
        try:
            conn.session.receive_data(data)
        except GearmanError as exc:
            conn.drop(errors.INVALID_PACKET(f"INVALID_PACKET: {exc}"))
            return
        conn.session.events_received()  # unsolicited replies mean nothing to pygear

    def _abandon(self, tasks: list[Task], used: dict[int, _Conn], exc: BaseException) -> None:
        code = "TIMEOUT" if isinstance(exc, errors.TIMEOUT) else "LOST_CONNECTION"
        busy = {t._server for t in tasks if not t._done}
        for task in tasks:
            if not task._done:
                task._finish(code, str(exc) or type(exc).__name__)
                task._finished()
        for index in busy:
            conn = used.get(index)
            if conn is not None:
                conn.drop(exc)
        if isinstance(exc, GearmanError):
            self._note(exc)

    def _raise_for(self, task: Task) -> None:
        """Raise the exception of a finished task's return code (none for SUCCESS)."""
        name = errors.describe_returncode(task._returncode)
        if name == "SUCCESS":
            return
        cls = errors.EXCEPTIONS.get(name, errors.ERROR)
        if name == "WORK_EXCEPTION":
            exc: errors.PygearError = cls(name, ser.loads(self._serializer, task._data))
        else:
            exc = cls(task._error or name)
        self._note(exc)
        raise exc

    # -- blocking calls ------------------------------------------------------------------------

    def _submit_task(self, function: str | bytes, workload: Any, unique: str | bytes | None,
                     background: bool, priority: int, actions: bool) -> Task:
        name = ser.text(function)
        if unique is None:
            unique = str(uuid.uuid4())
        unique_b = ser.text(unique)
        try:
            check_unique(unique_b)
        except GearmanError as exc:
            raise errors.ARGUMENT_TOO_LARGE(f"ARGUMENT_TOO_LARGE: {exc}") from None
        data = ser.dumps(self._serializer, workload)
        packet = submit_job(name, unique_b, data, background, priority)
        return Task._make(SUBMIT_KIND, packet, self._serializer, function=ser.decoded(name),
                          unique=ser.decoded(unique_b), background=background, actions=actions)

    def _do(self, function: str, workload: Any, unique: str | None, priority: int) -> Any:
        task = self._submit_task(function, workload, unique, False, priority, False)
        self._last = task
        self._run([task])
        self._raise_for(task)
        return ser.loads(self._serializer, task._data)

    def _do_background(self, function: str, workload: Any, unique: str | None,
                       priority: int) -> dict[str, Any]:
        task = self._submit_task(function, workload, unique, True, priority, False)
        self._last = task
        self._run([task])
        self._raise_for(task)
        return {"result": None, "job_handle": task._handle}

    def do(self, function: str, workload: Any, unique: str | None = None) -> Any:
        return self._do(function, workload, unique, NORMAL)

    def do_high(self, function: str, workload: Any, unique: str | None = None) -> Any:
        return self._do(function, workload, unique, HIGH)

    def do_low(self, function: str, workload: Any, unique: str | None = None) -> Any:
        return self._do(function, workload, unique, LOW)

    def do_background(self, function: str, workload: Any,
                      unique: str | None = None) -> dict[str, Any]:
        return self._do_background(function, workload, unique, NORMAL)

    def do_high_background(self, function: str, workload: Any,
                           unique: str | None = None) -> dict[str, Any]:
        return self._do_background(function, workload, unique, HIGH)

    def do_low_background(self, function: str, workload: Any,
                          unique: str | None = None) -> dict[str, Any]:
        return self._do_background(function, workload, unique, LOW)

    def do_job_handle(self) -> str | None:
        """The handle of the last ``do*`` call's job."""
        return self._last._handle if self._last is not None else None

    def do_status(self) -> tuple[int, int]:
        """(numerator, denominator) of the last ``do*`` call's last WORK_STATUS."""
        if self._last is None:
            return (0, 0)
        return (self._last._numerator, self._last._denominator)

    def execute(self, function: str, workload: str | bytes, unique: str | None = None,
                name: str | None = None) -> bytes | None:
        """Run a job now and return its raw result: no serializer either way (pygear's
        ``execute`` passed its workload and result through untouched)."""
        task = self._submit_task(function, None, unique, False, NORMAL, False)
        unique_b = ser.text(task._unique)
        task._packet = submit_job(ser.text(function), unique_b, ser.text(workload))
        self._last = task
        self._run([task])
        self._raise_for(task)
        return task._data or None

    def _status_task(self, kind: str, key: str | bytes | dict[str, Any]) -> Task:
        raw = ser.text(key["job_handle"] if isinstance(key, dict) else key)
        ptype = c.GET_STATUS if kind == STATUS_KIND else c.GET_STATUS_UNIQUE
        return Task._make(kind, request(ptype, raw), self._serializer, handle=ser.decoded(raw))

    def job_status(self, job_handle: str | bytes | dict[str, Any]) -> dict[str, Any]:
        """STATUS_RES of a handle (or of ``do_background``'s dict), as pygear's dict."""
        task = self._status_task(STATUS_KIND, job_handle)
        self._run([task])
        self._raise_for(task)
        return _status_dict(task)

    def unique_status(self, unique: str | bytes) -> dict[str, Any]:
        """STATUS_RES_UNIQUE of a unique (gearmand 1.1's GET_STATUS_UNIQUE)."""
        task = self._status_task(UNIQUE_STATUS_KIND, unique)
        self._run([task])
        self._raise_for(task)
        return _status_dict(task)

    def echo(self, workload: str | bytes) -> None:
        """ECHO_REQ to every server; ECHO_DATA_CORRUPTION if one answers something else."""
        data = ser.text(workload)
        if not self._conns:
            raise errors.NO_SERVERS("NO_SERVERS")
        for conn in self._conns:
            task = Task._make(ECHO_KIND, request(c.ECHO_REQ, data), self._serializer)
            deadline = deadline_of(self._timeout)
            if not self._connect(conn, deadline):
                raise errors.COULD_NOT_CONNECT(f"COULD_NOT_CONNECT: {conn.link.address}")
            task._server = conn.index
            conn.session.send(Request(c.ECHO_RES, task), task._packet)
            used = {conn.index: conn}
            try:
                self._flush(conn, deadline)
                self._wait([task], used, deadline)
            except BaseException as exc:
                self._abandon([task], used, exc)
                raise
            self._raise_for(task)
            if task._data != data:
                raise errors.ECHO_DATA_CORRUPTION("ECHO_DATA_CORRUPTION")

    def wait(self) -> None:
        """Read whatever the connected servers sent (for non-blocking use); TIMEOUT if none."""
        conns = [conn for conn in self._conns if conn.link.connected]
        if not conns:
            raise errors.NO_ACTIVE_FDS("NO_ACTIVE_FDS")
        ready = wait_readable(conns, deadline_of(self._timeout))
        if ready is None:
            raise errors.TIMEOUT("TIMEOUT")
        for conn in ready:
            self._receive(conn)

    # -- tasks and callbacks -------------------------------------------------------------------

    def _add_task(self, function: str, workload: Any, unique: str | None, background: bool,
                  priority: int) -> Task:
        task = self._submit_task(function, workload, unique, background, priority, True)
        self._queued.append(task)
        return task

    def add_task(self, function: str, workload: Any, unique: str | None = None) -> Task:
        return self._add_task(function, workload, unique, False, NORMAL)

    def add_task_background(self, function: str, workload: Any,
                            unique: str | None = None) -> Task:
        return self._add_task(function, workload, unique, True, NORMAL)

    def add_task_high(self, function: str, workload: Any, unique: str | None = None) -> Task:
        return self._add_task(function, workload, unique, False, HIGH)

    def add_task_high_background(self, function: str, workload: Any,
                                 unique: str | None = None) -> Task:
        return self._add_task(function, workload, unique, True, HIGH)

    def add_task_low(self, function: str, workload: Any, unique: str | None = None) -> Task:
        return self._add_task(function, workload, unique, False, LOW)

    def add_task_low_background(self, function: str, workload: Any,
                                unique: str | None = None) -> Task:
        return self._add_task(function, workload, unique, True, LOW)

    def add_task_status(self, job_handle: str | bytes | dict[str, Any]) -> Task:
        task = self._status_task(STATUS_KIND, job_handle)
        task._actions = True
        self._queued.append(task)
        return task

    def run_tasks(self) -> None:
        """Submit every queued task and wait until all are finished, calling the callbacks."""
        tasks, self._queued = self._queued, []
        if not tasks:
            return
        if not self._conns:
            self._queued = tasks
            raise errors.NO_SERVERS("NO_SERVERS")
        self._run(tasks)
        lost = errors.CODE["LOST_CONNECTION"]
        if any(task._returncode == lost for task in tasks):
            raise errors.LOST_CONNECTION("LOST_CONNECTION: a server went away during run_tasks")

    def set_workload_fn(self, function: Callable[[Task], Any]) -> None:
        """Kept for pygear's API; never called (workloads are sent whole, no NEED_WORKLOAD)."""
        self._callbacks["workload"] = function

    def set_created_fn(self, function: Callable[[Task], Any]) -> None:
        self._callbacks["created"] = function

    def set_data_fn(self, function: Callable[[Task], Any]) -> None:
        self._callbacks["data"] = function

    def set_warning_fn(self, function: Callable[[Task], Any]) -> None:
        self._callbacks["warning"] = function

    def set_status_fn(self, function: Callable[[Task], Any]) -> None:
        self._callbacks["status"] = function

    def set_complete_fn(self, function: Callable[[Task], Any]) -> None:
        self._callbacks["complete"] = function

    def set_exception_fn(self, function: Callable[[Task], Any]) -> None:
        self._callbacks["exception"] = function

    def set_fail_fn(self, function: Callable[[Task], Any]) -> None:
        self._callbacks["fail"] = function

    def clear_fn(self) -> None:
        self._callbacks.clear()

    # -- options, timeout, serializer, errors --------------------------------------------------

    def set_timeout(self, timeout: int) -> None:
        """The longest, in milliseconds, a call waits; negative waits for ever."""
        self._timeout = int(timeout)

    def timeout(self) -> int:
        return self._timeout

    def set_serializer(self, serializer: Any) -> None:
        self._serializer = ser.check(serializer)

    def error_code(self) -> int:
        exc = self._last_error
        return exc.code if isinstance(exc, errors.PygearError) else 0


_EXPECT = {
    SUBMIT_KIND: c.JOB_CREATED,
    STATUS_KIND: c.STATUS_RES,
    UNIQUE_STATUS_KIND: c.STATUS_RES_UNIQUE,
    ECHO_KIND: c.ECHO_RES,
}


def _status_dict(task: Task) -> dict[str, Any]:
    return {
        "is_known": task._known,
        "is_running": task._running,
        "numerator": task._numerator,
        "denominator": task._denominator,
    }
