"""gear's ``Packet`` class: one binary Gearman packet as the threaded API sees it.

Owns the gear 0.16-compatible packet object (docs/gear-compat.md §3.6): validation of the
magic and body type, ``toBinary``, ``getArgument`` and ``getJob`` (handle -> Job through the
connection's ``related_jobs``). Framing itself (the 12-byte header, docs/protocol.md §1.1) comes
from :mod:`gear.protocol.packets`.

Names are gear's camelCase on purpose (drop-in compatibility). Must not import the connection,
client, worker or server modules: a packet only knows its connection through duck typing.
"""

from __future__ import annotations

from typing import Any

from gear import constants
from gear.errors import InvalidDataError, UnknownJobError
from gear.protocol.messages import work_handle
from gear.protocol.packets import HEADER

__all__ = [
    "Packet",
    "received_packet",
]

_HANDLE_TYPES = frozenset(
    {
        constants.JOB_CREATED,
        constants.JOB_ASSIGN,
        constants.GET_STATUS,
        constants.STATUS_RES,
        constants.WORK_STATUS,
        constants.WORK_COMPLETE,
        constants.WORK_FAIL,
        constants.WORK_EXCEPTION,
        constants.WORK_DATA,
        constants.WORK_WARNING,
    }
)
_SUBMIT_TYPES = frozenset(
    {
        constants.SUBMIT_JOB,
        constants.SUBMIT_JOB_BG,
        constants.SUBMIT_JOB_HIGH,
        constants.SUBMIT_JOB_HIGH_BG,
        constants.SUBMIT_JOB_LOW,
        constants.SUBMIT_JOB_LOW_BG,
        constants.SUBMIT_JOB_SCHED,
        constants.SUBMIT_JOB_EPOCH,
    }
)
_FUNCTION_TYPES = frozenset({constants.CAN_DO, constants.CANT_DO, constants.CAN_DO_TIMEOUT})


class Packet:
    """A data packet received from or to be sent over a connection.

    :arg bytes code: the magic, ``gear.constants.REQ`` or ``gear.constants.RES``.
    :arg int ptype: the packet type (one of the ``gear.constants`` numbers).
    :arg bytes data: the body (NUL-separated arguments).
    :arg Connection connection: the connection the packet was received on, if any.
    """

    # Not hashable (as in gear): packets compare by value and are mutable.
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, code: bytes, ptype: int, data: bytes, connection: Any = None) -> None:
        if not isinstance(code, (bytes, bytearray)):
            raise TypeError("code must be of type bytes or bytearray")
        if code[0:1] != b"\x00":
            raise InvalidDataError("First byte of packet must be 0")
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("data must be of type bytes or bytearray")
        self.code = code
        self.ptype = ptype
        self.data = data
        self.connection = connection

    def __repr__(self) -> str:
        ptype = constants.types.get(self.ptype, "UNKNOWN")
        try:
            extra = self._formatExtraData()
        except Exception:
            extra = ""
        return f"<gear.Packet 0x{id(self):x} type: {ptype}{extra}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Packet):
            return False
        return self.code == other.code and self.ptype == other.ptype and self.data == other.data

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def _formatExtraData(self) -> str:
        arg = self.getArgument
        if self.ptype in _HANDLE_TYPES:
            return f" handle: {arg(0)!r}"
        if self.ptype == constants.JOB_ASSIGN_UNIQ:
            return f" handle: {arg(0)!r} function: {arg(1)!r} unique: {arg(2)!r}"
        if self.ptype in _SUBMIT_TYPES:
            return f" function: {arg(0)!r} unique: {arg(1)!r}"
        if self.ptype in _FUNCTION_TYPES:
            return f" function: {arg(0)!r}"
        if self.ptype == constants.SET_CLIENT_ID:
            return f" id: {arg(0)!r}"
        if self.ptype in (constants.OPTION_REQ, constants.OPTION_RES):
            return f" option: {arg(0)!r}"
        if self.ptype == constants.ERROR:
            return f" code: {arg(0)!r} message: {arg(1)!r}"
        return ""

    def toBinary(self) -> bytes:
        """The packet as it goes on the wire (header + body).

        gear returned a ``bytearray``; we return ``bytes`` (immutable, and what ``sendall``
        and comparisons want). Both support slicing, ``len`` and concatenation.
        """
        return HEADER.pack(bytes(self.code), self.ptype, len(self.data)) + bytes(self.data)

    def getArgument(self, index: int, last: bool = False) -> bytes:
        """The ``index``-th NUL-separated argument; with ``last``, everything from it on."""
        parts = self.data.split(b"\x00")
        if not last:
            return parts[index]
        return b"\x00".join(parts[index:])

    def getJob(self) -> Any:
        """The Job this packet's handle (argument 0) refers to on its connection.

        WORK_FAIL may carry a trailing NUL (gearmand sends ``handle\\0`` when it converts a
        WORK_EXCEPTION, docs/protocol.md §1.3): ``work_handle`` drops it.
        """
        handle = work_handle(self.data)
        job = self.connection.related_jobs.get(handle) if self.connection is not None else None
        if job is None:
            raise UnknownJobError()
        return job


def received_packet(code: bytes, ptype: int, data: bytes, connection: Any) -> Packet:
    """A Packet parsed off the wire, whose magic the parser checked and whose body is bytes:
    built without ``Packet.__init__``'s checks, which hold already (one per packet received)."""
    packet = _new_object(Packet)
    packet.code = code
    packet.ptype = ptype
    packet.data = data
    packet.connection = connection
    return packet


_new_object = object.__new__
