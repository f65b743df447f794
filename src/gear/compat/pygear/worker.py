"""pygear's ``Worker``: ``add_function(name, timeout, fn)`` and ``work()``, one job per call.

The methods are pygear 0.9's (worker.c). ``work()`` grabs one job, calls its function with a
:class:`~gear.compat.pygear.job.Job` and reports the outcome, as libgearman's
``gearman_worker_work`` does through pygear's function mapper:

* the function's return value goes through the serializer as WORK_COMPLETE (unless the function
  already finished the job itself);
* an exception is printed to stderr and sent as WORK_EXCEPTION holding the serialized
  ``(repr(type), args, formatted traceback)`` (WORK_FAIL if that cannot be serialized);
  ``work()`` then returns normally, as pygear's did;
* Ctrl-C (any BaseException that is not an Exception) while a job runs closes the connections,
  so the server hands the job to another worker, and propagates.

The timeout is libgearman's: 10000 ms by default, after which the worker just grabs again; once
``set_timeout`` is called (libgearman then sets GEARMAN_WORKER_TIMEOUT_RETURN), ``work()`` raises
TIMEOUT when no job came in that many milliseconds, which is the seed's "yield" loop.

The grab/sleep cycle is gear.protocol.worker's WorkerSession, one per server: GRAB_JOB_UNIQ,
NO_JOB, PRE_SLEEP, NOOP, re-registration after a reconnect (with gear.protocol.backoff's
delays). Function timeouts are sent as CAN_DO_TIMEOUT (seconds, as gear.protocol.messages
encodes them). A job assigned by one server while another's was running waits for the next
``work()`` call.

May import gear.protocol, gear.net, gear.errors and gear.constants; not the server, the threaded
API or gear.aio.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections import deque
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
from gear.compat.pygear.job import Job
from gear.errors import GearmanError
from gear.protocol import messages
from gear.protocol.backoff import Backoff
from gear.protocol.messages import JobAssignment
from gear.protocol.packets import request
from gear.protocol.worker import ServerError, WorkerSession

#: libgearman's GEARMAN_WORKER_WAIT_TIMEOUT, the default timeout (ms).
DEFAULT_TIMEOUT = 10000


class _Conn:
    """One server of a worker: socket, session, reconnect delays."""

    __slots__ = ("backoff", "link", "retry_at", "session")

    def __init__(self, address: Address, client_id: bytes) -> None:
        self.link = Link(address)
        self.session = WorkerSession(client_id, c.GRAB_JOB_UNIQ)
        self.backoff = Backoff()
        self.retry_at = 0.0

    def fileno(self) -> int:
        return self.link.fileno()

    def drop(self) -> None:
        self.link.close()
        self.session.connection_lost()


class Worker(Endpoint):
    """pygear.Worker (module docstring)."""

    OPTION_NAMES = ("allocated", "non_blocking", "packet_init", "grab_job_in_use",
                    "pre_sleep_in_use", "job_in_use", "change", "grab_uniq", "timeout_return",
                    "grab_all", "max")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__()
        self._conns: list[_Conn] = []
        #: wire name -> (timeout in seconds or None, the function or None for register()).
        self._functions: dict[bytes, tuple[int | None, Callable[[Job], Any] | None]] = {}
        self._timeout = DEFAULT_TIMEOUT
        self._options["grab_uniq"] = True
        self._serializer: Any = ser.DEFAULT
        self._client_id = b""
        self._namespace = b""
        self._ready: deque[tuple[_Conn, JobAssignment]] = deque()

    # -- servers -------------------------------------------------------------------------------

    def _add(self, address: Address) -> None:
        super()._add(address)
        self._conns.append(_Conn(address, self._client_id))

    def remove_servers(self) -> None:
        for conn in self._conns:
            conn.drop()
        self._addresses.clear()
        self._conns.clear()
        self._ready.clear()

    def clone(self) -> Worker:
        """A new worker with the same servers, functions, timeout, options and serializer."""
        other = Worker()
        for address in self._addresses:
            other._add(address)
        other._functions = dict(self._functions)
        other._timeout = self._timeout
        other._options = dict(self._options)
        other._serializer = self._serializer
        other._namespace = self._namespace
        return other

    # -- functions -----------------------------------------------------------------------------

    def _wire(self, name: str | bytes) -> bytes:
        return self._namespace + ser.text(name)

    def add_function(self, function_name: str, timeout: int,
                     function: Callable[[Job], Any]) -> None:
        """Register ``function`` for ``function_name``; ``timeout`` seconds (0: none)."""
        self._set_function(function_name, timeout, function)

    def register(self, function_name: str, timeout: int) -> None:
        """CAN_DO without a function (a job of it then fails: see :meth:`grab_job`)."""
        self._set_function(function_name, timeout, None)

    def _set_function(self, name: str, timeout: int, fn: Callable[[Job], Any] | None) -> None:
        wire = self._wire(name)
        seconds = int(timeout) if timeout and int(timeout) > 0 else None
        self._functions[wire] = (seconds, fn)
        self._broadcast(messages.can_do(wire, seconds))

    def unregister(self, function_name: str) -> None:
        wire = self._wire(function_name)
        self._functions.pop(wire, None)
        self._broadcast(request(c.CANT_DO, wire))

    def unregister_all(self) -> None:
        self._functions.clear()
        self._broadcast(request(c.RESET_ABILITIES))

    def function_exists(self, function_name: str) -> bool:
        return self._wire(function_name) in self._functions

    def _broadcast(self, packet: bytes) -> None:
        """Tell every connected server now (a later connect registers everything anyway)."""
        for conn in self._conns:
            if conn.link.connected:
                try:
                    conn.link.send(packet)
                except errors.PygearError:
                    conn.drop()
                else:
                    conn.session.wake()

    # -- the work loop -------------------------------------------------------------------------

    def _registration(self) -> list[tuple[bytes, int | None]]:
        return [(name, timeout) for name, (timeout, _) in self._functions.items()]

    def _connect_all(self, deadline: float | None) -> int:
        """Connect every server not connected and not backing off; how many were tried."""
        now = time.monotonic()
        tried = 0
        for conn in self._conns:
            if conn.link.connected or now < conn.retry_at:
                continue
            tried += 1
            try:
                conn.link.connect(deadline)
            except errors.COULD_NOT_CONNECT as exc:
                self._note(exc)
                conn.retry_at = time.monotonic() + conn.backoff.next_delay()
                continue
            conn.backoff.reset()
            conn.retry_at = 0.0
            conn.session.client_id = self._client_id
            conn.session.connection_made(self._registration())
        return tried

    def _send(self, conn: _Conn, data: bytes) -> None:
        try:
            conn.link.send(data)
        except errors.LOST_CONNECTION:
            conn.session.connection_lost()
            raise

    def _next_job(self, deadline: float | None) -> tuple[_Conn, JobAssignment]:
        """Grab until a job comes (TIMEOUT after ``deadline`` if timeout_return is set)."""
        tried = 0
        while not self._ready:
            tried += self._connect_all(deadline)
            live = [conn for conn in self._conns if conn.link.connected]
            if not live:
                if tried:
                    raise errors.COULD_NOT_CONNECT(
                        f"COULD_NOT_CONNECT: no server of {[str(a) for a in self._addresses]} "
                        "accepted")
                # Every server is backing off: wait for the first retry (or the deadline).
                retry = min(conn.retry_at for conn in self._conns)
                until = retry if deadline is None else min(retry, deadline)
                if wait_readable([], until) is None and until != retry:
                    if self._options["timeout_return"]:
                        raise errors.TIMEOUT(f"TIMEOUT: no server within {self._timeout} ms")
                    deadline = deadline_of(self._timeout)
                continue
            for conn in live:
                session = conn.session
                data = session.data_to_send()
                if session.can_grab:
                    data += session.grab()
                if data:
                    try:
                        self._send(conn, data)
                    except errors.LOST_CONNECTION as exc:
                        self._note(exc)
            live = [conn for conn in live if conn.link.connected]
            ready = wait_readable(live, deadline)
            if ready is None:
                if self._options["timeout_return"]:
                    raise errors.TIMEOUT(f"TIMEOUT: no job within {self._timeout} ms")
                deadline = deadline_of(self._timeout)
                continue
            for conn in ready:
                self._receive(conn)
        return self._ready.popleft()

    def _receive(self, conn: _Conn) -> None:
        data = conn.link.recv()
        if data is None:
            return
        if not data:
            self._note(errors.LOST_CONNECTION(f"LOST_CONNECTION: {conn.link.address} closed"))
            conn.drop()
            return
        try:
            conn.session.receive_data(data)
        except GearmanError as exc:
            self._note(errors.INVALID_PACKET(f"INVALID_PACKET: {exc}"))
            conn.drop()
            return
        for event in conn.session.events_received():
            if isinstance(event, JobAssignment):
                self._ready.append((conn, event))
            elif isinstance(event, ServerError) and not event.grab_refused:
                self._note(errors.SERVER_ERROR(
                    f"SERVER_ERROR: {event.code.decode(errors='replace')} "
                    f"{event.text.decode(errors='replace')}"))

    def _check(self) -> None:
        # Servers first: pygear raises NO_SERVERS for a worker with neither.
        if not self._conns:
            raise errors.NO_SERVERS("NO_SERVERS")
        if not self._functions:
            raise errors.NO_REGISTERED_FUNCTIONS("NO_REGISTERED_FUNCTIONS")

    def _job(self, conn: _Conn, assignment: JobAssignment) -> Job:
        link = conn.link
        function = assignment.function
        if self._namespace and function.startswith(self._namespace):
            function = function[len(self._namespace):]

        def send(packet: bytes) -> None:
            if link.sock is None:
                raise errors.LOST_CONNECTION("LOST_CONNECTION: the job's server is gone")
            self._send(conn, packet)

        return Job._assigned(assignment, self._serializer, send, function)

    def grab_job(self) -> Job:
        """Grab one job and return it without running anything (the caller reports on it)."""
        self._check()
        conn, assignment = self._next_job(deadline_of(self._timeout))
        return self._job(conn, assignment)

    def work(self) -> None:
        """Grab one job and run its function (module docstring)."""
        self._check()
        conn, assignment = self._next_job(deadline_of(self._timeout))
        job = self._job(conn, assignment)
        entry = self._functions.get(assignment.function)
        fn = entry[1] if entry is not None else None
        if fn is None:
            job.send_fail()
            return
        try:
            result = fn(job)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            self._report_exception(job, exc)
            return
        except BaseException:
            self._drop_all()
            raise
        if job._finished:
            return
        try:
            data = ser.dumps(self._serializer, result)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            job.send_fail()
            return
        job._report(messages.work_complete(job._handle, data), True)

    def _report_exception(self, job: Job, exc: Exception) -> None:
        if job._finished:
            return
        # The traceback from the function's own frame on, as pygear's (its caller was C).
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        details = (repr(type(exc)), list(exc.args), traceback.format_tb(tb))
        try:
            data = ser.dumps(self._serializer, details)
        except Exception:
            job.send_fail()
            return
        job._report(messages.work_exception(job._handle, data), True)

    def _drop_all(self) -> None:
        for conn in self._conns:
            conn.drop()
        self._ready.clear()

    def wait(self) -> None:
        """Wait for activity from the servers once (TIMEOUT if none within the timeout)."""
        self._connect_all(deadline_of(self._timeout))
        live = [conn for conn in self._conns if conn.link.connected]
        if not live:
            raise errors.NO_ACTIVE_FDS("NO_ACTIVE_FDS")
        ready = wait_readable(live, deadline_of(self._timeout))
        if ready is None:
            raise errors.TIMEOUT("TIMEOUT")
        for conn in ready:
            self._receive(conn)

    def job_free_all(self) -> None:
        """Forget jobs grabbed but not run yet (they stay with their servers' connections)."""
        self._ready.clear()

    def echo(self, workload: str | bytes) -> None:
        """ECHO_REQ to every server; ECHO_DATA_CORRUPTION if one answers something else."""
        if not self._conns:
            raise errors.NO_SERVERS("NO_SERVERS")
        data = ser.text(workload)
        for address in self._addresses:
            link = Link(address)
            deadline = deadline_of(self._timeout)
            link.connect(deadline)
            try:
                link.send(request(c.ECHO_REQ, data), deadline)
                reply = _read_packet(link, deadline)
            finally:
                link.close()
            if reply != (c.ECHO_RES, data):
                raise errors.ECHO_DATA_CORRUPTION("ECHO_DATA_CORRUPTION")

    # -- identity, options, timeout, serializer, errors ----------------------------------------

    def id(self) -> int:
        return id(self)

    def set_identifier(self, id: str | bytes) -> None:
        """SET_CLIENT_ID, now and after every reconnect."""
        self._client_id = ser.text(id)
        self._broadcast(request(c.SET_CLIENT_ID, self._client_id))
        for conn in self._conns:
            conn.session.client_id = self._client_id

    def set_namespace(self, namespace_key: str | bytes) -> None:
        """libgearman's namespace: a prefix on every function name registered after this."""
        self._namespace = ser.text(namespace_key)

    def namespace(self) -> str | None:
        return ser.decoded(self._namespace) if self._namespace else None

    def set_timeout(self, timeout: int) -> None:
        """Milliseconds ``work()`` waits for a job before TIMEOUT (negative: for ever)."""
        self._timeout = int(timeout)
        self._options["timeout_return"] = True

    def timeout(self) -> int:
        return self._timeout

    def set_serializer(self, serializer: Any) -> None:
        self._serializer = ser.check(serializer)


def _read_packet(link: Link, deadline: float | None) -> tuple[int, bytes]:
    from gear.protocol.packets import Decoder, Frame

    decoder = Decoder(text=False)
    while True:
        if wait_readable([link], deadline) is None:
            raise errors.TIMEOUT("TIMEOUT")
        data = link.recv()
        if data is None:
            continue
        if not data:
            raise errors.LOST_CONNECTION(f"LOST_CONNECTION: {link.address} closed")
        for frame in decoder.feed(data):
            if isinstance(frame, Frame):
                return frame.ptype, frame.body
