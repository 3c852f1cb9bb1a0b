"""``python -m driftbench`` is the ``driftbench`` command."""

import sys

from driftbench.cli import main

sys.exit(main())
