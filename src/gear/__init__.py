"""gear: a Gearman client, worker and job server; a drop-in replacement for PyPI ``gear`` 0.16.

This module only re-exports the public, gear-compatible names; nothing is defined here. The names
are resolved on first use, so ``import gear.protocol`` (or the server) does not load the threaded
client, and a client does not load the server.

Where things live: ``gear.protocol`` (sans-I/O wire core), ``gear.connection`` / ``gear.client`` /
``gear.worker`` / ``gear.jobs`` / ``gear.admin_requests`` / ``gear.packet`` (the threaded API with
gear's names), ``gear.aio`` (asyncio client, worker and admin), ``gear.server`` (the job server).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gear import constants
from gear.acl import ACL, ACLEntry, ACLError
from gear.errors import (
    ConfigurationError,
    ConnectionError,
    DisconnectError,
    GearmanError,
    InterruptedError,
    InvalidDataError,
    NoConnectedServersError,
    ProtocolError,
    RetryIOError,
    ServerError,
    TimeoutError,
    UnknownJobError,
)

__version__ = "0.1.0"

PRECEDENCE_NORMAL = 0
PRECEDENCE_LOW = 1
PRECEDENCE_HIGH = 2

# public name -> module that defines it
_LAZY: dict[str, str] = {
    # threaded, gear-compatible API
    "Packet": "gear.packet",
    "Connection": "gear.connection",
    "NonBlockingConnection": "gear.connection",
    "ServerConnection": "gear.connection",
    "convert_to_bytes": "gear.jobs",
    "best_tls_version": "gear.connection",
    "create_ssl_context": "gear.connection",
    "AdminRequest": "gear.admin_requests",
    "StatusAdminRequest": "gear.admin_requests",
    "ShowJobsAdminRequest": "gear.admin_requests",
    "ShowUniqueJobsAdminRequest": "gear.admin_requests",
    "CancelJobAdminRequest": "gear.admin_requests",
    "VersionAdminRequest": "gear.admin_requests",
    "WorkersAdminRequest": "gear.admin_requests",
    "ServerAdminRequest": "gear.admin_requests",
    "Task": "gear.client",
    "SubmitJobTask": "gear.client",
    "OptionReqTask": "gear.client",
    "BaseClientServer": "gear.client",
    "BaseClient": "gear.client",
    "Client": "gear.client",
    "Worker": "gear.worker",
    "TextWorker": "gear.worker",
    "FunctionRecord": "gear.jobs",
    "BaseJob": "gear.jobs",
    "Job": "gear.jobs",
    "WorkerJob": "gear.jobs",
    "TextJobArguments": "gear.jobs",
    "TextJobUnique": "gear.jobs",
    "TextList": "gear.jobs",
    "TextJob": "gear.jobs",
    "TextWorkerJob": "gear.jobs",
    "BaseBinaryJob": "gear.jobs",
    "BinaryWorkerJob": "gear.jobs",
    "BinaryJob": "gear.jobs",
    "ServerJob": "gear.jobs",
    # the job server, embeddable as gear's Server
    "Server": "gear.server.compat",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from gear.admin_requests import *  # noqa: F403
    from gear.client import *  # noqa: F403
    from gear.connection import *  # noqa: F403
    from gear.jobs import *  # noqa: F403
    from gear.packet import *  # noqa: F403
    from gear.server.compat import Server  # noqa: F401
    from gear.worker import *  # noqa: F403


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gear' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ACL",
    "PRECEDENCE_HIGH",
    "PRECEDENCE_LOW",
    "PRECEDENCE_NORMAL",
    "ACLEntry",
    "ACLError",
    "ConfigurationError",
    "ConnectionError",
    "DisconnectError",
    "GearmanError",
    "InterruptedError",
    "InvalidDataError",
    "NoConnectedServersError",
    "ProtocolError",
    "RetryIOError",
    "ServerError",
    "TimeoutError",
    "UnknownJobError",
    "constants",
    *_LAZY,
]
