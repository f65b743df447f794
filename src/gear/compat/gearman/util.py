"""python-gearman 2.0's ``gearman.util``: the poll deadline, ``host:port`` parsing, ``unlist``.

Imports only this package's constants.
"""

from __future__ import annotations

import time
from typing import Any

from gear.compat.gearman.constants import DEFAULT_GEARMAN_PORT

__all__ = ["Stopwatch", "disambiguate_server_parameter", "unlist"]


class Stopwatch:
    """Time left until a deadline ``time_remaining`` seconds from now (None: no deadline)."""

    def __init__(self, time_remaining: float | None) -> None:
        self.stop_time = None if time_remaining is None else time.monotonic() + time_remaining

    def get_time_remaining(self) -> float | None:
        """Seconds left (0.0 once the deadline passed), or None without a deadline."""
        if self.stop_time is None:
            return None
        left = self.stop_time - time.monotonic()
        return left if left > 0 else 0.0

    def has_time_remaining(self) -> bool:
        left = self.get_time_remaining()
        return left is None or left > 0


def disambiguate_server_parameter(hostport: Any) -> tuple[str, int]:
    """``(host, port)`` from a tuple, ``'host:port'`` or a bare ``'host'`` (port 4730)."""
    if isinstance(hostport, tuple):
        host, port = hostport
        return host, int(port)
    if ":" in hostport:
        host, _, port = hostport.rpartition(":")
        return host.strip("[]"), int(port)
    return hostport, DEFAULT_GEARMAN_PORT


def unlist(given_list: Any) -> Any:
    """The single item of a list (None when empty); ValueError for more than one."""
    size = len(given_list)
    if size == 0:
        return None
    if size == 1:
        return given_list[0]
    raise ValueError(size)
