"""Access control lists keyed on the TLS client certificate's common name (gear-compatible).

Owns ``ACLError``, ``ACLEntry`` and ``ACL`` (docs/gear-compat.md §2): deny by
default; an entry grants a subject the right to register functions and/or invoke functions
whose names match a regular expression (``re.match``: anchored at the start only), and/or to
grant rights to others.

Fixed gear bugs (docs/gear-compat.md §6.5): ``ACLError`` is a
:class:`~gear.errors.GearmanError`; a bad regular expression raises ``ACLError`` (gear raised
AttributeError on Python 3); function names may be str or bytes (gear matched str patterns
against bytes names and raised TypeError).

Names are gear's camelCase on purpose. Imports only :mod:`gear.errors`.
"""

from __future__ import annotations

import re

from gear.errors import GearmanError


class ACLError(GearmanError):
    """An invalid ACL operation (duplicate or missing entry, bad regular expression)."""


def _compile(pattern: str | bytes | None) -> re.Pattern[str] | None:
    if not pattern:
        return None
    if isinstance(pattern, bytes):
        pattern = pattern.decode("utf-8")
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ACLError(f"Regular expression error: {e}") from e


def _text(name: str | bytes) -> str:
    # Function names arrive as bytes from the wire; patterns are str. Undecodable names cannot
    # match a text pattern meaningfully, so they are decoded with replacement characters.
    if isinstance(name, bytes):
        return name.decode("utf-8", "replace")
    return name


class ACLEntry:
    """An access control list entry.

    :arg str subject: the SSL certificate Subject Common Name this entry applies to.
    :arg str register: a regular expression that matches the jobs that connections with this
        certificate are permitted to register.
    :arg str invoke: a regular expression that matches the jobs that connections with this
        certificate are permitted to invoke. Also implies the permission to cancel the same
        set of jobs in the queue.
    :arg bool grant: a flag indicating whether connections with this certificate are
        permitted to grant access to other connections.
    """

    def __init__(
        self,
        subject: str,
        register: str | bytes | None = None,
        invoke: str | bytes | None = None,
        grant: bool | None = False,
    ) -> None:
        self.subject = subject
        self.setRegister(register)
        self.setInvoke(invoke)
        self.setGrant(grant)

    def __repr__(self) -> str:
        return (
            f"<ACLEntry for {self.subject} register={self.register!s} "
            f"invoke={self.invoke!s} grant={self.grant}>"
        )

    def isEmpty(self) -> bool:
        """True if this entry grants nothing (it can then be removed)."""
        return self.register is None and self.invoke is None and self.grant is False

    def canRegister(self, name: str | bytes) -> bool:
        """Whether this subject may register the function ``name``."""
        if self._register is None:
            return False
        return self._register.match(_text(name)) is not None

    def canInvoke(self, name: str | bytes) -> bool:
        """Whether this subject may invoke (submit or cancel) the function ``name``."""
        if self._invoke is None:
            return False
        return self._invoke.match(_text(name)) is not None

    def setRegister(self, register: str | bytes | None) -> None:
        """Set the regular expression of functions this subject may register (None: none)."""
        compiled = _compile(register)
        self.register = register
        self._register = compiled

    def setInvoke(self, invoke: str | bytes | None) -> None:
        """Set the regular expression of functions this subject may invoke (None: none)."""
        compiled = _compile(invoke)
        self.invoke = invoke
        self._invoke = compiled

    def setGrant(self, grant: bool | None) -> None:
        """Set whether this subject may grant permissions to others."""
        self.grant = grant


class ACL:
    """An access control list: deny by default, one :class:`ACLEntry` per subject."""

    def __init__(self) -> None:
        self.subjects: dict[str, ACLEntry] = {}

    def add(self, entry: ACLEntry) -> None:
        """Add an entry; :class:`ACLError` if the subject already has one."""
        if entry.subject in self.subjects:
            raise ACLError(f"An ACL entry for {entry.subject} already exists")
        self.subjects[entry.subject] = entry

    def remove(self, subject: str) -> None:
        """Remove a subject's entry; :class:`ACLError` if it has none."""
        if subject not in self.subjects:
            raise ACLError(f"There is no ACL entry for {subject}")
        del self.subjects[subject]

    def getEntries(self) -> list[ACLEntry]:
        """Every entry, sorted by subject."""
        return [self.subjects[s] for s in sorted(self.subjects)]

    def canRegister(self, subject: str | None, name: str | bytes) -> bool:
        entry = self.subjects.get(subject) if subject is not None else None
        return entry is not None and entry.canRegister(name)

    def canInvoke(self, subject: str | None, name: str | bytes) -> bool:
        entry = self.subjects.get(subject) if subject is not None else None
        return entry is not None and entry.canInvoke(name)

    def canGrant(self, subject: str | None) -> bool:
        entry = self.subjects.get(subject) if subject is not None else None
        return entry is not None and bool(entry.grant)

    def _entry(self, subject: str) -> ACLEntry:
        entry = self.subjects.get(subject)
        if entry is None:
            entry = ACLEntry(subject)
            self.add(entry)
        return entry

    def grantInvoke(self, subject: str, invoke: str | bytes) -> None:
        self._entry(subject).setInvoke(invoke)

    def grantRegister(self, subject: str, register: str | bytes) -> None:
        self._entry(subject).setRegister(register)

    def grantGrant(self, subject: str) -> None:
        self._entry(subject).setGrant(True)

    def _revoked(self, subject: str, entry: ACLEntry) -> None:
        if entry.isEmpty():
            del self.subjects[subject]

    def revokeInvoke(self, subject: str) -> None:
        entry = self.subjects.get(subject)
        if entry is not None:
            entry.setInvoke(None)
            self._revoked(subject, entry)

    def revokeRegister(self, subject: str) -> None:
        entry = self.subjects.get(subject)
        if entry is not None:
            entry.setRegister(None)
            self._revoked(subject, entry)

    def revokeGrant(self, subject: str) -> None:
        entry = self.subjects.get(subject)
        if entry is not None:
            entry.setGrant(False)
            self._revoked(subject, entry)
