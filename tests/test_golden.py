"""Golden tables: the per-clip and per-bin tables of two reference runs, byte for byte.

A refactoring must not change a single number: ``clips.csv`` (one row per clip) and ``curves.csv`` (one row
per clip and time bin) of

* ``driftbench run`` -- the embedded default (8 synthetic clips of 60 s), and
* ``driftbench run model=folder model.path=../shared/data/video/generated/manifest.csv`` -- the 17 generated
clips

are compared with the committed copies in ``tests/golden/``. Each run uses fresh caches (nothing is read from
an earlier run), so a change anywhere from rendering to the tables shows. The temporary directory's path,
which the tables record, is written as ``<TMP>``.

Changing numbers on purpose (a better detector, a new column): regenerate the copies in their own commit,
with the reason in its message::

    DRIFTBENCH_REGEN_GOLDEN=1 python -m pytest tests/test_golden.py -q
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import HAVE_SHARED, ROOT, SHARED_REASON

GOLDEN = ROOT / "tests" / "golden"
TABLES = ("clips.csv", "curves.csv")
GENERATED_MANIFEST = "../shared/data/video/generated/manifest.csv"
RUNS = {
    "default": [],
    "generated": ["model=folder", f"model.path={GENERATED_MANIFEST}"],
}
REGENERATE = os.environ.get("DRIFTBENCH_REGEN_GOLDEN") == "1"


def _run(name: str, tmp: Path) -> Path:
    out = tmp / "run"
    env = {**os.environ, "DRIFTBENCH_CACHE": str(tmp / "signals"), "PYTHONHASHSEED": "0"}
    p = subprocess.run([sys.executable, "-m", "driftbench", "run", *RUNS[name], f"output.dir={out}",
                        "progress=false"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, f"driftbench run ({name}) failed:\n{p.stderr[-3000:]}"
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RUNS))
def test_tables_match_golden(name: str, tmp_path: Path) -> None:
    if name == "generated" and not HAVE_SHARED:
        pytest.skip(SHARED_REASON)
    out = _run(name, tmp_path)
    for table in TABLES:
        got = (out / table).read_text(encoding="utf-8").replace(str(tmp_path), "<TMP>")
        golden = GOLDEN / f"{name}_{table}"
        if REGENERATE:
            golden.write_text(got, encoding="utf-8")
            continue
        assert golden.is_file(), (
            f"{golden} missing: DRIFTBENCH_REGEN_GOLDEN=1 python -m pytest tests/test_golden.py"
        )
        want = golden.read_text(encoding="utf-8")
        if got != want:
            header = next(csv.reader(io.StringIO(want)))
            diff = [
                f"  line {i + 1}: "
                + "; ".join(f"{header[k] if k < len(header) else k}: {x!r} -> {y!r}"
                            for k, (x, y) in enumerate(zip(ra, rb, strict=False)) if x != y)
                for i, (ra, rb) in enumerate(zip(csv.reader(io.StringIO(want)), csv.reader(io.StringIO(got)),
                                                 strict=False))
                if ra != rb
            ]
            pytest.fail(
                f"{name}/{table} differs from {golden.relative_to(ROOT)} "
                f"({len(want.splitlines())} vs {len(got.splitlines())} lines):\n" + "\n".join(diff[:5])
            )
