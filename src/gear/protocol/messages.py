"""Requests that clients and workers send, and parsers for the replies they receive.

Owns the meaning of packets on the client/worker side: which SUBMIT type a (background, priority,
epoch) combination is, how long a unique may be and which submissions coalesce, how a STATUS_RES
and a JOB_ASSIGN* read, which handle a WORK_* packet is for, the WORK_* packets a worker sends
(``work_*``), how admin commands are encoded and
their replies delimited and parsed into records (lists, ``OK <value>``, ``ERR <code> <text>``).
Shared by the threaded gear-compatible API and ``gear.aio`` so that neither re-implements
protocol rules. Pure functions and small records only; no I/O.

Must not import sockets, threads, asyncio or anything above ``gear.protocol``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from gear import constants as c
from gear.errors import ConfigurationError, InvalidDataError
from gear.protocol.packets import request

#: Priorities. The values are gear's ``PRECEDENCE_*`` numbers, so either name works everywhere.
NORMAL = 0
LOW = 1
HIGH = 2


class Priority(IntEnum):
    """A job's priority, numbered in gearmand's order: the order jobs are taken in.

    This is the one numbering inside the package: the broker's queues, the stored record and
    every new API use it. gear's ``PRECEDENCE_*`` numbers (NORMAL 0, LOW 1, HIGH 2) are a
    different numbering of the same three values; convert them only at gear's boundary, with
    :meth:`from_precedence` and :meth:`to_precedence`.
    """

    HIGH = 0
    NORMAL = 1
    LOW = 2

    @classmethod
    def from_precedence(cls, precedence: int) -> Priority:
        """The priority of gear's ``PRECEDENCE_*`` number; ConfigurationError for another."""
        try:
            return _FROM_PRECEDENCE[precedence]
        except (KeyError, TypeError):
            raise ConfigurationError("Invalid precedence value") from None

    def to_precedence(self) -> int:
        """gear's ``PRECEDENCE_*`` number for this priority."""
        return _TO_PRECEDENCE[self]


_FROM_PRECEDENCE = {NORMAL: Priority.NORMAL, LOW: Priority.LOW, HIGH: Priority.HIGH}
_TO_PRECEDENCE = {v: k for k, v in _FROM_PRECEDENCE.items()}

#: Uniques longer than this are rejected by gearmand (ARGUMENT_TOO_LARGE); exactly 64 bytes is
#: accepted but never coalesces (docs/protocol.md §1.2), so 63 is the longest unique that behaves.
MAX_UNIQUE_SIZE = 63

_SUBMIT_TYPES: dict[tuple[bool, int], int] = {
    (False, NORMAL): c.SUBMIT_JOB,
    (False, LOW): c.SUBMIT_JOB_LOW,
    (False, HIGH): c.SUBMIT_JOB_HIGH,
    (True, NORMAL): c.SUBMIT_JOB_BG,
    (True, LOW): c.SUBMIT_JOB_LOW_BG,
    (True, HIGH): c.SUBMIT_JOB_HIGH_BG,
}


