"""Atomic, reproducible writes: temp file + rename, rounded floats, sorted rows, no timestamps in tables.

Every text file goes through :func:`driftbench.errors.scrub` (no credential is ever written), and
CSV text cells that a spreadsheet would run as a formula are neutralised (:func:`neutralise_cell`).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

#: decimals kept for floats in CSV/JSON tables (DESIGN: stated precision, byte-identical reruns)
FLOAT_DECIMALS = 6


@contextmanager
def atomic_path(path: str | os.PathLike[str], mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds, with
    permissions ``mode`` (default: the usual 0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask() if mode is None else mode)  # mkstemp makes 0600
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike[str], data: bytes, mode: int | None = None) -> None:
    with atomic_path(path, mode) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    from driftbench.errors import scrub

    write_bytes(path, scrub(text, patterns=False).encode("utf-8"))


def _clean(obj: Any, decimals: int) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v, decimals) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v, decimals) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_clean(v, decimals) for v in obj.tolist()]
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        f = float(obj)
        if math.isnan(f) or math.isinf(f):
            return None
        return round(f, decimals)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps_json(obj: Any, *, decimals: int = FLOAT_DECIMALS) -> str:
    """JSON with rounded floats, NaN -> null and sorted keys: same numbers, same bytes."""
    return json.dumps(_clean(obj, decimals), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json(path: str | os.PathLike[str], obj: Any, *, decimals: int = FLOAT_DECIMALS) -> None:
    write_text(path, dumps_json(obj, decimals=decimals))


def write_csv(path: str | os.PathLike[str], df: Any, *, sort_by: list[str] | None = None,
              decimals: int = FLOAT_DECIMALS) -> None:
    """Write a DataFrame as CSV with rounded floats and a stable row order."""
    import pandas as pd

    from driftbench.errors import secret_values

    out = df.copy()
    if sort_by:
        out = out.sort_values(sort_by, kind="mergesort").reset_index(drop=True)
    secrets = secret_values()  # once per table, not once per cell
    floats = [col for col in out.columns if pd.api.types.is_float_dtype(out[col])]
    if floats:  # one assignment for all of them (one per column costs ~1 ms each on a wide table)
        out[floats] = out[floats].round(decimals)
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = [_safe_cell(v, secrets) for v in out[col]]
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False, lineterminator="\n")


#: first characters that make a spreadsheet read a cell as a formula (CSV injection; OWASP)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(text: str) -> str:
    """A text cell a spreadsheet would run as a formula gets a leading apostrophe (``=cmd|...`` ->
    ``'=cmd|...``); numbers written as text (``-0.5``) stay as they are. Reversible:
    :func:`restore_cell` (a cell that already starts with apostrophes before such a character gets
    one more, so every value reads back exactly)."""
    stripped = text.lstrip("'")
    if not stripped.startswith(FORMULA_START) or (stripped is text and _is_number(text)):
        return text
    return "'" + text


def restore_cell(text: str) -> str:
    """The inverse of :func:`neutralise_cell` (for readers of driftbench's CSV tables)."""
    if text.startswith("'") and text.lstrip("'").startswith(FORMULA_START):
        return text[1:]
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _safe_cell(value: Any, secrets: list[str] | None = None) -> Any:
    if isinstance(value, str):
        from driftbench.errors import scrub

        return neutralise_cell(scrub(value, values=secrets))
    return value


def read_csv(path: str | os.PathLike[str], **kwargs: Any) -> Any:
    """A CSV table written by :func:`write_csv`, text cells restored (see :func:`neutralise_cell`)."""
    import pandas as pd

    df = pd.read_csv(path, **kwargs)
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = [restore_cell(v) if isinstance(v, str) else v for v in df[col]]
    return df


def write_parquet(path: str | os.PathLike[str], df: Any) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False, engine="pyarrow")


def check_run_tables(run_dir: str | os.PathLike[str]) -> None:
    """Raise :class:`~driftbench.errors.UsageError` (one line: the file, the problem, the fix) when a
    run directory's tables cannot be read back: run.json that is not a JSON object, a CSV table that
    does not parse, a Parquet table that is truncated. Reads only footers and small files."""
    import pandas as pd
    import pyarrow.parquet as pq

    from driftbench.errors import UsageError

    d = Path(run_dir)
    fix = "rerun the same `driftbench run` command to rewrite it (the measured clips are resumed)"

    def fail(path: Path, exc: BaseException) -> UsageError:
        return UsageError(
            f"{path}: damaged ({type(exc).__name__}: {' '.join(str(exc).split())[:160]}) -- fix: {fix}"
        )

    if (d / "run.json").is_file():
        try:
            meta = json.loads((d / "run.json").read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            raise fail(d / "run.json", exc) from None
    for name in ("clips.csv", "curves.csv", "skipped.csv"):
        p = d / name
        if p.is_file() and p.stat().st_size:
            try:
                pd.read_csv(p, dtype=str, keep_default_na=False)
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                raise fail(p, exc) from None
    for name in ("frames.parquet", "thumbs.parquet"):
        p = d / name
        if p.is_file():
            try:
                pq.read_metadata(p)
            except Exception as exc:
                raise fail(p, exc) from None
