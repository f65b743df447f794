"""HarpCaller's line-wise JSON protocol as geard speaks it: requests parsed, replies encoded.

Owns :func:`parse_request` (one line in, one :class:`Request` or :class:`BadRequest` out) and
the reply encoders; the JSON codec itself (:data:`compact`, :func:`loads`) is the client
side's, :mod:`gear.harp.messages`. The requests and replies are HarpCaller's (docs/harp.md,
"The wire"); the error types for bad requests are geard's own (the real dispatcher closes
without a word).

Sans-I/O: must not import sockets, asyncio, threads, the broker or the engine.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from gear.harp.messages import _Compact, compact, loads

__all__ = [
    "KINDS",
    "BadRequest",
    "Request",
    "compact",
    "compact_sorted",
    "encode",
    "error_reply",
    "invalid_jobid",
    "loads",
    "new_job_id",
    "parse_request",
]

#: Request kinds, by the key that names them.
KINDS = ("cancel", "get_result", "follow_stream", "read_stream", "get_status")


class BadRequest(Exception):
    """A request geard cannot serve: answered ``{"error": {"type", "message"}}``, then closed."""

    def __init__(self, type_: str, message: str) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message

    def reply(self) -> bytes:
        return error_reply(self.type, self.message)


@dataclass
class Request:
    """One parsed request. ``kind`` is ``call`` or one of :data:`KINDS`."""

    kind: str
    #: The job id (every kind but ``call``); None when it is not a valid UUID.
    job_id: str | None = None
    wait: bool = True
    since: int | None = None
    recent: int | None = None
    host: str = ""
    procedure: str = ""
    arguments: Any = field(default_factory=list)
    timeout: float | None = None
    max_exec_time: float | None = None
    queue: Any = None
    concurrency: int = 1
    info: Any = None


#: The same as :data:`compact` with the keys sorted (a queue name's canonical text).
compact_sorted = _Compact(sort_keys=True)


def encode(obj: Any) -> bytes:
    """One reply line."""
    return compact(obj).encode() + b"\n"


def error_reply(type_: str, message: str) -> bytes:
    return encode({"error": {"type": type_, "message": message}})


_INVALID_JOBID = error_reply("invalid_jobid", "no job with this ID")


def invalid_jobid() -> bytes:
    """What HarpCaller answers get_result and get_status for an unknown or malformed id
    (encoded once)."""
    return _INVALID_JOBID


class _RandomPool:
    """Random bytes from the kernel, read 4 KiB at a time: one getrandom() system call per
    256 job ids instead of one per id. Emptied in a forked child, which must not repeat its
    parent's ids."""

    __slots__ = ("data", "pos")

    SIZE = 4096

    def __init__(self) -> None:
        self.data = b""
        self.pos = 0

    def reset(self) -> None:
        self.data = b""
        self.pos = 0

    def take16(self) -> bytes:
        pos = self.pos
        if pos + 16 > len(self.data):
            self.data = os.urandom(self.SIZE)
            pos = 0
        self.pos = pos + 16
        return self.data[pos:pos + 16]


_POOL = _RandomPool()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOL.reset)


def new_job_id() -> str:
    """A new call's id: a random (version 4) UUID in its canonical text, as
    ``str(uuid.uuid4())`` makes it, without building a UUID object on every call (the
    random bytes come from the kernel's CSPRNG, as uuid4's, read in blocks)."""
    b = bytearray(_POOL.take16())
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


#: The canonical text of a UUID, which needs no parsing to be normalised.
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _job_id(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if _CANONICAL.fullmatch(value):
        return value
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _seconds(obj: dict[str, Any], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise BadRequest("invalid_request", f'"{key}" must be a positive number of seconds')
    return float(value)


def _count(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest("invalid_request", f'"{key}" must be a non-negative integer')
    return value


def parse_request(line: bytes) -> Request:
    """Parse one request line (without its newline). Raises :class:`BadRequest`."""
    try:
        obj = loads(line)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("invalid_json", "the request is not valid JSON") from None
    if not isinstance(obj, dict):
        raise BadRequest("invalid_request", "a request must be a JSON object")
    version = obj.get("harpcaller")
    if version != 1 or version is True:  # True == 1, and the only bool that is
        raise BadRequest("invalid_version", 'a request must carry "harpcaller": 1')
    kind = None
    for k in KINDS:
        if k in obj:
            if kind is not None:
                raise BadRequest("invalid_request",
                                 "a request names one of " + ", ".join(KINDS))
            kind = k
    if kind is None:
        return _parse_call(obj)
    req = Request(kind, job_id=_job_id(obj[kind]))
    if kind == "get_result":
        wait = obj.get("wait", True)
        if not isinstance(wait, bool):
            raise BadRequest("invalid_request", '"wait" must be true or false')
        req.wait = wait
    elif kind in ("follow_stream", "read_stream"):
        req.since = _count(obj, "since")
        req.recent = _count(obj, "recent")
        if req.since is not None and req.recent is not None:
            raise BadRequest("invalid_request", '"since" and "recent" exclude each other')
        if req.since is None and req.recent is None:
            if kind == "follow_stream":
                req.recent = 0
            else:
                req.since = 0
    return req


def _parse_call(obj: dict[str, Any]) -> Request:
    if "procedure" not in obj and "host" not in obj:
        raise BadRequest("invalid_request", "unknown request")
    host, procedure = obj.get("host"), obj.get("procedure")
    if not isinstance(host, str) or not host or "/" in host:
        raise BadRequest("invalid_request", '"host" must be a non-empty string without "/"')
    if not isinstance(procedure, str) or not procedure:
        raise BadRequest("invalid_request", '"procedure" must be a non-empty string')
    arguments = obj.get("arguments", [])
    if not isinstance(arguments, (list, dict)):
        raise BadRequest("invalid_request", '"arguments" must be a JSON array or object')
    req = Request("call", host=host, procedure=procedure, arguments=arguments,
                  info=obj.get("info"))
    req.timeout = _seconds(obj, "timeout")
    req.max_exec_time = _seconds(obj, "max_exec_time")
    queue = obj.get("queue")
    if queue is not None:
        if not isinstance(queue, dict) or not isinstance(queue.get("name"), dict):
            raise BadRequest("invalid_request",
                             '"queue" must be {"name": {...}, "concurrency": N}')
        concurrency = queue.get("concurrency", 1)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise BadRequest("invalid_request", '"concurrency" must be a positive integer')
        req.queue = queue["name"]
        req.concurrency = concurrency
    return req
