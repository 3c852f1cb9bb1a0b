"""driftbench: measure character (identity) drift in AI-generated video."""

__version__ = "0.1.0"
