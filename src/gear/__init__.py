"""gear: a Gearman client, worker and job server; a drop-in replacement for PyPI ``gear`` 0.16.

This module only re-exports the public, gear-compatible names; nothing is defined here. The names
are resolved on first use, so ``import gear.protocol`` (or the server) does not load the threaded
client, and a client does not load the server.

Where things live: ``gear.protocol`` (sans-I/O wire core), ``gear.threaded`` (the threaded API
with gear's names: connection, client, worker, jobs, admin_requests, packet), ``gear.aio``
(asyncio client, worker and admin), ``gear.server`` (the job server). gear 0.16 was one module, so
every gear import path is ``gear.<Name>``, and these submodules break none of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gear import constants
from gear._version import __version__ as __version__
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

PRECEDENCE_NORMAL = 0
PRECEDENCE_LOW = 1
PRECEDENCE_HIGH = 2

# public name -> module that defines it
_LAZY: dict[str, str] = {
    # threaded, gear-compatible API
    "Packet": "gear.threaded.packet",
    "Connection": "gear.threaded.connection",
    "NonBlockingConnection": "gear.threaded.connection",
    "ServerConnection": "gear.threaded.connection",
    "convert_to_bytes": "gear.threaded.jobs",
    "best_tls_version": "gear.threaded.connection",
    "create_ssl_context": "gear.threaded.connection",
    "AdminRequest": "gear.threaded.admin_requests",
    "StatusAdminRequest": "gear.threaded.admin_requests",
    "ShowJobsAdminRequest": "gear.threaded.admin_requests",
    "ShowUniqueJobsAdminRequest": "gear.threaded.admin_requests",
    "CancelJobAdminRequest": "gear.threaded.admin_requests",
    "VersionAdminRequest": "gear.threaded.admin_requests",
    "WorkersAdminRequest": "gear.threaded.admin_requests",
    "ServerAdminRequest": "gear.threaded.admin_requests",
    "Task": "gear.threaded.client",
    "SubmitJobTask": "gear.threaded.client",
    "OptionReqTask": "gear.threaded.client",
    "BaseClientServer": "gear.threaded.client",
    "BaseClient": "gear.threaded.client",
    "Client": "gear.threaded.client",
    "Worker": "gear.threaded.worker",
    "TextWorker": "gear.threaded.worker",
    "FunctionRecord": "gear.threaded.jobs",
    "BaseJob": "gear.threaded.jobs",
    "Job": "gear.threaded.jobs",
    "WorkerJob": "gear.threaded.jobs",
    "TextJobArguments": "gear.threaded.jobs",
    "TextJobUnique": "gear.threaded.jobs",
    "TextList": "gear.threaded.jobs",
    "TextJob": "gear.threaded.jobs",
    "TextWorkerJob": "gear.threaded.jobs",
    "BaseBinaryJob": "gear.threaded.jobs",
    "BinaryWorkerJob": "gear.threaded.jobs",
    "BinaryJob": "gear.threaded.jobs",
    "ServerJob": "gear.threaded.jobs",
    # the job server, embeddable as gear's Server
    "Server": "gear.server.gear_server",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from gear.server.gear_server import Server  # noqa: F401
    from gear.threaded.admin_requests import *  # noqa: F403
    from gear.threaded.client import *  # noqa: F403
    from gear.threaded.connection import *  # noqa: F403
    from gear.threaded.jobs import *  # noqa: F403
    from gear.threaded.packet import *  # noqa: F403
    from gear.threaded.worker import *  # noqa: F403


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
