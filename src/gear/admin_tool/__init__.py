"""gear-admin: the command-line admin tool for any Gearman server (docs/gear-admin.md).

The package's parts:

* ``cli.py``: ``main()``, gearadmin 1.1's flags and output, and our additions;
* ``options.py``: gearadmin's command-line rules (Boost's), reproduced;
* ``connection.py``: gearadmin's connect, send and read rules, TLS, the timeout;
* ``top.py``: ``gear-admin top``, the live curses view; ``top_model.py``: what it shows.

It is a client of the admin text protocol only: it may import ``gear.protocol``, ``gear.net``,
``gear.errors``, ``gear.constants`` and ``gear._version``, never the server, the threaded API or
asyncio (tests/test_layering.py).
"""
