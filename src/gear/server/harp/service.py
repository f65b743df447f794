"""geard as a HarpCaller dispatcher: HarpCaller calls mapped onto Gearman jobs.

Owns :class:`HarpService`: the request handling of the harp port (docs/harp.md), the mapping of
a call to host ``H``, procedure ``P`` onto a Gearman job of function ``H/P`` (its data the JSON
of the arguments, its unique the call's id), the named queues with a concurrency limit and the
``timeout`` / ``max_exec_time`` timers.

The service is a client of the broker: it owns one broker peer (the *link*,
``broker.connect``). It submits with ``Broker.submit_local`` (a SUBMIT_JOB without its packet:
the handle comes back at once, no JOB_CREATED to read) and reads the WORK_DATA, WORK_COMPLETE,
WORK_EXCEPTION and WORK_FAIL packets the broker writes to the link (the engine writes the
link's output to :meth:`HarpService.deliver` as it writes a socket's). Each ``H/P`` function
gets a lifecycle policy (:class:`_CallPolicy`, ``Broker.set_policy``) that stamps the start
time and arms the timers, so plain Gearman functions keep the broker's fast path.

Sans-I/O: must not import sockets, asyncio or threads. The network side (``listener.py``)
gives it lines and a :class:`Sink` per connection, calls :meth:`HarpService.run_timers` at
:meth:`HarpService.next_deadline` and :meth:`HarpService.process` after each flush; the service
calls ``kick`` (the engine's flush request) after its broker calls.

Records (``records.py``) are kept in memory; with a ``store`` (the durable queue's
:class:`~gear.server.storage.harp_writer.HarpWriter`) every change is also written there,
batched: the record at submit, start and end, each kept stream message (never one write per
message: the writer groups them). :meth:`HarpService.load` puts the stored records back after
a restart and ends every call that had not ended with ``server_restarted`` (docs/harp.md,
"Restart").
Pruning (:meth:`HarpService.prune`) is driven by the network side's timer, in batches.
"""

from __future__ import annotations

import heapq
import json
import struct
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from gear import constants as c
from gear.protocol.packets import request
from gear.server.broker import JobEvents, Outcome
from gear.server.harp.protocol import (
    KINDS,
    BadRequest,
    Request,
    compact,
    compact_sorted,
    encode,
    invalid_jobid,
    loads,
    new_job_id,
    parse_request,
)
from gear.server.harp.records import MESSAGE_OVERHEAD, CallRecord, RecordTable
from gear.server.storage.harp import HarpRow

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_RETENTION", "PRUNE_BATCH", "HarpService",
           "RecordStore", "Sink"]

#: How long an ended call's record is kept (seconds): 7 days, HarpCaller's default.
DEFAULT_RETENTION = 7 * 24 * 3600.0
#: The bound on the bytes the records take (``--harp-max-bytes``): 1 GiB.
DEFAULT_MAX_BYTES = 1 << 30
#: Records forgotten per pruning pass (the loop serves others between passes).
PRUNE_BATCH = 1000

_HEADER = struct.Struct(">4sII")
_TIMEOUT = {"error": {"type": "timeout", "message": "reading result timed out"}}
_MAX_EXEC = {"error": {"type": "timeout", "message": "maximum execution time exceeded"}}
_CANCELLED = {"cancelled": True}
_NO_RESULT = encode({"no_result": True})
#: Seconds a call waits for a worker of its host before ``unknown_host`` (docs/harp.md).
DEFAULT_UNKNOWN_HOST_WAIT = 10.0
_RESTARTED = {"error": {"type": "server_restarted",
                        "message": "geard restarted while the call was queued or running"}}


class Sink(Protocol):
    """One harp connection, as the service writes to it."""

    def write(self, data: bytes) -> None: ...

    def replay(self, data: bytes) -> None:
        """Write stored stream messages (bounded by the records' byte bound: the output limits
        do not count them)."""

    def done(self, close: bool = False) -> None:
        """The current request is answered; ``close``: close the connection after the write."""


