"""python-gearman 2.0's API on gear's protocol core: change ``import gearman`` to
``from gear.compat import gearman`` (docs/migrating.md, "From python-gearman").

The top-level names are python-gearman 2.0.2's: ``GearmanClient``, ``GearmanWorker``,
``GearmanAdminClient``, ``DataEncoder``, the ``PRIORITY_*`` and ``JOB_*`` constants; the
submodules users import (``client``, ``worker``, ``admin_client``, ``constants``, ``errors``,
``job``, ``connection_manager``, ``protocol``, ``util``) are here under the same names. It is a
single-threaded, ``select()``-based front like python-gearman, built on the shared sans-I/O
sessions of :mod:`gear.protocol` (docs/development.md). It imports ``gear.protocol``,
``gear.net``, ``gear.errors`` and ``gear.constants`` only: not the threaded API, asyncio or the
server (tests/test_layering.py).
"""

from __future__ import annotations

import logging

from gear.compat.gearman.admin_client import GearmanAdminClient
from gear.compat.gearman.client import GearmanClient
from gear.compat.gearman.connection_manager import DataEncoder
from gear.compat.gearman.constants import (
    JOB_COMPLETE,
    JOB_CREATED,
    JOB_FAILED,
    JOB_PENDING,
    JOB_UNKNOWN,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_NONE,
)
from gear.compat.gearman.worker import GearmanWorker

__all__ = [
    "JOB_COMPLETE",
    "JOB_CREATED",
    "JOB_FAILED",
    "JOB_PENDING",
    "JOB_UNKNOWN",
    "PRIORITY_HIGH",
    "PRIORITY_LOW",
    "PRIORITY_NONE",
    "DataEncoder",
    "GearmanAdminClient",
    "GearmanClient",
    "GearmanWorker",
]

#: The python-gearman version whose API this is.
__version__ = "2.0.2"

logging.getLogger("gearman").addHandler(logging.NullHandler())
