"""The job server's sans-I/O core: functions, priority queues, coalescing, wakeups, timers.

Owns every scheduling decision of the server (design.md section 3) and the binary protocol as a
server speaks it (reference/gearman-protocol.md, "the reference" below, sections 1 and 3). Admin
text lines are handed to :mod:`gear.server.admin`. Must not import sockets, asyncio, threads or
the network layer, and must not log on hot paths: this is a pure function of bytes, events and
``clock()``.

Interface with the network layer (notes/broker_iface.md; extended only additively):

* ``broker.connect(host, port, fd, ssl_subject)`` returns a :class:`Peer`; ``broker.feed(peer,
  data)`` for every chunk received; ``broker.disconnect(peer)`` once the socket is gone.
* Output accumulates in ``peer.out`` (encoded byte strings, in order) and every peer whose ``out``
  gained bytes is added to ``broker.dirty``. After each call into the broker (data, timers, store
  callbacks) the network layer writes ``b"".join(peer.out)`` for each dirty peer, clears ``out``
  and clears ``dirty``. ``peer.closing`` means: flush ``out``, then close. ``feed`` never raises
  for bad input.
* Timers: ``broker.next_deadline()`` (a ``clock()`` time, or None) and ``broker.run_timers()``.
* Durability: ``BrokerConfig.store(record, done)`` and ``BrokerConfig.remove(key)``. A new
  background job is stored before it is announced; until ``done`` is called it is not runnable
  and *every* byte for the submitting peer is held back in order (libgearman matches JOB_CREATED
  to submissions strictly in order, reference 1.3). ``done(None)`` releases it; ``done(exc)``
  forgets the job and answers ``ERROR QUEUE_ERROR`` in place of JOB_CREATED.
  Batched alternative (no callback and no store call per job, for the durable hot path):
  ``BrokerConfig.store_batched(records, jobs)``, called once at the end of each ``feed()`` that
  created durable jobs, answered by ``broker.stored_batch(jobs, exc)`` once per committed batch
  (any grouping and order; each job answered once).
* Extensions: ``BrokerConfig.max_packet_size`` / ``max_line_size`` (oversize input closes the
  connection), ``broker.functions`` / ``broker.peers`` (read by admin), ``broker.write`` /
  ``broker.close`` (used by admin), ``broker.cancel``, ``broker.getQueue()``,
  ``peer.related_jobs`` and ``peer.pending`` (stores not yet answered for that peer),
  ``broker.wake(function=None)`` (NOOP sleeping workers, for gear.Server.wakeConnections),
  ``broker.drain()`` / ``broker.draining`` / ``broker.running_count()`` (graceful shutdown:
  nothing new is handed out, running jobs finish, queued jobs stay queued and stored) and
  ``broker.version`` (admin ``version``: ``BrokerConfig.version`` or ``gear.__version__``).

Speed (this is the server's hot path): ``__slots__`` everywhere, a dispatch list indexed by packet
type, whole request packets dispatched straight from the received bytes (the protocol
``Decoder`` is used only for text lines, partial large packets and errors), O(1) queue and
lookup operations, and no logging. Submissions sent back to back are handled as one run by
``_submit_run``, the plain ones (no unique, no ACL, no storage, no queue limit) inline; a job
initialises only the fields every job uses (see :class:`Job`). ``bench/profile_server.py``
measures these paths in-process.

Decisions (design.md section 3; where gearmand 1.1 differs, the reference's "do not copy" list,
3.18, is followed):

* Priority is global across a worker's functions (gearmand 2.0): HIGH before NORMAL before LOW
  over all functions the worker can do, FIFO within a priority. Each function keeps one deque
  per priority; every queued job carries a sequence number, so the oldest head among the
  worker's functions is found by comparing heads: O(functions of the worker), never O(jobs).
* A job re-queued because its worker went away (disconnect, CANT_DO, RESET_ABILITIES) goes to
  the *front* of its priority (gearmand appends to the tail); it gets a sequence number smaller
  than any other, so it is also first across functions. ``job_retries`` counts attempts
  (gearmand ``-j``: N attempts, then WORK_FAIL; 0 = unlimited).
* CAN_DO_TIMEOUT: one independent timer per assigned job, armed at assignment (the value of the
  worker's latest CAN_DO/CAN_DO_TIMEOUT for that function), cancelled on any result, requeue or
  disconnect; on expiry the job FAILS (WORK_FAIL to its clients) and leaves the worker, whose
  later results get JOB_NOT_FOUND. PRE_SLEEP does not touch it (gearmand bug 3.18.5).
* Epoch jobs wait outside the queues until a real timer makes them runnable (appended to the
  NORMAL tail at their time, sleeping workers woken); they count as queued NORMAL jobs in
  ``prioritystatus``. Peek and take only look at the queues, so they always agree.
* Wakeups: each function keeps its sleeping workers in wake order. A new runnable job NOOPs the
  first ``worker_wakeup`` of them (all when 0); a woken worker leaves every sleeper list until it
  sends PRE_SLEEP again, so a connection gets at most one NOOP per sleep cycle and the longest
  sleepers are woken first (the ``-w N`` spreading). PRE_SLEEP with a runnable job gets an
  immediate NOOP (3.5). A sleeping worker that registers a function with runnable jobs is woken.
* Coalescing on (function, unique) while queued, held, waiting or running, foreground and
  background (3.2). Every attachment of a foreground submitter is kept (same connection twice
  gets every WORK_* twice, as gearmand). Empty unique never coalesces; unique ``-`` coalesces on
  the data (non-empty data only). A unique longer than ``max_unique_size`` is refused; every
  accepted unique is kept whole and coalesces (gearmand truncates a 64-byte one: bug 3.18.7).
* Last foreground client gone (3.7): a queued job is removed at once (gearmand leaves it counted
  until a GRAB reaps it); a running job keeps running and its results are dropped. A background
  submission coalesced onto a foreground job keeps it alive (gearmand loses it, 3.7 ⚠).
* Unknown packet types, bad magic, malformed layouts, a CAN_DO_TIMEOUT value longer than 20
  bytes, an out-of-range epoch, a GET_STATUS handle or GET_STATUS_UNIQUE unique of 64+ bytes and
  oversize input close the connection without a reply, as gearmand does (1.6). ``\\0RES`` magic
  on a valid type answers ERROR INVALID_MAGIC and keeps the connection (1.1).
* ACL (when ``config.acl`` is set): deny by default; CAN_DO/CAN_DO_TIMEOUT refused silently (as
  gear), SUBMIT* answered ``ERROR PERMISSION_DENIED\\0Permission denied by ACL``.
* Functions are never forgotten except by admin ``drop function`` (gearmand's ``status`` lists
  every function ever seen).
"""

from __future__ import annotations

import heapq
import re
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, ValuesView
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

from gear import constants as c
from gear.errors import ProtocolError
from gear.protocol.packets import REQ, RES, Decoder, Frame
from gear.server.storage.base import StoredJob

if TYPE_CHECKING:
    from gear.acl import ACL

__all__ = ["HIGH", "LOW", "NORMAL", "Broker", "BrokerConfig", "Function", "Job", "JobTable", "Peer"]

#: Internal priorities are gearmand's (and the store's) numbering: the index of the deque a job
#: waits in, most urgent first (reference 3.3).
HIGH = 0
NORMAL = 1
LOW = 2

# Job states.
QUEUED = 0  # in its function's deque: runnable
RUNNING = 1  # assigned to a worker
WAITING = 2  # epoch job before its time (timer pending)
HELD = 3  # background job whose store() has not called done() yet
DONE = 4  # forgotten

# Timer kinds.
_EPOCH = 0
_TIMEOUT = 1

_pack = struct.Struct("!4sII").pack
_new_tuple = tuple.__new__
_new_object = object.__new__
_unpack_from = struct.Struct("!4sII").unpack_from
_MAX_TYPE = c.MAX_TYPE
#: Largest partial packet the fast path of Broker.feed keeps for the next chunk; larger ones
#: go to the Decoder's growing buffer (no quadratic re-copying).
_REST_MAX = 64 * 1024
_RES = RES

StoreDone = Callable[[BaseException | None], None]


def _peers(waiters: Peer | list[Peer] | None) -> list[Peer] | tuple[Peer, ...]:
    """The peers of a HELD job's ``waiters`` field, as a sequence."""
    if waiters is None:
        return ()
    return waiters if isinstance(waiters, list) else (waiters,)


def _res(ptype: int, body: bytes) -> bytes:
    """A server packet (``\\0RES``) of type ``ptype``."""
    return _pack(_RES, ptype, len(body)) + body


def _error(code: bytes, text: bytes) -> bytes:
    return _res(c.ERROR, code + b"\x00" + text)


