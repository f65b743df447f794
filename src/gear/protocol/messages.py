"""Requests that clients and workers send, and parsers for the replies they receive.

Owns the meaning of packets on the client/worker side: which SUBMIT type a (background, priority,
epoch) combination is, how a STATUS_RES reads, how admin replies are delimited and parsed into
records. Shared by the threaded gear-compatible API and ``gear.aio`` so that neither re-implements
protocol rules. Pure functions and small records only; no I/O.

Must not import sockets, threads, asyncio or anything above ``gear.protocol``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gear import constants as c
from gear.errors import ConfigurationError, InvalidDataError
from gear.protocol.packets import request

#: Priorities. The values are gear's ``PRECEDENCE_*`` numbers, so either name works everywhere.
NORMAL = 0
LOW = 1
HIGH = 2

#: Uniques longer than this are rejected by gearmand (ARGUMENT_TOO_LARGE); exactly 64 bytes is
#: accepted but never coalesces (reference 1.2), so 63 is the longest unique that behaves.
MAX_UNIQUE_SIZE = 63

_SUBMIT_TYPES: dict[tuple[bool, int], int] = {
    (False, NORMAL): c.SUBMIT_JOB,
    (False, LOW): c.SUBMIT_JOB_LOW,
    (False, HIGH): c.SUBMIT_JOB_HIGH,
    (True, NORMAL): c.SUBMIT_JOB_BG,
    (True, LOW): c.SUBMIT_JOB_LOW_BG,
    (True, HIGH): c.SUBMIT_JOB_HIGH_BG,
}

#: Packet types that answer a submission on the submitting connection (JOB_CREATED or ERROR).
SUBMIT_TYPES = frozenset(_SUBMIT_TYPES.values()) | {
    c.SUBMIT_JOB_EPOCH,
    c.SUBMIT_JOB_SCHED,
    c.SUBMIT_REDUCE_JOB,
    c.SUBMIT_REDUCE_JOB_BACKGROUND,
}


def submit_type(background: bool, priority: int, when: int | None = None) -> int:
    """The SUBMIT packet type for a job.

    ``when`` (Unix seconds) asks for SUBMIT_JOB_EPOCH, which the protocol only has as a
    background job of normal priority (reference 1.4, #36); other combinations are refused
    rather than silently changed.
    """
    if when is not None:
        if not background:
            raise ConfigurationError("a job scheduled with when= must be a background job")
        if priority != NORMAL:
            raise ConfigurationError("a job scheduled with when= runs at normal priority only")
        return c.SUBMIT_JOB_EPOCH
    try:
        return _SUBMIT_TYPES[(bool(background), priority)]
    except KeyError:
        raise ConfigurationError("Invalid precedence value") from None


def submit_job(
    name: bytes,
    unique: bytes,
    data: bytes,
    background: bool = False,
    priority: int = NORMAL,
    when: int | None = None,
) -> bytes:
    """Encode the SUBMIT_JOB* packet for a job; ``unique`` may be empty (never coalesces)."""
    ptype = submit_type(background, priority, when)
    if ptype == c.SUBMIT_JOB_EPOCH:
        return request(ptype, name, unique, str(int(when)).encode("ascii"), data)  # type: ignore[arg-type]
    return request(ptype, name, unique, data)


def timeout_ms(timeout: float | int | str | bytes) -> int:
    """A CAN_DO_TIMEOUT value: ``timeout`` in seconds (gear's unit) as whole milliseconds.

    gearmand 1.1.19+ and our server read the wire value as milliseconds (reference 3.8).
    """
    if isinstance(timeout, bytes):
        timeout = timeout.decode("ascii")
    seconds = float(timeout)
    if seconds <= 0:
        raise ConfigurationError(f"timeout must be positive, not {timeout!r}")
    return max(1, round(seconds * 1000))


def can_do(name: bytes, timeout: float | int | str | bytes | None = None) -> bytes:
    """CAN_DO, or CAN_DO_TIMEOUT when ``timeout`` (seconds) is given; sent as milliseconds."""
    if timeout:
        return request(c.CAN_DO_TIMEOUT, name, str(timeout_ms(timeout)).encode("ascii"))
    return request(c.CAN_DO, name)


@dataclass(frozen=True)
class JobStatus:
    """A STATUS_RES (by handle) or STATUS_RES_UNIQUE (by unique) reply."""

    handle: bytes  # for STATUS_RES_UNIQUE this is the unique
    known: bool
    running: bool
    numerator: int
    denominator: int
    client_count: int | None = None  # STATUS_RES_UNIQUE only

    @property
    def fraction_complete(self) -> float | None:
        if not self.denominator:
            return None
        return self.numerator / self.denominator


def _int(value: bytes) -> int:
    try:
        return int(value or b"0")
    except ValueError:
        return 0


def parse_status_res(args: list[bytes]) -> JobStatus:
    """Parse the 5 fields of STATUS_RES or the 6 of STATUS_RES_UNIQUE."""
    if len(args) not in (5, 6):
        raise InvalidDataError(f"status reply with {len(args)} fields")
    return JobStatus(
        handle=args[0],
        known=args[1] == b"1",
        running=args[2] == b"1",
        numerator=_int(args[3]),
        denominator=_int(args[4]),
        client_count=_int(args[5]) if len(args) == 6 else None,
    )


# --- admin (text) protocol ------------------------------------------------------------------

#: Commands whose success reply is a list ended by a line holding only "." (reference 2.2).
MULTILINE_COMMANDS = frozenset(
    {b"status", b"workers", b"show jobs", b"show unique jobs", b"prioritystatus", b"acl list"}
)


def admin_command(command: str | bytes, *args: str | bytes) -> bytes:
    """Encode an admin command line (``\\n``-terminated, arguments space-separated)."""
    parts = [p.encode("utf-8") if isinstance(p, str) else p for p in (command, *args)]
    for p in parts:
        if b"\n" in p or b"\r" in p:
            raise InvalidDataError(f"admin argument {p!r} contains a line break")
    return b" ".join(parts) + b"\n"


def is_multiline(command: bytes) -> bool:
    """Whether the reply to ``command`` (a line without its newline) is a "."-terminated list."""
    words = command.lower().split()
    return any(b" ".join(words[:k]) in MULTILINE_COMMANDS for k in (1, 2, 3))


class AdminReply:
    """Collects the text lines of one admin reply and says when it is complete.

    A list reply ends with a line holding only "."; a single-line reply (``OK ...``, ``ERR ...``)
    is one line. A list command answered with ``ERR ...`` (e.g. ``acl list`` with no ACL) is one
    line too.
    """

    __slots__ = ("command", "lines", "multiline")

    def __init__(self, command: bytes) -> None:
        self.command = command.rstrip(b"\r\n")
        self.multiline = is_multiline(self.command)
        self.lines: list[bytes] = []

    def add(self, line: bytes) -> bool:
        """Add one line (without its newline); return True once the reply is complete."""
        if not self.multiline:
            self.lines.append(line)
            return True
        if line == b".":
            return True
        if not self.lines and line.startswith(b"ERR ") and b"\t" not in line:
            self.lines.append(line)
            return True
        self.lines.append(line)
        return False

    @property
    def error(self) -> bytes | None:
        """The text after ``ERR `` when the server refused the command, else None."""
        if len(self.lines) == 1 and self.lines[0].startswith(b"ERR"):
            return self.lines[0][4:] if len(self.lines[0]) > 3 else b""
        return None


@dataclass(frozen=True)
class FunctionStatus:
    """One line of ``status``: a function's queued+running total, running count and workers."""

    name: bytes
    total: int
    running: int
    workers: int

    @property
    def queued(self) -> int:
        return self.total - self.running


@dataclass(frozen=True)
class PriorityStatus:
    """One line of ``prioritystatus``: queued jobs per priority and the worker count."""

    name: bytes
    high: int
    normal: int
    low: int
    workers: int


@dataclass(frozen=True)
class WorkerInfo:
    """One line of ``workers``: a connection's fd, address, client id and functions."""

    fd: int
    address: bytes
    client_id: bytes
    functions: tuple[bytes, ...]


@dataclass(frozen=True)
class JobInfo:
    """One line of ``show jobs``."""

    handle: bytes
    retries: int
    ignored: bool
    background: bool


def parse_status(lines: list[bytes]) -> list[FunctionStatus]:
    out = []
    for line in lines:
        fields = line.rsplit(b"\t", 3)
        if len(fields) == 4:
            out.append(FunctionStatus(fields[0], _int(fields[1]), _int(fields[2]), _int(fields[3])))
    return out


def parse_prioritystatus(lines: list[bytes]) -> list[PriorityStatus]:
    out = []
    for line in lines:
        f = line.rsplit(b"\t", 4)
        if len(f) == 5:
            out.append(PriorityStatus(f[0], _int(f[1]), _int(f[2]), _int(f[3]), _int(f[4])))
    return out


def parse_workers(lines: list[bytes]) -> list[WorkerInfo]:
    out = []
    for line in lines:
        head, sep, tail = line.partition(b" : ")
        if not sep:
            head, sep, tail = line.rstrip().partition(b" :")
        words = head.split(b" ", 2)
        if len(words) < 3:
            continue
        out.append(WorkerInfo(_int(words[0]), words[1], words[2], tuple(tail.split())))
    return out


def parse_show_jobs(lines: list[bytes]) -> list[JobInfo]:
    out = []
    for line in lines:
        f = line.split(b"\t")
        if len(f) == 4:
            out.append(JobInfo(f[0], _int(f[1]), f[2] == b"1", f[3] == b"1"))
    return out
