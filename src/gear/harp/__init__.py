"""``gear.harp``: HarpCaller's Python client API, talking to ``geard --harp-port``.

A Python 3 port of HarpCaller's ``harp`` module (docs/harp.md, "Python client: gear.harp")::

    import gear.harp as harp

    rpc = harp.HarpCaller("localhost", 3502)
    job = rpc.localhost(queue={"service": "nginx"}, max_exec_time=15).restart("nginx")
    for msg in job.follow(since=0):
        print(msg)
    print(job.id(), job.get())

Also the seed's direct interface to a harpd (``HarpServer``, ``HarpProcedure``,
``HarpStreamIterator``, ``Result``: :mod:`gear.harp.direct`) and the ``procedure`` mark of
``gear-harpd``'s procedures modules (:mod:`gear.harp.harpd`, :mod:`gear.harp.daemon`).

Defines nothing itself: the client is :mod:`gear.harp.client`, the requests, replies,
exceptions and the worker payload convention :mod:`gear.harp.messages` (sans-I/O, shared with
:mod:`gear.aio.harp` and the worker helpers). Imports only its own modules and
:mod:`gear.net`; never the server, the threaded API or ``gear.aio``.
"""

from gear.harp.client import (
    HarpCaller,
    JSONConnection,
    JSONSSLConnection,
    RemoteCall,
    RemoteProcedure,
    RemoteServer,
)
from gear.harp.direct import HarpProcedure, HarpServer, HarpStreamIterator, Result
from gear.harp.harpd import procedure
from gear.harp.messages import (
    CALL_CANCELLED,
    CALL_NOT_FINISHED,
    CallStatus,
    CancelledException,
    CommunicationError,
    HarpException,
    RemoteError,
    RemoteException,
)

__all__ = [
    "CALL_CANCELLED",
    "CALL_NOT_FINISHED",
    "CallStatus",
    "CancelledException",
    "CommunicationError",
    "HarpCaller",
    "HarpException",
    "HarpProcedure",
    "HarpServer",
    "HarpStreamIterator",
    "JSONConnection",
    "JSONSSLConnection",
    "RemoteCall",
    "RemoteError",
    "RemoteException",
    "RemoteProcedure",
    "RemoteServer",
    "Result",
    "procedure",
]
