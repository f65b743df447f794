"""What pygear's Client and Worker share: the server list, options, the log function, errors.

``add_server(host, port)`` / ``add_servers(['HOST[:PORT]', ...])`` (resolved when added, see
gear.compat.pygear.connection), ``set_options(**flags)`` / ``get_options()`` with pygear's rule
(each flag given true is set, every other one cleared), ``set_log_fn(fn, verbose)`` (``fn(line)``
is called with each error met) and libgearman's ``error()`` / ``errno()`` of the last error.

Imports only the pygear front's own modules.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from gear.compat.pygear.connection import Address, parse_server, resolve


class Endpoint:
    """Base of Client and Worker (module docstring)."""

    #: The names ``set_options`` takes.
    OPTION_NAMES: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._addresses: list[Address] = []
        self._options = dict.fromkeys(self.OPTION_NAMES, False)
        self._log: tuple[Callable[[str], Any], int] | None = None
        self._last_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<pygear.{type(self).__name__} servers={[str(a) for a in self._addresses]}>"

    def __del__(self) -> None:
        for conn in getattr(self, "_conns", ()):
            conn.link.close()

    def add_server(self, host: str | None, port: int) -> None:
        self._add(resolve(host, port))

    def add_servers(self, servers_list: list[str]) -> None:
        if not isinstance(servers_list, list):
            raise TypeError(f"{type(self).__name__}.add_servers expected list, "
                            f"got {type(servers_list).__name__}")
        for entry in servers_list:
            self._add(parse_server(entry))

    def _add(self, address: Address) -> None:
        self._addresses.append(address)

    def set_log_fn(self, function: Callable[[str], Any], verbose: int) -> None:
        self._log = (function, int(verbose))

    def _note(self, exc: BaseException) -> None:
        """Remember ``exc`` as the last error and pass it to the log function."""
        self._last_error = exc
        if self._log is not None:
            try:
                self._log[0](str(exc))
            except Exception:
                traceback.print_exc()

    def set_options(self, **options: object) -> None:
        unknown = set(options) - set(self.OPTION_NAMES)
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        self._options = {name: bool(options.get(name, False)) for name in self.OPTION_NAMES}

    def get_options(self) -> dict[str, bool]:
        return dict(self._options)

    def error(self) -> str | None:
        return str(self._last_error) if self._last_error is not None else None

    def errno(self) -> int:
        exc = self._last_error
        cause = getattr(exc, "__cause__", None) or getattr(exc, "__context__", None)
        return getattr(cause, "errno", 0) or 0
