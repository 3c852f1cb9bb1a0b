"""Reports: self-contained HTML (inline images and CSS, no network) plus the same numbers as CSV and JSON,
re-rendered from run tables.

Report code reads tables only: it never imports video decoding, face backends or generator adapters.
"""

from driftbench.report.html import render_run, render_runs, render_runset, render_sweep, sweep_run_dirs

__all__ = ["render_run", "render_runs", "render_runset", "render_sweep", "sweep_run_dirs"]
