"""One synchronous test face over each client front-end, for the shared behaviour suite.

``ThreadedFront`` drives ``gear.Client`` (gear's own way of observing: Job attributes, and the
``handleWorkXxx``/``handleDisconnect`` hooks, overridden only to wake waiters); ``AioFront`` runs
``gear.aio.Client`` on an event loop in a thread. Both hand out a :class:`JobView` that reports
what a user sees in one vocabulary:

* ``outcome``: ``("complete", result)``, ``("fail",)``, ``("exception", data)`` or ``("lost",)``;
* ``payloads``: the WORK_DATA / WORK_WARNING payloads in arrival order; ``warned``;
* ``status``: the last WORK_STATUS as ``(numerator, denominator)`` integers, or None.

gear's ``Job.data`` also holds the WORK_COMPLETE data (its result, the last item): tests give
every completion a non-empty result, so ``ThreadedFront`` can tell the two apart.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

import gear
from gear import aio
from gear.errors import ConnectionError, JobExceptionError, JobFailedError

T = TypeVar("T")

TIMEOUT = 10.0


class JobView(Protocol):
    handle: bytes | None

    def wait(self, timeout: float = TIMEOUT) -> bool: ...

    @property
    def outcome(self) -> tuple[Any, ...] | None: ...

    @property
    def payloads(self) -> list[bytes]: ...

    @property
    def warned(self) -> bool: ...

    @property
    def status(self) -> tuple[int, int] | None: ...


class Front(Protocol):
    kind: str

    def submit(self, name: str, arguments: bytes, unique: str | None = None) -> JobView: ...

    def client_count(self, unique: str) -> int | None: ...

    def close(self) -> None: ...


# --- threaded ------------------------------------------------------------------------------


class _RecordingClient(gear.Client):
    """gear.Client whose final hooks also notify ``changed`` (and record lost jobs)."""

    def __init__(self) -> None:
        super().__init__("frontends")
        self.changed = threading.Condition()
        self.lost: list[gear.Job] = []

    def _notify(self, job: Any) -> Any:
        with self.changed:
            self.changed.notify_all()
        return job

    def handleWorkComplete(self, packet: gear.Packet) -> Any:
        return self._notify(super().handleWorkComplete(packet))

    def handleWorkFail(self, packet: gear.Packet) -> Any:
        return self._notify(super().handleWorkFail(packet))

    def handleWorkException(self, packet: gear.Packet) -> Any:
        return self._notify(super().handleWorkException(packet))

    def handleDisconnect(self, job: Any) -> Any:
        self.lost.append(job)
        return self._notify(job)


class ThreadedJob:
    def __init__(self, client: _RecordingClient, job: gear.Job) -> None:
        self.client = client
        self.job = job
        self.handle = job.handle

    def _done(self) -> bool:
        return bool(self.job.complete) or any(j is self.job for j in self.client.lost)

    def wait(self, timeout: float = TIMEOUT) -> bool:
        with self.client.changed:
            return self.client.changed.wait_for(self._done, timeout)

    @property
    def outcome(self) -> tuple[Any, ...] | None:
        job = self.job
        if any(j is job for j in self.client.lost) and not job.complete:
            return ("lost",)
        if not job.complete:
            return None
        if not job.failure:
            return ("complete", job.data[-1] if job.data else b"")
        if job.exception is not None:
            return ("exception", job.exception)
        return ("fail",)

    @property
    def payloads(self) -> list[bytes]:
        job = self.job
        if job.complete and not job.failure and job.data:
            return list(job.data[:-1])
        return list(job.data)

    @property
    def warned(self) -> bool:
        return bool(self.job.warning)

    @property
    def status(self) -> tuple[int, int] | None:
        if self.job.numerator is None:
            return None
        return int(self.job.numerator), int(self.job.denominator)


class ThreadedFront:
    kind = "threaded"

    def __init__(self, host: str, port: int) -> None:
        self.client = _RecordingClient()
        self.client.addServer(host, port)
        self.client.waitForServer(TIMEOUT)
        # aio sets it on every connect; gear's users ask for it (docs/protocol.md §3.9)
        assert self.client.setOption("exceptions", TIMEOUT)

    def submit(self, name: str, arguments: bytes, unique: str | None = None) -> ThreadedJob:
        job = gear.Job(name, arguments, unique=unique)
        self.client.submitJob(job, timeout=TIMEOUT)
        return ThreadedJob(self.client, job)

    def client_count(self, unique: str) -> int | None:
        return self.client.getStatusUnique(unique, TIMEOUT).client_count

    def close(self) -> None:
        self.client.shutdown()


# --- aio -----------------------------------------------------------------------------------


class AioJob:
    def __init__(self, front: AioFront, job: aio.Job) -> None:
        self.front = front
        self.job = job
        self.handle = job.handle

    def wait(self, timeout: float = TIMEOUT) -> bool:
        async def finished() -> bool:
            try:
                await self.job.result(timeout)
            except Exception:
                pass
            return self.job.done()

        return self.front.call(finished())

    def _updates(self) -> list[aio.Update]:
        async def collect() -> list[aio.Update]:
            if not self.job.done():
                return list(self.job._updates or ())
            return [u async for u in self.job.updates()]

        return self.front.call(collect())

    @property
    def outcome(self) -> tuple[Any, ...] | None:
        job = self.job
        if not job.done():
            return None
        error = job.error
        if error is None:
            return ("complete", self.front.call(job.result()))
        if isinstance(error, JobExceptionError):
            return ("exception", error.data)
        if isinstance(error, JobFailedError):
            return ("fail",)
        assert isinstance(error, ConnectionError), error
        return ("lost",)

    @property
    def payloads(self) -> list[bytes]:
        return [u.data for u in self._updates() if u.kind in ("data", "warning")]

    @property
    def warned(self) -> bool:
        return any(u.kind == "warning" for u in self._updates())

    @property
    def status(self) -> tuple[int, int] | None:
        statuses = [u for u in self._updates() if u.kind == "status"]
        if not statuses:
            return None
        return statuses[-1].numerator, statuses[-1].denominator


class AioFront:
    kind = "aio"

    def __init__(self, host: str, port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = aio.Client(client_id="frontends")

        async def start() -> None:
            self.client.add_server(host, port)
            await self.client.wait_for_server(TIMEOUT)

        self.call(start())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT + 5)

    def submit(self, name: str, arguments: bytes, unique: str | None = None) -> AioJob:
        return AioJob(self, self.call(self.client.submit(name, arguments, unique=unique)))

    def client_count(self, unique: str) -> int | None:
        return self.call(self.client.get_status(unique=unique, timeout=TIMEOUT)).client_count

    def close(self) -> None:
        self.call(self.client.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


FRONTS: dict[str, type[ThreadedFront] | type[AioFront]] = {
    "threaded": ThreadedFront,
    "aio": AioFront,
}
