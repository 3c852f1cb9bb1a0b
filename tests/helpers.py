"""Helpers for tests: build real-footage clips (splices, copies) with PyAV, run the CLI in-process."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np


def splice(parts: list[tuple[Path, float, float]], out: Path, size: int = 360, fps: int = 25) -> Path:
    """Concatenate [start, end) segments of real clips into one H.264 clip (frames resized to size^2)."""
    import av
    import cv2

    with av.open(str(out), "w") as dst:
        stream = dst.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        n = 0
        for path, start, end in parts:
            with av.open(str(path)) as src:
                vs = src.streams.video[0]
                t0 = None
                next_t = start
                for frame in src.decode(vs):
                    t = float(frame.time)
                    t0 = t if t0 is None else t0
                    rel = t - t0
                    if rel < next_t - 1e-6:
                        continue
                    if rel >= end:
                        break
                    img = cv2.resize(
                        frame.to_ndarray(format="rgb24"), (size, size), interpolation=cv2.INTER_AREA
                    )
                    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                    vf.pts = n
                    n += 1
                    for pkt in stream.encode(vf):
                        dst.mux(pkt)
                    next_t += 1.0 / fps
        for pkt in stream.encode():
            dst.mux(pkt)
    return out


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            subprocess_: bool = False) -> tuple[int, str, str]:
    """Run `driftbench ARGS`; returns (exit code, stdout, stderr)."""
    if subprocess_:
        import os

        p = subprocess.run(
            [sys.executable, "-m", "driftbench", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=900,
            check=False,
        )
        return p.returncode, p.stdout, p.stderr
    from driftbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def report_scripts(html: str) -> tuple[list[str], list[object]]:
    """A report page's runnable scripts and its parsed JSON data blocks. Asserts what makes the page safe
    whatever the user strings: every runnable script is one that driftbench ships (the table sorter, and
    with browser charts uPlot and the chart drawer), byte for byte, so no user text is inside one; the
    Content-Security-Policy admits exactly those scripts by their sha256; and a data block is plain JSON
    that no string can close early (no "<" in it: user text is \\u003c-escaped)."""
    import base64
    import hashlib
    import json
    import re
    from html.parser import HTMLParser

    from driftbench.report import html as report_html

    class Scripts(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.found: list[tuple[str | None, str]] = []
            self.csp = ""
            self._in = False

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            d = dict(attrs)
            if tag == "meta" and d.get("http-equiv") == "Content-Security-Policy":
                self.csp = str(d.get("content"))
            self._in = tag == "script"
            if self._in:
                self.found.append((d.get("type"), ""))

        def handle_endtag(self, tag: str) -> None:
            self._in = False

        def handle_data(self, data: str) -> None:
            if self._in:
                kind, text = self.found[-1]
                self.found[-1] = (kind, text + data)

    p = Scripts()
    p.feed(html)
    runnable = [text for kind, text in p.found if kind is None]
    data = [text for kind, text in p.found if kind == "application/json"]
    assert len(runnable) + len(data) == len(p.found), p.found
    shipped = {report_html.SORT_JS, *(report_html._static(n) for n in report_html.CHART_SCRIPTS)}
    assert runnable and all(js in shipped for js in runnable), "a script that driftbench does not ship"
    hashes = set(re.findall(r"'sha256-([A-Za-z0-9+/=]+)'", p.csp))
    assert hashes == {base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode()
                      for js in runnable}
    assert "default-src 'none'" in p.csp and "img-src data:" in p.csp
    assert all("<" not in block for block in data)
    return runnable, [json.loads(block) for block in data]
