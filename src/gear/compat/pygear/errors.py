"""pygear's exceptions and libgearman's return codes, by pygear's names.

pygear raises one exception class per libgearman return code (``pygear.TIMEOUT``,
``pygear.NO_SERVERS``, ...) plus ``pygear.ERROR`` for its own failures; the class names are
kept exactly (upper case, on purpose: code says ``except pygear.TIMEOUT``). pygear made each a
direct subclass of ``Exception``; ours are also :class:`gear.errors.GearmanError` subclasses
(through :class:`PygearError`), which adds a common base and changes no ``except`` clause.
``ERROR`` stays a sibling of the others, as in pygear, so ``except pygear.ERROR`` does not start
catching timeouts. Every exception has ``code``, the libgearman return code number (``ERROR``'s
is ``WORK_ERROR``'s, libgearman's ``GEARMAN_ERROR``).

:data:`RETURN_CODES` is libgearman 1.1's ``gearman_return_t`` in order (the numbers
``Task.returncode()`` and ``describe_returncode`` use), docs/migrating.md §"From pygear".

Imports only ``gear.errors``.
"""

from __future__ import annotations

from gear.errors import GearmanError

#: libgearman 1.1's gearman_return_t names, value = index (libgearman-1.0/return.h).
RETURN_CODES: tuple[str, ...] = (
    "SUCCESS", "IO_WAIT", "SHUTDOWN", "SHUTDOWN_GRACEFUL", "ERRNO", "EVENT", "TOO_MANY_ARGS",
    "NO_ACTIVE_FDS", "INVALID_MAGIC", "INVALID_COMMAND", "INVALID_PACKET", "UNEXPECTED_PACKET",
    "GETADDRINFO", "NO_SERVERS", "LOST_CONNECTION", "MEMORY_ALLOCATION_FAILURE", "JOB_EXISTS",
    "JOB_QUEUE_FULL", "SERVER_ERROR", "WORK_ERROR", "WORK_DATA", "WORK_WARNING", "WORK_STATUS",
    "WORK_EXCEPTION", "WORK_FAIL", "NOT_CONNECTED", "COULD_NOT_CONNECT", "SEND_IN_PROGRESS",
    "RECV_IN_PROGRESS", "NOT_FLUSHING", "DATA_TOO_LARGE", "INVALID_FUNCTION_NAME",
    "INVALID_WORKER_FUNCTION", "NO_REGISTERED_FUNCTION", "NO_REGISTERED_FUNCTIONS", "NO_JOBS",
    "ECHO_DATA_CORRUPTION", "NEED_WORKLOAD_FN", "PAUSE", "UNKNOWN_STATE", "PTHREAD", "PIPE_EOF",
    "QUEUE_ERROR", "FLUSH_DATA", "SEND_BUFFER_TOO_SMALL", "IGNORE_PACKET", "UNKNOWN_OPTION",
    "TIMEOUT", "ARGUMENT_TOO_LARGE", "INVALID_ARGUMENT", "IN_PROGRESS", "INVALID_SERVER_OPTION",
    "JOB_NOT_FOUND", "MAX_RETURN",
)
CODE: dict[str, int] = {name: number for number, name in enumerate(RETURN_CODES)}


def describe_returncode(code: int) -> str:
    """pygear's ``describe_returncode``: the name of a return code, ``GEARMAN_UNKNOWN`` if none."""
    if isinstance(code, int) and 0 <= code < len(RETURN_CODES):
        return RETURN_CODES[code]
    return "GEARMAN_UNKNOWN"


class PygearError(GearmanError):
    """Base of every pygear exception (pygear itself had none; see the module docstring)."""

    #: The name of the return code; each subclass sets it to its own name.
    name = "ERROR"

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls.name = cls.__name__

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or (self.name,)))

    @property
    def code(self) -> int:
        return CODE.get(self.name, CODE["WORK_ERROR"])


class ERROR(PygearError):
    """pygear's own failures: admin replies it cannot read, a worker callback that failed."""


