"""Outlier exposure on bits/dim: the hinge, its effect on a tiny flow, the synthetic outliers and
``pipelines.train --outlier-exposure`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from inpaint_app.models import build_model
from inpaint_app.synthetic import EXPOSURE_LETTERS, exposure_outliers
from inpaint_app.training import Exposure, LogProb, evaluate_bpd, train_step


def test_the_hinge_counts_only_outliers_within_the_margin() -> None:
    exposure = Exposure(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), margin=0.5)
    inlier, outlier = torch.tensor([1.0, 1.0]), torch.tensor([1.2, 3.0])
    # 0.5 - 0.2 = 0.3 for the first pair; the second is 2 bits/dim apart: 0.
    assert exposure.penalty(inlier, outlier).item() == pytest.approx(0.15)
    assert exposure.penalty(inlier, inlier + 0.5).item() == 0.0


def bars(n: int, vertical: bool, seed: int) -> torch.Tensor:
    """uint8 [n, 1, 8, 8] images of one bar at a random column (or row) on black."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, 8, 8, dtype=torch.uint8)
    for i, k in enumerate(torch.randint(1, 7, (n,), generator=g).tolist()):
        if vertical:
            images[i, 0, :, k] = 220
        else:
            images[i, 0, k, :] = 220
    return images


def gap_after_training(exposure_on: bool) -> float:
    """Outlier minus inlier validation bits/dim after 60 steps on vertical bars, with
    horizontal bars as the exposure outliers (or none)."""
    torch.manual_seed(0)
    model = build_model("glow", (1, 8, 8), levels=1, steps=2, hidden=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    inliers, outliers = bars(512, True, 0), bars(512, False, 1)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        batch = inliers[torch.randint(len(inliers), (32,), generator=g)]
        exposure = (Exposure(outliers[torch.randint(len(outliers), (32,), generator=g)],
                             margin=2.0) if exposure_on else None)
        train_step(LogProb(model), model, batch, optimizer, generator=g, exposure=exposure)
    with torch.no_grad():
        return (evaluate_bpd(model, bars(128, False, 2)).mean()
                - evaluate_bpd(model, bars(128, True, 3)).mean()).item()


def test_exposure_widens_the_gap_between_outliers_and_inliers() -> None:
    assert gap_after_training(True) > gap_after_training(False) + 1.0


def test_exposure_outliers_are_deterministic_and_in_the_mnist_frame() -> None:
    first, again = exposure_outliers(90, seed=3), exposure_outliers(90, seed=3)
    assert first.shape == (90, 1, 28, 28) and first.dtype == torch.uint8
    assert torch.equal(first, again) and not torch.equal(first, exposure_outliers(90, seed=4))
    assert first.flatten(1).amax(1).min() > 100  # every image has ink
    # No letter a digit could pass for: exposure must not teach the model against digits.
    assert not set("OoIilSsZzBbGgqQD") & set(EXPOSURE_LETTERS)


@pytest.mark.data
def test_train_outlier_exposure_records_its_recipe_in_the_card(data_root: Path,
                                                               tmp_path: Path) -> None:
    from pipelines import train

    train.main(["--dataset", "mnist", "--model", "glow", "--hparams",
                '{"steps": 2, "hidden": 16}', "--device", "cpu", "--threads", "1",
                "--out", str(tmp_path), "--data-root", str(data_root), "--limit-train", "128",
                "--limit-val", "32", "--epochs", "1", "--batch-size", "32",
                "--outlier-exposure", "0.5"])
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["outlier_exposure"]["margin_bpd"] == 0.5
    assert "exposure_outliers" in card["outlier_exposure"]["outliers"]
    with pytest.raises(SystemExit):
        train.parse_args(["--outlier-exposure", "-1"])