# ERROR packets, byte-exact (reference 1.6).
ERR_INVALID_MAGIC = _error(b"INVALID_MAGIC", b"Request magic expected")
ERR_INVALID_COMMAND = _error(b"INVALID_COMMAND", b"Command not expected")
ERR_UNIQUE_TOO_LARGE = _error(b"ARGUMENT_TOO_LARGE", b"Unique value too large")
ERR_HANDLE_TOO_LARGE = _error(
    b"ARGUMENT_TOO_LARGE",
    b"Error occurred due to GEARMAND_JOB_HANDLE_SIZE being too small from snprintf",
)
ERR_QUEUE_FULL = _error(b"QUEUE_ERROR", b"Job queue is full")
ERR_UNKNOWN_OPTION = _error(b"UNKNOWN_OPTION", b"Server does not recognize given option")
ERR_NOT_FOUND_RESULT = _error(b"JOB_NOT_FOUND", b"Job given in work result not found")
ERR_NOT_FOUND_DATA = _error(b"JOB_NOT_FOUND", b"Job does not exist on server")
ERR_NOT_FOUND_EXCEPTION = _error(
    b"JOB_NOT_FOUND", b"An exception was received for a job that does not exist"
)
ERR_ACL = _error(b"PERMISSION_DENIED", b"Permission denied by ACL")

NOOP = _res(c.NOOP, b"")
NO_JOB = _res(c.NO_JOB, b"")

#: gearmand's job-handle buffer is 64 bytes with the NUL (reference 1.2).
HANDLE_LIMIT = 64

_JOB_CREATED = c.JOB_CREATED
_WORK_FAIL = c.WORK_FAIL

