"""``gear-admin``: gearadmin 1.1's command line and output, plus a few additions.

Owns :func:`main`: reading the options (:mod:`gear.admin_tool.options`), the checks gearadmin
makes before connecting and their messages, the admin command line each flag sends, the order
the commands run in, and how each reply is printed (docs/gear-admin.md):

* a command line gearadmin refuses prints ``gear-admin : <reason>``, a blank line and
  gearadmin's help, on stdout, and exits 1; no command at all prints ``No option execution
  operation given.``, a blank line and gearadmin's help, and exits 1 (byte for byte what
  gearadmin prints, so our additions are not listed there); ``--help`` prints gearadmin's help
  and then our additions, and exits 0;
* gearadmin queues the commands in a fixed order and runs them last first, so ``--status
  --workers`` prints the workers before the status; we run them in the same order, and our
  ``--shutdown`` runs after every other command;
* a reply is printed by :class:`~gear.admin_tool.connection.Reply`'s rules; ``ERR`` goes to
  stderr and keeps exit status 0, like gearadmin; a failed connection prints ``Error: ...``
  on stderr and exits 1.

``gear-admin top ...`` runs the live view (:mod:`gear.admin_tool.top`) instead, and
``gear-admin dead ...`` / ``gear-admin harp ...`` geard's own lists
(:mod:`gear.admin_tool.geard_lists`).

Must not import the server, the threaded API or asyncio: it talks to any Gearman server.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

from gear.admin_tool.connection import AdminError, Reply, TlsFiles, run_commands
from gear.admin_tool.options import EXTRA_HELP, GEARADMIN_HELP, OptionError, parse, subcommand_at

__all__ = ["PROG", "commands_for", "main"]

PROG = "gear-admin"

#: (option, admin command) in the order gearadmin queues them; they run last first.
QUEUE_ORDER: tuple[tuple[str, bytes], ...] = (
    ("status", b"status"),
    ("priority-status", b"prioritystatus"),
    ("workers", b"workers"),
    ("server-version", b"version"),
    ("server-verbose", b"verbose"),
    ("cancel-job", b"cancel job "),
    ("show-unique-jobs", b"show unique jobs"),
    ("show-jobs", b"show jobs"),
    ("drop-function", b"drop function "),
    ("create-function", b"create function "),
    ("getpid", b"getpid"),
)

#: The options that name a command (gearadmin's "operation").
COMMAND_OPTIONS = frozenset(name for name, _ in QUEUE_ORDER) | {"shutdown"}


def help_text() -> str:
    """What ``--help`` prints: gearadmin's help, then our additions."""
    return GEARADMIN_HELP + "\n" + EXTRA_HELP + "\n"


def commands_for(values: dict[str, str | None]) -> list[bytes]:
    """The admin lines to send, in the order they run (each ends with CRLF, as gearadmin's)."""
    queued: list[bytes] = []
    if "shutdown" in values:
        queued.append(b"shutdown graceful" if "graceful" in values else b"shutdown")
    for name, command in QUEUE_ORDER:
        if name in values:
            argument = values[name]
            line = command + (argument or "").encode("utf-8", "surrogateescape")
            queued.append(line)
    return [line + b"\r\n" for line in reversed(queued)]


def main(argv: list[str] | None = None) -> int:
    """Run gear-admin with ``argv`` (``sys.argv[1:]`` by default); the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    at = subcommand_at(args)
    if at is not None:
        # The options before the word go to the subcommand too: gear-admin -h HOST top.
        word, rest = args[at], args[:at] + args[at + 1:]
        if word == "top":
            from gear.admin_tool.top import main as top_main

            return top_main(rest)
        from gear.admin_tool.geard_lists import main as lists_main

        return lists_main(word, rest)
    out, err = sys.stdout, sys.stderr
    try:
        values = parse(args)
        timeout = _timeout(values)
        if "graceful" in values and "shutdown" not in values:
            raise OptionError("option '--graceful' needs '--shutdown'")
    except OptionError as exc:
        out.write(f"{PROG} : {exc}\n\n{GEARADMIN_HELP}\n")
        return 1
    if "help" in values:
        out.write(help_text())
        return 0
    if not COMMAND_OPTIONS & values.keys():
        out.write(f"No option execution operation given.\n\n{GEARADMIN_HELP}\n")
        return 1
    out.flush()
    stdout, stderr = sys.stdout.buffer, sys.stderr.buffer

    def show(reply: Reply) -> None:
        _write(stdout if reply.ok else stderr, reply.text if reply.ok else
               (b"Error: " + reply.text if reply.text else b""))

    try:
        run_commands(_host(values), _port(values), commands_for(values),
                     show, timeout=timeout, tls=_tls(values))
    except AdminError as exc:
        err.write(f"Error: {exc}\n")
        return 1
    return 0


def _write(stream: BinaryIO, data: bytes) -> None:
    if data:
        stream.write(data)
        stream.flush()


def _host(values: dict[str, str | None]) -> str:
    host = values.get("host")
    return "localhost" if host is None else host


def _port(values: dict[str, str | None]) -> str:
    port = values.get("port")
    return "4730" if port is None else port


def _timeout(values: dict[str, str | None]) -> float | None:
    if "timeout" not in values:
        return None
    text = values["timeout"] or ""
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise OptionError(f"the argument ('{text}') for option '--timeout' is invalid")
    return seconds


def _tls(values: dict[str, str | None]) -> TlsFiles | None:
    """None for plain TCP; ``-S`` alone loads gearadmin's files, ``--ssl-*`` what they name."""
    given = {k: values.get(f"ssl-{k}") for k in ("ca", "cert", "key")}
    if any(v is not None for v in given.values()):
        return TlsFiles(given["ca"], given["cert"], given["key"])
    if "ssl" in values:
        return TlsFiles.gearadmin_defaults()
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
