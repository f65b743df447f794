"""gear's admin (text protocol) request classes, client side and server side.

Owns ``AdminRequest`` and its subclasses (docs/gear-compat.md §3.5) and
``ServerAdminRequest`` (3.12): the command line each one sends and the ``isComplete`` contract
the connection's reader relies on: called repeatedly with the *whole* accumulated buffer, it
returns ``(False, None)`` until the reply is complete, then ``(True, remainder)`` and sets
``response``. Command encoding and which commands reply with a "."-terminated list come from
:mod:`gear.protocol.admin` (docs/protocol.md §2.2).

Names are gear's camelCase on purpose. Must not import the connection, client or server modules.
"""

from __future__ import annotations

import threading
from typing import Any

from gear.protocol import admin as admin_text
from gear.threaded.jobs import convert_to_bytes

__all__ = [
    "AdminRequest",
    "CancelJobAdminRequest",
    "ServerAdminRequest",
    "ShowJobsAdminRequest",
    "ShowUniqueJobsAdminRequest",
    "StatusAdminRequest",
    "VersionAdminRequest",
    "WorkersAdminRequest",
]


class AdminRequest:
    """Encapsulates a request (and response) sent over the administrative protocol.

    This is a base class that may not be instantiated directly; use one of the subclasses.
    ``response`` holds the raw reply bytes (including the terminating ``.\\n`` of a list reply)
    once :meth:`waitForResponse` returns True.
    """

    command: bytes | None = None
    arguments: tuple[bytes, ...] = ()
    response: bytes | None = None
    #: Whether the reply is one line (``OK``/``ERR``/a version) rather than a "." list.
    single_line = False
    #: isComplete's progress through a list reply: the start of the first line not yet read.
    _complete_position = 0
    _reply: admin_text.AdminReply | None = None

    def __init__(self, *arguments: bytes) -> None:
        self.wait_event = threading.Event()
        self.arguments = arguments
        #: Set by the connection when it was lost before the reply arrived.
        self.error: BaseException | None = None
        if type(self) is AdminRequest:
            raise NotImplementedError("AdminRequest must be subclassed")

    def __repr__(self) -> str:
        return f"<gear.AdminRequest 0x{id(self):x} command: {self.command!r}>"

    def getCommand(self) -> bytes:
        """The command line to send, ``\\n``-terminated."""
        assert self.command is not None
        return admin_text.admin_command(self.command, *self.arguments)

    def isComplete(self, data: bytes) -> tuple[bool, bytes | None]:
        """Whether ``data`` (everything received since the reply began) holds the whole reply."""
        if self.single_line:
            return self._completeLine(data)
        # When a list reply ends (a "." line, or one "ERR ..." line instead of the list) is
        # decided by admin_text.AdminReply, line by line (docs/protocol.md §2.2). The buffer
        # only grows between calls, so each call resumes after the last complete line it saw.
        reply = self._reply
        if reply is None:
            reply = self._reply = admin_text.AdminReply(self.command or b"")
            reply.multiline = True  # single_line, not the command name, decides (subclasses)
        pos = self._complete_position
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                self._complete_position = pos
                return (False, None)
            end = nl - 1 if nl > pos and data[nl - 1] == 13 else nl  # one "\r" before "\n"
            line, pos = data[pos:end], nl + 1
            if reply.add(line):
                break
        self._reply = None
        self._complete_position = 0
        self.response = data[:pos]
        return (True, data[pos:])

    def _completeLine(self, data: bytes) -> tuple[bool, bytes | None]:
        nl = data.find(b"\n")
        if nl < 0:
            return (False, None)
        self.response = data[: nl + 1]
        return (True, data[nl + 1 :])

    def setComplete(self) -> None:
        self.wait_event.set()

    def waitForResponse(self, timeout: float | None = None) -> bool:
        """Wait for the reply; True if it arrived (or the connection was lost, see ``error``)."""
        self.wait_event.wait(timeout)
        return self.wait_event.is_set()


class StatusAdminRequest(AdminRequest):
    """A "status" administrative request: per function, queued+running jobs, running jobs and
    available workers, one tab-separated line each."""

    command = b"status"

    def __init__(self) -> None:
        super().__init__()


class ShowJobsAdminRequest(AdminRequest):
    """A "show jobs" administrative request."""

    command = b"show jobs"

    def __init__(self) -> None:
        super().__init__()


class ShowUniqueJobsAdminRequest(AdminRequest):
    """A "show unique jobs" administrative request."""

    command = b"show unique jobs"

    def __init__(self) -> None:
        super().__init__()


class CancelJobAdminRequest(AdminRequest):
    """A "cancel job" administrative request; the reply is one ``OK`` or ``ERR ...`` line.

    :arg str handle: the job handle to be canceled.
    """

    command = b"cancel job"
    single_line = True

    def __init__(self, handle: str | bytes) -> None:
        super().__init__(convert_to_bytes(handle))


class VersionAdminRequest(AdminRequest):
    """A "version" administrative request; the reply is one ``OK <version>`` line."""

    command = b"version"
    single_line = True

    def __init__(self) -> None:
        super().__init__()


class WorkersAdminRequest(AdminRequest):
    """A "workers" administrative request: one line per connection."""

    command = b"workers"

    def __init__(self) -> None:
        super().__init__()


class ServerAdminRequest(AdminRequest):
    """An administrative command received by a server: complete at the end of its line.

    ``command`` is the line without its ``\\n`` (a ``\\r`` before it is kept, as in gear).
    """

    def __init__(self, connection: Any) -> None:
        super().__init__()
        self.connection = connection

    def isComplete(self, data: bytes) -> tuple[bool, bytes | None]:
        nl = data.find(b"\n")
        if nl < 0:
            return (False, None)
        self.command = data[:nl]
        return (True, data[nl + 1 :])
