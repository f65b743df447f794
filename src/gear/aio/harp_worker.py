"""Serve HarpCaller procedures from Python functions on the asyncio :class:`gear.aio.Worker`.

Owns :class:`HarpWorker`: each procedure ``name`` of a host ``H`` is the Gearman function
``H/name`` on an ``aio.Worker`` (docs/harp.md, "Python workers")::

    worker = aio.Worker("harp-worker")
    worker.add_server("127.0.0.1", 4730)
    harp = aio.HarpWorker(worker, "localhost")

    @harp.procedure()
    async def tail(n):           # an async generator: each yield one stream message
        for i in range(n):
            yield {"line": i}

    @harp.procedure()
    async def echo(*args):       # a coroutine: its value is the result
        return list(args)

    await worker.run(concurrency=8)

``async def`` functions and async generators run on the loop; plain functions and generators
run in the worker's thread pool (through :func:`gear.harp.messages.run_procedure`, the same
code the threaded helper uses). The JSON convention is that module's too. Cancel: the
``aio.Worker`` opts in to geard's JOB_CANCEL (docs/protocol.md §1.7) unless made with
``job_cancel=False``; a cancelled call's job sets :attr:`HarpCall.cancelled
<gear.harp.messages.HarpCall.cancelled>`, which the helper checks before each message (a plain
generator stops at its next yield, a plain function may poll it). ``async def`` procedures and
async generators are registered with ``cancel_task=True``: their task is cancelled at once,
so an ``await`` that would have waited long raises CancelledError (``finally`` blocks run) and
the worker ends the job with WORK_FAIL.

Must not import the threaded API, the server or the harp client (only its sans-I/O module).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from gear.aio.worker import Worker, WorkerJob
from gear.harp.messages import (
    HarpCall,
    ProcedureSet,
    call_arguments,
    encode_exception,
    encode_value,
    run_procedure,
)

__all__ = ["HarpWorker"]

log = logging.getLogger("gear.aio.harp_worker")

class HarpWorker(ProcedureSet):
    """Procedures of one harp host, served on a ``gear.aio.Worker``."""

    def __init__(self, worker: Worker, host: str) -> None:
        super().__init__(host)
        self.worker = worker

    def register(self, name: str, fn: Callable[..., Any], *, pass_call: bool = False,
                 timeout: float | None = None) -> None:
        """Serve ``fn`` as procedure ``name`` (Gearman function ``host/name``).

        ``pass_call``: ``fn`` gets the :class:`~gear.harp.messages.HarpCall` first;
        ``timeout``: the Gearman CAN_DO_TIMEOUT, seconds."""
        function = self.function_name(name)
        if inspect.isasyncgenfunction(fn) or inspect.iscoroutinefunction(fn):
            handler: Any = self._async_handler(function, fn, pass_call)
            self.worker.register(function, handler, timeout=timeout, cancel_task=True)
        else:
            handler = self._sync_handler(function, fn, pass_call)
            self.worker.register(function, handler, timeout=timeout)

    def _call(self, function: str, job: WorkerJob) -> HarpCall:
        call = HarpCall(function, job.unique.decode(errors="replace"), job)
        self.running[job.handle] = call
        return call

    def _sync_handler(self, function: str, fn: Callable[..., Any], pass_call: bool) -> Any:
        def handler(job: WorkerJob) -> None:  # in the worker's thread pool
            call = self._call(function, job)
            try:
                kind, payload = run_procedure(fn, call, job.arguments, job.send_data,
                                              pass_call)
            finally:
                self.running.pop(job.handle, None)
            _end(job, kind, payload)
        return handler

    def _async_handler(self, function: str, fn: Callable[..., Any], pass_call: bool) -> Any:
        is_gen = inspect.isasyncgenfunction(fn)

        async def handler(job: WorkerJob) -> bytes | None:
            call = self._call(function, job)
            gen = None
            try:
                args, kwargs = call_arguments(job.arguments)
                produced = fn(call, *args, **kwargs) if pass_call else fn(*args, **kwargs)
                if is_gen:
                    gen = produced
                    async for item in gen:
                        if call.cancelled:
                            break
                        await job.send_data(encode_value(item))
                    value = None  # an async generator has no return value: the result is null
                else:
                    value = await produced
                if call.cancelled:
                    job.send_fail()
                    return None
                return encode_value(value)
            except Exception as exc:
                job.send_exception(encode_exception(exc))
                return None
            finally:
                if gen is not None:
                    await gen.aclose()
                self.running.pop(job.handle, None)
        return handler


def _end(job: WorkerJob, kind: str, payload: bytes) -> None:
    if kind == "complete":
        job.send_complete(payload)
    elif kind == "exception":
        job.send_exception(payload)
    else:  # cancelled: geard has ended the call already; free the job
        job.send_fail()
