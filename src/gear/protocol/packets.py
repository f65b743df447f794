"""Framing of the Gearman wire protocol: binary packets and admin text lines on one stream.

Owns: the 12-byte header (docs/protocol.md §1.1), the per-type field counts (§1.4),
encoding a packet from its arguments, splitting a body into its arguments with validation, and an
incremental :class:`Decoder` that takes bytes in any chunking and yields :class:`Frame` (binary
packet) and :class:`AdminLine` (one admin text line) events in stream order.

Must not import sockets, threads, asyncio or anything above ``gear.protocol``.

Field counts: every argument but the last is NUL-terminated, and the last one takes the rest of
the body, so a body with ``n`` fields is split with ``body.split(b"\\0", n - 1)`` and must yield
exactly ``n`` parts. gearmand's parser is not bounded by the declared size (§1.1); ours is, and
a body with too few separators is a :class:`~gear.errors.MalformedPacketError`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from gear import constants as c
from gear.errors import (
    BadMagicError,
    InvalidDataError,
    MalformedPacketError,
    PacketTooLargeError,
    UnknownPacketTypeError,
)

REQ = c.REQ
RES = c.RES

#: ``!4sII``: magic, type, body size (all big-endian).
HEADER = struct.Struct("!4sII")
HEADER_SIZE = HEADER.size

#: Default cap on one packet body. gearmand has none (memory DoS, docs/protocol.md §1.1); ours is
#: configurable and generous.
DEFAULT_MAX_PACKET_SIZE = 64 * 1024 * 1024
#: Default cap on one admin text line (gearmand stalls past 8192 bytes, docs/protocol.md §2.1).
DEFAULT_MAX_LINE_SIZE = 64 * 1024

#: Number of fields in the body of each packet type (docs/protocol.md §1.4, "fields" column:
#: the NUL-terminated arguments plus the opaque tail of the types whose last field is data).
#: 0 means the body is ignored.
FIELD_COUNTS: dict[int, int] = {
    c.CAN_DO: 1,
    c.CANT_DO: 1,
    c.RESET_ABILITIES: 0,
    c.PRE_SLEEP: 0,
    5: 0,  # unused by the protocol; gearmand answers ERROR INVALID_COMMAND
    c.NOOP: 0,
    c.SUBMIT_JOB: 3,
    c.JOB_CREATED: 1,
    c.GRAB_JOB: 0,
    c.NO_JOB: 0,
    c.JOB_ASSIGN: 3,
    c.WORK_STATUS: 3,
    c.WORK_COMPLETE: 2,
    c.WORK_FAIL: 1,
    c.GET_STATUS: 1,
    c.ECHO_REQ: 1,
    c.ECHO_RES: 1,
    c.SUBMIT_JOB_BG: 3,
    c.ERROR: 2,
    c.STATUS_RES: 5,
    c.SUBMIT_JOB_HIGH: 3,
    c.SET_CLIENT_ID: 1,
    c.CAN_DO_TIMEOUT: 2,
    c.ALL_YOURS: 0,
    c.WORK_EXCEPTION: 2,
    c.OPTION_REQ: 1,
    c.OPTION_RES: 1,
    c.WORK_DATA: 2,
    c.WORK_WARNING: 2,
    c.GRAB_JOB_UNIQ: 0,
    c.JOB_ASSIGN_UNIQ: 4,
    c.SUBMIT_JOB_HIGH_BG: 3,
    c.SUBMIT_JOB_LOW: 3,
    c.SUBMIT_JOB_LOW_BG: 3,
    c.SUBMIT_JOB_SCHED: 8,
    c.SUBMIT_JOB_EPOCH: 4,
    c.SUBMIT_REDUCE_JOB: 5,
    c.SUBMIT_REDUCE_JOB_BACKGROUND: 5,
    c.GRAB_JOB_ALL: 0,
    c.JOB_ASSIGN_ALL: 5,
    c.GET_STATUS_UNIQUE: 1,
    c.STATUS_RES_UNIQUE: 6,
    c.JOB_CANCEL: 1,  # geard's extension (docs/protocol.md §1.7)
}

# A list indexed by type for the hot path; -1 marks a type that is not valid on the wire (0,
# 43-63, above 64).
_COUNTS: list[int] = [FIELD_COUNTS.get(t, -1) for t in range(c.MAX_EXTENDED_TYPE + 1)]


def type_name(ptype: int) -> str:
    """The protocol name of a packet type (``"UNKNOWN"`` for numbers outside the table)."""
    return c.types.get(ptype, "UNKNOWN")


class Frame(NamedTuple):
    """One binary packet as read from the wire: its magic, type and raw body."""

    magic: bytes
    ptype: int
    body: bytes

    @property
    def is_request(self) -> bool:
        return self.magic == REQ

    def args(self) -> list[bytes]:
        """The body split into this type's fields (see :func:`split_args`)."""
        return split_args(self.ptype, self.body)

    def encode(self) -> bytes:
        return HEADER.pack(self.magic, self.ptype, len(self.body)) + self.body

    def __repr__(self) -> str:
        magic = "REQ" if self.magic == REQ else "RES"
        return f"<Frame {magic} {type_name(self.ptype)} {self.body[:64]!r}>"


class AdminLine(NamedTuple):
    """One admin-protocol text line, without its ``\\n`` (and without one ``\\r`` before it)."""

    line: bytes


