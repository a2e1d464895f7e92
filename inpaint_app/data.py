"""Datasets as uint8 tensors ``[N, C, H, W]`` with a validation split held out of the training set.

The data root comes from ``--data-root``, else env ``FLOWPAINT_DATA``, else ``./data``. Nothing is
downloaded unless ``download=True``. MNIST and Fashion-MNIST also load from gzipped IDX files alone
(``<root>/MNIST/raw/train-images-idx3-ubyte.gz``; what ``benchmarks.pack_data`` writes): only the
split's own file needs to be there, and torchvision is not imported.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

DATASETS = {
    "mnist": ("MNIST", (1, 28, 28)),
    "fashion-mnist": ("FashionMNIST", (1, 28, 28)),
    "cifar10": ("CIFAR10", (3, 32, 32)),
    "svhn": ("SVHN", (3, 32, 32)),
}
VALIDATION_SIZE = 5000
DISPLAY_NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
                 "svhn": "SVHN"}  # dataset key -> how people write it


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


IDX_IMAGES = {True: "train-images-idx3-ubyte", False: "t10k-images-idx3-ubyte"}
IDX_LABELS = {True: "train-labels-idx1-ubyte", False: "t10k-labels-idx1-ubyte"}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file, gzipped or not, as a numpy array of its own shape and dtype."""
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":  # the gzip magic number
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    if len(data) != header + dtype.itemsize * int(np.prod(shape)):
        raise ValueError(f"{path} is truncated or padded: shape {shape} needs "
                         f"{header + dtype.itemsize * int(np.prod(shape))} bytes, has {len(data)}")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_gz_split(name: str, root: Path, train: bool) -> torch.Tensor | None:
    """The split from ``<root>/<Name>/raw/<file>.gz`` when only the gzipped file is there."""
    if name not in ("mnist", "fashion-mnist"):
        return None
    raw = root / DATASETS[name][0] / "raw"
    plain = raw / IDX_IMAGES[train]
    packed = raw / (IDX_IMAGES[train] + ".gz")
    if plain.is_file() or not packed.is_file():
        return None
    try:
        images = read_idx(packed)
    except (OSError, EOFError, ValueError) as err:
        raise DatasetNotFound(f"{packed} is unreadable ({err}): repack it with "
                              "python -m benchmarks.pack_data, or pass another --data-root"
                              ) from err
    if images.ndim != 3:
        raise DatasetNotFound(f"{packed} holds an array of shape {images.shape}, not images")
    return torch.from_numpy(images).unsqueeze(1).contiguous()


def _torchvision_dataset(name: str, root: Path, train: bool, download: bool = False) -> Any:
    """torchvision's dataset object for the split (RuntimeError where its files are missing)."""
    from torchvision import datasets

    cls = getattr(datasets, DATASETS[name][0])
    if name == "svhn":
        return cls(root=str(root), split="train" if train else "test", download=download)
    return cls(root=str(root), train=train, download=download)


def _torchvision_split(name: str, root: Path, train: bool, download: bool) -> torch.Tensor:
    cls_name, _ = DATASETS[name]
    try:
        ds = _torchvision_dataset(name, root, train, download)
    except RuntimeError as err:
        if download:
            raise
        packed_only = (name in ("mnist", "fashion-mnist") and not train
                       and (root / cls_name / "raw" / (IDX_IMAGES[True] + ".gz")).is_file())
        hint = (" (this root holds only the packed training split, benchmarks.pack_data: test "
                "bits/dim are computed where the full dataset is)" if packed_only else "")
        raise DatasetNotFound(f"{cls_name} {'train' if train else 'test'} split not found under "
                              f"{root}{hint}: pass --data-root, set FLOWPAINT_DATA, or add "
                              "--download") from err
    data = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(np.asarray(ds.data))
    if data.dim() == 3:
        data = data.unsqueeze(1)
    elif data.shape[-1] == 3:
        data = data.permute(0, 3, 1, 2)
    return data.contiguous().to(torch.uint8)


def load_labels(name: str, split: str, root: str | Path | None = None) -> torch.Tensor:
    """The class labels (int64 ``[N]``) of ``split``, aligned with ``load_split``'s images."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}: choose train, val or test")
    root = Path(root) if root is not None else default_data_root()
    name, train = _check_name(name), split != "test"
    raw = root / DATASETS[name][0] / "raw"
    # the packed copy exactly where load_split reads packed images (_idx_gz_split)
    packed = (name in ("mnist", "fashion-mnist") and not (raw / IDX_IMAGES[train]).is_file()
              and (raw / (IDX_IMAGES[train] + ".gz")).is_file())
    if packed:
        try:
            labels = torch.from_numpy(read_idx(raw / (IDX_LABELS[train] + ".gz"))
                                      .astype(np.int64))
        except (OSError, EOFError, ValueError) as err:
            raise DatasetNotFound(f"{raw / IDX_LABELS[train]}.gz is unreadable ({err})") from err
    else:
        try:
            ds = _torchvision_dataset(name, root, train)
        except RuntimeError as err:
            raise DatasetNotFound(f"{DATASETS[name][0]} labels not found under {root}") from err
        labels = torch.as_tensor(np.asarray(ds.labels if name == "svhn" else ds.targets),
                                 dtype=torch.int64)
    if split == "train":
        return labels[:-VALIDATION_SIZE]
    return labels[-VALIDATION_SIZE:] if split == "val" else labels


def load_split(name: str, split: str, root: str | Path | None = None, *,
               download: bool = False) -> torch.Tensor:
    """uint8 images of ``split`` in {train, val, test}; val is the last 5,000 training images."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}: choose train, val or test")
    root = Path(root) if root is not None else default_data_root()
    name = _check_name(name)
    images = _idx_gz_split(name, root, split != "test")
    if images is None:
        images = _torchvision_split(name, root, split != "test", download)
    if split == "train":
        return images[:-VALIDATION_SIZE]
    if split == "val":
        return images[-VALIDATION_SIZE:]
    return images
