"""The asyncio Gearman worker: register functions, grab jobs into free slots, run them, report.

Owns :class:`Worker` (registrations, the slot accounting shared by all its server connections,
graceful drain) and :class:`WorkerJob` (one assigned job as a handler sees it). Packets are built
and parsed only by ``gear.protocol``; this module is glue between a :class:`Link` and a
:class:`~gear.protocol.worker.WorkerSession` per server.

Must not import the threaded API, the client or the server.

The grab/sleep cycle of each connection is :class:`gear.protocol.worker.WorkerSession`
(registration on every connect, GRABs pipelined in a slow-start window, the sleep probe after
the first job of a wake-up, PRE_SLEEP/NOOP, docs/protocol.md §3.5); this module decides *when*
to grab, by slots:

* Every GRAB holds a reserved slot until it is answered, so ``concurrency=N`` bounds running
  jobs plus outstanding GRABs across every connection: never more jobs than free slots. A
  connection that wants work without a free slot waits in a round-robin queue and grabs as soon
  as a job finishes; NO_JOB gives its slot back.
* Jobs that were running on a lost connection finish locally but their results go nowhere:
  the server has already re-queued them (docs/protocol.md §3.6).
* A job still running when its function's CAN_DO_TIMEOUT has passed has been failed by the
  server (docs/protocol.md §3.8): nothing of it is sent any more, an ``async def`` handler is
  cancelled and its slot takes the next job (a ``def`` handler's thread cannot be interrupted:
  it keeps its slot until it returns).
* Job cancel (geard's JOB_CANCEL, docs/protocol.md §1.7): with ``job_cancel=True`` (the
  default: one OPTION_REQ per connect; gearmand's ERROR UNKNOWN_OPTION is taken quietly) a job
  the server cancels while it runs here gets ``job.cancelled`` set and ``job.cancel_event``
  (an :class:`asyncio.Event`) set. The handler decides: it may stop and return (whatever it
  sends is dropped by the server). An ``async def`` handler registered with
  ``cancel_task=True`` (or on a worker made with ``cancel_tasks=True``) is cancelled with
  :meth:`asyncio.Task.cancel` instead: it sees CancelledError at its next ``await`` (its
  ``finally`` blocks run; a handler that swallows the CancelledError ends normally), and the
  worker sends WORK_FAIL for it, so the server frees the job. That is off by default because a
  handler cancelled between two side effects may leave work half done. A ``def`` handler
  cannot be interrupted: it polls ``job.cancelled``.
* A handler exception becomes WORK_EXCEPTION with ``"ExcType: message"``. That packet ends the
  job on gearmand, and a WORK_FAIL after it is answered with ERROR JOB_NOT_FOUND
  (docs/protocol.md §1.4, #25), so no WORK_FAIL follows unless ``fail_after_exception=True``
  (for servers that want both).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
import sys
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from gear import constants as c
from gear.aio.connection import AsyncContext, Endpoint, Event, Link, ServerOptions, new_endpoint
from gear.errors import (
    ConfigurationError,
    ConnectionError,
    InvalidDataError,
    NoConnectedServersError,
    TimeoutError,
)
from gear.protocol import messages
from gear.protocol.messages import to_bytes
from gear.protocol.packets import Frame, request
from gear.protocol.worker import GRAB_TYPES, WorkerSession

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger("gear.aio.worker")

Result: TypeAlias = bytes | bytearray | memoryview | str | None
Handler: TypeAlias = Callable[["WorkerJob"], Awaitable[Result] | Result]
H = TypeVar("H", bound=Handler)

_EAGER = sys.version_info >= (3, 12)


class _Done:
    """An already-finished awaitable: what ``send_*`` return when there is nothing to wait for."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover - makes this a generator


_DONE = _Done()


@dataclass(frozen=True)
class Function:
    """A registered function: its handler and optional CAN_DO_TIMEOUT (seconds); ``cancel_task``:
    a JOB_CANCEL cancels its (``async def``) handler's task."""

    name: bytes
    handler: Handler
    timeout: float | None
    is_async: bool
    cancel_task: bool = False


