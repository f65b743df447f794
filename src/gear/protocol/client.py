"""The client side of one server connection, sans I/O: what each reply and WORK_* packet means.

Owns :class:`ClientSession`, one per connection to a server, shared by the threaded gear API and
``gear.aio`` (and any later facade). It keeps:

* the pending FIFO: every request that waits for an answer (a SUBMIT waiting for JOB_CREATED or
  ERROR, an OPTION_REQ for OPTION_RES, and whatever else a front-end chooses to match in order,
  e.g. GET_STATUS or ECHO_REQ). gearmand answers one connection's requests in order
  (docs/protocol.md §1.3), so a reply always belongs to the oldest pending request;
* handle -> jobs: the first job that got a handle on this connection, plus its *followers*;
* the ONE coalescing rule: a foreground submission whose coalescing key
  (:func:`gear.protocol.messages.coalescing_key`) is already live on this connection is not
  submitted again but attached to the live job locally (:meth:`ClientSession.attach`). The server
  then sends one packet stream per handle, and every job of the handle gets every packet once.
  This does not depend on the server duplicating packets per submission (docs/protocol.md §3.2);
* the meaning of WORK_DATA, WORK_WARNING, WORK_STATUS, WORK_COMPLETE, WORK_FAIL (also gearmand's
  ``handle\\0`` form, docs/protocol.md §1.5) and WORK_EXCEPTION, STATUS_RES and STATUS_RES_UNIQUE
  (parsed with :func:`gear.protocol.messages.parse_status_res`);
* what a lost connection does: every pending request is refused and every tracked job is lost.

Job objects differ per front-end, so the session never touches a job itself: it calls a
:class:`SessionHandler` (one per front-end) with the job and the packet's fields. Pending requests
are the front-end's own objects (:class:`PendingRequest`): the session only reads ``expect``,
``job`` and ``background``. The vocabulary is websockets': :meth:`ClientSession.receive_data`,
:meth:`~ClientSession.events_received`, :meth:`~ClientSession.data_to_send`,
:meth:`~ClientSession.connection_lost`; front-ends that frame packets themselves call
:meth:`~ClientSession.receive_frame` or the per-type methods (the threaded ``handleX`` hooks do).

Thread safety is the front-end's business: the threaded client serialises :meth:`attach` against
the packets that create or end a live job (its ``session_lock``).

Must not import sockets, threads, asyncio, or anything outside ``gear.protocol``, ``gear.errors``
and ``gear.constants``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple, Protocol

from gear import constants as c
from gear.errors import ProtocolError, ServerError
from gear.protocol.messages import JobStatus, parse_status_res, work_handle
from gear.protocol.packets import AdminLine, Decoder, split_args

__all__ = [
    "ClientSession",
    "PendingRequest",
    "SessionHandler",
    "Unsolicited",
]


class PendingRequest(Protocol):
    """A request waiting in the FIFO: ``expect`` is the reply type that answers it.

    A SUBMIT (``expect == JOB_CREATED``) also carries its ``job`` and ``background``; other
    requests may have ``job = None``.
    """

    expect: int
    job: Any
    background: bool


class SessionHandler(Protocol):
    """What a front-end does with what the session decided. ``job`` is the front-end's object."""

    def created(self, request: Any, handle: bytes) -> None:
        """``request`` (a SUBMIT, or a follower attached to one) got ``handle``."""

    def refused(self, request: Any, error: BaseException) -> None:
        """``request`` failed: an ERROR reply (ServerError) or the connection was lost."""

    def replied(self, request: Any, reply: Any) -> None:
        """A non-SUBMIT ``request`` got its answer: the option name (OPTION_RES), a JobStatus
        (STATUS_RES, STATUS_RES_UNIQUE) or the echoed bytes (ECHO_RES)."""

    def data(self, job: Any, data: bytes) -> None: ...

    def warning(self, job: Any, data: bytes) -> None: ...

    def status(self, job: Any, numerator: bytes, denominator: bytes) -> None:
        """WORK_STATUS, with the fields as sent (gear keeps them as bytes)."""

    def complete(self, job: Any, data: bytes) -> None: ...

    def fail(self, job: Any) -> None: ...

    def exception(self, job: Any, data: bytes) -> None: ...

    def status_res(self, job: Any, status: JobStatus, fields: list[bytes]) -> None:
        """A STATUS_RES for a job this connection tracks (``fields`` as sent)."""

    def lost(self, job: Any, error: BaseException) -> None:
        """The connection was lost while ``job`` ran."""


