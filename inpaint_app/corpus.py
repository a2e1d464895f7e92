"""The real-world evaluation corpus: public image sets that nobody on the project made.

Each set is described in ``benchmarks/realworld/NAME/``: ``set.json`` (its model, role, kind,
source, commit, licence, md5s), a README, and a ``get.py`` that fetches and unpacks it to
``DATA_ROOT/realworld/NAME``. No image of the corpus is committed; a set that has not been
fetched has no files, and the evaluation says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent.parent / "benchmarks" / "realworld"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class RealSet:
    """One set of the corpus: what ``set.json`` says, and the files found for it."""

    name: str
    model: str  # "mnist", "fashion-mnist" or "any"
    role: str  # "in" (the model's own kind, captured otherwise) or "out" (an outlier set)
    kind: str
    files: tuple[Path, ...]
    copy: str  # where its files are, or "not fetched"

    def serves(self, model: str) -> bool:
        """Whether the set belongs to ``model``'s evaluation (an "any" set serves every one)."""
        return self.model in (model, "any")


def spread_sample(files: tuple[Path, ...], limit: int | None) -> tuple[Path, ...]:
    """``limit`` of ``files``, evenly spaced over them (all when there are no more). The sets'
    files are named by class, so the first ``limit`` would be the first few classes only."""
    if not limit or len(files) <= limit:
        return files
    step = len(files) / limit
    return tuple(files[int(i * step)] for i in range(limit))


def _images(folder: Path) -> tuple[Path, ...]:
    if not folder.is_dir():
        return ()
    return tuple(sorted(p for p in folder.iterdir()
                        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")))


def real_sets(copies: str | Path | None = None, corpus: Path = CORPUS_DIR,
              limit: int | None = None) -> list[RealSet]:
    """Every set of the corpus with the images ``get.py`` wrote under ``copies/NAME`` (none
    when the set was not fetched). ``limit``: at most this many files a set, evenly spaced over
    the sorted files (``spread_sample``)."""
    out = []
    for meta_path in sorted(corpus.glob("*/set.json")):
        meta = json.loads(meta_path.read_text())
        folder = Path(copies) / meta["name"] if copies else None
        files = _images(folder) if folder else ()
        out.append(RealSet(name=meta["name"], model=meta["model"], role=meta["role"],
                           kind=meta["kind"], files=spread_sample(files, limit),
                           copy=str(folder) if files else "not fetched"))
    return out