class WorkerJob:
    """A job assigned to this worker, as passed to a handler.

    The ``send_*`` methods queue a packet at once and return an awaitable that waits for the
    socket buffer to drain (flow control for large streams). An ``async def`` handler awaits them;
    a plain ``def`` handler (run in a thread) calls them without ``await``, which is thread-safe.

    ``cancelled`` becomes true when the server cancels the job while it runs (JOB_CANCEL, see
    the module docstring); ``cancel_event`` is an :class:`asyncio.Event` set then, for an
    ``async def`` handler to wait on.
    """

    __slots__ = (
        "_cancel_event",
        "_conn",
        "_expired",
        "_protocol",
        "_worker",
        "arguments",
        "cancelled",
        "finished",
        "handle",
        "name",
        "reducer",
        "unique",
    )

    def __init__(
        self,
        worker: Worker,
        conn: _WorkerConnection,
        handle: bytes,
        name: bytes,
        unique: bytes,
        arguments: bytes,
        reducer: bytes = b"",
    ) -> None:
        self._worker = worker
        self._conn = conn
        # The connection the job was assigned on: after a reconnect the server has re-queued
        # the job (docs/protocol.md §3.6), so nothing of it may go out on the new connection.
        self._protocol = conn.link.protocol
        #: Ran past its function's CAN_DO_TIMEOUT: the server has failed it (Worker._expire).
        self._expired = False
        self.handle = handle
        self.name = name
        self.unique = unique
        self.arguments = arguments
        self.reducer = reducer
        self.finished = False
        #: The server cancelled the job while it ran here (JOB_CANCEL).
        self.cancelled = False
        self._cancel_event: asyncio.Event | None = None  # made by the first cancel_event read

    def __repr__(self) -> str:
        return f"<aio.WorkerJob {self.name!r} handle={self.handle!r}>"

    @property
    def cancel_event(self) -> asyncio.Event:
        """An :class:`asyncio.Event` set when the server cancels the job (read it on the loop)."""
        event = self._cancel_event
        if event is None:
            event = self._cancel_event = asyncio.Event()
            if self.cancelled:
                event.set()
        return event

    def _mark_cancelled(self) -> None:
        self.cancelled = True
        if self._cancel_event is not None:
            self._cancel_event.set()

    def _send(self, packet: bytes) -> Awaitable[None]:
        protocol = self._protocol
        if protocol is None:
            return _DONE
        worker = self._worker
        if threading.get_ident() != worker._loop_thread:
            loop = worker._loop
            assert loop is not None
            try:
                loop.call_soon_threadsafe(protocol.send, packet)
            except RuntimeError:
                pass  # the loop is closed: the worker stopped without waiting for this thread
            return _DONE
        if not protocol.send(packet):
            # The connection is gone; the server re-queued the job (docs/protocol.md §3.6).
            return _DONE
        return protocol.drained() if protocol.write_paused else _DONE

    def _check_open(self) -> None:
        if self.finished:
            raise ConfigurationError(f"{self!r} was already completed")

    def send_data(self, data: bytes | str) -> Awaitable[None]:
        """WORK_DATA: a chunk of output the client receives as it is sent."""
        self._check_open()
        return self._send(messages.work_data(self.handle, to_bytes(data, "data")))

    def send_warning(self, data: bytes | str) -> Awaitable[None]:
        """WORK_WARNING."""
        self._check_open()
        return self._send(messages.work_warning(self.handle, to_bytes(data, "data")))

    def send_status(self, numerator: int, denominator: int) -> Awaitable[None]:
        """WORK_STATUS: progress as ``numerator`` out of ``denominator``."""
        self._check_open()
        return self._send(messages.work_status(self.handle, numerator, denominator))

    def send_complete(self, data: bytes | str = b"") -> Awaitable[None]:
        """End the job now with WORK_COMPLETE; the handler's return value is then ignored."""
        return self._finish(messages.work_complete(self.handle, to_bytes(data, "data")))

    def send_fail(self) -> Awaitable[None]:
        """End the job now with WORK_FAIL (no NUL after the handle, docs/protocol.md §1.3)."""
        return self._finish(messages.work_fail(self.handle))

    def send_exception(self, data: bytes | str) -> Awaitable[None]:
        """End the job now with WORK_EXCEPTION carrying ``data``."""
        packet = messages.work_exception(self.handle, to_bytes(data, "data"))
        if self._worker.fail_after_exception:
            packet += messages.work_fail(self.handle)
        return self._finish(packet)

    def _finish(self, packet: bytes) -> Awaitable[None]:
        self._check_open()
        self.finished = True
        return self._send(packet)


