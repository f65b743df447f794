"""The seed corpus: what the fuzz targets start from, built from the traffic real peers send.

``python3 bench/fuzz.py --write-seeds`` writes these into ``tests/fuzz/corpus/<target>/``
(one small file each); the repository keeps them, and crash inputs found later are added
beside them by hand (named ``regress-*``) so that the suite replays them.

* packets: every request and response type once, with the fields libgearman, gear and
  gearmand put in them, then whole sessions (a client's submit and its results, a worker's
  grab cycle, admin lines mixed in, gearadmin's ``\\r\\n`` lines), under each limit setting.
* admin: each command gearadmin and gear send, alone and as one session, with and without an
  ACL and its ``acl`` verbs.
* broker: programs (tests/fuzz/targets.py ``broker``) whose steps are these sessions as raw
  bytes from several peers, with disconnects, timers and store answers between them.
"""

from __future__ import annotations

from gear import constants as c
from gear.protocol.packets import FIELD_COUNTS, REQ, RES, encode, request

__all__ = ["SEEDS", "seeds"]

#: Plausible fields for each type (a handle, a function, a unique, data...).
_FIELDS: dict[int, list[bytes]] = {
    c.CAN_DO: [b"a"], c.CANT_DO: [b"a"], c.SUBMIT_JOB: [b"a", b"", b"data"],
    c.JOB_CREATED: [b"H:t:1"], c.JOB_CANCEL: [b"H:t:1"], c.JOB_ASSIGN: [b"H:t:1", b"a", b"data"],
    c.WORK_STATUS: [b"H:t:1", b"1", b"2"], c.WORK_COMPLETE: [b"H:t:1", b"done"],
    c.WORK_FAIL: [b"H:t:1"], c.GET_STATUS: [b"H:t:1"], c.ECHO_REQ: [b"ping"],
    c.ECHO_RES: [b"ping"], c.SUBMIT_JOB_BG: [b"a", b"u1", b"data"],
    c.ERROR: [b"ERR_CODE", b"text"], c.STATUS_RES: [b"H:t:1", b"1", b"0", b"1", b"2"],
    c.SUBMIT_JOB_HIGH: [b"b", b"", b"x"], c.SET_CLIENT_ID: [b"me"],
    c.CAN_DO_TIMEOUT: [b"a", b"2"], c.WORK_EXCEPTION: [b"H:t:1", b"boom"],
    c.OPTION_REQ: [b"exceptions"], c.OPTION_RES: [b"exceptions"],
    c.WORK_DATA: [b"H:t:1", b"part"], c.WORK_WARNING: [b"H:t:1", b"warn"],
    c.JOB_ASSIGN_UNIQ: [b"H:t:1", b"a", b"u1", b"data"],
    c.SUBMIT_JOB_HIGH_BG: [b"b", b"u2", b"x"], c.SUBMIT_JOB_LOW: [b"c", b"", b"x"],
    c.SUBMIT_JOB_LOW_BG: [b"c", b"-", b"x"],
    c.SUBMIT_JOB_SCHED: [b"a", b"", b"1", b"2", b"3", b"4", b"5", b"x"],
    c.SUBMIT_JOB_EPOCH: [b"a", b"", b"1000002", b"x"],
    c.SUBMIT_REDUCE_JOB: [b"a", b"", b"r", b"agg", b"x"],
    c.SUBMIT_REDUCE_JOB_BACKGROUND: [b"a", b"", b"r", b"agg", b"x"],
    c.JOB_ASSIGN_ALL: [b"H:t:1", b"a", b"u1", b"r", b"data"],
    c.GET_STATUS_UNIQUE: [b"u1"], c.STATUS_RES_UNIQUE: [b"u1", b"1", b"0", b"1", b"2", b"1"],
}

#: Types a server sends (the rest are requests).
_RESPONSES = {c.NOOP, c.JOB_CREATED, c.NO_JOB, c.JOB_ASSIGN, c.ECHO_RES, c.ERROR,
              c.STATUS_RES, c.OPTION_RES, c.JOB_ASSIGN_UNIQ, c.JOB_ASSIGN_ALL,
              c.STATUS_RES_UNIQUE, c.JOB_CANCEL}

ADMIN_LINES = [b"status", b"prioritystatus", b"workers", b"version", b"getpid", b"verbose",
               b"show jobs", b"show unique jobs", b"cancel job H:t:2", b"create function z",
               b"drop function z", b"maxqueue a 10", b"maxqueue b 1 2 3", b"shutdown graceful",
               b"acl list", b"acl grant invoke user ^b", b"acl grant register bob .*",
               b"acl grant grant bob", b"acl revoke invoke user", b"acl self-revoke all",
               b"show", b"bogus command", b" status", b"a b c d e f"]


def _packet(ptype: int) -> bytes:
    magic = RES if ptype in _RESPONSES else REQ
    fields = _FIELDS.get(ptype, [])
    return encode(magic, ptype, fields if FIELD_COUNTS[ptype] else [])


def _client_session() -> bytes:
    return (request(c.OPTION_REQ, b"exceptions") + request(c.SET_CLIENT_ID, b"client-1")
            + request(c.SUBMIT_JOB, b"a", b"", b"hello") + request(c.SUBMIT_JOB_BG, b"b", b"u1",
                                                                   b"later")
            + request(c.GET_STATUS, b"H:t:1") + request(c.ECHO_REQ, b"ping"))


def _worker_session(handle: bytes = b"H:t:1") -> bytes:
    return (request(c.CAN_DO, b"a") + request(c.CAN_DO_TIMEOUT, b"b", b"1")
            + request(c.GRAB_JOB_UNIQ) + request(c.WORK_STATUS, handle, b"1", b"2")
            + request(c.WORK_DATA, handle, b"part") + request(c.WORK_COMPLETE, handle, b"ok")
            + request(c.PRE_SLEEP))


