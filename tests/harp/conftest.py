"""Fixtures of the gear.harp tests: a live geard with a harp port, Python workers built with
the harp helpers (threaded), and a ``HarpCaller`` on the port.

The procedures (host ``localhost``) report to :class:`Procedures`, which the tests wait on
with conditions (never sleeps): ``hold(name)`` blocks until the test releases ``name``,
``feed(name)`` streams what the test puts on its queue until ``None``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import gear
import gear.harp as harp
from gear.threaded.harp_worker import HarpWorker
from tests.server.harp.conftest import LiveServer, live

__all__ = ["LiveServer", "Procedures", "live", "serve"]

WAIT = 10.0


class Procedures:
    """The procedures the tests call, and what they observed."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.running = 0
        self.max_running = 0
        self.started: list[str] = []
        self.gates: dict[str, threading.Event] = {}
        self.feeds: dict[str, queue.Queue[Any]] = {}

    def gate(self, name: str) -> threading.Event:
        with self.cond:
            return self.gates.setdefault(name, threading.Event())

    def feed_queue(self, name: str) -> queue.Queue[Any]:
        with self.cond:
            return self.feeds.setdefault(name, queue.Queue())

    def release_all(self) -> None:
        with self.cond:
            for event in self.gates.values():
                event.set()
            for q in self.feeds.values():
                q.put(None)

    def wait_until(self, predicate: Callable[[], bool], what: str) -> None:
        with self.cond:
            assert self.cond.wait_for(predicate, WAIT), f"timed out waiting for {what}"

    # -- the procedures --------------------------------------------------------------------

    def echo(self, *args: Any) -> list[Any]:
        return list(args)

    def kw(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def count(self, n: int) -> Iterator[int]:
        yield from range(n)
        return "done"  # type: ignore[return-value]

    def raise_remote(self, kind: str) -> None:
        raise harp.RemoteException(kind, f"{kind} happened", {"detail": [1, 2]})

    def boom(self) -> None:
        raise ValueError("bad value")

    def hold(self, name: str) -> str:
        gate = self.gate(name)
        with self.cond:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.started.append(name)
            self.cond.notify_all()
        try:
            gate.wait(WAIT * 3)
        finally:
            with self.cond:
                self.running -= 1
                self.cond.notify_all()
        return name

    def feed(self, name: str) -> Iterator[Any]:
        q = self.feed_queue(name)
        with self.cond:
            self.started.append(name)
            self.cond.notify_all()
        while True:
            item = q.get(timeout=WAIT * 3)
            if item is None:
                return f"{name} fed"  # type: ignore[return-value]
            yield item


PROCEDURES = ("echo", "kw", "count", "raise_remote", "boom", "hold", "feed")


def serve(harp_worker: Any, procs: Procedures) -> None:
    for name in PROCEDURES:
        harp_worker.register(name, getattr(procs, name))


@pytest.fixture
def procs() -> Iterator[Procedures]:
    p = Procedures()
    try:
        yield p
    finally:
        p.release_all()


@pytest.fixture
def worker(live: LiveServer, procs: Procedures) -> Iterator[HarpWorker]:
    """A threaded gear Worker with the procedures of host ``localhost``, 4 threads."""
    w = gear.Worker("harp-test")
    w.addServer("127.0.0.1", live.port)
    w.waitForServer(WAIT)
    hw = HarpWorker(w, "localhost")
    serve(hw, procs)
    hw.start(threads=4)
    try:
        yield hw
    finally:
        procs.release_all()
        hw.stop()
        w.shutdown()


@pytest.fixture
def rpc(live: LiveServer) -> harp.HarpCaller:
    return harp.HarpCaller("127.0.0.1", live.harp_port, timeout=WAIT)
