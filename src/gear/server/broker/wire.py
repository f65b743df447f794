"""The broker's wire facts: byte-exact replies, gearmand's number parsing, the submit types.

Owns every reply packet the broker sends whole (``ERR_*``, ``NOOP``, ``NO_JOB``), the builders
:func:`res` and :func:`error` on top of :data:`gear.protocol.packets.HEADER`, gearmand's way of
reading numbers (:func:`strtol`, :func:`atoi_u32`) and :data:`SUBMIT_KIND`, the one table of the
submit types a run of submissions takes. Imports only :mod:`gear.constants`,
:mod:`gear.protocol` and the standard library; must not import the rest of the broker.
"""

from __future__ import annotations

import re

import gear.constants as c
from gear.protocol.messages import Priority
from gear.protocol.packets import HEADER, RES

__all__ = [
    "ERR_ACL",
    "ERR_HANDLE_TOO_LARGE",
    "ERR_INVALID_COMMAND",
    "ERR_INVALID_MAGIC",
    "ERR_NOT_FOUND_DATA",
    "ERR_NOT_FOUND_EXCEPTION",
    "ERR_NOT_FOUND_RESULT",
    "ERR_QUEUE_FULL",
    "ERR_UNIQUE_TOO_LARGE",
    "ERR_UNKNOWN_OPTION",
    "HANDLE_LIMIT",
    "NOOP",
    "NO_JOB",
    "SUBMIT_KIND",
    "acl_name",
    "atoi_u32",
    "error",
    "res",
    "strtol",
]

#: ``pack(RES, ptype, len(body))``: a server packet's header (docs/protocol.md §1.1).
pack = HEADER.pack
unpack_from = HEADER.unpack_from


def res(ptype: int, body: bytes) -> bytes:
    """A server packet (``\\0RES``) of type ``ptype``."""
    return pack(RES, ptype, len(body)) + body


def error(code: bytes, text: bytes) -> bytes:
    """An ERROR packet: ``code\\0text``."""
    return res(c.ERROR, code + b"\x00" + text)


# ERROR packets, byte-exact (docs/protocol.md §1.6).
ERR_INVALID_MAGIC = error(b"INVALID_MAGIC", b"Request magic expected")
ERR_INVALID_COMMAND = error(b"INVALID_COMMAND", b"Command not expected")
ERR_UNIQUE_TOO_LARGE = error(b"ARGUMENT_TOO_LARGE", b"Unique value too large")
ERR_HANDLE_TOO_LARGE = error(
    b"ARGUMENT_TOO_LARGE",
    b"Error occurred due to GEARMAND_JOB_HANDLE_SIZE being too small from snprintf",
)
ERR_QUEUE_FULL = error(b"QUEUE_ERROR", b"Job queue is full")
ERR_UNKNOWN_OPTION = error(b"UNKNOWN_OPTION", b"Server does not recognize given option")
ERR_NOT_FOUND_RESULT = error(b"JOB_NOT_FOUND", b"Job given in work result not found")
ERR_NOT_FOUND_DATA = error(b"JOB_NOT_FOUND", b"Job does not exist on server")
ERR_NOT_FOUND_EXCEPTION = error(
    b"JOB_NOT_FOUND", b"An exception was received for a job that does not exist"
)
ERR_ACL = error(b"PERMISSION_DENIED", b"Permission denied by ACL")

NOOP = res(c.NOOP, b"")
NO_JOB = res(c.NO_JOB, b"")

#: gearmand's job-handle buffer is 64 bytes with the NUL (docs/protocol.md §1.2).
HANDLE_LIMIT = 64

#: SUBMIT_JOB{,_HIGH,_LOW}{,_BG} -> (priority, background), indexed by packet type; None for
#: every other type (docs/protocol.md §3.3). The one table of the plain submit types: the
#: handler table, ``_h_submit`` and the pipelined run (``pipeline.py``) all read it.
SUBMIT_KIND: list[tuple[Priority, bool] | None] = [None] * (c.MAX_TYPE + 1)
SUBMIT_KIND[c.SUBMIT_JOB] = (Priority.NORMAL, False)
SUBMIT_KIND[c.SUBMIT_JOB_BG] = (Priority.NORMAL, True)
SUBMIT_KIND[c.SUBMIT_JOB_HIGH] = (Priority.HIGH, False)
SUBMIT_KIND[c.SUBMIT_JOB_HIGH_BG] = (Priority.HIGH, True)
SUBMIT_KIND[c.SUBMIT_JOB_LOW] = (Priority.LOW, False)
SUBMIT_KIND[c.SUBMIT_JOB_LOW_BG] = (Priority.LOW, True)

_STRTOL = re.compile(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_LONG_MAX = 2**63 - 1
_LONG_MIN = -(2**63)


def acl_name(value: bytes) -> str:
    """A function name as the ACL sees it (str; undecodable bytes survive as escapes)."""
    return value.decode("utf-8", "surrogateescape")


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
    """What gearmand stores for a WORK_STATUS number: ``atoi`` cast to uint32 (docs/protocol.md
    §1.2)."""
    m = _STRTOL.match(text)
    if m is None:
        return 0
    # glibc's atoi is (int) strtol: clamped to the long range, then truncated.
    value = max(_LONG_MIN, min(_LONG_MAX, int(m.group(1))))
    return value & 0xFFFFFFFF
