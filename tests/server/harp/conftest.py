"""A live geard with a harp port, run on its own event loop thread, and raw helpers."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from gear import constants as c
from gear.protocol.packets import request
from gear.server.config import ServerConfig
from gear.server.engine import JobServer


class LiveServer:
    def __init__(self, **config: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = JobServer(ServerConfig(host="127.0.0.1", port=0, harp_port=0,
                                             shutdown_timeout=2.0, **config))
        started = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self.server.start())
            except BaseException as exc:
                self.error = exc
                started.set()
                return
            started.set()
            self.loop.run_until_complete(self.server.wait_closed())

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10)
        if self.error is not None:
            raise self.error
        self.port = self.server.port
        self.harp_port = self.server.harp_port

    def call(self, fn: Any) -> Any:
        """Run ``fn()`` on the server's loop and return its value."""
        async def run() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(5)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.shutdown(graceful=False), self.loop).result(10)
        self.thread.join(10)
        self.loop.close()


class Harp:
    """A raw JSON-lines connection to the harp port."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.file = self.sock.makefile("rb")

    def send(self, obj: Any) -> None:
        if isinstance(obj, dict):
            obj = {"harpcaller": 1, **obj}
            self.sock.sendall(json.dumps(obj).encode() + b"\n")
        else:
            self.sock.sendall(obj)

    def recv(self) -> Any:
        line = self.file.readline()
        assert line.endswith(b"\n"), f"connection closed: {line!r}"
        return json.loads(line)

    def ask(self, obj: Any) -> Any:
        self.send(obj)
        return self.recv()

    def closed(self) -> bool:
        return self.file.readline() == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def live() -> Iterator[LiveServer]:
    server = LiveServer()
    try:
        yield server
    finally:
        server.stop()


class RawWorker:
    """A plain Gearman worker on a raw socket (the harp convention by hand)."""

    def __init__(self, port: int, *functions: str) -> None:
        from tests.support.raw import connect

        self.sock = connect(port)
        for fn in functions:
            self.sock.sendall(request(c.CAN_DO, fn.encode()))

    def grab(self) -> tuple[bytes, str, Any]:
        """Wait (PRE_SLEEP/NOOP, no polling) for a job: (handle, function, JSON arguments)."""
        from tests.support.raw import read_packet

        while True:
            self.sock.sendall(request(c.GRAB_JOB_UNIQ))
            ptype, args = read_packet(self.sock)
            while ptype == c.NOOP:  # a wake-up from an earlier sleep
                ptype, args = read_packet(self.sock)
            if ptype == c.JOB_ASSIGN_UNIQ:
                handle, fn, _unique = args[:3]
                data = b"\0".join(args[3:])
                return handle, fn.decode(), json.loads(data)
            assert ptype == c.NO_JOB
            self.sock.sendall(request(c.PRE_SLEEP))
            ptype, _ = read_packet(self.sock)
            assert ptype == c.NOOP

    def data(self, handle: bytes, msg: Any) -> None:
        self.sock.sendall(request(c.WORK_DATA, handle, json.dumps(msg).encode()))

    def complete(self, handle: bytes, value: Any) -> None:
        self.sock.sendall(request(c.WORK_COMPLETE, handle, json.dumps(value).encode()))

    def send(self, ptype: int, *args: bytes) -> None:
        self.sock.sendall(request(ptype, *args))

    def echo(self) -> None:
        """A round trip: everything sent before it has been handled by the server."""
        from tests.support.raw import read_packet

        self.sock.sendall(request(c.ECHO_REQ, b"sync"))
        while True:
            ptype, _args = read_packet(self.sock)
            if ptype == c.ECHO_RES:
                return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def worker(live: LiveServer) -> Iterator[RawWorker]:
    w = RawWorker(live.port, "h/echo")
    try:
        yield w
    finally:
        w.close()
