"""driftbench.measure.preload: a gated preload imports nothing until the measurement says it has settled
(or until someone waits for it)."""

from __future__ import annotations

import sys
import time

import pytest

from driftbench.measure import preload


@pytest.fixture()
def module(tmp_path, monkeypatch):
    name = f"driftbench_preload_probe_{time.monotonic_ns()}"
    (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)
    preload.measuring_settled()  # leave the gate open for whatever runs next


def test_a_gated_preload_waits_for_the_measurement_to_settle(module):
    p = preload.Preload([module], gated=True)
    time.sleep(0.2)
    assert module not in sys.modules
    preload.measuring_settled()
    p.wait()
    assert module in sys.modules


def test_waiting_releases_a_gated_preload(module):
    p = preload.Preload([module], gated=True)
    p.wait()  # the measurement never said it settled (all clips resumed, or it failed early)
    assert module in sys.modules


def test_an_ungated_preload_starts_at_once(module):
    preload.Preload(["json"], gated=True).wait()
    p = preload.Preload([module])
    for _ in range(100):
        if module in sys.modules:
            break
        time.sleep(0.02)
    assert module in sys.modules
    p.wait()


@pytest.mark.parametrize("name, clips, workers, here", [
    ("local", 1, 0, True), ("local", 5, 1, True), ("local", 1, 4, True), ("local", 5, 4, False),
    ("ray", 1, 0, False),
])
def test_in_process_is_where_clips_are_measured(name, clips, workers, here):
    from driftbench.measure.executors import in_process

    assert in_process(name, clips, workers) is here


def test_a_deferred_module_is_imported_on_first_attribute_access(module):
    proxy = preload.deferred(module)
    assert module not in sys.modules
    assert proxy.VALUE == 1
    assert module in sys.modules
    assert repr(proxy) == f"<deferred module {module!r}>"


def test_the_path_to_a_clips_first_frame_imports_no_pandas():
    """pandas (~0.6 s of import on 2 cores) is deferred to the preload thread: the modules a run imports
    before its first frame name it through measure.preload.deferred."""
    import subprocess

    code = ("import sys; import driftbench.runner, driftbench.sources.folder, driftbench.measure.clip; "
            "print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
    assert "pandas" in preload.MEASURE_MODULES
