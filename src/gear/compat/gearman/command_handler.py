"""python-gearman 2.0's ``gearman.command_handler``: the per-connection handler base class.

A command handler is the state of one connection on behalf of a client, worker or admin client.
In python-gearman it parsed and dispatched every packet itself; here each subclass wraps the
shared sans-I/O session of :mod:`gear.protocol` (the one copy of reply matching and the grab
cycle) and only translates its decisions into python-gearman's records. This base holds what
they share: the manager, the ``data_encoder`` round trip, and :meth:`send_raw`. Imports this
package's connection and ``gear.protocol.messages``.
"""

from __future__ import annotations

from typing import Any

from gear.compat.gearman.connection import GearmanConnection
from gear.protocol.messages import to_bytes

__all__ = ["GearmanCommandHandler"]


class GearmanCommandHandler:
    """One connection's state (subclasses); ``connection_manager`` owns the connection."""

    def __init__(self, connection_manager: Any = None,
                 connection: GearmanConnection | None = None) -> None:
        self.connection_manager = connection_manager
        self.connection = connection

    def initial_state(self, *largs: Any, **kwargs: Any) -> None:
        """Called once the connection is up, before any command is sent."""

    def on_io_error(self) -> None:
        """The connection broke."""

    def decode_data(self, data: bytes) -> Any:
        """Received data through the manager's ``data_encoder``."""
        return self.connection_manager.data_encoder.decode(data)

    def encode_data(self, data: Any) -> bytes:
        """Data to send through the manager's ``data_encoder``; text comes out UTF-8."""
        return to_bytes(self.connection_manager.data_encoder.encode(data), "data")

    def send_raw(self, data: bytes) -> None:
        """Queue encoded packets on this handler's connection."""
        assert self.connection is not None
        self.connection.send(data)

    def data_to_send(self) -> bytes:
        """What the session wants sent on its own (registration, PRE_SLEEP); b"" by default."""
        return b""

    def receive_data(self, data: bytes) -> None:
        """Bytes from the server (subclasses feed their session)."""
        raise NotImplementedError
