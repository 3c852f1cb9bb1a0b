"""``model=folder``: clips from a directory or a manifest (CSV / YAML / JSON).

Directory: every file matching ``pattern``; a clip's reference is an image beside it with the same
stem (``clip.mp4`` + ``clip.jpg``), else its own opening (first_frame).

Manifest columns (aliases in brackets; only the clip path is required):
  clip [path, file, video]     the clip, relative to the manifest's folder or absolute
  reference [references, ref]  image path(s) separated by ';', or ``first_frame``
  character [person, subject]  default: the clip's file stem; several separated by ';' (``anna;ben``) make
                               a cast: one clip per character, ``<clip>#<character>``, each with its own
                               reference entry in ``reference`` (separated by ';': images joined by '|',
                               ``first_frame@left|right|x0,y0,x1,y1``; a lone ``first_frame`` = the
                               frame's vertical strips left to right); see driftbench.measure.cast
  prompt_id [prompt], seed, model [generator], mitigation
Every other column is kept in the clip's ``meta`` (and shown in reports, escaped).
Manifest paths may point anywhere the user chooses (DESIGN.md); what driftbench writes never
leaves the run directory. """

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from driftbench.errors import UsageError, printable
from driftbench.measure.cast import parse_cast
from driftbench.sources.base import (
    FIRST_FRAME,
    Clip,
    Skipped,
    SourceContext,
)

