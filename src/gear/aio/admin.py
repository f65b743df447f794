"""The asyncio admin client: gearmand's text commands, answered as parsed records.

Owns :class:`Admin`, one text-protocol connection to one server (admin state is per server).
Commands may be issued concurrently: they are pipelined and replies are matched in order, which
gearmand guarantees (docs/protocol.md §2.1). Reply framing and parsing come from
``gear.protocol.admin`` (:class:`~gear.protocol.admin.AdminReply` and the ``parse_*``
functions); this module only moves lines and maps ``ERR`` replies to
:class:`~gear.errors.ServerError`. Beyond gearmand's commands it wraps geard's own: the
dead-letter list (docs/server.md, "Poison jobs") and the harp records (docs/harp.md, "Admin
commands"); against gearmand those raise ServerError (``ERR UNKNOWN_COMMAND``).

Must not import the threaded API, the client/worker modules or the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from gear.aio.connection import AsyncContext, Endpoint, Event, Link, ServerOptions, describe
from gear.errors import ConfigurationError, ConnectionError, InvalidDataError, ServerError
from gear.errors import TimeoutError as GearTimeoutError
from gear.protocol import admin as admin_text
from gear.protocol.admin import DeadJobInfo, FunctionStatus, JobInfo, PriorityStatus, WorkerInfo
from gear.protocol.messages import to_bytes
from gear.protocol.packets import AdminLine

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger("gear.aio.admin")


class Admin(AsyncContext):
    """Admin commands against one server: ``async with Admin(host, port) as admin: ...``.

    The connection opens on first use and reopens after a loss; a command in flight when the
    connection drops raises :class:`~gear.errors.ConnectionError`. ``timeout`` bounds the wait
    for the connection and for each reply; the other keyword options (TLS, keepalive) are
    :class:`~gear.aio.connection.ServerOptions`.
    """

    def __init__(
        self,
        host: str,
        port: int = 4730,
        *,
        timeout: float = 10.0,
        **options: Unpack[ServerOptions],
    ) -> None:
        self.endpoint = Endpoint.build(host, port, **options)
        self.timeout = timeout
        self._link: Link | None = None
        self._pending: deque[tuple[admin_text.AdminReply, asyncio.Future[list[bytes]]]] = deque()
        self._closed = False

    def __repr__(self) -> str:
        return f"<aio.Admin {self.endpoint}>"

    async def _exit(self, clean: bool) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        if self._link is not None:
            await self._link.close()

    # -- LinkHandler -------------------------------------------------------------------------

    def link_up(self, link: Link) -> None:
        pass

    def link_down(self, link: Link, error: ConnectionError) -> None:
        pending, self._pending = self._pending, deque()
        for _, fut in pending:
            if not fut.done():
                fut.set_exception(error)

    def link_event(self, link: Link, event: Event) -> None:
        if not isinstance(event, AdminLine):
            log.warning("unexpected binary packet on the admin connection: %r", event)
            return
        if not self._pending:
            log.warning("unsolicited admin line from %s: %r", self.endpoint, event.line[:80])
            return
        reply, fut = self._pending[0]
        if reply.add(event.line):
            self._pending.popleft()
            if not fut.done():
                fut.set_result(reply.lines)

    # -- commands ----------------------------------------------------------------------------

    async def command(self, command: str | bytes, *args: str | bytes) -> list[bytes]:
        """Send one admin command and return its reply lines (without the final ".").

        ``ERR ...`` replies raise :class:`~gear.errors.ServerError` with the first word after
        ``ERR`` as ``code`` and the rest as ``text``.
        """
        if self._closed:
            raise ConfigurationError("the admin connection is closed")
        # CRLF as gearadmin sends it: `create function` loses a character after a bare LF
        # (docs/protocol.md §2.2).
        line = admin_text.admin_command(command, *args, crlf=True)
        if self._link is None:
            self._link = Link(self.endpoint, self, text=True, connect_timeout=self.timeout)
            self._link.start()
        link = self._link
        try:
            await asyncio.wait_for(link.wait_up(), self.timeout)
        except asyncio.TimeoutError:
            raise ConnectionError(
                f"cannot connect to {self.endpoint}: {describe(link.last_error)}"
            ) from None
        reply = admin_text.AdminReply(line)
        fut: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()
        if not link.send(line):
            raise ConnectionError(f"not connected to {self.endpoint}")
        self._pending.append((reply, fut))
        try:
            lines = await asyncio.wait_for(asyncio.shield(fut), self.timeout)
        except asyncio.TimeoutError:
            # The reply may still come and would then answer the wrong command: start afresh.
            if link.protocol is not None:
                link.protocol.abort(ConnectionError("admin reply timed out"))
            raise GearTimeoutError(f"no reply to {line.strip()!r} within {self.timeout}s") from None
        failure = reply.failure
        if failure is not None:
            raise ServerError(*failure)
        return lines

    async def _ok(self, command: str, *args: str | bytes) -> bytes:
        lines = await self.command(command, *args)
        line = lines[0] if lines else b""
        try:
            return admin_text.parse_admin_ok(line)
        except InvalidDataError:
            raise InvalidDataError(f"unexpected reply to {command!r}: {line[:80]!r}") from None

    async def status(self) -> list[FunctionStatus]:
        """``status``: per function, queued+running total, running, and workers."""
        return admin_text.parse_status(await self.command("status"))

    async def prioritystatus(self) -> list[PriorityStatus]:
        """``prioritystatus``: queued jobs per priority, per function."""
        return admin_text.parse_prioritystatus(await self.command("prioritystatus"))

    async def workers(self) -> list[WorkerInfo]:
        """``workers``: every connection with its fd, address, client id and functions."""
        return admin_text.parse_workers(await self.command("workers"))

    async def show_jobs(self) -> list[JobInfo]:
        """``show jobs``: every job in the server's memory."""
        return admin_text.parse_show_jobs(await self.command("show", "jobs"))

    async def show_unique_jobs(self) -> list[bytes]:
        """``show unique jobs``: the unique of every job (empty for jobs without one)."""
        return admin_text.parse_show_unique_jobs(await self.command("show", "unique", "jobs"))

    async def cancel_job(self, handle: str | bytes) -> None:
        """``cancel job``: the server fails a queued job; ServerError ``UNKNOWN_JOB`` if unknown."""
        await self._ok("cancel", "job", to_bytes(handle, "handle"))

    async def version(self) -> str:
        return (await self._ok("version")).decode("utf-8", "replace")

    async def getpid(self) -> int:
        return int(await self._ok("getpid"))

    async def verbose(self) -> str:
        return (await self._ok("verbose")).decode("utf-8", "replace")

    async def maxqueue(
        self,
        function: str | bytes,
        size: int | None = None,
        *,
        high: int | None = None,
        normal: int | None = None,
        low: int | None = None,
    ) -> None:
        """``maxqueue``: ``size`` for every priority, or per priority; 0/None is unlimited.

        Limits count a function's queued and running jobs of all priorities
        (docs/protocol.md §3.13).
        """
        name = to_bytes(function, "function")
        if size is not None and (high, normal, low) != (None, None, None):
            raise ConfigurationError("give size or high/normal/low, not both")
        if (high, normal, low) != (None, None, None):
            sizes = [str(int(v or 0)) for v in (high, normal, low)]
        elif size is not None:
            sizes = [str(int(size))]
        else:
            sizes = []
        await self._ok("maxqueue", name, *sizes)

    async def create_function(self, function: str | bytes) -> None:
        await self._ok("create", "function", to_bytes(function, "function"))

    async def drop_function(self, function: str | bytes) -> None:
        """``drop function``; ServerError when workers are connected or jobs run."""
        await self._ok("drop", "function", to_bytes(function, "function"))

    # -- geard's dead-letter list (docs/server.md) -------------------------------------------

    async def dead_jobs(self, function: str | bytes | None = None) -> list[DeadJobInfo]:
        """``show dead jobs [FUNCTION]``: the background jobs whose retries ran out."""
        args = () if function is None else (to_bytes(function, "function"),)
        return admin_text.parse_show_dead_jobs(await self.command("show", "dead", "jobs", *args))

    async def retry_dead_job(self, handle: str | bytes) -> None:
        """``retry dead job``: queue it again as a fresh job; ServerError ``UNKNOWN_JOB`` or
        ``UNIQUE_IN_USE``."""
        await self._ok("retry", "dead", "job", to_bytes(handle, "handle"))

    async def retry_dead_jobs(self, function: str | bytes | None = None) -> int:
        """``retry dead jobs [FUNCTION]``: how many were queued again."""
        return await self._count("retry", "dead", "jobs", function)

    async def drop_dead_job(self, handle: str | bytes) -> None:
        """``drop dead job``: forget it; ServerError ``UNKNOWN_JOB``."""
        await self._ok("drop", "dead", "job", to_bytes(handle, "handle"))

    async def drop_dead_jobs(self, function: str | bytes | None = None) -> int:
        """``drop dead jobs [FUNCTION]``: how many were forgotten."""
        return await self._count("drop", "dead", "jobs", function)

    async def _count(self, command: str, *words: str | bytes | None) -> int:
        """An ``OK <count>`` command; a None word (an optional argument) is left out."""
        args = [w if isinstance(w, str) else to_bytes(w, "function") for w in words
                if w is not None]
        value = await self._ok(command, *args)
        try:
            return int(value)
        except ValueError:
            raise InvalidDataError(f"expected a count, got {value[:80]!r}") from None

    # -- geard's harp records (docs/harp.md) ---------------------------------------------------

    async def harp_list(self, all: bool = False) -> list[dict[str, Any]]:
        """``harp list [all]``: the queued and running calls (with ``all``, ended ones too)."""
        words = ("harp", "list", "all") if all else ("harp", "list")
        return admin_text.parse_json_lines(await self.command(*words))

    async def harp_info(self, job_id: str) -> dict[str, Any]:
        """``harp info ID``: one call's record; ServerError ``UNKNOWN_JOB``."""
        records = admin_text.parse_json_lines(await self.command("harp", "info", job_id))
        if len(records) != 1:
            raise InvalidDataError(f"expected one record for {job_id!r}, got {len(records)}")
        record: dict[str, Any] = records[0]
        return record

    async def harp_cancel(self, job_id: str) -> None:
        """``harp cancel ID``; ServerError ``NOT_RUNNING`` when it has ended, ``UNKNOWN_JOB``."""
        await self._ok("harp", "cancel", job_id)

    async def harp_queues(self) -> list[dict[str, Any]]:
        """``harp queues``: each queue in use with its concurrency, running and waiting."""
        return admin_text.parse_json_lines(await self.command("harp", "queues"))

    async def harp_queue(self, name: dict[str, Any]) -> list[dict[str, Any]]:
        """``harp queue NAME``: the calls of the queue named by the JSON object ``name``."""
        return admin_text.parse_json_lines(await self.command("harp", "queue", _json(name)))

    async def harp_cancel_queue(self, name: dict[str, Any]) -> int:
        """``harp cancel queue NAME``: how many calls were cancelled; ``UNKNOWN_QUEUE``."""
        return await self._count("harp", "cancel", "queue", _json(name))

    async def harp_prune(self, older_than: float | None = None) -> int:
        """``harp prune [SECONDS]``: how many ended records were forgotten now."""
        return await self._count("harp", "prune",
                                 None if older_than is None else f"{older_than:g}")


def _json(name: dict[str, Any]) -> str:
    if not isinstance(name, dict):
        raise ConfigurationError("a harp queue name is a JSON object (a dict)")
    return json.dumps(name, separators=(",", ":"))
