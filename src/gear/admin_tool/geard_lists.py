"""``gear-admin dead ...`` and ``gear-admin harp ...``: geard's own lists, for people.

Owns the two subcommands that reach what only geard keeps (docs/gear-admin.md §6):

* ``dead``: the dead-letter list (docs/server.md, "Poison jobs"): ``list [FUNCTION]``,
  ``retry HANDLE``, ``retry --all [FUNCTION]``, ``drop HANDLE``, ``drop --all [FUNCTION]``;
* ``harp``: the HarpCaller call records (docs/harp.md, "Admin commands"), with the names of
  harpcallerd's own command line: ``list [--all]``, ``info ID``, ``cancel ID``,
  ``queue-list [NAME]``, ``queue-cancel NAME``, ``prune-jobs [SECONDS]`` (NAME is the queue's
  JSON object, as the call gave it).

Each sends one admin line and reads the reply by its framing
(:class:`~gear.admin_tool.connection.Framed`). Listings print as aligned tables (times in UTC),
or with ``--json`` as one JSON object per line; ``info`` prints the record as indented JSON. A
refusal (``ERR CODE text``, its ``+`` read as spaces) prints ``gear-admin: CODE text`` on
stderr and exits 1, a lost or
failed connection ``Error: ...`` and exits 1 (unlike gearadmin's commands, whose refusals keep
status 0: these are ours, and scripts want to know). gearmand answers ``ERR UNKNOWN_COMMAND``.

Must not import the server, the threaded API or asyncio: it talks over the admin protocol only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from gear.admin_tool.connection import AdminError, Framed, TlsFiles, connect
from gear.errors import InvalidDataError
from gear.protocol.admin import AdminReply, parse_json_lines, parse_show_dead_jobs

__all__ = ["main", "table"]


def _connection_options() -> argparse.ArgumentParser:
    """The options of where and how to connect, accepted before and after the action.

    Their defaults are left out (SUPPRESS) so that an action's parser does not overwrite a
    value given before the action; :func:`_setting` supplies them."""
    p = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    p.add_argument("-h", "--host", help="server host (default localhost)")
    p.add_argument("-p", "--port", help="server port (default 4730)")
    p.add_argument("--timeout", type=float, help="seconds to wait for the server (default 10)")
    p.add_argument("-S", "--ssl", action="store_true",
                   help="TLS with gearadmin's files (GEARMAND_CA_CERTIFICATE, ...)")
    p.add_argument("--ssl-ca", help="TLS: CA file for the server's certificate")
    p.add_argument("--ssl-cert", help="TLS: client certificate (mutual TLS)")
    p.add_argument("--ssl-key", help="TLS: client key (mutual TLS)")
    return p


_DEFAULTS: dict[str, Any] = {"host": "localhost", "port": "4730", "timeout": 10.0,
                             "ssl": False, "ssl_ca": None, "ssl_cert": None, "ssl_key": None}


def _setting(args: argparse.Namespace, name: str) -> Any:
    return getattr(args, name, _DEFAULTS[name])


def _parser(prog: str, description: str) -> tuple[argparse.ArgumentParser, Any]:
    """The subcommand's parser and a maker of its actions' parsers (which take the connection
    options too)."""
    connection = _connection_options()
    p = argparse.ArgumentParser(prog=prog, add_help=False, description=description,
                                parents=[connection])
    p.add_argument("--help", action="help", help="show this help and exit")
    sub = p.add_subparsers(dest="action", metavar="ACTION")

    def action(name: str, text: str) -> argparse.ArgumentParser:
        a = sub.add_parser(name, add_help=False, help=text, description=text,
                           parents=[connection])
        a.add_argument("--help", action="help", help="show this help and exit")
        return a

    return p, action


def _dead_parser() -> argparse.ArgumentParser:
    p, action = _parser("gear-admin dead", "geard's dead-letter list: background jobs whose "
                        "retries ran out (docs/server.md).")
    ls = action("list", "the dead jobs, oldest first")
    ls.add_argument("function", nargs="?", help="only this function's")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    for name, text in (("retry", "queue again as a fresh job"), ("drop", "forget")):
        act = action(name, f"{text}: HANDLE, or --all [FUNCTION]")
        act.add_argument("handle", nargs="?", help="the dead job's handle (or, with --all, "
                         "a function name)")
        act.add_argument("--all", action="store_true", help="every dead job (of FUNCTION)")
    return p


def _harp_parser() -> argparse.ArgumentParser:
    p, action = _parser("gear-admin harp", "geard's HarpCaller call records (docs/harp.md); "
                        "the actions are named as harpcallerd's.")
    ls = action("list", "queued and running calls")
    ls.add_argument("--all", action="store_true", help="every record kept, ended ones too")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    action("info", "one call's record").add_argument("job_id")
    action("cancel", "cancel a call").add_argument("job_id")
    ql = action("queue-list", "the queues in use, or the calls of queue NAME")
    ql.add_argument("name", nargs="?", help="the queue's name, a JSON object")
    ql.add_argument("--json", action="store_true", help="one JSON object per line")
    action("queue-cancel", "cancel every call of a queue").add_argument("name")
    pj = action("prune-jobs", "forget ended records now")
    pj.add_argument("seconds", nargs="?", type=float,
                    help="only those ended this long ago (default: the retention)")
    return p


def main(kind: str, argv: Sequence[str]) -> int:
    """Run ``gear-admin dead|harp ARGV``; the exit status."""
    parser = _dead_parser() if kind == "dead" else _harp_parser()
    args = parser.parse_args(list(argv))
    try:
        line = _dead_line(args) if kind == "dead" else _harp_line(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        reply = _ask(args, line)
    except AdminError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    failure = reply.failure
    if failure is not None:
        code, text = (part.decode("utf-8", "replace") for part in failure)
        text = text.replace("+", " ")  # an ERR text has + for spaces, as gearmand's
        sys.stderr.write(f"gear-admin: {code}{' ' + text if text else ''}\n")
        return 1
    try:
        sys.stdout.write(_render(kind, args, reply.lines))
    except InvalidDataError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    return 0


def _dead_line(args: argparse.Namespace) -> str:
    action = args.action or "list"
    if action == "list":
        return "show dead jobs" + (f" {args.function}" if getattr(args, "function", None)
                                   else "")
    if args.all:
        return f"{action} dead jobs" + (f" {args.handle}" if args.handle else "")
    if not args.handle:
        raise ValueError(f"{action} needs a HANDLE, or --all")
    return f"{action} dead job {args.handle}"


def _harp_line(args: argparse.Namespace) -> str:
    action = args.action or "list"
    if action == "list":
        return "harp list all" if getattr(args, "all", False) else "harp list"
    if action in ("info", "cancel"):
        return f"harp {action} {args.job_id}"
    if action == "queue-list":
        return "harp queue " + _queue_name(args.name) if args.name else "harp queues"
    if action == "queue-cancel":
        return "harp cancel queue " + _queue_name(args.name)
    return "harp prune" + ("" if args.seconds is None else f" {args.seconds:g}")


def _queue_name(text: str) -> str:
    try:
        name = json.loads(text)
    except ValueError:
        name = None
    if not isinstance(name, dict):
        raise ValueError(f"a queue name is a JSON object, such as '{{\"name\": \"db\"}}', "
                         f"not {text!r}")
    return json.dumps(name, separators=(",", ":"))


def _ask(args: argparse.Namespace, line: str) -> AdminReply:
    host, timeout = _setting(args, "host"), _setting(args, "timeout")
    files = [_setting(args, k) for k in ("ssl_ca", "ssl_cert", "ssl_key")]
    tls = None
    if any(f is not None for f in files):
        tls = TlsFiles(*files)
    elif _setting(args, "ssl"):
        tls = TlsFiles.gearadmin_defaults()
    context = tls.context() if tls is not None else None
    sock = connect(host, _setting(args, "port"), timeout, context)
    with sock:
        try:
            return Framed(sock).ask(line.encode("utf-8", "surrogateescape"))
        except TimeoutError:
            raise AdminError(f"no reply from {host} within {timeout:g}s")
        except OSError as exc:
            raise AdminError(f"reading from {host} failed: {exc}")


def _render(kind: str, args: argparse.Namespace, lines: list[bytes]) -> str:
    action = args.action or "list"
    if kind == "dead":
        if action != "list":
            verb = "retried" if action == "retry" else "dropped"
            return _ok_text(lines, verb, args.handle)
        dead = [{"handle": d.handle.decode("utf-8", "backslashreplace"),
                 "function": d.function.decode("utf-8", "backslashreplace"),
                 "unique": d.unique.decode("utf-8", "backslashreplace"),
                 "attempts": d.attempts, "died": d.died, "size": d.size}
                for d in parse_show_dead_jobs(lines)]
        if getattr(args, "json", False):
            return _json_lines(dead)
        return table(["HANDLE", "FUNCTION", "UNIQUE", "ATTEMPTS", "DIED (UTC)", "BYTES"],
                     [[d["handle"], d["function"], d["unique"], d["attempts"],
                       _when(d["died"]), d["size"]] for d in dead])
    if action in ("cancel", "queue-cancel", "prune-jobs"):
        return _ok_text(lines, "pruned" if action == "prune-jobs" else "cancelled",
                        getattr(args, "job_id", ""))
    records = parse_json_lines(lines)
    if action == "info":
        return "".join(json.dumps(r, indent=2, sort_keys=True) + "\n" for r in records)
    if getattr(args, "json", False):
        return _json_lines(records)
    if action == "queue-list" and not args.name:
        return table(["QUEUE", "CONCURRENCY", "RUNNING", "WAITING"],
                     [[json.dumps(q.get("queue"), sort_keys=True), q.get("concurrency"),
                       q.get("running"), q.get("waiting")] for q in records])
    return table(["JOB ID", "STATE", "HOST", "PROCEDURE", "QUEUE", "SUBMIT", "START", "END"],
                 [[r.get("job_id"), r.get("state"), r.get("host"), r.get("procedure"),
                   "-" if r.get("queue") is None else json.dumps(r["queue"], sort_keys=True),
                   _when(r.get("submit")), _when(r.get("start")), _when(r.get("end"))]
                  for r in records])


def _ok_text(lines: list[bytes], verb: str, subject: str | None) -> str:
    """An ``OK <count>`` reply as ``<verb> <count>``, a bare ``OK`` as ``<verb> <subject>``."""
    line = lines[0].decode("utf-8", "replace") if lines else ""
    value = line[3:] if line.startswith("OK ") else ""
    return f"{verb} {value or subject or ''}".rstrip() + "\n"


def _json_lines(records: list[Any]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)


def _when(seconds: Any) -> str:
    """Unix seconds as ``YYYY-MM-DD HH:MM:SS`` (UTC); ``-`` for none."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """Left-aligned columns two spaces apart; just the header line when there are no rows."""
    cells = [headers, *([("-" if v is None else str(v)) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                   + "\n" for row in cells)