def to_bytes(value: bytes | bytearray | memoryview | str, what: str = "value") -> bytes:
    """Names, arguments, uniques and ids as bytes: bytes-like as is, text as UTF-8.

    Anything else is :class:`~gear.errors.InvalidDataError` naming ``what``. The one
    conversion of the package; gear's lenient ``convert_to_bytes`` is built on it.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise InvalidDataError(f"{what} must be bytes or str, not {type(value).__name__}")


def id_text(client_id: object) -> str:
    """A client id for log names: bytes decoded (bad UTF-8 replaced), None as ``""``."""
    if client_id is None:
        return ""
    if isinstance(client_id, bytes):
        return client_id.decode("utf-8", "replace")
    return str(client_id)


def submit_type(background: bool, priority: int, when: int | None = None) -> int:
    """The SUBMIT packet type for a job.

    ``when`` (Unix seconds) asks for SUBMIT_JOB_EPOCH, which the protocol only has as a
    background job of normal priority (docs/protocol.md §1.4, #36); other combinations are refused
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


def check_unique(unique: bytes) -> bytes:
    """Return ``unique`` if it is at most :data:`MAX_UNIQUE_SIZE` bytes, else refuse it.

    Both APIs call this before sending a SUBMIT: gearmand answers a longer unique with
    ``ERROR ARGUMENT_TOO_LARGE`` (>64 bytes) or silently truncates it and never coalesces it
    (exactly 64), so failing here gives the caller the reason instead (docs/protocol.md §1.2).
    """
    if len(unique) > MAX_UNIQUE_SIZE:
        raise InvalidDataError(
            f"unique is {len(unique)} bytes; at most {MAX_UNIQUE_SIZE} are allowed (gearmand "
            f"refuses longer uniques or never coalesces them, docs/protocol.md §1.2)"
        )
    return unique


def coalescing_key(name: bytes, unique: bytes, data: bytes) -> tuple[bytes, bytes, bytes]:
    """What makes two submissions one job on gearmand: (function, unique), or for the unique
    ``-`` (function, workload) (docs/protocol.md §3.2). Only meaningful for a non-empty unique."""
    return (name, unique, data if unique == b"-" else b"")


def timeout_ms(timeout: float | int | str | bytes) -> int:
    """A CAN_DO_TIMEOUT value: ``timeout`` in seconds (gear's unit) as whole milliseconds.

    gearmand 1.1.19+ and our server read the wire value as milliseconds (docs/protocol.md §3.8).
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


def int_or_zero(value: bytes) -> int:
    """A decimal field as gear and gearmand read it: empty or not a number is 0."""
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
        numerator=int_or_zero(args[3]),
        denominator=int_or_zero(args[4]),
        client_count=int_or_zero(args[5]) if len(args) == 6 else None,
    )


#: Packet types that hand a job to a worker (answers to GRAB_JOB, GRAB_JOB_UNIQ, GRAB_JOB_ALL).
ASSIGN_TYPES = frozenset({c.JOB_ASSIGN, c.JOB_ASSIGN_UNIQ, c.JOB_ASSIGN_ALL})


class JobAssignment(NamedTuple):
    """A JOB_ASSIGN, JOB_ASSIGN_UNIQ or JOB_ASSIGN_ALL, with the fields a type lacks empty.

    A NamedTuple rather than a dataclass: one is built per job on a worker's hot path.
    """

    handle: bytes
    function: bytes
    unique: bytes
    reducer: bytes
    data: bytes


def parse_job_assign(ptype: int, args: Sequence[bytes]) -> JobAssignment:
    """Read the fields of a job assignment (``args`` as split by ``split_args``,
    docs/protocol.md §1.4).

    JOB_ASSIGN has no unique and no reducer; JOB_ASSIGN_UNIQ has no reducer.
    """
    n = len(args)
    if ptype == c.JOB_ASSIGN and n == 3:
        return JobAssignment(args[0], args[1], b"", b"", args[2])
    if ptype == c.JOB_ASSIGN_UNIQ and n == 4:
        return JobAssignment(args[0], args[1], args[2], b"", args[3])
    if ptype == c.JOB_ASSIGN_ALL and n == 5:
        return JobAssignment(args[0], args[1], args[2], args[3], args[4])
    raise InvalidDataError(f"not a job assignment: type {ptype} with {n} fields")


def work_handle(body: bytes) -> bytes:
    """The job handle at the start of a WORK_* body: everything before the first NUL.

    This also normalises WORK_FAIL, whose only field gearmand sends as ``handle\\0`` when it
    turns a WORK_EXCEPTION into a WORK_FAIL for a client without the ``exceptions`` option
    (docs/protocol.md §1.3, §1.5, §3.9). Handles never contain NUL (§3.1), so nothing is lost.
    """
    return body.partition(b"\x00")[0]


# --- what a worker sends about its job (docs/protocol.md §1.4, §3.10) --------------------------


def work_data(handle: bytes, data: bytes) -> bytes:
    """WORK_DATA: a chunk of the job's output, forwarded to its clients as it comes."""
    return request(c.WORK_DATA, handle, data)


def work_warning(handle: bytes, data: bytes) -> bytes:
    """WORK_WARNING: like WORK_DATA, flagged as a warning."""
    return request(c.WORK_WARNING, handle, data)


def work_status(handle: bytes, numerator: int | str | bytes, denominator: int | str | bytes
                ) -> bytes:
    """WORK_STATUS: progress as ``numerator`` out of ``denominator`` (decimal integers)."""
    return request(
        c.WORK_STATUS,
        handle,
        str(int(numerator)).encode("ascii"),
        str(int(denominator)).encode("ascii"),
    )


def work_complete(handle: bytes, data: bytes = b"") -> bytes:
    """WORK_COMPLETE: the job succeeded with ``data`` as its result."""
    return request(c.WORK_COMPLETE, handle, data)


def work_fail(handle: bytes) -> bytes:
    """WORK_FAIL: the handle and no trailing NUL (docs/protocol.md §1.3)."""
    return request(c.WORK_FAIL, handle)


def work_exception(handle: bytes, data: bytes) -> bytes:
    """WORK_EXCEPTION: the job failed with ``data``; it ends the job on gearmand (§1.4)."""
    return request(c.WORK_EXCEPTION, handle, data)
