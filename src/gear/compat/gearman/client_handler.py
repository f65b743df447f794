"""python-gearman 2.0's ``gearman.client_handler``: one client connection, on the shared session.

:class:`GearmanClientCommandHandler` owns a :class:`gear.protocol.client.ClientSession` (the one
copy of reply matching: the pending FIFO, handle -> requests, server-side coalescing, WORK_FAIL's
``handle\\0`` form) and is its :class:`~gear.protocol.client.SessionHandler`: each decision becomes
python-gearman's record change on the :class:`~gear.compat.gearman.job.GearmanJobRequest`
(``state``, ``result``, ``data_updates``, ``warning_updates``, ``status``, ``exception``).

Decisions (docs/migrating.md): the client never asks for local coalescing (python-gearman sends
every submission); an ERROR reply to a submission fails that request (``JOB_FAILED``) and calls
the manager's ``on_gearman_error`` instead of leaving it pending forever; WORK_EXCEPTION sets
``exception`` and fails the request (the session ends the job there, as gearmand does); requests
the server coalesced onto one handle each get every packet (python-gearman lost all but the
last). Imports ``gear.protocol`` and this package.
"""

from __future__ import annotations

import time
from typing import Any

from gear import constants as c
from gear.compat.gearman.command_handler import GearmanCommandHandler
from gear.compat.gearman.constants import (
    JOB_COMPLETE,
    JOB_CREATED,
    JOB_FAILED,
    JOB_PENDING,
    JOB_UNKNOWN,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_NONE,
)
from gear.compat.gearman.errors import InvalidClientState
from gear.errors import ServerError
from gear.protocol import messages
from gear.protocol.client import ClientSession, Unsolicited
from gear.protocol.packets import request as encode_request

__all__ = ["GearmanClientCommandHandler"]

#: python-gearman's priorities as gear's precedence numbers.
_PRECEDENCE = {PRIORITY_NONE: messages.NORMAL, PRIORITY_LOW: messages.LOW,
               PRIORITY_HIGH: messages.HIGH}


class _Pending:
    """A request in the session's FIFO: ``job`` is the GearmanJobRequest it answers."""

    __slots__ = ("background", "expect", "job")

    def __init__(self, expect: int, job: Any, background: bool = False) -> None:
        self.expect = expect
        self.job = job
        self.background = background


def _status(handle: bytes, known: bool, running: bool, numerator: Any, denominator: Any
            ) -> dict[str, Any]:
    return {"handle": handle, "known": known, "running": running, "numerator": numerator,
            "denominator": denominator, "time_received": time.time()}


class GearmanClientCommandHandler(GearmanCommandHandler):
    """One connection's client state: a ClientSession and what its events do to requests."""

    def __init__(self, connection_manager: Any = None, connection: Any = None) -> None:
        super().__init__(connection_manager, connection)
        self.session = ClientSession(self)

    # -- called by GearmanClient ----------------------------------------------------------------

    def send_job_request(self, current_request: Any) -> None:
        """Queue the SUBMIT_JOB* of ``current_request``; it is JOB_PENDING until JOB_CREATED."""
        self._assert_request_state(current_request, JOB_UNKNOWN)
        job = current_request.job
        try:
            precedence = _PRECEDENCE[current_request.priority]
        except (KeyError, TypeError):
            raise InvalidClientState(f"unknown priority {current_request.priority!r}") from None
        packet = messages.submit_job(
            messages.to_bytes(job.task, "task"),
            messages.check_unique(messages.to_bytes(job.unique, "unique")),
            self.encode_data(job.data),
            background=current_request.background,
            priority=precedence,
        )
        self.session.send(_Pending(c.JOB_CREATED, current_request, current_request.background),
                          packet)
        current_request.state = JOB_PENDING
        self.send_raw(self.session.data_to_send())

    def send_get_status_of_job(self, current_request: Any) -> None:
        """Queue GET_STATUS for the request's handle; the STATUS_RES fills ``status``."""
        handle = current_request.job.handle
        self.session.send(_Pending(c.STATUS_RES, current_request),
                          encode_request(c.GET_STATUS, handle))
        self.send_raw(self.session.data_to_send())

    def receive_data(self, data: bytes) -> None:
        self.session.receive_data(data)
        for event in self.session.events_received():
            if isinstance(event, Unsolicited) and isinstance(event.reply, ServerError):
                self.connection_manager.on_gearman_error(event.reply.code, event.reply.text)

    def on_io_error(self) -> None:
        self.session.connection_lost(ConnectionResetError("connection lost"))

    def _assert_request_state(self, current_request: Any, expected_state: str) -> None:
        if current_request.state != expected_state:
            raise InvalidClientState(
                f"Expected handle ({current_request.job.handle}) to be in state "
                f"{expected_state!r}, got {current_request.state!r}")

    # -- SessionHandler: what the session decided -----------------------------------------------

    def created(self, request: Any, handle: bytes) -> None:
        req = request.job
        req.job.handle = handle
        req.state = JOB_CREATED

    def refused(self, request: Any, error: BaseException) -> None:
        req = request.job
        if request.expect != c.JOB_CREATED:
            return  # a status query on a lost connection: wait_until_* sees JOB_UNKNOWN
        if isinstance(error, ServerError):
            req.state = JOB_FAILED
            self.connection_manager.on_gearman_error(error.code, error.text)
        else:
            req.state = JOB_UNKNOWN

    def replied(self, request: Any, reply: Any) -> None:
        if request.expect == c.STATUS_RES:
            request.job.status = _status(reply.handle, reply.known, reply.running,
                                         reply.numerator, reply.denominator)

    def data(self, job: Any, data: bytes) -> None:
        job.data_updates.append(self.decode_data(data))

    def warning(self, job: Any, data: bytes) -> None:
        job.warning_updates.append(self.decode_data(data))

    def status(self, job: Any, numerator: bytes, denominator: bytes) -> None:
        job.status = _status(job.job.handle, True, True, messages.int_or_zero(numerator),
                             messages.int_or_zero(denominator))

    def complete(self, job: Any, data: bytes) -> None:
        job.result = self.decode_data(data)
        job.state = JOB_COMPLETE

    def fail(self, job: Any) -> None:
        job.state = JOB_FAILED

    def exception(self, job: Any, data: bytes) -> None:
        job.exception = self.decode_data(data)
        job.state = JOB_FAILED

    def status_res(self, job: Any, status: Any, fields: list[bytes]) -> None:
        job.status = _status(status.handle, status.known, status.running, status.numerator,
                             status.denominator)

    def lost(self, job: Any, error: BaseException) -> None:
        job.state = JOB_UNKNOWN
