"""Access control lists keyed on the TLS client certificate's common name (gear-compatible).

Placeholder until the threaded-API work lands; see reference/gear-0.16-api.md section 2.
"""

from __future__ import annotations


class ACLError(Exception):
    pass


class ACLEntry:
    pass


class ACL:
    pass
