"""Fixtures of the pygear facade tests: a server (geard in process, or a real gearmand) and
pygear-API workers running in threads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gear.compat import pygear
from gear.server.gear_server import Server
from tests.support.peers import GearmandProcess


class Endpoint:
    """Where a test's server listens; ``kind`` is "geard" or "gearmand"."""

    def __init__(self, kind: str, host: str, port: int, pid: int) -> None:
        self.kind = kind
        self.host = host
        self.port = port
        self.pid = pid


@pytest.fixture
def geard() -> Iterator[Endpoint]:
    import os

    server = Server(0, host="127.0.0.1")
    try:
        yield Endpoint("geard", "127.0.0.1", server.port, os.getpid())
    finally:
        server.shutdown()


@pytest.fixture(params=["geard", pytest.param("gearmand", marks=pytest.mark.interop)])
def server(request: pytest.FixtureRequest) -> Iterator[Endpoint]:
    """Each test runs against our server and against gearmand."""
    if request.param == "geard":
        yield request.getfixturevalue("geard")
        return
    proc = GearmandProcess()
    try:
        yield Endpoint("gearmand", proc.host, proc.port, proc.pid)
    finally:
        proc.stop()


class WorkerThread:
    """A pygear Worker serving ``functions`` in a thread until :meth:`stop`."""

    def __init__(self, endpoint: Endpoint, functions: dict[str, Callable[[Any], Any]],
                 serializer: Any = None) -> None:
        self.worker = pygear.Worker()
        self.worker.add_server(endpoint.host, endpoint.port)
        if serializer is not None:
            self.worker.set_serializer(serializer)
        for name, fn in functions.items():
            self.worker.add_function(name, 0, fn)
        self.worker.set_timeout(50)
        self.done = threading.Event()
        self.jobs = 0
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                self.worker.work()
                self.jobs += 1
            except pygear.TIMEOUT:
                pass
            except Exception as exc:  # recorded for the test to see
                self.errors.append(exc)

    def stop(self) -> None:
        self.done.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def start_worker() -> Iterator[Callable[..., WorkerThread]]:
    started: list[WorkerThread] = []

    def start(endpoint: Endpoint, functions: dict[str, Callable[[Any], Any]],
              serializer: Any = None) -> WorkerThread:
        worker = WorkerThread(endpoint, functions, serializer)
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()


class Noop:
    """pygear's tests' noop_serializer: bytes in, bytes out."""

    def dumps(self, value: Any) -> Any:
        return value

    def loads(self, value: Any) -> Any:
        return value


class Cat:
    """pygear's tests' cat_serializer: everything is "purr" on the wire and "meow" loaded."""

    def dumps(self, value: Any) -> str:
        return "purr"

    def loads(self, value: Any) -> str:
        return "meow"


def client(endpoint: Endpoint, timeout: int = 5000) -> pygear.Client:
    c = pygear.Client()
    c.add_server(endpoint.host, endpoint.port)
    c.set_timeout(timeout)
    return c
