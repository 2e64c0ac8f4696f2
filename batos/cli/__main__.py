"""``python -m batos.cli`` is the ``batos`` command."""

import sys

from batos.cli import main

sys.exit(main())
