#!/usr/bin/env bash
# Stage what tests/benchmarks/gpu_check.py needs on a lent GPU machine that cannot reach any registry
# (issue 20): the onnx2fx wheel (pure Python; the machine has torch, onnx, onnxruntime and OpenCV) under .whl/,
# and the weights this machine resolves plus the labelled photos of ../shared under .gpu/ (about 27 MB; both
# folders are ignored by git, so they travel only when a device call names them in `carry`). Then prints the
# device tool's command. Run from anywhere:  bash tests/benchmarks/gpu_stage.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${DRIFTBENCH_SHARED:-../shared}
export DRIFTBENCH_MODELS=${DRIFTBENCH_MODELS:-$SHARED/models}
rm -rf .gpu .whl
mkdir -p .gpu/data/faces .whl
version=$(python -c 'import importlib.metadata as m; print(m.version("onnx2fx"))')
python -m pip download -q --no-deps --only-binary=:all: "onnx2fx==$version" -d .whl
cp -r "$SHARED/data/faces/photos" .gpu/data/faces/photos
python - <<'PY'
import shutil
from pathlib import Path

from driftbench.weights import store

for key in ("sface", "yunet", "age"):
    src = store.resolve(key).path
    dst = Path(".gpu/models") / key / src.name
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    print(f"staged {key}: {src} ({src.stat().st_size / 1e6:.1f} MB)")
PY
du -sh .gpu .whl
cat <<'CMD'
device run (carry [".whl", ".gpu"], timeout_s 300):
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:. DRIFTBENCH_SHARED=.gpu DRIFTBENCH_MODELS=.gpu/models PYTHONUNBUFFERED=1 && nvidia-smi -L; python3 tests/benchmarks/gpu_check.py --out $OUT --seconds 3
CMD
