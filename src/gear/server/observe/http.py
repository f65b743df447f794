"""geard's HTTP side (``--http-port``): ``/metrics``, ``/status`` and the live page, served on
the server's own event loop (docs/operations.md §1).

Owns :class:`HttpSide` (the observer wiring: :class:`~gear.server.observe.metrics.JobMetrics`
registered on the broker, the exposition, the listener) and a small HTTP/1.1 server:

* ``GET`` (and ``HEAD``) of ``/metrics`` (Prometheus text, :data:`prometheus.CONTENT_TYPE`),
  ``/status`` (JSON, :mod:`gear.server.observe.status`) and ``/`` (the self-contained page,
  ``page.html`` beside this module); a query string is ignored.
* Errors: an unknown path is 404; another method is 405 with ``Allow: GET, HEAD``; a malformed
  request line or header, or an HTTP version other than 1.0/1.1, is 400 and closes; a request
  head over :data:`MAX_HEAD` bytes is 431 and closes; a client that does not start its first
  request within :data:`HEAD_TIMEOUT` seconds of connecting, or does not finish a request head
  within :data:`HEAD_TIMEOUT` seconds of starting it, gets 408 and is closed (a slow client
  never holds more than its own connection, and the Gearman side never waits for it). A TLS
  handshake must finish within the Gearman port's limit (``config.TLS_HANDSHAKE_TIMEOUT``).
* Keep-alive as HTTP/1.1 says (Prometheus keeps its scrape connection open); ``Connection:
  close`` or HTTP/1.0 without keep-alive closes after the reply. An idle kept-alive connection
  is closed after :data:`IDLE_TIMEOUT` seconds.
* TLS: the Gearman port's ``ssl.SSLContext`` when geard has one (the same ``--ssl-*`` options:
  with a CA, clients need a certificate too).
* Every reply is built from the broker's state on the loop thread, between two broker calls:
  it sees one consistent instant. There are no write actions, so the admin ACL has nothing to
  decide here.

Must not import the engine, the transport, admin or the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from importlib import resources
from typing import Any

from gear.server.config import TLS_HANDSHAKE_TIMEOUT
from gear.server.observe.metrics import COUNT_INTERVAL, JobMetrics
from gear.server.observe.prometheus import CONTENT_TYPE, Exposition
from gear.server.observe.status import snapshot

__all__ = ["HEAD_TIMEOUT", "IDLE_TIMEOUT", "MAX_HEAD", "HttpSide"]

log = logging.getLogger("gear.server.http")

#: Largest request head (request line and headers) accepted, in bytes.
MAX_HEAD = 16 * 1024
#: Seconds a client has to send a whole request head once it started one (or connected).
HEAD_TIMEOUT = 10.0
#: Seconds a kept-alive connection may stay idle between requests.
IDLE_TIMEOUT = 60.0
#: Largest request body read (and ignored) from a GET.
MAX_BODY = 64 * 1024

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 413: "Content Too Large",
            431: "Request Header Fields Too Large"}
_TEXT = "text/plain; charset=utf-8"


class _BadRequest(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class HttpSide:
    """The HTTP side of one job server: create, :meth:`bind` to the broker, :meth:`listen`."""

    def __init__(self, version: str, max_functions: int = 100,
                 head_timeout: float = HEAD_TIMEOUT, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.version = version
        self.metrics = JobMetrics(max_functions)
        self.started = time.monotonic()
        self.head_timeout = head_timeout
        self.idle_timeout = idle_timeout
        self.broker: Any = None
        self.exposition: Exposition | None = None
        self.addresses: list[tuple[str, int]] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._counting: asyncio.TimerHandle | None = None
        self._page = resources.files(__package__).joinpath("page.html").read_bytes()

    def bind(self, broker: Any) -> None:
        """Observe ``broker`` (before it replays storage or takes connections)."""
        self.broker = broker
        self.metrics.bind(broker)
        self.exposition = Exposition(broker, self.metrics, self.started, self.version)

    async def listen(self, host: str | None, port: int,
                     ssl_context: ssl.SSLContext | None = None) -> list[tuple[str, int]]:
        """Start serving; returns (host, port) of every listening socket."""
        kwargs: dict[str, Any] = {}
        if ssl_context is not None:
            kwargs["ssl"] = ssl_context
            kwargs["ssl_handshake_timeout"] = TLS_HANDSHAKE_TIMEOUT
        server = await asyncio.start_server(self._serve, host or None, port,
                                            limit=MAX_HEAD + 2, **kwargs)
        self._servers.append(server)
        if self._counting is None:
            self._count()
        self.addresses = [sock.getsockname()[:2] for sock in server.sockets]
        return self.addresses

    def _count(self) -> None:
        """Count the broker's job log now and every COUNT_INTERVAL on this loop (the metrics
        count it before every read too): it never holds more than that long's ended jobs."""
        try:
            self.metrics.count()
        finally:  # a failed count must not leave the log growing
            self._counting = asyncio.get_running_loop().call_later(COUNT_INTERVAL, self._count)

    async def close(self) -> None:
        """Stop listening and close every HTTP connection."""
        if self._counting is not None:
            self._counting.cancel()
            self._counting = None
        for server in self._servers:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers.clear()

    # -- the HTTP exchange -----------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            first = True
            while True:
                try:
                    keep = await self._exchange(reader, writer, first)
                except _BadRequest as exc:
                    self._reply(writer, exc.status, b"%d %s\n" % (
                        exc.status, _REASONS[exc.status].encode()), _TEXT, keep=False)
                    keep = False
                first = False
                await writer.drain()
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass
        except Exception:
            log.exception("internal error serving HTTP")
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        first: bool) -> bool:
        """Read one request and answer it; returns whether the connection stays open.

        The first request's head must come within ``head_timeout`` of the connect; a later
        one may wait ``idle_timeout`` for its first byte (then the connection just closes),
        and the rest of its head must follow within ``head_timeout``."""
        try:
            start = await asyncio.wait_for(reader.read(1),
                                           self.head_timeout if first else self.idle_timeout)
        except TimeoutError:
            if first:
                raise _BadRequest(408) from None
            raise ConnectionResetError from None
        if not start:
            raise ConnectionResetError
        try:
            head = start + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"),
                                                  self.head_timeout)
        except TimeoutError:
            raise _BadRequest(408) from None
        except asyncio.LimitOverrunError:
            raise _BadRequest(431) from None
        except asyncio.IncompleteReadError:
            raise ConnectionResetError from None
        if len(head) > MAX_HEAD:
            raise _BadRequest(431)
        method, path, version, headers = _parse_head(head)
        length = headers.get("content-length", "0")
        if not length.isdigit():
            raise _BadRequest(400)
        if int(length) > MAX_BODY:
            raise _BadRequest(413)
        if int(length):
            await asyncio.wait_for(reader.readexactly(int(length)), self.head_timeout)
        connection = headers.get("connection", "").lower()
        keep = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        path = path.split("?", 1)[0]
        route = {"/": self._page_reply, "/metrics": self._metrics_reply,
                 "/status": self._status_reply}.get(path)
        if route is None:
            self._reply(writer, 404, b"404 Not Found\n", _TEXT, keep, method == "HEAD")
        elif method not in ("GET", "HEAD"):
            self._reply(writer, 405, b"405 Method Not Allowed\n", _TEXT, keep, False,
                        extra="Allow: GET, HEAD\r\n")
        else:
            body, ctype = route()
            self._reply(writer, 200, body, ctype, keep, method == "HEAD")
        return keep

    def _page_reply(self) -> tuple[bytes, str]:
        return self._page, "text/html; charset=utf-8"

    def _metrics_reply(self) -> tuple[bytes, str]:
        assert self.exposition is not None, "bind() first"
        return self.exposition.render(), CONTENT_TYPE

    def _status_reply(self) -> tuple[bytes, str]:
        doc = snapshot(self.broker, self.metrics, self.started, self.version)
        return json.dumps(doc, separators=(",", ":")).encode(), "application/json"

    def _reply(self, writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str,
               keep: bool, head_only: bool = False, extra: str = "") -> None:
        head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
                f"Content-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\n"
                f"{extra}"
                f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n")
        writer.write(head.encode("latin-1") if head_only else head.encode("latin-1") + body)


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """(method, target, version, lower-cased headers) of a request head; 400 when malformed."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise _BadRequest(400) from None
    lines = text[:-4].split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1].startswith("/"):
        raise _BadRequest(400)
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise _BadRequest(400)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name:
            raise _BadRequest(400)
        headers[name.lower()] = value.strip()
    return method, target, version, headers
