"""pygear's ``Admin``: the text admin protocol, with pygear's method names and reply shapes.

``Admin(host, port, timeout=60.0)`` (seconds, a float; ``Admin.__new__(Admin)`` gives host None,
port 4730, timeout 60.0 as pygear's tests check) and the seed's full command set: ``status()``
(dicts with ``function``, ``total``, ``running``, ``available_workers``), ``workers()`` (dicts with
``fd``, ``ip_address``, ``client_id``, ``functions``), ``maxqueue(name, size)``,
``shutdown(graceful)``, ``version()``, ``getpid()``, ``verbose()``, ``cancel_job(handle)``,
``create_function(name)``, ``drop_function(name)``, ``show_jobs()`` (dicts with ``handle``,
``retries``, ``ignore_job``, ``job_queued``), ``show_unique_jobs()``, plus ``info``, ``clone``,
``set_server`` and ``set_timeout``. Replies are ``str`` (decoded as UTF-8).

pygear's bugs left behind (docs/migrating.md §"From pygear"): ``version()``/``verbose()``
returned borrowed references that could crash the interpreter, ``shutdown(True)`` sent the
*immediate* shutdown and ``shutdown(False)`` the graceful one (here ``graceful`` means
graceful), and ``workers()`` dropped each worker's first function. A server's ``ERR`` reply and
a reply that cannot be read raise ``pygear.ERROR``, as pygear's did; a timeout raises
``pygear.TIMEOUT`` (pygear returned whatever had arrived).

Commands are framed and parsed by gear.protocol.admin (lines end with CRLF, as gearadmin's);
the socket waits go through gear.compat.pygear.connection (deadline, Ctrl-C, TCP_NODELAY).
"""

from __future__ import annotations

import time
from typing import Any

from gear.compat.pygear import errors
from gear.compat.pygear.connection import DEFAULT_PORT, Link, resolve, wait_readable
from gear.errors import GearmanError
from gear.protocol import admin as proto
from gear.protocol.packets import AdminLine, Decoder

DEFAULT_TIMEOUT = 60.0


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


class Admin:
    """pygear.Admin (module docstring)."""

    _host: str | None = None
    _port: int = DEFAULT_PORT
    _timeout: float = DEFAULT_TIMEOUT
    _link: Link | None = None
    _decoder: Decoder | None = None

    def __init__(self, host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._host = host
        self._port = int(port)
        self._timeout = float(timeout)

    def __repr__(self) -> str:
        return f"<pygear.Admin {self._host}:{self._port}>"

    def __del__(self) -> None:
        self._close()

    # -- settings ------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {"host": self._host, "port": self._port, "timeout": self._timeout}

    def clone(self) -> Admin:
        return Admin(self._host, self._port, self._timeout)  # type: ignore[arg-type]

    def set_server(self, host: str, port: int) -> None:
        """Point at another server (no I/O here: the next command connects)."""
        self._close()
        self._host = host
        self._port = int(port)

    def set_timeout(self, timeout: float) -> None:
        """Seconds each command may take."""
        self._close()
        self._timeout = float(timeout)

    # -- the wire ------------------------------------------------------------------------------

    def _close(self) -> None:
        link = self._link
        self._link = None
        self._decoder = None
        if link is not None:
            link.close()

    def _deadline(self) -> float | None:
        return time.monotonic() + self._timeout if self._timeout > 0 else None

    def _call(self, command: str, *args: str | bytes) -> proto.AdminReply:
        line = proto.admin_command(command, *args, crlf=True)
        deadline = self._deadline()
        if self._link is None:
            if self._host is None:
                raise errors.ERROR("Failed to connect: no server set")
            link = Link(resolve(self._host, self._port))
            try:
                link.connect(deadline)
            except errors.COULD_NOT_CONNECT as exc:
                raise errors.ERROR(f"Failed to connect: {exc}") from None
            self._link = link
            self._decoder = Decoder(text=True)
        link, decoder = self._link, self._decoder
        assert decoder is not None
        reply = proto.AdminReply(line.rstrip(b"\r\n"))
        try:
            link.send(line, deadline)
            while True:
                ready = wait_readable([link], deadline)
                if ready is None:
                    raise errors.TIMEOUT(f"TIMEOUT: no reply to {command!r} in {self._timeout} s")
                data = link.recv()
                if data is None:
                    continue
                if not data:
                    raise errors.COULD_NOT_CONNECT(
                        "Connection Failed: socket error communicating with the host")
                for item in decoder.feed(data):
                    if isinstance(item, AdminLine) and reply.add(item.line.rstrip(b"\r")):
                        return reply
        except BaseException:
            self._close()
            raise

    def _lines(self, command: str, *args: str | bytes) -> list[bytes]:
        reply = self._call(command, *args)
        if reply.error is not None:
            raise errors.ERROR(_text(reply.lines[0]))
        return reply.lines

    def _ok(self, command: str, *args: str | bytes) -> str:
        """A one-line ``OK [value]`` command: its value; ERROR for anything else."""
        line = self._lines(command, *args)[0]
        try:
            return _text(proto.parse_admin_ok(line))
        except GearmanError:
            raise errors.ERROR(f"Failed to parse server response ({_text(line)})") from None

    def _one_value(self, command: str) -> str:
        value = self._ok(command).strip()
        if not value or " " in value:
            raise errors.ERROR(f"Unexpected number of values in response (OK {value})")
        return value

    # -- the commands --------------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        return [
            {"function": _text(s.name), "total": s.total, "running": s.running,
             "available_workers": s.workers}
            for s in proto.parse_status(self._lines("status"))
        ]

    def workers(self) -> list[dict[str, Any]]:
        return [
            {"fd": str(w.fd), "ip_address": _text(w.address), "client_id": _text(w.client_id),
             "functions": [_text(f) for f in w.functions]}
            for w in proto.parse_workers(self._lines("workers"))
        ]

    def show_jobs(self) -> list[dict[str, Any]]:
        return [
            {"handle": _text(j.handle), "retries": j.retries, "ignore_job": int(j.ignored),
             "job_queued": int(j.background)}
            for j in proto.parse_show_jobs(self._lines("show jobs"))
        ]

    def show_unique_jobs(self) -> list[str]:
        return [_text(u) for u in proto.parse_show_unique_jobs(self._lines("show unique jobs"))]

    def version(self) -> str:
        return self._one_value("version")

    def verbose(self) -> str:
        return self._one_value("verbose")

    def getpid(self) -> int:
        value = self._one_value("getpid")
        try:
            return int(value)
        except ValueError:
            raise errors.ERROR(f"Failed to parse server response (OK {value})") from None

    def maxqueue(self, function_name: str, queue_size: int | None = None) -> None:
        """Limit the function's queue (negative: no limit; omitted: the server's default)."""
        if queue_size is None:
            self._ok("maxqueue", function_name)
        else:
            self._ok("maxqueue", function_name, str(int(queue_size)))

    def shutdown(self, graceful: bool = False) -> None:
        """Shut the server down; ``graceful``: after the running jobs finish."""
        try:
            if graceful:
                self._ok("shutdown", "graceful")
            else:
                self._ok("shutdown")
        finally:
            self._close()

    def cancel_job(self, handle: str) -> None:
        self._ok("cancel", "job", handle)

    def create_function(self, function_name: str) -> None:
        self._ok("create", "function", function_name)

    def drop_function(self, function_name: str) -> None:
        self._ok("drop", "function", function_name)