def split_args(ptype: int, body: bytes) -> list[bytes]:
    """Split ``body`` into the fields of packet type ``ptype``.

    Raises :class:`~gear.errors.UnknownPacketTypeError` for a type outside the table and
    :class:`~gear.errors.MalformedPacketError` when the body holds fewer NUL separators than the
    type needs. A type without arguments ignores its body, as gearmand does.
    """
    n = _COUNTS[ptype] if 0 <= ptype < len(_COUNTS) else -1
    if n < 0:
        raise UnknownPacketTypeError(f"unknown packet type {ptype}")
    if n == 0:
        return []
    if n == 1:
        return [body]
    parts = body.split(b"\x00", n - 1)
    if len(parts) != n:
        raise MalformedPacketError(
            f"{type_name(ptype)} needs {n} arguments, got {len(parts)} in a {len(body)}-byte body"
        )
    return parts


def encode(magic: bytes, ptype: int, args: Sequence[bytes] = ()) -> bytes:
    """Encode one packet. ``args`` must match the type's field count (0 means an empty body).

    Non-last arguments may not contain NUL: it would shift every following field.
    """
    n = _COUNTS[ptype] if 0 <= ptype < len(_COUNTS) else -1
    if n < 0:
        raise UnknownPacketTypeError(f"unknown packet type {ptype}")
    if len(args) != n:
        raise InvalidDataError(f"{type_name(ptype)} takes {n} arguments, not {len(args)}")
    for arg in args[:-1]:
        if b"\x00" in arg:
            raise InvalidDataError(f"{type_name(ptype)}: argument {arg[:64]!r} contains NUL")
    body = b"\x00".join(args)
    return HEADER.pack(magic, ptype, len(body)) + body


def request(ptype: int, *args: bytes) -> bytes:
    """Encode a ``\\0REQ`` packet (client or worker to server)."""
    return encode(REQ, ptype, args)


def response(ptype: int, *args: bytes) -> bytes:
    """Encode a ``\\0RES`` packet (server to client or worker)."""
    return encode(RES, ptype, args)


class Decoder:
    """Incremental decoder of one connection's input stream.

    Feed it whatever ``recv`` returned; iterate the result to get the complete events in order.
    At the start of every item a NUL byte means a binary packet and anything else an admin text
    line (docs/protocol.md §1.1, "Text and binary on one stream"), so the two can be mixed on one
    connection.

    Errors (bad magic, unknown type, oversize) are raised *while iterating*, after every event that
    preceded the bad bytes was yielded, so a server can answer those before it closes the
    connection. After an error the decoder is unusable.
    """

    __slots__ = ("_buf", "_failed", "max_line_size", "max_packet_size", "text", "unknown_types")

    def __init__(
        self,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        max_line_size: int = DEFAULT_MAX_LINE_SIZE,
        text: bool = True,
        unknown_types: bool = False,
    ) -> None:
        self._buf = bytearray()
        self._failed = False
        self.max_packet_size = max_packet_size
        self.max_line_size = max_line_size
        self.text = text
        #: Frame packets of types the protocol does not define (their body whole) instead of
        #: raising UnknownPacketTypeError: for servers with their own packet types.
        self.unknown_types = unknown_types

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete event."""
        return len(self._buf)

    def feed(self, data: bytes) -> Iterator[Frame | AdminLine]:
        """Add ``data`` and yield every event it completes."""
        if self._failed:
            raise MalformedPacketError("decoder already failed")
        buf = self._buf
        buf += data
        n = len(buf)
        pos = 0
        unpack_from = HEADER.unpack_from
        counts = _COUNTS
        ncounts = len(counts)
        max_packet = self.max_packet_size
        known_only = not self.unknown_types
        try:
            while pos < n:
                if buf[pos] == 0:
                    if n - pos < HEADER_SIZE:
                        break
                    magic, ptype, size = unpack_from(buf, pos)
                    if magic != REQ and magic != RES:
                        self._failed = True
                        raise BadMagicError(f"bad packet magic {bytes(magic)!r}")
                    if known_only and (ptype >= ncounts or counts[ptype] < 0):
                        self._failed = True
                        raise UnknownPacketTypeError(f"unknown packet type {ptype}")
                    if size > max_packet:
                        self._failed = True
                        raise PacketTooLargeError(
                            f"{type_name(ptype)} body of {size} bytes exceeds the "
                            f"{max_packet}-byte limit"
                        )
                    end = pos + HEADER_SIZE + size
                    if end > n:
                        break
                    frame = Frame(magic, ptype, bytes(buf[pos + HEADER_SIZE : end]))
                    pos = end
                    yield frame
                else:
                    if not self.text:
                        self._failed = True
                        raise BadMagicError(
                            f"expected a binary packet, got {bytes(buf[pos : pos + 4])!r}"
                        )
                    nl = buf.find(b"\n", pos)
                    if nl < 0:
                        if n - pos > self.max_line_size:
                            self._failed = True
                            raise PacketTooLargeError(
                                f"admin line longer than {self.max_line_size} bytes"
                            )
                        break
                    if nl - pos > self.max_line_size:
                        # The same limit whatever the chunking: a line that arrives whole with
                        # its "\n" is held to what a partial one is held to above.
                        self._failed = True
                        raise PacketTooLargeError(
                            f"admin line longer than {self.max_line_size} bytes"
                        )
                    end = nl
                    # one "\r" directly before "\n" (docs/protocol.md §2.1)
                    if end > pos and buf[end - 1] == 13:
                        end -= 1
                    line = AdminLine(bytes(buf[pos:end]))
                    pos = nl + 1
                    yield line
        finally:
            if pos:
                del buf[:pos]

    def feed_all(self, data: bytes) -> list[Frame | AdminLine]:
        """:meth:`feed`, collected into a list (raises on the first error)."""
        return list(self.feed(data))
