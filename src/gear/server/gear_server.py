"""``gear.Server``: the production server engine behind gear 0.16's embeddable Server API.

Owns :class:`Server`, with gear 0.16.0's exact constructor signature (docs/gear-compat.md
§3.13), and the broker subclass that routes a worker's job choice through a
``getJobForConnection`` override. It runs the SAME engine as ``geard``
(:class:`~gear.server.engine.JobServer` around the sans-I/O broker) on its own asyncio event
loop in a daemon thread, and it is listening before the constructor returns
(``Server(0).port`` is the port it got). Jobs are kept in memory only, as in gear.

gear's internals that test suites and Zuul read (docs/gear-compat.md §3.13 and §5.6) are
exposed as read-only snapshots: ``high_queue``, ``normal_queue``, ``low_queue``, ``jobs``,
``getQueue()``, ``active_connections``, ``functions``, ``running_jobs``, ``waiting_jobs``,
``total_jobs``. Read from another thread, they are taken on the loop thread (so they are
consistent); read from the loop thread (inside an override), directly. The jobs and
connections in them are the broker's own, seen through :class:`GearJob` and
:class:`GearConnection`: adapters that add gear's ``ServerJob`` and ``ServerConnection`` names
(``running``, ``worker_connection``, ``client_connection``; ``sendRaw``, ``sendPacket``,
``related_jobs``) and pass everything else through, so the broker carries no gear names.

Two override points: ``getJobForConnection(connection, peek=False)`` is called by the broker
whenever a worker asks for a job, and ``handlePacket(packet)`` for every request packet (custom
packet types included); both may delegate to ``super()``.

Differences from gear on purpose (keep the API, not the bugs: docs/gear-compat.md §6): the
server speaks the full protocol like gearmand (GRAB_JOB, ECHO, OPTION_REQ, CAN_DO_TIMEOUT, epoch
jobs, coalescing), ``listen()`` has a real backlog, the TLS handshake does not block accepts, and
key + cert without a CA gives server-only TLS (gear silently served plaintext unless all three
were set).

gear-compatible camelCase method names (``getQueue``, ``getJobForConnection``, ``handlePacket``)
are kept on purpose.
Must not import the CLI. The one server module allowed to import the threaded API, and only
:class:`gear.threaded.packet.Packet` (``handlePacket`` takes gear Packets), lazily.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from gear.protocol.messages import Priority
from gear.server.config import ServerConfig
from gear.server.engine import JobServer

if TYPE_CHECKING:
    from gear.server.port import BrokerFactory

T = TypeVar("T")


class GearConnection:
    """One of the broker's peers as gear's ``ServerConnection`` (loop thread only).

    Attributes are the peer's (``functions``, ``client_id``, ``host``, ``port``...); two
    adapters of the same peer are equal.
    """

    __slots__ = ("_broker", "peer")

    def __init__(self, broker: Any, peer: Any) -> None:
        object.__setattr__(self, "_broker", broker)
        object.__setattr__(self, "peer", peer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.peer, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.peer, name, value)

    def __eq__(self, other: object) -> bool:
        return self.peer is _peer_of(other)

    def __hash__(self) -> int:
        return hash(self.peer)

    def __repr__(self) -> str:
        return repr(self.peer)

    def sendRaw(self, data: bytes) -> None:
        """Queue raw bytes for this connection, in order with everything else it is sent."""
        if not self.peer.gone:
            self._broker.write(self.peer, bytes(data))

    def sendPacket(self, packet: Any) -> None:
        """Queue a ``gear.Packet`` (anything with ``toBinary()``) for this connection."""
        self.sendRaw(packet.toBinary())

    @property
    def related_jobs(self) -> dict[bytes, GearJob]:
        """handle -> job, for the jobs this connection submitted or runs."""
        broker, peer = self._broker, self.peer
        jobs = {job.handle: GearJob(broker, job) for job in peer.client_jobs}
        jobs.update((job.handle, GearJob(broker, job)) for job in peer.worker_jobs)
        return jobs


class GearJob:
    """One of the broker's jobs as gear's ``ServerJob`` (loop thread only).

    Attributes are the job's (``handle``, ``name``, ``unique``, ``arguments``...; attributes an
    override sets are kept on the job); two adapters of the same job are equal.
    """

    __slots__ = ("_broker", "job")

    def __init__(self, broker: Any, job: Any) -> None:
        object.__setattr__(self, "_broker", broker)
        object.__setattr__(self, "job", job)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.job, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.job, name, value)

    def __eq__(self, other: object) -> bool:
        return self.job is _job_of(other)

    def __hash__(self) -> int:
        return hash(self.job)

    def __repr__(self) -> str:
        return repr(self.job)

    @property
    def running(self) -> bool:
        return self.job.worker is not None

    @property
    def worker_connection(self) -> GearConnection | None:
        worker = self.job.worker
        return GearConnection(self._broker, worker) if worker is not None else None

    @property
    def client_connection(self) -> GearConnection | None:
        clients = self.job.clients
        return GearConnection(self._broker, clients[0]) if clients else None


def _peer_of(connection: Any) -> Any:
    return connection.peer if type(connection) is GearConnection else connection


def _job_of(job: Any) -> Any:
    return job.job if type(job) is GearJob else job


def queued_jobs(broker: Any, priority: Priority) -> list[GearJob]:
    """The queued (not running) jobs of ``priority`` over every function, in take order (gear's
    ``Server.high_queue`` / ``normal_queue`` / ``low_queue``)."""
    jobs = [job for f in broker.functions.values() for job in f.queues[priority]]
    jobs.sort(key=lambda job: job.seq)
    return [GearJob(broker, job) for job in jobs]


class Server:
    """A Gearman job server running in a background thread (gear 0.16 compatible)."""

    def __init__(
        self,
        port: int = 4730,
        ssl_key: str | None = None,
        ssl_cert: str | None = None,
        ssl_ca: str | None = None,
        statsd_host: str | None = None,
        statsd_port: int = 8125,
        statsd_prefix: str | None = None,
        server_id: str | None = None,
        acl: Any = None,
        host: str | None = None,
        keepalive: bool = False,
        tcp_keepidle: int = 7200,
        tcp_keepintvl: int = 75,
        tcp_keepcnt: int = 9,
    ) -> None:
        from gear.server.broker import BrokerConfig

        self.port = int(port)
        self.ssl_key = ssl_key
        self.ssl_cert = ssl_cert
        self.ssl_ca = ssl_ca
        self.acl = acl
        self.host = host
        self.server_id = server_id
        self.use_ssl = bool(ssl_key and ssl_cert)
        if server_id:
            self.log = logging.getLogger(f"gear.Server.{server_id}")
        else:
            self.log = logging.getLogger("gear.Server")
        metrics = None
        if statsd_host:
            from gear.errors import ConfigurationError
            from gear.server.observe.statsd import Metrics

            try:
                # An overriding handlePacket runs inside each packet's timer.
                metrics = Metrics(statsd_host, statsd_port, statsd_prefix,
                                  handler=self._gear_packet_hook())
            except ConfigurationError:
                # gear logs this and runs without statsd (docs/gear-compat.md §3.13, constructor
                # step 5).
                self.log.error("Unable to import statsd module")
        config = ServerConfig(
            host=host,
            port=self.port,
            ssl_key=ssl_key,
            ssl_cert=ssl_cert,
            ssl_ca=ssl_ca,
            keepalive=keepalive,
            tcp_keepidle=tcp_keepidle,
            tcp_keepintvl=tcp_keepintvl,
            tcp_keepcnt=tcp_keepcnt,
            queue="memory",
            shutdown_timeout=0.0,
        )
        self._engine = JobServer(
            config,
            # WORK_EXCEPTION to every client, as gear's server did (docs/semantics.md, Failures
            # and exceptions); geard keeps gearmand's default and has --exceptions for this.
            # Requeue without limit, as gear's server did; geard's default is finite
            # (docs/semantics.md, "Poison jobs and the dead-letter list").
            BrokerConfig(acl=acl, exceptions_default=True, job_retries=0),
            broker_class=self._broker_factory(),
            metrics=metrics,
        )
        self._loop = asyncio.new_event_loop()
        self._stopped = threading.Event()
        self._shutdown_lock = threading.Lock()
        self._shut_down = False
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name=f"gear.Server-{self.port}", daemon=True
        )
        self._thread.start()
        started.result()  # re-raises a start error (port in use, bad TLS files...) here
        self.port = self._engine.port

    # -- the engine's thread ---------------------------------------------------------------

    def _broker_factory(self) -> BrokerFactory:
        """How the engine makes the broker: the plain Broker when this class overrides none of
        gear's hooks (nothing between the broker and its hot paths); a subclass routing
        ``take_job`` for a ``getJobForConnection`` override; the packet hook for a
        ``handlePacket`` override."""
        from gear.server.broker import Broker

        cls = Broker
        if type(self).getJobForConnection is not Server.getJobForConnection:
            server = self

            class CompatBroker(Broker):
                """Routes the broker's job choice through the Server subclass's override."""

                def take_job(self, peer: Any, peek: bool = False) -> Any:
                    return _job_of(server.getJobForConnection(GearConnection(self, peer), peek))

            cls = CompatBroker
        hook = self._gear_packet_hook()
        if hook is None:
            return cls

        def factory(config: Any, clock: Callable[[], float], **callables: Any) -> Broker:
            # statsd's hook (given by the engine) calls this one inside its timer.
            if callables.get("packet_hook") is None:
                callables["packet_hook"] = hook
            return cls(config, clock, **callables)

        return factory

    def _gear_packet_hook(self) -> Callable[[Any, int, bytes], None] | None:
        """The broker's packet hook when this class overrides ``handlePacket``: an override
        sees every request packet (and may define its own types); without one the broker
        keeps its fast paths."""
        if type(self).handlePacket is Server.handlePacket:
            return None
        return self._packet_hook

    def _run(self, started: concurrent.futures.Future[None]) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(self._engine.start())
            except BaseException as exc:
                started.set_exception(exc)
                return
            started.set_result(None)
            loop.run_until_complete(self._engine.wait_closed())
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self._stopped.set()

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the loop thread (directly when already there) and return its result."""
        if threading.current_thread() is self._thread or self._stopped.is_set():
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        try:
            self._loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop closed meanwhile
            return fn()
        return future.result(10)

    @property
    def _broker(self) -> Any:
        return self._engine.broker

    # -- gear's API ------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop the server, close every connection and wait for the thread (idempotent)."""
        with self._shutdown_lock:
            if self._shut_down:
                return
            self._shut_down = True
        if not self._stopped.is_set():
            try:
                future = asyncio.run_coroutine_threadsafe(
                    self._engine.shutdown(graceful=False), self._loop
                )
                future.result(10)
            except RuntimeError:  # loop already closed
                pass
        if threading.current_thread() is not self._thread:
            self._thread.join(10)

    def _packet_hook(self, peer: Any, ptype: int, body: bytes) -> None:
        from gear.constants import REQ
        from gear.threaded.packet import Packet

        packet = Packet(REQ, ptype, body, connection=GearConnection(self._broker, peer))
        try:
            self.handlePacket(packet)
        except Exception:
            # As gear's poll loop: log it and go on serving (the connection stays open).
            self.log.exception("Exception handling packet %s:", packet)

    def handlePacket(self, packet: Any) -> None:
        """Handle one request packet (a ``gear.Packet``; ``packet.connection`` is the sending
        connection, with gear's ``sendRaw`` / ``sendPacket``).

        Override it to add packet types of your own, delegating every other packet to
        ``super().handlePacket(packet)``; it runs on the server thread, one packet at a time,
        in the order they arrived. A type the server does not know is logged and ignored (as
        gear does) when an override lets it through; without an override, such a packet
        closes its connection, as with gearmand.
        """
        peer = _peer_of(packet.connection)
        if not self._broker.dispatch(peer, packet.ptype, bytes(packet.data)):
            self.log.error("Received unknown packet: %s", packet)

    def getJobForConnection(self, connection: Any, peek: bool = False) -> Any:
        """The next job for worker ``connection`` (None if none), assigned to it unless ``peek``.

        Called on the server thread whenever a worker asks for a job (GRAB_JOB*, PRE_SLEEP);
        override it to hold or reorder jobs, delegating to this implementation for the rest.
        """
        from gear.server.broker import Broker

        broker = self._broker
        job = Broker.take_job(broker, _peer_of(connection), peek)
        return GearJob(broker, job) if job is not None else None

    def wakeConnections(self, job: Any = None) -> None:
        """NOOP the sleeping workers that can do ``job`` (every sleeping worker if None).

        Zuul calls this after releasing jobs its ``getJobForConnection`` override was holding,
        so that workers which went to sleep on NO_JOB come back for them.
        """

        def wake() -> None:
            # The broker's own wake-up rule (honours -w); job.name is the function's name.
            self._broker.wake(job.name if job is not None else None)
            self._engine.after_broker_call()

        self._call(wake)

    def getQueue(self) -> list[GearJob]:
        """Every queued (not running) job: high, then normal, then low priority."""
        return self._call(
            lambda: queued_jobs(self._broker, Priority.HIGH)
            + queued_jobs(self._broker, Priority.NORMAL)
            + queued_jobs(self._broker, Priority.LOW)
        )

    @property
    def high_queue(self) -> list[GearJob]:
        return self._call(lambda: queued_jobs(self._broker, Priority.HIGH))

    @property
    def normal_queue(self) -> list[GearJob]:
        return self._call(lambda: queued_jobs(self._broker, Priority.NORMAL))

    @property
    def low_queue(self) -> list[GearJob]:
        return self._call(lambda: queued_jobs(self._broker, Priority.LOW))

    @property
    def jobs(self) -> dict[bytes, GearJob]:
        """handle -> job, for every job in memory (queued or running)."""

        def snapshot() -> dict[bytes, GearJob]:
            broker = self._broker
            return {handle: GearJob(broker, job) for handle, job in broker.jobs.items()}

        return self._call(snapshot)

    @property
    def active_connections(self) -> list[GearConnection]:
        """The connected peers (host, port, client_id, functions...)."""
        return self._call(lambda: [GearConnection(self._broker, p) for p in self._broker.peers])

    @property
    def functions(self) -> set[bytes]:
        """Every function name the server knows (gear's set never shrinks; ours shrinks only on
        admin ``drop function``)."""
        return self._call(lambda: set(self._broker.functions))

    @property
    def total_jobs(self) -> int:
        return self._call(lambda: len(self._broker.jobs))

    @property
    def running_jobs(self) -> int:
        return self._call(self._engine.running_jobs)

    @property
    def waiting_jobs(self) -> int:
        return self._call(lambda: len(self._broker.jobs) - self._engine.running_jobs())

    def __repr__(self) -> str:
        return f"<gear.Server port: {self.port}>"
