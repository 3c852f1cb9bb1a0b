from __future__ import annotations

import pytest

from driftbench.errors import ModelNotFoundError
from driftbench.weights import store
from tests.conftest import SHARED_MODELS, needs_shared


@needs_shared
def test_resolves_from_a_local_folder_one_level_down(monkeypatch, tmp_path):
    monkeypatch.setenv("DRIFTBENCH_MODELS", str(SHARED_MODELS))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    r = store.resolve("sface")
    assert r.origin == "local" and r.path.parent.name == "sface"
    assert r.sha256.startswith("fb143eea")


def test_a_wrong_file_with_the_right_name_is_never_used(monkeypatch, tmp_path):
    d = tmp_path / "models"
    (d / "sface").mkdir(parents=True)
    (d / "sface" / "face_recognition_sface_2021dec_int8bq.onnx").write_bytes(b"not the model" * 1000)
    monkeypatch.setenv("DRIFTBENCH_MODELS", str(d))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(store, "_package_path", lambda asset: None)
    with pytest.raises(ModelNotFoundError) as ei:
        store.resolve("sface", download=False)
    assert "driftbench fetch" in str(ei.value)


def test_every_asset_has_a_checksum_size_and_a_source():
    for key, candidates in store.ASSETS.items():
        for a in candidates:
            assert len(a.sha256) == 64 and a.size > 0, key
            assert a.wheel or a.url or a.package, key
