"""Property: whatever a manifest holds (random columns, values, paths, unicode, newlines, nested
YAML/JSON, wrong types, binary junk), the folder source either yields clips (plus skipped rows with
one-line reasons) or raises a UsageError with a one-line message and a fix. It never crashes.

No video is opened here: a manifest is read and turned into Clip records, which is where a bad
manifest must be caught (before any work).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from driftbench.errors import UsageError
from driftbench.sources.base import Clip, SourceContext
from driftbench.sources.folder import ALIASES, FolderSource

KNOWN = sorted({a for names in ALIASES.values() for a in names} | {"clip_id"})

paths = st.one_of(
    st.sampled_from(
        [
            "clip.mp4",
            "../outside/clip.mp4",
            "/abs/clip.mp4",
            "a/../../b.mp4",
            "~/x.mp4",
            "first_frame",
            "a.jpg;b.jpg",
            ";",
            " ",
            ".",
            "..",
            "C:\\win\\clip.mp4",
            "clip.mp4\nsecond line",
        ]
    ),
    st.text(max_size=30),
)
scalars = st.one_of(paths, st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.none(), st.sampled_from(["1e400", "-1e400", "nan", "inf", "12", " 7 ", "0x10", "٣"]))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=5,
)
column = st.one_of(st.sampled_from(KNOWN), st.text(max_size=12))


@st.composite
def manifests(draw: st.DrawFn) -> tuple[str, Any]:
    fmt = draw(st.sampled_from(["csv", "json", "yaml", "raw"]))
    if fmt == "raw":
        return fmt, draw(st.binary(max_size=200))
    cols = draw(st.lists(column, max_size=6, unique=True))
    n = draw(st.integers(0, 5))
    cell = scalars if fmt == "csv" else values
    rows = [{c: draw(cell) for c in cols if draw(st.booleans()) or c in ALIASES["clip"]} for _ in range(n)]
    shape = draw(st.sampled_from(["list", "clips", "items", "other", "scalar"])) if fmt != "csv" else "list"
    data: Any = {"list": rows, "clips": {"clips": rows}, "items": {"items": rows}, "other": {"x": rows},
                 "scalar": draw(scalars)}[shape]
    return fmt, data


def _write(d: Path, fmt: str, data: Any) -> Path:
    if fmt == "raw":
        p = d / "manifest.csv"
        p.write_bytes(data)
    elif fmt == "csv":
        p = d / "manifest.csv"
        pd.DataFrame(data).to_csv(p, index=False)
    elif fmt == "json":
        p = d / "manifest.json"
        p.write_text(json.dumps(data, allow_nan=True), encoding="utf-8")
    else:
        p = d / "manifest.yaml"
        p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return p


def _check(p: Path) -> None:
    cfg = SimpleNamespace(path=str(p), pattern="*.mp4", recursive=False, label="folder")
    source = FolderSource(cfg, SourceContext(work_dir=p.parent / "work", cache_dir=p.parent / "cache"))
    try:
        clips = source.clips()
    except UsageError as exc:
        event("usage error")
        msg = str(exc)
        assert "\n" not in msg and "\r" not in msg, f"multi-line message: {msg!r}"
        assert str(p) in msg and "-- fix: " in msg, msg
        return
    event(f"{min(len(clips), 3)}{'+' if len(clips) >= 3 else ''} clips, {len(source.skipped)} rows skipped")
    for c in clips:
        assert isinstance(c, Clip) and isinstance(c.path, str) and c.clip_id and isinstance(c.seed, int)
        assert all(isinstance(r, str) and "\0" not in r for r in c.references) and "\0" not in c.path
        json.dumps(dict(c.meta), default=str)  # JSON-able for clips.csv
        assert math.isfinite(c.seed)
    for s in source.skipped:
        assert "\n" not in s.message and "-- fix: " in s.message, s.message
    assert len({c.clip_id for c in clips}) == len(clips)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests())
@example(("csv", [{"clip": "a.mp4", "seed": "1e400"}]))
@example(("yaml", [{"clip": {"nested": ["x"]}, "reference": [1, 2]}]))
@example(("yaml", "a: [unclosed"))
@example(("csv", [{"clip": "a.mp4\nb"}, {"clip": "a.mp4\nb"}]))
@example(("json", [{"clip": "a\0.mp4"}, {"clip": "b.mp4", "reference": "r\0.jpg"}]))
@example(("json", [{"clip": "x.mp4", "clip_id": None}, {"clip": "y.mp4", "clip_id": 0}]))
def test_manifest_yields_clips_or_one_line_usage_error(m: tuple[str, Any]) -> None:
    fmt, data = m
    with tempfile.TemporaryDirectory() as d:
        if fmt == "yaml" and isinstance(data, str):
            p = Path(d) / "manifest.yaml"
            p.write_text(data, encoding="utf-8")
        else:
            p = _write(Path(d), fmt, data)
        _check(p)


def test_manifest_paths_may_point_anywhere(tmp_path: Path) -> None:
    """DESIGN.md: manifest paths may point anywhere the user chooses (relative paths resolve against
    the manifest's folder)."""
    d = tmp_path / "set"
    d.mkdir()
    rows = [{"clip": "../elsewhere/a.mp4", "reference": "../refs/a.jpg;/abs/b.png"},
            {"clip": "/abs/clip.mp4", "reference": "first_frame"},
            {"clip": "sub/../c.mp4", "character": "Zoë ‮", "clip_id": "../../etc/x"}]
    p = _write(d, "csv", rows)
    source = FolderSource(SimpleNamespace(path=str(p), pattern="*.mp4", recursive=False, label="folder"),
                          SourceContext(work_dir=tmp_path / "w", cache_dir=tmp_path / "c"))
    clips = {c.clip_id: c for c in source.clips()}
    assert Path(clips["../elsewhere/a.mp4"].path) == d / "../elsewhere/a.mp4"
    assert clips["../elsewhere/a.mp4"].references == (str(d / "../refs/a.jpg"), "/abs/b.png")
    assert clips["/abs/clip.mp4"].path == "/abs/clip.mp4" and clips["/abs/clip.mp4"].references == ()
    assert clips["../../etc/x"].character == "Zoë ‮"
