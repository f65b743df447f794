"""The optional sides of geard, beside the Gearman port: the harp port and the HTTP side.

Each function takes the :class:`~gear.server.engine.JobServer` first and is bound there as a
method (``JobServer._start_harp`` and so on), so that the engine's class keeps to the start,
the flush, the timer and shutdown. The harp port (docs/harp.md) and the HTTP side
(docs/operations.md) are imported only when configured, so a plain server loads neither.
Must not import the CLI or the threaded API; runs on the event loop.
"""

from __future__ import annotations

import logging
from typing import Any

from gear.errors import ServerStartError

__all__ = ["bind_http", "open_harp_store", "start_harp", "start_http"]

log = logging.getLogger("gear.server")


async def start_harp(server: Any) -> None:
    """The HarpCaller port (docs/harp.md), beside the Gearman one."""
    from gear.server.harp.admin import HarpAdmin
    from gear.server.harp.listener import HarpListener
    from gear.server.transport import OutputLimits

    writer, loaded = await open_harp_store(server)
    server.harp = HarpListener(server.broker, server.connections, server.after_broker_call,
                               server.config.harp_retention, server.config.harp_max_bytes,
                               writer, server.config.harp_unknown_host_wait,
                               limits=OutputLimits.of(server.config),
                               high_water=server.config.write_high_water)
    if loaded is not None:
        restarted = server.harp.service.load(*loaded)
        log.info("harp records: %d loaded, %d ended as server_restarted",
                 len(loaded[0]), restarted)
    server.admin.register(b"harp", HarpAdmin(server.harp.service))
    try:
        addresses = await server.harp.listen(server.config.harp_host,
                                             server.config.harp_port or 0,
                                             server.config.backlog, server.ssl_context)
    except OSError as exc:
        server._acceptor.stop()
        await server.harp.close_store()
        await server._close_storage()
        raise ServerStartError(
            f"cannot listen on {server.config.harp_host or '*'}:{server.config.harp_port}"
            f" (harp): {exc}") from exc
    for host, port in addresses:
        log.info("harp port on %s port %d%s", host, port,
                 " (TLS)" if server.ssl_context else "")


def bind_http(server: Any, broker: Any, writer: Any) -> None:
    """The HTTP side's observer, on the broker before it replays or takes connections."""
    from gear._version import __version__
    from gear.server.observe.http import HttpSide

    server.http = HttpSide(__version__, server.config.metrics_max_functions)
    server.http.bind(broker)
    if writer is not None:
        writer.on_commit = server.http.metrics.store_batch


async def start_http(server: Any) -> None:
    """Listen on the HTTP port (docs/operations.md)."""
    try:
        addresses = await server.http.listen(server.config.http_host,
                                             server.config.http_port or 0, server.ssl_context)
    except OSError as exc:
        server._acceptor.stop()
        if server.harp is not None:
            await server.harp.close()
        await server._close_storage()
        raise ServerStartError(
            f"cannot listen on {server.config.http_host or '*'}:{server.config.http_port}"
            f" (http): {exc}") from exc
    scheme = "https" if server.ssl_context else "http"
    for host, port in addresses:
        log.info("http port on %s port %d: %s://%s:%d/metrics", host, port, scheme,
                 host, port)


async def open_harp_store(server: Any) -> tuple[Any, Any]:
    """The harp records' writer and what it loaded, beside a durable queue (else None)."""
    url = server.config.queue
    if url in ("", "memory", "memory://"):
        return None, None
    from gear.server.storage.harp_writer import HarpWriter
    from gear.server.storage.harp_writer import open_harp_store as open_store

    store = open_store(url)
    if store is None:
        return None, None
    writer = HarpWriter(store)
    try:
        return writer, await writer.start()
    except Exception as exc:
        server._acceptor.stop()
        await server._close_storage()
        raise ServerStartError(f"cannot load the harp records from {url}: {exc}") from exc
