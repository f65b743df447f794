"""python-gearman 2.0's ``gearman.worker_handler``: one worker connection, on the shared session.

:class:`GearmanWorkerCommandHandler` owns a :class:`gear.protocol.worker.WorkerSession` (the one
copy of the grab/sleep cycle: registration on connect, GRAB_JOB_UNIQ, NO_JOB -> PRE_SLEEP,
NOOP -> grab again, JOB_ASSIGN* parsing, the INVALID_COMMAND fallback to GRAB_JOB). The
handler only turns assignments into :class:`~gear.compat.gearman.job.GearmanJob` objects for
the worker to run; *when* to grab is the worker's decision (one job at a time across all its
connections: python-gearman's job lock).

Assignments are queued and run by :meth:`GearmanWorkerCommandHandler.run_jobs` outside the
read, so a job callback that polls (sending updates) never re-enters the session. Imports
``gear.protocol`` and this package.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from gear import constants as c
from gear.compat.gearman.command_handler import GearmanCommandHandler
from gear.protocol.messages import JobAssignment, to_bytes
from gear.protocol.packets import request
from gear.protocol.worker import ServerError, WorkerSession, registration

__all__ = ["GearmanWorkerCommandHandler"]


class GearmanWorkerCommandHandler(GearmanCommandHandler):
    """One connection's worker state: a WorkerSession and the jobs it was assigned."""

    def __init__(self, connection_manager: Any = None, connection: Any = None) -> None:
        super().__init__(connection_manager, connection)
        self.session = WorkerSession()
        self.assigned: deque[JobAssignment] = deque()
        self._abilities: list[bytes] = []

    def initial_state(self, abilities: Iterable[Any] = (), client_id: Any = None) -> None:
        self._abilities = [to_bytes(task, "task") for task in abilities]
        if client_id is not None:
            self.session.client_id = to_bytes(client_id, "client_id")
        self.session.connection_made((name, None) for name in self._abilities)

    # -- called by GearmanWorker ----------------------------------------------------------------

    def set_abilities(self, connection_abilities_list: Iterable[Any]) -> None:
        """Tell the server what changed (CANT_DO for each task dropped, CAN_DO for each added)
        and grab.

        python-gearman sent RESET_ABILITIES and every CAN_DO again; gearmand and geard give a
        job back to the queue when its worker drops the function, so a job that registers a
        task would be handed out again and again. The change alone says the same thing.
        """
        new = [to_bytes(task, "task") for task in connection_abilities_list]
        dropped = [request(c.CANT_DO, name) for name in self._abilities if name not in new]
        added = [(name, None) for name in new if name not in self._abilities]
        self._abilities = new
        self.send_raw(b"".join(dropped) + registration(b"", added))
        self.session.wake()

    def set_client_id(self, client_id: Any) -> None:
        self.session.client_id = b"" if client_id is None else to_bytes(client_id, "client_id")
        if client_id is not None:
            self.send_raw(request(c.SET_CLIENT_ID, self.session.client_id))

    def grab(self) -> None:
        """Send one GRAB (the caller checked ``session.can_grab``)."""
        self.send_raw(self.session.grab())

    # -- the connection -------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        return self.session.data_to_send()

    def receive_data(self, data: bytes) -> None:
        session = self.session
        session.receive_data(data)
        for event in session.events_received():
            if isinstance(event, JobAssignment):
                self.assigned.append(event)
            elif isinstance(event, ServerError) and not event.grab_refused:
                # e.g. JOB_NOT_FOUND for an update on a job the server already ended
                self.connection_manager.on_gearman_error(event.code, event.text)

    def on_io_error(self) -> None:
        self.session.connection_lost()
        self.assigned.clear()  # the server re-queues them (docs/protocol.md §3.6)
