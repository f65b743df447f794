"""The threaded API with gear 0.16's names, classes, hooks and internals (camelCase on purpose).

gear 0.16 was one module, so its users import every name from ``gear`` itself; ``gear/__init__.py``
re-exports these lazily. The files:

* ``connection.py``: ``Connection`` (one blocking socket to one server), ``ServerConnection``,
  ``NonBlockingConnection`` (for gear's own tests), TLS setup.
* ``client.py``: ``BaseClientServer`` (the connect and poll threads), ``BaseClient``, ``Client``:
  glue over :class:`gear.protocol.client.ClientSession`, one per connection.
* ``tasks.py``: the ``Task`` latches that wait for a reply, and ``JobUpdater`` (what the session
  decided, applied to gear's Jobs).
* ``client_packets.py``: ``Client``'s reply hooks (JOB_CREATED, WORK_*, STATUS_RES*), each a call
  into the session.
* ``dispatch.py``: packet type -> ``handleXxx`` hook, and the default hooks.
* ``direct.py``: direct reads, the Worker's ``getJob`` thread reading its connection itself.
* ``worker.py``: ``Worker`` and ``TextWorker``: registration and the grab/sleep cycle.
* ``jobs.py``: ``Job``, ``WorkerJob`` and their Text/Binary kinds.
* ``admin_requests.py``: the admin text requests (``StatusAdminRequest``, ...).
* ``packet.py``: gear's ``Packet``.

Imports ``gear.protocol`` (the sans-I/O core), never ``gear.aio`` or ``gear.server``.
"""
