"""pygear's API on our protocol core: ``from gear.compat import pygear`` for ``import pygear``.

pygear (Yelp) was a Python 2 C extension over libgearman. This package keeps its names:
``Client``, ``Worker``, ``Job``, ``Task``, ``Admin``, ``describe_returncode``, the
``PYGEAR_VERBOSE_*`` constants and one exception per libgearman return code (``TIMEOUT``,
``NO_SERVERS``, ``WORK_FAIL``, ...). Underneath: gear.protocol's client and worker sessions,
blocking sockets with TCP_NODELAY, real deadlines and Ctrl-C that works while blocked.
docs/migrating.md §"From pygear" lists every deliberate difference.

Module layout: client, worker, job, task, admin, errors, serializer, connection (the I/O).
May import gear.protocol, gear.net, gear.errors and gear.constants; never the server, the
threaded API or gear.aio.
"""

from __future__ import annotations

from gear.compat.pygear.admin import Admin
from gear.compat.pygear.client import Client
from gear.compat.pygear.errors import *  # noqa: F403 (pygear's exception names)
from gear.compat.pygear.errors import EXCEPTIONS, PygearError, describe_returncode
from gear.compat.pygear.job import Job
from gear.compat.pygear.task import Task
from gear.compat.pygear.worker import Worker

# libgearman's gearman_verbose_t, as pygear exported it.
PYGEAR_VERBOSE_NEVER = 0
PYGEAR_VERBOSE_FATAL = 1
PYGEAR_VERBOSE_ERROR = 2
PYGEAR_VERBOSE_INFO = 3
PYGEAR_VERBOSE_DEBUG = 4
PYGEAR_VERBOSE_CRAZY = 5
PYGEAR_VERBOSE_MAX = 6

__all__ = [
    "PYGEAR_VERBOSE_CRAZY",
    "PYGEAR_VERBOSE_DEBUG",
    "PYGEAR_VERBOSE_ERROR",
    "PYGEAR_VERBOSE_FATAL",
    "PYGEAR_VERBOSE_INFO",
    "PYGEAR_VERBOSE_MAX",
    "PYGEAR_VERBOSE_NEVER",
    "Admin",
    "Client",
    "Job",
    "PygearError",
    "Task",
    "Worker",
    "describe_returncode",
    *EXCEPTIONS,
]
