"""python-gearman 2.0's ``gearman.worker``: :class:`GearmanWorker`.

python-gearman's API and hooks: ``register_task(task, callback)`` with
``callback(gearman_worker, gearman_job)`` returning the result, ``unregister_task``,
``set_client_id``, ``work(poll_timeout=60.0)``, the loop hooks ``after_poll(any_activity)`` and
``after_job()`` (return False to leave ``work``), the job hooks ``create_job``,
``on_job_execute``, ``on_job_exception`` and ``on_job_complete``, and the ``send_job_*`` updates.
As in python-gearman a task that raises sends WORK_FAIL only (``on_job_exception``);
``send_job_exception`` sends WORK_EXCEPTION then WORK_FAIL. One job runs at a time across all
connections; ``work`` raises :class:`~gear.compat.gearman.errors.ServerUnavailable` when no
server can be reached, and otherwise reconnects broken connections every ``poll_timeout``.

The grab/sleep cycle is the shared :class:`gear.protocol.worker.WorkerSession`'s (through
:mod:`gear.compat.gearman.worker_handler`): this module only decides which connection grabs
next (one GRAB in flight at a time, taking turns) and runs the jobs. Unlike python-gearman it
grabs again straight after a job instead of going to sleep first, so a busy queue costs one
round trip per job, not two. Updates are written before ``send_job_*`` returns, within its
``poll_timeout``; only a job's final packet (from ``on_job_complete``/``on_job_exception``)
is written together with the next GRAB, before the loop waits again. Task names may be str or
bytes; ``job.task`` is the name as registered, ``job.handle``, ``job.unique`` and ``job.data``
are bytes (after ``data_encoder.decode``).
Imports ``gear.protocol`` and this package; no threads.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from gear import constants as c
from gear.compat.gearman.connection_manager import GearmanConnectionManager
from gear.compat.gearman.errors import ConnectionError, ServerUnavailable
from gear.compat.gearman.worker_handler import GearmanWorkerCommandHandler
from gear.protocol import messages
from gear.protocol.messages import to_bytes
from gear.protocol.packets import request

__all__ = ["POLL_TIMEOUT_IN_SECONDS", "GearmanWorker"]

POLL_TIMEOUT_IN_SECONDS = 60.0


class GearmanWorker(GearmanConnectionManager):
    """Takes jobs from Gearman servers and runs the registered callbacks (python-gearman's API)."""

    command_handler_class = GearmanWorkerCommandHandler

    def __init__(self, host_list: Sequence[Any] | None = None) -> None:
        super().__init__(host_list=host_list)
        self.randomized_connections: list[Any] | None = None
        #: task (as registered) -> callback.
        self.worker_abilities: dict[Any, Callable[[Any, Any], Any]] = {}
        self.worker_client_id: Any = None
        #: The handler whose job is running (python-gearman's job lock).
        self.command_handler_holding_job_lock: Any = None
        self._by_wire: dict[bytes, Any] = {}
        self._turn = 0
        self._deferring = False
        self._update_initial_state()

    def _update_initial_state(self) -> None:
        self._by_wire = {to_bytes(task, "task"): task for task in self.worker_abilities}
        self.handler_initial_state["abilities"] = list(self.worker_abilities)
        self.handler_initial_state["client_id"] = self.worker_client_id

    # -- registration ---------------------------------------------------------------------------

    def register_task(self, task: Any, callback_function: Callable[[Any, Any], Any]) -> Any:
        """Do ``task`` with ``callback_function(worker, job)``; returns ``task``."""
        self.worker_abilities[task] = callback_function
        self._update_initial_state()
        for handler in list(self.handler_to_connection_map):
            handler.set_abilities(self.handler_initial_state["abilities"])
        return task

    def unregister_task(self, task: Any) -> Any:
        self.worker_abilities.pop(task, None)
        self._update_initial_state()
        for handler in list(self.handler_to_connection_map):
            handler.set_abilities(self.handler_initial_state["abilities"])
        return task

    def set_client_id(self, client_id: Any) -> Any:
        self.worker_client_id = client_id
        self._update_initial_state()
        for handler in list(self.handler_to_connection_map):
            handler.set_client_id(client_id)
        return client_id

    # -- the work loop --------------------------------------------------------------------------

    def work(self, poll_timeout: float = POLL_TIMEOUT_IN_SECONDS) -> None:
        """Run jobs until ``after_poll`` or ``after_job`` returns False; then close."""
        continue_working = True
        worker_connections: list[Any] = []

        def continue_while_connections_alive(any_activity: bool) -> bool:
            done = self._run_assigned()
            self._grab_next()
            if done:
                return bool(self.after_poll(any_activity or bool(done)) and self.after_job())
            return bool(self.after_poll(any_activity))

        while continue_working:
            worker_connections = self.establish_worker_connections()
            continue_working = self.poll_connections_until_stopped(
                worker_connections, continue_while_connections_alive, timeout=poll_timeout)
        # The last job's final packet may still be queued (_last_word): write it first.
        live = [c for c in worker_connections if c.connected]
        try:
            self.wait_until_sent(live, poll_timeout=poll_timeout)
        except ServerUnavailable:
            pass
        for connection in live:
            if connection.connected:
                self.handle_error(connection)

    def establish_worker_connections(self) -> list[Any]:
        """The connections that are up, in a new random order; dead ones are retried."""
        self.randomized_connections = list(self.connection_list)
        random.shuffle(self.randomized_connections)
        out = []
        for connection in self.randomized_connections:
            try:
                out.append(self.establish_connection(connection))
            except ConnectionError:
                pass
        return out

    def _run_assigned(self) -> int:
        """Run the jobs the connections were assigned; returns how many ran."""
        ran = 0
        for handler in list(self.handler_to_connection_map):
            while handler.assigned:
                assignment = handler.assigned.popleft()
                if handler not in self.handler_to_connection_map:
                    break
                self.command_handler_holding_job_lock = handler
                try:
                    task = self._by_wire.get(assignment.function)
                    job = self.create_job(handler, assignment.handle, task, assignment.unique,
                                          handler.decode_data(assignment.data))
                    if task is None:  # unregistered while the GRAB was in flight
                        self.send_job_failure(job)
                    else:
                        self.on_job_execute(job)
                finally:
                    self.command_handler_holding_job_lock = None
                ran += 1
        return ran

    def _grab_next(self) -> None:
        """One GRAB in flight across all connections, connections taking turns."""
        handlers = list(self.handler_to_connection_map)
        if not handlers or any(h.session.outstanding or h.assigned for h in handlers):
            return
        n = len(handlers)
        for i in range(n):
            handler = handlers[(self._turn + i) % n]
            if handler.session.can_grab:
                self._turn = (self._turn + i + 1) % n
                handler.grab()
                return

    def shutdown(self) -> None:
        self.command_handler_holding_job_lock = None
        super().shutdown()

    # -- hooks ----------------------------------------------------------------------------------

    def after_poll(self, any_activity: bool) -> bool:
        """Called after every poll round; return False to leave :meth:`work`."""
        return True

    def after_job(self) -> bool:
        """Called after each job; return False to leave :meth:`work`."""
        return True

    def handle_error(self, current_connection: Any) -> None:
        handler = self.connection_to_handler_map.get(current_connection)
        if handler is not None and handler is self.command_handler_holding_job_lock:
            self.command_handler_holding_job_lock = None
        super().handle_error(current_connection)

    def create_job(self, command_handler: Any, job_handle: bytes, task: Any, unique: bytes,
                   data: Any) -> Any:
        """A job object (``self.job_class``) for an assignment."""
        connection = self.handler_to_connection_map[command_handler]
        return self.job_class(connection, job_handle, task, unique, data)

    def on_job_execute(self, current_job: Any) -> bool:
        try:
            callback = self.worker_abilities[current_job.task]
            job_result = callback(self, current_job)
        except Exception:
            with self._last_word():
                return self.on_job_exception(current_job, sys.exc_info())
        with self._last_word():
            return self.on_job_complete(current_job, job_result)

    @contextmanager
    def _last_word(self) -> Iterator[None]:
        """The job's final packet waits for the next GRAB, so both go out in one write (the
        poll loop writes them before it waits again: nothing is delayed)."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False

    def on_job_exception(self, current_job: Any, exc_info: Any) -> bool:
        """A task raised: WORK_FAIL, as python-gearman (override to send_job_exception)."""
        self.send_job_failure(current_job)
        return False

    def on_job_complete(self, current_job: Any, job_result: Any) -> bool:
        self.send_job_complete(current_job, job_result)
        return True

    def set_job_lock(self, command_handler: Any, lock: bool) -> bool:
        """python-gearman's worker-wide lock (kept for subclasses that call it)."""
        if command_handler not in self.handler_to_connection_map:
            return False
        held = self.command_handler_holding_job_lock
        if (lock and held is not None) or (not lock and held is not command_handler):
            return False
        self.command_handler_holding_job_lock = command_handler if lock else None
        return True

    def has_job_lock(self) -> bool:
        return self.command_handler_holding_job_lock is not None

    def check_job_lock(self, command_handler: Any) -> bool:
        return self.command_handler_holding_job_lock is command_handler

    # -- updates --------------------------------------------------------------------------------

    def wait_until_updates_sent(self, multiple_gearman_jobs: Sequence[Any],
                                poll_timeout: float | None = None) -> None:
        """Poll until everything queued on the jobs' connections is written."""
        self.wait_until_sent({job.connection for job in multiple_gearman_jobs},
                             poll_timeout=poll_timeout)

    def _send(self, current_job: Any, packet: bytes, poll_timeout: float | None) -> None:
        handler = self.connection_to_handler_map.get(current_job.connection)
        if handler is None:
            # The job's connection broke: the server gives the job to another worker
            # (docs/protocol.md §3.6), and the work loop reports the lost connection.
            return
        handler.send_raw(packet)
        if not self._deferring:
            self.wait_until_sent([current_job.connection], poll_timeout=poll_timeout)

    def _encode(self, data: Any) -> bytes:
        return to_bytes(self.data_encoder.encode(data), "data")

    def send_job_status(self, current_job: Any, numerator: int | float, denominator: int | float,
                        poll_timeout: float | None = None) -> None:
        assert type(numerator) in (int, float), "Numerator must be a numeric value"
        assert type(denominator) in (int, float), "Denominator must be a numeric value"
        self._send(current_job, request(c.WORK_STATUS, current_job.handle,
                                        str(numerator).encode(), str(denominator).encode()),
                   poll_timeout)

    def send_job_complete(self, current_job: Any, data: Any, poll_timeout: float | None = None
                          ) -> None:
        self._send(current_job, messages.work_complete(current_job.handle, self._encode(data)),
                   poll_timeout)

    def send_job_failure(self, current_job: Any, poll_timeout: float | None = None) -> None:
        self._send(current_job, messages.work_fail(current_job.handle), poll_timeout)

    def send_job_exception(self, current_job: Any, data: Any, poll_timeout: float | None = None
                           ) -> None:
        """WORK_EXCEPTION with ``data``, then WORK_FAIL (python-gearman sends both)."""
        handle = current_job.handle
        self._send(current_job, messages.work_exception(handle, self._encode(data))
                   + messages.work_fail(handle), poll_timeout)

    def send_job_data(self, current_job: Any, data: Any, poll_timeout: float | None = None
                      ) -> None:
        self._send(current_job, messages.work_data(current_job.handle, self._encode(data)),
                   poll_timeout)

    def send_job_warning(self, current_job: Any, data: Any, poll_timeout: float | None = None
                         ) -> None:
        self._send(current_job, messages.work_warning(current_job.handle, self._encode(data)),
                   poll_timeout)