# One class per libgearman return code pygear registers (pygear.c's INIT_EXN list).
class SHUTDOWN(PygearError): """GEARMAN_SHUTDOWN."""
class SHUTDOWN_GRACEFUL(PygearError): """GEARMAN_SHUTDOWN_GRACEFUL."""
class ERRNO(PygearError): """GEARMAN_ERRNO: a system call failed."""
class EVENT(PygearError): """GEARMAN_EVENT (server only in libgearman)."""
class TOO_MANY_ARGS(PygearError): """GEARMAN_TOO_MANY_ARGS."""
class NO_ACTIVE_FDS(PygearError): """GEARMAN_NO_ACTIVE_FDS: no server connection is up."""
class INVALID_MAGIC(PygearError): """GEARMAN_INVALID_MAGIC."""
class INVALID_COMMAND(PygearError): """GEARMAN_INVALID_COMMAND."""
class INVALID_PACKET(PygearError): """GEARMAN_INVALID_PACKET: bytes that are not the protocol."""
class UNEXPECTED_PACKET(PygearError): """GEARMAN_UNEXPECTED_PACKET."""
class GETADDRINFO(PygearError): """GEARMAN_GETADDRINFO: a server address does not resolve."""
class NO_SERVERS(PygearError): """GEARMAN_NO_SERVERS: no server was added."""
class LOST_CONNECTION(PygearError): """GEARMAN_LOST_CONNECTION: a server went away mid-call."""
class MEMORY_ALLOCATION_FAILURE(PygearError): """GEARMAN_MEMORY_ALLOCATION_FAILURE."""
class JOB_EXISTS(PygearError): """GEARMAN_JOB_EXISTS."""
class JOB_QUEUE_FULL(PygearError): """GEARMAN_JOB_QUEUE_FULL: the function's queue is full."""
class SERVER_ERROR(PygearError): """GEARMAN_SERVER_ERROR: the server answered ERROR."""
class WORK_ERROR(PygearError): """GEARMAN_WORK_ERROR."""
class WORK_DATA(PygearError): """GEARMAN_WORK_DATA."""
class WORK_WARNING(PygearError): """GEARMAN_WORK_WARNING."""
class WORK_STATUS(PygearError): """GEARMAN_WORK_STATUS."""
class WORK_EXCEPTION(PygearError): """GEARMAN_WORK_EXCEPTION: the worker sent WORK_EXCEPTION."""
class WORK_FAIL(PygearError): """GEARMAN_WORK_FAIL: the job failed."""
class NOT_CONNECTED(PygearError): """GEARMAN_NOT_CONNECTED."""
class COULD_NOT_CONNECT(PygearError): """GEARMAN_COULD_NOT_CONNECT: no server accepted us."""
class SEND_IN_PROGRESS(PygearError): """GEARMAN_SEND_IN_PROGRESS (server only)."""
class RECV_IN_PROGRESS(PygearError): """GEARMAN_RECV_IN_PROGRESS (server only)."""
class NOT_FLUSHING(PygearError): """GEARMAN_NOT_FLUSHING."""
class DATA_TOO_LARGE(PygearError): """GEARMAN_DATA_TOO_LARGE."""
class INVALID_FUNCTION_NAME(PygearError): """GEARMAN_INVALID_FUNCTION_NAME."""
class INVALID_WORKER_FUNCTION(PygearError): """GEARMAN_INVALID_WORKER_FUNCTION."""
class NO_REGISTERED_FUNCTION(PygearError): """GEARMAN_NO_REGISTERED_FUNCTION."""
class NO_REGISTERED_FUNCTIONS(PygearError): """GEARMAN_NO_REGISTERED_FUNCTIONS."""
class NO_JOBS(PygearError): """GEARMAN_NO_JOBS."""
class ECHO_DATA_CORRUPTION(PygearError): """GEARMAN_ECHO_DATA_CORRUPTION: ECHO came back changed."""
class NEED_WORKLOAD_FN(PygearError): """GEARMAN_NEED_WORKLOAD_FN."""
class UNKNOWN_STATE(PygearError): """GEARMAN_UNKNOWN_STATE."""
class PTHREAD(PygearError): """GEARMAN_PTHREAD (server only)."""
class PIPE_EOF(PygearError): """GEARMAN_PIPE_EOF (server only)."""
class QUEUE_ERROR(PygearError): """GEARMAN_QUEUE_ERROR (server only)."""
class FLUSH_DATA(PygearError): """GEARMAN_FLUSH_DATA (internal)."""
class SEND_BUFFER_TOO_SMALL(PygearError): """GEARMAN_SEND_BUFFER_TOO_SMALL."""
class IGNORE_PACKET(PygearError): """GEARMAN_IGNORE_PACKET (internal)."""
class UNKNOWN_OPTION(PygearError): """GEARMAN_UNKNOWN_OPTION."""
class TIMEOUT(PygearError): """GEARMAN_TIMEOUT: nothing came within the timeout."""
class ARGUMENT_TOO_LARGE(PygearError): """GEARMAN_ARGUMENT_TOO_LARGE."""
class INVALID_ARGUMENT(PygearError): """GEARMAN_INVALID_ARGUMENT."""
class INVALID_SERVER_OPTION(PygearError): """GEARMAN_INVALID_SERVER_OPTION."""
class MAX_RETURN(PygearError): """GEARMAN_MAX_RETURN."""


#: Every exception by name, as pygear's module has them.
EXCEPTIONS: dict[str, type[PygearError]] = {
    cls.__name__: cls
    for cls in (
        ERROR, SHUTDOWN, SHUTDOWN_GRACEFUL, ERRNO, EVENT, TOO_MANY_ARGS, NO_ACTIVE_FDS,
        INVALID_MAGIC, INVALID_COMMAND, INVALID_PACKET, UNEXPECTED_PACKET, GETADDRINFO,
        NO_SERVERS, LOST_CONNECTION, MEMORY_ALLOCATION_FAILURE, JOB_EXISTS, JOB_QUEUE_FULL,
        SERVER_ERROR, WORK_ERROR, WORK_DATA, WORK_WARNING, WORK_STATUS, WORK_EXCEPTION,
        WORK_FAIL, NOT_CONNECTED, COULD_NOT_CONNECT, SEND_IN_PROGRESS, RECV_IN_PROGRESS,
        NOT_FLUSHING, DATA_TOO_LARGE, INVALID_FUNCTION_NAME, INVALID_WORKER_FUNCTION,
        NO_REGISTERED_FUNCTION, NO_REGISTERED_FUNCTIONS, NO_JOBS, ECHO_DATA_CORRUPTION,
        NEED_WORKLOAD_FN, UNKNOWN_STATE, PTHREAD, PIPE_EOF, QUEUE_ERROR, FLUSH_DATA,
        SEND_BUFFER_TOO_SMALL, IGNORE_PACKET, UNKNOWN_OPTION, TIMEOUT, ARGUMENT_TOO_LARGE,
        INVALID_ARGUMENT, INVALID_SERVER_OPTION, MAX_RETURN,
    )
}

__all__ = ["CODE", "EXCEPTIONS", "RETURN_CODES", "PygearError", "describe_returncode",
           *EXCEPTIONS]