class _WorkerConnection:
    """One server connection of a Worker: a :class:`Link`'s handler around a WorkerSession."""

    def __init__(self, worker: Worker, endpoint: Endpoint) -> None:
        self.worker = worker
        self.endpoint = endpoint
        self.link = Link.for_owner(endpoint, self, worker)
        self.session = WorkerSession(
            worker.client_id, grab_type=worker.grab_type, max_window=worker.grab_window,
            job_cancel=worker.job_cancel, probe_sleep=True,
        )
        self.queued = False  # in the worker's wanting queue
        self.jobs: dict[bytes, WorkerJob] = {}

    def send(self, packet: bytes) -> None:
        self.link.send(packet)

    # -- LinkHandler -------------------------------------------------------------------------

    def link_up(self, link: Link) -> None:
        worker = self.worker
        session = self.session
        session.connection_made((f.name, f.timeout) for f in worker._functions.values())
        link.send(session.data_to_send())
        worker._connection_changed()
        worker._want(self)

    def link_down(self, link: Link, error: ConnectionError) -> None:
        worker = self.worker
        outstanding = self.session.connection_lost()
        # Running jobs keep their slots until their handlers return; their results are dropped.
        self.jobs.clear()
        worker._connection_changed()
        worker._release(outstanding)

    def link_event(self, link: Link, event: Event) -> None:
        if not isinstance(event, Frame):
            log.warning("unexpected text line from %s: %r", self.endpoint, event.line[:80])
            return
        ptype = event.ptype
        worker = self.worker
        session = self.session
        if ptype in messages.ASSIGN_TYPES:
            a = session.job_assigned(ptype, event.args())
            job = WorkerJob(worker, self, a.handle, a.function, a.unique, a.data, a.reducer)
            self.jobs[a.handle] = job
            running = worker._start_job(job)  # the reserved slot now belongs to the job
            data = session.data_to_send()
            if data:
                # The sleep probe (the first job of a wake-up): after the job's WORK_COMPLETE
                # if the handler already ended, so the result leaves first.
                self.send(data)
            else:
                worker._want(self)  # more may be queued: the session's window may have grown
            if running and link.protocol is not None:
                # Write the GRABs after the handler's first step, so that a fast handler's
                # WORK_COMPLETE shares their write.
                link.protocol.defer_flush()
        elif ptype == c.NO_JOB:
            if session.no_job():
                data = session.data_to_send()  # PRE_SLEEP once no GRAB is left in flight
                if data:
                    self.send(data)
                worker._release()
        elif ptype == c.NOOP:
            session.noop()
            worker._want(self)
        elif ptype == c.JOB_CANCEL:
            cancelled = self.jobs.get(event.body)
            if cancelled is not None:
                worker._cancel(cancelled)
        elif ptype == c.ERROR:
            code, text = event.args()
            if session.option_refused(code):
                log.info("%s does not send JOB_CANCEL (ERROR UNKNOWN_OPTION); jobs run to "
                         "their end", self.endpoint)
            elif session.grab_refused(code):
                log.warning("%s does not know %s; using GRAB_JOB",
                            self.endpoint, c.types[worker.grab_type])
                worker._release()
                worker._want(self)
            else:
                # Typically JOB_NOT_FOUND for a result sent after the server re-queued the job
                # (CAN_DO_TIMEOUT expiry, docs/protocol.md §3.8).
                log.warning("ERROR from %s: %s %s", self.endpoint,
                            code.decode("utf-8", "replace"), text.decode("utf-8", "replace"))
        elif ptype == c.OPTION_RES and session.option_accepted(event.body):
            log.debug("%s sends JOB_CANCEL", self.endpoint)
        else:
            log.debug("ignoring %r from %s", event, self.endpoint)

    @property
    def can_grab(self) -> bool:
        return self.session.can_grab and self.link.connected

    def grab(self) -> None:
        self.send(self.session.grab())


