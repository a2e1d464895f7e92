"""Dataset loading: uint8 tensors, the validation split, and a helpful error without the data."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from inpaint_app.data import (
    VALIDATION_SIZE,
    DatasetNotFound,
    image_shape,
    load_labels,
    load_split,
    read_idx,
)


@pytest.fixture(scope="module")
def mnist(data_root: Path) -> dict[str, torch.Tensor]:
    return {split: load_split("mnist", split, data_root) for split in ("train", "val", "test")}


@pytest.mark.data
@pytest.mark.parametrize(("split", "size"), [("train", 55000), ("val", 5000), ("test", 10000)])
def test_mnist_splits_are_uint8_images(mnist: dict[str, torch.Tensor], split: str,
                                       size: int) -> None:
    images = mnist[split]
    assert images.dtype == torch.uint8
    assert images.shape == (size, *image_shape("mnist")) == (size, 1, 28, 28)
    assert images.max() > 200  # real pixels, not an empty buffer


@pytest.mark.data
def test_validation_is_the_held_out_end_of_the_training_set(
        mnist: dict[str, torch.Tensor], data_root: Path) -> None:
    from torchvision.datasets import MNIST

    original = MNIST(str(data_root), train=True).data.unsqueeze(1)
    assert len(mnist["val"]) == VALIDATION_SIZE
    assert torch.equal(mnist["train"], original[:-VALIDATION_SIZE])
    assert torch.equal(mnist["val"], original[-VALIDATION_SIZE:])
    assert not torch.equal(mnist["test"][:VALIDATION_SIZE], mnist["val"])


def test_missing_dataset_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFound) as info:
        load_split("mnist", "train", tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    for hint in ("--data-root", "FLOWPAINT_DATA", "--download"):
        assert hint in message


def test_unknown_dataset_and_split_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        load_split("imagenet", "train", tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        load_split("mnist", "validation", tmp_path)


def write_idx_gz(path: Path, array: np.ndarray) -> None:
    """A gzipped IDX file of a uint8 array, as MNIST ships them."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0))


def test_gzipped_idx_files_load_without_the_raw_ones(tmp_path: Path) -> None:
    """Only the .gz of a split (what benchmarks.pack_data writes) is needed, for that split."""
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (VALIDATION_SIZE + 7, 28, 28), dtype=np.uint8)
    raw = tmp_path / "MNIST" / "raw"
    write_idx_gz(raw / "train-images-idx3-ubyte.gz", train)
    write_idx_gz(raw / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, len(train)))
    got_train, got_val = (load_split("mnist", s, tmp_path) for s in ("train", "val"))
    assert got_train.dtype == torch.uint8 and got_train.shape == (7, 1, 28, 28)
    assert torch.equal(got_train[:, 0], torch.from_numpy(train[:7]))
    assert torch.equal(got_val[:, 0], torch.from_numpy(train[7:]))
    assert np.array_equal(read_idx(raw / "train-images-idx3-ubyte.gz"), train)
    with pytest.raises(DatasetNotFound, match="packed training split"):  # test did not travel
        load_split("mnist", "test", tmp_path)
    test = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    write_idx_gz(raw / "t10k-images-idx3-ubyte.gz", test)
    assert torch.equal(load_split("mnist", "test", tmp_path)[:, 0], torch.from_numpy(test))


def test_a_damaged_gz_says_so(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    write_idx_gz(raw / "train-images-idx3-ubyte.gz", np.zeros((10, 28, 28), np.uint8))
    data = (raw / "train-images-idx3-ubyte.gz").read_bytes()
    (raw / "train-images-idx3-ubyte.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetNotFound, match="pack_data"):
        load_split("mnist", "train", tmp_path)


@pytest.mark.data
def test_packed_mnist_gives_the_same_training_tensors(data_root: Path, tmp_path: Path) -> None:
    from benchmarks.pack_data import pack

    written = pack("mnist", data_root, tmp_path, level=1)
    assert sorted(p.name for p in written) == ["train-images-idx3-ubyte.gz",
                                               "train-labels-idx1-ubyte.gz"]
    assert not (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()
    for split in ("train", "val"):
        assert torch.equal(load_split("mnist", split, tmp_path),
                           load_split("mnist", split, data_root))
    labels = read_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz")
    assert labels.shape == (60000,) and labels.max() == 9
    for split in ("train", "val"):  # packed labels line up with packed images
        assert torch.equal(load_labels("mnist", split, tmp_path),
                           load_labels("mnist", split, data_root))


@pytest.mark.data
def test_labels_line_up_with_their_images(data_root: Path) -> None:
    """Each split's labels have its images' length; the val labels are the training labels'
    last 5,000 (the split ``load_split`` makes)."""
    for split in ("train", "val", "test"):
        labels = load_labels("fashion-mnist", split, data_root)
        assert len(labels) == len(load_split("fashion-mnist", split, data_root))
        assert labels.dtype == torch.int64 and set(labels.unique().tolist()) == set(range(10))
    train = load_labels("fashion-mnist", "train", data_root)
    val = load_labels("fashion-mnist", "val", data_root)
    assert len(train) + len(val) == 60000 and len(val) == VALIDATION_SIZE
    with pytest.raises(ValueError, match="unknown split"):
        load_labels("mnist", "validation", data_root)
