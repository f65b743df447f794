"""Every exception the package raises, in one hierarchy.

gear 0.16 defined ten unrelated exceptions, several shadowing builtins. We keep their names (code
does ``except gear.TimeoutError``) but root them all in :class:`GearmanError`, so that
``except GearmanError`` catches everything this library raises. Where a builtin exception of the
same meaning exists, ours also derives from it (``gear.TimeoutError`` is a ``TimeoutError``).

Imports nothing from the package.
"""

from __future__ import annotations

import builtins


class GearmanError(Exception):
    """Base class of every error raised by this package."""


class ConnectionError(GearmanError):
    """A connection to a Gearman server could not be made or was lost."""


class InvalidDataError(GearmanError):
    """Data that does not follow the protocol, or an argument of the wrong shape."""


class ProtocolError(InvalidDataError):
    """The byte stream is not valid Gearman protocol; the connection cannot continue."""


class BadMagicError(ProtocolError):
    """A packet started with something other than ``\\0REQ`` or ``\\0RES``."""


class UnknownPacketTypeError(ProtocolError):
    """A packet type outside 1-42."""


class MalformedPacketError(ProtocolError):
    """A packet whose body does not hold the arguments its type requires."""


class PacketTooLargeError(ProtocolError):
    """A packet or text line larger than the configured maximum."""


class ConfigurationError(GearmanError):
    """An invalid argument or combination of settings."""


class NoConnectedServersError(GearmanError):
    """No server connection is available for the request."""


class UnknownJobError(GearmanError):
    """A packet referred to a job handle this connection does not know."""


class InterruptedError(GearmanError, builtins.InterruptedError):
    """A blocking wait (``Worker.getJob``) was interrupted by shutdown or stopWaitingForJobs."""


class TimeoutError(GearmanError, builtins.TimeoutError):
    """A blocking call did not complete in time."""


class DisconnectError(GearmanError):
    """The peer closed the connection."""


class RetryIOError(GearmanError):
    """A non-blocking socket operation would block; try again when the socket is ready."""


class ServerError(GearmanError):
    """The server answered with an ERROR packet.

    ``code`` and ``text`` are the two arguments of the packet, as bytes
    (e.g. ``b"QUEUE_ERROR"``, ``b"Job queue is full"``).
    """

    def __init__(self, code: bytes, text: bytes) -> None:
        super().__init__(f"{code.decode('utf-8', 'replace')}: {text.decode('utf-8', 'replace')}")
        self.code = code
        self.text = text


class JobFailedError(GearmanError):
    """The job ended with WORK_FAIL (or was cancelled, or its retries ran out)."""

    def __init__(self, handle: bytes, message: str = "job failed") -> None:
        super().__init__(f"{message}: {handle.decode('utf-8', 'replace')}")
        self.handle = handle


class JobExceptionError(JobFailedError):
    """The worker ended the job with WORK_EXCEPTION; ``data`` is the exception payload."""

    def __init__(self, handle: bytes, data: bytes) -> None:
        super().__init__(handle, "job raised an exception")
        self.data = data

    def __str__(self) -> str:
        return f"{self.args[0]}: {self.data.decode('utf-8', 'replace')}"


class ServerStartError(GearmanError):
    """The job server could not start (cannot listen, cannot load its persistent queue...)."""
