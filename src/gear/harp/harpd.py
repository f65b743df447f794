"""The sans-I/O core of harpd's direct protocol: requests, replies and the ``procedure`` mark.

harpd (HarpCaller's worker daemon) takes one call per TLS connection (docs/harp.md, "Direct
calls: harpd's protocol"): the client sends one JSON line ``{"harp": 1, "auth": {"user",
"password"}, "procedure", "arguments"}``; the daemon answers ``{"harp": 1, "stream_result":
bool}``, then for a stream ``{"stream": v}`` lines, and the end: ``{"result": v}``,
``{"exception": {"type", "message", "data"}}`` or ``{"harp": 1, "error": {"type",
"message"[, "data"]}}`` (an error may also come first, instead of the header).

Owns, for the client (:mod:`gear.harp.direct`) and the daemon's listener
(:mod:`gear.harp.listener`): the request builder and its validation (:func:`parse_request`,
raising :class:`RequestError`), the reply builders, the reply -> value mapping (:func:`header_of`,
:func:`end_of`, :func:`stream_item`), :class:`Result`, and the :func:`procedure` decorator
that marks a function for ``gear-harpd``. No sockets or threads; imports only
:mod:`gear.harp.messages`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gear.harp.messages import CommunicationError, HarpException, RemoteError, outcome, unwrap

__all__ = [
    "DEFAULT_PORT",
    "MAX_REQUEST",
    "DirectRequest",
    "RequestError",
    "Result",
    "call_request",
    "end_of",
    "error_reply",
    "header_of",
    "header_reply",
    "marked_procedures",
    "parse_request",
    "procedure",
    "stream_item",
]

#: harpd's port.
DEFAULT_PORT = 4306

#: The longest request line the listener reads (bytes, newline included).
MAX_REQUEST = 1 << 20

#: The attribute :func:`procedure` sets: ``(name, pass_call)``.
MARK = "__harp_procedure__"

F = TypeVar("F", bound=Callable[..., Any])


class Result:
    """The end value of a streamed call: the last item a :class:`HarpStreamIterator` gives.

    ``value`` is the procedure's return value."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__} {self.value!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Result) and other.value == self.value

    def __hash__(self) -> int:
        return hash(repr(self.value))


class RequestError(RemoteError):
    """A request the daemon refuses (what the client sees as RemoteError); :meth:`reply` is
    the error line it sends."""

    def reply(self) -> dict[str, Any]:
        return error_reply(self.type, self.message, self.data)


@dataclass(frozen=True)
class DirectRequest:
    """One call request, validated."""

    user: str
    password: str
    procedure: str
    arguments: list[Any] | dict[str, Any]


# -- the client side ------------------------------------------------------------------------------


def call_request(user: str, password: str, procedure: str, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> dict[str, Any]:
    """The request of one call: positional or keyword arguments, never both."""
    if args and kwargs:
        raise HarpException("mixed keyword and positional arguments")
    return {"harp": 1, "auth": {"user": user, "password": password}, "procedure": procedure,
            "arguments": dict(kwargs) if kwargs else list(args)}


def header_of(reply: Any) -> bool:
    """Whether the call streams, from the first reply; raises its error (RemoteError: the
    daemon refused the call, ``auth_error`` for a wrong password) or CommunicationError."""
    if reply is None:
        raise CommunicationError("unexpected EOF")
    if isinstance(reply, dict) and "error" in reply:
        unwrap(outcome({"error": reply["error"]}))
    stream = reply.get("stream_result") if isinstance(reply, dict) else None
    if not isinstance(stream, bool):
        raise CommunicationError(f"malformed reply: {reply!r}")
    return stream


def end_of(reply: Any) -> Any:
    """The value of an end reply; raises RemoteException (the procedure raised), RemoteError
    (the daemon failed the call) or CommunicationError (EOF or anything else). The shapes are
    HarpCaller's end replies (:func:`gear.harp.messages.outcome`)."""
    if reply is None:
        raise CommunicationError("unexpected EOF")
    if not (isinstance(reply, dict) and reply.keys() & {"result", "exception", "error"}):
        raise CommunicationError("invalid message carrying call result")
    return unwrap(outcome(reply))


def stream_item(reply: Any) -> Any:
    """One item of a stream: the message, or a :class:`Result` for the end (else raises, as
    :func:`end_of`)."""
    if isinstance(reply, dict) and "stream" in reply:
        return reply["stream"]
    return Result(end_of(reply))


# -- the daemon side ------------------------------------------------------------------------------


def error_reply(type: str, message: str, data: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type, "message": message}
    if data is not None:
        body["data"] = data
    return {"harp": 1, "error": body}


def header_reply(stream: bool) -> dict[str, Any]:
    return {"harp": 1, "stream_result": stream}


def parse_request(line: bytes) -> DirectRequest:
    """Validate one request line (RequestError with harpd's types: ``invalid_request``,
    ``parse_error``, ``invalid_argument_list``)."""
    try:
        request = json.loads(line)
    except ValueError as exc:
        raise RequestError("parse_error", str(exc)) from None
    if not isinstance(request, dict):
        raise RequestError("invalid_request", "invalid request data type")
    if request.get("harp") != 1:
        raise RequestError("invalid_request", "unsupported protocol version")
    auth = request.get("auth")
    if not (isinstance(auth, dict) and isinstance(auth.get("user"), str)
            and isinstance(auth.get("password"), str)):
        raise RequestError("invalid_request", "malformed credentials data")
    name = request.get("procedure")
    arguments = request.get("arguments")
    if not isinstance(name, str) or "arguments" not in request:
        raise RequestError("invalid_request", "invalid request")
    if not isinstance(arguments, (list, dict)):
        raise RequestError("invalid_argument_list", "argument list is neither a list nor a hash")
    return DirectRequest(auth["user"], auth["password"], name, arguments)


# -- marking procedures ---------------------------------------------------------------------------


def procedure(name: str | None = None, *, pass_call: bool = False) -> Callable[[F], F]:
    """Mark a function (or generator) as a procedure for ``gear-harpd`` (docs/harp.md,
    "gear-harpd"); ``name`` defaults to the function's. Leaves the function as it is."""
    def mark(fn: F) -> F:
        setattr(fn, MARK, (name or fn.__name__, pass_call))
        return fn
    return mark


def marked_procedures(namespace: dict[str, Any]) -> dict[str, tuple[Callable[..., Any], bool]]:
    """The procedures of a module's namespace: ``{name: (fn, pass_call)}`` from its
    ``PROCEDURES`` dict (name -> function) and the functions marked with :func:`procedure`."""
    found: dict[str, tuple[Callable[..., Any], bool]] = {}
    table = namespace.get("PROCEDURES")
    if table is not None:
        if not isinstance(table, dict):
            raise TypeError("PROCEDURES must be a dict of name -> function")
        for key, fn in table.items():
            if not callable(fn):
                raise TypeError(f"PROCEDURES[{key!r}] is not callable")
            found[str(key)] = (fn, False)
    for value in namespace.values():
        mark = getattr(value, MARK, None) if callable(value) else None
        if isinstance(mark, tuple):
            found[mark[0]] = (value, mark[1])
    return found
