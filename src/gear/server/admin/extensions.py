"""Extra admin commands registered by other parts of the server (an extension hook).

Owns :class:`AdminExtensions`: the admin line handler the engine gives the broker
(``Broker(..., admin=extensions)``). A line whose first word (case-insensitive) was registered
with :meth:`AdminExtensions.register` goes to that command, whole and before gearmand's 5-token
rule (an extension's arguments may hold spaces, as a JSON queue name does); every other line
goes to :func:`~gear.server.admin.commands.run_command`. This keeps the admin package free of
the parts that extend it: the engine registers, e.g., the harp side's ``harp`` command
(docs/harp.md, "Admin commands"), and admin never imports them. Registered words take
precedence over gearmand's commands, so an extension must not reuse one of their names.

An extension is ``command(broker, peer, line) -> bytes``: the reply, written to ``peer`` as
it is (``.``-terminated listings and ``OK``/``ERR`` lines, as gearmand's commands answer).
Must not import sockets, asyncio, threads or the network layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gear.server.admin.commands import run_command

__all__ = ["AdminCommand", "AdminExtensions"]

#: An extension command: the whole line (no line ending) in, the reply bytes out.
AdminCommand = Callable[[Any, Any, bytes], bytes]


class AdminExtensions:
    """gearmand's admin commands plus the commands registered here."""

    def __init__(self) -> None:
        self.commands: dict[bytes, AdminCommand] = {}

    def register(self, word: bytes, command: AdminCommand) -> None:
        """Serve admin lines starting with ``word`` with ``command``."""
        self.commands[word.lower()] = command

    def __call__(self, broker: Any, peer: Any, line: bytes) -> None:
        command = self.commands.get(line.split(b" ", 1)[0].lower()) if self.commands else None
        if command is None:
            run_command(broker, peer, line)
        else:
            broker.write(peer, command(broker, peer, line))
