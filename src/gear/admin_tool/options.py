"""gear-admin's command line, read the way gearadmin 1.1 reads its own (docs/gear-admin.md §4).

gearadmin parses its options with Boost.Program_options' default command-line style; to give
the same answer to every command line, this module reproduces that style's rules rather than
using :mod:`argparse`:

* long options: ``--name value``, ``--name=value``, and any unambiguous prefix of a name
  (``--stat`` is ``--status``); the value of an option that takes one is the next word whatever
  it looks like (``-p --status`` sets the port to ``--status``);
* short options: ``-h HOST``, ``-hHOST``, and several switches in one word (``-Sp1``);
* ``--`` ends the options; any other word not starting with ``-`` (and ``-`` itself) is ignored;
* an option given twice is an error; the first error of the scan is the one reported, with
  Boost's wording (:class:`OptionError`).

Our additions (:data:`EXTRA_OPTIONS`) take part in prefix matching only when no gearadmin
option matches, so every prefix gearadmin resolves or calls ambiguous reads the same here.

Pure: no I/O. Imports nothing of the package.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EXTRA_HELP", "GEARADMIN_HELP", "OPTIONS", "SUBCOMMANDS", "OptionError", "parse",
           "subcommand_at"]


@dataclass(frozen=True)
class Option:
    """One option: its long name, its one-letter name (or ""), and whether it takes a value."""

    name: str
    short: str = ""
    takes_value: bool = False


#: gearadmin 1.1.20's options, in its --help order.
GEARADMIN_OPTIONS = (
    Option("help"),
    Option("host", "h", True),
    Option("port", "p", True),
    Option("server-version"),
    Option("server-verbose"),
    Option("create-function", takes_value=True),
    Option("cancel-job", takes_value=True),
    Option("drop-function", takes_value=True),
    Option("show-unique-jobs"),
    Option("show-jobs"),
    Option("getpid"),
    Option("status"),
    Option("priority-status"),
    Option("workers"),
    Option("ssl", "S"),
)

#: What gear-admin adds (docs/gear-admin.md §3).
EXTRA_OPTIONS = (
    Option("shutdown"),
    Option("graceful"),
    Option("ssl-ca", takes_value=True),
    Option("ssl-cert", takes_value=True),
    Option("ssl-key", takes_value=True),
    Option("timeout", takes_value=True),
)

OPTIONS = GEARADMIN_OPTIONS + EXTRA_OPTIONS
_BY_NAME = {o.name: o for o in OPTIONS}
_BY_SHORT = {o.short: o for o in OPTIONS if o.short}

#: gearadmin's option description, byte for byte as it prints it.
GEARADMIN_HELP = """\
Options:
  --help                         Options related to the program.
  -h [ --host ] arg (=localhost) Connect to the host
  -p [ --port ] arg (=4730)      Port number or service to use for connection
  --server-version               Fetch the version number for the server.
  --server-verbose               Fetch the verbose setting for the server.
  --create-function arg          Create the function from the server.
  --cancel-job arg               Remove a given job from the server's queue
  --drop-function arg            Drop the function from the server.
  --show-unique-jobs             Show unique IDs of jobs on the server.
  --show-jobs                    Show all jobs on the server.
  --getpid                       Get Process ID for the server.
  --status                       Status for the server.
  --priority-status              Queued jobs status by priority.
  --workers                      Workers for the server.
  -S [ --ssl ]                   Enable SSL connections.
