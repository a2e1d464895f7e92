"""Inpainting API: clamped observed pixels, rising likelihood, every family, batching, errors."""

from __future__ import annotations

import pytest
import torch

from inpaint_app.inpainting import (
    MASK_PRESETS,
    InpaintResult,
    inpaint,
    inpaint_batch,
    make_mask,
)
from inpaint_app.methods import available
from inpaint_app.metrics import masked_psnr
from inpaint_app.models import FAMILIES, build_model

SHAPE = (1, 8, 8)


def tiny(family: str = "glow") -> torch.nn.Module:
    """A small model whose ActNorm layers are initialised on a data-like batch."""
    torch.manual_seed(0)
    small = {"nice": {"hidden": 16, "depth": 2}, "realnvp": {"hidden": 8},
             "glow": {"hidden": 8, "steps": 2},
             "ffjord": {"levels": 0, "hidden": 4, "depth": 1, "solver": "rk4",
                        "step_size": 0.5, "trace": "hutchinson", "eval_probes": 1}
             }.get(family, {})
    model = build_model(family, image_shape=SHAPE, **small)
    with torch.no_grad():
        model.log_prob(torch.rand(16, *SHAPE) * 0.9 + 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randint(0, 256, SHAPE, generator=torch.Generator().manual_seed(1),
                         dtype=torch.uint8)


@pytest.mark.parametrize("preset", list(MASK_PRESETS))
def test_mask_presets_are_bool_reproducible_and_partial(preset: str) -> None:
    mask = make_mask(preset, (28, 28), seed=3)
    assert mask.dtype == torch.bool and mask.shape == (28, 28)
    assert 0 < mask.sum() < mask.numel()
    assert torch.equal(mask, make_mask(preset, (28, 28), seed=3))


@pytest.mark.parametrize("method", available(has_conditional=False))
def test_observed_pixels_identical_and_values_in_range(model, image, method: str) -> None:
    mask = make_mask("center", SHAPE[1:])
    result = inpaint(model, image, mask, method=method, steps=5, n_samples=3)
    assert isinstance(result, InpaintResult)
    assert result.image.dtype == torch.uint8 and result.image.shape == SHAPE
    for filled in (result.image, *result.samples):
        assert torch.equal(filled[:, ~mask], image[:, ~mask])
    assert len(result.bpd_trajectory) == 6 and result.steps == 5
    if method == "langevin":
        assert result.samples.shape == (3, *SHAPE)
        assert result.uncertainty.shape == SHAPE[1:]
        assert float(result.uncertainty.min()) >= 0 and float(result.uncertainty.max()) <= 1
        assert float(result.uncertainty[~mask].abs().max()) == 0
    else:
        assert result.samples.shape == (1, *SHAPE) and result.uncertainty is None


def test_default_raises_log_likelihood(model, image) -> None:
    mask = make_mask("bottom", SHAPE[1:])
    result = inpaint(model, image, mask, init="noise", steps=20)
    assert min(result.bpd_trajectory[1:]) < result.bpd_trajectory[0]
    assert result.bpd_after <= result.bpd_before + 0.05  # discrete bpd, one dequantization


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_model_family_inpaints(family: str, image) -> None:
    model = tiny(family)
    mask = make_mask("random50", SHAPE[1:])
    result = inpaint(model, image, mask, steps=2)
    assert torch.equal(result.image[:, ~mask], image[:, ~mask])
    assert all(torch.isfinite(torch.tensor(result.bpd_trajectory)))
    # Deterministic for a seed, FFJORD's stochastic trace included.
    assert torch.equal(inpaint(model, image, mask, steps=2).image, result.image)


@pytest.mark.parametrize("method", available(has_conditional=False))
def test_batched_matches_one_by_one(model, method: str) -> None:
    images = torch.randint(0, 256, (3, *SHAPE), generator=torch.Generator().manual_seed(2),
                           dtype=torch.uint8)
    masks = torch.stack([make_mask("random50", SHAPE[1:], seed=i) for i in range(3)])
    batch = inpaint_batch(model, images, masks, method=method, steps=3, seed=7, n_samples=2)
    for i, result in enumerate(batch):
        alone = inpaint(model, images[i], masks[i], method=method, steps=3, seed=7 + i,
                        n_samples=2)
        # Same noise and start; only floating-point rounding of batched kernels may differ.
        diff = (result.samples.int() - alone.samples.int()).abs()
        assert float((diff > 1).float().mean()) < 0.02
        assert result.bpd_trajectory[0] == pytest.approx(alone.bpd_trajectory[0], abs=1e-3)


def test_same_seed_same_result_other_seed_other_noise(model, image) -> None:
    mask = make_mask("top", SHAPE[1:])
    a = inpaint(model, image, mask, method="langevin", steps=4, seed=5, n_samples=2)
    b = inpaint(model, image, mask, method="langevin", steps=4, seed=5, n_samples=2)
    c = inpaint(model, image, mask, method="langevin", steps=4, seed=6, n_samples=2)
    assert torch.equal(a.samples, b.samples)
    assert not torch.equal(a.samples, c.samples)


def test_empty_mask_returns_image_unchanged(model, image) -> None:
    result = inpaint(model, image, torch.zeros(SHAPE[1:], dtype=torch.bool))
    assert torch.equal(result.image, image)
    assert "empty" in result.message and result.steps == 0


def test_full_mask_searches_unconditionally(model, image) -> None:
    result = inpaint(model, image, torch.ones(SHAPE[1:], dtype=torch.bool), steps=5)
    assert result.image.shape == SHAPE and "whole image" in result.message
    assert min(result.bpd_trajectory) <= result.bpd_trajectory[0]


def test_channel_mask_and_float_image_accepted(model, image) -> None:
    mask = make_mask("left", SHAPE[1:])[None]
    result = inpaint(model, image.float() / 255.0, mask, steps=1)
    assert torch.equal(result.image[:, ~mask[0]], image[:, ~mask[0]])


def test_progress_is_reported(model, image) -> None:
    calls: list[tuple[int, int]] = []
    inpaint(model, image, make_mask("top", SHAPE[1:]), steps=4,
            progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"mask": torch.zeros(7, 8, dtype=torch.bool)}, "mask shape"),
    ({"mask": torch.zeros(8, 8)}, "bool"),
    ({"image": torch.zeros(1, 9, 9, dtype=torch.uint8)}, "does not match"),
    ({"image": torch.full(SHAPE, float("nan"))}, "NaN"),
    ({"image": torch.zeros(SHAPE, dtype=torch.int32)}, "uint8"),
    ({"method": "magic"}, "unknown method"),
    ({"init": "zeros"}, "unknown init"),
    ({"steps": -1}, "steps"),
    ({"n_samples": 0}, "n_samples"),
])
def test_bad_input_raises_clear_value_error(model, image, kwargs, match) -> None:
    args = {"image": image, "mask": make_mask("top", SHAPE[1:])} | kwargs
    with pytest.raises(ValueError, match=match):
        inpaint(model, args.pop("image"), args.pop("mask"), **args)


