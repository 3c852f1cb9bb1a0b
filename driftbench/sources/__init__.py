"""Clip sources (``conf/model/*``): where a run's clips come from."""
