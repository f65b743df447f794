"""``python3 -m gear.server``: the same as the ``geard`` command (see :mod:`gear.server.cli`).

Owns nothing but the entry point; must not import anything else.
"""

from __future__ import annotations

import sys

from gear.server.cli import main

if __name__ == "__main__":
    sys.exit(main())