@pytest.mark.data
def test_shipped_mnist_model_observed_pixels_and_likelihood(data_root) -> None:
    from pathlib import Path

    from inpaint_app.bundle import load_bundle
    from inpaint_app.data import load_split

    path = Path(__file__).resolve().parents[1] / "trained/mnist-glow/model.pt"
    model = load_bundle(path)  # the default method uses the conditional flow beside it
    image = load_split("mnist", "test", data_root)[0]
    mask = make_mask("bottom", (28, 28))
    result = inpaint(model, image, mask)
    assert torch.equal(result.image[:, ~mask], image[:, ~mask])
    # a digit-like completion: the true image scores about 1.3 bits/dim, a noise fill over 4
    assert result.bpd_after < 2.0
    assert masked_psnr(result.image, image, mask[None]) > 12.0


def test_a_loaded_model_is_frozen_and_requests_leave_it_untouched(tmp_path) -> None:
    from inpaint_app.models import load_model, save_model

    torch.manual_seed(0)
    save_model(build_model("glow", image_shape=(1, 8, 8), steps=2), tmp_path / "model.pt")
    model = load_model(tmp_path)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    before = {name: p.clone() for name, p in model.state_dict().items()}
    seen = []
    original = model.log_prob

    def watching(y: torch.Tensor) -> torch.Tensor:  # what a concurrent request would see
        seen.append((model.training, any(p.requires_grad for p in model.parameters())))
        return original(y)

    model.log_prob = watching
    image = torch.randint(0, 256, (1, 8, 8), dtype=torch.uint8)
    inpaint(model, image, make_mask("center", (8, 8)), method="nice", steps=3)
    assert seen and set(seen) == {(False, False)}
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
