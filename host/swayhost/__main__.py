"""``python -m swayhost``: the CLI."""

import sys

from swayhost.cli import main

sys.exit(main())
