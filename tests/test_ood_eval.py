"""pipelines.ood_eval: the synthetic out-of-distribution sets, the set builder and one model's
evaluation end to end on a tiny calibrated checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inpaint_app.anomaly import SCORES, calibrate
from inpaint_app.data import load_split
from inpaint_app.models import build_model, save_model
from inpaint_app.nuisances import NUISANCES
from pipelines import ood_eval


@pytest.mark.parametrize("make", [ood_eval.rendered_letters, ood_eval.scribbles],
                         ids=["letters", "scribbles"])
def test_synthetic_sets_are_seeded_digit_framed_strokes(make) -> None:
    images = make(12, seed=0)
    assert images.dtype == torch.uint8 and images.shape == (12, 1, 28, 28)
    assert torch.equal(images, make(12, seed=0))
    assert not torch.equal(images, make(12, seed=1))
    assert (images.flatten(1).max(1).values > 200).all()  # every image has ink
    border = torch.cat([images[..., :2, :].flatten(1), images[..., -2:, :].flatten(1)], 1)
    assert border.float().mean() < 0.25 * images.float().mean()  # ink sits inside the frame


@pytest.mark.data
def test_build_sets_derives_inverted_and_rotated_from_the_in_set(data_root: Path) -> None:
    sets = ood_eval.build_sets("mnist", 16, str(data_root))
    assert set(sets) == {"in", *ood_eval.SET_NAMES}
    for images in sets.values():
        assert images.dtype == torch.uint8 and images.shape == (16, 1, 28, 28)
    assert torch.equal(sets["inverted"], 255 - sets["in"])
    assert torch.equal(sets["rotated"], torch.rot90(sets["in"], 1, (2, 3)))
    test = load_split("mnist", "test", str(data_root))
    assert all((test == image).flatten(1).all(1).any() for image in sets["in"])


@pytest.mark.data
def test_evaluate_model_reports_every_pair_and_score(data_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("glow", image_shape=(1, 28, 28), steps=1, hidden=8).eval()
    val = load_split("mnist", "val", str(data_root))[:64]
    card = {"dataset": "mnist", "anomaly": calibrate(model, val, source="mnist val (64)")}
    save_model(model, tmp_path / "model.pt", card=card)
    result = ood_eval.evaluate_model("mnist", str(tmp_path / "model.pt"), 24, str(data_root),
                                     nuisance_limit=6)
    labels = {name.format(name="mnist", other="fashion-mnist")
              for key, name in ood_eval.SET_NAMES.items() if key != "inverted"}
    assert set(result["pairs"]) == labels
    for metrics in result["pairs"].values():
        assert set(metrics) == set(SCORES)
        assert all(0.0 <= m["auroc"] <= 1.0 for m in metrics.values())
    assert result["throughput_images_per_s"] > 0
    table = ood_eval.markdown({"mnist": result}, "evidence")
    assert table.count("\n| mnist |") == len(labels)
    section = result["nuisance"]
    assert section["n"] == 6 and set(section["rows"]) == set(NUISANCES)
    for row in section["rows"].values():
        assert 0.0 <= row["flag_rate"] <= 1.0 and 0.0 <= row["flag_rate_plain"] <= 1.0
        assert set(row["auroc"]) == set(ood_eval.SET_NAMES) - {"inverted"}
    # Black on white is normalized back: flagged as often as the clean images.
    rows = section["rows"]
    assert rows["black on white"]["flag_rate"] == rows["none"]["flag_rate"]
    assert ood_eval.nuisance_markdown({"mnist": result}).count("\n| mnist |") == len(NUISANCES)
