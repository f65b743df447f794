"""gear's ``acl`` admin commands (docs/gear-compat.md §3.13.2), correct on Python 3.

Owns ``acl list|grant|revoke|self-revoke``: gear's server compares bytes with str and always
answers ``ERR UNKNOWN_ACL_VERB``; these work. They use gear's ``\\n`` endings and are parsed
before gearmand's 5-token rule (a pattern may hold spaces, as with gear's ``split(None, 4)``);
missing arguments get ``ERR INVALID_ARGUMENTS\\n`` (gear dropped the connection).
``ERR UNABLE <message>\\n`` reports an :class:`~gear.acl.ACLError`. Reads only the broker's
``config.acl`` (the ACL object is the ACL's own state). Must not import sockets, asyncio,
threads or the network layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gear.acl import ACLError

if TYPE_CHECKING:
    from gear.server.broker import Broker, Peer

__all__ = ["ACL_COMMANDS", "acl_command"]

END = b".\n"
_ACL_VERBS = ("invoke", "register", "grant", "all")
#: The second words that make an ``acl`` line one of these commands.
ACL_COMMANDS = (b"list", b"grant", b"revoke", b"self-revoke")


def _text(value: object) -> bytes:
    """One field of ``acl list``, printed as gear prints it (``None``, ``True``, a pattern)."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")


def acl_command(broker: Broker, peer: Peer, line: bytes) -> bytes:
    """The reply to one ``acl ...`` line from ``peer``."""
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
