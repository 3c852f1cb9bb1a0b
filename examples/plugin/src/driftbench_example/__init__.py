"""An example driftbench plug-in (see examples/plugin/README.md)."""
