"""Serve HarpCaller procedures from plain Python functions on gear's threaded ``Worker``.

Owns :class:`HarpWorker`: it registers each procedure ``name`` of a host ``H`` as the Gearman
function ``H/name`` on a :class:`gear.Worker` and runs the calls geard hands out, in as many
threads as asked (docs/harp.md, "Python workers")::

    worker = gear.Worker("harp-worker")
    worker.addServer("127.0.0.1", 4730)
    harp = HarpWorker(worker, "localhost")

    @harp.procedure()
    def count(n):                # rpc.localhost.count(3): a stream of 0, 1, 2; result "done"
        for i in range(n):
            yield i
        return "done"

    harp.run(threads=4)          # until harp.stop()

The convention (a generator's yields are WORK_DATA, one JSON value each; the return value is
WORK_COMPLETE JSON; an exception is WORK_EXCEPTION ``{"type", "message", "data"}``) and the
running of a procedure are :func:`gear.harp.messages.run_procedure`, shared with
:mod:`gear.aio.harp_worker`. Cancel: the helper turns on the worker's JOB_CANCEL opt-in
(``Worker.enableJobCancel``, docs/protocol.md §1.7), so a call geard cancels or times out sets
its job's ``cancelled`` and with it :attr:`HarpCall.cancelled
<gear.harp.messages.HarpCall.cancelled>`: a generator stops at its next yield, and a long plain
function (``pass_call=True``) may poll ``call.cancelled``.

Names are PEP 8 (this is not a gear class). Imports the threaded worker and the harp sans-I/O
module only: never ``gear.aio``, the server or the harp client.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from gear.errors import InterruptedError
from gear.harp.messages import HarpCall, ProcedureSet, run_procedure
from gear.threaded.jobs import WorkerJob
from gear.threaded.worker import Worker

__all__ = ["HarpWorker"]

log = logging.getLogger("gear.threaded.harp_worker")

class HarpWorker(ProcedureSet):
    """Procedures of one harp host, served on a threaded gear ``Worker``."""

    def __init__(self, worker: Worker, host: str) -> None:
        super().__init__(host)
        self.worker = worker
        worker.enableJobCancel()
        self._procedures: dict[str, tuple[Callable[..., Any], bool]] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def register(self, name: str, fn: Callable[..., Any], *, pass_call: bool = False,
                 timeout: float | None = None) -> None:
        """Serve ``fn`` as procedure ``name`` (Gearman function ``host/name``).

        ``pass_call``: ``fn`` gets the :class:`~gear.harp.messages.HarpCall` first;
        ``timeout``: the Gearman CAN_DO_TIMEOUT, seconds."""
        function = self.function_name(name)
        self._procedures[function] = (fn, pass_call)
        self.worker.registerFunction(function, timeout)

    def work(self, job: WorkerJob) -> None:
        """Run one job got from the worker: the procedure's stream, then its end packet."""
        name = job.name if isinstance(job.name, str) else job.name.decode()
        entry = self._procedures.get(name)
        if entry is None:
            log.error("no harp procedure for %r", name)
            job.sendWorkFail()
            return
        unique = job.unique
        job_id = unique.decode() if isinstance(unique, bytes) else (unique or "")
        call = HarpCall(name, job_id, job)
        handle = job.handle or b""
        with self._lock:
            self.running[handle] = call
        try:
            kind, payload = run_procedure(entry[0], call, job.arguments, job.sendWorkData,
                                          entry[1])
        finally:
            with self._lock:
                self.running.pop(handle, None)
        if kind == "complete":
            job.sendWorkComplete(payload)
        elif kind == "exception":
            job.sendWorkException(payload)
        else:  # cancelled: geard has ended the call already; free the worker's job
            job.sendWorkFail()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job = self.worker.getJob()
            except InterruptedError:
                continue
            try:
                self.work(job)
            except Exception:  # the connection went away mid-job: the server re-queues it
                log.exception("harp job %r failed", job)

    def start(self, threads: int = 1) -> None:
        """Serve calls in ``threads`` daemon threads; returns at once."""
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self._stopping.clear()
        for i in range(threads):
            thread = threading.Thread(target=self._loop, daemon=True,
                                      name=f"gear.harp.worker-{i}")
            thread.start()
            self._threads.append(thread)

    def run(self, threads: int = 1) -> None:
        """Serve calls until :meth:`stop` (from another thread or a signal handler)."""
        self.start(threads)
        for thread in list(self._threads):
            thread.join()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking calls; a running call finishes first. Waits up to ``timeout``."""
        self._stopping.set()
        for thread in self._threads:
            # A thread between its check and getJob misses one interrupt: interrupt until
            # it has left (each round waits on the thread, not on a clock).
            while thread.is_alive() and timeout > 0:
                self.worker.stopWaitingForJobs()
                thread.join(0.05)
                timeout -= 0.05
        self._threads = [t for t in self._threads if t.is_alive()]
