"""geard's HarpCaller side (``geard --harp-port``, docs/harp.md).

* ``protocol.py``: the JSON-lines requests and replies (sans-I/O);
* ``records.py``: the call records and their retention (sans-I/O);
* ``service.py``: calls mapped onto Gearman jobs through the broker, queues, timers (sans-I/O);
* ``listener.py``: the asyncio side: the port, connections, timers.

Must not import the engine, admin or the package face; only the engine imports this package.
"""
