"""A folder of one's own images as a dataset: uint8 tensors ``[N, C, H, W]`` for training,
validation and calibration.

    data = load_folder("photos/", FolderSpec.infer("photos/"))
    data.train, data.val          # the split is decided by a hash of each file's path
    data.skipped                  # [(name, why)] for files that are not usable images

The folder may be flat or hold class subfolders (torchvision's ``ImageFolder`` layout): every
file below it is a candidate, and labels are ignored. Files go through the same reader as uploads
(``images.open_image``: non-images, truncated files, decompression bombs and files over 20 MB are
refused from the header) and the same input normalization (``normalize.prepare``), so a model
sees its training images exactly as it will see uploads. A file that cannot be used is skipped
with one reason each; nothing else is lost.

- Validation: a file is held out when the SHA-256 of its relative path (bytes) falls in the
  first ``VAL_SHARE`` of the hash range, so the split does not change when files are added.
- Polarity: for grayscale folders whose images mostly share a background polarity (dark or
  light, ``POLARITY_AGREEMENT``), light-background images are inverted to dark and the
  background level is subtracted (recipe ``resize-dark``), as for uploads; mixed folders
  (photos) get a plain resize (recipe ``resize``).
- Identity: the card records the folder, the file counts and a content hash (``sha256``) over
  every file's path and bytes, so a model can be traced to exactly what it saw.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .images import ImageError, open_image, peek_image, to_8bit, to_model_input
from .normalize import RECIPES, outer_ring, prepare

VAL_SHARE = 0.1
POLARITY_AGREEMENT = 0.8  # share of images whose background must agree for polarity steps
DEFAULT_SIZE = 32  # a side, for folders whose common size is too large or not a multiple of 4
MAX_DEFAULT_SIDE = 64


class FolderError(ValueError):
    """A folder that cannot become a dataset (missing, or no usable image); says why."""


@dataclass(frozen=True)
class FolderSpec:
    """How a folder's images become model inputs: the model's size and channels, and the input
    recipe (``normalize.RECIPES``)."""

    size: tuple[int, int]  # (H, W)
    channels: int
    recipe: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.size)

    @classmethod
    def infer(cls, root: str | Path, size: tuple[int, int] | None = None,
              channels: int | None = None) -> FolderSpec:
        """Defaults from the files' headers and a sample of their pixels: the most common size
        (when both sides are at most 64 and multiples of 4, else 32x32), 1 channel when every
        sampled image is gray, and the polarity recipe for grayscale folders."""
        files = list_files(root)
        headers = [h for h in map(_header, files) if h is not None]
        if not headers:
            raise FolderError(f"no readable image under {root}")
        if size is None:
            (width, height), _ = Counter(h[0] for h in headers).most_common(1)[0]
            fits = max(width, height) <= MAX_DEFAULT_SIDE and width % 4 == 0 and height % 4 == 0
            size = (height, width) if fits else (DEFAULT_SIZE, DEFAULT_SIZE)
        sample = _even_sample(files, 200)
        if channels is None:
            channels = 1 if all(_is_gray(p) for p in sample) else 3
        if channels not in (1, 3):
            raise FolderError(f"channels must be 1 or 3, got {channels}")
        if size[0] % 4 or size[1] % 4 or min(size) < 4:
            raise FolderError(f"size {size[0]}x{size[1]}: each side must be a multiple of 4 "
                              "(the flow squeezes twice)")
        recipe = "resize" if channels == 3 else _polarity_recipe(sample)
        return cls(size=(int(size[0]), int(size[1])), channels=int(channels), recipe=recipe)


@dataclass
class FolderImages:
    """A folder read into tensors, with what was skipped and what identifies it."""

    train: torch.Tensor
    val: torch.Tensor
    spec: FolderSpec
    root: Path
    files: int  # candidate files found
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    sha256: str = ""
    val_names: list[str] = field(default_factory=list)  # relative paths, in ``val``'s order

    def card_entry(self) -> dict[str, Any]:
        """What a model card records of its folder (``ModelCard.folder``)."""
        return {"path": display_name(self.root.resolve()), "files": self.files,
                "images": len(self.train) + len(self.val), "train": len(self.train),
                "val": len(self.val), "skipped": len(self.skipped), "sha256": self.sha256,
                "val_share": VAL_SHARE, **asdict(self.spec)}


def display_name(path: Path | str) -> str:
    """A path as text even when its bytes are not UTF-8 (shown as backslash escapes)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def list_files(root: str | Path) -> list[Path]:
    """Every non-hidden regular file below ``root``, in a fixed order (by path bytes)."""
    root = Path(root)
    if not root.is_dir():
        raise FolderError(f"not a folder: {display_name(root)}")
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]  # not hidden ones
        found += [Path(folder) / name for name in names if not name.startswith(".")]
    return sorted((p for p in found if p.is_file()), key=os.fsencode)