class Unsolicited(NamedTuple):
    """An event: a reply no pending request asked for (an ERROR, a STATUS_RES by handle, an
    ECHO_RES); ``reply`` is the parsed value (ServerError, JobStatus or bytes)."""

    ptype: int
    reply: Any


class _Follower:
    """A local attachment made before the live job's JOB_CREATED arrived."""

    __slots__ = ("job", "request")

    def __init__(self, request: Any) -> None:
        self.request = request
        self.job = request.job


class ClientSession:
    """One connection's client state (module docstring). Not thread-safe by itself."""

    def __init__(self, handler: SessionHandler) -> None:
        self._on = handler
        #: Requests waiting for a reply, oldest first (gear's ``Connection.pending_tasks``).
        self.pending: deque[Any] = deque()
        #: handle -> the first job that got it on this connection (gear's ``related_jobs``).
        self.jobs: dict[bytes, Any] = {}
        #: handle -> jobs attached to the first one (local coalescing); usually empty.
        self.followers: dict[bytes, list[Any]] = {}
        #: coalescing key -> [the live job submitted with it, its handle or None while pending].
        self.live: dict[Hashable, list[Any]] = {}
        #: coalescing key -> followers of a live job that has no handle yet.
        self._early: dict[Hashable, list[Any]] = {}
        #: handle -> coalescing key of the live job with that handle.
        self._keys: dict[bytes, Hashable] = {}
        #: id(pending SUBMIT) -> its coalescing key.
        self._pending_keys: dict[int, Hashable] = {}
        self._events: list[Any] = []
        self._out: list[bytes] = []
        self._decoder: Decoder | None = None
        #: Packets that always have a meaning here.
        self._dispatch: dict[int, Callable[[bytes], Any]] = {
            c.JOB_CREATED: self.job_created,
            c.OPTION_RES: self.option_res,
            c.WORK_DATA: self.work_data,
            c.WORK_WARNING: self.work_warning,
            c.WORK_STATUS: self.work_status,
            c.WORK_COMPLETE: self.work_complete,
            c.WORK_FAIL: self.work_fail,
            c.WORK_EXCEPTION: self.work_exception,
        }
        #: Replies that may answer a pending request or arrive unasked (then an event).
        self._replies: dict[int, Callable[[bytes], Any]] = {
            c.ERROR: self.error,
            c.STATUS_RES: self.status_res,
            c.STATUS_RES_UNIQUE: self.status_res_unique,
            c.ECHO_RES: self.echo_res,
        }

    # -- websockets-style boundary ------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the server; results go to the handler and :meth:`events_received`.

        Raises :class:`~gear.errors.ProtocolError` (or a framing error) when the stream cannot
        be trusted any more: the caller should drop the connection.
        """
        if self._decoder is None:
            self._decoder = Decoder(text=False)
        for frame in self._decoder.feed(data):
            if isinstance(frame, AdminLine):  # a client is never sent text lines
                raise ProtocolError(f"unexpected text line {frame.line[:80]!r}")
            self.receive_frame(frame.ptype, frame.body)

    def events_received(self) -> list[Any]:
        """The :class:`Unsolicited` events since the last call."""
        events, self._events = self._events, []
        return events

    def send(self, request: Any, data: bytes, key: Hashable | None = None) -> None:
        """Queue ``data`` (one encoded request) for :meth:`data_to_send`, and ``request`` in the
        pending FIFO (``key``: see :meth:`expect`)."""
        self._out.append(data)
        self.expect(request, key)

    def data_to_send(self) -> bytes:
        """The bytes queued by :meth:`send` since the last call."""
        out, self._out = self._out, []
        return b"".join(out)

    def connection_lost(self, error: BaseException) -> list[Any]:
        """Refuse every pending request and lose every tracked job; returns the lost jobs.

        The session is empty afterwards, ready for the next connection.
        """
        # Emptied in place: the threaded Connection exposes these as gear's pending_tasks and
        # related_jobs.
        pending = list(self.pending)
        self.pending.clear()
        jobs = list(self.jobs.values())
        for extra in self.followers.values():
            jobs.extend(extra)
        early = [f.request for group in self._early.values() for f in group]
        self.jobs.clear()
        self.followers.clear()
        self.live.clear()
        self._early.clear()
        self._keys.clear()
        self._pending_keys.clear()
        on = self._on
        for request in pending:
            on.refused(request, error)
        for request in early:
            on.refused(request, error)
        for job in jobs:
            on.lost(job, error)
        return jobs

    # -- requests ----------------------------------------------------------------------------

    def expect(self, request: Any, key: Hashable | None = None) -> None:
        """Queue ``request`` for the next reply; the caller has sent (or sends now) its bytes.

        ``key`` is the coalescing key of a foreground SUBMIT with a unique: the job is then
        live under that key until it ends, and later submissions with it :meth:`attach`.
        """
        self.pending.append(request)
        if key is not None:
            self.live[key] = [request.job, None]
            self._pending_keys[id(request)] = key

    def unexpect(self, request: Any) -> None:
        """Take back a request whose bytes could not be sent."""
        try:
            self.pending.remove(request)
        except ValueError:
            return
        key = self._pending_keys.pop(id(request), None)
        if key is not None:
            self._drop_live(key, request.job)

    def _drop_live(self, key: Hashable, job: Any) -> None:
        live = self.live.get(key)
        if live is not None and live[0] is job:
            del self.live[key]

    def attach(self, key: Hashable, request: Any) -> bool:
        """Local coalescing: attach ``request.job`` to the job live under ``key``.

        Returns False if no job is live under ``key`` (submit it instead). Otherwise the
        handler's ``created`` is called for ``request`` now (the live job has its handle) or
        when the live job's JOB_CREATED arrives; the job then gets every packet of the handle.
        """
        live = self.live.get(key)
        if live is None:
            return False
        handle = live[1]
        if handle is not None:
            self.followers.setdefault(handle, []).append(request.job)
            self._on.created(request, handle)
            return True
        self._early.setdefault(key, []).append(_Follower(request))
        return True

    # -- replies -----------------------------------------------------------------------------

    def receive_frame(self, ptype: int, body: bytes) -> bool:
        """Handle one packet from the server; False if it means nothing to a client (NOOP).

        Replies nobody asked for become :class:`Unsolicited` events (:meth:`events_received`).
        """
        method = self._dispatch.get(ptype)
        if method is not None:
            method(body)
            return True
        method = self._replies.get(ptype)
        if method is None:
            return False
        waiting = len(self.pending)
        reply = method(body)
        if len(self.pending) == waiting:
            self._events.append(Unsolicited(ptype, reply))
        return True

    def _answer(self, ptype: int) -> Any:
        pending = self.pending
        if not pending:
            raise ProtocolError(f"{c.types.get(ptype, ptype)} with no request pending")
        request = pending[0]
        if request.expect != ptype:
            expect = c.types.get(request.expect, request.expect)
            raise ProtocolError(f"expected {expect}, got {c.types.get(ptype, ptype)}")
        return pending.popleft()

    def job_created(self, body: bytes) -> Any:
        """JOB_CREATED: the oldest pending SUBMIT got ``body`` as its handle; returns its job.

        Raises ProtocolError if the oldest pending request is not a SUBMIT.
        """
        request = self._answer(c.JOB_CREATED)
        job = request.job
        handle = body
        followers = None
        if self._pending_keys:
            key = self._pending_keys.pop(id(request), None)
            if key is not None:
                live = self.live.get(key)
                if live is not None and live[0] is job:
                    live[1] = handle
                    self._keys[handle] = key
                followers = self._early.pop(key, None)
        if not request.background:
            if handle not in self.jobs:
                self.jobs[handle] = job
            elif self.jobs[handle] is not job:
                # The server coalesced two submissions we did not (another rule than ours).
                self.followers.setdefault(handle, []).append(job)
        self._on.created(request, handle)
        if followers:
            group = self.followers.setdefault(handle, [])
            for follower in followers:
                group.append(follower.job)
                self._on.created(follower.request, handle)
        return job

    def error(self, body: bytes) -> ServerError:
        """ERROR: refuses the oldest pending request, if any; returns the ServerError.

        gearmand also sends ERROR with nothing pending (e.g. JOB_NOT_FOUND for a worker's report
        on a job it no longer knows): that changes nothing here.
        """
        code, text = split_args(c.ERROR, body)
        error = ServerError(code, text.rstrip(b"\x00"))
        if not self.pending:
            return error
        request = self.pending.popleft()
        if self._pending_keys:
            key = self._pending_keys.pop(id(request), None)
            if key is not None:
                self._drop_live(key, request.job)
                for follower in self._early.pop(key, ()):
                    self._on.refused(follower.request, error)
        self._on.refused(request, error)
        return error

    def option_res(self, body: bytes) -> Any:
        """OPTION_RES: answers the oldest pending OPTION_REQ; returns that request."""
        request = self._answer(c.OPTION_RES)
        self._on.replied(request, body)
        return request

    def _reply(self, ptype: int, reply: Any) -> None:
        """Answer the oldest pending request if it asked for a ``ptype`` reply (aio queues
        GET_STATUS and ECHO_REQ; the threaded API matches those by key instead)."""
        pending = self.pending
        if pending and pending[0].expect == ptype:
            self._on.replied(pending.popleft(), reply)

    def echo_res(self, body: bytes) -> bytes:
        """ECHO_RES: answers a pending ECHO_REQ if one is oldest; returns the echoed bytes."""
        self._reply(c.ECHO_RES, body)
        return body

    def status_res(self, body: bytes) -> JobStatus:
        """STATUS_RES: updates the tracked jobs of the handle (handler ``status_res``) and
        answers a pending GET_STATUS if one is oldest; returns the JobStatus."""
        fields = split_args(c.STATUS_RES, body)
        status = parse_status_res(fields)
        job = self.jobs.get(status.handle)
        if job is not None:
            on = self._on
            on.status_res(job, status, fields)
            for extra in self.followers.get(status.handle, ()):
                on.status_res(extra, status, fields)
        self._reply(c.STATUS_RES, status)
        return status

    def status_res_unique(self, body: bytes) -> JobStatus:
        """STATUS_RES_UNIQUE (``handle`` holds the unique); returns the JobStatus."""
        status = parse_status_res(split_args(c.STATUS_RES_UNIQUE, body))
        self._reply(c.STATUS_RES_UNIQUE, status)
        return status

    def jobs_of(self, handle: bytes) -> list[Any]:
        """Every job this connection tracks under ``handle`` (first one first)."""
        job = self.jobs.get(handle)
        if job is None:
            return []
        return [job, *self.followers.get(handle, ())]

    # -- WORK_* (docs/protocol.md §1.4, §3.2): one meaning each ---------------------------------

    def _end(self, handle: bytes) -> list[Any] | None:
        """Forget a finished handle; returns its followers."""
        del self.jobs[handle]
        if self._keys:
            key = self._keys.pop(handle, None)
            if key is not None:
                self.live.pop(key, None)
        if self.followers:
            return self.followers.pop(handle, None)
        return None

    def work_data(self, body: bytes) -> Any:
        """WORK_DATA: every job of the handle gets the data; returns the first job (or None
        for a handle this connection does not track)."""
        handle, _, data = body.partition(b"\x00")
        job = self.jobs.get(handle)
        if job is not None:
            self._on.data(job, data)
            if self.followers:
                for extra in self.followers.get(handle, ()):
                    self._on.data(extra, data)
        return job

    def work_warning(self, body: bytes) -> Any:
        handle, _, data = body.partition(b"\x00")
        job = self.jobs.get(handle)
        if job is not None:
            self._on.warning(job, data)
            if self.followers:
                for extra in self.followers.get(handle, ()):
                    self._on.warning(extra, data)
        return job

    def work_status(self, body: bytes) -> Any:
        fields = body.split(b"\x00", 2)
        job = self.jobs.get(fields[0])
        if job is not None:
            numerator = fields[1] if len(fields) > 1 else b""
            denominator = fields[2] if len(fields) > 2 else b""
            self._on.status(job, numerator, denominator)
            if self.followers:
                for extra in self.followers.get(fields[0], ()):
                    self._on.status(extra, numerator, denominator)
        return job

    def work_complete(self, body: bytes) -> Any:
        """WORK_COMPLETE: every job of the handle completes with the data; the handle ends."""
        handle, _, data = body.partition(b"\x00")
        job = self.jobs.get(handle)
        if job is not None:
            extra = self._end(handle)
            self._on.complete(job, data)
            if extra:
                for other in extra:
                    self._on.complete(other, data)
        return job

    def work_fail(self, body: bytes) -> Any:
        """WORK_FAIL, also as gearmand's ``handle\\0`` (docs/protocol.md §1.5)."""
        handle = work_handle(body)
        job = self.jobs.get(handle)
        if job is not None:
            extra = self._end(handle)
            self._on.fail(job)
            if extra:
                for other in extra:
                    self._on.fail(other)
        return job

    def work_exception(self, body: bytes) -> Any:
        handle, _, data = body.partition(b"\x00")
        job = self.jobs.get(handle)
        if job is not None:
            extra = self._end(handle)
            self._on.exception(job, data)
            if extra:
                for other in extra:
                    self._on.exception(other, data)
        return job
