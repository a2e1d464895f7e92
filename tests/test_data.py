"""Dataset loading: uint8 tensors, the validation split, and a helpful error without the data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inpaint_app.data import VALIDATION_SIZE, DatasetNotFound, image_shape, load_split


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
