"""Reports: self-contained HTML (inline images and CSS, no network), re-rendered from run tables.

Report code reads tables only: it never imports video decoding, face backends or generator adapters.
"""

from driftbench.report.html import render_run

__all__ = ["render_run"]
