"""python-gearman 2.0's ``gearman.errors``, rooted in gear's own :class:`gear.errors.GearmanError`.

The names and the tree are python-gearman's (each derives from its ``GearmanError``), so
``except gearman.errors.ServerUnavailable`` keeps working; since that ``GearmanError`` derives
from gear's, ``except gear.errors.GearmanError`` catches these too. ``ConnectionError`` shadows
the builtin here exactly as it did in python-gearman. Imports only ``gear.errors``.
"""

from __future__ import annotations

from gear import errors as _gear_errors

__all__ = [
    "ConnectionError",
    "ExceededConnectionAttempts",
    "GearmanError",
    "InvalidAdminClientState",
    "InvalidClientState",
    "InvalidWorkerState",
    "ProtocolError",
    "ServerUnavailable",
    "UnknownCommandError",
]


class GearmanError(_gear_errors.GearmanError):
    """The root of python-gearman's errors."""


class ConnectionError(GearmanError):
    """One connection could not be made, or broke."""


class ServerUnavailable(GearmanError):
    """No server of the host list could be reached (or every connection died)."""


class ProtocolError(GearmanError):
    """The server sent something that cannot be read, or an admin reply was not as expected."""


class UnknownCommandError(GearmanError):
    """A packet type this side has no handler for."""


class ExceededConnectionAttempts(GearmanError):
    """A request was sent ``max_retries + 1`` times and its connection failed each time."""


class InvalidClientState(GearmanError):
    """A reply that does not fit the client's state (e.g. JOB_CREATED with nothing pending)."""


class InvalidWorkerState(GearmanError):
    """A reply that does not fit the worker's state."""


class InvalidAdminClientState(GearmanError):
    """An admin reply did not come in time, or did not match the command."""
