"""gear 0.16 compatibility views of the broker's objects, for ``gear.Server`` only.

Owns the names gear's ``Server``, ``ServerConnection`` and ``ServerJob`` had and the broker does
not need itself: ``Peer.sendRaw`` / ``sendPacket`` / ``related_jobs``, ``Job.running`` /
``worker_connection`` / ``client_connection``, ``Broker.high_queue`` / ``normal_queue`` /
``low_queue`` and ``Broker.wake`` (docs/gear-compat.md). They exist for ``gear.Server``
subclasses (Zuul's) and are mixed into ``Peer``, ``Job`` and ``Broker``; they are to move to
the server's gear module (``server/gear_server.py``) with ``gear.Server``. Read-only except
``sendRaw`` (queues bytes through ``Broker.write``) and ``wake``. Must not import any other
module of the broker, sockets, asyncio or threads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gear.protocol.messages import Priority

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["BrokerGearViews", "JobGearViews", "PeerGearViews"]


class PeerGearViews:
    """gear's ``ServerConnection`` API on a Peer (broker thread only)."""

    __slots__ = ()
    broker: Any
    gone: bool
    client_jobs: dict[Any, int]
    worker_jobs: dict[Any, None]

    def sendRaw(self, data: bytes) -> None:
        """Queue raw bytes for this connection, in order with everything else it is sent."""
        if self.broker is not None and not self.gone:
            self.broker.write(self, bytes(data))

    def sendPacket(self, packet: Any) -> None:
        """Queue a ``gear.Packet`` (anything with ``toBinary()``) for this connection."""
        self.sendRaw(packet.toBinary())

    @property
    def related_jobs(self) -> dict[bytes, Any]:
        """gear's ``ServerConnection.related_jobs``: handle -> job, as worker or client."""
        jobs = {job.handle: job for job in self.client_jobs}
        jobs.update((job.handle, job) for job in self.worker_jobs)
        return jobs


class JobGearViews:
    """gear's ``ServerJob`` read-only views on a Job."""

    __slots__ = ()
    worker: Any
    clients: Any

    @property
    def running(self) -> bool:
        return self.worker is not None

    @property
    def worker_connection(self) -> Any:
        return self.worker

    @property
    def client_connection(self) -> Any:
        return self.clients[0] if self.clients else None


class BrokerGearViews:
    """gear's ``Server.high_queue`` / ``normal_queue`` / ``low_queue`` on the Broker, and
    ``wake`` (for ``Server.wakeConnections``)."""

    functions: dict[bytes, Any]

    if TYPE_CHECKING:  # defined in core.py
        def _wake(self, f: Any) -> int: ...

    def wake(self, function: bytes | None = None) -> int:
        """NOOP the sleeping workers of ``function`` (of every function when None), following
        the ``worker_wakeup`` rule per function; returns how many were woken.

        For code that holds jobs back in an overriding :meth:`take_job` (gear.Server's
        ``wakeConnections``, used by Zuul): workers that went to sleep on NO_JOB come back and
        ask again. Nothing is sent while draining (no job would be handed out).
        """
        if function is None:
            functions = list(self.functions.values())
        else:
            f = self.functions.get(function)
            functions = [f] if f is not None else []
        woken = 0
        for f in functions:
            if f.sleepers:
                woken += self._wake(f)
        return woken

    def _queue_view(self, priority: Priority) -> list[Any]:
        queues: Iterable[Any] = (f.queues[priority] for f in self.functions.values())
        jobs = [job for queue in queues for job in queue]
        jobs.sort(key=lambda job: job.seq)
        return jobs

    @property
    def high_queue(self) -> list[Any]:
        """Queued HIGH jobs in take order (a snapshot; gear's ``Server.high_queue``)."""
        return self._queue_view(Priority.HIGH)

    @property
    def normal_queue(self) -> list[Any]:
        """Queued NORMAL jobs in take order (a snapshot)."""
        return self._queue_view(Priority.NORMAL)

    @property
    def low_queue(self) -> list[Any]:
        """Queued LOW jobs in take order (a snapshot)."""
        return self._queue_view(Priority.LOW)
