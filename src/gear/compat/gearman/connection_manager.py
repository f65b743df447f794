"""python-gearman 2.0's ``gearman.connection_manager``: data encoders and the poll loop.

Owns :class:`DataEncoder` / :class:`NoopEncoder` (the ``data_encoder`` hook: every data field
sent goes through ``encode``, every one received through ``decode``) and
:class:`GearmanConnectionManager`, the base of the client, worker and admin client: the host
list (``'host:port'``, ``(host, port)`` or python-gearman's SSL dict), connecting, and
:meth:`~GearmanConnectionManager.poll_connections_until_stopped`, python-gearman's one
``select()`` loop: write what is queued, read what arrived, hand it to the connection's command
handler, drop broken connections, call the caller's ``callback(any_activity)`` after every round
and stop when it returns False or ``timeout`` seconds have passed. With no live connection left
it raises :class:`~gear.compat.gearman.errors.ServerUnavailable`, as python-gearman does.

Python 3 (docs/migrating.md): :class:`NoopEncoder` sends bytes as they are and text as UTF-8,
and gives received data back as bytes. Imports ``gear.protocol`` and this package; no threads.
"""

from __future__ import annotations

import logging
import select
from collections.abc import Callable, Iterable
from typing import Any

from gear.compat.gearman import util
from gear.compat.gearman.connection import GearmanConnection
from gear.compat.gearman.errors import ConnectionError, GearmanError, ServerUnavailable
from gear.compat.gearman.job import GearmanJob, GearmanJobRequest
from gear.errors import InvalidDataError

__all__ = ["DataEncoder", "GearmanConnectionManager", "NoopEncoder"]

log = logging.getLogger("gear.compat.gearman")


