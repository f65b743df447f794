"""Helpers of the python-gearman facade tests: a worker in a thread, and a scripted fake server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from gear import constants as c
from gear.compat import gearman
from gear.protocol.packets import Decoder, response


class WorkerThread:
    """A GearmanWorker running ``work()`` in a thread; ``stop()`` ends it through after_poll."""

    def __init__(self, worker: gearman.GearmanWorker, poll_timeout: float = 0.1) -> None:
        self.worker = worker
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        worker.after_poll = lambda any_activity: not self.stopping.is_set()  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self._run, args=(poll_timeout,), daemon=True)
        self.thread.start()

    def _run(self, poll_timeout: float) -> None:
        try:
            self.worker.work(poll_timeout=poll_timeout)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the worker did not stop"


@contextmanager
def worker_running(hosts: list[str], tasks: dict[Any, Callable[[Any, Any], Any]],
                   cls: type[gearman.GearmanWorker] = gearman.GearmanWorker,
                   client_id: Any = None) -> Iterator[gearman.GearmanWorker]:
    """A worker serving ``tasks`` while the block runs."""
    worker = cls(hosts)
    if client_id is not None:
        worker.set_client_id(client_id)
    for task, fn in tasks.items():
        worker.register_task(task, fn)
    thread = WorkerThread(worker)
    try:
        yield worker
    finally:
        thread.stop()
        worker.shutdown()
    if thread.error is not None:
        raise thread.error


def reverse(worker: Any, job: Any) -> bytes:
    return bytes(job.data[::-1])


class FakeServer:
    """A listening socket on 127.0.0.1:0 whose connections run ``script(conn, decoder)``.

    ``connections`` counts accepted connections; ``close_listener()`` refuses later ones.
    """

    def __init__(self, script: Callable[[socket.socket, Decoder], None]) -> None:
        self.script = script
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.accepted = threading.Event()
        self._counted = threading.Condition()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._counted:
                self.connections += 1
                self._counted.notify_all()
            self.accepted.set()
            try:
                self.script(conn, Decoder(text=True))
            except OSError:
                pass
            finally:
                conn.close()

    def wait_connections(self, n: int, timeout: float = 10.0) -> int:
        """Wait until ``n`` connections were accepted (a client may give up on a connection
        before this thread has accepted it); the count."""
        with self._counted:
            self._counted.wait_for(lambda: self.connections >= n, timeout)
            return self.connections

    def close_listener(self) -> None:
        """Stop listening: later connects are refused (shutdown wakes the blocked accept)."""
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()



def read_packet(conn: socket.socket, decoder: Decoder) -> Any:
    """The next packet (or text line) the fake server receives; None at EOF."""
    while True:
        data = conn.recv(65536)
        if not data:
            return None
        items = decoder.feed_all(data)
        if items:
            return items[0]


def created_then_close(submissions: int = 1) -> Callable[[socket.socket, Decoder], None]:
    """A script: accept ``submissions`` SUBMITs (a JOB_CREATED each), then hang up, so the
    jobs' connection is lost after they were accepted."""

    def script(conn: socket.socket, decoder: Decoder) -> None:
        seen = 0
        while seen < submissions:
            data = conn.recv(65536)
            if not data:
                return
            for _ in decoder.feed_all(data):
                seen += 1
                conn.sendall(response(c.JOB_CREATED, b"H:fake:%d" % seen))

    return script


def hang_up(conn: socket.socket, decoder: Decoder) -> None:
    """Read the first request, answer nothing, hang up."""
    read_packet(conn, decoder)


def silent(conn: socket.socket, decoder: Decoder) -> None:
    """Read everything, answer nothing (until the client goes away)."""
    while read_packet(conn, decoder) is not None:
        pass
