"""The broker's fast path: whole request packets framed in place, and runs of plain submits.

Owns :func:`feed` (``Broker._feed``: its framing loop dispatches complete request packets
straight from the received bytes, without the protocol ``Decoder``'s per-event objects, and
hands the rest to the Decoder) and :func:`submit_run` (a run of submissions sent back to back,
the plain ones made inline). This is the one module of the broker that copies logic for speed:
``submit_run`` inlines ``Broker._submit`` and ``Broker._new_job``, and
tests/server/test_broker_submit_run.py holds it to them (the same bytes to every connection,
the same jobs, queues and counters). Every framing rule and every error stays with the
``Decoder`` and the packet handlers: anything unusual ends the fast path and goes to them.
Measured with bench/profile_server.py.

The functions take the broker as their first argument, typed by :class:`Scheduler` (what they
use of it); ``core.py`` binds them as ``Broker._feed`` and ``Broker._submit_run``. Must not
import ``core.py``, sockets, asyncio or threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import gear.constants as c
from gear.errors import ProtocolError
from gear.protocol.messages import Priority
from gear.protocol.packets import REQ, Frame
from gear.server.broker import durable_run
from gear.server.broker.lifecycle import JobEvents
from gear.server.broker.model import Function, Job, JobState, Peer
from gear.server.broker.wire import ERR_INVALID_MAGIC, SUBMIT_KIND, pack, unpack_from
from gear.server.storage.base import StoredJob

__all__ = ["Scheduler", "feed", "submit_run"]

_MAX_TYPE = c.MAX_TYPE
_RES = c.RES
_JOB_CREATED = c.JOB_CREATED
_new_object = object.__new__
QUEUED = JobState.QUEUED
#: Largest partial packet the fast path keeps for the next chunk; larger ones go to the
#: Decoder's growing buffer (no quadratic re-copying).
_REST_MAX = 64 * 1024
#: ``lead_type`` while the run has no plain packet to compare with: no packet has this type
#: (0 would match an empty packet of type 0, which is no submission).
_NO_LEAD = -1
#: The last three digits of a handle number >= 1000 (see submit_run).
_DIGITS3: list[bytes] = [b"%03d" % i for i in range(1000)]

Handler = Callable[[Peer, int, bytes], None]


class Scheduler(Protocol):
    """What this module uses of the broker (``core.Broker``)."""

    dirty: set[Peer]
    functions: dict[bytes, Function]
    _jobs: dict[int, Job]
    _handlers: list[Handler]
    _no_function: Function
    _hprefix: bytes
    _counter: int
    _seq: int
    _packet_hook: Callable[[Peer, int, bytes], None] | None
    log_clock: Callable[[], float] | None
    _bulk: tuple[JobEvents, ...]
    _acl: Any
    _durable: bool
    _next_key: int
    _new_records: list[StoredJob]
    _new_jobs: list[Job]

    def _write(self, peer: Peer, data: bytes) -> None: ...

    def _admin_line(self, peer: Peer, line: bytes) -> None: ...

    def _submit_run(self, peer: Peer, data: bytes, pos: int, n: int) -> int: ...

    def _submit(self, peer: Peer, name: bytes, unique: bytes, data: bytes, priority: Priority,
                background: bool, when: int = 0, reducer: bytes | None = None) -> None: ...

    def _wake(self, f: Function) -> int: ...


def feed(broker: Scheduler, peer: Peer, data: bytes) -> None:
    """``Broker._feed``: every packet and admin line completed by ``data``.

    The fast path first: complete request packets are dispatched straight from ``data`` (after
    ``peer.rest``), runs of submissions go to :func:`submit_run`, and a small partial packet at
    the end waits in ``peer.rest``. Anything else (text, RES magic, a bad header, a large
    partial packet, bytes the Decoder already buffers, a ``packet_hook``) goes to the peer's
    ``Decoder``, which owns every framing rule and error (docs/protocol.md §1.1).
    """
    if peer.closing or peer.gone:
        return
    handlers = broker._handlers
    decoder = peer.decoder
    hook = broker._packet_hook
    if not decoder.buffered and hook is None:
        rest = peer.rest
        if rest:
            data = rest + data
            peer.rest = b""
        n = len(data)
        pos = 0
        limit = decoder.max_packet_size
        while n - pos >= 12 and data[pos] == 0:
            magic, ptype, size = unpack_from(data, pos)
            if magic != REQ or not 0 < ptype <= _MAX_TYPE or size > limit:
                break
            end = pos + 12 + size
            if end > n:
                if size <= _REST_MAX:
                    peer.rest = data[pos:]
                    return
                break
            if SUBMIT_KIND[ptype] is not None:
                # A pipelined client sends submissions back to back: take the whole run.
                after = broker._submit_run(peer, data, pos, n)
                if after != pos:
                    pos = after
                    continue
            handlers[ptype](peer, ptype, data[pos + 12 : end])
            pos = end
            if peer.closing:
                return
        if pos == n:
            return
        if n - pos < 12 and data[pos] == 0:
            peer.rest = data[pos:]
            return
        if pos:
            data = data[pos:]
    try:
        for event in decoder.feed(data):
            if isinstance(event, Frame):
                if event.magic != REQ:
                    # A valid type with RES magic: answer, keep the connection
                    # (docs/protocol.md §1.1).
                    broker._write(peer, ERR_INVALID_MAGIC)
                elif hook is None:
                    handlers[event.ptype](peer, event.ptype, event.body)
                else:
                    hook(peer, event.ptype, event.body)
            else:
                broker._admin_line(peer, event.line)
            if peer.closing:
                break
    except ProtocolError:
        # Bad magic, unknown type, oversize: gearmand closes without a reply
        # (docs/protocol.md §1.6).
        peer.closing = True
        broker.dirty.add(peer)


def submit_run(broker: Scheduler, peer: Peer, data: bytes, pos: int, n: int) -> int:
    """Submissions back to back in ``data`` from ``pos``: handle them; returns the position
    of the first packet not taken (``pos`` when none was).

    The hot path of a pipelined client (the background bench load sends hundreds of
    submissions per read). Takes every complete, well-formed SUBMIT_JOB{,_HIGH,_LOW}{,_BG};
    the first other packet (or a bad one) ends the run and goes through the general
    dispatch, which owns every error. The plain case (no unique, a known function whose
    ``plain`` flag is set: no queue limit, no lifecycle receivers, no ACL, no storage) is
    ``_submit`` inlined; anything else is handed to ``_submit`` itself. What makes the plain
    case cheap:

    * The broker's fields are held in locals for the run.
    * A client pipelining submissions sends the same function and packet type again and
      again: once a plain packet was seen, a packet of the same type whose body starts with
      the same ``name\\0\\0`` (same function, empty unique) is known to be plain too, and
      only its data is sliced out (no split, no lookups).
    * Handles are made without formatting a number per job: ``base`` is the prefix and the
      handle number without its last three digits, and ``_DIGITS3`` holds those digits.
      The handles of one ``base`` have one length, so their JOB_CREATED replies share one
      header and are written with one ``join`` when the base changes or the run ends. This
      needs handle numbers of at least four digits, so the first 999 jobs of a broker's life
      take the general path.
    * ``Broker._new_job`` is inlined (no Python frame per job; a test checks that both make
      the same job). Its ``created`` event is not: observers that take it in bulk
      (``lifecycle.JobEvents.bulk_created``) get one ``created_run`` per run; any other
      receiver clears ``plain``, so its function never comes here.

    A durable broker (``_durable``) has its own run, ``durable_run.submit_run``.
    """
    if broker._durable:
        return durable_run.submit_run(broker, peer, data, pos, n)
    functions = broker.functions
    jobs = broker._jobs
    new_job = _new_object
    clock = broker.log_clock
    stamp = None if clock is None else clock()  # the job log's time of every job of the run
    limit = peer.decoder.max_packet_size
    # Output held for a pending store must stay behind it: the general path handles that.
    held = peer.held is not None
    counter = broker._counter
    first = counter + 1
    seq = broker._seq
    # The last plain packet: its type and leading body bytes, and what they decide.
    lead_type = _NO_LEAD
    lead = b""
    lead_size = 0
    skip = 0  # header and lead: where the data starts
    f = broker._no_function
    priority = Priority.NORMAL
    background = True
    unused: list[Job] = []
    queue_append = unused.append  # the deque of the last plain packet
    base = b""
    head = b""
    next_base = 0  # the first number past the current base (0: no base yet)
    made: list[bytes] = []  # handles made since `head` changed, replies not yet written
    add = made.append
    try:
        while n - pos >= 12:
            magic, ptype, size = unpack_from(data, pos)
            end = pos + 12 + size
            if end > n or magic != REQ or size > limit:
                break
            # A slice compared, not bytes.startswith(lead, start, end): that parses its
            # arguments the slow way (measured: 7% of a background submit).
            if ptype == lead_type and size >= lead_size and data[pos + 12 : pos + skip] == lead:
                arguments = data[pos + skip : end]
            else:
                kind = SUBMIT_KIND[ptype] if ptype <= _MAX_TYPE else None
                if kind is None:
                    break
                parts = data[pos + 12 : end].split(b"\x00", 2)
                if len(parts) != 3:
                    break
                name, unique, arguments = parts
                priority, background = kind
                known = functions.get(name)
                if unique or known is None or not known.plain or held or counter < 999:
                    # The general case, in order after the replies of the jobs before.
                    pos = end
                    lead_type = _NO_LEAD
                    next_base = 0
                    broker._counter = counter
                    broker._seq = seq
                    if made:
                        peer.out.append(head + head.join(made))
                        made.clear()
                        broker.dirty.add(peer)
                    broker._submit(peer, name, unique, arguments, priority, background)
                    counter = broker._counter
                    seq = broker._seq
                    continue
                f = known
                lead_type = ptype
                lead = name + b"\x00\x00"
                lead_size = len(lead)
                skip = 12 + lead_size
                queue_append = f.queues[priority].append
            pos = end
            counter += 1
            if counter >= next_base:
                if made:
                    peer.out.append(head + head.join(made))
                    made.clear()
                    broker.dirty.add(peer)
                thousands = counter // 1000
                base = b"%s%d" % (broker._hprefix, thousands)
                head = pack(_RES, _JOB_CREATED, len(base) + 3)
                next_base = (thousands + 1) * 1000
            handle = base + _DIGITS3[counter % 1000]
            add(handle)
            if counter > seq:  # the number is the queue order (see core._later)
                seq = counter
            else:
                seq += 1
            job = new_job(Job)
            job.number = counter
            job.function = f
            job.name = f.name
            job.unique = b""
            job.arguments = arguments
            job.priority = priority
            job.background = background
            job.clients = ()
            job.worker = None
            job.seq = seq
            job.state = QUEUED
            if stamp is not None:
                job.born = stamp
            jobs[counter] = job
            f.total += 1
            if not background:
                job.clients = [peer]
                peer.client_jobs[job] = 1
            queue_append(job)
            if f.sleepers:
                # Wake-ups go out after the replies of the jobs before (the order of one
                # packet at a time, when the submitter is itself a sleeping worker).
                broker._counter = counter
                broker._seq = seq
                peer.out.append(head + head.join(made))
                made.clear()
                broker.dirty.add(peer)
                broker._wake(f)
    finally:
        broker._counter = counter
        broker._seq = seq
        if made:
            peer.out.append(head + head.join(made))
            broker.dirty.add(peer)
        if broker._bulk and counter >= first:
            for receiver in broker._bulk:
                receiver.created_run(first, counter)
    return pos
