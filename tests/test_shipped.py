"""The shipped checkpoints: they load safely, reconstruct, and their cards tell the truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from inpaint_app import load_bundle, load_model
from inpaint_app.data import load_split
from inpaint_app.training import evaluate_bpd

SHIPPED = sorted(Path(__file__).resolve().parents[1].glob("trained/*/model.pt"))


def test_models_are_shipped() -> None:
    names = {p.parent.name for p in SHIPPED}
    assert {"mnist-glow", "fashion-mnist-glow"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.parent.name)
def test_checkpoint_is_small_and_card_complete(path: Path) -> None:
    assert path.stat().st_size < 25 * 2**20
    card = json.loads((path.parent / "card.json").read_text())
    for key in ("dataset", "image_shape", "hparams", "test_bpd", "test_images", "test_subset",
                "test_measured", "training_minutes", "hardware", "command", "commit"):
        assert key in card, key
    bundle = load_bundle(path)
    assert bundle.card.test_bpd == card["test_bpd"] and bundle.card.to_dict() == card
    assert (bundle.card.test.images, bundle.card.test.subset) == (10000, "all")
    assert bundle.model.config["flow"] == card["hparams"]  # the card rebuilds the architecture


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.parent.name)
def test_round_trip_on_samples(path: Path) -> None:
    model = load_model(path)
    y = model.sample(8, temperature=0.7, generator=torch.Generator().manual_seed(0))
    y = y.clamp(0.01, 0.99)
    with torch.no_grad():
        z, _ = model.to_latent(y)
        back = model.preprocess.inverse(model.flow.inverse(z))
        # float32 rounding through 40-odd layers, which varies with the CPU's conv kernels:
        # 1.8e-4 at worst on an AVX-512 machine (2026-11); the map itself is exact in float64.
        assert (back - y).abs().max().item() <= 5e-4
        model, y = model.double(), y.double()
        z, _ = model.to_latent(y)
        back = model.preprocess.inverse(model.flow.inverse(z))
    assert (back - y).abs().max().item() <= 1e-9


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.parent.name)
def test_evaluate_reproduces_card(path: Path, data_root: Path) -> None:
    """The card's test bits/dim is what `pipelines.evaluate CHECKPOINT` gives on the full test set
    (fixed dequantization seed, so it reproduces to rounding)."""
    bundle = load_bundle(path)
    images = load_split(bundle.dataset, "test", data_root)
    assert len(images) == bundle.card.test.images  # the card's figure covers the whole split
    with torch.inference_mode():
        bpd = evaluate_bpd(bundle.model, images).mean().item()
    assert abs(bpd - bundle.card.test_bpd) <= 1e-3


@pytest.mark.data
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.parent.name)
def test_evaluate_limit_agrees_with_card(path: Path, data_root: Path, tmp_path: Path) -> None:
    """`pipelines.evaluate CHECKPOINT --limit 2000` (a fixed random subset) is within 0.02 of
    the card's full-test figure."""
    from pipelines import evaluate

    out = tmp_path / "result.json"
    evaluate.main([str(path), "--limit", "2000", "--json", str(out),
                   "--data-root", str(data_root)])
    result = json.loads(out.read_text())
    assert result["images"] == 2000
    assert abs(result["bpd"] - result["card_test_bpd"]) <= 0.02


@pytest.mark.data
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.parent.name)
def test_check_invertibility_on_test_images(path: Path, data_root: Path, tmp_path: Path) -> None:
    """`pipelines.evaluate --check-invertibility`: data -> latent -> data within 1e-4 (float32)."""
    from pipelines import evaluate

    out = tmp_path / "result.json"
    evaluate.main([str(path), "--limit", "1000", "--check-invertibility", "--json", str(out),
                   "--data-root", str(data_root)])
    result = json.loads(out.read_text())
    assert 0 < result["round_trip_max_abs_error"] <= 1e-4


INPAINTERS = sorted(Path(__file__).resolve().parents[1].glob("trained/*/inpainter.pt"))


@pytest.mark.parametrize("path", INPAINTERS, ids=lambda p: p.parent.name)
def test_shipped_inpainter_loads_with_validated_settings(path: Path) -> None:
    assert path.stat().st_size < 25 * 2**20
    bundle = load_bundle(path.parent)
    inpainter = bundle.inpainter
    assert inpainter is not None and tuple(inpainter.image_shape) == tuple(bundle.image_shape)
    settings = bundle.inpainter_card.inpainting
    assert settings["samples"] >= 1
    chosen = settings["temperature_by_mask"]
    assert set(chosen) == {"compact", "scattered", "sparse"}
    for temperature in chosen.values():  # each one measured on validation
        assert 0 <= temperature <= 2
        assert any(e["temperature"] == temperature for e in settings["grid"])
    assert bundle.inpainter_card.dataset == bundle.dataset


@pytest.mark.parametrize("path", INPAINTERS, ids=lambda p: p.parent.name)
def test_shipped_inpainter_scores_test_holes(path: Path, data_root: Path) -> None:
    from inpaint_app.masks import make_mask

    bundle = load_bundle(path.parent)
    images = load_split(bundle.dataset, "test", data_root)[:16]
    masks = torch.stack([make_mask("bottom", (28, 28))] * 16)
    with torch.no_grad():
        bpd = bundle.inpainter.bits_per_dim(images, masks,
                                            generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(bpd).all() and 0 < bpd.mean() < 8  # better than uniform noise