class Worker(AsyncContext):
    """An asyncio Gearman worker.

    Register functions with :meth:`function` (a decorator) or :meth:`register`, add servers, then
    ``await worker.run(concurrency=N)``; :meth:`stop` ends it (draining by default). Handlers are
    ``async def`` (run on the loop) or plain ``def`` (run in a thread pool of ``concurrency``
    threads, so they never block the loop). A handler returns the result (bytes, str or None);
    an exception becomes WORK_EXCEPTION.

    ``job_cancel``: opt in to geard's JOB_CANCEL on every connect (``job.cancelled``);
    ``cancel_tasks``: the default of :meth:`register`'s ``cancel_task`` (module docstring).
    """

    def __init__(
        self,
        client_id: str | bytes | None = None,
        *,
        grab: str = "uniq",
        grab_window: int = 16,
        fail_after_exception: bool = False,
        job_cancel: bool = True,
        cancel_tasks: bool = False,
        connect_timeout: float = 10.0,
        reconnect_min: float = 0.05,
        reconnect_max: float = 5.0,
    ) -> None:
        if grab not in GRAB_TYPES:
            raise ConfigurationError(f"grab must be one of {sorted(GRAB_TYPES)}, not {grab!r}")
        self.client_id = to_bytes(client_id, "client_id") if client_id else b""
        self.grab_type = GRAB_TYPES[grab]
        if grab_window < 1:
            raise ConfigurationError("grab_window must be at least 1")
        self.grab_window = grab_window
        self.fail_after_exception = fail_after_exception
        self.job_cancel = job_cancel
        self.cancel_tasks = cancel_tasks
        self.connect_timeout = connect_timeout
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.concurrency = 0
        self._functions: dict[bytes, Function] = {}
        self._connections: list[_WorkerConnection] = []
        self._wanting: deque[_WorkerConnection] = deque()
        self._free = 0
        self._running: dict[WorkerJob, asyncio.Task[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._started = False
        self._stopping = False
        self._stopped: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._any_up: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"<aio.Worker {self.client_id!r} functions={sorted(self._functions)}>"

    async def _exit(self, clean: bool) -> None:
        await self.stop(drain=clean)

    # -- configuration -----------------------------------------------------------------------

    def add_server(
        self, host: str, port: int = 4730, **options: Unpack[ServerOptions]
    ) -> None:
        """Add a server (same options as :meth:`gear.aio.Client.add_server`)."""
        endpoint = new_endpoint((c.endpoint for c in self._connections), host, port, **options)
        conn = _WorkerConnection(self, endpoint)
        self._connections.append(conn)
        if self._started and not self._stopping:
            conn.link.start()

    def register(
        self, name: str | bytes, handler: Handler, *, timeout: float | None = None,
        cancel_task: bool | None = None,
    ) -> None:
        """Register ``handler`` for ``name``; ``timeout`` (seconds) sends CAN_DO_TIMEOUT;
        ``cancel_task`` (default: the worker's ``cancel_tasks``): a JOB_CANCEL cancels an
        ``async def`` handler's task (module docstring)."""
        name_b = to_bytes(name, "name")
        if timeout is not None:
            messages.timeout_ms(timeout)  # validates
        is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
        )
        if cancel_task is None:
            cancel_task = self.cancel_tasks
        self._functions[name_b] = Function(name_b, handler, timeout, is_async,
                                           cancel_task and is_async)
        for conn in self._connections:
            if conn.link.send(messages.can_do(name_b, timeout)) and self._started:
                # CAN_DO does not wake a sleeping connection (docs/protocol.md §3.4), and jobs
                # of the new function may be queued already: ask.
                conn.session.wake()
                self._want(conn)

    def unregister(self, name: str | bytes) -> None:
        """Forget ``name`` and send CANT_DO.

        The server re-queues its jobs held here (docs/protocol.md §1.4).
        """
        name_b = to_bytes(name, "name")
        if self._functions.pop(name_b, None) is not None:
            for conn in self._connections:
                conn.send(request(c.CANT_DO, name_b))

    def function(
        self, name: str | bytes | None = None, *, timeout: float | None = None,
        cancel_task: bool | None = None,
    ) -> Callable[[H], H]:
        """Decorator form of :meth:`register`; the name defaults to the handler's ``__name__``."""

        def decorate(handler: H) -> H:
            self.register(name if name is not None else handler.__name__, handler,
                          timeout=timeout, cancel_task=cancel_task)
            return handler

        return decorate

    @property
    def functions(self) -> dict[bytes, Function]:
        return dict(self._functions)

    @property
    def running_jobs(self) -> int:
        return len(self._running)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, concurrency: int = 1) -> None:
        """Connect and start grabbing; returns at once (see :meth:`run`)."""
        if self._started:
            raise ConfigurationError("the worker is already running")
        if concurrency < 1:
            raise ConfigurationError("concurrency must be at least 1")
        if not self._connections:
            raise NoConnectedServersError("no servers added")
        self._started = True
        self.concurrency = concurrency
        self._free = concurrency
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopped = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._any_up = asyncio.Event()
        for conn in self._connections:
            conn.link.start()

    async def run(self, concurrency: int = 1) -> None:
        """Run with at most ``concurrency`` jobs at a time until :meth:`stop` has finished."""
        await self.start(concurrency)
        assert self._stopped is not None
        await self._stopped.wait()

    async def wait_for_server(self, timeout: float | None = None) -> None:
        """Wait until at least one server connection is registered."""
        if self._any_up is None:
            raise ConfigurationError("the worker is not running")
        try:
            await asyncio.wait_for(self._any_up.wait(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no server connected within {timeout}s") from None

    async def stop(self, drain: bool = True, timeout: float | None = 30.0) -> None:
        """Stop grabbing; with ``drain`` wait up to ``timeout`` for running jobs, then close.

        Jobs still running after that are cancelled (``def`` handlers cannot be interrupted and
        finish in their thread, unreported); the server re-queues every job it does not get a
        result for (docs/protocol.md §3.6).
        """
        if not self._started or self._stopping:
            if self._stopped is not None:
                await self._stopped.wait()
            return
        self._stopping = True
        self._wanting.clear()
        assert self._idle is not None and self._stopped is not None
        if drain:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except asyncio.TimeoutError:
                log.warning("%d jobs still running after %ss; abandoning them",
                            len(self._running), timeout)
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(conn.link.close() for conn in self._connections))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._stopped.set()

    # -- slots -------------------------------------------------------------------------------

    def _connection_changed(self) -> None:
        if self._any_up is None:
            return
        if any(conn.link.connected for conn in self._connections):
            self._any_up.set()
        else:
            self._any_up.clear()

    def _want(self, conn: _WorkerConnection) -> None:
        if not conn.queued and not self._stopping and conn.can_grab:
            conn.queued = True
            self._wanting.append(conn)
        self._pump()

    def _pump(self) -> None:
        """Send GRABs while slots are free, round robin over the connections that want work."""
        wanting = self._wanting
        while self._free > 0 and wanting:
            conn = wanting.popleft()
            conn.queued = False
            if self._stopping or not conn.can_grab:
                continue
            self._free -= 1
            assert self._idle is not None
            self._idle.clear()
            conn.grab()
            if conn.can_grab:
                conn.queued = True
                wanting.append(conn)

    def _release(self, slots: int = 1) -> None:
        self._free += slots
        if self._free >= self.concurrency:
            assert self._idle is not None
            self._idle.set()
        self._pump()

    # -- running jobs ------------------------------------------------------------------------

    def _start_job(self, job: WorkerJob) -> bool:
        """Run the job's handler in a task; False if it already finished (eager start)."""
        assert self._loop is not None
        if _EAGER:
            # Python 3.12+: the handler runs up to its first real suspension right here, so a
            # handler that never waits completes without a loop iteration in between.
            task = asyncio.Task(  # type: ignore[call-arg]
                self._run_job(job), loop=self._loop, eager_start=True
            )
        else:
            task = self._loop.create_task(self._run_job(job))
        if task.done():
            return False
        self._running[job] = task
        return True

    async def _run_job(self, job: WorkerJob) -> None:
        function = self._functions.get(job.name)
        result: Result = None
        error: Exception | None = None
        timer: asyncio.TimerHandle | None = None
        try:
            if function is None:
                raise LookupError(f"no handler registered for {job.name!r}")
            if function.timeout:
                assert self._loop is not None
                timer = self._loop.call_later(
                    function.timeout, self._expire, job, function, asyncio.current_task()
                )
            if function.is_async:
                result = await function.handler(job)  # type: ignore[misc]
            else:
                assert self._loop is not None
                if self._executor is None:
                    # At most `concurrency` handlers run at once, so that many threads suffice.
                    self._executor = concurrent.futures.ThreadPoolExecutor(
                        self.concurrency, thread_name_prefix="gear.aio.worker"
                    )
                call: Callable[[], Any] = functools.partial(function.handler, job)
                result = await self._loop.run_in_executor(self._executor, call)
                if inspect.isawaitable(result):
                    result = await result
        except asyncio.CancelledError:
            if job.cancelled and not job._expired and not self._stopping:
                # Cancelled by _cancel (JOB_CANCEL): WORK_FAIL frees the server's job.
                if not job.finished:
                    job.send_fail()
                self._job_finished(job)
                return
            self._job_finished(job)
            if job._expired:
                return  # cancelled by _expire: nothing is sent, the worker goes on
            raise  # stop(): nothing is sent; the server re-queues the job on disconnect
        except Exception as exc:
            if job._expired:
                log.info("job %r failed after its CAN_DO_TIMEOUT: %s", job, exc)
            else:
                log.exception("job %r failed", job)
            error = exc
        finally:
            if timer is not None:
                timer.cancel()
        # The job's last packet and the GRAB for the slot it frees leave in one write, now,
        # rather than one loop iteration (and one syscall) apart.
        protocol = job._protocol
        if protocol is not None:
            protocol.cork()
        try:
            if not job.finished:
                self._report(job, result, error)
            self._job_finished(job)
        finally:
            if protocol is not None:
                protocol.uncork()

    def _expire(
        self, job: WorkerJob, function: Function, task: asyncio.Task[Any] | None
    ) -> None:
        """The job ran past its function's CAN_DO_TIMEOUT, so the server has failed it
        (docs/protocol.md §3.8; it started its timer when it sent the job, before ours).

        Nothing of the job may be sent any more. An ``async def`` handler is cancelled (it
        sees CancelledError) and its slot goes to the next job; a ``def`` handler cannot be
        interrupted: its thread runs on, keeping the slot, and its result is dropped.
        """
        if job.finished or self._running.get(job) is not task:
            return
        log.warning("job %r ran past its CAN_DO_TIMEOUT of %ss; the server has failed it%s",
                    job, function.timeout, ", cancelling it" if function.is_async else "")
        job._expired = True
        job._protocol = None  # WorkerJob._send drops whatever the handler still sends
        if function.is_async and task is not None:
            task.cancel()

    def _cancel(self, job: WorkerJob) -> None:
        """JOB_CANCEL for a job running here: flag it, and cancel its task if its function
        asked for that (module docstring). Nothing is dropped locally: the server ignores the
        job's later packets, and its end packet frees the server's slot."""
        if job.finished or job.cancelled:
            return
        job._mark_cancelled()
        function = self._functions.get(job.name)
        if function is not None and function.cancel_task:
            task = self._running.get(job)
            if task is not None:
                task.cancel()

    def _job_finished(self, job: WorkerJob) -> None:
        job._conn.jobs.pop(job.handle, None)
        self._running.pop(job, None)
        self._release()

    @staticmethod
    def _report(job: WorkerJob, result: Result, error: Exception | None) -> None:
        if error is None:
            try:
                data = b"" if result is None else to_bytes(result, "result")
            except InvalidDataError as exc:
                log.error("job %r returned a %s", job, type(result).__name__)
                error = exc
            else:
                job.send_complete(data)
                return
        job.send_exception(f"{type(error).__name__}: {error}")
