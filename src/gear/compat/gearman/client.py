"""python-gearman 2.0's ``gearman.client``: :class:`GearmanClient`.

The same methods, arguments, defaults and return values as python-gearman 2.0.2
(``submit_job``, ``submit_multiple_jobs``, ``submit_multiple_requests``,
``wait_until_jobs_accepted``, ``wait_until_jobs_completed``, ``get_job_status``,
``get_job_statuses``, ``wait_until_job_statuses_received``) and its hooks (``data_encoder``,
``job_class``, ``job_request_class``, ``establish_request_connection``, ``send_job_request``,
``on_gearman_error``). Each request picks a server from a per-request shuffled rotation and
moves on past servers that do not answer; a request whose connection breaks before it is
accepted is sent again, up to ``max_retries`` times, then
:class:`~gear.compat.gearman.errors.ExceededConnectionAttempts`. ``poll_timeout`` is a real
deadline: requests still waiting then have ``timed_out`` set.

Python 3 (docs/migrating.md): ``task``, ``unique`` and ``data`` may be str (sent UTF-8) or
bytes; ``result``, ``data_updates``, ``warning_updates`` and ``job.handle`` are bytes (after the
``data_encoder``'s ``decode``); a generated unique is a hex str, as python-gearman's was.
Replies are read by :class:`~gear.compat.gearman.client_handler.GearmanClientCommandHandler`
over the shared session. Imports ``gear.protocol`` (through the handler) and this package.
"""

from __future__ import annotations

import collections
import os
import random
import weakref
from collections.abc import Sequence
from typing import Any

from gear.compat.gearman import util
from gear.compat.gearman.client_handler import GearmanClientCommandHandler
from gear.compat.gearman.connection_manager import GearmanConnectionManager
from gear.compat.gearman.constants import JOB_FAILED, JOB_PENDING, JOB_UNKNOWN, PRIORITY_NONE
from gear.compat.gearman.errors import (
    ConnectionError,
    ExceededConnectionAttempts,
    ServerUnavailable,
)

__all__ = ["RANDOM_UNIQUE_BYTES", "GearmanClient"]

#: States no reply will change any more on this connection: lost, or refused by the server.
_SETTLED = (JOB_UNKNOWN, JOB_FAILED)

#: Random bytes in a generated unique (python-gearman's default; hex-encoded, so 32 characters).
RANDOM_UNIQUE_BYTES = 16


def _check_many(items: Any, what: str) -> None:
    assert type(items) in (list, tuple, set), f"Expected multiple {what}, received 1?"


