"""python-gearman 2.0's ``gearman.constants``: priorities, request states, the default port.

The values are python-gearman's own (priorities are ``None``/``'LOW'``/``'HIGH'``, states are
strings), so code that compares or prints them behaves as before. Imports nothing.
"""

from __future__ import annotations

_DEBUG_MODE_ = False
DEFAULT_GEARMAN_PORT = 4730

PRIORITY_NONE = None
PRIORITY_LOW = "LOW"
PRIORITY_HIGH = "HIGH"

#: Not submitted yet, or its connection failed.
JOB_UNKNOWN = "UNKNOWN"
#: Submitted, waiting for its handle (JOB_CREATED).
JOB_PENDING = "PENDING"
#: The server accepted it.
JOB_CREATED = "CREATED"
#: WORK_FAIL (or, here, an ERROR reply to the submission: docs/migrating.md).
JOB_FAILED = "FAILED"
#: WORK_COMPLETE.
JOB_COMPLETE = "COMPLETE"
