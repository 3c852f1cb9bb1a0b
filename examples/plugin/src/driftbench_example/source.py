"""``model.name: clip_list``: the clips named, one path per line, in a text file (``model.path``);
each clip's character is its parent folder's name and its reference is the clip's own opening."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from driftbench.sources.base import Clip, Skipped, SourceContext


class ClipList:
    def __init__(self, cfg: Any, ctx: SourceContext) -> None:
        self.path = Path(str(cfg.path)).expanduser()
        self.label = str(cfg.get("label", "clip_list"))
        self._skipped: list[Skipped] = []

    @property
    def skipped(self) -> list[Skipped]:
        return self._skipped

    def clips(self) -> list[Clip]:
        from driftbench.errors import UsageError

        if not self.path.is_file():
            raise UsageError(f"model.path={self.path}: no such file -- fix: a text file with one clip path a line")
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            clip = (self.path.parent / line.strip()).resolve()
            if not clip.is_file():
                self._skipped.append(Skipped(str(clip), "missing_file", f"{clip}: listed in {self.path} but "
                                             "missing -- fix: correct the path or remove the line"))
                continue
            out.append(Clip(clip_id=f"{self.label}:{clip.stem}", path=str(clip), character=clip.parent.name,
                            prompt_id=clip.stem, model=self.label))
        return out


def create(cfg: Any, ctx: SourceContext) -> ClipList:
    return ClipList(cfg, ctx)
