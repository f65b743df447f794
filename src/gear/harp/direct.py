"""Direct calls to a harpd (or ``gear-harpd --listen``): HarpCaller's synchronous interface.

A Python 3 port of the seed's ``HarpServer``, ``HarpProcedure``, ``HarpStreamIterator`` and
``Result`` (docs/harp.md, "Direct calls: harpd's protocol")::

    server = HarpServer("example.net", user="me", password="secret", ca_file="ca.pem")
    print(server.current_time())                   # a plain result
    for msg in server.logs(10):                    # a streamed result
        if isinstance(msg, Result):
            print("end:", msg.value)

Each call is one TLS connection: the request, the header, then the result or the stream. The
request and reply shapes are :mod:`gear.harp.harpd` (sans-I/O); the connection is
:class:`gear.harp.client.JSONSSLConnection`. Imports only gear.harp's own modules.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

from gear.harp import harpd
from gear.harp.client import JSONSSLConnection, tls_client_context
from gear.harp.harpd import DEFAULT_PORT, Result
from gear.harp.messages import CommunicationError

__all__ = ["HarpProcedure", "HarpServer", "HarpStreamIterator", "Result"]


class HarpServer:
    """A harpd: ``server.NAME(*args)`` or ``(**kwargs)`` calls procedure ``NAME`` on it.

    ``ca_file``: verify the daemon's certificate against it (None: no verification, as the
    seed's client). Beyond the seed: ``timeout`` (seconds to connect and for each read; None
    blocks) and ``ssl_key``/``ssl_cert`` (a client certificate).
    """

    def __init__(self, host: str, user: str, password: str, port: int = DEFAULT_PORT,
                 ca_file: str | None = None, *, timeout: float | None = None,
                 ssl_key: str | None = None, ssl_cert: str | None = None) -> None:
        self._host = host
        self._port = port
        self._user = user
        self._password = password
        self._ca_file = ca_file
        self._timeout = timeout
        self._ssl_key = ssl_key
        self._ssl_cert = ssl_cert
        self._context: ssl.SSLContext | None = None  # made at the first call, then reused

    def __getattr__(self, procedure: str) -> HarpProcedure:
        if procedure.startswith("__"):  # copy, pickle and friends probe these
            raise AttributeError(procedure)
        return HarpProcedure(self, procedure)

    def procedure(self, name: str) -> HarpProcedure:
        """Procedure ``name`` (for names that are not identifiers)."""
        return HarpProcedure(self, name)

    def _connect(self) -> JSONSSLConnection:
        if self._context is None:
            try:
                self._context = tls_client_context(self._ca_file, self._ssl_key,
                                                   self._ssl_cert)
            except (OSError, ssl.SSLError) as exc:
                raise CommunicationError(f"bad TLS files: {exc}") from exc
        return JSONSSLConnection(self._host, self._port, timeout=self._timeout,
                                 context=self._context)

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__} {self._host}:{self._port}>"


class HarpProcedure:
    """A procedure on a :class:`HarpServer`; call it as a normal function."""

    def __init__(self, server: HarpServer, name: str) -> None:
        self._server = server
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the procedure: its result, or a :class:`HarpStreamIterator` for a stream.

        Raises RemoteException (the procedure raised), RemoteError (the daemon refused or
        failed the call: ``auth_error``, ``no_such_procedure``...), CommunicationError (no
        daemon, a broken connection, EOF before the end) and HarpException (positional and
        keyword arguments mixed)."""
        server = self._server
        request = harpd.call_request(server._user, server._password, self._name, args, kwargs)
        conn = server._connect()
        streaming = False
        try:
            conn.send(request)
            streaming = harpd.header_of(conn.receive())
            if streaming:
                return HarpStreamIterator(_read_stream(conn))  # which closes it
            return harpd.end_of(conn.receive())
        finally:
            if not streaming:
                conn.close()

    def __repr__(self) -> str:
        server = self._server
        return (f"<{type(self).__module__}.{type(self).__name__} "
                f"{server._host}:{server._port}.{self._name}()>")


def _read_stream(conn: JSONSSLConnection) -> Iterator[Any]:
    try:
        while True:
            item = harpd.stream_item(conn.receive())
            if isinstance(item, Result):
                conn.close()
                yield item
                return
            yield item
    finally:
        conn.close()


class HarpStreamIterator:
    """A streamed result: iterate for the messages; the last item is a :class:`Result`.

    ``result()`` reads what is left and returns the end value. Beyond the seed: it has
    ``__next__`` (the seed's has only Python 2's ``next``) and ``close()``."""

    def __init__(self, orig_iterator: Iterator[Any]) -> None:
        self.orig = orig_iterator
        self._result: Result | None = None

    def __iter__(self) -> HarpStreamIterator:
        return self

    def __next__(self) -> Any:
        item = next(self.orig)
        if isinstance(item, Result):
            self._result = item
        return item

    next = __next__

    def messages(self) -> list[Any]:
        """The stream's messages left, without the end :class:`Result`."""
        return [item for item in self if not isinstance(item, Result)]

    def result(self) -> Any:
        """The end value, once the rest of the stream has been read (and dropped)."""
        for _item in self:
            pass
        if self._result is None:  # the generator ended without one: it was closed early
            raise CommunicationError("the stream was closed before its end")
        return self._result.value

    def close(self) -> None:
        """Drop the rest of the stream and close the connection."""
        close = getattr(self.orig, "close", None)
        if close is not None:
            close()
