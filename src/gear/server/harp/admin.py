"""The ``harp`` admin command: HarpCaller's operator commands on geard's admin text protocol.

Owns :class:`HarpAdmin`, registered by the engine as an admin extension
(``gear.server.admin.extensions``) so that ``telnet``, ``nc`` or any Gearman admin tool reach
the call records. HarpCaller's admin CLI has ``list``, ``info``, ``cancel``, ``queue-list``,
``queue-cancel`` and ``prune-jobs``; here (docs/harp.md, "Admin commands"):

* ``harp list`` (queued and running calls) and ``harp list all`` (every record kept): one JSON
  object per line, then ``.``; ``harp info ID``: one line with the whole record, then ``.``;
* ``harp queues``: one line per queue in use; ``harp queue NAME-JSON``: its calls;
* ``harp cancel ID``, ``harp cancel queue NAME-JSON``: ``OK`` / ``OK <n>``; with an ACL the
  connection needs invoke permission on each call's function ``host/procedure`` (as
  ``cancel job``), else ``ERR PERMISSION_DENIED`` and nothing is cancelled;
* ``harp prune [SECONDS]``: forget ended records older than SECONDS (default: the retention),
  ``OK <n>``; with an ACL it needs the grant permission (it deletes other people's results).

Errors are ``ERR <CODE> <text with + for spaces>\\r\\n`` as gearmand writes them. Sans-I/O: must
not import sockets, asyncio, threads, the engine or the admin package (the engine wires it).
"""

from __future__ import annotations

import json
from typing import Any

from gear.server.harp.records import CallRecord
from gear.server.harp.service import HarpService

__all__ = ["HarpAdmin"]

END = b".\n"
OK = b"OK\r\n"
_USAGE = ("usage: harp list [all] | harp info ID | harp cancel ID | harp queues | "
          "harp queue NAME-JSON | harp cancel queue NAME-JSON | harp prune [SECONDS]")


def _err(code: str, text: str = "") -> bytes:
    tail = (" " + text.replace(" ", "+")) if text else ""
    return f"ERR {code}{tail}\r\n".encode()


def _line(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _state(rec: CallRecord) -> str:
    if rec.ended:
        return "ended"
    return "queued" if rec.start_time is None else "running"


def _summary(rec: CallRecord) -> dict[str, Any]:
    return {"job_id": rec.id, "state": _state(rec), "host": rec.host,
            "procedure": rec.procedure,
            "queue": None if rec.queue is None else json.loads(rec.queue),
            **rec.status()["time"]}


class HarpAdmin:
    """``command(broker, peer, line) -> reply`` for the admin extension hook."""

    def __init__(self, service: HarpService) -> None:
        self.service = service

    def __call__(self, broker: Any, peer: Any, line: bytes) -> bytes:
        text = line.decode("utf-8", "replace")
        words = text.split()
        sub = words[1].lower() if len(words) > 1 else ""
        handler = getattr(self, "_c_" + sub, None) if sub.isalpha() else None
        if handler is None:
            return _err("INVALID_ARGUMENTS", _USAGE)
        # The rest of the line after the subcommand, spaces kept (a JSON queue name).
        rest = text.split(None, 2)[2].strip() if len(words) > 2 else ""
        reply: bytes = handler(peer, broker.config.acl, rest)
        return reply

    # -- listings ----------------------------------------------------------------------------

    def _c_list(self, peer: Any, acl: Any, rest: str) -> bytes:
        if rest.lower() not in ("", "all"):
            return _err("INVALID_ARGUMENTS", "harp list [all]")
        service = self.service
        records = list(service.records.records.values()) if rest else service.live()
        return b"".join([*(_line(_summary(r)) for r in records), END])

    def _c_info(self, peer: Any, acl: Any, rest: str) -> bytes:
        if not rest or " " in rest:
            return _err("INVALID_ARGUMENTS", "harp info ID")
        rec = self.service.records.get(rest)
        if rec is None:
            return _err("UNKNOWN_JOB")
        info = {**_summary(rec), "arguments": rec.arguments, "info": rec.info,
                "concurrency": rec.concurrency if rec.queue is not None else None,
                "timeout": rec.timeout, "max_exec_time": rec.max_exec_time,
                "packets": rec.count, "kept_packets": len(rec.stream),
                "truncated": rec.truncated, "outcome": rec.reply}
        return _line(info) + END

    def _c_queues(self, peer: Any, acl: Any, rest: str) -> bytes:
        if rest:
            return _err("INVALID_ARGUMENTS", "harp queues")
        lines = [_line({"queue": json.loads(key), "concurrency": conc, "running": running,
                        "waiting": waiting})
                 for key, conc, running, waiting in self.service.queues()]
        return b"".join([*lines, END])

    def _c_queue(self, peer: Any, acl: Any, rest: str) -> bytes:
        key = _queue_key(rest)
        if key is None:
            return _err("INVALID_ARGUMENTS", "harp queue NAME-JSON (a JSON object)")
        calls = self.service.queue_calls(key) or []
        return b"".join([*(_line(_summary(r)) for r in calls), END])

    # -- actions -----------------------------------------------------------------------------

    def _c_cancel(self, peer: Any, acl: Any, rest: str) -> bytes:
        service = self.service
        word, _, name = rest.partition(" ")
        if word.lower() == "queue":
            key = _queue_key(name)
            if key is None:
                return _err("INVALID_ARGUMENTS", "harp cancel queue NAME-JSON (a JSON object)")
            calls = service.queue_calls(key)
            if calls is None:
                return _err("UNKNOWN_QUEUE")
            if any(not _may_invoke(acl, peer, r) for r in calls):
                return _err("PERMISSION_DENIED")
            return b"OK %d\n" % service.cancel_queue(key)
        if not rest or " " in rest:
            return _err("INVALID_ARGUMENTS", "harp cancel ID")
        rec = service.records.get(rest)
        if rec is None:
            return _err("UNKNOWN_JOB")
        if not _may_invoke(acl, peer, rec):
            return _err("PERMISSION_DENIED")
        return OK if service.cancel(rec.id) else _err("NOT_RUNNING", "the call has ended")

    def _c_prune(self, peer: Any, acl: Any, rest: str) -> bytes:
        age: float | None = None
        if rest:
            try:
                age = float(rest)
            except ValueError:
                age = -1.0
            if not age >= 0:  # also NaN
                return _err("INVALID_ARGUMENTS", "harp prune [SECONDS] (a number >= 0)")
        if acl is not None and not acl.canGrant(peer.ssl_subject):
            return _err("PERMISSION_DENIED")
        return b"OK %d\n" % self.service.prune(None, older_than=age)


def _queue_key(text: str) -> str | None:
    """The queue key of a JSON object name (as the service keys queues), None if not one."""
    try:
        name = json.loads(text)
    except ValueError:
        return None
    if not isinstance(name, dict):
        return None
    return json.dumps(name, sort_keys=True, separators=(",", ":"))


def _may_invoke(acl: Any, peer: Any, rec: CallRecord) -> bool:
    return acl is None or bool(acl.canInvoke(peer.ssl_subject, rec.function.decode()))
