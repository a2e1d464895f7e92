"""Example images that ship beside a model (``<bundle>/examples/``) for the app's gallery.

Each example is one of the model's own validation images at the model's size, so it shows what
the model was made for and was never trained on. ``examples.json`` beside the PNG files says
what each one shows and which mask preset hides a telling part of it:

    {"mnist-val-03.png": {"shows": "a handwritten 7", "mask": "right",
                          "source": "MNIST validation image 3"}}

A PNG without an entry (or a folder without the index) is still an example, with nothing said
of it; an unreadable index is ignored with one log line rather than costing the model its place
in the app. ``write_examples`` replaces a folder's examples as a whole: written beside it, then
swapped in, so a crash leaves the old set or the new one, never a mix.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from .images import save_png
from .masks import MASK_PRESETS

INDEX_FILE = "examples.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One gallery image: its file, what it shows, a mask preset that suits it, where it came
    from (each None where the index says nothing)."""

    path: Path
    shows: str | None = None
    mask: str | None = None
    source: str | None = None


def read_examples(folder: Path) -> list[Example]:
    """The PNG files in ``folder`` sorted by name, described by its ``examples.json`` (the
    previous set where a replacement stopped between its two renames)."""
    if not folder.is_dir() and _previous(folder).is_dir():
        folder = _previous(folder)
    files = sorted(folder.glob("*.png")) if folder.is_dir() else []
    index = _read_index(folder / INDEX_FILE) if files else {}
    out = []
    for path in files:
        entry = index.get(path.name)
        entry = entry if isinstance(entry, dict) else {}
        mask = entry.get("mask")
        out.append(Example(path, shows=_text(entry.get("shows")),
                           mask=mask if mask in MASK_PRESETS else None,
                           source=_text(entry.get("source"))))
    return out


def write_examples(folder: Path, images: torch.Tensor, shows: list[str | None],
                   masks: list[str | None], sources: list[str | None], *, prefix: str = "val"
                   ) -> list[Example]:
    """Replace the examples in ``folder`` with ``images`` (uint8 ``[N, C, H, W]``) named
    ``<prefix>-00.png`` ... and their index; returns them as read back."""
    if not len(images) == len(shows) == len(masks) == len(sources):
        raise ValueError("one description, mask and source per image")
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected uint8 images [N, 1 or 3, H, W], got {images.dtype} "
                         f"{tuple(images.shape)}")
    unknown = sorted({m for m in masks if m is not None and m not in MASK_PRESETS})
    if unknown:
        raise ValueError(f"unknown mask presets {unknown}: choose from {list(MASK_PRESETS)}")
    staging = folder.with_name(folder.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    digits = max(2, len(str(len(images) - 1)))  # names sort in order past 99
    try:
        index = {}
        for i, image in enumerate(images):
            name = f"{prefix}-{i:0{digits}d}.png"
            save_png(image, staging / name)
            index[name] = {key: value for key, value in
                           (("shows", shows[i]), ("mask", masks[i]), ("source", sources[i]))
                           if value is not None}
        (staging / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = _previous(folder)
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return read_examples(folder)


def _previous(folder: Path) -> Path:
    return folder.with_name(folder.name + ".old")


def _read_index(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        log.warning("ignoring %s: %s", path, err)
        return {}
    if not isinstance(index, dict):
        log.warning("ignoring %s: not a JSON object", path)
        return {}
    return index


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None