class RecordStore(Protocol):
    """Where records are written (``storage.harp_writer.HarpWriter``); never blocks."""

    def save(self, row: HarpRow) -> None: ...

    def append(self, job_id: str, n: int, text: str) -> None: ...

    def delete(self, job_ids: Sequence[str]) -> None: ...


class _Queue:
    __slots__ = ("concurrency", "running", "waiting")

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.running: set[str] = set()
        self.waiting: deque[CallRecord] = deque()


class _CallPolicy(JobEvents):
    """The lifecycle policy of every ``H/P`` function: start time and timers."""

    def __init__(self, service: HarpService) -> None:
        self.service = service

    def assigned(self, job: Any, worker: Any) -> None:
        self.service._started(job)

    def progressed(self, job: Any, kind: int, body: bytes) -> None:
        if kind == c.WORK_DATA:
            self.service._progressed(job)

    def finished(self, job: Any, outcome: Outcome) -> None:
        self.service._outcomes[job.unique] = outcome


class HarpService:
    """The HarpCaller protocol served on a broker (see the module docstring)."""

    def __init__(self, broker: Any, clock: Callable[[], float], kick: Callable[[], None],
                 retention: float = DEFAULT_RETENTION, max_bytes: int | None = DEFAULT_MAX_BYTES,
                 store: RecordStore | None = None,
                 unknown_host_wait: float | None = DEFAULT_UNKNOWN_HOST_WAIT) -> None:
        self.broker = broker
        #: A call not started after this many seconds, with no worker registered for any
        #: function of its host, ends with ``unknown_host``; None or 0: it waits for ever.
        self.unknown_host_wait = unknown_host_wait or None
        self.clock = clock
        self.kick = kick
        #: Set by every call into the broker; the network side flushes the engine (``kick``)
        #: after a request or a timer pass only when it is set, and clears it.
        self.touched = True
        self.records = RecordTable(retention, max_bytes)
        self.store = store
        #: Stream messages not kept because of the byte bound (docs/harp.md, "Retention").
        self.dropped_messages = 0
        self.link = broker.connect("harp", 0, -1, None)
        self._policy = _CallPolicy(self)
        self._functions: set[bytes] = set()
        self._by_handle: dict[bytes, CallRecord] = {}
        self._outcomes: dict[bytes, Outcome] = {}
        self._queues: dict[str, _Queue] = {}
        self._timers: list[tuple[float, int, str, str]] = []
        self._timer_seq = 0
        self._buf = b""
        self._inbox: list[bytes] = []
        self._processing = False
        #: The request handlers (``_r_<kind>``), bound once.
        self._handlers: dict[str, Callable[[Request, Sink], None]] = {
            kind: getattr(self, "_r_" + kind) for kind in ("call", *KINDS)}
        #: Called when the earliest deadline moved earlier (the listener re-arms its timer).
        self.rearm: Callable[[], None] = lambda: None
        #: Called when the byte bound calls for a pruning pass soon (the listener runs one).
        self.wants_prune: Callable[[], None] = lambda: None
        broker.feed(self.link, request(c.OPTION_REQ, b"exceptions"))
        self._drain()

    # -- requests ----------------------------------------------------------------------------

    def handle_line(self, line: bytes, sink: Sink) -> None:
        """Serve one request line; the answer goes to ``sink`` (now or, for waits, later)."""
        try:
            req = parse_request(line)
        except BadRequest as exc:
            sink.write(exc.reply())
            sink.done(close=True)
            return
        self._handlers[req.kind](req, sink)

    def _r_call(self, req: Request, sink: Sink) -> None:
        now = self.clock()
        rec = CallRecord(new_job_id(), req.host, req.procedure, req.arguments, req.info, now)
        rec.timeout, rec.max_exec_time = req.timeout, req.max_exec_time
        rec.args_text = compact(req.arguments)
        if req.info is not None:
            rec.info_text = compact(req.info)
        if req.queue is not None:
            rec.queue = compact_sorted(req.queue)
            rec.concurrency = req.concurrency
        self.records.add(rec)
        self._save(rec)
        if rec.queue is not None:
            key = rec.queue
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(req.concurrency)
            queue.concurrency = req.concurrency
            if len(queue.running) >= queue.concurrency:
                queue.waiting.append(rec)
            else:
                queue.running.add(rec.id)
                self._submit(rec)
        else:
            self._submit(rec)
        if self.unknown_host_wait is not None:
            self._arm(now + self.unknown_host_wait, rec, "host")
        sink.write(b'{"harpcaller":1,"job_id":"%s"}\n' % rec.id.encode())  # encode()'s bytes
        sink.done()

    def _r_cancel(self, req: Request, sink: Sink) -> None:
        sink.write(encode({"cancelled": self.cancel(req.job_id)}))
        sink.done()

    def _r_get_status(self, req: Request, sink: Sink) -> None:
        rec = self.records.get(req.job_id)
        sink.write(invalid_jobid() if rec is None else encode(rec.status()))
        sink.done()

    def _r_get_result(self, req: Request, sink: Sink) -> None:
        rec = self.records.get(req.job_id)
        if rec is None:
            sink.write(invalid_jobid())
            sink.done()
        elif rec.ended:
            sink.write(rec.reply_bytes())
            sink.done()
        elif not req.wait:
            sink.write(_NO_RESULT)
            sink.done()
        else:
            def on_event(event: tuple[Any, ...]) -> None:
                if event[0] == "end":
                    rec.listeners.remove(on_event) if on_event in rec.listeners else None
                    sink.write(rec.reply_bytes())  # the JSON CallRecord.end made already
                    sink.done()

            rec.listeners.append(on_event)

    def _r_read_stream(self, req: Request, sink: Sink) -> None:
        rec = self.records.get(req.job_id)
        if rec is None:
            sink.write(invalid_jobid())
            sink.done(close=True)
            return
        first = rec.first_packet(req.since, req.recent)
        stream = rec.stream
        out = [_packet_line(n, stream[n]) for n in range(first, len(stream))]
        out.append(rec.reply_bytes() if rec.ended else encode({"continue": True}))
        sink.replay(b"".join(out))
        sink.done()

    def _r_follow_stream(self, req: Request, sink: Sink) -> None:
        rec = self.records.get(req.job_id)
        if rec is None:
            sink.write(invalid_jobid())
            sink.done(close=True)
            return
        first = rec.first_packet(req.since, req.recent)
        stream = rec.stream
        out = [_packet_line(n, stream[n]) for n in range(first, len(stream))]
        if rec.ended:
            out.append(rec.reply_bytes())
            sink.replay(b"".join(out))
            sink.done()
            return
        if out:
            sink.replay(b"".join(out))
        start = max(first, rec.count)

        def on_event(event: tuple[Any, ...]) -> None:
            if event[0] == "packet":
                if event[1] >= start:
                    sink.write(_packet_line(event[1], event[2]))
            else:
                sink.write(rec.reply_bytes())
                sink.done()

        rec.listeners.append(on_event)

    # -- calls and jobs ----------------------------------------------------------------------

    def cancel(self, job_id: str | None) -> bool:
        """Cancel a queued or running call; False if unknown or already ended."""
        rec = self.records.get(job_id)
        if rec is None or rec.ended:
            return False
        self._abort(rec, _CANCELLED)
        return True

    def _abort(self, rec: CallRecord, reply: dict[str, Any]) -> None:
        """End a call that may still wait in its harp queue (cancel, unknown host)."""
        if rec.handle is None and rec.queue is not None:
            queue = self._queues.get(rec.queue)
            if queue is not None and rec in queue.waiting:
                queue.waiting.remove(rec)
        self._end(rec, reply)

    def _host_served(self, host: str) -> bool:
        """Whether any worker has registered a function of ``host`` (``host/...``)."""
        prefix = host.encode() + b"/"
        return any(f.workers for name, f in self.broker.functions.items()
                   if name.startswith(prefix))

    def _submit(self, rec: CallRecord) -> None:
        name = rec.function
        if name not in self._functions:
            self._functions.add(name)
            self.broker.set_policy(name, self._policy)
        self.touched = True
        job = self.broker.submit_local(self.link, name, rec.id.encode(), rec.args_text.encode())
        if type(job) is bytes:  # the ERROR packet a SUBMIT_JOB would have got
            code, _, text = job[12:].partition(b"\0")
            self._end(rec, {"error": {"type": "submit_failed",
                                      "message": f"{code.decode()}: {text.decode()}"}})
            return
        handle = job.handle
        rec.handle = handle
        self._by_handle[handle] = rec

    def _end(self, rec: CallRecord, reply: dict[str, Any], text: str | None = None) -> None:
        now = self.clock()
        if not rec.end(reply, now, text):
            return
        records = self.records
        records.grow(rec, len(rec.reply_text or ""))
        records.ended(rec, now)
        self._save(rec)
        if records.over():
            self.wants_prune()
        handle = rec.handle
        if handle is not None:
            self._by_handle.pop(handle, None)
            job = self.broker.jobs.get(handle)
            if job is not None and job.unique == rec.id.encode():
                self.touched = True
                self.broker.cancel(job)  # queued: forgotten; running: its results dropped
                self._drain()
        if rec.queue is not None:
            queue = self._queues.get(rec.queue)
            if queue is not None:
                queue.running.discard(rec.id)
                while queue.waiting and len(queue.running) < queue.concurrency:
                    nxt = queue.waiting.popleft()
                    queue.running.add(nxt.id)
                    self._submit(nxt)
                if not queue.running and not queue.waiting:
                    del self._queues[rec.queue]
        if self.touched:
            self.kick()

    def _record_of(self, job: Any) -> CallRecord | None:
        rec = self._by_handle.get(job.handle)
        if rec is None:
            rec = self.records.get(job.unique.decode())
        return rec if rec is not None and not rec.ended else None

    def _started(self, job: Any) -> None:
        rec = self._record_of(job)
        if rec is None:
            return
        now = self.clock()
        if rec.start_time is None:
            rec.start_time = now
            self._save(rec)
            if rec.max_exec_time is not None:
                self._arm(now + rec.max_exec_time, rec, "max")
        if rec.timeout is not None:
            self._arm(now + rec.timeout, rec, f"t{rec.count}")

    def _progressed(self, job: Any) -> None:
        rec = self._record_of(job)
        if rec is not None and rec.timeout is not None:
            # Message n arrives: the timer waits for message n + 1 (or the result).
            self._arm(self.clock() + rec.timeout, rec, f"t{rec.count + 1}")

    # -- storage and retention ---------------------------------------------------------------

    def _save(self, rec: CallRecord) -> None:
        store = self.store
        if store is not None:
            store.save(HarpRow(rec.id, rec.host, rec.procedure, rec.args_text, rec.info_text,
                               rec.queue, rec.concurrency, rec.timeout, rec.max_exec_time,
                               rec.submit_time, rec.start_time, rec.end_time, rec.reply_text))

    def _message(self, rec: CallRecord, payload: bytes) -> None:
        """A WORK_DATA message: kept (and stored) unless the byte bound says otherwise."""
        text = _json_text(payload)
        cost = len(text) + MESSAGE_OVERHEAD
        records = self.records
        # At the bound, ended records go first (the pruning pass frees them); only when no
        # ended record is left does a running call's stream stop being kept.
        keep = not records.over(cost) or records.prunable > 0
        n = rec.count
        if rec.add(text, keep):
            records.grow(rec, cost)
            if self.store is not None:
                self.store.append(rec.id, n, text)
            if records.over():
                self.wants_prune()
        else:
            self.dropped_messages += 1

    def load(self, rows: Sequence[HarpRow], streams: dict[str, list[str]]) -> int:
        """Put stored records back (at start, before the port listens); every call that had
        not ended ends with ``server_restarted``. Returns how many were ended so."""
        now = self.clock()
        ended: list[CallRecord] = []
        restarted = 0
        for row in rows:
            rec = CallRecord(row.id, row.host, row.procedure, json.loads(row.arguments),
                             json.loads(row.info), row.submit)
            rec.args_text, rec.info_text = row.arguments, row.info
            rec.queue, rec.concurrency = row.queue, row.concurrency
            rec.timeout, rec.max_exec_time = row.timeout, row.max_exec_time
            rec.start_time = row.start
            texts = streams.get(row.id, [])
            rec.stream = texts
            rec.count = len(texts)
            self.records.add(rec)
            self.records.grow(rec, sum(len(t) for t in texts) + MESSAGE_OVERHEAD * len(texts))
            if row.reply is not None and row.end is not None:
                rec.ended = True
                rec.reply_text, rec.end_time = row.reply, row.end
                self.records.grow(rec, len(row.reply))
            else:
                rec.end(dict(_RESTARTED), now)
                self.records.grow(rec, len(rec.reply_text or ""))
                self._save(rec)
                restarted += 1
            ended.append(rec)
        ended.sort(key=lambda r: r.end_time or 0.0)
        for rec in ended:
            self.records.ended(rec, rec.end_time or now)
        return restarted

    def prune(self, batch: int | None = PRUNE_BATCH, older_than: float | None = None) -> int:
        """One pruning pass (retention, then the byte bound); returns how many went."""
        gone = self.records.prune(self.clock(), batch, older_than)
        if gone and self.store is not None:
            self.store.delete(gone)
        return len(gone)

    def prune_due(self) -> bool:
        return self.records.due(self.clock())

    # -- operators (the admin extension, ``admin.py``) --------------------------------------

    def live(self) -> list[CallRecord]:
        """Calls queued or running, oldest submit first."""
        return [r for r in self.records.records.values() if not r.ended]

    def queues(self) -> list[tuple[str, int, int, int]]:
        """(queue name JSON, concurrency, running, waiting) of every queue in use."""
        return [(key, q.concurrency, len(q.running), len(q.waiting))
                for key, q in self._queues.items()]

    def queue_calls(self, key: str) -> list[CallRecord] | None:
        """The calls of the queue ``key`` (running, then waiting in order), None if unknown."""
        queue = self._queues.get(key)
        if queue is None:
            return None
        running = [self.records.records[i] for i in queue.running if i in self.records.records]
        return sorted(running, key=lambda r: r.submit_time) + list(queue.waiting)

    def cancel_queue(self, key: str) -> int:
        """Cancel every call of the queue ``key``: waiting ones first (so that cancelling a
        running one hands no slot to them). Returns how many."""
        queue = self._queues.get(key)
        if queue is None:
            return 0
        waiting, running = list(queue.waiting), list(queue.running)
        return sum(self.cancel(job_id) for job_id in [r.id for r in waiting] + running)

    # -- timers ------------------------------------------------------------------------------

    def _arm(self, when: float, rec: CallRecord, tag: str) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, rec.id, tag))
        if self._timers[0][2] == rec.id:
            self.rearm()  # a new earliest deadline: the network side re-arms its timer

    def next_deadline(self) -> float | None:
        return self._timers[0][0] if self._timers else None

    def run_timers(self) -> None:
        now = self.clock()
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, job_id, tag = heapq.heappop(timers)
            rec = self.records.get(job_id)
            if rec is None or rec.ended:
                continue
            if tag == "max":
                self._end(rec, _MAX_EXEC)
            elif tag == "host":
                if rec.start_time is None and not self._host_served(rec.host):
                    self._abort(rec, {"error": {
                        "type": "unknown_host",
                        "message": f"no worker serves host {rec.host!r}"}})
            elif tag == f"t{rec.count}":
                # Still no message since this timer was armed.
                self._end(rec, _TIMEOUT)

    # -- the link's input: the broker's replies to our submissions ---------------------------

    def _drain(self) -> None:
        """Read what the broker wrote to the link during the call just made."""
        out = self.link.out
        if out:
            self._inbox.extend(out)
            out.clear()
            self.broker.dirty.discard(self.link)
        self.process()

    def deliver(self, data: bytes) -> None:
        """The engine's flush wrote ``data`` to the link: kept for :meth:`process`, which the
        network side calls right after the flush (never inside it: handling a packet may call
        the broker, and the flush is iterating the broker's dirty set)."""
        self._inbox.append(data)

    def process(self) -> None:
        """Handle the link's input (WORK_*), in order; re-entry only queues."""
        if self._processing:
            return
        self._processing = True
        try:
            inbox = self._inbox
            while inbox:
                data = b"".join(inbox)
                inbox.clear()
                buf = self._buf + data if self._buf else data
                pos, n = 0, len(buf)
                while n - pos >= 12:
                    _, ptype, size = _HEADER.unpack_from(buf, pos)
                    if n - pos - 12 < size:
                        break
                    body = buf[pos + 12:pos + 12 + size]
                    pos += 12 + size
                    self._packet(ptype, body)
                self._buf = buf[pos:]
        finally:
            self._processing = False

    def _packet(self, ptype: int, body: bytes) -> None:
        handle, _, payload = body.partition(b"\0")
        found = self._by_handle.get(handle)
        if found is None or found.ended:
            return
        rec = found
        if ptype == c.WORK_DATA:
            self._message(rec, payload)
        elif ptype == c.WORK_COMPLETE:
            value, text = _json_value_text(payload)
            self._end(rec, {"result": value}, '{"result":' + text + "}")
        elif ptype == c.WORK_EXCEPTION:
            self._end(rec, {"exception": _exception(payload)})
        elif ptype == c.WORK_FAIL:
            outcome = self._outcomes.pop(rec.id.encode(), Outcome.FAIL)
            self._end(rec, _fail_reply(outcome))
        if rec.ended:
            self._outcomes.pop(rec.id.encode(), None)