class DataEncoder:
    """Subclass with ``encode(obj) -> bytes`` and ``decode(bytes) -> obj`` classmethods."""

    @classmethod
    def encode(cls, encodable_object: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def decode(cls, decodable_string: Any) -> Any:
        raise NotImplementedError


class NoopEncoder(DataEncoder):
    """The default: bytes (or text, sent UTF-8) out, bytes in; anything else is TypeError."""

    @classmethod
    def _enforce_byte_string(cls, given_object: Any) -> None:
        if not isinstance(given_object, (bytes, bytearray, memoryview, str)):
            raise TypeError(f"Expecting byte string, got {type(given_object)!r}")

    @classmethod
    def encode(cls, encodable_object: Any) -> Any:
        cls._enforce_byte_string(encodable_object)
        return encodable_object

    @classmethod
    def decode(cls, decodable_string: Any) -> Any:
        cls._enforce_byte_string(decodable_string)
        return decodable_string


class GearmanConnectionManager:
    """The connections of one client, worker or admin client, and the loop that polls them."""

    command_handler_class: Any = None
    connection_class: Any = GearmanConnection
    job_class: Any = GearmanJob
    job_request_class: Any = GearmanJobRequest
    data_encoder: Any = NoopEncoder

    def __init__(self, host_list: Iterable[Any] | None = None) -> None:
        assert self.command_handler_class is not None, "no command handler class"
        self.connection_list: list[GearmanConnection] = []
        for element in host_list or []:
            if isinstance(element, (str, tuple)):
                self.add_connection(element)
            elif isinstance(element, dict):
                if not all(k in element for k in ("host", "port", "keyfile", "certfile",
                                                  "ca_certs")):
                    raise GearmanError("Incomplete SSL connection definition")
                self.add_ssl_connection(element["host"], element["port"], element["keyfile"],
                                        element["certfile"], element["ca_certs"])
            else:
                raise GearmanError(f"Expected str, tuple or dict; got {element!r}")
        self.handler_to_connection_map: dict[Any, GearmanConnection] = {}
        self.connection_to_handler_map: dict[GearmanConnection, Any] = {}
        self.handler_initial_state: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} connection_list={self.connection_list!r}>"

    def shutdown(self) -> None:
        """Close every connection."""
        for connection in self.connection_list:
            self.connection_to_handler_map.pop(connection, None)
            connection.close()
        self.handler_to_connection_map.clear()

    # -- connections ----------------------------------------------------------------------------

    def add_ssl_connection(self, host: str, port: int, keyfile: str | None,
                           certfile: str | None, ca_certs: str | None) -> GearmanConnection:
        connection = self.connection_class(host=host, port=port, keyfile=keyfile,
                                           certfile=certfile, ca_certs=ca_certs)
        self.connection_list.append(connection)
        return connection

    def add_connection(self, hostport_tuple: Any) -> GearmanConnection:
        host, port = util.disambiguate_server_parameter(hostport_tuple)
        connection = self.connection_class(host=host, port=port)
        self.connection_list.append(connection)
        return connection

    def establish_connection(self, current_connection: GearmanConnection) -> GearmanConnection:
        """Connect if needed, with a fresh command handler; raises ConnectionError."""
        assert current_connection in self.connection_list, f"Unknown {current_connection!r}"
        if current_connection.connected:
            return current_connection
        current_connection.connect()
        handler = self.command_handler_class(connection_manager=self,
                                             connection=current_connection)
        self.handler_to_connection_map[handler] = current_connection
        self.connection_to_handler_map[current_connection] = handler
        handler.initial_state(**self.handler_initial_state)
        return current_connection

    # -- the poll loop --------------------------------------------------------------------------

    def poll_connections_until_stopped(self, submitted_connections: Iterable[GearmanConnection],
                                       callback_fxn: Callable[[bool], bool],
                                       timeout: float | None = None) -> bool:
        """Poll until ``callback_fxn(any_activity)`` is False or ``timeout`` seconds passed.

        Returns True when it stopped on the timeout (the callback still wanted more), False when
        the callback stopped it; ServerUnavailable when no connection is left alive.
        """
        stopwatch = util.Stopwatch(timeout)
        connections = set(submitted_connections)
        callback_ok = callback_fxn(False)
        connection_ok = any(c.connected for c in connections)
        while connection_ok and callback_ok:
            remaining = stopwatch.get_time_remaining()
            if remaining == 0.0:
                break
            dead = self.poll_connections_once(connections, remaining)
            any_activity = dead is not None
            if dead:
                connections -= dead
            callback_ok = callback_fxn(any_activity)
            connection_ok = any(c.connected for c in connections)
        if not connection_ok:
            raise ServerUnavailable(f"Found no valid connections in list: {self.connection_list!r}")
        return bool(connection_ok and callback_ok)

    def poll_connections_once(self, connections: Iterable[GearmanConnection],
                              timeout: float | None) -> set[GearmanConnection] | None:
        """One round: write, wait up to ``timeout`` for input, read and handle it.

        Returns the connections that died (a set, maybe empty) or None when nothing happened.
        """
        dead: set[GearmanConnection] = set()
        live = []
        for connection in connections:
            if not connection.connected:
                continue
            try:
                self.handle_write(connection)
            except ConnectionError:
                dead.add(connection)
                continue
            live.append(connection)
        if dead:
            for connection in dead:
                self.handle_error(connection)
            return dead
        if not live:
            return dead
        writers = [c for c in live if c.writable()]
        try:
            readable, writable, _ = select.select(live, writers, [], timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries; a signal handler raised
            return None
        if not readable and not writable:
            return None
        for connection in readable:
            if not connection.connected:
                continue
            try:
                self.handle_read(connection)
            except (ConnectionError, InvalidDataError) as exc:
                log.debug("dropping %r: %s", connection, exc)
                dead.add(connection)
        for connection in dead:
            self.handle_error(connection)
        return dead

    def handle_read(self, current_connection: GearmanConnection) -> None:
        """Feed what arrived to the connection's command handler."""
        data = current_connection.recv()
        if data:
            handler = self.connection_to_handler_map[current_connection]
            handler.receive_data(data)

    def handle_write(self, current_connection: GearmanConnection) -> None:
        """Queue what the handler's session wants sent, and write what the socket takes."""
        handler = self.connection_to_handler_map.get(current_connection)
        if handler is not None:
            data = handler.data_to_send()
            if data:
                current_connection.send(data)
        current_connection.flush()

    def handle_error(self, current_connection: GearmanConnection) -> None:
        """Drop a broken connection: its handler hears ``on_io_error`` first."""
        handler = self.connection_to_handler_map.pop(current_connection, None)
        if handler is not None:
            handler.on_io_error()
            self.handler_to_connection_map.pop(handler, None)
        current_connection.close()

    def wait_until_sent(self, connections: Iterable[GearmanConnection],
                        poll_timeout: float | None = None) -> None:
        """Poll until nothing is queued on ``connections`` (worker updates go out at once)."""
        pending = set(connections)
        for connection in pending:
            if connection.connected:
                try:
                    self.handle_write(connection)
                except ConnectionError:
                    self.handle_error(connection)  # the caller's next poll reports it
        if any(c.connected and c.writable() for c in pending):
            self.poll_connections_until_stopped(
                pending, lambda _: any(c.connected and c.writable() for c in pending),
                timeout=poll_timeout)

    # -- hooks for command handlers -------------------------------------------------------------

    def on_gearman_error(self, error_code: Any, error_text: Any) -> bool:
        """An ERROR packet from the server (subclass to act on it); logged by default."""
        log.error("Received error from server: %s: %s", error_code, error_text)
        return False
