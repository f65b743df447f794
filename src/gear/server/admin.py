"""The text admin protocol of the job server: gearmand 1.1 commands plus gear's ``acl`` commands.

Owns the parsing of admin lines and the exact reply bytes (reference/gearman-protocol.md 2.1-2.2,
observed on gearmand 1.1.20; gear-0.16-api.md 3.13.2 for ``acl``). Reads and changes the state of
:class:`gear.server.broker.Broker`; must not import sockets, asyncio, threads or the network
layer. Admin commands are rare: clarity over speed here.

Line handling as gearmand's: tokens are separated by runs of single spaces (tabs are not
separators), a leading space makes an empty first token, names are case-insensitive, and a line
of more than 5 tokens closes the connection without a reply. Line endings of replies are copied
exactly: lists and ``OK <value>`` end in ``\\n``, bare ``OK`` and ``ERR`` in ``\\r\\n``.

Where we differ from gearmand 1.1.20, on purpose (reference 3.18):

* ``status`` and ``prioritystatus`` list functions in first-seen order (gearmand: hash order);
  ``workers`` lists connections newest first, as gearmand does.
* ``create function X`` creates ``X`` whatever the line ending (gearmand drops the last
  character after a bare ``\\n``).
* ``drop function X`` refuses (``ERR there are still connected workers or executing clients``)
  while the function has any job in memory, queued included (gearmand frees it under them).
* ``cancel job H`` removes a queued job at once instead of leaving it counted until a worker's
  GRAB reaps it; a running job is detached from its clients (WORK_FAIL) but not stopped (see
  :meth:`Broker.cancel`). With an ACL, the connection needs invoke permission on the job's
  function (``ERR PERMISSION_DENIED\\r\\n``), as in gear.
* ``shutdown`` (immediate) and ``shutdown graceful`` answer ``OK\\r\\n`` and set
  ``broker.shutdown_requested``, as gearmand <= 1.1.14 did; gearmand 1.1.15+ removed them (it
  answers ``ERR UNKNOWN_COMMAND``). Any other argument gets ``ERR INVALID_ARGUMENTS ...``.
* ``acl list|grant|revoke|self-revoke`` as gear's server, correct on Python 3 (gear compares
  bytes with str and always answers ``ERR UNKNOWN_ACL_VERB``). They use gear's ``\\n`` endings
  and are parsed before the 5-token rule (a pattern may hold spaces, as with gear's
  ``split(None, 4)``); missing arguments get ``ERR INVALID_ARGUMENTS\\n`` (gear dropped the
  connection). ``ERR UNABLE <message>\\n`` reports an :class:`~gear.acl.ACLError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from gear.acl import ACLError
from gear.server.broker import HELD, HIGH, LOW, NORMAL, Broker, Peer

__all__ = ["handle_line"]

OK = b"OK\r\n"
END = b".\n"
MAX_TOKENS = 5  # TEXT argc in libgearman/command.cc (2.1)


def _unknown(name: bytes) -> bytes:
    return b"ERR UNKNOWN_COMMAND Unknown+server+command" + name + b"\r\n"


def _incomplete(name: bytes) -> bytes:
    return (
        b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+"
        + name
        + b"\r\n"
    )


def tokenize(line: bytes) -> list[bytes]:
    """Split an admin line as gearmand does (2.1)."""
    parts = line.split(b" ")
    return [parts[0], *[p for p in parts[1:] if p]]


def handle_line(broker: Broker, peer: Peer, line: bytes) -> None:
    """Answer one admin line (without its line ending) from ``peer``."""
    tokens = tokenize(line)
    name = tokens[0].lower()
    if name == b"acl" and len(tokens) > 1 and tokens[1].lower() in _ACL_COMMANDS:
        broker.write(peer, _acl(broker, peer, line))
        return
    if len(tokens) > MAX_TOKENS:
        broker.close(peer)
        return
    command = _COMMANDS.get(name)
    reply = _unknown(tokens[0]) if command is None else command(broker, peer, tokens)
    broker.write(peer, reply)


# ---------------------------------------------------------------------- commands


def _status(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    lines = [
        b"%s\t%d\t%d\t%d\n" % (f.name, f.total, f.running, f.workers)
        for f in broker.functions.values()
    ]
    lines.append(END)
    return b"".join(lines)


def _prioritystatus(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    lines = [
        b"%s\t%d\t%d\t%d\t%d\n"
        % (f.name, f.queued(HIGH), f.queued(NORMAL), f.queued(LOW), f.workers)
        for f in broker.functions.values()
    ]
    lines.append(END)
    return b"".join(lines)


def _workers(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    lines = []
    for p in reversed(broker.peers):  # newest connection first, as gearmand lists them
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
    if words == [b"jobs"]:
        lines = [
            b"%s\t%d\t%d\t%d\n"
            % (
                job.handle,
                job.retries,
                job.ignore or not (job.clients or job.background or job.keep),
                job.background,
            )
            for job in broker.jobs.values()
        ]
    elif words == [b"unique", b"jobs"]:
        lines = [job.unique + b"\n" for job in broker.jobs.values()]
    else:
        return b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"
    lines.append(END)
    return b"".join(lines)


def _cancel(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    if len(tokens) < 3:
        return _unknown(tokens[0])
    if len(tokens) > 3 or tokens[1].lower() != b"job":
        return b"ERR UNKNOWN_ERROR\r\n"  # gearmand's empty reply buffer (2.2)
    job = broker.jobs.get(tokens[2])
    if job is None or job.state == HELD or job.ignore:
        return b"ERR UNKNOWN_JOB\r\n"
    acl = broker.config.acl
    if acl is not None and not acl.canInvoke(
        peer.ssl_subject, job.name.decode("utf-8", "surrogateescape")
    ):
        return b"ERR PERMISSION_DENIED\r\n"
    broker.cancel(job)
    return OK


def _create(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    if len(tokens) != 3 or tokens[1].lower() != b"function":
        return _incomplete(tokens[0])
    broker.get_function(tokens[2])
    return OK


def _drop(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    if len(tokens) != 3 or tokens[1].lower() != b"function":
        return _incomplete(tokens[0])
    wanted = tokens[2].lower()  # the one case-insensitive name lookup of gearmand (2.2)
    for f in list(broker.functions.values()):
        if f.name.lower() == wanted:
            if not broker.drop_function(f):
                return b"ERR there are still connected workers or executing clients\r\n"
            return OK
    return b"ERR function not found\r\n"


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
    return max(0, sign * n)  # negative -> 0 (2.2)


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
    f = broker.functions.get(tokens[1])  # case-sensitive, must exist; OK regardless (2.2)
    if f is not None:
        f.max_queue = limits if any(limits) else None
    return OK


def _shutdown(broker: Broker, peer: Peer, tokens: list[bytes]) -> bytes:
    if len(tokens) == 1:
        broker.shutdown_requested = "immediate"
    elif len(tokens) == 2 and tokens[1].lower() == b"graceful":
        if broker.shutdown_requested is None:
            broker.shutdown_requested = "graceful"
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
    b"maxqueue": _maxqueue,
    b"shutdown": _shutdown,
}


# ---------------------------------------------------------------------- gear's ACL commands


def _text(value: object) -> bytes:
    """One field of ``acl list``, printed as gear prints it (``None``, ``True``, a pattern)."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")


