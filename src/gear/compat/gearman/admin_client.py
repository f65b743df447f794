"""python-gearman 2.0's ``gearman.admin_client``: :class:`GearmanAdminClient`.

python-gearman's blocking admin calls and their reply shapes: ``ping_server()`` (seconds, an
ECHO round trip), ``get_status()`` (a tuple of ``{'task', 'queued', 'running', 'workers'}``),
``get_workers()`` (a tuple of ``{'file_descriptor', 'ip', 'client_id', 'tasks'}``),
``get_version()``, ``send_maxqueue(task, max_size)`` (``'OK'``), ``send_shutdown(graceful=True)``
(None), and its master branch's ``get_pid()``, ``cancel_job(handle)``, ``get_jobs()`` (a tuple
of ``{'handle', 'queued', 'canceled', 'enabled'}``) and ``get_unique_jobs()`` (a tuple of
``{'unique'}``). Each waits at most ``poll_timeout`` (10 s by default), then raises
:class:`~gear.compat.gearman.errors.InvalidAdminClientState`; an unreachable server is
:class:`~gear.compat.gearman.errors.ServerUnavailable`.

Replies are str (decoded UTF-8); the lines are framed and parsed by
:mod:`gear.protocol.admin`. Not python-gearman's bugs (docs/migrating.md): gearmand's
``OK\\r\\n`` maxqueue reply is ``'OK'``, not a ProtocolError; ``unique`` is the unique itself,
not a one-item list. Imports ``gear.protocol`` and this package.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from gear import constants as c
from gear.compat.gearman import util
from gear.compat.gearman.command_handler import GearmanCommandHandler
from gear.compat.gearman.connection_manager import GearmanConnectionManager
from gear.compat.gearman.errors import (
    ConnectionError,
    InvalidAdminClientState,
    ProtocolError,
    ServerUnavailable,
)
from gear.compat.gearman.protocol import (
    GEARMAN_COMMAND_ECHO_REQ,
    GEARMAN_SERVER_COMMAND_CANCEL_JOB,
    GEARMAN_SERVER_COMMAND_GETPID,
    GEARMAN_SERVER_COMMAND_MAXQUEUE,
    GEARMAN_SERVER_COMMAND_SHOW_JOBS,
    GEARMAN_SERVER_COMMAND_SHOW_UNIQUE_JOBS,
    GEARMAN_SERVER_COMMAND_SHUTDOWN,
    GEARMAN_SERVER_COMMAND_STATUS,
    GEARMAN_SERVER_COMMAND_VERSION,
    GEARMAN_SERVER_COMMAND_WORKERS,
)
from gear.protocol import admin
from gear.protocol.packets import AdminLine, Decoder, request

__all__ = ["DEFAULT_ADMIN_CLIENT_TIMEOUT", "ECHO_STRING", "GearmanAdminClient",
           "GearmanAdminClientCommandHandler"]

ECHO_STRING = "ping? pong!"
DEFAULT_ADMIN_CLIENT_TIMEOUT = 10.0


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


class GearmanAdminClientCommandHandler(GearmanCommandHandler):
    """One admin connection: commands sent, in order, and their collected replies."""

    def __init__(self, connection_manager: Any = None, connection: Any = None) -> None:
        super().__init__(connection_manager, connection)
        self._decoder = Decoder(text=True)
        #: (command word, the reply being collected or None for an ECHO) per command sent.
        self._sent_commands: deque[tuple[Any, admin.AdminReply | None]] = deque()
        self._recv_responses: deque[tuple[Any, Any]] = deque()

    @property
    def response_ready(self) -> bool:
        return bool(self._recv_responses)

    def pop_response(self) -> tuple[Any, Any]:
        if not self._recv_responses:
            raise InvalidAdminClientState("Attempted to pop a response for a command that is "
                                          "not ready")
        return self._recv_responses.popleft()

    def send_text_command(self, command: str, *args: Any) -> None:
        line = admin.admin_command(command, *(str(a) if isinstance(a, int) else a
                                              for a in args))
        self._sent_commands.append((command, admin.AdminReply(line)))
        self.send_raw(line)

    def send_echo_request(self, echo_string: Any) -> None:
        data = echo_string.encode() if isinstance(echo_string, str) else echo_string
        self._sent_commands.append((GEARMAN_COMMAND_ECHO_REQ, None))
        self.send_raw(request(c.ECHO_REQ, data))

    def receive_data(self, data: bytes) -> None:
        for item in self._decoder.feed(data):
            if not self._sent_commands:
                raise InvalidAdminClientState("Received an unexpected server response")
            command, reply = self._sent_commands[0]
            if isinstance(item, AdminLine):
                if reply is None:
                    raise ProtocolError(f"expected ECHO_RES, got {item.line[:80]!r}")
                if reply.add(item.line):
                    self._sent_commands.popleft()
                    self._recv_responses.append((command, reply))
            elif item.ptype == c.ECHO_RES and reply is None:
                self._sent_commands.popleft()
                self._recv_responses.append((command, item.body))
            else:
                raise ProtocolError(f"unexpected packet type {item.ptype}")


class GearmanAdminClient(GearmanConnectionManager):
    """Blocking admin commands against the one server of ``host_list`` (python-gearman's API)."""

    command_handler_class = GearmanAdminClientCommandHandler

    def __init__(self, host_list: Sequence[Any] | None = None,
                 poll_timeout: float = DEFAULT_ADMIN_CLIENT_TIMEOUT) -> None:
        super().__init__(host_list=host_list)
        self.poll_timeout = poll_timeout
        self.current_connection = util.unlist(self.connection_list)
        self.current_handler: Any = None

    def establish_admin_connection(self) -> None:
        try:
            self.establish_connection(self.current_connection)
        except (ConnectionError, AssertionError):
            raise ServerUnavailable(
                f"Found no valid connections in list: {self.connection_list!r}") from None
        self.current_handler = self.connection_to_handler_map[self.current_connection]

    def _command(self, command: str, *args: Any) -> admin.AdminReply:
        self.establish_admin_connection()
        self.current_handler.send_text_command(command, *args)
        reply = self.wait_until_server_responds(command)
        assert isinstance(reply, admin.AdminReply)
        return reply

    def _lines(self, command: str) -> list[bytes]:
        reply = self._command(command)
        if reply.failure is not None:
            raise ProtocolError(f"{command}: the server said {_text(reply.lines[0])!r}")
        return reply.lines

    def wait_until_server_responds(self, expected_type: Any) -> Any:
        handler = self.current_handler
        self.poll_connections_until_stopped([self.current_connection],
                                            lambda _: not handler.response_ready,
                                            timeout=self.poll_timeout)
        if not handler.response_ready:
            raise InvalidAdminClientState(
                f"Admin client timed out after {self.poll_timeout:f} second(s)")
        cmd_type, cmd_resp = handler.pop_response()
        if cmd_type != expected_type:
            raise InvalidAdminClientState(f"Received an unexpected response... got command "
                                          f"{cmd_type!r}, expecting command {expected_type!r}")
        return cmd_resp

    # -- the commands ---------------------------------------------------------------------------

    def ping_server(self) -> float:
        """An ECHO round trip; returns the seconds it took."""
        start = time.monotonic()
        self.establish_admin_connection()
        self.current_handler.send_echo_request(ECHO_STRING)
        response = self.wait_until_server_responds(GEARMAN_COMMAND_ECHO_REQ)
        if response != ECHO_STRING.encode():
            raise InvalidAdminClientState(
                f"Echo string mismatch: got {response!r}, expected {ECHO_STRING}")
        return time.monotonic() - start

    def send_maxqueue(self, task: Any, max_size: int) -> str:
        """Set the queue limit of ``task``; returns ``'OK'`` (ProtocolError otherwise)."""
        reply = self._command(GEARMAN_SERVER_COMMAND_MAXQUEUE, task, max_size)
        line = _text(reply.lines[0]) if reply.lines else ""
        if line != "OK":
            raise ProtocolError(f"Expected 'OK', received: {line}")
        return line

    def send_shutdown(self, graceful: bool = True) -> None:
        """Ask the server to shut down (``graceful``: after its running jobs)."""
        args = ("graceful",) if graceful else ()
        self._command(GEARMAN_SERVER_COMMAND_SHUTDOWN, *args)

    def get_status(self) -> tuple[dict[str, Any], ...]:
        """Per function: ``task``, ``queued`` (gearmand's total, running included), ``running``,
        ``workers``."""
        return tuple({"task": _text(s.name), "queued": s.total, "running": s.running,
                      "workers": s.workers}
                     for s in admin.parse_status(self._lines(GEARMAN_SERVER_COMMAND_STATUS)))

    def get_version(self) -> str:
        """The server's version line, e.g. ``'OK 1.1.20'`` (as sent)."""
        return _text(self._command(GEARMAN_SERVER_COMMAND_VERSION).lines[0])

    def get_workers(self) -> tuple[dict[str, Any], ...]:
        """Per connection: ``file_descriptor``, ``ip``, ``client_id``, ``tasks`` (str)."""
        return tuple({"file_descriptor": str(w.fd), "ip": _text(w.address),
                      "client_id": _text(w.client_id),
                      "tasks": tuple(_text(t) for t in w.functions)}
                     for w in admin.parse_workers(self._lines(GEARMAN_SERVER_COMMAND_WORKERS)))

    def get_pid(self) -> str:
        """The server's ``getpid`` reply line, as sent."""
        return _text(self._command(GEARMAN_SERVER_COMMAND_GETPID).lines[0])

    def cancel_job(self, handle: Any) -> str:
        """``cancel job <handle>``: the reply line as sent (``OK`` or ``ERR ...``)."""
        return _text(self._command(GEARMAN_SERVER_COMMAND_CANCEL_JOB, handle).lines[0])

    def get_jobs(self) -> tuple[dict[str, Any], ...]:
        """``show jobs``: ``handle`` and gearmand's three counters as python-gearman names them."""
        out = []
        for line in self._lines(GEARMAN_SERVER_COMMAND_SHOW_JOBS):
            fields = line.split(b"\t")
            if len(fields) != 4:
                raise ProtocolError(f"Received {len(fields)} tokens, expected 4: {line!r}")
            handle, queued, canceled, enabled = fields
            out.append({"handle": _text(handle), "queued": int(queued),
                        "canceled": int(canceled), "enabled": int(enabled)})
        return tuple(out)

    def get_unique_jobs(self) -> tuple[dict[str, Any], ...]:
        """``show unique jobs``: one ``{'unique': str}`` per job."""
        lines = admin.parse_show_unique_jobs(self._lines(GEARMAN_SERVER_COMMAND_SHOW_UNIQUE_JOBS))
        return tuple({"unique": _text(u)} for u in lines)

    #: The admin commands' own names for :meth:`get_jobs` and :meth:`get_unique_jobs`.
    show_jobs = get_jobs
    show_unique_jobs = get_unique_jobs