_STRTOL = re.compile(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_LONG_MAX = 2**63 - 1
_LONG_MIN = -(2**63)


def strtol(text: bytes) -> int | None:
    """C ``strtol(text, NULL, 10)``: leading digits, 0 without any; None when it overflows."""
    m = _STRTOL.match(text)
    if m is None:
        return 0
    value = int(m.group(1))
    if value > _LONG_MAX or value < _LONG_MIN:
        return None
    return value


def atoi_u32(text: bytes) -> int:
    """What gearmand stores for a WORK_STATUS number: ``atoi`` cast to uint32 (reference 1.2)."""
    m = _STRTOL.match(text)
    if m is None:
        return 0
    # glibc's atoi is (int) strtol: clamped to the long range, then truncated.
    value = max(_LONG_MIN, min(_LONG_MAX, int(m.group(1))))
    return value & 0xFFFFFFFF


def _name(value: bytes) -> str:
    """A function name as the ACL sees it (str; undecodable bytes survive as escapes)."""
    return value.decode("utf-8", "surrogateescape")


@dataclass
class BrokerConfig:
    """Settings of one broker: the gearmand options that shape scheduling."""

    #: None -> ``b"H:" + hostname``; handles are ``prefix + b":" + n`` with n from 1 (3.1).
    handle_prefix: bytes | None = None
    #: gearmand ``-j``: maximum attempts before WORK_FAIL; 0 = unlimited (3.6).
    job_retries: int = 0
    #: gearmand ``-w``: NOOPs sent per new job; 0 = every sleeping worker (3.5).
    worker_wakeup: int = 0
    #: gearmand ``--exceptions``: every connection starts with the exceptions option (3.9).
    exceptions_default: bool = False
    #: A unique (or reducer) longer than this gets ERROR ARGUMENT_TOO_LARGE (1.2).
    max_unique_size: int = 64
    #: Admin ``version`` answer (without ``OK``); None answers this package's own version
    #: (``gear.__version__``), so ``gearadmin --server-version`` tells which server it reached.
    version: bytes | None = None
    #: Admin ``verbose`` answer (without ``OK``).
    verbose: bytes = b"ERROR"
    #: When set: deny by default; CAN_DO silently ignored, SUBMIT* answered with an ERROR, and
    #: ``cancel job`` / ``acl grant|revoke`` checked (gear-0.16-api.md 3.13.2).
    acl: ACL | None = None
    #: Durable background jobs: ``store(record, done)``; the job is announced and runnable only
    #: after ``done(None)``; ``done(exc)`` answers ERROR QUEUE_ERROR instead of JOB_CREATED.
    store: Callable[[StoredJob, StoreDone], None] | None = None
    #: Durable background jobs without a callback per job: ``store_batched(records, jobs)``
    #: once per ``feed()`` that created any (the lists are the store's to keep); the store
    #: answers with ``broker.stored_batch(jobs, exc)`` (one call per committed batch, on the
    #: broker's thread). Takes precedence over ``store`` when both are set.
    store_batched: Callable[[list[StoredJob], list[Job]], None] | None = None
    #: Write-behind delete of a stored job that finished (completed, failed, cancelled...).
    remove: Callable[[int], None] | None = None
    #: Extension (gear.Server.handlePacket): when set, every request packet goes to
    #: ``packet_hook(peer, ptype, body)`` instead of the broker's own handler (the hook calls
    #: ``broker.dispatch`` for that), including types the protocol does not define, which are
    #: framed by their header instead of closing the connection. No fast path is taken.
    packet_hook: Callable[[Peer, int, bytes], None] | None = None
    #: Extension: largest accepted packet body / admin line; larger input closes the connection.
    max_packet_size: int = 64 * 1024 * 1024
    max_line_size: int = 64 * 1024


class Peer:
    """The broker's view of one connection (attribute names follow gear's ServerConnection).

    The network layer reads ``out``, ``closing`` and the identity fields; everything else is the
    broker's state and must not be changed from outside.
    """

    __slots__ = (
        "abilities",
        "broker",
        "client_id",
        "client_jobs",
        "closing",
        "decoder",
        "exceptions",
        "fd",
        "functions",
        "gone",
        "held",
        "host",
        "noop_sent",
        "out",
        "pending",
        "port",
        "rest",
        "sleeping",
        "ssl_subject",
        "timeouts",
        "worker_jobs",
    )

    def __init__(
        self,
        host: str,
        port: int,
        fd: int,
        ssl_subject: str | None = None,
        decoder: Decoder | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.fd = fd
        self.ssl_subject = ssl_subject
        #: b"-" until SET_CLIENT_ID (shown by admin ``workers``).
        self.client_id = b"-"
        #: Registered function names in CAN_DO order, duplicates kept (gearmand does not de-dup,
        #: reference 1.4 #1); ``name in peer.functions`` works as with gear's set.
        self.functions: list[bytes] = []
        #: Encoded bytes to write, in order; the network layer joins, writes and clears it.
        self.out: list[bytes] = []
        #: Close after flushing ``out``.
        self.closing = False
        #: The OPTION_REQ ``exceptions`` flag (3.9).
        self.exceptions = False
        self.decoder = decoder if decoder is not None else Decoder()
        # A partial binary packet kept by Broker.feed's fast path.
        self.rest = b""
        # Distinct registered functions, in first-registration order (what take_job scans).
        self.abilities: list[Function] = []
        # Function name -> CAN_DO_TIMEOUT in ms from the latest registration (0 = none).
        self.timeouts: dict[bytes, int] = {}
        self.sleeping = False
        self.noop_sent = False
        # Jobs this connection runs as a worker, and foreground jobs it is attached to
        # (job -> number of attachments).
        self.worker_jobs: dict[Job, None] = {}
        self.client_jobs: dict[Job, int] = {}
        # Output held back while a store is pending (None when not holding): bytes, or a HELD
        # job standing for its JOB_CREATED / QUEUE_ERROR reply until its store answers.
        self.held: deque[bytes | Job] | None = None
        self.pending = 0
        self.gone = False
        #: The broker this connection belongs to (set by Broker.connect), for sendRaw.
        self.broker: Broker | None = None

    # gear ServerConnection compatibility, for gear.Server subclasses (broker thread only).
    def sendRaw(self, data: bytes) -> None:
        """Queue raw bytes for this connection, in order with everything else it is sent."""
        if self.broker is not None and not self.gone:
            self.broker.write(self, bytes(data))

    def sendPacket(self, packet: Any) -> None:
        """Queue a ``gear.Packet`` (anything with ``toBinary()``) for this connection."""
        self.sendRaw(packet.toBinary())

    @property
    def related_jobs(self) -> dict[bytes, Job]:
        """gear's ``ServerConnection.related_jobs``: handle -> job, as worker or client."""
        jobs = {job.handle: job for job in self.client_jobs}
        jobs.update((job.handle, job) for job in self.worker_jobs)
        return jobs

    def __repr__(self) -> str:
        return f"<Peer fd={self.fd} {self.host}:{self.port} id={self.client_id!r}>"


class _Timer:
    """A pending epoch start or CAN_DO_TIMEOUT expiry; ``job`` is None once cancelled."""

    __slots__ = ("job", "kind")

    def __init__(self, job: Job, kind: int) -> None:
        self.job: Job | None = job
        self.kind = kind


class Function:
    """One function name: its queues, counters, workers and limits."""

    __slots__ = (
        "by_data",
        "max_queue",
        "name",
        "queues",
        "running",
        "sleepers",
        "total",
        "uniques",
        "waiting",
        "workers",
    )

    def __init__(self, name: bytes) -> None:
        self.name = name
        #: One FIFO per priority, HIGH, NORMAL, LOW; only runnable jobs are in them.
        self.queues: tuple[deque[Job], deque[Job], deque[Job]] = (deque(), deque(), deque())
        #: Jobs of this function in memory, in any state (admin ``status`` TOTAL, maxqueue).
        self.total = 0
        #: Jobs assigned to a worker.
        self.running = 0
        #: Epoch jobs waiting for their time (NORMAL priority).
        self.waiting = 0
        #: CAN_DO registrations, duplicates counted (admin ``status`` WORKERS).
        self.workers = 0
        #: Sleeping workers that can do this function, in wake order.
        self.sleepers: dict[Peer, None] = {}
        #: unique -> job, and data -> job for unique ``-`` (3.2).
        self.uniques: dict[bytes, Job] = {}
        self.by_data: dict[bytes, Job] = {}
        #: maxqueue limits per priority (HIGH, NORMAL, LOW), None when never set (3.13).
        self.max_queue: list[int] | None = None

    def queued(self, priority: int) -> int:
        """Jobs waiting at ``priority`` (epoch jobs before their time count as NORMAL)."""
        n = len(self.queues[priority])
        return n + self.waiting if priority == NORMAL else n

    def __repr__(self) -> str:
        return f"<Function {self.name!r} total={self.total} running={self.running}>"


class Job:
    """One job in memory. Attribute names follow gear's ServerJob where it has one.

    Shaped for the submit hot path: the fields every job uses are slots set in ``__init__``; the
    fields few jobs ever change (status numbers, retries, timers, storage key, epoch time,
    reducer, flags) are class-level defaults, and a job that changes one gets its own value in
    a per-instance ``__dict__`` that CPython allocates only on that first write. A plain job
    thus costs 11 attribute stores and no dict instead of 21 stores (measured with
    bench/profile_server.py).
    """

    __slots__ = (
        "__dict__",
        "arguments",
        "background",
        "clients",
        "function",
        "handle",
        "name",
        "number",
        "priority",
        "seq",
        "state",
        "unique",
        "waiters",
        "worker",
    )

    # Rarely changed fields (see the class docstring); assigning one shadows the default.
    #: Epoch time of a SUBMIT_JOB_EPOCH job (0: none).
    when: int = 0
    #: The reducer of a SUBMIT_REDUCE_JOB* job.
    reducer: bytes | None = None
    #: Latest WORK_STATUS numbers (GET_STATUS, 3.10).
    numerator: int = 0
    denominator: int = 0
    #: Attempts so far (gearmand ``-j``, 3.6).
    retries: int = 0
    #: The pending epoch or CAN_DO_TIMEOUT timer.
    timer: _Timer | None = None
    #: Storage key when stored, else None.
    key: int | None = None
    #: A background submission coalesced onto this foreground job (keeps it alive).
    keep: bool = False
    #: Cancelled while running: results reach nobody, a requeue forgets it.
    ignore: bool = False
    #: The QUEUE_ERROR reply of a job whose store failed (its waiters' answer).
    refusal: bytes | None = None
    #: HELD jobs only (a slot never set on other jobs): the peers whose output waits for the
    #: store's answer, one entry per wait; a single submitter is stored bare (no list per job).
    waiters: Peer | list[Peer] | None

    def __init__(
        self,
        handle: bytes,
        number: int,
        function: Function,
        unique: bytes,
        arguments: bytes,
        priority: int,
        background: bool,
        seq: int = 0,
    ) -> None:
        self.handle = handle
        #: The handle's number: the job's key in the broker's job table.
        self.number = number
        self.function = function
        self.name = function.name
        self.unique = unique
        self.arguments = arguments
        self.priority = priority
        self.background = background
        #: Attached foreground clients, one entry per attachment (3.2). A background job starts
        #: with the shared empty tuple: one allocation (and one GC-tracked list) less per job on
        #: the background submit path; code that attaches a client replaces it with a list.
        self.clients: list[Peer] | tuple[()] = ()
        self.worker: Peer | None = None
        #: Queue order (see Broker._seq / Broker._front).
        self.seq = seq
        self.state = QUEUED

    # gear ServerJob compatibility (read-only views).
    @property
    def running(self) -> bool:
        return self.worker is not None

    @property
    def worker_connection(self) -> Peer | None:
        return self.worker

    @property
    def client_connection(self) -> Peer | None:
        return self.clients[0] if self.clients else None

    def __repr__(self) -> str:
        return f"<Job {self.handle!r} {self.name!r} unique={self.unique!r} state={self.state}>"


# SUBMIT types -> (priority, background) (reference 3.3).
_SUBMITS: dict[int, tuple[int, bool]] = {
    c.SUBMIT_JOB: (NORMAL, False),
    c.SUBMIT_JOB_BG: (NORMAL, True),
    c.SUBMIT_JOB_HIGH: (HIGH, False),
    c.SUBMIT_JOB_HIGH_BG: (HIGH, True),
    c.SUBMIT_JOB_LOW: (LOW, False),
    c.SUBMIT_JOB_LOW_BG: (LOW, True),
}

#: The same, indexed by packet type (a list index is cheaper than a dict lookup per job).
_SUBMIT_KIND: list[tuple[int, bool]] = [(NORMAL, False)] * (c.MAX_TYPE + 1)
for _ptype, _kind in _SUBMITS.items():
    _SUBMIT_KIND[_ptype] = _kind
del _ptype, _kind
#: The SUBMIT_JOB* types Broker._submit_run takes (indexed by type): the six without epoch
#: or reducer, plain (no unique) or not.
_RUN_SUBMIT: list[bool] = [ptype in _SUBMITS for ptype in range(c.MAX_TYPE + 1)]
#: The last three digits of a handle number >= 1000 (see Broker._submit_run).
_DIGITS3: list[bytes] = [b"%03d" % i for i in range(1000)]

Handler = Callable[[Peer, int, bytes], None]


class JobTable(Mapping[bytes, Job]):
    """``broker.jobs``: handle -> job for every job in memory, keyed inside by handle number.

    Every handle the broker makes is its prefix and a decimal number. Keyed by that number,
    the table's keys are consecutive integers, which hash to consecutive slots: inserting and
    deleting touch memory in order, where a million random byte-string hashes miss the CPU
    cache on nearly every job (measured: ~130 ns per insert at 2 million jobs). A handle is
    found only when it is exactly what the broker sends (the prefix, then digits without a
    leading zero); anything else, as in gearmand, is no job.
    """

    __slots__ = ("_plen", "_prefix", "by_number")

    def __init__(self, prefix: bytes) -> None:
        #: number -> job; the broker's own view, in creation order.
        self.by_number: dict[int, Job] = {}
        self._prefix = prefix
        self._plen = len(prefix)

    def number(self, handle: bytes) -> int | None:
        """The number of a handle of this table's form, else None."""
        if not handle.startswith(self._prefix):
            return None
        digits = handle[self._plen :]
        if not digits.isdigit() or digits[0] == 48 or len(digits) > 20:  # 48: b"0"
            return None
        return int(digits)

    def get(self, handle: bytes, default: Job | None = None) -> Job | None:  # type: ignore[override]
        n = self.number(handle)
        return default if n is None else self.by_number.get(n, default)

    def __getitem__(self, handle: bytes) -> Job:
        job = self.get(handle)
        if job is None:
            raise KeyError(handle)
        return job

    def __contains__(self, handle: object) -> bool:
        return isinstance(handle, bytes) and self.get(handle) is not None

    def __iter__(self) -> Iterator[bytes]:
        return (job.handle for job in self.by_number.values())

    def __len__(self) -> int:
        return len(self.by_number)

    def values(self) -> ValuesView[Job]:
        return self.by_number.values()

    def __repr__(self) -> str:
        return f"JobTable({len(self)} jobs)"


class Broker:
    """The scheduler. Every method runs on one thread (the event loop) and nothing blocks."""

    def __init__(self, config: BrokerConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        #: Peers whose ``out`` gained bytes since the network layer last flushed.
        self.dirty: set[Peer] = set()
        #: Set by admin ``shutdown``: None, "immediate" or "graceful".
        self.shutdown_requested: str | None = None
        #: name -> function, every function seen (in first-seen order).
        self.functions: dict[bytes, Function] = {}
        #: Every connected peer, in connect order.
        self.peers: dict[Peer, None] = {}
        prefix = config.handle_prefix
        if prefix is None:
            prefix = b"H:" + socket.gethostname().encode("utf-8", "replace")
        self.handle_prefix = prefix
        self._hprefix = prefix + b":"
        #: handle -> job, every job in memory (a read-only mapping; see JobTable).
        self.jobs = JobTable(self._hprefix)
        self._jobs = self.jobs.by_number
        # _submit_run's function before it has seen one (never queued to).
        self._no_function = Function(b"")
        self._counter = 0  # last handle number
        self._seq = 0  # queue order of normally queued jobs (grows)
        self._front = 0  # queue order of requeued jobs (shrinks: always first)
        self._next_key = 1
        self._timers: list[tuple[float, int, _Timer]] = []
        self._timer_seq = 0
        self._cancelled = 0
        self._wakeup = config.worker_wakeup
        self._retries = config.job_retries
        self._max_unique = config.max_unique_size
        self._acl = config.acl
        self._store = config.store
        self._store_batched = config.store_batched
        # Durable jobs created by the current feed(), handed to store_batched at its end.
        self._new_records: list[StoredJob] = []
        self._new_jobs: list[Job] = []
        self._durable = config.store is not None or config.store_batched is not None
        self._remove = config.remove
        # Submissions that need a check beyond the plain case leave _submit_run's fast path.
        self._checked = config.acl is not None or self._durable
        self._admin: Callable[[Broker, Peer, bytes], None] | None = None
        version = config.version
        if version is None:
            from gear import __version__

            version = __version__.encode()
        #: The admin ``version`` answer.
        self.version: bytes = version
        #: Draining for a graceful shutdown (:meth:`drain`): no job is handed out any more.
        self.draining = False
        handlers: list[Handler] = [self._h_closing] * (c.MAX_TYPE + 1)
        for ptype in (c.NOOP, c.JOB_CREATED, c.NO_JOB, c.JOB_ASSIGN, c.ECHO_RES, c.ERROR,
                      c.STATUS_RES, c.OPTION_RES, c.JOB_ASSIGN_UNIQ, c.JOB_ASSIGN_ALL,
                      c.STATUS_RES_UNIQUE, 5, c.ALL_YOURS):
            handlers[ptype] = self._h_invalid
        for ptype in _SUBMITS:
            handlers[ptype] = self._h_submit
        handlers[c.SUBMIT_JOB_EPOCH] = self._h_submit_epoch
        handlers[c.SUBMIT_JOB_SCHED] = self._h_submit_sched
        handlers[c.SUBMIT_REDUCE_JOB] = self._h_submit_reduce
        handlers[c.SUBMIT_REDUCE_JOB_BACKGROUND] = self._h_submit_reduce
        handlers[c.CAN_DO] = self._h_can_do
        handlers[c.CAN_DO_TIMEOUT] = self._h_can_do_timeout
        handlers[c.CANT_DO] = self._h_cant_do
        handlers[c.RESET_ABILITIES] = self._h_reset_abilities
        handlers[c.PRE_SLEEP] = self._h_pre_sleep
        handlers[c.GRAB_JOB] = self._h_grab
        handlers[c.GRAB_JOB_UNIQ] = self._h_grab
        handlers[c.GRAB_JOB_ALL] = self._h_grab
        handlers[c.WORK_STATUS] = self._h_work_status
        handlers[c.WORK_COMPLETE] = self._h_work_complete
        handlers[c.WORK_FAIL] = self._h_work_fail
        handlers[c.WORK_EXCEPTION] = self._h_work_exception
        handlers[c.WORK_DATA] = self._h_work_data
        handlers[c.WORK_WARNING] = self._h_work_data
        handlers[c.GET_STATUS] = self._h_get_status
        handlers[c.GET_STATUS_UNIQUE] = self._h_get_status_unique
        handlers[c.ECHO_REQ] = self._h_echo
        handlers[c.OPTION_REQ] = self._h_option
        handlers[c.SET_CLIENT_ID] = self._h_set_client_id
        self._handlers = handlers
        self._packet_hook = config.packet_hook

    # ------------------------------------------------------------------ connections

    def connect(self, host: str, port: int, fd: int, ssl_subject: str | None = None) -> Peer:
        """A new connection; returns its :class:`Peer`."""
        config = self.config
        peer = Peer(host, port, fd, ssl_subject,
                    Decoder(config.max_packet_size, config.max_line_size,
                            unknown_types=self._packet_hook is not None))
        peer.exceptions = config.exceptions_default
        peer.broker = self
        self.peers[peer] = None
        return peer

    def disconnect(self, peer: Peer) -> None:
        """The connection is gone: requeue the jobs it runs, detach it from its jobs (3.6, 3.7).

        Safe to call twice. Output still in ``peer.out`` or held is dropped.
        """
        if peer.gone:
            return
        peer.gone = True
        self.peers.pop(peer, None)
        self.dirty.discard(peer)
        peer.held = None
        self._unsleep(peer)
        for f in peer.abilities:
            f.workers -= peer.functions.count(f.name)
        peer.abilities = []
        peer.functions = []
        peer.timeouts = {}
        # Detach as a client first, so that a job it both submitted and ran (or one failed by
        # the retry limit) never writes to this gone peer.
        for job in list(peer.client_jobs):
            self._detach_client(job, peer)
        for job in list(peer.worker_jobs):
            self._requeue(job)

    # ------------------------------------------------------------------ input

    def feed(self, peer: Peer, data: bytes) -> None:
        """Handle every packet and admin line completed by ``data`` (``bytes``, any chunking).

        Never raises for bad input: protocol errors answer like gearmand and set
        ``peer.closing``; input after that is ignored.
        """
        try:
            self._feed(peer, data)
        finally:  # even after a bug in a handler: no created job may wait for a later feed
            if self._new_jobs:
                self._flush_stores()

    def _flush_stores(self) -> None:
        """Hand the durable jobs of this feed to ``store_batched`` in one call."""
        records, self._new_records = self._new_records, []
        jobs, self._new_jobs = self._new_jobs, []
        store = self._store_batched
        assert store is not None
        try:
            store(records, jobs)
        except Exception as exc:  # a store that fails at once answers like a failed commit
            self.stored_batch(jobs, exc)

    def _feed(self, peer: Peer, data: bytes) -> None:
        if peer.closing or peer.gone:
            return
        handlers = self._handlers
        decoder = peer.decoder
        hook = self._packet_hook
        if not decoder.buffered and hook is None:
            # Fast path: complete request packets are dispatched in place, without the
            # Decoder's per-event objects, and a small partial packet at the end waits in
            # peer.rest. Anything else (text, RES magic, a bad header, a large partial packet)
            # goes to the Decoder, which owns every framing rule and error (reference 1.1).
            rest = peer.rest
            if rest:
                data = rest + data
                peer.rest = b""
            n = len(data)
            pos = 0
            limit = decoder.max_packet_size
            while n - pos >= 12 and data[pos] == 0:
                magic, ptype, size = _unpack_from(data, pos)
                if magic != REQ or not 0 < ptype <= _MAX_TYPE or size > limit:
                    break
                end = pos + 12 + size
                if end > n:
                    if size <= _REST_MAX:
                        peer.rest = data[pos:]
                        return
                    break
                if _RUN_SUBMIT[ptype]:
                    # A pipelined client sends submissions back to back: take the whole run.
                    after = self._submit_run(peer, data, pos, n)
                    if after != pos:
                        pos = after
                        continue
                handlers[ptype](peer, ptype, data[pos + 12 : end])
                pos = end
                if peer.closing:
                    return
            if pos == n:
                return
            if n - pos < 12 and data[pos] == 0:
                peer.rest = data[pos:]
                return
            if pos:
                data = data[pos:]
        try:
            for event in decoder.feed(data):
                if isinstance(event, Frame):
                    if event.magic != REQ:
                        # A valid type with RES magic: answer, keep the connection (1.1).
                        self._write(peer, ERR_INVALID_MAGIC)
                    elif hook is None:
                        handlers[event.ptype](peer, event.ptype, event.body)
                    else:
                        hook(peer, event.ptype, event.body)
                else:
                    self._admin_line(peer, event.line)
                if peer.closing:
                    break
        except ProtocolError:
            # Bad magic, unknown type, oversize: gearmand closes without a reply (1.6).
            peer.closing = True
            self.dirty.add(peer)

    def dispatch(self, peer: Peer, ptype: int, body: bytes) -> bool:
        """The broker's own handling of one request packet from ``peer``: what ``feed`` does
        for it without a ``packet_hook`` (the default a hook delegates to). Returns False,
        doing nothing, for a type the protocol does not define."""
        if not 0 < ptype <= _MAX_TYPE:
            return False
        self._handlers[ptype](peer, ptype, body)
        return True

    def _admin_line(self, peer: Peer, line: bytes) -> None:
        admin = self._admin
        if admin is None:
            from gear.server.admin import handle_line

            admin = self._admin = handle_line
        admin(self, peer, line)

    # ------------------------------------------------------------------ output

    def _write(self, peer: Peer, data: bytes) -> None:
        """Queue ``data`` for ``peer``, behind any output held for a pending store."""
        held = peer.held
        if held is None:
            peer.out.append(data)
            self.dirty.add(peer)
        else:
            held.append(data)

    def write(self, peer: Peer, data: bytes) -> None:
        """Queue raw bytes for ``peer`` in order (used by the admin module)."""
        self._write(peer, data)

    def close(self, peer: Peer) -> None:
        """Close ``peer`` after what is queued for it (malformed input, admin 6-token lines)."""
        peer.closing = True
        self.dirty.add(peer)

    def _hold(self, peer: Peer, job: Job) -> None:
        """Hold ``peer``'s output from here until ``job`` (HELD) is answered by its store.

        The job itself is the placeholder in the held deque: no object per waiter. Its reply is
        JOB_CREATED once it left HELD, or ``job.refusal`` when its store failed.
        """
        held = peer.held
        if held is None:
            held = peer.held = deque()
        held.append(job)
        peer.pending += 1

    def _release(self, peer: Peer) -> None:
        """Move ``peer``'s held output to ``out`` up to the first job still HELD."""
        held = peer.held
        if held is None:  # disconnected, or released already in this batch
            return
        out = peer.out
        n = len(out)
        while held:
            item = held[0]
            if type(item) is bytes:
                out.append(item)
            else:
                assert isinstance(item, Job)
                if item.state == HELD:
                    break
                refusal = item.refusal
                if refusal is None:
                    handle = item.handle
                    out.append(_pack(_RES, _JOB_CREATED, len(handle)) + handle)
                else:
                    out.append(refusal)
            held.popleft()
        if not held:
            peer.held = None
        if len(out) != n:
            self.dirty.add(peer)

    def _send_clients(self, job: Job, packet: bytes) -> None:
        for client in job.clients:
            held = client.held
            if held is None:
                client.out.append(packet)
                self.dirty.add(client)
            else:
                held.append(packet)

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """``clock()`` time of the earliest pending timer, or None."""
        heap = self._timers
        while heap and heap[0][2].job is None:
            heapq.heappop(heap)
            self._cancelled -= 1
        return heap[0][0] if heap else None

    def run_timers(self) -> None:
        """Fire every timer due at ``clock()``: epoch jobs become runnable, timeouts fail jobs."""
        heap = self._timers
        if not heap:
            return
        now = self.clock()
        pop = heapq.heappop
        while heap and heap[0][0] <= now:
            timer = pop(heap)[2]
            job = timer.job
            if job is None:
                self._cancelled -= 1
                continue
            job.timer = None
            if timer.kind == _EPOCH:
                if job.state == WAITING:
                    job.function.waiting -= 1
                    self._enqueue(job)
            elif job.state == RUNNING:
                # CAN_DO_TIMEOUT expired: the job fails and the worker's slot is freed (3.8,
                # design.md); the worker is not told, its late results get JOB_NOT_FOUND.
                worker = job.worker
                assert worker is not None
                del worker.worker_jobs[job]
                job.function.running -= 1
                job.worker = None
                self._fail(job)

    def _add_timer(self, deadline: float, job: Job, kind: int) -> None:
        self._timer_seq += 1
        timer = job.timer = _Timer(job, kind)
        # The unique sequence number breaks ties, so timers themselves are never compared.
        heapq.heappush(self._timers, (deadline, self._timer_seq, timer))

    def _cancel_timer(self, job: Job) -> None:
        timer = job.timer
        if timer is not None:
            timer.job = None  # lazily deleted: skipped when it reaches the top of the heap
            job.timer = None
            self._cancelled += 1
            heap = self._timers
            # Compact when cancelled entries dominate (finished jobs with a long timeout).
            if self._cancelled > 1024 and self._cancelled * 2 > len(heap):
                heap[:] = [e for e in heap if e[2].job is not None]
                heapq.heapify(heap)
                self._cancelled = 0

    def _check_timers(self) -> None:
        heap = self._timers
        if heap and heap[0][0] <= self.clock():
            self.run_timers()

    # ------------------------------------------------------------------ queues

    def get_function(self, name: bytes) -> Function:
        """The function ``name``, created if new (admin ``create function``, CAN_DO, replay)."""
        f = self.functions.get(name)
        if f is None:
            f = self.functions[name] = Function(name)
        return f

    def _enqueue(self, job: Job) -> None:
        """Append a job to the tail of its priority and wake workers."""
        self._seq += 1
        job.seq = self._seq
        job.state = QUEUED
        f = job.function
        f.queues[job.priority].append(job)
        if f.sleepers:
            self._wake(f)

    def wake(self, function: bytes | None = None) -> int:
        """NOOP the sleeping workers of ``function`` (of every function when None), following
        the ``worker_wakeup`` rule per function; returns how many were woken.

        For code that holds jobs back in an overriding :meth:`take_job` (gear.Server's
        ``wakeConnections``, used by Zuul): workers that went to sleep on NO_JOB come back and
        ask again. Nothing is sent while draining (no job would be handed out).
        """
        if function is None:
            functions = list(self.functions.values())
        else:
            f = self.functions.get(function)
            functions = [f] if f is not None else []
        woken = 0
        for f in functions:
            if f.sleepers:
                woken += self._wake(f)
        return woken

    def drain(self) -> None:
        """Start draining for a graceful shutdown (irreversible for this broker).

        From now on no job is handed out (:meth:`take_job` is not even asked, so an override
        cannot hand one out either): GRAB_JOB* gets NO_JOB, PRE_SLEEP just sleeps and no NOOP
        is sent. Running jobs go on and their results are delivered as
        usual; queued background jobs stay queued (and stored), so a durable queue hands them
        out at the next start. New submissions are still accepted and queued (a client is never
        refused on the way down). Wait for :meth:`running_count` to reach 0.
        """
        self.draining = True

    def running_count(self) -> int:
        """Jobs assigned to a worker right now (graceful shutdown waits for 0)."""
        return sum(f.running for f in self.functions.values())

    def _wake(self, f: Function) -> int:
        """NOOP the first ``worker_wakeup`` sleepers of ``f`` (all when 0): 3.5."""
        if self.draining:
            return 0  # nothing would be handed out: let them sleep
        sleepers = f.sleepers
        n = self._wakeup
        peers = list(sleepers) if n <= 0 or n >= len(sleepers) else list(islice(sleepers, n))
        for peer in peers:
            self._unsleep(peer)
            peer.noop_sent = True
            self._write(peer, NOOP)
        return len(peers)

    def _unsleep(self, peer: Peer) -> None:
        if peer.sleeping:
            peer.sleeping = False
            for f in peer.abilities:
                f.sleepers.pop(peer, None)

    def take_job(self, peer: Peer, peek: bool = False) -> Job | None:
        """The next job for worker ``peer``: HIGH, then NORMAL, then LOW over all its functions,
        oldest first. Unless ``peek``, the job leaves its queue and is assigned to ``peer``.

        This is the one place that chooses a worker's next job (gear's getJobForConnection);
        a subclass may override it, returning a queued job of one of the peer's functions.
        """
        abilities = peer.abilities
        best: Job | None = None
        if len(abilities) == 1:
            for queue in abilities[0].queues:
                if queue:
                    best = queue[0]
                    break
        else:
            for p in (HIGH, NORMAL, LOW):
                seq = 0
                for f in abilities:
                    queue = f.queues[p]
                    if queue:
                        head = queue[0]
                        if best is None or head.seq < seq:
                            best = head
                            seq = head.seq
                if best is not None:
                    break
        if best is None or peek:
            return best
        self._assign(best, peer)
        return best

    def _assign(self, job: Job, peer: Peer) -> None:
        f = job.function
        queue = f.queues[job.priority]
        if queue[0] is job:
            queue.popleft()
        else:  # an overriding take_job chose a job deeper in the queue
            queue.remove(job)
        job.state = RUNNING
        job.worker = peer
        f.running += 1
        peer.worker_jobs[job] = None
        timeouts = peer.timeouts
        if timeouts:
            ms = timeouts.get(job.name)
            if ms:
                self._add_timer(self.clock() + ms / 1000.0, job, _TIMEOUT)

    def _drop_unique(self, job: Job) -> None:
        """Stop coalescing onto ``job``."""
        unique = job.unique
        if unique:
            f = job.function
            if unique == b"-":
                if f.by_data.get(job.arguments) is job:
                    del f.by_data[job.arguments]
            elif f.uniques.get(unique) is job:
                del f.uniques[unique]

    def _forget(self, job: Job) -> None:
        """Remove a job from memory (any state but RUNNING-with-worker) and from its store."""
        job.state = DONE
        job.function.total -= 1
        del self._jobs[job.number]
        if job.unique:
            self._drop_unique(job)
        for client in job.clients:
            client.client_jobs.pop(job, None)
        if job.timer is not None:
            self._cancel_timer(job)
        key = job.key
        if key is not None and self._remove is not None:
            self._remove(key)

    def _release_worker(self, job: Job) -> None:
        worker = job.worker
        if worker is not None:
            del worker.worker_jobs[job]
            job.function.running -= 1
            job.worker = None

    def _fail(self, job: Job) -> None:
        """Finish a job as failed: WORK_FAIL (the handle, no NUL: 3.9, 1.3) to its clients."""
        if job.clients:
            self._send_clients(job, _res(_WORK_FAIL, job.handle))
        self._forget(job)

    def _requeue(self, job: Job) -> None:
        """The worker let go of a running job (disconnect, CANT_DO): back to the front (3.6)."""
        self._release_worker(job)
        if job.timer is not None:
            self._cancel_timer(job)
        job.numerator = job.denominator = 0
        job.retries += 1
        if job.ignore or not (job.clients or job.background or job.keep):
            self._forget(job)  # cancelled, or nobody waits for it any more (3.7)
            return
        if self._retries and job.retries >= self._retries:
            self._fail(job)
            return
        self._front -= 1
        job.seq = self._front
        job.state = QUEUED
        f = job.function
        f.queues[job.priority].appendleft(job)
        if f.sleepers:
            self._wake(f)

    def _detach_client(self, job: Job, peer: Peer) -> None:
        """Client ``peer`` disconnected: drop all its attachments to ``job`` (3.7)."""
        job.clients = [p for p in job.clients if p is not peer]
        peer.client_jobs.pop(job, None)
        if job.clients or job.background or job.keep:
            return
        if job.state == QUEUED:
            job.function.queues[job.priority].remove(job)
            self._forget(job)
        # A running job goes on; its results reach nobody and it is forgotten when it ends.

    def cancel(self, job: Job) -> bool:
        """Admin ``cancel job``: WORK_FAIL to its clients, deleted from its queue and store (2.2).

        A queued or waiting job is forgotten at once (gearmand leaves it counted until a GRAB
        reaps it). A running job is not stopped: its clients get WORK_FAIL and are detached, it
        stops coalescing, and it stays counted as running until its worker finishes (results
        reach nobody) or goes away (no requeue). A job whose store is pending, or that is
        already cancelled, cannot be cancelled: returns False.
        """
        state = job.state
        if state == HELD or job.ignore:
            return False
        if state == QUEUED:
            job.function.queues[job.priority].remove(job)
        elif state == WAITING:
            job.function.waiting -= 1
        elif state == RUNNING:
            if job.clients:
                self._send_clients(job, _res(_WORK_FAIL, job.handle))
            for client in job.clients:
                client.client_jobs.pop(job, None)
            job.clients = ()
            job.ignore = True
            self._drop_unique(job)
            key = job.key
            if key is not None:
                job.key = None
                if self._remove is not None:
                    self._remove(key)
            return True
        self._fail(job)
        return True

    # ------------------------------------------------------------------ submissions

    def _submit(
        self,
        peer: Peer,
        name: bytes,
        unique: bytes,
        data: bytes,
        priority: int,
        background: bool,
        when: int = 0,
        reducer: bytes | None = None,
    ) -> None:
        if len(unique) > self._max_unique:
            self._write(peer, ERR_UNIQUE_TOO_LARGE)
            return
        acl = self._acl
        if acl is not None and not acl.canInvoke(peer.ssl_subject, _name(name)):
            self._write(peer, ERR_ACL)
            return
        f = self.functions.get(name)
        if f is None:
            f = self.functions[name] = Function(name)
        if unique:
            if unique == b"-":  # coalesce on the data (3.2)
                existing = f.by_data.get(data) if data else None
            else:
                existing = f.uniques.get(unique)
            if existing is not None:
                self._coalesce(peer, existing, background)
                return
        limits = f.max_queue
        if limits is not None:
            limit = limits[priority]
            if limit and f.total >= limit:  # the function's total, all priorities (3.13)
                self._write(peer, ERR_QUEUE_FULL)
                return
        self._counter = n = self._counter + 1
        handle = b"%s%d" % (self._hprefix, n)
        job = Job(handle, n, f, unique, data, priority, background)
        self._jobs[n] = job
        f.total += 1
        if unique:
            if unique == b"-":
                if data:
                    f.by_data[data] = job
            else:
                f.uniques[unique] = job
        if reducer is not None:
            job.reducer = reducer
        if when:
            job.when = when
        if not background:
            job.clients = [peer]
            peer.client_jobs[job] = 1
        elif self._durable:
            self._store_job(peer, job)
            return
        created = _pack(_RES, _JOB_CREATED, len(handle)) + handle
        held = peer.held
        if held is None:
            peer.out.append(created)
            self.dirty.add(peer)
        else:
            held.append(created)
        if when:
            self._start(job)
            return
        # Inline _enqueue: the hot path of every submission.
        self._seq = seq = self._seq + 1
        job.seq = seq
        f.queues[priority].append(job)
        if f.sleepers:
            self._wake(f)

    def _start(self, job: Job) -> None:
        """A new (or stored) job enters the scheduler: waiting for its time, or queued."""
        when = job.when
        if when and when > self.clock():
            job.state = WAITING
            job.function.waiting += 1
            self._add_timer(float(when), job, _EPOCH)
        else:
            self._enqueue(job)

    def _coalesce(self, peer: Peer, job: Job, background: bool) -> None:
        """Attach a submission to an existing job; new data and priority are discarded (3.2)."""
        if background:
            if not job.background:
                job.keep = True
        else:
            clients = job.clients
            if clients:
                clients.append(peer)  # non-empty: always a list
            else:
                job.clients = [peer]
            peer.client_jobs[job] = peer.client_jobs.get(job, 0) + 1
        if job.state == HELD:
            waiters = job.waiters
            if type(waiters) is list:
                waiters.append(peer)
            else:
                assert isinstance(waiters, Peer)
                job.waiters = [waiters, peer]
            self._hold(peer, job)
        else:
            self._write(peer, _res(_JOB_CREATED, job.handle))

    def _store_job(self, peer: Peer, job: Job) -> None:
        key = self._next_key
        self._next_key = key + 1
        job.key = key
        job.state = HELD
        job.waiters = peer
        held = peer.held
        if held is None:
            held = peer.held = deque()
        held.append(job)  # inline _hold: the job is its submitter's placeholder
        peer.pending += 1
        # tuple.__new__ straight from C: StoredJob's generated __new__ is a Python function.
        record = _new_tuple(StoredJob, (key, job.name, job.unique, job.arguments, job.priority,
                                        job.when))
        if self._store_batched is not None:
            # Stored at the end of this feed(), with the rest of its batch (see feed).
            self._new_records.append(record)
            self._new_jobs.append(job)
            return
        store = self._store
        assert store is not None

        def done(exc: BaseException | None, job: Job = job) -> None:
            self.stored_batch((job,), exc)

        try:
            store(record, done)
        except Exception as exc:  # a store that fails at once answers like a failed commit
            self.stored_batch((job,), exc)

    def stored_batch(self, jobs: Iterable[Job], exc: BaseException | None) -> None:
        """The store answered for ``jobs`` (``store_batched``): announce and run them, or
        forget them with ERROR QUEUE_ERROR when ``exc`` is set. A job answered twice, or no
        longer HELD, is ignored. Output of every waiting peer is released in order."""
        touched: dict[Peer, None] = {}
        if exc is not None:
            reason = str(exc).encode("utf-8", "replace") or type(exc).__name__.encode()
            reply = _error(b"QUEUE_ERROR", reason)
            for job in jobs:
                if job.state != HELD:
                    continue
                waiters = job.waiters
                job.waiters = None
                job.refusal = reply
                job.key = None  # never stored: nothing to remove
                self._forget(job)
                job.clients = ()
                for peer in _peers(waiters):
                    peer.pending -= 1
                    touched[peer] = None
        else:
            seq = self._seq
            for job in jobs:
                if job.state != HELD:
                    continue
                waiters = job.waiters
                job.waiters = None
                if job.when:
                    self._seq = seq
                    self._start(job)
                    seq = self._seq
                else:  # inline _enqueue (the common case)
                    seq += 1
                    job.seq = seq
                    job.state = QUEUED
                    f = job.function
                    f.queues[job.priority].append(job)
                    if f.sleepers:
                        self._seq = seq
                        self._wake(f)
                        seq = self._seq
                if type(waiters) is Peer:
                    waiters.pending -= 1
                    touched[waiters] = None
                else:
                    for peer in _peers(waiters):
                        peer.pending -= 1
                        touched[peer] = None
            self._seq = seq
        for peer in touched:
            self._release(peer)

    def replay(self, jobs: Iterable[StoredJob]) -> None:
        """Queue stored jobs at start, before any connection (3.15, 4).

        A stored job whose (function, unique) is already replayed is coalesced onto it and its
        duplicate record removed. Later keys are above every stored key.
        """
        for record in jobs:
            if record.key >= self._next_key:
                self._next_key = record.key + 1
            f = self.get_function(record.function)
            unique = record.unique
            existing = None
            if unique == b"-":
                existing = f.by_data.get(record.data) if record.data else None
            elif unique:
                existing = f.uniques.get(unique)
            if existing is not None:
                if self._remove is not None:
                    self._remove(record.key)
                continue
            self._counter = n = self._counter + 1
            handle = b"%s%d" % (self._hprefix, n)
            priority = record.priority if record.priority in (HIGH, NORMAL, LOW) else NORMAL
            job = Job(handle, n, f, unique, record.data, priority, True)
            job.key = record.key
            job.when = record.when
            self._jobs[n] = job
            f.total += 1
            if unique == b"-":
                if record.data:
                    f.by_data[record.data] = job
            elif unique:
                f.uniques[unique] = job
            self._start(job)

    # ------------------------------------------------------------------ packet handlers
    # Each takes (peer, packet type, body). A layout that does not split into the type's
    # fields closes the connection silently, as gearmand's desync does (1.1, 1.6).

    def _h_closing(self, peer: Peer, ptype: int, body: bytes) -> None:
        self.close(peer)

    def _h_invalid(self, peer: Peer, ptype: int, body: bytes) -> None:
        # Response-only, unused (5) and ALL_YOURS types (1.4).
        self._write(peer, ERR_INVALID_COMMAND)

    def _h_submit(self, peer: Peer, ptype: int, body: bytes) -> None:
        # Reached for a submission the fast path did not take: the Decoder's (see _feed) or
        # a bad one. Pipelined submissions are handled by _submit_run.
        parts = body.split(b"\x00", 2)
        if len(parts) != 3:
            self.close(peer)
            return
        name, unique, data = parts
        priority, background = _SUBMIT_KIND[ptype]
        self._submit(peer, name, unique, data, priority, background)

    def _submit_run(self, peer: Peer, data: bytes, pos: int, n: int) -> int:
        """Submissions back to back in ``data`` from ``pos``: handle them; returns the position
        of the first packet not taken (``pos`` when none was).

        The hot path of a pipelined client (the background bench load sends hundreds of
        submissions per read). Takes every complete, well-formed SUBMIT_JOB{,_HIGH,_LOW}{,_BG};
        the first other packet (or a bad one) ends the run and goes through the general
        dispatch, which owns every error. The plain case (no unique, a known function without
        a queue limit, no ACL and no storage) is ``_submit`` inlined; anything else is handed
        to ``_submit`` itself. What makes the plain case cheap:

        * The broker's fields are held in locals for the run.
        * A client pipelining submissions sends the same function and packet type again and
          again: once a plain packet was seen, a packet of the same type whose body starts with
          the same ``name\\0\\0`` (same function, empty unique) is known to be plain too, and
          only its data is sliced out (no split, no lookups).
        * Handles are made without formatting a number per job: ``base`` is the prefix and the
          handle number without its last three digits, and ``_DIGITS3`` holds those digits.
          The handles of one ``base`` have one length, so their JOB_CREATED replies share one
          header and are written with one ``join`` when the base changes or the run ends.
        * ``Job.__init__`` is inlined (no Python frame per job; a test checks that both make
          the same job).
        """
        functions = self.functions
        jobs = self._jobs
        new_job = _new_object
        limit = peer.decoder.max_packet_size
        # Conditions that hold for the whole run (nothing in it can change them).
        plain = not self._checked and peer.held is None
        counter = self._counter
        seq = self._seq
        # The last plain packet: its type and leading body bytes, and what they decide.
        lead_type = 0
        lead = b""
        lead_size = 0
        skip = 0  # header and lead: where the data starts
        f = self._no_function
        priority = NORMAL
        background = True
        unused: list[Job] = []
        queue_append = unused.append  # the deque of the last plain packet
        base = b""
        head = b""
        next_base = 0  # the first number past the current base (0: no base yet)
        made: list[bytes] = []  # handles made since `head` changed, replies not yet written
        add = made.append
        try:
            while n - pos >= 12:
                magic, ptype, size = _unpack_from(data, pos)
                end = pos + 12 + size
                if end > n or magic != REQ or size > limit:
                    break
                # A slice compared, not bytes.startswith(lead, start, end): that parses its
                # arguments the slow way (measured: 7% of a background submit).
                if ptype == lead_type and size >= lead_size and data[pos + 12 : pos + skip] == lead:
                    arguments = data[pos + skip : end]
                else:
                    if ptype > _MAX_TYPE or not _RUN_SUBMIT[ptype]:
                        break
                    parts = data[pos + 12 : end].split(b"\x00", 2)
                    if len(parts) != 3:
                        break
                    name, unique, arguments = parts
                    priority, background = _SUBMIT_KIND[ptype]
                    known = functions.get(name)
                    if (unique or known is None or not plain or known.max_queue is not None
                            or counter < 999):
                        # The general case, in order after the replies of the jobs before.
                        pos = end
                        lead_type = 0
                        next_base = 0
                        self._counter = counter
                        self._seq = seq
                        if made:
                            peer.out.append(head + head.join(made))
                            made.clear()
                            self.dirty.add(peer)
                        self._submit(peer, name, unique, arguments, priority, background)
                        counter = self._counter
                        seq = self._seq
                        continue
                    f = known
                    lead_type = ptype
                    lead = name + b"\x00\x00"
                    lead_size = len(lead)
                    skip = 12 + lead_size
                    queue_append = f.queues[priority].append
                pos = end
                counter += 1
                if counter >= next_base:
                    if made:
                        peer.out.append(head + head.join(made))
                        made.clear()
                        self.dirty.add(peer)
                    thousands = counter // 1000
                    base = b"%s%d" % (self._hprefix, thousands)
                    head = _pack(_RES, _JOB_CREATED, len(base) + 3)
                    next_base = (thousands + 1) * 1000
                handle = base + _DIGITS3[counter % 1000]
                add(handle)
                seq += 1
                job = new_job(Job)
                job.handle = handle
                job.number = counter
                job.function = f
                job.name = f.name
                job.unique = b""
                job.arguments = arguments
                job.priority = priority
                job.background = background
                job.clients = ()
                job.worker = None
                job.seq = seq
                job.state = QUEUED
                jobs[counter] = job
                f.total += 1
                if not background:
                    job.clients = [peer]
                    peer.client_jobs[job] = 1
                queue_append(job)
                if f.sleepers:
                    # Wake-ups go out after the replies of the jobs before (the order of one
                    # packet at a time, when the submitter is itself a sleeping worker).
                    self._counter = counter
                    self._seq = seq
                    peer.out.append(head + head.join(made))
                    made.clear()
                    self.dirty.add(peer)
                    self._wake(f)
        finally:
            self._counter = counter
            self._seq = seq
            if made:
                peer.out.append(head + head.join(made))
                self.dirty.add(peer)
        return pos

    def _h_submit_epoch(self, peer: Peer, ptype: int, body: bytes) -> None:
        parts = body.split(b"\x00", 3)
        if len(parts) != 4:
            self.close(peer)
            return
        when = strtol(parts[2])
        if when is None:  # strtoll overflow drops the connection (3.12)
            self.close(peer)
            return
        self._submit(peer, parts[0], parts[1], parts[3], NORMAL, True, max(when, 0))

    def _h_submit_sched(self, peer: Peer, ptype: int, body: bytes) -> None:
        # Parsed, then refused: gearmand never implemented it (1.4 #35).
        if len(body.split(b"\x00", 7)) != 8:
            self.close(peer)
            return
        self._write(peer, ERR_INVALID_COMMAND)

    def _h_submit_reduce(self, peer: Peer, ptype: int, body: bytes) -> None:
        parts = body.split(b"\x00", 4)  # function, unique, reducer, aggregator, data (1.4 #37)
        if len(parts) != 5:
            self.close(peer)
            return
        reducer = parts[2]
        if len(reducer) > self._max_unique:
            self._write(peer, ERR_UNIQUE_TOO_LARGE)
            return
        background = ptype == c.SUBMIT_REDUCE_JOB_BACKGROUND
        self._submit(peer, parts[0], parts[1], parts[4], NORMAL, background, 0, reducer)

    def _register(self, peer: Peer, name: bytes, timeout_ms: int) -> None:
        acl = self._acl
        if acl is not None and not acl.canRegister(peer.ssl_subject, _name(name)):
            return  # gear ignores a denied registration silently
        f = self.get_function(name)
        peer.functions.append(name)
        f.workers += 1
        if f not in peer.abilities:
            peer.abilities.append(f)
        if timeout_ms > 0:
            peer.timeouts[name] = max(timeout_ms, 1000)  # minimum 1000 ms (3.8)
        else:
            peer.timeouts.pop(name, None)
        if peer.sleeping:
            if not self.draining and (f.queues[HIGH] or f.queues[NORMAL] or f.queues[LOW]):
                self._unsleep(peer)
                peer.noop_sent = True
                self._write(peer, NOOP)
            else:
                f.sleepers[peer] = None

    def _h_can_do(self, peer: Peer, ptype: int, body: bytes) -> None:
        self._register(peer, body, 0)

    def _h_can_do_timeout(self, peer: Peer, ptype: int, body: bytes) -> None:
        parts = body.split(b"\x00", 1)
        if len(parts) != 2 or len(parts[1]) > 20:
            self.close(peer)
            return
        timeout = strtol(parts[1])
        if timeout is None:
            self.close(peer)
            return
        self._register(peer, parts[0], timeout)

    def _unregister(self, peer: Peer, f: Function) -> None:
        """Remove every registration of ``f`` by ``peer``; requeue its jobs of ``f`` (3.4)."""
        name = f.name
        count = peer.functions.count(name)
        f.workers -= count
        peer.functions = [n for n in peer.functions if n != name]
        peer.abilities.remove(f)
        peer.timeouts.pop(name, None)
        f.sleepers.pop(peer, None)
        for job in [j for j in peer.worker_jobs if j.function is f]:
            self._requeue(job)

    def _h_cant_do(self, peer: Peer, ptype: int, body: bytes) -> None:
        f = self.functions.get(body)
        if f is not None and f in peer.abilities:
            self._unregister(peer, f)

    def _h_reset_abilities(self, peer: Peer, ptype: int, body: bytes) -> None:
        for f in list(peer.abilities):
            self._unregister(peer, f)

    def _h_pre_sleep(self, peer: Peer, ptype: int, body: bytes) -> None:
        self._check_timers()
        if not self.draining and self.take_job(peer, peek=True) is not None:
            # Work is already waiting: wake at once rather than sleep (3.5 race fix).
            self._unsleep(peer)
            peer.noop_sent = True
            self._write(peer, NOOP)
            return
        if not peer.sleeping:
            peer.sleeping = True
            peer.noop_sent = False
            for f in peer.abilities:
                f.sleepers[peer] = None

    def _h_grab(self, peer: Peer, ptype: int, body: bytes) -> None:
        if peer.sleeping:
            self._unsleep(peer)
        peer.noop_sent = False
        if self._timers:
            self._check_timers()
        # Draining (graceful shutdown): nothing new is handed out, whatever take_job says.
        job = None if self.draining else self.take_job(peer)
        if job is None:
            self._write(peer, NO_JOB)
            return
        if job.worker is not peer:  # pragma: no cover - defensive: an override returned a
            self._assign(job, peer)  # job without assigning it
        handle = job.handle
        if ptype == c.GRAB_JOB:
            body = b"%s\x00%s\x00%s" % (handle, job.name, job.arguments)
            atype = c.JOB_ASSIGN
        elif ptype == c.GRAB_JOB_ALL and job.reducer is not None:
            body = b"%s\x00%s\x00%s\x00%s\x00%s" % (
                handle, job.name, job.unique, job.reducer, job.arguments)
            atype = c.JOB_ASSIGN_ALL
        else:
            body = b"%s\x00%s\x00%s\x00%s" % (handle, job.name, job.unique, job.arguments)
            atype = c.JOB_ASSIGN_UNIQ
        self._write(peer, _pack(_RES, atype, len(body)) + body)

    def _running(self, peer: Peer, handle: bytes) -> Job | None:
        """The job ``handle`` that worker ``peer`` runs, if it does. A worker's result names
        one of its own jobs, usually its only one: a few are compared directly, cheaper than
        parsing the handle for the job table."""
        jobs = peer.worker_jobs
        if len(jobs) <= 4:
            for job in jobs:
                if job.handle == handle:
                    return job
            return None
        found = self.jobs.get(handle)
        return found if found is not None and found.worker is peer else None

    def _owned(self, peer: Peer, handle: bytes) -> Job | None:
        """The running job ``handle`` of worker ``peer`` (one trailing NUL tolerated, 3.1)."""
        job = self._running(peer, handle)
        if job is None and handle.endswith(b"\x00"):
            job = self._running(peer, handle[:-1])
        return job

    def _result_job(self, peer: Peer, body: bytes, not_found: bytes) -> Job | None:
        """The job a ``handle\0data`` result packet of worker ``peer`` is about.

        No NUL closes the connection (a layout gearmand desyncs on, 1.1); a handle that is not
        running on ``peer`` answers ``not_found`` (JOB_NOT_FOUND with that packet's text, 1.6).
        """
        sep = body.find(b"\x00")
        if sep < 0:
            self.close(peer)
            return None
        job = self._running(peer, body[:sep])
        if job is None:
            self._write(peer, not_found)
        return job

    def _h_work_status(self, peer: Peer, ptype: int, body: bytes) -> None:
        parts = body.split(b"\x00", 2)
        if len(parts) != 3:
            self.close(peer)
            return
        job = self._owned(peer, parts[0])
        if job is None:
            self._write(peer, ERR_NOT_FOUND_RESULT)
            return
        job.numerator = atoi_u32(parts[1])
        job.denominator = atoi_u32(parts[2])
        if job.clients:
            self._send_clients(job, _pack(_RES, ptype, len(body)) + body)

    def _h_work_complete(self, peer: Peer, ptype: int, body: bytes) -> None:
        job = self._result_job(peer, body, ERR_NOT_FOUND_RESULT)
        if job is None:
            return
        if job.clients:
            self._send_clients(job, _pack(_RES, ptype, len(body)) + body)
        # Inline _release_worker + _forget: the hot path of every job.
        del peer.worker_jobs[job]
        f = job.function
        f.running -= 1
        job.worker = None
        self._forget(job)

    def _h_work_fail(self, peer: Peer, ptype: int, body: bytes) -> None:
        if len(body) >= HANDLE_LIMIT:
            self._write(peer, ERR_HANDLE_TOO_LARGE)
            return
        job = self._owned(peer, body)
        if job is None:
            self._write(peer, ERR_NOT_FOUND_RESULT)
            return
        if job.clients:  # the worker's bytes, as received (1.4 #14)
            self._send_clients(job, _pack(_RES, ptype, len(body)) + body)
        self._release_worker(job)
        self._forget(job)

    def _h_work_exception(self, peer: Peer, ptype: int, body: bytes) -> None:
        job = self._result_job(peer, body, ERR_NOT_FOUND_EXCEPTION)
        if job is None:
            return
        if job.clients:
            exception = _pack(_RES, ptype, len(body)) + body
            fail = _res(_WORK_FAIL, job.handle)  # no trailing NUL (3.9, 3.18.1)
            for client in job.clients:
                self._write(client, exception if client.exceptions else fail)
        self._release_worker(job)
        self._forget(job)

    def _h_work_data(self, peer: Peer, ptype: int, body: bytes) -> None:
        job = self._result_job(peer, body, ERR_NOT_FOUND_DATA)
        if job is None:
            return
        if job.clients:
            self._send_clients(job, _pack(_RES, ptype, len(body)) + body)

    def _h_get_status(self, peer: Peer, ptype: int, body: bytes) -> None:
        if len(body) >= HANDLE_LIMIT:
            self.close(peer)  # gearmand drops the connection (1.2)
            return
        job = self.jobs.get(body)
        if job is None and body.endswith(b"\x00"):
            job = self.jobs.get(body[:-1])
        if job is None:
            reply = body + b"\x000\x000\x000\x000"
        else:
            reply = b"%s\x001\x00%d\x00%d\x00%d" % (
                body, job.worker is not None, job.numerator, job.denominator)
        self._write(peer, _res(c.STATUS_RES, reply))

    def _h_get_status_unique(self, peer: Peer, ptype: int, body: bytes) -> None:
        if len(body) >= HANDLE_LIMIT:
            self.close(peer)
            return
        job = None
        if body:
            for f in self.functions.values():  # across all functions (3.11)
                job = f.uniques.get(body)
                if job is not None:
                    break
        if job is None:
            reply = body + b"\x000\x000\x000\x000\x000"
        else:
            reply = b"%s\x001\x00%d\x00%d\x00%d\x00%d" % (
                body, job.worker is not None, job.numerator, job.denominator, len(job.clients))
        self._write(peer, _res(c.STATUS_RES_UNIQUE, reply))

    def _h_echo(self, peer: Peer, ptype: int, body: bytes) -> None:
        self._write(peer, _res(c.ECHO_RES, body))

    def _h_option(self, peer: Peer, ptype: int, body: bytes) -> None:
        # Only "exceptions", case-insensitively; the reply echoes the bytes sent (1.5).
        if body.lower() == b"exceptions":
            peer.exceptions = True
            self._write(peer, _res(c.OPTION_RES, body))
        else:
            self._write(peer, ERR_UNKNOWN_OPTION)

    def _h_set_client_id(self, peer: Peer, ptype: int, body: bytes) -> None:
        peer.client_id = body[:127]  # GEARMAND_SERVER_CON_ID_SIZE - 1 (1.2)

    # ------------------------------------------------------------------ views

    def job_count(self) -> int:
        """Jobs in memory (graceful shutdown waits for 0)."""
        return len(self.jobs)

    def _queue_view(self, priority: int) -> list[Job]:
        jobs = [job for f in self.functions.values() for job in f.queues[priority]]
        jobs.sort(key=lambda job: job.seq)
        return jobs

    @property
    def high_queue(self) -> list[Job]:
        """Queued HIGH jobs in take order (a snapshot; gear's ``Server.high_queue``)."""
        return self._queue_view(HIGH)

    @property
    def normal_queue(self) -> list[Job]:
        """Queued NORMAL jobs in take order (a snapshot)."""
        return self._queue_view(NORMAL)

    @property
    def low_queue(self) -> list[Job]:
        """Queued LOW jobs in take order (a snapshot)."""
        return self._queue_view(LOW)

    def getQueue(self) -> list[Job]:
        """gear's ``Server.getQueue()``: every queued job, high, normal, low."""
        return self.high_queue + self.normal_queue + self.low_queue

    def drop_function(self, f: Function) -> bool:
        """Forget a function without workers or jobs (admin ``drop function``)."""
        if f.workers or f.total:
            return False
        del self.functions[f.name]
        return True
