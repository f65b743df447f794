"""Gearman packet type numbers and names, and the two packet magics.

This module owns the numbers only (docs/protocol.md §1.4). It keeps gear
0.16's public names and values (``gear.constants.SUBMIT_JOB`` and friends, the ``types`` dict,
``REQ``/``RES``), adds the types gear never had (37-42) and geard's one extension type,
``JOB_CANCEL`` (64, docs/protocol.md §1.7), numbered well above gearmand's range. It imports
nothing from the package.
"""

from __future__ import annotations

REQ = b"\x00REQ"
RES = b"\x00RES"

CAN_DO = 1
CANT_DO = 2
RESET_ABILITIES = 3
PRE_SLEEP = 4
NOOP = 6
SUBMIT_JOB = 7
JOB_CREATED = 8
GRAB_JOB = 9
NO_JOB = 10
JOB_ASSIGN = 11
WORK_STATUS = 12
WORK_COMPLETE = 13
WORK_FAIL = 14
GET_STATUS = 15
ECHO_REQ = 16
ECHO_RES = 17
SUBMIT_JOB_BG = 18
ERROR = 19
STATUS_RES = 20
SUBMIT_JOB_HIGH = 21
SET_CLIENT_ID = 22
CAN_DO_TIMEOUT = 23
ALL_YOURS = 24
WORK_EXCEPTION = 25
OPTION_REQ = 26
OPTION_RES = 27
WORK_DATA = 28
WORK_WARNING = 29
GRAB_JOB_UNIQ = 30
JOB_ASSIGN_UNIQ = 31
SUBMIT_JOB_HIGH_BG = 32
SUBMIT_JOB_LOW = 33
SUBMIT_JOB_LOW_BG = 34
SUBMIT_JOB_SCHED = 35
SUBMIT_JOB_EPOCH = 36
SUBMIT_REDUCE_JOB = 37
SUBMIT_REDUCE_JOB_BACKGROUND = 38
GRAB_JOB_ALL = 39
JOB_ASSIGN_ALL = 40
GET_STATUS_UNIQUE = 41
STATUS_RES_UNIQUE = 42
#: geard's extension (docs/protocol.md §1.7): the server tells a worker that opted in with
#: OPTION_REQ ``job_cancel`` that a job it runs was cancelled. RES magic, one field: the handle.
JOB_CANCEL = 64

#: Packet type number -> name, as in gear (which stopped at 36); type 5 is unused by the protocol.
types: dict[int, str] = dict(
    sorted(
        (value, name)
        for name, value in list(globals().items())
        if name.isupper() and isinstance(value, int)
    )
)

#: The highest packet type number gearmand 1.1 knows; a request above it is rejected.
MAX_TYPE = STATUS_RES_UNIQUE
#: The highest packet type number of all (geard's extension included).
MAX_EXTENDED_TYPE = JOB_CANCEL
