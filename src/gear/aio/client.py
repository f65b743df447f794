"""The asyncio Gearman client: submit jobs, stream their updates, await their results.

Owns :class:`Client` (several servers, round robin with failover, reconnects), :class:`Job` (one
submission as the caller sees it) and :class:`Update` (a WORK_DATA / WORK_WARNING / WORK_STATUS
as it arrived). What a reply or a WORK_* packet means, which request it answers and which jobs a
handle feeds is decided by :class:`gear.protocol.client.ClientSession` (one per connection);
this module is the glue that turns the session's calls into Job state and futures.

Must not import the threaded API, the worker or the server.

Semantics (docs/protocol.md):

* Replies to requests (JOB_CREATED or ERROR to a SUBMIT, STATUS_RES*, OPTION_RES, ECHO_RES) are
  matched strictly in send order per connection, as libgearman does (§1.3): gearmand answers
  one connection's packets in order.
* ``OPTION_REQ exceptions`` is sent on every (re)connect before anything else, so failed jobs
  arrive as WORK_EXCEPTION with their data instead of a bare WORK_FAIL (§3.9).
* Background jobs always carry a unique (uuid4 hex when the caller gives none): an empty unique is
  lost or refused by persistent queues (§4.1). Foreground jobs send the caller's unique or an
  empty one, which never coalesces (§3.2).
* Coalescing is the session's one rule: a foreground job whose (function, unique) is already live
  on one of this client's connections is attached to it locally instead of being submitted
  again, so every :class:`Job` of that handle gets every update and the result once. The unique
  ``-`` coalesces on (function, workload), as gearmand does.
* A lost connection fails every job in flight on it with :class:`~gear.errors.ConnectionError`
  (the server forgets foreground jobs whose client left, §3.7), so the caller can resubmit.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from gear import constants as c
from gear.aio.connection import (
    AsyncContext,
    Endpoint,
    Event,
    Link,
    ServerOptions,
    describe,
    new_endpoint,
)
from gear.errors import (
    ConfigurationError,
    ConnectionError,
    JobExceptionError,
    JobFailedError,
    NoConnectedServersError,
    ProtocolError,
    ServerError,
    TimeoutError,
)
from gear.protocol import messages
from gear.protocol.client import ClientSession
from gear.protocol.messages import NORMAL, JobStatus, coalescing_key, int_or_zero, to_bytes
from gear.protocol.packets import Frame, request

__all__ = ["Client", "Job", "Update", "to_bytes"]

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger("gear.aio.client")

UpdateKind = Literal["data", "warning", "status"]

#: Replies that may leave an :class:`~gear.protocol.client.Unsolicited` event to log.
_REPLY_PACKETS = frozenset({c.ERROR, c.STATUS_RES, c.STATUS_RES_UNIQUE, c.ECHO_RES})


class Update(NamedTuple):
    """One intermediate packet of a job: ``kind`` is "data", "warning" or "status".

    For "status", ``numerator``/``denominator`` hold the parsed values and ``data`` is empty.
    """

    kind: UpdateKind
    data: bytes = b""
    numerator: int = 0
    denominator: int = 0


class Job:
    """A submitted job. Created by :meth:`Client.submit`; never built by callers.

    ``handle`` is set once the server answered JOB_CREATED. For a foreground job, updates arrive
    through :meth:`updates` and the outcome through :meth:`result`. Every update is kept on the
    job (``job.data`` style) so an iterator started late still sees all of them.
    """

    __slots__ = (
        "_create_waiters",
        "_created",
        "_done_waiters",
        "_error",
        "_finished",
        "_result",
        "_update_waiters",
        "_updates",
        "arguments",
        "background",
        "denominator",
        "handle",
        "name",
        "numerator",
        "priority",
        "server",
        "unique",
        "when",
    )

    def __init__(
        self,
        name: bytes,
        arguments: bytes,
        unique: bytes,
        background: bool,
        priority: int,
        when: int | None,
    ) -> None:
        self.name = name
        self.arguments = arguments
        self.unique = unique
        self.background = background
        self.priority = priority
        self.when = when
        self.handle: bytes | None = None
        self.server: Endpoint | None = None
        self.numerator = 0
        self.denominator = 0
        self._created = False
        self._finished = False
        self._result: bytes | None = None
        self._error: BaseException | None = None
        self._create_waiters: list[asyncio.Future[None]] | None = None
        self._done_waiters: list[asyncio.Future[None]] | None = None
        self._update_waiters: list[asyncio.Future[None]] | None = None
        self._updates: list[Update] | None = None

    def __repr__(self) -> str:
        state = "done" if self._finished else ("running" if self._created else "submitting")
        return f"<aio.Job {self.name!r} handle={self.handle!r} {state}>"

    # -- public -------------------------------------------------------------------------------

    def done(self) -> bool:
        """True once the job completed, failed, or was lost with its connection."""
        return self._finished

    @property
    def failed(self) -> bool:
        return self._finished and self._error is not None

    @property
    def error(self) -> BaseException | None:
        """Why the job failed (JobFailedError, JobExceptionError, ConnectionError), if it did."""
        return self._error

    async def result(self, timeout: float | None = None) -> bytes:
        """Wait for WORK_COMPLETE and return its data.

        Raises :class:`~gear.errors.JobExceptionError` (WORK_EXCEPTION, with ``.data``),
        :class:`~gear.errors.JobFailedError` (WORK_FAIL), :class:`~gear.errors.ConnectionError`
        (the connection was lost), or :class:`~gear.errors.TimeoutError`. A background job has
        no result: it is :class:`~gear.errors.ConfigurationError` to ask. Cancelling the waiting
        task only stops that wait: the job and its connection are unaffected.
        """
        if self.background:
            raise ConfigurationError("a background job has no result")
        if not self._finished:
            fut = asyncio.get_running_loop().create_future()
            if self._done_waiters is None:
                self._done_waiters = []
            self._done_waiters.append(fut)
            try:
                await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no result for {self!r} after {timeout}s") from None
            finally:
                if not fut.done() and self._done_waiters is not None:
                    self._done_waiters.remove(fut)
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    async def updates(self) -> AsyncIterator[Update]:
        """Yield every WORK_DATA / WORK_WARNING / WORK_STATUS in order; ends when the job ends.

        It ends normally however the job ended: await :meth:`result` for the outcome.
        """
        index = 0
        while True:
            updates = self._updates
            if updates is not None:
                while index < len(updates):
                    yield updates[index]
                    index += 1
            if self._finished or self.background:
                return
            fut = asyncio.get_running_loop().create_future()
            if self._update_waiters is None:
                self._update_waiters = []
            self._update_waiters.append(fut)
            await fut

    @property
    def data(self) -> list[bytes]:
        """The WORK_DATA payloads received so far (like gear's ``Job.data``)."""
        return [u.data for u in self._updates or () if u.kind == "data"]

    @property
    def warnings(self) -> list[bytes]:
        return [u.data for u in self._updates or () if u.kind == "warning"]

    # -- driven by the connection ------------------------------------------------------------

    async def _wait_created(self) -> None:
        if not self._created:
            fut = asyncio.get_running_loop().create_future()
            if self._create_waiters is None:
                self._create_waiters = []
            self._create_waiters.append(fut)
            await fut
        if self._error is not None and self.handle is None:
            raise self._error

    def _set_created(self, handle: bytes, server: Endpoint) -> None:
        self.handle = handle
        self.server = server
        self._created = True
        if self.background:
            self._finished = True
        _wake(self._create_waiters)
        self._create_waiters = None

    def _add_update(self, update: Update) -> None:
        if self._updates is None:
            self._updates = [update]
        else:
            self._updates.append(update)
        if self._update_waiters:
            _wake(self._update_waiters)
            self._update_waiters = None

    def _finish(self, result: bytes | None, error: BaseException | None) -> None:
        if self._finished and not self.background:
            return
        self._result = result
        self._error = error
        self._finished = True
        self._created = True
        _wake(self._create_waiters)
        _wake(self._done_waiters)
        _wake(self._update_waiters)
        self._create_waiters = self._done_waiters = self._update_waiters = None


def _wake(waiters: list[asyncio.Future[None]] | None) -> None:
    if waiters:
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


class _Request:
    """A request in the session's FIFO: a SUBMIT (``job``) or a call awaiting ``future``; with
    neither, our own OPTION_REQ."""

    __slots__ = ("background", "expect", "future", "job")

    def __init__(
        self,
        expect: int,
        job: Job | None = None,
        future: asyncio.Future[Any] | None = None,
    ) -> None:
        self.expect = expect
        self.job = job
        self.future = future
        self.background = job is not None and job.background


class _ClientConnection:
    """One server connection: the :class:`Link`'s handler and the session's
    :class:`~gear.protocol.client.SessionHandler` (what a packet does to an aio Job)."""

    def __init__(self, client: Client, endpoint: Endpoint) -> None:
        self.client = client
        self.endpoint = endpoint
        self.link = Link.for_owner(endpoint, self, client)
        self.session = ClientSession(self)

    # -- LinkHandler -------------------------------------------------------------------------

    def link_up(self, link: Link) -> None:
        if self.client.client_id:
            link.send(request(c.SET_CLIENT_ID, self.client.client_id))
        # docs/protocol.md §3.9: without this option gearmand turns WORK_EXCEPTION into a bare
        # WORK_FAIL. It is answered in order like any request, so submissions may follow it
        # immediately.
        link.send(request(c.OPTION_REQ, b"exceptions"))
        self.session.expect(_Request(c.OPTION_RES))
        self.client._connection_changed()

    def link_down(self, link: Link, error: ConnectionError) -> None:
        self.session.connection_lost(error)
        self.client._connection_changed()

    def link_event(self, link: Link, event: Event) -> None:
        if self.client._closed:
            return  # everything in flight has already failed with "the client was closed"
        if not isinstance(event, Frame):
            log.warning("unexpected text line from %s: %r", self.endpoint, event.line[:80])
            return
        ptype = event.ptype
        try:
            known = self.session.receive_frame(ptype, event.body)
        except ProtocolError as e:
            # The stream no longer lines up with our requests: nothing later can be trusted.
            if self.link.protocol is not None:
                self.link.protocol.abort(e)
            return
        if not known:
            # NOOP and friends mean nothing to a client (docs/protocol.md §1.4).
            log.debug("ignoring %r from %s", event, self.endpoint)
        elif ptype in _REPLY_PACKETS:
            for unsolicited in self.session.events_received():
                log.warning("unsolicited %s from %s: %r", c.types[unsolicited.ptype],
                            self.endpoint, unsolicited.reply)

    # -- requests ----------------------------------------------------------------------------

    def submit(self, job: Job, packet: bytes) -> bool:
        if not self.link.send(packet):
            return False
        key = None
        if job.unique and not job.background:
            key = coalescing_key(job.name, job.unique, job.arguments)
        self.session.expect(_Request(c.JOB_CREATED, job=job), key)
        return True

    def call(self, packet: bytes, expect: int) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self.link.send(packet):
            raise ConnectionError(f"not connected to {self.endpoint}")
        self.session.expect(_Request(expect, future=fut))
        return fut

    # -- SessionHandler ----------------------------------------------------------------------

    def created(self, req: _Request, handle: bytes) -> None:
        assert req.job is not None
        req.job._set_created(handle, self.endpoint)

    def refused(self, req: _Request, error: BaseException) -> None:
        if req.job is not None:
            req.job._finish(None, error)
        elif req.future is not None:
            if not req.future.done():
                req.future.set_exception(error)
        elif isinstance(error, ServerError):
            # Our own OPTION_REQ: an older or different server; jobs then fail with WORK_FAIL.
            log.info("%s refused OPTION_REQ exceptions: %s", self.endpoint, error)

    def replied(self, req: _Request, reply: Any) -> None:
        if req.future is not None and not req.future.done():
            req.future.set_result(reply)

    def data(self, job: Job, data: bytes) -> None:
        job._add_update(Update("data", data))

    def warning(self, job: Job, data: bytes) -> None:
        job._add_update(Update("warning", data))

    def status(self, job: Job, numerator: bytes, denominator: bytes) -> None:
        # gearmand forwards whatever the worker sent (atoi semantics, docs/protocol.md §1.2).
        job.numerator = n = int_or_zero(numerator)
        job.denominator = d = int_or_zero(denominator)
        job._add_update(Update("status", b"", n, d))

    def complete(self, job: Job, data: bytes) -> None:
        job._finish(data, None)

    def fail(self, job: Job) -> None:
        job._finish(None, JobFailedError(job.handle or b""))

    def exception(self, job: Job, data: bytes) -> None:
        job._finish(None, JobExceptionError(job.handle or b"", data))

    def status_res(self, job: Job, status: JobStatus, fields: list[bytes]) -> None:
        pass  # get_status returns the JobStatus; the Job keeps its WORK_STATUS values

    def lost(self, job: Job, error: BaseException) -> None:
        job._finish(None, error)


class Client(AsyncContext):
    """An asyncio Gearman client over one or more servers.

    ``add_server`` may be called before the event loop runs; connections are opened (and kept
    open, reconnecting with jittered exponential backoff) from the first coroutine call on.
    Submissions go round robin over the connected servers, skipping disconnected ones.
    Use ``async with Client(...) as client`` or ``await client.close()``. A client belongs to
    the event loop it first ran on and is not thread-safe (use the threaded ``gear.Client``
    from threads).
    """

    def __init__(
        self,
        client_id: str | bytes | None = None,
        *,
        connect_timeout: float = 10.0,
        reconnect_min: float = 0.05,
        reconnect_max: float = 5.0,
    ) -> None:
        self.client_id = to_bytes(client_id, "client_id") if client_id else b""
        self.connect_timeout = connect_timeout
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self._connections: list[_ClientConnection] = []
        self._next = 0
        self._started = False
        self._closed = False
        self._any_up: asyncio.Event | None = None
        self._all_up: asyncio.Event | None = None

    def __repr__(self) -> str:
        servers = [str(conn.endpoint) for conn in self._connections]
        return f"<aio.Client {self.client_id!r} servers={servers}>"

    def _enter(self) -> None:
        self._start()

    async def _exit(self, clean: bool) -> None:
        await self.close()

    # -- servers -----------------------------------------------------------------------------

    def add_server(
        self, host: str, port: int = 4730, **options: Unpack[ServerOptions]
    ) -> None:
        """Add a server: ``options`` are :class:`~gear.aio.connection.ServerOptions` (the threaded
        ``addServer`` TLS and keepalive options, plus a ready ``ssl_context``)."""
        if self._closed:
            raise ConfigurationError("the client is closed")
        endpoint = new_endpoint(self.servers, host, port, **options)
        conn = _ClientConnection(self, endpoint)
        self._connections.append(conn)
        if self._started:
            conn.link.start()
            self._connection_changed()
        else:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return  # started by the first coroutine call
            self._start()

    @property
    def servers(self) -> list[Endpoint]:
        return [conn.endpoint for conn in self._connections]

    @property
    def connected_servers(self) -> list[Endpoint]:
        return [conn.endpoint for conn in self._connections if conn.link.connected]

    def _start(self) -> None:
        if self._closed:
            raise ConfigurationError("the client is closed")
        if self._started:
            return
        self._started = True
        self._any_up = asyncio.Event()
        self._all_up = asyncio.Event()
        for conn in self._connections:
            conn.link.start()

    def _connection_changed(self) -> None:
        if self._any_up is None or self._all_up is None:
            return
        up = [conn.link.connected for conn in self._connections]
        for event, state in ((self._any_up, any(up)), (self._all_up, all(up))):
            if state:
                event.set()
            else:
                event.clear()

    async def wait_for_server(
        self, timeout: float | None = None, *, all_servers: bool = False
    ) -> None:
        """Wait until a server (``all_servers``: every server) is connected.

        Raises :class:`~gear.errors.TimeoutError` naming each server's last connection error.
        """
        if not self._connections:
            raise NoConnectedServersError("no servers added")
        self._start()
        event = self._all_up if all_servers else self._any_up
        assert event is not None
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            errors = "; ".join(
                f"{conn.endpoint}: {describe(conn.link.last_error)}" for conn in self._connections
            )
            raise TimeoutError(f"no server connected within {timeout}s ({errors})") from None

    def _pick(self) -> _ClientConnection:
        conns = self._connections
        n = len(conns)
        for i in range(n):
            conn = conns[(self._next + i) % n]
            if conn.link.connected:
                self._next = (self._next + i + 1) % n
                return conn
        raise NoConnectedServersError("no Gearman server is connected")

    # -- jobs --------------------------------------------------------------------------------

    async def submit(
        self,
        name: str | bytes,
        arguments: bytes | str = b"",
        *,
        unique: str | bytes | None = None,
        background: bool = False,
        priority: int = NORMAL,
        when: int | float | None = None,
    ) -> Job:
        """Submit a job; return it once the server acknowledged it with JOB_CREATED.

        ``priority`` is :data:`HIGH`, :data:`NORMAL` or :data:`LOW`; ``when`` (Unix seconds)
        schedules a background job (SUBMIT_JOB_EPOCH). An ERROR reply raises
        :class:`~gear.errors.ServerError`; losing the connection first raises
        :class:`~gear.errors.ConnectionError`.
        """
        job = self._send_submit(name, arguments, unique, background, priority, when)
        await job._wait_created()
        return job

    def _send_submit(
        self,
        name: str | bytes,
        arguments: bytes | str,
        unique: str | bytes | None,
        background: bool,
        priority: int,
        when: int | float | None,
    ) -> Job:
        """Build the job and send its SUBMIT (or attach it to a live job with its unique)."""
        self._start()
        name_b = to_bytes(name, "name")
        data = to_bytes(arguments, "arguments")
        if unique is None:
            # 4.1: background jobs with an empty unique overwrite each other in persistent queues.
            unique_b = uuid.uuid4().hex.encode("ascii") if background else b""
        else:
            unique_b = to_bytes(unique, "unique")
            messages.check_unique(unique_b)
        when_i = None if when is None else int(when)
        packet = messages.submit_job(name_b, unique_b, data, background, priority, when_i)
        job = Job(name_b, data, unique_b, background, priority, when_i)
        if unique_b and not background:
            key = coalescing_key(name_b, unique_b, data)
            for conn in self._connections:
                if conn.link.connected and conn.session.attach(key, _Request(c.JOB_CREATED, job)):
                    return job
        while not self._pick().submit(job, packet):
            pass  # that connection closed just now: _pick() skips it next time
        return job

    async def run(
        self,
        name: str | bytes,
        arguments: bytes | str = b"",
        *,
        unique: str | bytes | None = None,
        priority: int = NORMAL,
        timeout: float | None = None,
    ) -> bytes:
        """Submit a foreground job and return its result (see :meth:`Job.result`).

        ``timeout`` covers the whole job. A refused submission raises ServerError, as in submit.
        """
        # Waits for the outcome only (a failed submission finishes the job too): one wake-up
        # per job instead of one for JOB_CREATED and another for the result.
        job = self._send_submit(name, arguments, unique, False, priority, None)
        return await job.result(timeout)

    async def get_status(
        self,
        job: Job | bytes | str | None = None,
        *,
        unique: str | bytes | None = None,
        timeout: float | None = None,
    ) -> JobStatus:
        """GET_STATUS for a job (or a handle), or GET_STATUS_UNIQUE with ``unique=``.

        A :class:`Job` is asked on the server that created it. A bare handle or a unique is asked
        on every connected server; the first that knows it answers (else the first answer).
        """
        self._start()
        if (job is None) == (unique is None):
            raise ConfigurationError("give a job (or handle) or unique=, not both")
        if unique is not None:
            packet = request(c.GET_STATUS_UNIQUE, to_bytes(unique, "unique"))
            expect = c.STATUS_RES_UNIQUE
        else:
            handle = job.handle if isinstance(job, Job) else to_bytes(job, "handle")  # type: ignore[arg-type]
            if handle is None:
                raise ConfigurationError("the job has no handle yet")
            packet = request(c.GET_STATUS, handle)
            expect = c.STATUS_RES
        if isinstance(job, Job):
            conns = [conn for conn in self._connections if conn.endpoint == job.server]
        else:
            conns = list(self._connections)
        conns = [conn for conn in conns if conn.link.connected]
        if not conns:
            raise NoConnectedServersError("no Gearman server is connected")
        futures = [conn.call(packet, expect) for conn in conns]
        try:
            frames = await asyncio.wait_for(asyncio.gather(*futures), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no status reply within {timeout}s") from None
        statuses: list[JobStatus] = frames
        return next((s for s in statuses if s.known), statuses[0])

    async def echo(self, data: bytes = b"ping", timeout: float | None = None) -> float:
        """ECHO_REQ to every connected server; returns the slowest round trip in seconds."""
        self._start()
        start = time.perf_counter()
        conns = [conn for conn in self._connections if conn.link.connected]
        if not conns:
            raise NoConnectedServersError("no Gearman server is connected")
        futures = [conn.call(request(c.ECHO_REQ, data), c.ECHO_RES) for conn in conns]
        try:
            frames = await asyncio.wait_for(asyncio.gather(*futures), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no echo reply within {timeout}s") from None
        for echoed in frames:
            if echoed != data:
                raise ProtocolError(f"echo returned {echoed[:64]!r}")
        return time.perf_counter() - start

    async def close(self) -> None:
        """Close every connection; jobs still in flight fail with ConnectionError."""
        if self._closed:
            return
        self._closed = True
        for conn in self._connections:
            conn.link_down(conn.link, ConnectionError("the client was closed"))
        await asyncio.gather(*(conn.link.close() for conn in self._connections))

