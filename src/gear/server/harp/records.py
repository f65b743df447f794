"""The call records of geard's HarpCaller side: one :class:`CallRecord` per call, in memory.

Owns the record (id, host, procedure, arguments, info, submit/start/end times, the stream of
messages, the end reply) and :class:`RecordTable` (lookup by id, retention of ended records).
A record ends once: :meth:`CallRecord.end` wakes every listener (follow_stream, get_result with
wait) and later packets for it are ignored.

Sans-I/O: must not import sockets, asyncio, threads, the broker or the engine.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["CallRecord", "Listener", "RecordTable"]

#: A listener gets ("packet", n, message) for each new stream message, then ("end", reply).
Listener = Callable[[tuple[Any, ...]], None]


class CallRecord:
    """One HarpCaller call and what became of it."""

    __slots__ = ("arguments", "concurrency", "end_time", "ended", "handle", "host", "id",
                 "info", "listeners", "max_exec_time", "procedure", "queue", "reply",
                 "start_time", "stream", "submit_time", "timeout")

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
        #: The end reply object ({"result": v}, {"exception": ...}, {"cancelled": true},
        #: {"error": ...}); None while the call runs.
        self.reply: dict[str, Any] | None = None
        self.ended = False
        #: The stream messages, in order; message n is ``stream[n]``.
        self.stream: list[Any] = []
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

    def add(self, message: Any) -> None:
        if self.ended:
            return
        n = len(self.stream)
        self.stream.append(message)
        for listener in list(self.listeners):
            listener(("packet", n, message))

    def end(self, reply: dict[str, Any], now: float) -> bool:
        """End the call with ``reply``; False (and nothing changes) if it already ended."""
        if self.ended:
            return False
        self.ended = True
        self.reply = reply
        self.end_time = now
        listeners, self.listeners = self.listeners, []
        for listener in listeners:
            listener(("end", reply))
        return True

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
            return max(0, len(self.stream) - recent)
        return since or 0


class RecordTable:
    """Every record by id; ended records are kept ``retention`` seconds after their end."""

    def __init__(self, retention: float) -> None:
        self.retention = retention
        self.records: dict[str, CallRecord] = {}
        #: Ended records, oldest end first (what pruning walks).
        self._ended: OrderedDict[str, float] = OrderedDict()

    def add(self, record: CallRecord) -> None:
        self.records[record.id] = record

    def get(self, job_id: str | None) -> CallRecord | None:
        return self.records.get(job_id) if job_id is not None else None

    def ended(self, record: CallRecord, now: float) -> None:
        self._ended[record.id] = now

    def prune(self, now: float) -> int:
        """Forget ended records older than the retention; returns how many."""
        limit = now - self.retention
        n = 0
        while self._ended:
            job_id, end = next(iter(self._ended.items()))
            if end > limit:
                break
            del self._ended[job_id]
            self.records.pop(job_id, None)
            n += 1
        return n

    def __len__(self) -> int:
        return len(self.records)
