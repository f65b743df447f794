"""``python -m gear.admin_tool``: the same as the ``gear-admin`` command."""

import sys

from gear.admin_tool.cli import main

sys.exit(main())
