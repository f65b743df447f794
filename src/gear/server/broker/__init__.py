"""The job server's sans-I/O core: functions, priority queues, coalescing, wakeups, timers.

Owns every scheduling decision of the server (docs/semantics.md) and the binary protocol as a
server speaks it (docs/protocol.md §1 and §3). Must not import sockets, asyncio, threads, the
network layer, admin (the admin line handler is injected) or the package face ``gear``, and
must not log on hot paths: this is a pure function of bytes, events and ``clock()``.

The package, one concern a module (imports go down this list, never up; ``durable``,
``pipeline``, ``timers`` and ``dead`` never import ``core``):

* ``wire.py``: byte-exact replies, gearmand's number parsing, the submit-type table;
* ``gear_views.py``: ``Broker.wake``, for gear.Server's ``wakeConnections`` (gear's own names
  are adapters in ``server/gear_server.py``);
* ``model.py``: Peer, Function, Job (``Job.orphaned``), JobTable, JobState, BrokerConfig, and
  the records admin reads;
* ``lifecycle.py``: the seam: ``Outcome`` and the ``JobEvents`` receivers;
* ``timers.py``: the deadline heap;
* ``durable.py``: the store hand-off, held output, replay;
* ``dead.py``: the dead-letter list (poison background jobs: listed, retried, dropped);
* ``pipeline.py``: the fast framing loop and runs of plain submits (the one copy for speed);
* ``requests.py``: the packet handlers;
* ``core.py``: the :class:`Broker` itself.

Interface with the network layer (extended only additively):

* ``Broker(config, clock, *, admin=, store_batched=, remove=, packet_hook=, bury=, revive=)``:
  the callables the server wires in (each of the first four also still read from its
  ``BrokerConfig`` field when not given; ``bury``/``revive`` are the store's dead-letter list).
* ``broker.connect(host, port, fd, ssl_subject)`` returns a :class:`Peer`; ``broker.feed(peer,
  data)`` for every chunk received; ``broker.disconnect(peer)`` once the socket is gone. A
  client that leaves with many jobs is detached from them in slices: ``broker.run_deferred()``
  does the next one and returns True while more remain; the network layer calls it once per
  pass of its loop until then (docs/semantics.md, "Removal from a queue").
* Output accumulates in ``peer.out`` (encoded byte strings, in order) and every peer whose ``out``
  gained bytes is added to ``broker.dirty``. After each call into the broker (data, timers, store
  callbacks) the network layer writes ``b"".join(peer.out)`` for each dirty peer, clears ``out``
  and clears ``dirty``. ``peer.closing`` means: flush ``out``, then close. ``feed`` never raises
  for bad input.
* Timers: ``broker.next_deadline()`` (a ``clock()`` time, or None) and ``broker.run_timers()``.
* Durability: ``store_batched(records, jobs)``, called once at the end of each ``feed()`` that
  created durable jobs, answered by ``broker.stored_batch(jobs, exc)`` once per committed batch
  (any grouping and order; each job answered once), and ``remove(key)``. A new background job is
  stored before it is announced; until its store answers it is not runnable and *every* byte for
  the submitting peer is held back in order (libgearman matches JOB_CREATED to submissions
  strictly in order, docs/protocol.md §1.3). An error forgets the job and answers
  ``ERROR QUEUE_ERROR`` in place of JOB_CREATED. ``broker.replay(records)`` at start, then
  ``broker.replay_dead(dead)`` (the stored dead-letter list).
* Shutdown: ``broker.shutdown_requested`` (None, "immediate" or "graceful"; set by admin
  ``shutdown``), polled after each call; ``broker.drain()`` / ``broker.draining`` /
  ``broker.running_count()`` (graceful shutdown: nothing new is handed out, running jobs
  finish, queued jobs stay queued and stored).
* Extensions: ``BrokerConfig.max_packet_size`` / ``max_line_size`` (oversize input closes the
  connection), ``broker.functions`` / ``broker.peers`` / ``broker.jobs`` (read-only),
  ``broker.write`` / ``broker.close``, ``broker.cancel``, ``peer.pending`` (stores not yet
  answered for that peer), ``broker.wake(function=None)`` (NOOP sleeping workers, for
  gear.Server.wakeConnections), ``broker.dispatch`` (for ``packet_hook``), ``broker.take_job``
  (gear.Server's override point), the lifecycle seam (``add_observer``, ``set_policy``) and
  ``broker.version`` (admin ``version``: ``BrokerConfig.version`` or this package's version).

Speed (this is the server's hot path): ``__slots__`` everywhere, a dispatch list indexed by packet
type, whole request packets dispatched straight from the received bytes (the protocol
``Decoder`` is used only for text lines, partial large packets and errors), O(1) queue and
lookup operations, and no logging (but one line per poison job, ``dead.py``). Submissions
sent back to back are handled as one run by ``pipeline.submit_run``
(``durable_run.submit_run`` with a store), the plain ones (``Function.plain``: no ACL, no queue
limit, no lifecycle receivers; and no unique) inline; a job initialises only the fields every
job uses (see :class:`Job`). ``bench/profile_server.py`` measures these paths in-process.

Decisions (docs/semantics.md; where gearmand 1.1 differs, docs/protocol.md §3.18, its "do not
copy" list, is followed):

* Priority is global across a worker's functions (gearmand 2.0): HIGH before NORMAL before LOW
  over all functions the worker can do, FIFO within a priority. Each function keeps one deque
  per priority; every queued job carries a sequence number, so the oldest head among the
  worker's functions is found by comparing heads: O(functions of the worker), never O(jobs).
  Priorities are :class:`gear.protocol.messages.Priority` (gearmand's order: the deque index).
* A job re-queued because its worker went away (disconnect, CANT_DO, RESET_ABILITIES) goes to
  the *front* of its priority (gearmand appends to the tail); it gets a sequence number smaller
  than any other, so it is also first across functions. With ``job_retries`` 0 (no limit) it
  goes to the tail instead: at the front a poison job would hold every worker for ever
  (docs/semantics.md, "Where a re-queued job goes"). ``job_retries`` counts attempts
  (gearmand ``-j``: N attempts, then WORK_FAIL; 0 = unlimited; default 5, where gearmand's is
  unlimited). A background job whose attempts ran out goes to the dead-letter list
  (``dead.py``), and is logged: the broker's one log line, never per packet.
* CAN_DO_TIMEOUT: one independent timer per assigned job, armed at assignment (the value of the
  worker's latest CAN_DO/CAN_DO_TIMEOUT for that function), cancelled on any result, requeue or
  disconnect; on expiry the job FAILS (WORK_FAIL to its clients) and leaves the worker, whose
  later results get JOB_NOT_FOUND. PRE_SLEEP does not touch it (gearmand bug,
  docs/protocol.md §3.18, item 5).
* Epoch jobs wait outside the queues until a real timer makes them runnable (appended to the
  NORMAL tail at their time, sleeping workers woken); they count as queued NORMAL jobs in
  ``prioritystatus``. Peek and take only look at the queues, so they always agree.
* Wakeups: each function keeps its sleeping workers in wake order. A new runnable job NOOPs the
  first ``worker_wakeup`` of them (all when 0); a woken worker leaves every sleeper list until it
  sends PRE_SLEEP again, so a connection gets at most one NOOP per sleep cycle and the longest
  sleepers are woken first (the ``-w N`` spreading). PRE_SLEEP with a runnable job gets an
  immediate NOOP (docs/protocol.md §3.5). A sleeping worker that registers a function with
  runnable jobs is woken.
* Coalescing on (function, unique) while queued, held, waiting or running, foreground and
  background (docs/protocol.md §3.2). Every attachment of a foreground submitter is kept (same
  connection twice gets every WORK_* twice, as gearmand). Empty unique never coalesces; unique
  ``-`` coalesces on the data (non-empty data only). A unique longer than ``max_unique_size`` is
  refused; every accepted unique is kept whole and coalesces (gearmand truncates a 64-byte one:
  bug docs/protocol.md §3.18, item 7).
* Last foreground client gone (docs/protocol.md §3.7, ``Job.orphaned``): a queued job is removed
  at once (gearmand leaves it counted until a GRAB reaps it); a running job keeps running and
  its results are dropped. A background submission coalesced onto a foreground job keeps it
  alive (gearmand loses it).
* Every job leaves through ``Broker._finish(job, outcome)``: WORK_COMPLETE, WORK_FAIL,
  WORK_EXCEPTION, CAN_DO_TIMEOUT expiry, admin cancel, the retry limit, its last client leaving,
  its store failing (``lifecycle.Outcome``).
* Unknown packet types, bad magic, malformed layouts, a CAN_DO_TIMEOUT value longer than 20
  bytes, an out-of-range epoch, a GET_STATUS handle or GET_STATUS_UNIQUE unique of 64+ bytes and
  oversize input close the connection without a reply, as gearmand does (docs/protocol.md §1.6).
  ``\\0RES`` magic on a valid type answers ERROR INVALID_MAGIC and keeps the connection
  (docs/protocol.md §1.1).
* ACL (when ``config.acl`` is set): deny by default; CAN_DO/CAN_DO_TIMEOUT refused silently (as
  gear), SUBMIT* answered ``ERROR PERMISSION_DENIED\\0Permission denied by ACL``.
* Functions are never forgotten except by admin ``drop function`` (gearmand's ``status`` lists
  every function ever seen).
"""

from gear.server.broker.core import Broker, LineHandler
from gear.server.broker.lifecycle import JobEvents, Outcome
from gear.server.broker.model import (
    BrokerConfig,
    ConnectionInfo,
    Function,
    FunctionStats,
    Job,
    JobRecord,
    JobState,
    JobTable,
    Peer,
)
from gear.server.broker.wire import atoi_u32, strtol

__all__ = [
    "Broker",
    "BrokerConfig",
    "ConnectionInfo",
    "Function",
    "FunctionStats",
    "Job",
    "JobEvents",
    "JobRecord",
    "JobState",
    "JobTable",
    "LineHandler",
    "Outcome",
    "Peer",
    "atoi_u32",
    "strtol",
]
