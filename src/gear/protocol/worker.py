"""The worker side of one server connection, sans I/O: registration, the grab/sleep cycle, jobs.

Owns :class:`WorkerSession`, what both workers (the threaded ``gear.Worker`` and ``gear.aio``'s)
do on one connection, per docs/protocol.md §3.4-§3.8:

* **Registration on connect**: SET_CLIENT_ID and every CAN_DO / CAN_DO_TIMEOUT (in milliseconds,
  §3.8) in one write, again after every reconnect (:meth:`WorkerSession.connection_made`).
* **One grab/sleep cycle** (§3.5): GRAB_JOB_UNIQ -> NO_JOB -> PRE_SLEEP -> NOOP -> GRAB... A
  session *wants* work (``hungry``) after it connects, after a NOOP, after each JOB_ASSIGN (more
  may be queued) and after :meth:`~WorkerSession.wake` (a new function may have queued jobs:
  CAN_DO wakes nobody, §3.4). Replies come in request order, so GRABs may be pipelined: up to
  ``window`` are in flight. The window starts at one after a connect, a NOOP or a NO_JOB, and
  grows like a slow start: it stays one for the first job of a run and doubles (up to
  ``max_window``) with each further job, so only a queue that keeps answering GRABs with jobs
  gets pipelined GRABs. NO_JOB stops further GRABs; once every GRAB in flight is answered the
  session sends PRE_SLEEP, and the server answers at once with NOOP if work arrived in between
  (its race fix), so no wake-up is lost and nothing busy-loops.
* **The sleep probe** (``probe_sleep=True``, what ``gear.aio`` uses): the first job after a
  wake-up is followed by PRE_SLEEP instead of a second GRAB. A worker woken for one job (the
  common case of a lightly loaded worker, e.g. one call at a time) has nothing more to grab, and
  that GRAB would only come back NO_JOB; PRE_SLEEP asks the same question for less, because a
  server with more work answers it with NOOP at once (gearmand, geard and gear 0.16's server
  all do, docs/protocol.md §3.5). A NOOP answering a probe may mean a queue or just the next
  job, so such a wake-up grabs again after its first job (a guess), and a deep queue reaches
  the pipelined window after one more round trip. A guess answered NO_JOB makes the next ones
  rarer: that many (1, 2, 4, up to ``MAX_GUESS_SKIPS``) probe-answered wake-ups probe again
  instead; a guess answered with a job resets that. A worker taking one job at a time so
  sends about 1.1 GRABs per job, and a deep queue that follows waits at most that many round
  trips more for its pipelined GRABs. The probe goes out only when no GRAB is in flight, like
  every PRE_SLEEP.
* **Assignments**: JOB_ASSIGN, JOB_ASSIGN_UNIQ, JOB_ASSIGN_ALL read by
  :func:`gear.protocol.messages.parse_job_assign`.
* **Job cancel** (geard's extension, docs/protocol.md §1.7): with ``job_cancel`` the
  registration also asks for OPTION_REQ ``job_cancel``; geard answers OPTION_RES, gearmand
  ERROR UNKNOWN_OPTION (:meth:`~WorkerSession.option_refused` takes that ERROR, so it never
  reaches the caller as a failure) and gear 0.16's server nothing. Either way the session
  works as before; only an accepting server later sends JOB_CANCEL with the handle of a
  running job that was cancelled (:class:`JobCancel`). The caller decides what the job does
  about it; the server drops the job's later packets, and a cancelled job still needs its
  end packet (WORK_FAIL) to free the server's slot.
* **Connection loss**: every GRAB in flight is void (:meth:`~WorkerSession.connection_lost`
  says how many, so a caller holding a slot per GRAB gives them back); the server re-queues
  the jobs that were running on the connection (§3.6), so their results must not be sent on
  a later connection.

*When* to grab is the caller's decision (:attr:`~WorkerSession.can_grab`, then
:meth:`~WorkerSession.grab`), because only the caller knows its demand across connections: the
threaded worker grabs while a thread waits in ``getJob`` (one GRAB in flight per connection, as
gear), ``gear.aio`` while it has a free slot (a slot per running job or GRAB in flight).

Two entry points, one state: the packet level (:meth:`~WorkerSession.job_assigned`,
:meth:`~WorkerSession.no_job`, :meth:`~WorkerSession.noop`, :meth:`~WorkerSession.grab_refused`,
or :meth:`~WorkerSession.receive_frame` for any packet) that gear's ``handleX(packet)`` hooks and
aio's packet protocol drive, and the byte level of websockets' shape
(:meth:`~WorkerSession.receive_data`, :meth:`~WorkerSession.events_received`,
:meth:`~WorkerSession.data_to_send`, :meth:`~WorkerSession.connection_lost`). What a received
packet makes the session send (registration, PRE_SLEEP) waits in :meth:`data_to_send`; a GRAB
is returned by :meth:`grab` for the caller to send when it chooses.

Pure: imports only ``gear.protocol``, ``gear.errors`` and ``gear.constants``; no sockets,
threads or asyncio.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gear import constants as c
from gear.protocol import messages
from gear.protocol.messages import JobAssignment
from gear.protocol.packets import Decoder, Frame, request

__all__ = [
    "GRAB_TYPES",
    "JOB_CANCEL_OPTION",
    "CancelOption",
    "Event",
    "JobAssignment",
    "JobCancel",
    "NoJob",
    "Noop",
    "ServerError",
    "WorkerSession",
    "registration",
]

#: The grab requests, by the names ``gear.aio.Worker(grab=...)`` takes.
GRAB_TYPES = {"uniq": c.GRAB_JOB_UNIQ, "all": c.GRAB_JOB_ALL, "plain": c.GRAB_JOB}
# Body-less requests, encoded once: one of them goes out for every job.
_GRAB_PACKETS = {ptype: request(ptype) for ptype in GRAB_TYPES.values()}
_PRE_SLEEP = request(c.PRE_SLEEP)
#: The OPTION_REQ a worker opts in to JOB_CANCEL with (docs/protocol.md §1.7).
JOB_CANCEL_OPTION = b"job_cancel"
_OPT_IN = request(c.OPTION_REQ, JOB_CANCEL_OPTION)
#: The most probe-answered wake-ups that probe again after a guess came back NO_JOB.
MAX_GUESS_SKIPS = 8


@dataclass(frozen=True, slots=True)
class NoJob:
    """NO_JOB answered a GRAB: the server had nothing for us."""


@dataclass(frozen=True, slots=True)
class Noop:
    """NOOP: the server has work for us (or answers a PRE_SLEEP at once)."""


@dataclass(frozen=True, slots=True)
class ServerError:
    """An ERROR packet. ``grab_refused``: it refused our GRAB type (we fell back to GRAB_JOB)."""

    code: bytes
    text: bytes
    grab_refused: bool


@dataclass(frozen=True, slots=True)
class JobCancel:
    """JOB_CANCEL: the server cancelled the running job ``handle`` (docs/protocol.md §1.7)."""

    handle: bytes


@dataclass(frozen=True, slots=True)
class CancelOption:
    """The server's answer to OPTION_REQ ``job_cancel``: ``accepted`` (OPTION_RES) or not
    (ERROR UNKNOWN_OPTION, which is then no :class:`ServerError`)."""

    accepted: bool


Event = JobAssignment | NoJob | Noop | ServerError | JobCancel | CancelOption
#: A function's CAN_DO_TIMEOUT in seconds (None: plain CAN_DO), as messages.can_do takes it.
Timeout = float | int | str | bytes | None

_NO_JOB = NoJob()
_NOOP = Noop()


def registration(client_id: bytes, functions: Iterable[tuple[bytes, Timeout]]) -> bytes:
    """SET_CLIENT_ID (when ``client_id`` is set) and a CAN_DO or CAN_DO_TIMEOUT per function.

    ``functions`` holds (name, timeout in seconds or None) pairs.
    """
    parts = [request(c.SET_CLIENT_ID, client_id)] if client_id else []
    parts += [messages.can_do(name, timeout) for name, timeout in functions]
    return b"".join(parts)


class WorkerSession:
    """One worker connection's state (module docstring): registration, grabs, sleep.

    :arg client_id: sent with SET_CLIENT_ID on every connect (nothing when empty).
    :arg grab_type: the GRAB packet type (GRAB_JOB_UNIQ by default).
    :arg max_window: how many GRABs may be in flight at most (1: one at a time, as gear).
    :arg job_cancel: opt in to JOB_CANCEL on every connect (docs/protocol.md §1.7).
    :arg probe_sleep: after the first job of a wake-up send PRE_SLEEP rather than a second
        GRAB (module docstring); off by default, as gear grabs until NO_JOB.
    """

    __slots__ = (
        "_decoder",
        "_events",
        "_guess",
        "_guess_skips",
        "_option_pending",
        "_out",
        "_probed",
        "_probing",
        "_skip",
        "cancel_option",
        "client_id",
        "connected",
        "grab_type",
        "hungry",
        "job_cancel",
        "max_window",
        "outstanding",
        "probe_sleep",
        "sleeping",
        "streak",
        "window",
    )

    def __init__(
        self, client_id: bytes = b"", grab_type: int = c.GRAB_JOB_UNIQ, max_window: int = 1,
        job_cancel: bool = False, probe_sleep: bool = False,
    ) -> None:
        if grab_type not in _GRAB_PACKETS:
            raise ValueError(f"not a grab type: {grab_type}")
        if max_window < 1:
            raise ValueError("max_window must be at least 1")
        self.client_id = client_id
        self.grab_type = grab_type
        self.max_window = max_window
        #: Registered and not lost since.
        self.connected = False
        #: The server may have work for us: GRAB when the caller has demand.
        self.hungry = False
        #: PRE_SLEEP sent; the next NOOP wakes us.
        self.sleeping = False
        #: GRABs sent and not answered yet.
        self.outstanding = 0
        #: How many GRABs may be in flight now (grows while jobs keep coming).
        self.window = 1
        #: Jobs assigned since the last connect, NOOP or NO_JOB (the slow start's count).
        self.streak = 0
        #: Send PRE_SLEEP after the first job of a wake-up instead of a second GRAB.
        self.probe_sleep = probe_sleep
        # The PRE_SLEEP in flight is a probe (jobs were just assigned, no NO_JOB said "empty").
        self._probing = False
        # The last wake-up answered a probe: its first job is followed by a GRAB, not a probe.
        self._probed = False
        # The GRAB wanted is a guess (after the first job of a probe-answered wake-up); after a
        # wrong one, _guess_skips such wake-ups probe again (_skip of them are left).
        self._guess = False
        self._guess_skips = 0
        self._skip = 0
        #: Ask for JOB_CANCEL on every connect.
        self.job_cancel = job_cancel
        #: The server's answer on this connection: None (not asked, or not answered yet),
        #: True (it sends JOB_CANCEL), False (it refused the option).
        self.cancel_option: bool | None = None
        self._option_pending = False
        self._out: list[bytes] = []
        self._events: list[Event] = []
        self._decoder: Decoder | None = None

    def __repr__(self) -> str:
        return (f"<WorkerSession {self.state} outstanding={self.outstanding} "
                f"window={self.window}>")

    @property
    def state(self) -> str:
        """The state in gear's words (docs/gear-compat.md §3.11): INIT, IDLE, GRAB_WAIT, SLEEP."""
        if not self.connected:
            return "INIT"
        if self.outstanding:
            return "GRAB_WAIT"
        if self.sleeping and not self.hungry:
            return "SLEEP"
        return "IDLE"

    @property
    def can_grab(self) -> bool:
        """Whether a GRAB may go out now: connected, hungry, and the window not full."""
        return self.hungry and self.outstanding < self.window and self.connected

    # -- connection ----------------------------------------------------------------------------

    def connection_made(self, functions: Iterable[tuple[bytes, Timeout]] = ()) -> None:
        """A (re)connected socket: queue the registration, then want work.

        ``functions`` holds (name, timeout in seconds or None) pairs.
        """
        self.connected = True
        self.hungry = True
        self.sleeping = False
        self.outstanding = 0
        self._reset_window()
        self._guess_skips = self._skip = 0
        self._decoder = None
        self._events.clear()
        self._out.clear()
        data = registration(self.client_id, functions)
        self.cancel_option = None
        self._option_pending = self.job_cancel
        if self.job_cancel:
            data += _OPT_IN
        if data:
            self._out.append(data)

    def connection_lost(self) -> int:
        """The connection is gone; returns how many GRABs were in flight (all void now)."""
        outstanding = self.outstanding
        self.connected = False
        self.hungry = False
        self.sleeping = False
        self.outstanding = 0
        self._reset_window()
        self._out.clear()
        self._decoder = None
        self.cancel_option = None
        self._option_pending = False
        return outstanding

    def request_job_cancel(self) -> bytes:
        """Opt in to JOB_CANCEL from now on; returns the OPTION_REQ to send on this live
        connection (b"" when not connected or already asked: later connects ask anyway)."""
        self.job_cancel = True
        if not self.connected or self._option_pending or self.cancel_option is not None:
            return b""
        self._option_pending = True
        return _OPT_IN

    def wake(self) -> None:
        """Want work again without a NOOP (after a CAN_DO: jobs of it may be queued, §3.4)."""
        if self.connected:
            self.hungry = True

    # -- the grab cycle ------------------------------------------------------------------------

    def grab(self) -> bytes:
        """Count a GRAB as sent and return it, for the caller to write (see :attr:`can_grab`)."""
        self.outstanding += 1
        self.sleeping = False
        self._probing = False
        return _GRAB_PACKETS[self.grab_type]

    def _reset_window(self) -> None:
        self.window = 1
        self.streak = 0
        self._probing = False
        self._probed = False
        self._guess = False

    def assigned(self) -> None:
        """A GRAB was answered with a job: more may be queued (the slow start, module docstring).

        The first job of a run keeps the window at one; each further one doubles it. With
        ``probe_sleep``, the first job after a wake-up that did not answer a probe queues
        PRE_SLEEP (the probe) instead of wanting another GRAB.
        """
        if self.outstanding:
            self.outstanding -= 1
        streak = self.streak = self.streak + 1
        if streak > 1:
            if self._guess:  # it paid off: a queue
                self._guess = False
                self._guess_skips = 0
            window = self.window * 2
            self.window = window if window < self.max_window else self.max_window
        elif self.probe_sleep and not self.outstanding:
            if not self._probed or self._skip:
                # Nothing says more is queued: ask with PRE_SLEEP, which the server answers
                # with NOOP at once if it is (§3.5); no GRAB is in flight, so no wake-up can
                # be lost.
                if self._probed:
                    self._skip -= 1
                self.hungry = False
                self.sleeping = True
                self._probing = True
                self._out.append(_PRE_SLEEP)
                return
            self._guess = True
        self.hungry = True

    def job_assigned(self, ptype: int, args: list[bytes]) -> JobAssignment:
        """Read a JOB_ASSIGN* (``args`` as split by ``split_args``) and count it (:meth:`assigned`).

        InvalidDataError for a malformed one, before any state changes.
        """
        assignment = messages.parse_job_assign(ptype, args)
        self.assigned()
        return assignment

    def no_job(self) -> bool:
        """NO_JOB: stop grabbing; with no GRAB left in flight, queue PRE_SLEEP (§3.5).

        Returns whether it answered a GRAB of ours (False: unexpected, ignored).
        """
        if not self.outstanding:
            return False
        self.outstanding -= 1
        self.hungry = False
        if self._guess:  # a wrong guess: probe-answered wake-ups guess less often
            skips = self._guess_skips * 2 if self._guess_skips else 1
            self._guess_skips = self._skip = min(skips, MAX_GUESS_SKIPS)
        self._reset_window()
        if not self.outstanding:
            self.sleeping = True
            self._out.append(_PRE_SLEEP)
        return True

    def noop(self) -> bool:
        """NOOP: want work. Returns whether the session was asleep (False: unexpected).

        A wake-up starts a new run: the window is one again (the slow start).
        """
        was_asleep = self.sleeping
        if was_asleep:
            probed = self._probing
            self._reset_window()
            self._probed = probed
        self.sleeping = False
        self.hungry = True
        return was_asleep

    def grab_refused(self, code: bytes) -> bool:
        """An ERROR ``code``: True if it refused our GRAB type, which then becomes GRAB_JOB.

        A server without GRAB_JOB_UNIQ/ALL answers them with INVALID_COMMAND; that GRAB is
        void, and the caller grabs again with the plain GRAB_JOB.
        """
        if self.outstanding and code == b"INVALID_COMMAND" and self.grab_type != c.GRAB_JOB:
            self.grab_type = c.GRAB_JOB
            self.outstanding -= 1
            return True
        return False

    # -- job cancel (docs/protocol.md §1.7) ----------------------------------------------------

    def option_accepted(self, option: bytes) -> bool:
        """OPTION_RES ``option``: True if it accepted our ``job_cancel``."""
        if self._option_pending and option.lower() == JOB_CANCEL_OPTION:
            self._option_pending = False
            self.cancel_option = True
            return True
        return False

    def option_refused(self, code: bytes) -> bool:
        """An ERROR ``code``: True if it refused our ``job_cancel`` (gearmand answers an
        unknown option with ERROR UNKNOWN_OPTION); the caller then ignores that ERROR."""
        if self._option_pending and code == b"UNKNOWN_OPTION":
            self._option_pending = False
            self.cancel_option = False
            return True
        return False

    def receive_frame(self, ptype: int, args: list[bytes]) -> Event | None:
        """Any received packet (``args`` split): its event, or None for one a worker ignores."""
        if ptype in messages.ASSIGN_TYPES:
            return self.job_assigned(ptype, args)
        if ptype == c.NO_JOB:
            return _NO_JOB if self.no_job() else None
        if ptype == c.NOOP:
            self.noop()
            return _NOOP
        if ptype == c.JOB_CANCEL:
            return JobCancel(args[0])
        if ptype == c.ERROR:
            code = args[0] if args else b""
            if self.option_refused(code):
                return CancelOption(False)
            text = args[1] if len(args) > 1 else b""
            return ServerError(code, text, self.grab_refused(code))
        if ptype == c.OPTION_RES:
            return CancelOption(True) if self.option_accepted(args[0]) else None
        return None

    # -- byte level ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the server: decode them and queue their events.

        ProtocolError for bytes that are not Gearman responses (the caller closes).
        """
        if self._decoder is None:
            self._decoder = Decoder(text=False)
        for item in self._decoder.feed(data):
            if isinstance(item, Frame):
                event = self.receive_frame(item.ptype, item.args())
                if event is not None:
                    self._events.append(event)

    def events_received(self) -> list[Event]:
        """The events of the bytes received since the last call."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> bytes:
        """What the session has to send (registration, PRE_SLEEP), once; b"" when nothing."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data
