"""``python -m driftbench`` is the ``driftbench`` command."""

from driftbench.cli.main import console_main

console_main()
