"""The text admin protocol of the job server: gearmand 1.1 commands plus gear's ``acl`` commands.

Owns :func:`run_command`, the admin line handler the server injects into the broker
(``Broker(..., admin=run_command)``). ``commands.py`` holds gearmand's commands, ``acl.py``
gear's ``acl`` verbs, ``extensions.py`` the hook through which the engine adds commands of
other parts (``AdminExtensions``, which the engine gives the broker in place of
``run_command``). Reads the broker through its query interface (``function_stats``,
``connections``, ``job_records``, ``cancellable``, ``dead_letters``, ``dead_function``) and
acts through its methods (``set_max_queue``, ``request_shutdown``, ``cancel_job``,
``create_function``, ``drop_function``, ``retry_dead``, ``drop_dead``, ``write``,
``close``): never a write into a broker field. Imports the broker (one way: the broker never
imports admin); must not import sockets, asyncio, threads or the network layer.
"""

from gear.server.admin.commands import run_command

__all__ = ["run_command"]