"""

#: Printed after :data:`GEARADMIN_HELP` (and its blank line): what gearadmin does not have.
EXTRA_HELP = """\
gear-admin additions:
  --shutdown                     Stop the server (geard's admin "shutdown").
  --graceful                     With --shutdown: let running jobs finish first.
  --ssl-ca arg                   TLS: CA file the server's certificate must chain to.
  --ssl-cert arg                 TLS: client certificate file (mutual TLS).
  --ssl-key arg                  TLS: client private key file (mutual TLS).
  --timeout arg                  Seconds to wait for the server (default: no limit).

  gear-admin top [-h HOST] [-p PORT] [--interval SECONDS] [TLS options]
                                 A live full-screen view of the functions.
  gear-admin dead ACTION [...]   geard's dead-letter list: list, retry, drop
                                 (gear-admin dead --help).
  gear-admin harp ACTION [...]   geard's HarpCaller records: list, info, cancel,
                                 queue-list, queue-cancel, prune-jobs.
"""


class OptionError(Exception):
    """A command line gearadmin refuses; ``str()`` is Boost's message."""


def parse(argv: list[str]) -> dict[str, str | None]:
    """The options of ``argv`` (without the program name): long name -> value (None for a
    switch). Options not given are absent; defaults are the caller's. Raises
    :class:`OptionError` with gearadmin's message for the first error."""
    found: list[tuple[Option, str | None]] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if word == "--":
            break  # the rest are positional words: ignored
        if word.startswith("--"):
            i = _long(word, argv, i, found)
        elif word.startswith("-") and len(word) > 1:
            i = _short(word, argv, i, found)
        # anything else is a positional word, which gearadmin ignores
    values: dict[str, str | None] = {}
    for option, value in found:
        if option.name in values:
            raise OptionError(f"option '--{option.name}' cannot be specified more than once")
        values[option.name] = value
    return values


#: The words that, as the first positional word, run one of gear-admin's subcommands.
SUBCOMMANDS = ("top", "dead", "harp")


def subcommand_at(argv: list[str]) -> int | None:
    """Where in ``argv`` a subcommand's word is (the first positional word, when it is one of
    :data:`SUBCOMMANDS`), read with the option rules of :func:`parse` so that an option's
    value (``-h top``) is not taken for it; None when there is none or an option is wrong."""
    found: list[tuple[Option, str | None]] = []
    i = 0
    try:
        while i < len(argv):
            word = argv[i]
            if word == "--":
                return None
            if word.startswith("--"):
                i = _long(word, argv, i + 1, found)
            elif word.startswith("-") and len(word) > 1:
                i = _short(word, argv, i + 1, found)
            else:
                return i if word in SUBCOMMANDS else None
    except OptionError:
        return None
    return None


def _long(word: str, argv: list[str], i: int, found: list[tuple[Option, str | None]]) -> int:
    name, eq, value = word[2:].partition("=")
    if eq and not value:
        quoted = f" '--{name}'" if name else ""
        raise OptionError(
            f"the argument for option{quoted} should follow immediately after the equal sign"
        )
    if not name:
        return i  # "--=x": Boost takes it for a positional word
    option = _lookup(name, word)
    if option.takes_value:
        if not eq:
            if i >= len(argv):
                raise OptionError(
                    f"the required argument for option '--{option.name}' is missing"
                )
            value, i = argv[i], i + 1
        found.append((option, value))
    else:
        if eq:
            raise OptionError(f"option '--{option.name}' does not take any arguments")
        found.append((option, None))
    return i


def _lookup(name: str, word: str) -> Option:
    if name in _BY_NAME:
        return _BY_NAME[name]
    for table in (GEARADMIN_OPTIONS, EXTRA_OPTIONS):
        matches = sorted(o.name for o in table if o.name.startswith(name))
        if len(matches) == 1:
            return _BY_NAME[matches[0]]
        if matches:
            listed = ", ".join(f"'--{m}'" for m in matches[:-1])
            raise OptionError(
                f"option '{word}' is ambiguous and matches {listed}, and '--{matches[-1]}'"
            )
    raise OptionError(f"unrecognised option '{word}'")


def _short(word: str, argv: list[str], i: int, found: list[tuple[Option, str | None]]) -> int:
    pending: list[tuple[Option, str | None]] = []
    k = 1
    while k < len(word):
        option = _BY_SHORT.get(word[k])
        if option is None:
            raise OptionError(f"unrecognised option '{word}'")
        k += 1
        if option.takes_value:
            if k < len(word):
                pending.append((option, word[k:]))
            elif i < len(argv):
                pending.append((option, argv[i]))
                i += 1
            else:
                raise OptionError(
                    f"the required argument for option '--{option.name}' is missing"
                )
            break
        pending.append((option, None))
    found.extend(pending)
    return i
