"""The broker's data: connections, functions, queues, jobs, the job table, settings, job states.

Owns :class:`Peer`, :class:`Function`, :class:`JobQueue`, :class:`Job`, :class:`JobTable`,
:class:`JobState`, :class:`BrokerConfig` and :attr:`Job.orphaned` (the one "nobody waits for
this job any more" rule, used by the scheduler and by admin ``show jobs``), and the read-only
records the broker's query interface returns to admin (:class:`FunctionStats`,
:class:`ConnectionInfo`, :class:`JobRecord`). Plain data with the few methods that only read it
(and the queue's own O(1) removal, :meth:`JobQueue.forget`): every change of state is the
scheduler's (``core.py``). Must not import sockets, asyncio, threads, the network layer, admin,
or any other module of the broker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, ValuesView
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from gear.protocol.messages import Priority
from gear.protocol.packets import Decoder
from gear.server.storage.base import StoredJob

if TYPE_CHECKING:
    from gear.acl import ACL

__all__ = [
    "BrokerConfig",
    "ConnectionInfo",
    "Function",
    "FunctionStats",
    "Job",
    "JobQueue",
    "JobRecord",
    "JobState",
    "JobTable",
    "Peer",
    "StoreDone",
]

StoreDone = Callable[[BaseException | None], None]

HIGH, NORMAL, LOW = Priority.HIGH, Priority.NORMAL, Priority.LOW


class JobState(IntEnum):
    """Where a job is in the scheduler."""

    #: In its function's deque: runnable.
    QUEUED = 0
    #: Assigned to a worker.
    RUNNING = 1
    #: An epoch job before its time (its timer is pending).
    WAITING = 2
    #: A background job whose store has not answered yet.
    HELD = 3
    #: Forgotten.
    DONE = 4


QUEUED = JobState.QUEUED
#: Attempts a job gets before it fails when its worker keeps going away (``-j``).
DEFAULT_JOB_RETRIES = 5
#: Background jobs the dead-letter list keeps at most (``--dead-letter-max``).
DEFAULT_DEAD_LETTER_MAX = 10000


@dataclass
class BrokerConfig:
    """Settings of one broker: the gearmand options that shape scheduling.

    ``store``, ``store_batched``, ``remove`` and ``packet_hook`` are not settings but callables
    the server wires in. The :class:`~gear.server.broker.Broker` constructor takes them (and
    the admin line handler) as keyword arguments; these fields stay, transitionally, until the
    network layer passes them there, and a constructor argument wins over its field.
    """

    #: None -> ``b"H:" + hostname``; handles are ``prefix + b":" + n`` with n from 1
    #: (docs/protocol.md §3.1).
    handle_prefix: bytes | None = None
    #: gearmand ``-j``: maximum attempts before WORK_FAIL; 0 = unlimited (docs/protocol.md §3.6).
    #: Finite by default, unlike gearmand (docs/semantics.md, "Poison jobs and the dead-letter
    #: list").
    job_retries: int = DEFAULT_JOB_RETRIES
    #: Most background jobs kept in the dead-letter list (the oldest dropped first); 0 = none.
    dead_letter_max: int = DEFAULT_DEAD_LETTER_MAX
    #: gearmand ``-w``: NOOPs sent per new job; 0 = every sleeping worker (docs/protocol.md §3.5).
    worker_wakeup: int = 0
    #: gearmand ``--exceptions``: every connection starts with the exceptions option
    #: (docs/protocol.md §3.9).
    exceptions_default: bool = False
    #: A unique (or reducer) longer than this gets ERROR ARGUMENT_TOO_LARGE (docs/protocol.md
    #: §1.2).
    max_unique_size: int = 64
    #: Admin ``version`` answer (without ``OK``); None answers this package's own version
    #: (``gear._version.__version__``), so ``gearadmin --server-version`` tells which server it
    #: reached.
    version: bytes | None = None
    #: Admin ``verbose`` answer (without ``OK``).
    verbose: bytes = b"ERROR"
    #: When set: deny by default; CAN_DO silently ignored, SUBMIT* answered with an ERROR, and
    #: ``cancel job`` / ``acl grant|revoke`` checked (docs/gear-compat.md §3.13.2).
    acl: ACL | None = None
    #: A store called once per job, ``store(record, done)``: kept for callers that still pass
    #: it. The broker has one durability path, the batched one: a ``store`` is adapted onto it
    #: (``durable.per_job``), called at the end of the ``feed()`` that created the job.
    store: Callable[[StoredJob, StoreDone], None] | None = None
    #: Durable background jobs: ``store_batched(records, jobs)`` once per ``feed()`` that
    #: created any (the lists are the store's to keep); the store answers with
    #: ``broker.stored_batch(jobs, exc)`` (one call per committed batch, on the broker's
    #: thread). Takes precedence over ``store`` when both are set.
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
        "job_cancel",
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
        #: docs/protocol.md §1.4 #1); ``name in peer.functions`` works as with gear's set.
        self.functions: list[bytes] = []
        #: Encoded bytes to write, in order; the network layer joins, writes and clears it.
        self.out: list[bytes] = []
        #: Close after flushing ``out``.
        self.closing = False
        #: The OPTION_REQ ``exceptions`` flag (docs/protocol.md §3.9).
        self.exceptions = False
        #: The OPTION_REQ ``job_cancel`` flag: JOB_CANCEL when a job it runs is cancelled
        #: (docs/protocol.md §1.7).
        self.job_cancel = False
        self.decoder = decoder if decoder is not None else Decoder()
        # A partial binary packet kept by the fast framing loop (pipeline.py).
        self.rest = b""
        # Distinct registered functions, in first-registration order (what take_job scans).
        self.abilities: list[Function] = []
        # Function name -> CAN_DO_TIMEOUT in ms from the latest registration (0 = none).
        self.timeouts: dict[bytes, int] = {}
        self.sleeping = False
        # Jobs this connection runs as a worker, and foreground jobs it is attached to
        # (job -> number of attachments). A running job's value is the time it was assigned
        # by the job log's clock (``Broker.log_clock``; None without one).
        self.worker_jobs: dict[Job, Any] = {}
        self.client_jobs: dict[Job, int] = {}
        # Output held back while a store is pending (None when not holding): bytes, or a HELD
        # job standing for its JOB_CREATED / QUEUE_ERROR reply until its store answers.
        self.held: deque[bytes | Job] | None = None
        self.pending = 0
        self.gone = False

    def __repr__(self) -> str:
        return f"<Peer fd={self.fd} {self.host}:{self.port} id={self.client_id!r}>"


#: A queue compacts when it holds more than this many forgotten jobs and they outnumber the
#: live ones (see :meth:`JobQueue.forget`).
COMPACT_MIN = 1024


class JobQueue(deque["Job"]):
    """One priority's FIFO of runnable jobs, with O(1) removal from anywhere in it.

    A deque (append, appendleft, popleft and truth stay C calls: the submit and grab paths
    are unchanged). A job leaving from the middle (disconnect of its last client, admin
    ``cancel``) is not searched for: :meth:`forget` marks it DONE and counts it in ``dead``,
    and it stays in place until it reaches the head or the queue compacts. A linear
    ``deque.remove`` per job made a disconnect cost the client's jobs times the queue depth
    (20,000 jobs behind 100,000 froze the server for ~20 s, issue 13).

    Invariants: the head is always a live (QUEUED) job, so ``queue[0]`` and ``if queue:`` mean
    what they did; ``len(queue) - queue.dead`` is the number of live jobs; iterating yields the
    live jobs only, oldest first. Forgotten jobs are at most ``COMPACT_MIN`` or the live count,
    so memory stays within twice the live jobs, and each compaction's O(n) pass is paid for by
    the n/2 removals before it (amortised O(1) per removal).
    """

    __slots__ = ("dead",)

    def __init__(self) -> None:
        super().__init__()
        #: Forgotten jobs still in the deque.
        self.dead = 0

    def __iter__(self) -> Iterator[Job]:
        for job in deque.__iter__(self):
            if job.state is QUEUED:
                yield job

    def forget(self, job: Job) -> None:
        """Take the QUEUED ``job`` (which is in this queue) out for good, in O(1) amortised:
        it becomes DONE and is never queued again."""
        job.state = JobState.DONE
        if self[0] is job:
            self.popleft()
            if self.dead:
                self.purge()
            return
        self.dead += 1
        if self.dead > COMPACT_MIN and self.dead * 2 > len(self):
            self.compact()

    def purge(self) -> None:
        """Drop forgotten jobs from the head, so that the head is live again (after a
        popleft)."""
        while self and self[0].state is not QUEUED:
            self.popleft()
            self.dead -= 1

    def compact(self) -> None:
        """Drop every forgotten job, keeping the order (in place: callers may hold bound
        methods of this deque)."""
        live = [job for job in deque.__iter__(self) if job.state is QUEUED]
        self.clear()
        self.extend(live)
        self.dead = 0


class Function:
    """One function name: its queues, counters, workers, limits and lifecycle receivers."""

    __slots__ = (
        "by_data",
        "events",
        "hprefix",
        "log_assigned",
        "log_born",
        "log_ended",
        "max_queue",
        "name",
        "plain",
        "policy",
        "queues",
        "running",
        "sleepers",
        "total",
        "uniques",
        "waiting",
        "workers",
    )

    def __init__(self, name: bytes, hprefix: bytes = b"") -> None:
        self.name = name
        #: The broker's handle prefix with its ``:`` (what :attr:`Job.handle` starts with).
        self.hprefix = hprefix
        #: One FIFO per priority, HIGH, NORMAL, LOW; only runnable jobs are in them.
        self.queues: tuple[JobQueue, JobQueue, JobQueue] = (JobQueue(), JobQueue(), JobQueue())
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
        #: unique -> job, and data -> job for unique ``-`` (docs/protocol.md §3.2).
        self.uniques: dict[bytes, Job] = {}
        self.by_data: dict[bytes, Job] = {}
        #: maxqueue limits per priority (HIGH, NORMAL, LOW), None when never set
        #: (docs/protocol.md §3.13). Changed through ``Broker.set_max_queue`` only.
        self.max_queue: list[int] | None = None
        #: This function's own :class:`~gear.server.broker.lifecycle.JobEvents` (None: none).
        #: Set through ``Broker.set_policy`` only.
        self.policy: Any = None
        #: Who hears this function's job events: the broker's observers, then ``policy``.
        #: Empty for a plain server: every event site is one truth test of this tuple.
        self.events: tuple[Any, ...] = ()
        #: The fast-path gate: a submission to this function may take the pipelined run
        #: (no queue limit, no events, no ACL; a durable broker's run is its own,
        #: ``durable_run``). The broker recomputes it whenever one of those changes
        #: (``Broker._replan``).
        self.plain = True
        #: The job log's columns of this function's completed jobs, read and emptied by its
        #: reader (``Broker.log_functions``; observe/metrics.py): when each was made (or last
        #: requeued), assigned and completed, by ``Broker.log_clock``.
        self.log_born: list[Any] = []
        self.log_assigned: list[Any] = []
        self.log_ended: list[float] = []

    def queued(self, priority: int) -> int:
        """Jobs waiting at ``priority`` (epoch jobs before their time count as NORMAL)."""
        queue = self.queues[priority]
        n = len(queue) - queue.dead
        return n + self.waiting if priority == NORMAL else n

    def __repr__(self) -> str:
        return f"<Function {self.name!r} total={self.total} running={self.running}>"


class Timer:
    """A pending epoch start or CAN_DO_TIMEOUT expiry; ``job`` is None once cancelled."""

    __slots__ = ("job", "kind")

    def __init__(self, job: Job, kind: int) -> None:
        self.job: Job | None = job
        self.kind = kind


class Job:
    """One job in memory. Attribute names follow gear's ServerJob where it has one.

    Shaped for the submit hot path: the fields every job uses are slots, set when the job is
    made; the fields few jobs ever change (status numbers, retries, timers, storage key, epoch
    time, reducer, flags) are class-level defaults, and a job that changes one gets its own
    value in a per-instance ``__dict__`` that CPython allocates only on that first write. A
    plain job thus costs 12 attribute stores and no dict instead of 22 stores (measured with
    bench/profile_server.py).

    Jobs are made by ``Broker._new_job`` only (and by its inlined copy in ``pipeline.py``, held
    to it by tests/server/test_broker_submit_run.py); the class has no constructor of its own,
    so that making one costs no ``__init__`` frame (~120 ns a job, measured).

    The slots: ``number`` (the handle's number: the job's key in the broker's job table;
    :attr:`handle` is made from it and the function's ``hprefix``); ``function`` and its
    ``name``; ``unique``; ``arguments``; ``priority``; ``background``; ``clients`` (attached
    foreground clients, one entry per attachment, docs/protocol.md §3.2; a background job
    starts with the shared empty tuple, one allocation and one GC-tracked list less on the
    background submit path, and code that attaches a client replaces it with a list);
    ``worker``; ``seq`` (queue order, see core._later and Broker._front: a job queued when it
    is made shares its ``number`` object, a job queued later has a float order); ``state``;
    ``waiters`` (see below); ``born`` (the ``Broker.log_clock`` time when the job was made or
    last requeued: the start of its queue wait for the job log, ``Broker.job_log``; left unset
    while no log is read, one store less per job, and None on the jobs made before one).
    """

    __slots__ = (
        "__dict__",
        "arguments",
        "background",
        "born",
        "clients",
        "function",
        "name",
        "number",
        "priority",
        "seq",
        "state",
        "unique",
        "waiters",
        "worker",
    )

    number: int
    function: Function
    name: bytes
    unique: bytes
    arguments: bytes
    priority: Priority
    background: bool
    clients: list[Peer] | tuple[()]
    worker: Peer | None
    seq: float
    state: JobState
    born: Any

    # Rarely changed fields (see the class docstring); assigning one shadows the default.
    #: Epoch time of a SUBMIT_JOB_EPOCH job (0: none).
    when: int = 0
    #: The reducer of a SUBMIT_REDUCE_JOB* job.
    reducer: bytes | None = None
    #: Latest WORK_STATUS numbers (GET_STATUS, docs/protocol.md §3.10).
    numerator: int = 0
    denominator: int = 0
    #: Attempts so far (gearmand ``-j``, docs/protocol.md §3.6).
    retries: int = 0
    #: The pending epoch or CAN_DO_TIMEOUT timer.
    timer: Timer | None = None
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

    @property
    def handle(self) -> bytes:
        """The job handle: the broker's prefix and ``number`` (docs/protocol.md §3.1).

        Made on each read rather than kept: a queued job is read for its handle once or twice
        (JOB_ASSIGN, admin), and 56 bytes a job less is a ninth of a queued background job
        (bench/profile_memory.py, docs/benchmarks.md)."""
        return b"%s%d" % (self.function.hprefix, self.number)

    @property
    def orphaned(self) -> bool:
        """Nobody waits for this job any more: cancelled, or no client attached, not
        background and no background submission coalesced onto it (docs/protocol.md §3.7).

        The one statement of that rule: the scheduler forgets such a job when it leaves a
        worker or its queue, and admin ``show jobs`` prints it."""
        return self.ignore or not (self.clients or self.background or self.keep)

    def __repr__(self) -> str:
        return f"<Job {self.handle!r} {self.name!r} unique={self.unique!r} state={self.state!r}>"


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


# ---------------------------------------------------------------------- query records (admin)


class FunctionStats(NamedTuple):
    """One function as admin ``status`` / ``prioritystatus`` print it."""

    name: bytes
    total: int
    running: int
    workers: int
    #: Queued jobs per priority (HIGH, NORMAL, LOW; epoch jobs before their time as NORMAL).
    queued: tuple[int, int, int]


class ConnectionInfo(NamedTuple):
    """One connection as admin ``workers`` prints it."""

    fd: int
    host: str
    client_id: bytes
    #: Registered function names in CAN_DO order, duplicates kept.
    functions: tuple[bytes, ...]


class JobRecord(NamedTuple):
    """One job in memory as admin ``show jobs`` / ``show unique jobs`` print it."""

    handle: bytes
    unique: bytes
    retries: int
    orphaned: bool
    background: bool
