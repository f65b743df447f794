"""The direct-call listener of ``gear-harpd``: harpd's protocol over TLS, one call a connection.

Owns :class:`DirectListener`: a threaded TCP server that, for each connection, does the TLS
handshake, reads one request line (:func:`gear.harp.harpd.parse_request`), checks the user and
password, finds the procedure and runs it with :func:`gear.harp.messages.run_procedure` (the
worker helpers' convention: a generator streams, an exception is the exception reply), writing
harpd's reply lines (docs/harp.md, "Direct calls: harpd's protocol"). A client that goes away
mid-stream cancels its call (the generator is closed).

Imports gear.harp's sans-I/O modules and gear.net only.
"""

from __future__ import annotations

import hmac
import inspect
import json
import logging
import socket
import socketserver
import ssl
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from gear.harp import harpd
from gear.harp.harpd import RequestError
from gear.harp.messages import HarpCall, encode_value, run_procedure
from gear.net import set_nodelay

__all__ = ["DirectListener"]

log = logging.getLogger("gear.harp.listener")

#: Seconds a client has for the handshake and its request line.
REQUEST_TIMEOUT = 30.0


class _Gone(Exception):
    """The client closed the connection."""


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        listener = self.server.listener
        raw: socket.socket = self.request
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        try:
            set_nodelay(raw)
            raw.settimeout(REQUEST_TIMEOUT)
            sock = listener.context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.info("%s: TLS handshake failed: %s", peer, exc)
            return
        try:
            listener.serve_connection(sock, peer)
        except (OSError, _Gone) as exc:
            log.info("%s: connection lost: %s", peer, exc)
        finally:
            try:
                sock.close()
            except OSError:
                pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], listener: DirectListener) -> None:
        self.listener = listener
        super().__init__(address, _Handler)


class DirectListener:
    """Serve ``procedures`` (``{name: (fn, pass_call)}``) in harpd's protocol.

    ``users``: user -> password (any of them may call any procedure); ``context``: the
    server-side TLS context; ``host``: the harp host name the calls' ``HarpCall`` shows.
    ``port`` 0 takes a free port (:attr:`port` says which)."""

    def __init__(self, procedures: Mapping[str, tuple[Callable[..., Any], bool]],
                 users: Mapping[str, str], context: ssl.SSLContext, address: str = "127.0.0.1",
                 port: int = harpd.DEFAULT_PORT, host: str = "localhost") -> None:
        self.procedures = dict(procedures)
        self.users = dict(users)
        self.context = context
        self.host = host
        self._server = _Server((address, port), self)
        self.address, self.port = self._server.server_address[:2]
        self._thread: threading.Thread | None = None
        self._active = 0
        self._idle = threading.Condition()

    def start(self) -> None:
        """Accept connections in a thread of their own; returns at once."""
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,),
                                        daemon=True, name="gear.harp.listener")
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop accepting; wait up to ``timeout`` for running calls. True if none is left."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout)
        self._server.server_close()
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)

    def authenticate(self, user: str, password: str) -> bool:
        expected = self.users.get(user)
        # Compare even for an unknown user, so timing does not tell which users exist.
        ok = hmac.compare_digest(password.encode(), (expected or "\0" + password).encode())
        return ok and expected is not None

    # -- one connection ----------------------------------------------------------------------

    def serve_connection(self, sock: ssl.SSLSocket, peer: str) -> None:
        writer = _Writer(sock)
        try:
            request = harpd.parse_request(_read_line(sock))
            if not self.authenticate(request.user, request.password):
                raise RequestError("auth_error", "unknown user or wrong password")
            entry = self.procedures.get(request.procedure)
            if entry is None:
                raise RequestError("no_such_procedure", "no such procedure",
                                   {"procedure": request.procedure})
        except RequestError as exc:
            log.info("%s: refused: %s (%s)", peer, exc.message, exc.type)
            writer.line(encode_value(exc.reply()))
            return
        sock.settimeout(None)  # a procedure may take its time; so may its client
        log.info("%s: user %s calls %s", peer, request.user, request.procedure)
        with self._idle:
            self._active += 1
        try:
            self._run(writer, request, entry)
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def _run(self, writer: _Writer, request: harpd.DirectRequest,
             entry: tuple[Callable[..., Any], bool]) -> None:
        fn, pass_call = entry
        call = HarpCall(f"{self.host}/{request.procedure}", str(uuid.uuid4()))
        streaming = inspect.isgeneratorfunction(inspect.unwrap(fn))
        if streaming:
            writer.line(encode_value(harpd.header_reply(True)))

        def send(payload: bytes) -> None:
            nonlocal streaming
            if not streaming:  # a plain function returned a generator after all
                streaming = True
                writer.line(encode_value(harpd.header_reply(True)))
            try:
                writer.line(b'{"stream":' + payload + b"}")
            except OSError:
                call.cancel()  # the client went away: close the generator

        kind, payload = run_procedure(fn, call, json.dumps(request.arguments).encode(), send,
                                      pass_call)
        if kind == "cancelled":
            raise _Gone("client closed the connection mid-stream")
        if not streaming:
            writer.line(encode_value(harpd.header_reply(False)))
        key = b"result" if kind == "complete" else b"exception"
        writer.line(b'{"' + key + b'":' + payload + b"}")


class _Writer:
    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock

    def line(self, data: bytes) -> None:
        self.sock.sendall(data + b"\n")


def _read_line(sock: ssl.SSLSocket) -> bytes:
    """The request line (RequestError if it is too long or the client stops early)."""
    buffer = b""
    while b"\n" not in buffer:
        if len(buffer) > harpd.MAX_REQUEST:
            raise RequestError("invalid_request", "request incomplete or too long")
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ssl.SSLEOFError):  # slow, or half-closed without close_notify
            raise RequestError("invalid_request", "request incomplete or too long") from None
        if not chunk:
            raise RequestError("invalid_request", "request incomplete or too long")
        buffer += chunk
    line, _, rest = buffer.partition(b"\n")
    if rest.strip():
        raise RequestError("invalid_request", "excessive data after request")
    return line