class GearmanClient(GearmanConnectionManager):
    """Submits jobs to Gearman servers and waits for their results (python-gearman's API)."""

    command_handler_class = GearmanClientCommandHandler

    def __init__(self, host_list: Sequence[Any] | None = None,
                 random_unique_bytes: int = RANDOM_UNIQUE_BYTES) -> None:
        super().__init__(host_list=host_list)
        self.random_unique_bytes = random_unique_bytes
        #: request -> the servers to try, in this request's rotation.
        self.request_to_rotating_connection_queue: weakref.WeakKeyDictionary[Any, Any] = (
            weakref.WeakKeyDictionary())

    # -- submitting -----------------------------------------------------------------------------

    def submit_job(self, task: Any, data: Any, unique: Any = None, priority: Any = PRIORITY_NONE,
                   background: bool = False, wait_until_complete: bool = True,
                   max_retries: int = 0, poll_timeout: float | None = None) -> Any:
        """Submit one job; returns its GearmanJobRequest (check ``complete``/``timed_out``)."""
        job_info = dict(task=task, data=data, unique=unique, priority=priority)
        requests = self.submit_multiple_jobs([job_info], background=background,
                                             wait_until_complete=wait_until_complete,
                                             max_retries=max_retries, poll_timeout=poll_timeout)
        return util.unlist(requests)

    def submit_multiple_jobs(self, jobs_to_submit: Any, background: bool = False,
                             wait_until_complete: bool = True, max_retries: int = 0,
                             poll_timeout: float | None = None) -> Any:
        """Submit dicts of ``task``, ``data``, ``unique``, ``priority``; returns the requests."""
        _check_many(jobs_to_submit, "jobs")
        requests = [self._create_request_from_dictionary(info, background=background,
                                                         max_retries=max_retries)
                    for info in jobs_to_submit]
        return self.submit_multiple_requests(requests, wait_until_complete=wait_until_complete,
                                             poll_timeout=poll_timeout)

    def submit_multiple_requests(self, job_requests: Any, wait_until_complete: bool = True,
                                 poll_timeout: float | None = None) -> Any:
        """Send requests, wait until accepted and (optionally) complete, within ``poll_timeout``."""
        _check_many(job_requests, "job requests")
        stopwatch = util.Stopwatch(poll_timeout)
        processed = self.wait_until_jobs_accepted(job_requests,
                                                  poll_timeout=stopwatch.get_time_remaining())
        remaining = stopwatch.get_time_remaining()
        if wait_until_complete and remaining != 0.0:
            processed = self.wait_until_jobs_completed(processed, poll_timeout=remaining)
        return processed

    def wait_until_jobs_accepted(self, job_requests: Any, poll_timeout: float | None = None
                                 ) -> Any:
        """Poll until no request is JOB_PENDING; requests in JOB_UNKNOWN are (re)sent first."""
        _check_many(job_requests, "job requests")

        def continue_while_jobs_pending(any_activity: bool) -> bool:
            for current_request in job_requests:
                if current_request.state == JOB_UNKNOWN:
                    self.send_job_request(current_request)
            return any(r.state == JOB_PENDING for r in job_requests)

        self.poll_connections_until_stopped(self.connection_list, continue_while_jobs_pending,
                                            timeout=poll_timeout)
        for current_request in job_requests:
            current_request.timed_out = current_request.state == JOB_PENDING
        return job_requests

    def wait_until_jobs_completed(self, job_requests: Any, poll_timeout: float | None = None
                                  ) -> Any:
        """Poll until every request completed or failed (or lost its connection)."""
        _check_many(job_requests, "job requests")

        def continue_while_jobs_incomplete(any_activity: bool) -> bool:
            return any(not r.complete and r.state not in _SETTLED for r in job_requests)

        self.poll_connections_until_stopped(self.connection_list, continue_while_jobs_incomplete,
                                            timeout=poll_timeout)
        for current_request in job_requests:
            # A background request the server refused (JOB_FAILED) is settled, not late.
            current_request.timed_out = not (current_request.complete
                                             or current_request.state == JOB_FAILED)
            if not current_request.timed_out:
                self.request_to_rotating_connection_queue.pop(current_request, None)
        return job_requests

    # -- status ---------------------------------------------------------------------------------

    def get_job_status(self, current_request: Any, poll_timeout: float | None = None) -> Any:
        """Ask the server for one request's status; fills ``request.status``."""
        return util.unlist(self.get_job_statuses([current_request], poll_timeout=poll_timeout))

    def get_job_statuses(self, job_requests: Any, poll_timeout: float | None = None) -> Any:
        """Send GET_STATUS for each request (on its own connection) and wait for the replies."""
        _check_many(job_requests, "job requests")
        for current_request in job_requests:
            current_request.status["last_time_received"] = current_request.status.get(
                "time_received")
            handler = self.connection_to_handler_map[current_request.job.connection]
            handler.send_get_status_of_job(current_request)
        return self.wait_until_job_statuses_received(job_requests, poll_timeout=poll_timeout)

    def wait_until_job_statuses_received(self, job_requests: Any,
                                         poll_timeout: float | None = None) -> Any:
        """Poll until every request's status was updated since :meth:`get_job_statuses`."""
        _check_many(job_requests, "job requests")

        def not_updated(r: Any) -> bool:
            return bool(r.status.get("time_received") == r.status.get("last_time_received"))

        def continue_while_status_not_updated(any_activity: bool) -> bool:
            return any(not_updated(r) and r.state != JOB_UNKNOWN for r in job_requests)

        self.poll_connections_until_stopped(self.connection_list,
                                            continue_while_status_not_updated,
                                            timeout=poll_timeout)
        for current_request in job_requests:
            current_request.status = current_request.status or {}
            current_request.timed_out = not_updated(current_request)
        return job_requests

    # -- hooks ----------------------------------------------------------------------------------

    def _create_request_from_dictionary(self, job_info: dict[str, Any], background: bool = False,
                                        max_retries: int = 0) -> Any:
        unique = job_info.get("unique")
        if not unique:
            unique = os.urandom(self.random_unique_bytes).hex()
        job = self.job_class(connection=None, handle=None, task=job_info["task"], unique=unique,
                             data=job_info["data"])
        return self.job_request_class(job, initial_priority=job_info.get("priority",
                                                                         PRIORITY_NONE),
                                      background=background, max_attempts=max_retries + 1)

    def establish_request_connection(self, current_request: Any) -> Any:
        """A live connection for the request: the next server of its rotation that connects."""
        rotating = self.request_to_rotating_connection_queue.get(current_request)
        if not rotating:
            shuffled = list(self.connection_list)
            random.shuffle(shuffled)
            rotating = collections.deque(shuffled)
            self.request_to_rotating_connection_queue[current_request] = rotating
        failed = 0
        chosen = None
        for possible in rotating:
            try:
                chosen = self.establish_connection(possible)
                break
            except ConnectionError:
                failed += 1
        if chosen is None:
            raise ServerUnavailable(f"Found no valid connections: {self.connection_list!r}")
        rotating.rotate(-failed)
        return chosen

    def send_job_request(self, current_request: Any) -> Any:
        """Send one request on a connection of its rotation (counts a connection attempt)."""
        if current_request.connection_attempts >= current_request.max_connection_attempts:
            raise ExceededConnectionAttempts(
                f"Exceeded {current_request.max_connection_attempts} connection attempt(s) :: "
                f"{current_request!r}")
        chosen = self.establish_request_connection(current_request)
        current_request.job.connection = chosen
        current_request.connection_attempts += 1
        current_request.timed_out = False
        self.connection_to_handler_map[chosen].send_job_request(current_request)
        return current_request
