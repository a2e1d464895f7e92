"""CIFAR-10 and SVHN train from their torchvision folders: a fake folder of each, in the exact
layout torchvision reads (its checksums patched out, since the pixels are made up), goes
through ``load_split`` and a short ``pipelines.train`` run of the 32x32 RGB recipe's family."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from inpaint_app.data import VALIDATION_SIZE, load_split
from inpaint_app.models import load_model
from pipelines import train

datasets = pytest.importorskip("torchvision.datasets")
TRAIN_IMAGES = VALIDATION_SIZE + 50
CONFIGS = Path(__file__).resolve().parents[1] / "pipelines" / "configs"


def fake_cifar10(root: Path, rng: np.random.Generator) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    per_batch = TRAIN_IMAGES // 5
    for name, count in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)),
                        ("test_batch", 20)]:
        batch = {"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, count).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list("abcdefghij")}))


def fake_svhn(root: Path, rng: np.random.Generator) -> None:
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", TRAIN_IMAGES), ("test", 20)):
        savemat(root / f"{split}_32x32.mat",
                {"X": rng.integers(0, 256, (32, 32, 3, count), dtype=np.uint8),
                 "y": rng.integers(1, 11, (count, 1)).astype(np.uint8)})


@pytest.mark.parametrize("name", ["cifar10", "svhn"])
def test_a_colour_dataset_loads_and_trains(name: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    (fake_cifar10 if name == "cifar10" else fake_svhn)(tmp_path / "data", rng)
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.SVHN
    monkeypatch.setattr(cls, "_check_integrity", lambda self: True)
    monkeypatch.setattr(datasets.cifar, "check_integrity", lambda *args, **kwargs: True)

    train_split = load_split(name, "train", tmp_path / "data")
    val = load_split(name, "val", tmp_path / "data")
    test = load_split(name, "test", tmp_path / "data")
    assert train_split.shape == (TRAIN_IMAGES - VALIDATION_SIZE, 3, 32, 32)
    assert val.shape == (VALIDATION_SIZE, 3, 32, 32) and test.shape == (20, 3, 32, 32)
    assert train_split.dtype == torch.uint8 and train_split.float().std() > 50

    out = tmp_path / "model"
    recipe = CONFIGS / f"{name}-glow-cpu.json"
    assert json.loads(recipe.read_text())["dataset"] == name
    train.main(["--config", str(recipe), "--data-root", str(tmp_path / "data"), "--out",
                str(out), "--hparams", '{"steps": 2, "hidden": 8}', "--epochs", "1",
                "--batch-size", "16", "--limit-train", "32", "--limit-val", "16",
                "--threads", "1"])
    model = load_model(out / "model.pt")
    assert model.image_shape == (3, 32, 32)
    card = json.loads((out / "card.json").read_text())
    assert card["dataset"] == name and card["test_images"] == 20