def _packets() -> dict[str, bytes]:
    out = {}
    for ptype in sorted(FIELD_COUNTS):
        out[f"type-{ptype:02d}"] = b"\x00\x07" + _packet(ptype)
    session = _client_session() + b"status\n" + _worker_session() + b"workers\r\n"
    for flags, name in ((0, "defaults"), (3, "packet-limit-12"), (0x18, "line-limit-8"),
                        (0x40, "binary-only"), (0x80, "unknown-types")):
        out[f"session-{name}"] = bytes([flags, 1]) + session
    out["admin-crlf"] = b"\x00\x02" + b"".join(line + b"\r\n" for line in ADMIN_LINES[:8])
    out["custom-type"] = b"\x80\x03" + b"\x00REQ\x00\x00\x00\x64\x00\x00\x00\x01z"
    return out


def _admin() -> dict[str, bytes]:
    out = {}
    for i, line in enumerate(ADMIN_LINES):
        out[f"line-{i:02d}"] = b"\x00" + line
    session = b"\n".join(ADMIN_LINES)
    for flags, name in ((0, "plain"), (4, "crlf"), (3, "acl-admin"), (1, "acl-anonymous"),
                        (7, "acl-admin-crlf")):
        out[f"session-{name}"] = bytes([flags]) + session
    return out


def _raw(peer: int, data: bytes) -> bytes:
    """A broker-program step: ``data`` from peer ``peer`` as raw bytes (op 1)."""
    assert len(data) < 512
    return bytes([1, peer, len(data) % 256, len(data) // 256])


def _program(*steps: tuple[int, bytes] | bytes) -> bytes:
    out = b""
    for step in steps:
        if isinstance(step, tuple):
            out += _raw(*step) + step[1]
        else:
            out += step
    return out


DISCONNECT = bytes([0, 0])  # op 0: peer 0 leaves
TIMERS = bytes([3, 0, 4])   # op 3: the clock moves 4 s, timers run
STORE_OK = bytes([2, 0, 0, 1])  # op 2: the oldest pending store succeeds


def _broker() -> dict[str, bytes]:
    client, bg = _client_session(), request(c.SUBMIT_JOB_BG, b"a", b"u9", b"keep")
    worker = _worker_session()
    epoch = request(c.SUBMIT_JOB_EPOCH, b"a", b"", b"1000002", b"soon")
    progs = {
        "client-then-worker": _program((0, client), (1, worker)),
        "worker-sleeps-first": _program((1, request(c.CAN_DO, b"a") + request(c.PRE_SLEEP)),
                                        (0, client), (1, request(c.GRAB_JOB))),
        "worker-leaves-mid-job": _program((0, client), (1, request(c.CAN_DO, b"a")
                                                      + request(c.GRAB_JOB_ALL)),
                                          bytes([0, 1]), (2, worker)),
        "client-leaves": _program((0, client), DISCONNECT, (1, worker)),
        "coalesced": _program((0, request(c.SUBMIT_JOB, b"a", b"u1", b"x")),
                              (2, request(c.SUBMIT_JOB, b"a", b"u1", b"x")), (1, worker)),
        "epoch": _program((0, epoch), TIMERS, (1, worker)),
        "timeout": _program((1, request(c.CAN_DO_TIMEOUT, b"a", b"1") + request(c.GRAB_JOB)),
                            (0, client), (1, request(c.GRAB_JOB)), TIMERS),
        "cancel": _program((0, client), bytes([4, 0, 1, 0])),
        "store": b"\x01" + _program((0, bg), STORE_OK, (1, worker)),
        "store-batched": b"\x03" + _program((0, bg + bg), STORE_OK, (1, worker)),
        "store-fails": b"\x01" + _program((0, bg), bytes([2, 0, 0, 0]), (1, worker)),
        "observed": b"\x20" + _program((0, client), (1, worker), DISCONNECT),
        "retries": b"\xc0" + _program((0, bg), (1, request(c.CAN_DO, b"a")
                                                    + request(c.GRAB_JOB)), bytes([0, 1])),
        "admin-mixed": _program((0, b"status\n" + client + b"workers\r\n"), (1, worker)),
        "bad-magic": _program((0, client), (1, b"\x00XYZ" + bytes(8))),
        "res-magic": _program((1, encode(RES, c.WORK_COMPLETE, [b"H:t:1", b"x"]))),
        "unknown-type": _program((1, b"\x00REQ\x00\x00\x00\x63\x00\x00\x00\x00")),
        "reduce": _program((0, request(c.SUBMIT_REDUCE_JOB, b"a", b"", b"r", b"agg", b"x")),
                           (1, worker)),
        "status-unique": _program((0, request(c.SUBMIT_JOB, b"a", b"u1", b"x")
                                   + request(c.GET_STATUS_UNIQUE, b"u1"))),
        "long-unique": _program((0, request(c.SUBMIT_JOB, b"a", b"u" * 65, b"x"))),
        "built-packets": bytes([5, 0, 0, 0] * 8 + [5, 1, 4, 1] * 4),
    }
    # The first byte is the run's flags (targets.py ``broker``): 0 unless the name says.
    return {name: prog if name.startswith(("store", "observed", "retries")) else b"\x00" + prog
            for name, prog in progs.items()}


SEEDS = {"packets": _packets, "admin": _admin, "broker": _broker}


def seeds(target: str) -> dict[str, bytes]:
    """The seed inputs of ``target``, by file name."""
    return SEEDS[target]()
