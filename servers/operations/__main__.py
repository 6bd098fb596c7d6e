"""``python -m servers.operations``: see servers/standalone.py."""

import sys

from servers.standalone import main

sys.exit(main("operations"))
