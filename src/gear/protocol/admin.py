"""The admin text protocol, client side: encoding commands and reading their replies.

Owns how an admin command line is written, which commands answer with a list ended by a lone
``.`` and which with one line, how ``OK <value>`` and ``ERR <code> <text>`` read, and the records
that ``status``, ``prioritystatus``, ``workers``, ``show jobs``, ``show unique jobs`` and geard's
``show dead jobs`` parse into (docs/protocol.md §2.2, docs/server.md); geard's ``harp`` listings
are JSON lines (:func:`parse_json_lines`, docs/harp.md). Shared by the threaded admin
requests, ``gear.aio``'s Admin and gear-admin. Pure functions and small records only; no I/O.

Must not import sockets, threads, asyncio or anything above ``gear.protocol``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gear.errors import InvalidDataError
from gear.protocol.messages import int_or_zero

#: Commands whose success reply is a list ended by a line holding only "." (docs/protocol.md §2.2),
#: gearmand's and geard's own (the dead-letter list, docs/server.md; the harp records,
#: docs/harp.md "Admin commands"). A command is matched by its first one, two or three words.
MULTILINE_COMMANDS = frozenset(
    {b"status", b"workers", b"show jobs", b"show unique jobs", b"prioritystatus", b"acl list",
     b"show dead jobs", b"harp list", b"harp info", b"harp queues", b"harp queue"}
)


def admin_command(command: str | bytes, *args: str | bytes, crlf: bool = False) -> bytes:
    """Encode an admin command line (arguments space-separated).

    The line ends with ``\\n`` (what gear sends), or with ``\\r\\n`` when ``crlf`` is set, as
    gearadmin sends it: gearmand's ``create function`` drops the last character of the name
    after a bare ``\\n`` (docs/protocol.md §2.2), and every command accepts ``\\r\\n`` (2.1).
    """
    parts = [p.encode("utf-8") if isinstance(p, str) else p for p in (command, *args)]
    for p in parts:
        if b"\n" in p or b"\r" in p:
            raise InvalidDataError(f"admin argument {p!r} contains a line break")
    return b" ".join(parts) + (b"\r\n" if crlf else b"\n")


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

    @property
    def failure(self) -> tuple[bytes, bytes] | None:
        """``(code, text)`` when the server refused the command (see :attr:`error`), else None."""
        if len(self.lines) == 1:
            return parse_admin_error(self.lines[0])
        return None


def parse_admin_error(line: bytes) -> tuple[bytes, bytes] | None:
    """``(code, text)`` of an ``ERR <code> <text>`` reply line, or None for any other line.

    gearmand's text is ``+``-separated and may be missing (``ERR UNKNOWN_JOB``,
    docs/protocol.md §2.2); it is returned as sent. ``code`` is the first word after ``ERR``.
    """
    if not line.startswith(b"ERR"):
        return None
    code, _, text = line[4:].partition(b" ")
    return code, text


def parse_admin_ok(line: bytes) -> bytes:
    """The value of an ``OK`` / ``OK <value>`` reply line (b"" for a bare ``OK``).

    Raises :class:`~gear.errors.InvalidDataError` for any other line (``ERR`` lines are
    expected to be handled first, with :func:`parse_admin_error`).
    """
    if line == b"OK" or line.startswith(b"OK "):
        return line[3:]
    raise InvalidDataError(f"expected an OK reply, got {line[:80]!r}")


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
            name, total, running, workers = fields
            out.append(
                FunctionStatus(name, int_or_zero(total), int_or_zero(running), int_or_zero(workers))
            )
    return out


def parse_prioritystatus(lines: list[bytes]) -> list[PriorityStatus]:
    out = []
    for line in lines:
        f = line.rsplit(b"\t", 4)
        if len(f) == 5:
            out.append(PriorityStatus(f[0], *(int_or_zero(v) for v in f[1:])))
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
        out.append(WorkerInfo(int_or_zero(words[0]), words[1], words[2], tuple(tail.split())))
    return out


def parse_show_unique_jobs(lines: list[bytes]) -> list[bytes]:
    """``show unique jobs``: one unique per line; a job without a unique is an empty line (2.2)."""
    return list(lines)


def parse_show_jobs(lines: list[bytes]) -> list[JobInfo]:
    out = []
    for line in lines:
        f = line.split(b"\t")
        if len(f) == 4:
            out.append(JobInfo(f[0], int_or_zero(f[1]), f[2] == b"1", f[3] == b"1"))
    return out


@dataclass(frozen=True)
class DeadJobInfo:
    """One line of geard's ``show dead jobs``: a background job whose retries ran out."""

    handle: bytes
    function: bytes
    unique: bytes
    attempts: int
    #: Unix time (seconds) its retries ran out.
    died: int
    #: Bytes of its data.
    size: int


def parse_show_dead_jobs(lines: list[bytes]) -> list[DeadJobInfo]:
    """``show dead jobs``: tab-separated handle, function, unique, attempts, died, size.

    A unique may itself hold tabs: it is what lies between the function and the last three
    fields."""
    out = []
    for line in lines:
        head = line.split(b"\t", 2)
        if len(head) != 3:
            continue
        tail = head[2].rsplit(b"\t", 3)
        if len(tail) == 4:
            out.append(DeadJobInfo(head[0], head[1], tail[0],
                                   *(int_or_zero(v) for v in tail[1:])))
    return out


def parse_json_lines(lines: list[bytes]) -> list[Any]:
    """A listing of one JSON value per line (geard's ``harp`` commands).

    Raises :class:`~gear.errors.InvalidDataError` naming the line that is not JSON."""
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            raise InvalidDataError(f"expected a JSON line, got {line[:80]!r}") from None
    return out
