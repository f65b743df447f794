"""The Gearman job server (``geard``, and ``gear.Server`` for embedding). A map of the folder,
top to bottom (each layer imports only the layers below it):

* ``cli.py``, ``__main__.py``: the ``geard`` command (options, config file, logging, daemon).
* ``gear_server.py``: ``gear.Server``, gear 0.16's embeddable server on the same engine; the
  only server module that may import the threaded API (gear's ``Packet``).
* ``engine.py``: ``JobServer``: start (storage -> replay -> listen), the one write per dirty
  peer per loop pass, the broker's timer, the write policies, shutdown; ``run_server``.
* ``transport.py``: sockets, TLS, the accept loop and one ``asyncio.Protocol`` per connection,
  knowing its host only as a ``ConnectionHost``.
* ``observe/``: what the server reports about itself (statsd).
* ``config.py``: ``ServerConfig`` and the listen defaults.
* ``port.py``: ``BrokerPort``, the broker interface the engine uses (its contract).
* ``broker/``: the sans-I/O scheduler: queues, coalescing, wake-ups, timers, durability holds,
  the lifecycle seam.
* ``admin/``: the gearmand text admin commands and gear's ``acl`` verbs, injected into the broker.
* ``storage/``: where background jobs survive a restart (memory, SQLite, PostgreSQL) and the
  group-commit writer thread.

Must not import anything: ``import gear.server.broker`` loads no sockets, event loop or admin.
"""
