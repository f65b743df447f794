"""pygear's serializer rule: every workload, result and WORK_* payload goes through an object
with ``dumps`` and ``loads`` (JSON by default since pygear 0.4).

On Python 3 the wire carries bytes, so: ``dumps`` may return ``str`` (sent UTF-8 encoded) or
bytes-like (sent as is); ``loads`` is given the payload as ``bytes`` (``json.loads`` and
``pickle.loads`` both take bytes). The default JSON serializer also accepts ``bytes`` values
(read as UTF-8 text), since pygear's Python 2 callers passed byte strings to ``json.dumps``.

Imports nothing from the package but the pygear exceptions.
"""

from __future__ import annotations

import json
from typing import Any


def _text(value: object) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class JSONSerializer:
    """The default: ``json``, with byte strings read as UTF-8 text."""

    @staticmethod
    def dumps(value: Any) -> str:
        return json.dumps(value, default=_text)

    @staticmethod
    def loads(data: bytes | str) -> Any:
        return json.loads(data)


DEFAULT = JSONSerializer()


def check(serializer: Any) -> Any:
    """pygear's ``set_serializer`` check: AttributeError unless it has ``loads`` and ``dumps``."""
    if not hasattr(serializer, "loads"):
        raise AttributeError("Serializer does not implement 'loads'")
    if not hasattr(serializer, "dumps"):
        raise AttributeError("Serializer does not implement 'dumps'")
    return serializer


def dumps(serializer: Any, value: Any) -> bytes:
    """``serializer.dumps(value)`` as the bytes to send."""
    out = serializer.dumps(value)
    if isinstance(out, str):
        return out.encode("utf-8")
    if isinstance(out, (bytes, bytearray, memoryview)):
        return bytes(out)
    raise TypeError(f"{type(serializer).__name__}.dumps must return str or bytes, "
                    f"not {type(out).__name__}")


def loads(serializer: Any, data: bytes | None) -> Any:
    """``serializer.loads(data)``; None for no data or an empty payload (pygear's rule)."""
    if not data:
        return None
    return serializer.loads(data)


def text(value: str | bytes | None) -> bytes:
    """A function name, unique or handle as bytes (str is UTF-8 encoded)."""
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def decoded(value: bytes | None) -> str | None:
    """Bytes from the wire (a handle, a function name, a unique) as str, None for None."""
    if value is None:
        return None
    return value.decode("utf-8", "replace")