_ACL_VERBS = ("invoke", "register", "grant", "all")
_ACL_COMMANDS = (b"list", b"grant", b"revoke", b"self-revoke")


def _acl(broker: Broker, peer: Peer, line: bytes) -> bytes:
    words = line.decode("utf-8", "surrogateescape").split(None, 4)
    sub = words[1].lower()
    acl = broker.config.acl
    if acl is None:
        return b"ERR ACL_DISABLED\n"
    if sub == "list":
        lines = [
            b"%s\tregister=%s\tinvoke=%s\tgrant=%s\n"
            % (_text(e.subject), _text(e.register), _text(e.invoke), _text(e.grant))
            for e in acl.getEntries()
        ]
        lines.append(END)
        return b"".join(lines)
    subject = peer.ssl_subject
    if sub == "grant":
        if len(words) < 4:
            return b"ERR INVALID_ARGUMENTS\n"
        verb, target = words[2], words[3]
        if not acl.canGrant(subject):
            return b"ERR PERMISSION_DENIED\n"
        if verb in ("invoke", "register") and len(words) < 5:
            return b"ERR INVALID_ARGUMENTS\n"
        try:
            if verb == "invoke":
                acl.grantInvoke(target, words[4])
            elif verb == "register":
                acl.grantRegister(target, words[4])
            elif verb == "grant":
                acl.grantGrant(target)
            else:
                return b"ERR UNKNOWN_ACL_VERB\n"
        except ACLError as e:
            return b"ERR UNABLE %s\n" % str(e).encode("utf-8", "replace")
        return b"OK\n"
    if sub == "revoke":
        if len(words) < 4:
            return b"ERR INVALID_ARGUMENTS\n"
        verb, target = words[2], words[3]
        if target != subject and not acl.canGrant(subject):
            return b"ERR PERMISSION_DENIED\n"
    else:  # self-revoke
        if len(words) < 3:
            return b"ERR INVALID_ARGUMENTS\n"
        verb = words[2]
        if subject is None:  # no certificate, so no entry: nothing to revoke
            return b"OK\n" if verb in _ACL_VERBS else b"ERR UNKNOWN_ACL_VERB\n"
        target = subject
    try:
        if verb == "invoke":
            acl.revokeInvoke(target)
        elif verb == "register":
            acl.revokeRegister(target)
        elif verb == "grant":
            acl.revokeGrant(target)
        elif verb == "all":
            try:
                acl.remove(target)
            except ACLError:
                pass
        else:
            return b"ERR UNKNOWN_ACL_VERB\n"
    except ACLError as e:
        return b"ERR UNABLE %s\n" % str(e).encode("utf-8", "replace")
    return b"OK\n"
