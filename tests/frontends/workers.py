"""Both workers behind one test interface, and a recording proxy between worker and server.

:class:`Proxy` sits between a worker and a real in-process server (``gear.Server`` on port 0):
it forwards bytes both ways and records every packet, so a test can wait for what the worker
sent (its registration, PRE_SLEEP, GRABs, WORK_*) and what it was told (NOOP), drop the
connection, or stop listening (connection refused) for a while.

:class:`ThreadedFront` (``gear.Worker`` with a few threads calling ``getJob``) and
:class:`AioFront` (``gear.aio.Worker`` on its own loop in a thread) run the same *scripts*: a
script is a plain function given a :class:`JobView` (``arguments``, ``data``, ``warning``,
``status``, ``complete``, ``fail``, ``exception``); a script that does not end its job
completes it with no data.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from typing import Any, Protocol

import gear
from gear import aio
from gear.protocol.packets import Decoder, Frame

#: Seconds any wait of these tests may take before it fails.
WAIT = 10.0


class Proxy:
    """Forwards connections on 127.0.0.1:``port`` to ``upstream``, recording every packet."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.cond = threading.Condition()
        #: Packets the worker sent (requests), and packets it was sent (responses), in order.
        self.sent: list[Frame] = []
        self.received: list[Frame] = []
        self.accepted = 0
        self._socks: list[socket.socket] = []
        self._closed = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._start_accepting()

    def _start_accepting(self) -> None:
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                down, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            try:
                up = socket.create_connection(self.upstream, timeout=WAIT)
            except OSError:
                down.close()
                continue
            up.settimeout(None)
            with self.cond:
                self.accepted += 1
                self._socks += [down, up]
                self.cond.notify_all()
            threading.Thread(target=self._pump, args=(down, up, self.sent), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, self.received),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, log: list[Frame]) -> None:
        decoder = Decoder()
        try:
            while data := src.recv(65536):
                # Recorded before it is forwarded, so a packet sent in answer to this one is
                # always recorded after it.
                frames = [f for f in decoder.feed(data) if isinstance(f, Frame)]
                with self.cond:
                    log.extend(frames)
                    self.cond.notify_all()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    # -- what the tests do -----------------------------------------------------------------------

    def wait(self, predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        with self.cond:
            assert self.cond.wait_for(predicate, timeout), f"timed out waiting for {what}"

    def count(self, ptype: int, sent: bool = True) -> int:
        """How many packets of ``ptype`` the worker sent (or, ``sent=False``, received)."""
        with self.cond:
            return sum(1 for f in (self.sent if sent else self.received) if f.ptype == ptype)

    def wait_count(self, ptype: int, n: int, sent: bool = True) -> None:
        log = self.sent if sent else self.received
        self.wait(lambda: sum(1 for f in log if f.ptype == ptype) >= n,
                  f"{n} x {gear.constants.types[ptype]}")

    def frames(self, ptype: int) -> list[Frame]:
        with self.cond:
            return [f for f in self.sent if f.ptype == ptype]

    def drop(self) -> None:
        """Cut every open connection: the worker sees its connection lost."""
        with self.cond:
            socks, self._socks = self._socks, []
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def stop_listening(self) -> None:
        """From now on connections are refused, until :meth:`listen_again`."""
        self._close_listener()

    def _close_listener(self) -> None:
        # shutdown() first: a close() alone leaves a listener that a blocked accept() holds.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()

    def listen_again(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.listener = listener
        self._start_accepting()

    def close(self) -> None:
        self._close_listener()
        self.drop()


class JobView:
    """What a script sees of its job, the same for both workers."""

    def __init__(self, arguments: bytes, send: Callable[[str, tuple[Any, ...]], None]) -> None:
        self.arguments = arguments
        self._send = send
        self.ended = False

    def data(self, data: bytes) -> None:
        self._send("data", (data,))

    def warning(self, data: bytes) -> None:
        self._send("warning", (data,))

    def status(self, numerator: int, denominator: int) -> None:
        self._send("status", (numerator, denominator))

    def complete(self, data: bytes = b"") -> None:
        self.ended = True
        self._send("complete", (data,))

    def fail(self) -> None:
        self.ended = True
        self._send("fail", ())

    def exception(self, data: bytes) -> None:
        self.ended = True
        self._send("exception", (data,))


Script = Callable[[JobView], None]


class Front(Protocol):
    """One worker front-end under test."""

    kind: str

    def start(self, host: str, port: int) -> None: ...

    def register(self, name: str, script: Script, timeout: float | None = None) -> None: ...

    def states(self) -> list[str]: ...

    def stop(self) -> None: ...


_THREADED_SENDS = {
    "data": "sendWorkData",
    "warning": "sendWorkWarning",
    "status": "sendWorkStatus",
    "complete": "sendWorkComplete",
    "fail": "sendWorkFail",
    "exception": "sendWorkException",
}
_AIO_SENDS = {
    "data": "send_data",
    "warning": "send_warning",
    "status": "send_status",
    "complete": "send_complete",
    "fail": "send_fail",
    "exception": "send_exception",
}


class ThreadedFront:
    """``gear.Worker`` with ``threads`` threads each looping over ``getJob``."""

    kind = "threaded"

    def __init__(self, client_id: str = "front", threads: int = 2) -> None:
        self.worker = gear.Worker(client_id)
        self.scripts: dict[str, Script] = {}
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def register(self, name: str, script: Script, timeout: float | None = None) -> None:
        self.scripts[name] = script
        self.worker.registerFunction(name, timeout=timeout)

    def start(self, host: str, port: int) -> None:
        self.worker.addServer(host, port)
        self.worker.waitForServer(WAIT)
        for thread in self.threads:
            thread.start()

    def _loop(self) -> None:
        while True:
            try:
                job = self.worker.getJob()
            except gear.InterruptedError:
                return
            view = JobView(job.arguments,
                           lambda kind, args, job=job: getattr(job, _THREADED_SENDS[kind])(*args))
            self.scripts[job.name](view)
            if not view.ended:
                job.sendWorkComplete(b"")

    def states(self) -> list[str]:
        return [conn.state for conn in self.worker.active_connections]

    def stop(self) -> None:
        self.worker.shutdown()
        for thread in self.threads:
            thread.join(WAIT)


class AioFront:
    """``gear.aio.Worker`` (``concurrency`` slots) on its own event loop in a thread."""

    kind = "aio"

    def __init__(self, client_id: str = "front", concurrency: int = 2) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.concurrency = concurrency
        self.worker = self._call(self._make(client_id))

    async def _make(self, client_id: str) -> aio.Worker:
        return aio.Worker(client_id, reconnect_max=0.5)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    def register(self, name: str, script: Script, timeout: float | None = None) -> None:
        def handler(job: aio.WorkerJob) -> None:  # a plain def: run in the worker's threads
            view = JobView(job.arguments,
                           lambda kind, args: getattr(job, _AIO_SENDS[kind])(*args))
            script(view)  # a job it did not end is completed with b"" by the worker

        async def register() -> None:
            self.worker.register(name, handler, timeout=timeout)

        self._call(register())

    def start(self, host: str, port: int) -> None:
        async def start() -> None:
            self.worker.add_server(host, port)
            await self.worker.start(self.concurrency)
            await self.worker.wait_for_server(WAIT)

        self._call(start())

    def states(self) -> list[str]:
        async def states() -> list[str]:
            return [conn.session.state for conn in self.worker._connections
                    if conn.link.connected]

        result: list[str] = self._call(states())
        return result

    def stop(self) -> None:
        try:
            self._call(self.worker.stop(drain=False, timeout=WAIT))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(WAIT)
            self.loop.close()


FRONTS: dict[str, Callable[[], Front]] = {"threaded": ThreadedFront, "aio": AioFront}
