"""Datasets as uint8 tensors ``[N, C, H, W]`` with a validation split held out of the training set.

The data root comes from ``--data-root``, else env ``FLOWPAINT_DATA``, else ``./data``. Nothing is
downloaded unless ``download=True``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

DATASETS = {
    "mnist": ("MNIST", (1, 28, 28)),
    "fashion-mnist": ("FashionMNIST", (1, 28, 28)),
    "cifar10": ("CIFAR10", (3, 32, 32)),
    "svhn": ("SVHN", (3, 32, 32)),
}
VALIDATION_SIZE = 5000


class DatasetNotFound(FileNotFoundError):
    """The dataset is not under the data root; the message says how to fix it."""


def default_data_root() -> Path:
    return Path(os.environ.get("FLOWPAINT_DATA", "./data"))


def image_shape(name: str) -> tuple[int, int, int]:
    return DATASETS[_check_name(name)][1]


def _check_name(name: str) -> str:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {sorted(DATASETS)}")
    return name


def _torchvision_split(name: str, root: Path, train: bool, download: bool) -> torch.Tensor:
    from torchvision import datasets

    cls_name, _ = DATASETS[name]
    cls = getattr(datasets, cls_name)
    try:
        if name == "svhn":
            ds = cls(root=str(root), split="train" if train else "test", download=download)
        else:
            ds = cls(root=str(root), train=train, download=download)
    except RuntimeError as err:
        if download:
            raise
        raise DatasetNotFound(f"{cls_name} not found under {root}: pass --data-root, set "
                              f"FLOWPAINT_DATA, or add --download") from err
    data = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(np.asarray(ds.data))
    if data.dim() == 3:
        data = data.unsqueeze(1)
    elif data.shape[-1] == 3:
        data = data.permute(0, 3, 1, 2)
    return data.contiguous().to(torch.uint8)


def load_split(name: str, split: str, root: str | Path | None = None, *,
               download: bool = False) -> torch.Tensor:
    """uint8 images of ``split`` in {train, val, test}; val is the last 5,000 training images."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}: choose train, val or test")
    root = Path(root) if root is not None else default_data_root()
    images = _torchvision_split(_check_name(name), root, split != "test", download)
    if split == "train":
        return images[:-VALIDATION_SIZE]
    if split == "val":
        return images[-VALIDATION_SIZE:]
    return images
