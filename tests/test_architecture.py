"""The architecture's arrows (pyproject.toml [tool.importlinter], docs/DESIGN-NOTES.md "Tour") hold:
lint-imports checks them on the whole import graph, imports inside functions included. .ci/run runs it too;
this test makes a plain `python -m pytest` fail on a broken arrow as well."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import ROOT


def test_import_contracts_are_kept():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    p = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "0 broken" in p.stdout


def test_at_most_eight_modules_beside_the_stage_packages():
    flat = sorted(
        p.name for p in (ROOT / "driftbench").glob("*.py") if p.name not in ("__init__.py", "__main__.py")
    )
    assert len(flat) <= 8, flat
