"""geard's HarpCaller side (``geard --harp-port``, docs/harp.md).

* ``protocol.py``: the JSON-lines requests and replies (sans-I/O);
* ``records.py``: the call records and their retention by age and bytes (sans-I/O);
* ``service.py``: calls mapped onto Gearman jobs through the broker, queues, timers, the
  record store's writes and the restart (sans-I/O);
* ``admin.py``: the ``harp ...`` admin commands, registered by the engine (sans-I/O);
* ``listener.py``: the asyncio side: the port, connections, timers, pruning passes.

Records are stored through ``gear.server.storage.harp`` (rows) and ``harp_writer`` (the thread).

Must not import the engine, admin or the package face; only the engine imports this package.
"""