def is_validation(relative: Path) -> bool:
    """Whether a file (its path relative to the folder) is held out for validation."""
    digest = hashlib.sha256(os.fsencode(relative)).digest()
    return int.from_bytes(digest[:8], "big") < VAL_SHARE * 2 ** 64


def read_image(path: Path, spec: FolderSpec) -> torch.Tensor:
    """One file as a uint8 ``[C, H, W]`` model input, or ``ImageError`` saying why not."""
    image = open_image(path)
    if spec.channels == 1:
        return prepare(image, spec.image_shape, RECIPES[spec.recipe])[0]
    return to_model_input(image, spec.image_shape)


def load_folder(root: str | Path, spec: FolderSpec,
                log: Callable[[str], None] | None = print) -> FolderImages:
    """Read every usable image under ``root`` as ``spec`` says; ``log`` gets one line per skipped
    file and a count at the end (None: silent)."""
    root = Path(root)
    files = list_files(root)
    content = hashlib.sha256()
    splits: dict[bool, list[torch.Tensor]] = {True: [], False: []}
    val_names: list[str] = []
    skipped: list[tuple[str, str]] = []
    quiet = log is None or len(files) < 2000  # else a bar, on a terminal only
    for path in tqdm(files, desc="reading", unit="file", disable=True if quiet else None,
                     leave=False):
        relative = path.relative_to(root)
        content.update(os.fsencode(relative) + b"\0" + _file_digest(path))
        try:
            x = read_image(path, spec)
        except (ImageError, OSError, ValueError) as err:
            skipped.append((display_name(relative), str(err)))
            if log:
                log(f"skipped {display_name(relative)}: {err}")
            continue
        held_out = is_validation(relative)
        splits[held_out].append(x)
        if held_out:
            val_names.append(display_name(relative))
    if not splits[False] or not splits[True]:
        raise FolderError(
            f"{display_name(root)}: {len(splits[False])} training and {len(splits[True])} "
            f"validation images out of {len(files)} files ({len(skipped)} skipped); a folder "
            "needs at least about 20 readable images")
    data = FolderImages(train=torch.stack(splits[False]), val=torch.stack(splits[True]),
                        spec=spec, root=root, files=len(files), skipped=skipped,
                        sha256=content.hexdigest(), val_names=val_names)
    if log:
        log(f"{display_name(root)}: {len(files):,} files, {len(data.train):,} training and "
            f"{len(data.val):,} validation images at {spec.channels}x{spec.size[0]}x"
            f"{spec.size[1]} ({spec.recipe}); {len(skipped)} skipped")
    return data


def folder_split(entry: dict[str, Any], split: str, root: str | Path | None = None
                 ) -> tuple[torch.Tensor, str]:
    """The ``split`` (train or val; test is val, as a folder has no test set) of the folder a
    card's ``folder`` entry describes, read again from ``root`` (default: the recorded path),
    and the folder's content hash now (the caller compares it with the card's)."""
    spec = FolderSpec(size=tuple(entry["size"]), channels=int(entry["channels"]),
                      recipe=entry["recipe"])
    data = load_folder(root or entry["path"], spec, log=None)
    return (data.train if split == "train" else data.val), data.sha256


def _file_digest(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").digest()
    except OSError:
        return b""


def _header(path: Path) -> tuple[tuple[int, int], str] | None:
    """(size, mode) from a file's header, or None when it is not a readable image."""
    try:
        image = peek_image(path)
    except (ImageError, OSError):
        return None
    return image.size, image.mode


def _even_sample(files: list[Path], count: int) -> list[Path]:
    step = max(1, len(files) // count)
    return files[::step][:count]


def _is_gray(path: Path) -> bool:
    """True for images without colour: gray modes, or RGB whose channels agree within 8 levels
    (a scan saved as RGB). Unreadable files count as gray (they are skipped later)."""
    try:
        image = open_image(path)
    except (ImageError, OSError):
        return True
    if image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
        return True
    rgb = np.asarray(to_8bit(image, 3), dtype=np.int16)
    return int(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).max()) <= 8


def _polarity_recipe(sample: list[Path]) -> str:
    """``resize-dark`` when the sampled images mostly agree on their background polarity (dark
    or light: documents, drawings, scans), else ``resize`` (photos)."""
    dark = []
    for path in sample:
        try:
            array = np.asarray(to_8bit(open_image(path), 1))
        except (ImageError, OSError):
            continue
        dark.append(float(np.median(outer_ring(array))) <= 127)
    if not dark:
        return "resize"
    share = sum(dark) / len(dark)
    return "resize-dark" if max(share, 1 - share) >= POLARITY_AGREEMENT else "resize"
