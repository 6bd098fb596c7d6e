"""``python -m servers.bootstrap``: see servers/standalone.py."""

import sys

from servers.standalone import main

sys.exit(main("bootstrap"))
