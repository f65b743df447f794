"""The sans-I/O core of ``gear.harp``: HarpCaller's requests, replies and worker payloads.

Owns, for every front-end (the synchronous :mod:`gear.harp.client`, the asyncio
:mod:`gear.aio.harp`, and the worker helpers :mod:`gear.threaded.harp_worker` and
:mod:`gear.aio.harp_worker`):

* the exceptions (:class:`HarpException` and its kinds) and the sentinels
  :data:`CALL_NOT_FINISHED` and :data:`CALL_CANCELLED`;
* the request objects, one builder per request of the wire (docs/harp.md, "The wire"), and the
  line framing (:func:`encode`, :func:`decode`);
* the reply -> outcome mapping: :func:`outcome` turns an end reply into the call's value, a
  sentinel or an exception *instance*; :func:`unwrap` raises it. A ``no_result`` or ``continue``
  reply is "not finished", which front-ends must not remember (HarpCaller's own client did, so
  ``get()`` after ``result(wait=False)`` never saw the value);
* the worker convention (docs/harp.md, "The mapping onto Gearman"): the call's arguments from a
  job's data, a stream message / result as one JSON value, an exception as
  ``{"type", "message", "data"}`` JSON.

No sockets, threads or asyncio here; imports nothing of the package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CALL_CANCELLED",
    "CALL_NOT_FINISHED",
    "CallStatus",
    "CancelledException",
    "CommunicationError",
    "HarpCall",
    "HarpException",
    "ProcedureSet",
    "RemoteError",
    "RemoteException",
    "call_arguments",
    "call_request",
    "cancel_request",
    "cancelled_of",
    "decode",
    "encode",
    "encode_exception",
    "encode_value",
    "follow_request",
    "is_final",
    "job_id_of",
    "outcome",
    "read_stream_request",
    "result_request",
    "run_procedure",
    "status_of",
    "status_request",
    "stream_packet",
    "unwrap",
]

#: The ``"harpcaller"`` version every request carries.
VERSION = 1

_UNSET: Any = object()


# -- exceptions and sentinels -------------------------------------------------------------------


class HarpException(Exception):
    """Base class of every exception of ``gear.harp``."""


class CommunicationError(HarpException):
    """The dispatcher could not be reached, closed early or answered something unreadable."""


class CancelledException(HarpException):
    """The call has no value: it was cancelled."""


class _Remote(HarpException):
    def __init__(self, type: str, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.type = type
        self.message = message
        self.data = data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.type!r}, {self.message!r}, {self.data!r})"

    def __eq__(self, other: object) -> bool:
        return (type(other) is type(self) and isinstance(other, _Remote)
                and (self.type, self.message, self.data) == (other.type, other.message,
                                                             other.data))

    __hash__ = HarpException.__hash__


class RemoteException(_Remote):
    """The remote procedure raised an exception: its ``type``, ``message`` and ``data``.

    A procedure served by the worker helpers may raise one itself to choose all three.
    """


class RemoteError(_Remote):
    """The dispatcher could not run the call (timeout, lost worker, unknown id...)."""


class _Sentinel:
    """A named singleton (compared with ``is``; pickles to itself)."""

    def __init__(self, name: str, attribute: str) -> None:
        self._name = name
        self._attribute = attribute

    def __repr__(self) -> str:
        return f"<{self._name}>"

    def __reduce__(self) -> str:
        return self._attribute


#: What a call's result is while it has not ended.
CALL_NOT_FINISHED: Any = _Sentinel("CallNotFinished", "CALL_NOT_FINISHED")
#: A cancelled call's result.
CALL_CANCELLED: Any = _Sentinel("CallCancelled", "CALL_CANCELLED")


# -- framing -------------------------------------------------------------------------------------


class _Compact:
    """``json.dumps(v, separators=(",", ":"), sort_keys=...)``, exactly (the same text, the
    same errors), without what dumps costs per call: ``JSONEncoder.encode`` builds a new C
    encoder on every call (~10k instructions, more than encoding a short value). Here the C
    encoder is made once, without circular-reference markers, so it keeps no state and threads
    may share it; a value it cannot encode for recursing too deep (a circular one, or one
    nested too deep) is encoded again by ``JSONEncoder.encode``, which raises as dumps does.
    Falls back to ``JSONEncoder.encode`` where ``json`` has no C encoder of the expected
    form."""

    __slots__ = ("_encoder", "_plain")

    def __init__(self, sort_keys: bool = False) -> None:
        self._plain = json.JSONEncoder(separators=(",", ":"), sort_keys=sort_keys)
        self._encoder: Any = None
        make = getattr(json.encoder, "c_make_encoder", None)
        if make is None:
            return
        try:
            encoder = make(None, self._plain.default, json.encoder.encode_basestring_ascii,
                           None, ":", ",", sort_keys, False, True)
            probe = {"b": [1, 2.5, None, True, "\u00e9\n", float("nan")], "a": {"x": -1e300}}
            if "".join(encoder(probe, 0)) == self._plain.encode(probe):
                self._encoder = encoder
        except Exception:  # another C signature (Python 3.10's takes a floatstr too)
            pass

    def __call__(self, obj: Any) -> str:
        encoder = self._encoder
        if encoder is None or type(obj) is str:
            return self._plain.encode(obj)
        try:
            return "".join(encoder(obj, 0))
        except RecursionError:
            return self._plain.encode(obj)


#: The JSON codec of HarpCaller's wire, shared with geard's harp port
#: (gear.server.harp.protocol): :data:`compact` and :func:`loads`.
#: Compact JSON (``json.dumps(v, separators=(",", ":"))``), see :class:`_Compact`.
compact = _Compact()


#: The decoder's scanner, called directly: ``JSONDecoder.raw_decode`` is a Python frame
#: around it that only turns its StopIteration into an error (which :func:`loads` leaves to
#: ``json.loads``).
_scan_once = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def loads(data: bytes | str) -> Any:
    """``json.loads(data)``, faster for the usual line: UTF-8 decoded here (no guess of the
    encoding) and no whitespace scans around the value (a line's newline is allowed); anything
    else (a BOM, other whitespace around the value, bad input) goes to ``json.loads`` itself,
    so the result and the errors are exactly its."""
    try:
        text = data.decode() if type(data) is bytes else data
        value, end = _scan_once(text, 0)
        if end == len(text) or text[end:] == "\n":
            return value
    except (ValueError, StopIteration):  # UnicodeDecodeError; no JSON value at the start
        pass
    return json.loads(data)


def encode(request: dict[str, Any]) -> bytes:
    """One request line: compact JSON and a newline."""
    try:
        return compact(request).encode() + b"\n"
    except (TypeError, ValueError) as exc:
        raise HarpException(f"the request is not JSON-serializable: {exc}") from exc


def decode(line: bytes | str) -> Any:
    """A reply line as JSON; an empty line (EOF) or bad JSON is a CommunicationError."""
    if not line:
        raise CommunicationError("unexpected EOF")
    try:
        return loads(line)
    except ValueError as exc:  # UnicodeDecodeError included
        raise CommunicationError(f"invalid JSON from the dispatcher: {exc}") from exc


# -- requests ------------------------------------------------------------------------------------


def call_request(
    host: str,
    procedure: str,
    arguments: list[Any] | tuple[Any, ...] | dict[str, Any],
    *,
    queue: Any = None,
    concurrency: int | None = None,
    timeout: float | None = None,
    max_exec_time: float | None = None,
    info: Any = _UNSET,
) -> dict[str, Any]:
    """A call request; options left as None are not sent (the dispatcher's defaults apply)."""
    req: dict[str, Any] = {
        "harpcaller": VERSION,
        "host": host,
        "procedure": procedure,
        "arguments": dict(arguments) if isinstance(arguments, dict) else list(arguments),
    }
    if queue is not None:
        req["queue"] = {"name": queue}
        if concurrency is not None:
            req["queue"]["concurrency"] = concurrency
    if timeout is not None:
        req["timeout"] = timeout
    if max_exec_time is not None:
        req["max_exec_time"] = max_exec_time
    if info is not _UNSET:
        req["info"] = info
    return req


def cancel_request(job_id: str) -> dict[str, Any]:
    return {"harpcaller": VERSION, "cancel": job_id}


def result_request(job_id: str, wait: bool) -> dict[str, Any]:
    return {"harpcaller": VERSION, "get_result": job_id, "wait": bool(wait)}


def _stream_request(kind: str, job_id: str, since: int | None, recent: int | None
                    ) -> dict[str, Any]:
    if since is not None and recent is not None:
        raise HarpException("give since or recent, not both")
    req: dict[str, Any] = {"harpcaller": VERSION, kind: job_id}
    if since is not None:
        req["since"] = since
    if recent is not None:
        req["recent"] = recent
    return req


def follow_request(job_id: str, since: int | None = None, recent: int | None = None
                   ) -> dict[str, Any]:
    """Stored packets then live ones until the end reply (neither given: ``recent`` 0)."""
    return _stream_request("follow_stream", job_id, since, recent)


def read_stream_request(job_id: str, since: int | None = None, recent: int | None = None
                        ) -> dict[str, Any]:
    """The stored packets then ``continue`` or the end reply (neither given: ``since`` 0)."""
    return _stream_request("read_stream", job_id, since, recent)


def status_request(job_id: str) -> dict[str, Any]:
    return {"harpcaller": VERSION, "get_status": job_id}


# -- replies -------------------------------------------------------------------------------------


def _remote(kind: type[_Remote], body: Any) -> _Remote:
    if not isinstance(body, dict):
        return kind("unknown", str(body))
    return kind(str(body.get("type", "unknown")), str(body.get("message", "")), body.get("data"))


def outcome(reply: Any) -> Any:
    """An end reply (or ``no_result`` / ``continue``) as the call's outcome: its value,
    :data:`CALL_NOT_FINISHED`, :data:`CALL_CANCELLED`, or an exception instance
    (RemoteException, RemoteError, CommunicationError for a reply of no known shape)."""
    if not isinstance(reply, dict):
        return CommunicationError(f"unexpected reply from the dispatcher: {reply!r}")
    if reply.get("no_result") or reply.get("continue"):
        return CALL_NOT_FINISHED
    if reply.get("cancelled"):
        return CALL_CANCELLED
    if "result" in reply:
        return reply["result"]
    if "exception" in reply:
        return _remote(RemoteException, reply["exception"])
    if "error" in reply:
        return _remote(RemoteError, reply["error"])
    return CommunicationError(f"unexpected reply from the dispatcher: {reply!r}")


def is_final(value: Any) -> bool:
    """Whether an outcome is the call's end (worth remembering): not "not finished", and not a
    communication failure (asking again may succeed)."""
    return value is not CALL_NOT_FINISHED and not isinstance(value, CommunicationError)


def unwrap(value: Any) -> Any:
    """The value of an outcome, raising it if it is an exception or a cancellation."""
    if isinstance(value, BaseException):
        raise value
    if value is CALL_CANCELLED:
        raise CancelledException("the call was cancelled")
    return value


def _check_error(reply: Any) -> dict[str, Any]:
    if not isinstance(reply, dict):
        raise CommunicationError(f"unexpected reply from the dispatcher: {reply!r}")
    if "error" in reply:
        raise _remote(RemoteError, reply["error"])
    return reply


def job_id_of(reply: Any) -> str:
    """The job id of a call reply; an error reply raises RemoteError."""
    job_id = _check_error(reply).get("job_id")
    if not isinstance(job_id, str):
        raise CommunicationError(f"unexpected reply to a call request: {reply!r}")
    return job_id


def cancelled_of(reply: Any) -> bool:
    """Whether a cancel request stopped the call."""
    value = _check_error(reply).get("cancelled")
    if not isinstance(value, bool):
        raise CommunicationError(f"unexpected reply to a cancel request: {reply!r}")
    return value


def stream_packet(reply: Any) -> tuple[int, Any] | None:
    """A stream line as ``(packet number, message)``; None for the line that ends the stream."""
    if isinstance(reply, dict) and "packet" in reply:
        return reply["packet"], reply.get("data")
    return None


@dataclass(frozen=True)
class CallStatus:
    """A get_status reply: what was called, the times (integer unix seconds or None), info."""

    procedure: str
    arguments: Any
    host: str
    submit: int | None
    start: int | None
    end: int | None
    info: Any


def status_of(reply: Any) -> CallStatus:
    """A get_status reply as :class:`CallStatus`; an error reply raises RemoteError."""
    body = _check_error(reply)
    call, times = body.get("call"), body.get("time")
    if not isinstance(call, dict) or not isinstance(times, dict):
        raise CommunicationError(f"unexpected reply to a status request: {reply!r}")
    return CallStatus(call.get("procedure", ""), call.get("arguments"), call.get("host", ""),
                      times.get("submit"), times.get("start"), times.get("end"),
                      body.get("info"))


# -- the worker convention -----------------------------------------------------------------------


def call_arguments(data: bytes) -> tuple[list[Any], dict[str, Any]]:
    """A job's data as positional and keyword arguments: a JSON array is positional, an object
    keyword arguments; empty data is no arguments; any other JSON value is one argument."""
    if not data:
        return [], {}
    value = loads(data)
    if isinstance(value, list):
        return value, {}
    if isinstance(value, dict):
        return [], value
    return [value], {}


def encode_value(value: Any) -> bytes:
    """A stream message or a result as one JSON value (TypeError if it is not serializable)."""
    return compact(value).encode()


def encode_exception(exc: BaseException) -> bytes:
    """An exception as ``{"type", "message", "data"}``: a RemoteException keeps its three;
    others give their class name, ``str(exc)`` and their ``data`` attribute if it has one."""
    if isinstance(exc, _Remote):
        body = {"type": exc.type, "message": exc.message, "data": exc.data}
    else:
        body = {"type": type(exc).__name__, "message": str(exc),
                "data": getattr(exc, "data", None)}
    try:
        return encode_value(body)
    except (TypeError, ValueError):
        body["data"] = repr(body["data"])
        return encode_value(body)


class HarpCall:
    """One call as a procedure served by the worker helpers sees it (``pass_call=True``).

    ``cancelled`` is true once the call is cancelled: geard cancelled its Gearman job (the
    job's ``cancelled`` flag, set by geard's JOB_CANCEL, docs/protocol.md §1.7: a harp cancel,
    ``timeout``, ``max_exec_time``, admin ``cancel job``) or the application called
    :meth:`cancel`. The helpers check it before each stream message and, once it is true,
    close the procedure's generator and end the Gearman job with WORK_FAIL, sending nothing
    more; a long plain function may poll it to stop early.
    """

    __slots__ = ("_cancelled", "host", "job", "job_id", "procedure")

    def __init__(self, function: str, job_id: str, job: Any = None) -> None:
        self.host, _, self.procedure = function.partition("/")
        #: The call's id (the Gearman unique of the job, as geard submits it).
        self.job_id = job_id
        #: The Gearman job of the worker API in use (threaded WorkerJob or gear.aio WorkerJob).
        self.job = job
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        """Whether the call was cancelled (by geard through its job, or by :meth:`cancel`)."""
        return self._cancelled or getattr(self.job, "cancelled", False) is True

    def cancel(self) -> None:
        """Mark the call cancelled: the helper stops it at the next stream message."""
        self._cancelled = True

    def __repr__(self) -> str:
        return f"<HarpCall {self.host}/{self.procedure} {self.job_id}>"


#: What a served call ended as: ("complete" | "exception", payload) or ("cancelled", b"").
Ending = tuple[str, bytes]


def run_procedure(fn: Any, call: HarpCall, data: bytes, send_data: Any,
                  pass_call: bool = False) -> Ending:
    """Run a plain function or generator for ``call`` with the job's ``data`` as arguments.

    A generator's yields go to ``send_data`` (one JSON value each), its return value is the
    result; a plain function's return value is the result; any exception (bad arguments and
    unserializable values included) is the exception reply. Blocking: the caller runs it in
    a thread of its own.
    """
    gen = None
    try:
        args, kwargs = call_arguments(data)
        if pass_call:
            args = [call, *args]
        value = fn(*args, **kwargs)
        if hasattr(value, "__next__") and hasattr(value, "send"):  # a generator
            gen = value
            while True:
                if call.cancelled:
                    gen.close()
                    return "cancelled", b""
                try:
                    item = next(gen)
                except StopIteration as stop:
                    value = stop.value
                    break
                if call.cancelled:  # while it worked on this message: stop at its yield
                    gen.close()
                    return "cancelled", b""
                send_data(encode_value(item))
        if call.cancelled:
            return "cancelled", b""
        return "complete", encode_value(value)
    except Exception as exc:
        if gen is not None:
            gen.close()
        return "exception", encode_exception(exc)


class ProcedureSet:
    """What both worker helpers share: a host, and the :meth:`procedure` decorator over the
    helper's ``register(name, fn, pass_call=, timeout=)``."""

    def __init__(self, host: str) -> None:
        self.host = host
        #: The calls running now, by Gearman handle (where a cancel signal will be delivered).
        self.running: dict[bytes, HarpCall] = {}

    def function_name(self, name: str) -> str:
        """The Gearman function of procedure ``name``: ``host/name``."""
        return f"{self.host}/{name}"

    def register(self, name: str, fn: Any, *, pass_call: bool = False,
                 timeout: float | None = None) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def procedure(self, name: str | None = None, *, pass_call: bool = False,
                  timeout: float | None = None) -> Any:
        """Decorator form of ``register`` (the name defaults to the function's)."""
        def decorate(fn: Any) -> Any:
            self.register(name or fn.__name__, fn, pass_call=pass_call, timeout=timeout)
            return fn
        return decorate
