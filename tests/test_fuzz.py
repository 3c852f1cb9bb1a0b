"""Fuzz pass over corrupted video bytes: random byte flips, zeroed and duplicated blocks and
truncations of a real clip (both with its index at the end, as recorded, and moved to the front).
One real ``driftbench run`` in a child process (a decoder crash must fail this test, not kill
pytest) measures them all: it never crashes, and every clip is either measured or skipped with a
one-line reason and fix. Seeded, so a failure reproduces; ``-m slow`` runs 5x more variants.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import VIDEO, needs_shared
from tests.data import media
from tests.data.runs import meaningful_lines, read_csv, run_subprocess

pytestmark = needs_shared

SRC = VIDEO / "real/pcavs_input_00010.mp4"


def corrupt(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One random corruption of ``data``; returns (what was done, new bytes)."""
    b = bytearray(data)
    n = len(b)
    op = rng.choice(["flip", "flip_head", "flip_tail", "zero_block", "dup_block", "truncate", "swap"])
    if op.startswith("flip"):
        k = rng.choice([1, 4, 32, 256])
        lo, hi = {"flip": (0, n), "flip_head": (0, n // 50), "flip_tail": (n - n // 30, n)}[op]
        for _ in range(k):
            i = rng.randrange(lo, hi)
            b[i] ^= rng.randrange(1, 256)
        return f"{op}x{k}", bytes(b)
    if op == "zero_block":
        i, size = rng.randrange(n), rng.choice([16, 512, 4096])
        b[i : i + size] = bytes(len(b[i : i + size]))
        return f"zero{size}@{i}", bytes(b)
    if op == "dup_block":
        i, size = rng.randrange(n), rng.choice([16, 512, 4096])
        return f"dup{size}@{i}", bytes(b[:i] + b[i : i + size] + b[i:])
    if op == "swap":
        size = rng.choice([64, 1024])
        i, j = sorted(rng.sample(range(n - size), 2))
        if j - i >= size:
            b[i : i + size], b[j : j + size] = b[j : j + size], b[i : i + size]
        return f"swap{size}", bytes(b)
    cut = rng.randrange(1, n)
    return f"truncate@{cut}", bytes(b[:cut])


def _fuzz(tmp_path: Path, n: int, seed: int) -> None:
    ds = tmp_path / "fuzz"
    ds.mkdir()
    faststart = media.remux(SRC, tmp_path / "faststart.mp4", faststart=True)
    sources = {"moov_end": SRC.read_bytes(), "moov_front": faststart.read_bytes()}
    rng = random.Random(seed)
    made = {}
    for i in range(n):
        kind = "moov_end" if i % 2 == 0 else "moov_front"
        what, data = corrupt(sources[kind], rng)
        name = f"{i:03d}_{kind}_{what}.mp4"
        (ds / name).write_bytes(data)
        made[name] = what
    out = tmp_path / "run"
    p = run_subprocess("model=folder", f"model.path={ds}", f"output.dir={out}", "executor.workers=1",
                       cache=tmp_path / "cache")
    log = "\n".join(meaningful_lines(p.stdout + p.stderr))
    assert p.returncode in (0, 1), f"the run crashed (exit {p.returncode}):\n{log[-4000:]}"
    clips = read_csv(out / "clips.csv")
    skipped = read_csv(out / "skipped.csv")
    measured = {Path(x).name for x in clips["path"]}
    skipped_names = {Path(x).name for x in skipped["item"]}
    assert measured.isdisjoint(skipped_names)
    assert measured | skipped_names == set(made), "every fuzzed clip is measured or skipped"
    assert (skipped["reason"] != "error").all(), skipped.loc[skipped["reason"] == "error", "message"].tolist()
    for msg in skipped["message"]:
        assert "\n" not in msg and "-- fix: " in msg, msg
    reasons = Counter(skipped["reason"])
    warned = int((clips["warnings"] != "").sum())
    print(f"\nfuzz seed {seed}: {n} corrupted clips -> {len(measured)} measured ({warned} with a warning), "
          f"{len(skipped_names)} skipped {dict(sorted(reasons.items()))}")


def test_fuzzed_clips_are_measured_or_skipped(tmp_path) -> None:
    _fuzz(tmp_path, 40, seed=20251126)


@pytest.mark.slow
def test_fuzzed_clips_are_measured_or_skipped_many(tmp_path) -> None:
    _fuzz(tmp_path, 200, seed=7)
