"""The broker interface: what the engine (and ``gear.Server``) may ask of a broker.

Owns :class:`BrokerPort` and :class:`PeerPort`, two :class:`typing.Protocol` classes and the
contract in their docstrings. :class:`gear.server.broker.Broker` implements them, and so does
the stand-in broker of tests/server/test_network.py; mypy checks both. The interface grows
only additively.

Must not import anything of the package: the broker, the engine and the tests all depend on
this module, and it on none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any, Protocol, TypeVar


class PeerPort(Protocol):
    """The broker's object for one connection, as the engine sees it.

    The engine reads ``out``, ``closing`` and the identity fields and clears ``out`` after
    writing it; everything else is the broker's state.
    """

    host: str
    port: int
    #: Encoded output, in order, not yet written. The engine writes ``b"".join(out)`` and
    #: clears it.
    out: list[bytes]
    #: Write ``out``, then close the connection; nothing more is read from it.
    closing: bool

    @property
    def functions(self) -> Collection[bytes]:
        """The functions this peer registered (CAN_DO): non-empty means it is a worker."""
        ...


PeerT = TypeVar("PeerT", bound=PeerPort)


class BrokerPort(Protocol[PeerT]):
    """A sans-I/O broker, as the engine drives it. Every call runs on the event loop thread.

    * Connections: ``connect(host, port, fd, ssl_subject)`` returns the peer object;
      ``feed(peer, data)`` for every chunk received, in order; ``disconnect(peer)`` once the
      socket is gone. ``feed`` never raises for bad input: it answers (an ERROR packet where
      gearmand sends one) and sets ``peer.closing``.
    * Output: after a call the broker may have appended to ``peer.out`` and added the peer to
      ``dirty``. After each call into the broker (data, connect/disconnect, timers, storage
      batches) the engine writes each dirty peer's ``out`` with one write, clears ``out`` and
      clears ``dirty``; a peer with ``closing`` set is closed after its write.
    * Timers: ``next_deadline()`` is the earliest time (on the broker's clock, Unix seconds) at
      which ``run_timers()`` must be called, or None.
    * Durability: the broker is constructed (:class:`BrokerFactory`) with
      ``store_batched(records, jobs)`` and ``remove(key)`` callables (the storage writer's).
      A new background job is stored before it is announced: until it is answered it is not
      runnable and every byte for the submitting peer is held back in order (libgearman
      matches JOB_CREATED to submissions strictly in order, docs/protocol.md §1.3).
      ``store_batched`` is called once at the end of each ``feed`` that created durable jobs;
      the store answers with ``stored_batch(jobs, exc)`` once per committed batch (any
      grouping and order; each job answered once): ``exc`` None announces and runs them,
      otherwise they are forgotten and answered ERROR QUEUE_ERROR in place of JOB_CREATED.
    * Start: ``replay(records)`` queues the stored jobs, before any connection, then
      ``replay_dead(dead)`` puts back the stored dead-letter list.
    * Shutdown: ``shutdown_requested`` is set by admin ``shutdown`` (None, "immediate" or
      "graceful"); the engine polls it on each flush. ``drain()`` hands out nothing new from
      then on (running jobs finish, queued ones stay queued and stored); ``running_count()``
      is the number of jobs assigned to a worker, which a graceful shutdown waits to reach 0.
    * Gauges: ``job_count()`` is every job in memory (queued, held or running).
    * Deferred work: a call may leave bounded slices of work for later (the jobs of a client
      that left with many); ``run_deferred()`` does one slice and returns True while more
      remains. The engine calls it once per loop pass after a disconnect until it returns
      False, so other connections are served between slices.
    """

    #: Peers whose ``out`` gained bytes since the engine last flushed.
    dirty: set[PeerT]
    shutdown_requested: str | None

    def connect(self, host: str, port: int, fd: int, ssl_subject: str | None = None) -> PeerT: ...

    def disconnect(self, peer: PeerT) -> None: ...

    def feed(self, peer: PeerT, data: bytes) -> None: ...

    def next_deadline(self) -> float | None: ...

    def run_timers(self) -> None: ...

    def stored_batch(self, jobs: Iterable[Any], exc: BaseException | None) -> None: ...

    def replay(self, jobs: Iterable[Any]) -> None: ...

    def replay_dead(self, records: list[Any]) -> None: ...

    def drain(self) -> None: ...

    def running_count(self) -> int: ...

    def job_count(self) -> int: ...

    def run_deferred(self) -> bool: ...


class BrokerFactory(Protocol):
    """How the engine makes its broker (the :class:`~gear.server.broker.Broker` class is one).

    ``admin`` answers the admin text lines (``admin(broker, peer, line)``, the engine passes
    ``gear.server.admin.run_command``); ``store_batched`` and ``remove`` are the storage
    writer's, given only with a durable queue; ``packet_hook(peer, ptype, body)``, given only
    with statsd metrics, receives every request packet in place of the broker's own handler
    (it calls ``broker.dispatch``). ``bury(dead)`` and ``revive(key)``, the writer's too, change
    the stored dead-letter list.
    """

    def __call__(
        self,
        config: Any,
        clock: Callable[[], float],
        *,
        admin: Callable[[Any, Any, bytes], None] | None = None,
        store_batched: Callable[[list[Any], list[Any]], None] | None = None,
        remove: Callable[[int], None] | None = None,
        packet_hook: Callable[[Any, int, bytes], None] | None = None,
        bury: Callable[[Any], None] | None = None,
        revive: Callable[[int], None] | None = None,
    ) -> BrokerPort[Any]: ...
