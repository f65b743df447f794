"""``geard --config FILE``: command-line options from a TOML file (docs/server.md, Options).

Every option of ``geard`` has a key: its long name without the dashes, written with dashes or
underscores (``port = 4731``, ``data-dir = "/srv/geard"``, ``shutdown_timeout = 10.0``). Flags
take booleans (``nodaemon = true``; ``no-uvloop = true`` is ``uvloop = false``); sizes take a
number of bytes or a string with a unit (``output-limit-hard = "64M"``). The file's
values become the parser's defaults, so anything given on the command line wins. An unknown
key or a value of the wrong type is a :class:`~gear.errors.ConfigurationError` naming the key.

TOML is read with ``tomllib`` (Python 3.11+) or the ``tomli`` package (a dependency on 3.10).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gear.errors import ConfigurationError
from gear.server.config import parse_size

#: Options that are actions rather than settings: they have no key.
NOT_KEYS = frozenset({"help", "version", "config"})


def _toml_load(path: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        try:
            import tomli as tomllib
        except ImportError as exc:
            raise ConfigurationError("--config needs the tomli package on Python 3.10 "
                                     "(pip install tomli)") from exc
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigurationError(f"cannot read config file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config file {path}: not valid TOML: {exc}") from exc


def option_keys(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Key (long option name, underscores) -> its action, for every option that has one."""
    keys: dict[str, argparse.Action] = {}
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--"):
                key = option[2:].replace("-", "_")
                if key not in NOT_KEYS:
                    keys[key] = action
    return keys


def _convert(path: str, key: str, action: argparse.Action, value: Any) -> Any:
    """``value`` as the parser would store it for ``action``, or a ConfigurationError."""

    def wrong(expected: str) -> ConfigurationError:
        return ConfigurationError(
            f"config file {path}: {key} must be {expected}, not {type(value).__name__} "
            f"{value!r}")

    if isinstance(action, argparse._StoreConstAction):  # store_true / store_false
        if not isinstance(value, bool):
            raise wrong("true or false")
        return action.const if value else (not action.const)
    kind = action.type
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong("a number")
        return float(value)
    if kind is parse_size and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # sizes: a number of bytes, or a string with a unit ("64M")
    if not isinstance(value, str):
        raise wrong("a string")
    if callable(kind):
        try:
            value = kind(value)
        except ValueError as exc:
            raise ConfigurationError(f"config file {path}: {key}: {exc}") from exc
    if action.choices is not None and value not in action.choices:
        raise ConfigurationError(
            f"config file {path}: {key} must be one of {', '.join(map(str, action.choices))}, "
            f"not {value!r}")
    return value


def apply_config_file(parser: argparse.ArgumentParser, path: str) -> None:
    """Make the options in TOML file ``path`` the defaults of ``parser``."""
    data = _toml_load(path)
    keys = option_keys(parser)
    defaults: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        action = keys.get(key)
        if action is None:
            raise ConfigurationError(
                f"config file {path}: unknown key {raw_key!r} (keys are geard's long option "
                f"names, see geard --help)")
        defaults[action.dest] = _convert(path, raw_key, action, value)
    parser.set_defaults(**defaults)


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv`` with ``--config FILE`` applied first (the command line wins)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.config:
        apply_config_file(parser, known.config)
    return parser.parse_args(argv)
