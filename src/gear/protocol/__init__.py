"""The sans-I/O Gearman protocol core: bytes in, events out; no sockets, threads or asyncio.

``packets`` frames and parses binary packets and admin text lines; ``messages`` builds the
requests clients and workers send and parses the replies they get. Every front-end (the threaded
gear-compatible API, ``gear.aio`` and the server) is thin glue around these.
"""

from gear.protocol.packets import (
    FIELD_COUNTS,
    HEADER,
    AdminLine,
    Decoder,
    Frame,
    encode,
    request,
    response,
    split_args,
)

__all__ = [
    "FIELD_COUNTS",
    "HEADER",
    "AdminLine",
    "Decoder",
    "Frame",
    "encode",
    "request",
    "response",
    "split_args",
]
