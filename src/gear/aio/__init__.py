"""``gear.aio``: an asyncio Gearman client, worker and admin client on the sans-I/O core.

Defines nothing itself: it re-exports :mod:`gear.aio.client`, :mod:`gear.aio.worker`,
:mod:`gear.aio.admin` and the priorities of :mod:`gear.protocol.messages` (``HIGH``/``NORMAL``/
``LOW``, equal to ``gear.PRECEDENCE_*``). Names are PEP 8, unlike the gear-compatible threaded
API. Must not import the threaded API or the server.

Client::

    async with aio.Client(client_id="web") as client:
        client.add_server("127.0.0.1", 4730)           # more servers: round robin + failover
        await client.wait_for_server(timeout=5)        # all_servers=True waits for every one
        job = await client.submit("resize", b"...", unique=None, background=False,
                                  priority=aio.HIGH, when=None)  # after JOB_CREATED
        async for update in job.updates():            # aio.Update(kind, data, num, den)
            ...                                        # kind: "data" | "warning" | "status"
        result = await job.result(timeout=30)          # bytes, or JobFailedError /
                                                       # JobExceptionError(.data) / ConnectionError
        result = await client.run("resize", b"...")    # submit and wait
        status = await client.get_status(job)          # aio.JobStatus; also a handle, or unique=
        await client.echo()                            # ECHO_REQ round trip to every server

Worker::

    worker = aio.Worker(client_id="thumbnailer")       # grab="uniq" | "all" | "plain"
    worker.add_server("127.0.0.1", 4730)

    @worker.function("resize", timeout=None)           # timeout: CAN_DO_TIMEOUT, seconds
    async def resize(job: aio.WorkerJob) -> bytes:     # a plain def runs in a thread pool
        await job.send_data(b"partial")                # also send_warning, send_status
        return b"result"                               # an exception -> WORK_EXCEPTION

    await worker.run(concurrency=8)                    # or start(); at most 8 jobs at once
    await worker.stop(drain=True, timeout=30)

Admin (one server)::

    async with aio.Admin("127.0.0.1", 4730) as admin:
        await admin.status()            # [FunctionStatus]; also prioritystatus, workers,
        await admin.show_jobs()         # show_unique_jobs, cancel_job, version, getpid,
        await admin.maxqueue("fn", 10)  # verbose, create_function, drop_function, command

HarpCaller (docs/harp.md): :class:`HarpClient` (submit, result, follow as an async iterator,
cancel, status) and :class:`HarpWorker` (procedures as Gearman functions ``host/name``).

``add_server`` and ``Admin`` take gear's TLS and keepalive options (``ssl_key``, ``ssl_cert``,
``ssl_ca``, ``keepalive``, ``tcp_keepidle``, ``tcp_keepintvl``, ``tcp_keepcnt``) or a ready
``ssl_context`` (declared once as :class:`ServerOptions`); TCP_NODELAY is always on.
"""

from gear.aio.admin import Admin
from gear.aio.client import Client, Job, Update
from gear.aio.connection import Endpoint, ServerOptions, make_ssl_context
from gear.aio.harp import HarpClient
from gear.aio.harp_worker import HarpWorker
from gear.aio.worker import Function, Worker, WorkerJob
from gear.protocol.messages import HIGH, LOW, NORMAL, JobStatus

__all__ = [
    "HIGH",
    "LOW",
    "NORMAL",
    "Admin",
    "Client",
    "Endpoint",
    "Function",
    "HarpClient",
    "HarpWorker",
    "Job",
    "JobStatus",
    "ServerOptions",
    "Update",
    "Worker",
    "WorkerJob",
    "make_ssl_context",
]
