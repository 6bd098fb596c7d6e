"""``python -m servers.control``: see servers/control/cli.py."""

import sys

from servers.control.cli import main

sys.exit(main())
