"""``python -m driftbench`` is the ``driftbench`` command."""

from driftbench.cli import console_main

console_main()