MANIFEST_SUFFIXES = {".csv", ".yaml", ".yml", ".json"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
ALIASES = {
    "clip": ("clip", "path", "file", "video"),
    "reference": ("reference", "references", "ref"),
    "character": ("character", "person", "subject"),
    "prompt_id": ("prompt_id", "prompt"),
    "seed": ("seed",),
    "model": ("model", "generator"),
    "mitigation": ("mitigation",),
}


def _pick(row: dict[str, Any], key: str) -> Any:
    for alias in ALIASES[key]:
        if alias in row and row[alias] not in (None, ""):
            return row[alias]
    return None


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV/YAML/JSON manifest as dicts; a clear UsageError when it cannot be used."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            import pandas as pd

            df = pd.read_csv(path, dtype=str, keep_default_na=False)
            rows = df.to_dict(orient="records")
        else:
            text = path.read_text(encoding="utf-8")
            if suffix == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
            if isinstance(data, dict):
                data = data.get("clips", data.get("items"))
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise UsageError(
                    f"{path}: manifest must be a list of clip entries (or a mapping with 'clips:') "
                    "-- fix: see `driftbench run --help` for the manifest format"
                )
            rows = data
    except UsageError:
        raise
    except Exception as exc:
        detail = printable(" ".join(str(exc).split()))[:300]  # parser errors span lines (YAML draws carets)
        if suffix in (".yaml", ".yml") and not isinstance(exc, UnicodeDecodeError):
            fix = (
                "correct the YAML syntax at the line and column above (a list of entries like "
                "'- {clip: a.mp4, reference: a.jpg}')"
            )
            kind = "YAML"
        elif suffix == ".json" and not isinstance(exc, UnicodeDecodeError):
            fix = 'correct the JSON syntax at the line and column above (a list of {"clip": ...} objects)'
            kind = "JSON"
        else:
            fix = "save it as UTF-8 CSV with a header row (clip,reference,character,...)"
            kind = "manifest"
        raise UsageError(
            f"{path}: unreadable {kind} manifest ({type(exc).__name__}: {detail}) -- fix: {fix}"
        ) from None
    if not rows:
        raise UsageError(f"{path}: manifest has no rows -- fix: add one row per clip")
    columns = set().union(*(r.keys() for r in rows))
    if not columns & set(ALIASES["clip"]):
        raise UsageError(
            f"{path}: manifest has no clip column (found: {printable(', '.join(sorted(map(str, columns))))}) "
            f"-- fix: name the column holding the video paths 'clip'"
        )
    return [{str(k).strip(): ("" if v is None else v) for k, v in r.items()} for r in rows]


def _resolve(base: Path, value: str) -> Path:
    p = Path(str(value).strip()).expanduser()
    return p if p.is_absolute() else (base / p)


def check_path(cfg: Any) -> Path:
    root = Path(str(cfg.path)).expanduser()
    if not root.exists():
        raise UsageError(f"{root}: model.path does not exist -- fix: point model.path at a folder of clips "
                         "or a manifest file")
    return root


def preflight(cfg: Any) -> None:
    """Before any work (and before a run directory exists): the path exists, a manifest is readable with
    a clip column, and the clips can be listed (some clip to measure, no duplicate ids)."""
    check_path(cfg)
    FolderSource(cfg, None).clips()



class FolderSource:
    #: cheap checks before any work, run by :func:`driftbench.sources.base.preflight`
    preflight = staticmethod(preflight)

    def __init__(self, cfg: Any, ctx: SourceContext | None) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self._skipped: list[Skipped] = []

    @property
    def skipped(self) -> list[Skipped]:
        return self._skipped

    def clips(self) -> list[Clip]:
        root = check_path(self.cfg)
        if root.is_dir():
            clips = self._from_dir(root)
        elif root.suffix.lower() in MANIFEST_SUFFIXES:
            clips = self._from_manifest(root)
        else:
            # a single video file is a folder of one clip
            clips = [self._clip_for_file(root, root.parent)]
        ids = [c.clip_id for c in clips]
        dups = sorted({i for i in ids if ids.count(i) > 1})
        if dups:
            raise UsageError(
                f"{root}: duplicate clip ids {dups[:5]} -- fix: give each manifest row a unique clip "
                "path or an explicit clip_id column"
            )
        if not clips and not self._skipped:
            raise UsageError(f"{root}: no clips matching {self.cfg.pattern!r} -- fix: set model.pattern "
                             "(e.g. '*.mov') or model.recursive=true")
        return clips

    def _clip_for_file(self, f: Path, base: Path) -> Clip:
        refs: tuple[str, ...] = ()
        for suf in IMAGE_SUFFIXES:
            cand = f.with_suffix(suf)
            if cand.is_file():
                refs = (str(cand),)
                break
        rel = f.relative_to(base).as_posix() if f.is_relative_to(base) else str(f)
        return Clip(clip_id=rel, path=str(f), character=f.stem, references=refs, prompt_id=f.stem,
                    model=str(self.cfg.label), meta={"source": "folder"})

    def _from_dir(self, root: Path) -> list[Clip]:
        pattern = str(self.cfg.pattern)
        files = sorted(root.rglob(pattern) if self.cfg.recursive else root.glob(pattern))
        clips = []
        for f in files:
            if f.is_file():
                clips.append(self._clip_for_file(f, root))
            elif f.is_symlink():  # dangling (target gone) or looping: listed, never silently dropped
                item = printable(str(f))
                self._skipped.append(
                    Skipped(
                        item,
                        "broken_symlink",
                        f"{item}: symbolic link to a missing file (or a "
                        "link loop) -- fix: point the link at the clip, or remove it",
                    )
                )
        return clips

    def _from_manifest(self, manifest: Path) -> list[Clip]:
        base = manifest.parent
        clips: list[Clip] = []
        for i, row in enumerate(read_manifest(manifest)):
            where = f"{manifest}:{i + 2 if manifest.suffix.lower() == '.csv' else i + 1}"
            clip_val = _pick(row, "clip")
            if clip_val is None:
                self._skipped.append(
                    Skipped(
                        where,
                        "bad_manifest_row",
                        f"{where}: row has no clip path -- fix: fill the clip column",
                    )
                )
                continue
            ref_val = _pick(row, "reference")
            if "\0" in str(clip_val) + str(ref_val):  # no file name holds one; os.stat would raise
                self._skipped.append(Skipped(where, "bad_manifest_row", f"{where}: a path contains a NUL "
                                             "character -- fix: correct the clip/reference cell"))
                continue
            path = _resolve(base, str(clip_val))
            refs: tuple[str, ...] = ()
            if ref_val is not None and str(ref_val).strip().lower() != FIRST_FRAME:
                refs = tuple(str(_resolve(base, r)) for r in str(ref_val).split(";") if r.strip())
            seed_val = _pick(row, "seed")
            try:
                seed = int(float(seed_val)) if seed_val is not None else 0
            except (ValueError, OverflowError, TypeError):  # "abc", "1e400", a YAML list
                self._skipped.append(
                    Skipped(
                        where,
                        "bad_manifest_row",
                        f"{where}: seed {seed_val!r} is not a number -- fix: use an integer",
                    )
                )
                continue
            known = {a for aliases in ALIASES.values() for a in aliases}
            meta = {k: v for k, v in row.items() if k not in known and k != "clip_id"}
            meta["source"] = "manifest"
            clip_id = str(row.get("clip_id") or clip_val)
            character = str(_pick(row, "character") or path.stem)
            if sum(bool(n.strip()) for n in character.split(";")) > 1:  # a cast: one clip per character
                try:
                    cast = parse_cast(character, None if ref_val is None else str(ref_val),
                                      lambda r: _resolve(base, r))
                except ValueError as exc:
                    self._skipped.append(Skipped(where, "bad_manifest_row", f"{where}: {exc} -- fix: see "
                                                 "docs/MULTI-CHARACTER.md for the cast format"))
                    continue
                meta["cast"] = [m.to_json() for m in cast]
                clips.extend(Clip(
                    clip_id=f"{clip_id}#{m.name}", path=str(path), character=m.name, references=m.images,
                    prompt_id=str(_pick(row, "prompt_id") or path.stem), seed=seed,
                    model=str(_pick(row, "model") or self.cfg.label),
                    mitigation=str(_pick(row, "mitigation") or "none"), meta=meta) for m in cast)
                continue
            clips.append(Clip(
                clip_id=clip_id, path=str(path), character=character, references=refs,
                prompt_id=str(_pick(row, "prompt_id") or path.stem), seed=seed,
                model=str(_pick(row, "model") or self.cfg.label),
                mitigation=str(_pick(row, "mitigation") or "none"), meta=meta))
        return clips

