"""gearmand 1.1's admin text commands, with byte-identical replies.

Owns :func:`run_command` (one admin line in, its reply written through ``broker.write``), the
line tokenizer and the exact reply bytes (docs/protocol.md §2.1-2.2, observed on gearmand
1.1.20). Reads the broker only through its query interface and acts only through its methods
(see the package docstring); ``acl ...`` lines go to ``acl.py``. Must not import sockets,
asyncio, threads or the network layer. Admin commands are rare: clarity over speed here.

Line handling as gearmand's: tokens are separated by runs of spaces (tabs are not
separators), a leading space makes an empty first token and a trailing space an empty last one,
names are case-insensitive, and a line
of more than 5 tokens closes the connection without a reply. Line endings of replies are copied
exactly: lists and ``OK <value>`` end in ``\\n``, bare ``OK`` and ``ERR`` in ``\\r\\n``.

Where we differ from gearmand 1.1.20, on purpose (docs/protocol.md §3.18):

* ``status`` and ``prioritystatus`` list functions in first-seen order (gearmand: hash order);
  ``workers`` lists connections newest first, as gearmand does.
* ``create function X`` creates ``X`` whatever the line ending (gearmand drops the last
  character after a bare ``\\n``).
* ``drop function X`` refuses (``ERR there are still connected workers or executing clients``)
  while the function has any job in memory, queued included (gearmand frees it under them).
* ``cancel job H`` removes a queued job at once instead of leaving it counted until a worker's
  GRAB reaps it (so a second ``cancel job H`` answers ``ERR UNKNOWN_JOB``, where gearmand
  answers ``OK`` again); a running job is detached from its clients (WORK_FAIL) but not stopped (see
  ``Broker.cancel``). With an ACL, the connection needs invoke permission on the job's
  function (``ERR PERMISSION_DENIED\\r\\n``), as in gear.
* The dead-letter list (docs/semantics.md, "Poison jobs and the dead-letter list") has
  commands of its own, named after ``show jobs`` and ``cancel job``: ``show dead jobs
  [FUNCTION]`` lists one line per dead job (handle, function, unique, attempts, Unix time it
  died, data size; tab-separated, ``.``-terminated), ``retry dead job HANDLE`` and ``drop dead
  job HANDLE`` answer ``OK\r\n`` or ``ERR UNKNOWN_JOB\r\n`` (a retry also ``ERR
  UNIQUE_IN_USE ...\r\n`` while a job with its unique is in memory), and ``retry dead jobs
  [FUNCTION]`` / ``drop dead jobs [FUNCTION]`` answer ``OK <count>\n``. With an ACL they need
  invoke permission on the job's function, as ``cancel job`` does: a named job or function
  without it gets ``ERR PERMISSION_DENIED\r\n``, and the all-jobs forms skip such jobs.
* ``shutdown`` (immediate) and ``shutdown graceful`` answer ``OK\\r\\n`` and ask the server to
  stop (``Broker.request_shutdown``), as gearmand <= 1.1.14 did; gearmand 1.1.15+ removed them
  (it answers ``ERR UNKNOWN_COMMAND``). Any other argument gets ``ERR INVALID_ARGUMENTS ...``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from gear.server.admin.acl import ACL_COMMANDS, acl_command
from gear.server.broker import Broker, Peer

__all__ = ["run_command", "tokenize"]

OK = b"OK\r\n"
END = b".\n"
MAX_TOKENS = 5  # TEXT argc in libgearman/command.cc (docs/protocol.md §2.1)
_SPACES = re.compile(b" +")


def _unknown(name: bytes) -> bytes:
    return b"ERR UNKNOWN_COMMAND Unknown+server+command" + name + b"\r\n"


def _incomplete(name: bytes) -> bytes:
    return (
        b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+"
        + name
        + b"\r\n"
    )


def tokenize(line: bytes) -> list[bytes]:
    """Split an admin line as gearmand does (docs/protocol.md §2.1): on runs of spaces, so a
    leading space makes an empty first token and a trailing one an empty last token."""
    return _SPACES.split(line)


def run_command(broker: Broker, peer: Peer, line: bytes) -> None:
    """Answer one admin line (without its line ending) from ``peer``."""
    tokens = tokenize(line)
    name = tokens[0].lower()
    if name == b"acl" and len(tokens) > 1 and tokens[1].lower() in ACL_COMMANDS:
        broker.write(peer, acl_command(broker, peer, line))
        return
    if len(tokens) > MAX_TOKENS:
        broker.close(peer)
        return
    command = _COMMANDS.get(name)
    reply = _unknown(tokens[0]) if command is None else command(broker, peer, tokens)
    broker.write(peer, reply)


# ---------------------------------------------------------------------- commands


def _status(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    lines = [b"%s\t%d\t%d\t%d\n" % (f.name, f.total, f.running, f.workers)
             for f in broker.function_stats()]
    lines.append(END)
    return b"".join(lines)


def _prioritystatus(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    lines = [b"%s\t%d\t%d\t%d\t%d\n" % (f.name, *f.queued, f.workers)
             for f in broker.function_stats()]
    lines.append(END)
    return b"".join(lines)


def _workers(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    lines = []
    for p in reversed(broker.connections()):  # newest connection first, as gearmand lists them
        functions = b"".join(b" " + fn for fn in reversed(p.functions))  # most recent first
        lines.append(b"%d %s %s :%s\n" % (p.fd, p.host.encode(), p.client_id, functions))
    lines.append(END)
    return b"".join(lines)


def _version(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    # BrokerConfig.version, or this package's version when not configured.
    return b"OK " + broker.version + b"\n"


def _getpid(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    return b"OK %d\n" % os.getpid()


def _verbose(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    return b"OK " + broker.config.verbose + b"\n"


def _show(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    if len(tokens) == 1:
        return _unknown(tokens[0])
    words = [t.lower() for t in tokens[1:]]
    if words[:2] == [b"dead", b"jobs"] and len(words) <= 3:
        function = tokens[3] or None if len(tokens) == 4 else None  # "" from a trailing space
        lines = [b"%s\t%s\t%s\t%d\t%d\t%d\n" % (d.handle, d.function, d.unique, d.attempts,
                                                int(d.died), d.size)
                 for d in broker.dead_letters(function)]
    elif words == [b"jobs"]:
        lines = [b"%s\t%d\t%d\t%d\n" % (job.handle, job.retries, job.orphaned, job.background)
                 for job in broker.job_records()]
    elif words == [b"unique", b"jobs"]:
        lines = [job.unique + b"\n" for job in broker.job_records()]
    else:
        return b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"
    lines.append(END)
    return b"".join(lines)


def _cancel(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    if len(tokens) < 3:
        return _unknown(tokens[0])
    if len(tokens) > 3 or tokens[1].lower() != b"job":
        return b"ERR UNKNOWN_ERROR\r\n"  # gearmand's empty reply buffer (docs/protocol.md §2.2)
    handle = tokens[2]
    function = broker.cancellable(handle)
    if function is None:
        return b"ERR UNKNOWN_JOB\r\n"
    if not _may_invoke(broker, peer, function):
        return b"ERR PERMISSION_DENIED\r\n"
    broker.cancel_job(handle)
    return OK


def _may_invoke(broker: Broker, peer: Peer, function: bytes) -> bool:
    """The ACL check of ``cancel job`` and the dead-letter commands (true without an ACL)."""
    acl = broker.config.acl
    return acl is None or acl.canInvoke(peer.ssl_subject,
                                        function.decode("utf-8", "surrogateescape"))


def _dead_command(broker: Broker, peer: Peer, tokens: list[bytes],
                  act: Callable[[bytes], str | None]) -> bytes:
    """``retry|drop dead job HANDLE`` and ``retry|drop dead jobs [FUNCTION]``; ``act(handle)``
    returns None when done, else the reason it was not."""
    what = [t.lower() for t in tokens[1:3]]
    if what == [b"dead", b"job"] and len(tokens) == 4:
        handle = tokens[3]
        function = broker.dead_function(handle)
        if function is None:
            return b"ERR UNKNOWN_JOB\r\n"
        if not _may_invoke(broker, peer, function):
            return b"ERR PERMISSION_DENIED\r\n"
        reason = act(handle)
        if reason is None:
            return OK
        if reason == "unique in use":
            return b"ERR UNIQUE_IN_USE a+job+with+this+unique+is+queued+or+running\r\n"
        return b"ERR UNKNOWN_JOB\r\n"
    if what == [b"dead", b"jobs"] and len(tokens) <= 4:
        function = tokens[3] or None if len(tokens) == 4 else None
        if function is not None and not _may_invoke(broker, peer, function):
            return b"ERR PERMISSION_DENIED\r\n"
        done = 0
        for dead in broker.dead_letters(function):
            if _may_invoke(broker, peer, dead.function) and act(dead.handle) is None:
                done += 1
        return b"OK %d\n" % done
    return _incomplete(tokens[0])


def _retry(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    return _dead_command(broker, peer, tokens, broker.retry_dead)


def _drop_dead(handle: bytes, broker: Broker) -> str | None:
    return None if broker.drop_dead(handle) else "unknown"


def _create(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    if len(tokens) != 3 or tokens[1].lower() != b"function":
        return _incomplete(tokens[0])
    broker.create_function(tokens[2])
    return OK


def _drop(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    if len(tokens) > 1 and tokens[1].lower() == b"dead":
        return _dead_command(broker, peer, tokens, lambda handle: _drop_dead(handle, broker))
    if len(tokens) != 3 or tokens[1].lower() != b"function":
        return _incomplete(tokens[0])
    # The one case-insensitive name lookup of gearmand (docs/protocol.md §2.2).
    dropped = broker.drop_function(tokens[2])
    if dropped is None:
        return b"ERR function not found\r\n"
    if not dropped:
        return b"ERR there are still connected workers or executing clients\r\n"
    return OK


def _atoi(text: bytes) -> int:
    digits = text.strip()
    sign = 1
    if digits[:1] in (b"+", b"-"):
        sign = -1 if digits[:1] == b"-" else 1
        digits = digits[1:]
    n = 0
    for ch in digits:
        if not 48 <= ch <= 57:
            break
        n = n * 10 + ch - 48
    return max(0, sign * n)  # negative -> 0 (docs/protocol.md §2.2)


def _maxqueue(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    if len(tokens) < 2:
        return _incomplete(tokens[0])
    sizes = [_atoi(t) for t in tokens[2:]]
    if not sizes:
        limits = [0, 0, 0]
    elif len(sizes) == 1:
        limits = sizes * 3
    elif len(sizes) == 2:
        limits = [sizes[0], sizes[1], 0]
    else:
        limits = sizes[:3]
    # Case-sensitive, must exist; OK regardless (docs/protocol.md §2.2).
    broker.set_max_queue(tokens[1], limits)
    return OK


def _shutdown(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    if len(tokens) == 1:
        broker.request_shutdown(graceful=False)
    elif len(tokens) == 2 and tokens[1].lower() == b"graceful":
        broker.request_shutdown(graceful=True)
    else:
        return _incomplete(tokens[0])
    return OK


_COMMANDS: dict[bytes, Callable[[Broker, Peer, list[bytes]], bytes]] = {
    b"status": _status,
    b"prioritystatus": _prioritystatus,
    b"workers": _workers,
    b"version": _version,
    b"getpid": _getpid,
    b"verbose": _verbose,
    b"show": _show,
    b"cancel": _cancel,
    b"create": _create,
    b"drop": _drop,
    b"retry": _retry,
    b"maxqueue": _maxqueue,
    b"shutdown": _shutdown,
}
