"""``Broker.wake``: NOOP sleeping workers on request, for gear.Server's ``wakeConnections``.

gear's own names (``Server.getQueue`` / ``high_queue``..., ``ServerConnection.sendRaw`` /
``sendPacket`` / ``related_jobs``, ``ServerJob.running`` / ``worker_connection`` /
``client_connection``; docs/gear-compat.md) are adapters over the broker's objects in
``server/gear_server.py``; what stays here is the one action they need of the broker. Mixed
into ``Broker``. Must not import any other module of the broker, sockets, asyncio or threads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["BrokerGearViews"]


class BrokerGearViews:
    """``wake`` (for gear.Server's ``wakeConnections``), mixed into the Broker."""

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