def _json(payload: bytes) -> Any:
    """A worker's JSON value; a payload that is not JSON is kept as its text."""
    try:
        return json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return payload.decode("utf-8", "replace")


def _json_value_text(payload: bytes) -> tuple[Any, str]:
    """A worker's JSON value and its text on one line: the payload itself when it is valid
    JSON on one line (kept as sent, not re-encoded), re-encoded when it spans lines; a payload
    that is not JSON is its text, as a JSON string."""
    try:
        text = payload.decode()
        value = loads(text)
    except (ValueError, UnicodeDecodeError):
        value = payload.decode("utf-8", "replace")
        return value, compact(value)
    if "\n" in text or "\r" in text:
        return value, compact(value)
    return value, text


def _json_text(payload: bytes) -> str:
    """A worker's message as one line of JSON (see :func:`_json_value_text`)."""
    return _json_value_text(payload)[1]


def _packet_line(n: int, text: str) -> bytes:
    """A ``{"packet": n, "data": ...}`` reply line around a stored JSON text."""
    return b'{"packet":%d,"data":%s}\n' % (n, text.encode())


def _exception(payload: bytes) -> dict[str, Any]:
    value = _json(payload)
    if isinstance(value, dict) and "type" in value:
        return {"type": str(value["type"]), "message": str(value.get("message", "")),
                "data": value.get("data")}
    return {"type": "exception", "message": value if isinstance(value, str) else
            json.dumps(value), "data": None}


def _fail_reply(outcome: Outcome) -> dict[str, Any]:
    if outcome is Outcome.RETRIES_EXHAUSTED:
        return {"error": {"type": "worker_lost",
                          "message": "the worker went away too many times (job_retries)"}}
    if outcome is Outcome.TIMEOUT:
        return {"error": {"type": "timeout", "message": "the worker's CAN_DO_TIMEOUT expired"}}
    if outcome is Outcome.CANCELLED:
        return {"error": {"type": "cancelled", "message": "cancelled by the admin protocol"}}
    return {"error": {"type": "failed", "message": "the worker reported WORK_FAIL"}}
