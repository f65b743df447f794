"""The call records of geard's HarpCaller side: one :class:`CallRecord` per call, in memory.

Owns the record (id, host, procedure, arguments, info, submit/start/end times, the stream of
messages, the end reply) and :class:`RecordTable` (lookup by id, the bytes kept, retention of
ended records by age and by bytes, oldest end first). A record ends once:
:meth:`CallRecord.end` wakes every listener (follow_stream, get_result with wait) and later
packets for it are ignored. Every record kept is in memory (the durable copy, when the queue is
durable, is written by the service through ``gear.server.storage.harp``); the byte bound is
therefore also what bounds the memory the records take (docs/harp.md, "Retention").

Sans-I/O: must not import sockets, asyncio, threads, the broker or the engine.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from gear.server.harp.protocol import compact

__all__ = ["CallRecord", "Listener", "RecordTable"]

#: A listener gets ("packet", n, json_text) for each new stream message, then ("end", reply).
Listener = Callable[[tuple[Any, ...]], None]


class CallRecord:
    """One HarpCaller call and what became of it."""

    __slots__ = ("args_text", "arguments", "concurrency", "count", "end_time", "ended",
                 "handle", "host", "id", "info", "info_text", "listeners", "max_exec_time",
                 "procedure", "queue", "reply_text", "size", "start_time", "stream",
                 "submit_time", "timeout", "truncated")

    def __init__(self, job_id: str, host: str, procedure: str, arguments: Any, info: Any,
                 submit_time: float) -> None:
        self.id = job_id
        self.host = host
        self.procedure = procedure
        self.arguments = arguments
        self.info = info
        self.submit_time = submit_time
        self.start_time: float | None = None
        self.end_time: float | None = None
        self.ended = False
        #: The stream messages kept, as JSON texts (one line each), in order; message n is
        #: ``stream[n]``. Texts, not values: a third of the memory, and served as they are.
        self.stream: list[str] = []
        #: Stream messages received (more than kept once the byte bound truncated the stream).
        self.count = 0
        self.truncated = False
        #: The JSON texts of the arguments, info and end reply (computed once, stored and
        #: served as they are; an ended record keeps its reply as this text only).
        self.args_text = ""
        self.info_text = "null"
        self.reply_text: str | None = None
        #: The bytes this record counts for against the byte bound (see :func:`record_size`).
        self.size = 0
        self.listeners: list[Listener] = []
        #: The Gearman job handle once the broker took the job.
        self.handle: bytes | None = None
        self.timeout: float | None = None
        self.max_exec_time: float | None = None
        self.queue: Any = None
        self.concurrency = 1

    @property
    def function(self) -> bytes:
        """The Gearman function that serves it: ``host/procedure``."""
        return f"{self.host}/{self.procedure}".encode()

    @property
    def reply(self) -> dict[str, Any] | None:
        """The end reply object ({"result": v}, {"exception": ...}, {"cancelled": true},
        {"error": ...}); None while the call runs. Decoded from :attr:`reply_text`."""
        text = self.reply_text
        return None if text is None else json.loads(text)

    def add(self, message: str, keep: bool = True) -> bool:
        """Stream message number :attr:`count` (its JSON text, one line); kept unless ``keep``
        is false or the stream was truncated before (a kept stream has no holes). Returns
        whether it was kept."""
        if self.ended:
            return False
        n = self.count
        self.count = n + 1
        kept = keep and not self.truncated
        if kept:
            self.stream.append(message)
        else:
            self.truncated = True
        for listener in list(self.listeners):
            listener(("packet", n, message))
        return kept

    def end(self, reply: dict[str, Any], now: float, text: str | None = None) -> bool:
        """End the call with ``reply`` (``text``: its JSON text when the caller has it, one
        line); False (and nothing changes) if it already ended."""
        if self.ended:
            return False
        self.ended = True
        self.reply_text = compact(reply) if text is None else text
        self.end_time = now
        listeners, self.listeners = self.listeners, []
        for listener in listeners:
            listener(("end", reply))
        return True

    def reply_bytes(self) -> bytes:
        """The end reply as a reply line (its JSON text computed once, at the end)."""
        return (self.reply_text or "null").encode() + b"\n"

    def status(self) -> dict[str, Any]:
        """The get_status reply."""
        def sec(t: float | None) -> int | None:
            return None if t is None else int(t)

        return {
            "call": {"procedure": self.procedure, "arguments": self.arguments,
                     "host": self.host},
            "time": {"submit": sec(self.submit_time), "start": sec(self.start_time),
                     "end": sec(self.end_time)},
            "info": self.info,
        }

    def first_packet(self, since: int | None, recent: int | None) -> int:
        """The index of the first stream message a follow/read asks for."""
        if recent is not None:
            return max(0, self.count - recent)
        return since or 0


#: What a record counts for besides its texts (ids, times, limits), and each stream message
#: besides its JSON: a rough share of the per-row overhead of the store.
RECORD_OVERHEAD = 160
MESSAGE_OVERHEAD = 48


def record_size(rec: CallRecord) -> int:
    """The bytes ``rec`` counts for, stream excluded: the JSON texts stored and an overhead."""
    return (RECORD_OVERHEAD + len(rec.host) + len(rec.procedure) + len(rec.args_text)
            + len(rec.info_text) + len(rec.reply_text or "") + len(rec.queue or ""))


class RecordTable:
    """Every record by id; ended records are kept ``retention`` seconds after their end, and
    while the records take more than ``max_bytes`` the oldest ended ones go first."""

    def __init__(self, retention: float, max_bytes: int | None = None) -> None:
        self.retention = retention
        self.max_bytes = max_bytes
        self.records: dict[str, CallRecord] = {}
        #: The bytes every record kept counts for (:func:`record_size` plus its stream).
        self.bytes = 0
        #: Ended records, oldest end first (what pruning walks).
        self._ended: OrderedDict[str, float] = OrderedDict()

    def add(self, record: CallRecord) -> None:
        self.records[record.id] = record
        record.size = record_size(record)
        self.bytes += record.size

    def grow(self, record: CallRecord, nbytes: int) -> None:
        """``record`` now counts for ``nbytes`` more (a stream message, its end reply)."""
        record.size += nbytes
        self.bytes += nbytes

    def over(self, extra: int = 0) -> bool:
        """Whether ``extra`` more bytes would take the records past the byte bound."""
        return self.max_bytes is not None and self.bytes + extra > self.max_bytes

    @property
    def prunable(self) -> int:
        """How many ended records are kept (what the byte bound can free)."""
        return len(self._ended)

    def get(self, job_id: str | None) -> CallRecord | None:
        return self.records.get(job_id) if job_id is not None else None

    def ended(self, record: CallRecord, now: float) -> None:
        self._ended[record.id] = now

    def prune(self, now: float, batch: int | None = None,
              older_than: float | None = None) -> list[str]:
        """Forget ended records that ended ``older_than`` seconds ago or more (default: the
        retention), then the oldest ended ones while over the byte bound; at most ``batch``
        of them. Returns their ids."""
        limit = now - (self.retention if older_than is None else older_than)
        gone: list[str] = []
        ended = self._ended
        while ended and (batch is None or len(gone) < batch):
            job_id, end = next(iter(ended.items()))
            if end > limit and not self.over():
                break
            del ended[job_id]
            rec = self.records.pop(job_id, None)
            if rec is not None:
                self.bytes -= rec.size
            gone.append(job_id)
        return gone

    def due(self, now: float) -> bool:
        """Whether :meth:`prune` has anything to do now."""
        if not self._ended:
            return False
        return self.over() or next(iter(self._ended.values())) <= now - self.retention

    def __len__(self) -> int:
        return len(self.records)
