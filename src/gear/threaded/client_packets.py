"""The threaded ``Client``'s reply hooks: gear's ``handleXxx(packet)`` as glue over the session.

Owns ``ClientPacketHandlers``, the part of ``Client`` the poll thread runs for JOB_CREATED,
OPTION_RES, WORK_* and STATUS_RES*. Each hook stays the dispatch point gear users override
(docs/gear-compat.md §3.9) and returns what gear returned (the Job, or the JobStatus); its body
only hands the packet's body to the connection's :class:`gear.protocol.client.ClientSession`,
which decides what it means. ``handleError`` is shared with the Worker and lives on
``BaseClient``.

Names are gear's camelCase on purpose. Must not import the client, worker or server modules,
nor ``gear.aio``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from gear.errors import GearmanError, ProtocolError, UnknownJobError
from gear.protocol import messages
from gear.threaded.dispatch import PacketDispatch
from gear.threaded.packet import Packet
from gear.threaded.tasks import apply_status

__all__ = ["ClientPacketHandlers"]


class ClientPacketHandlers(PacketDispatch):
    """``Client``'s reply hooks (module docstring); ``Client`` provides the attributes below."""

    #: Serialises ClientSession.attach against these packets (see BaseClientServer).
    session_lock: threading.Lock
    _lostConnection: Callable[[Any], None]

    def _unexpected(self, packet: Packet, error: ProtocolError) -> GearmanError:
        """A reply that answers no pending request: the stream and our bookkeeping disagree
        (docs/protocol.md §1.3), so the connection is dropped."""
        msg = f"Unexpected response received: {packet} ({error})"
        self.log.error(msg)
        self._lostConnection(packet.connection)
        return GearmanError(msg)

    def handleJobCreated(self, packet: Packet) -> Any:
        session = packet.connection.session
        try:
            if session.live:  # followers may be waiting for this handle
                with self.session_lock:
                    return session.job_created(packet.data)
            return session.job_created(packet.data)
        except ProtocolError as e:
            raise self._unexpected(packet, e) from None

    def _job(self, method: Any, packet: Packet, locked: Any = False) -> Any:
        """The first job ``method`` (a session's work_*) updated; ``locked`` when the packet
        may end a live job another thread attaches to (see ``session_lock``)."""
        if locked:
            with self.session_lock:
                job = method(packet.data)
        else:
            job = method(packet.data)
        if job is None:
            raise UnknownJobError()
        return job

    def handleWorkComplete(self, packet: Packet) -> Any:
        session = packet.connection.session
        return self._job(session.work_complete, packet, session.live)

    def handleWorkFail(self, packet: Packet) -> Any:
        session = packet.connection.session
        return self._job(session.work_fail, packet, session.live)

    def handleWorkException(self, packet: Packet) -> Any:
        session = packet.connection.session
        return self._job(session.work_exception, packet, session.live)

    def handleWorkData(self, packet: Packet) -> Any:
        return self._job(packet.connection.session.work_data, packet)

    def handleWorkWarning(self, packet: Packet) -> Any:
        return self._job(packet.connection.session.work_warning, packet)

    def handleWorkStatus(self, packet: Packet) -> Any:
        return self._job(packet.connection.session.work_status, packet)

    def handleStatusRes(self, packet: Packet) -> Any:
        """STATUS_RES: update the job (and wake getStatus callers waiting on its handle)."""
        conn = packet.connection
        if conn is None:  # a bare packet (gear's own tests patch getJob)
            job = packet.getJob()
            raw = packet.data.split(b"\x00", 4)
            apply_status(job, messages.parse_status_res(raw), raw)
            return job
        status = conn.session.status_res(packet.data)
        jobs = conn.session.jobs_of(status.handle)
        waiters = conn.popStatusWaiters(status.handle)
        fields: list[bytes] | None = None
        for w in waiters:
            if w.job is not None and all(w.job is not j for j in jobs):
                if fields is None:
                    fields = packet.data.split(b"\x00", 4)
                apply_status(w.job, status, fields)
                jobs.append(w.job)
        for w in waiters:
            w.set()
        if not jobs:
            raise UnknownJobError()
        return jobs[0]

    def handleStatusResUnique(self, packet: Packet) -> Any:
        """STATUS_RES_UNIQUE: wake getStatusUnique callers; returns the JobStatus."""
        status = packet.connection.session.status_res_unique(packet.data)
        for w in packet.connection.popStatusWaiters(status.handle, unique=True):
            w.result = status
            w.set()
        return status

    def handleOptionRes(self, packet: Packet) -> Any:
        try:
            packet.connection.session.option_res(packet.data)
        except ProtocolError as e:
            raise self._unexpected(packet, e) from None
        return None
