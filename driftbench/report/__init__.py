"""Reports: self-contained HTML (inline images and CSS, no network) plus the same numbers as CSV and JSON,
re-rendered from run tables.

report: the last stage. Reads tables only, through results/ (leaderboard, statistics, metric cards): it never
imports video decoding, face backends, clip sources or generator adapters (import-linter contract). May import
results, io and errors; never runner or cli.
"""

from driftbench.report.html import render_run, render_runs, render_runset, render_sweep, sweep_run_dirs

__all__ = ["render_run", "render_runs", "render_runset", "render_sweep", "sweep_run_dirs"]
