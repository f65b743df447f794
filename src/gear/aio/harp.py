"""The asyncio HarpCaller client: :class:`HarpClient` (docs/harp.md, "Python client").

For web applications: submit a call, read its result, follow its stream as an async iterator,
cancel it, read its status, without a thread per request::

    client = aio.HarpClient("127.0.0.1", 3502)
    job_id = await client.submit("localhost", "count", 3, queue={"q": 1}, timeout=30)
    async for msg in client.follow(job_id, since=0):
        ...
    value = await client.get(job_id)          # raises RemoteException / RemoteError /
                                              # CancelledException / CommunicationError
    outcome = await client.result(job_id, wait=False)   # returns them instead (or
                                              # CALL_NOT_FINISHED / CALL_CANCELLED)

As the synchronous client, each request has a connection of its own. Requests, replies and the
reply -> exception mapping are :mod:`gear.harp.messages`, shared with :mod:`gear.harp.client`.

Must not import the threaded API, the server or the synchronous harp client.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

from gear.harp import messages as m
from gear.harp.messages import CallStatus, CommunicationError
from gear.net import set_nodelay

__all__ = ["HarpClient"]

#: The longest reply line read (geard caps requests at 16 MiB; replies carry results).
_LIMIT = 64 * 1024 * 1024


class _Conn:
    """One request's connection: a line out, lines in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def receive(self) -> Any:
        try:
            line = await self.reader.readline()
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            raise CommunicationError(f"can't read from the dispatcher: {exc}") from exc
        return m.decode(line)

    def close(self) -> None:
        self.writer.close()


class HarpClient:
    """A HarpCaller dispatcher (geard's harp port) for asyncio code.

    ``ssl_context``: TLS with that context (e.g. :func:`gear.net.client_tls_context`);
    ``timeout``: seconds allowed to connect (None: no bound).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 3502, *,
                 ssl_context: ssl.SSLContext | None = None,
                 timeout: float | None = None) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<aio.HarpClient {self.host}:{self.port}>"

    async def _open(self, req: dict[str, Any]) -> _Conn:
        line = m.encode(req)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=self.ssl_context,
                                        server_hostname=self.host if self.ssl_context else None,
                                        limit=_LIMIT),
                self.timeout)
        except (OSError, ssl.SSLError, asyncio.TimeoutError) as exc:
            raise CommunicationError(f"can't connect to {self.host}:{self.port}: {exc}") from exc
        set_nodelay(writer.get_extra_info("socket"))
        writer.write(line)
        return _Conn(reader, writer)

    async def request(self, req: dict[str, Any]) -> Any:
        """Send one request on a new connection and return the reply."""
        conn = await self._open(req)
        try:
            return await conn.receive()
        finally:
            conn.close()

    async def submit(self, host: str, procedure: str, *args: Any,
                     kwargs: dict[str, Any] | None = None, queue: Any = None,
                     concurrency: int | None = None, timeout: float | None = None,
                     max_exec_time: float | None = None, **options: Any) -> str:
        """Submit a call of ``procedure`` on ``host`` with positional ``args`` or keyword
        ``kwargs`` (not both); returns its job id. ``info=`` is kept with the call."""
        if args and kwargs:
            raise m.HarpException("mixed keyword and positional arguments")
        unknown = set(options) - {"info"}
        if unknown:
            raise TypeError(f"unknown call options: {sorted(unknown)}")
        req = m.call_request(host, procedure, kwargs if kwargs else args, queue=queue,
                             concurrency=concurrency, timeout=timeout,
                             max_exec_time=max_exec_time, **options)
        return m.job_id_of(await self.request(req))

    async def result(self, job_id: str, wait: bool = True) -> Any:
        """The call's outcome however it ended (value, CALL_NOT_FINISHED, CALL_CANCELLED, or an
        exception instance, returned)."""
        try:
            return m.outcome(await self.request(m.result_request(job_id, wait)))
        except CommunicationError as exc:
            return exc

    async def get(self, job_id: str, wait: bool = True) -> Any:
        """The call's value; raises what :meth:`result` would return as an exception."""
        return m.unwrap(await self.result(job_id, wait))

    async def follow(self, job_id: str, since: int | None = None, recent: int | None = None,
                     numbered: bool = False) -> AsyncIterator[Any]:
        """The stream, stored then live, until the call ends (neither given: ``recent=0``)."""
        async for item in self._stream(m.follow_request(job_id, since, recent), numbered):
            yield item

    async def stream(self, job_id: str, since: int | None = None, recent: int | None = None,
                     numbered: bool = False) -> AsyncIterator[Any]:
        """The messages stored so far, without waiting (neither given: ``since=0``)."""
        async for item in self._stream(m.read_stream_request(job_id, since, recent), numbered):
            yield item

    async def _stream(self, req: dict[str, Any], numbered: bool) -> AsyncIterator[Any]:
        conn = await self._open(req)
        try:
            while True:
                reply = await conn.receive()
                packet = m.stream_packet(reply)
                if packet is None:
                    end = m.outcome(reply)
                    if isinstance(end, CommunicationError):
                        raise end
                    if isinstance(end, m.RemoteError) and end.type == "invalid_jobid":
                        raise end
                    return
                yield packet if numbered else packet[1]
        finally:
            conn.close()

    async def cancel(self, job_id: str) -> bool:
        """Cancel the call: True if it was queued or running and is now stopped."""
        return m.cancelled_of(await self.request(m.cancel_request(job_id)))

    async def status(self, job_id: str) -> CallStatus:
        """The call's record: procedure, arguments, host, times (None until they happen),
        info."""
        return m.status_of(await self.request(m.status_request(job_id)))
