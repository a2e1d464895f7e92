"""Whole models: exact log-likelihood, bits/dim closed forms, sampling and safe checkpoints."""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path
from typing import BinaryIO

import pytest
import torch
import torch.nn.functional as F
from torch import distributions as D
from torch import nn

from inpaint_app import DensityModel, build_model, load_bundle, load_model, save_model
from inpaint_app.density import bits_per_dim_from_log_prob, dequantize
from inpaint_app.flows.base import Sequential
from inpaint_app.flows.glow import ActNorm
from inpaint_app.models import (
    CheckpointError,
    ConfigError,
    make_config,
    read_card,
    validate_config,
)
from inpaint_app.preprocess import Affine, Logit
from inpaint_app.priors import StandardGaussian, StandardLogistic

SHAPE = (1, 8, 8)
TINY = {"nice": {"hidden": 32, "depth": 2},
        "realnvp": {"hidden": 16, "blocks": 1},
        "glow": {"steps": 2, "hidden": 16}}
FAMILIES = list(TINY)


def images(n: int, seed: int = 0, shape: tuple[int, ...] = SHAPE) -> torch.Tensor:
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def pixels(n: int, seed: int = 0) -> torch.Tensor:
    """Dequantized pixels y in (0, 1)."""
    return dequantize(images(n, seed), torch.Generator().manual_seed(seed))


def tiny_model(family: str, *, dtype: torch.dtype = torch.float32, seed: int = 0
               ) -> DensityModel:
    """A small model with ActNorm initialised on data and every parameter perturbed (so that
    no coupling is the identity), in eval mode."""
    torch.manual_seed(seed)
    model = build_model(family, image_shape=SHAPE, **TINY[family]).to(dtype).train()
    model.log_prob(pixels(16, seed=seed + 1).to(dtype))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


class UniformPrior(nn.Module):
    """Uniform on [0, 1]^D: log p = 0 inside, -inf outside."""

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        inside = ((z >= 0) & (z <= 1)).reshape(z.shape[0], -1).all(dim=1)
        return torch.where(inside, 0.0, -math.inf).to(z.dtype)


def identity_model(preprocess: nn.Module, prior: nn.Module) -> DensityModel:
    return DensityModel(preprocess, Sequential(), prior, SHAPE, config={})


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_through_preprocess_and_flow(family: str) -> None:
    model, y = tiny_model(family), pixels(4)
    with torch.no_grad():
        z, _ = model.to_latent(y)
        y_back = model.preprocess.inverse(model.flow.inverse(z))
    assert z[0].numel() == y[0].numel()
    assert (y_back - y).abs().max().item() <= 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_model_logdet_matches_jacobian(family: str) -> None:
    model, y = tiny_model(family, dtype=torch.float64), pixels(2).double()
    _, logdet = model.to_latent(y)
    for i in range(len(y)):
        jac = torch.autograd.functional.jacobian(
            lambda v: model.to_latent(v.unsqueeze(0))[0].reshape(-1), y[i], vectorize=True)
        sign, expected = torch.linalg.slogdet(jac.reshape(y[i].numel(), y[i].numel()))
        assert sign != 0
        torch.testing.assert_close(logdet[i], expected, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("family", FAMILIES)
def test_bits_per_dim_is_one_finite_value_per_image(family: str) -> None:
    model = tiny_model(family)
    bpd = model.bits_per_dim(images(5), generator=torch.Generator().manual_seed(0))
    assert bpd.shape == (5,)
    assert torch.isfinite(bpd).all()
    again = model.bits_per_dim(images(5), generator=torch.Generator().manual_seed(0))
    assert torch.equal(bpd, again)  # seeded dequantization is reproducible


def test_bits_per_dim_formula_gives_8_for_log_prob_0() -> None:
    assert bits_per_dim_from_log_prob(torch.zeros(3), 784).tolist() == pytest.approx([8.0] * 3)


def test_uniform_density_is_exactly_8_bits_per_dim() -> None:
    model = identity_model(Affine(scale=1.0, shift=0.0), UniformPrior())
    bpd = model.bits_per_dim(images(6), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(bpd, torch.full((6,), 8.0), rtol=0, atol=1e-5)


def test_identity_flow_with_gaussian_prior_matches_closed_form() -> None:
    a, b = 2.5, -1.25
    model = identity_model(Affine(scale=a, shift=b), StandardGaussian())
    y = pixels(4).double()
    u = a * y + b
    dim = y[0].numel()
    expected = (-0.5 * u**2 - 0.5 * math.log(2 * math.pi)).sum(dim=(1, 2, 3)) + dim * math.log(a)
    torch.testing.assert_close(model.log_prob(y), expected, rtol=1e-12, atol=1e-10)
    expected_bpd = (-expected / dim + math.log(256)) / math.log(2)
    torch.testing.assert_close(model.bits_per_dim(y), expected_bpd, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("alpha", [0.0, 0.05, 0.2])
def test_logit_logdet_matches_formula(alpha: float) -> None:
    y = pixels(3).double()
    s = alpha + (1 - 2 * alpha) * y
    expected = (math.log(1 - 2 * alpha) - s.log() - (1 - s).log()).sum(dim=(1, 2, 3))
    z, logdet = Logit(alpha)(y)
    torch.testing.assert_close(logdet, expected, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(z, torch.log(s / (1 - s)), rtol=1e-12, atol=1e-10)


def test_logistic_prior_matches_torch_distributions() -> None:
    z = 3.0 * torch.randn(4, 1, 8, 8, dtype=torch.float64)
    logistic = D.TransformedDistribution(
        D.Uniform(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)),
        [D.SigmoidTransform().inv])
    expected = logistic.log_prob(z).sum(dim=(1, 2, 3))
    torch.testing.assert_close(StandardLogistic().log_prob(z), expected)
    by_hand = (-z - 2 * F.softplus(-z)).sum(dim=(1, 2, 3))
    torch.testing.assert_close(StandardLogistic().log_prob(z), by_hand)


def test_gaussian_prior_matches_torch_distributions() -> None:
    z = torch.randn(4, 2, 4, 4, dtype=torch.float64)
    expected = D.Normal(0.0, 1.0).log_prob(z).sum(dim=(1, 2, 3))
    torch.testing.assert_close(StandardGaussian().log_prob(z), expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_sample_shape_range_and_temperature(family: str) -> None:
    model = tiny_model(family)
    x = model.sample(4, temperature=0.7, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, *SHAPE)
    assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1
    assert not torch.equal(x[0], x[1])
    again = model.sample(4, temperature=0.7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, again)
    mode = model.sample(3, temperature=0.0)  # z = 0 for every image
    assert torch.equal(mode[0], mode[1]) and torch.equal(mode[0], mode[2])


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip(family: str, tmp_path: Path) -> None:
    model, y = tiny_model(family), pixels(4)
    save_model(model, tmp_path / "model.pt", card={"note": "test"})
    loaded = load_model(tmp_path)  # a folder holding model.pt works too
    assert not loaded.training
    assert not hasattr(loaded, "card")  # the card comes with read_card and load_bundle
    assert read_card(tmp_path).notes == {"note": "test"}  # a key the card does not model
    assert load_bundle(tmp_path).card.to_dict() == {"note": "test"}
    assert loaded.config == model.config
    weights, saved = loaded.state_dict(), model.state_dict()
    assert weights.keys() == saved.keys()
    assert all(torch.equal(weights[k], saved[k]) for k in saved)  # values; the layout may differ
    same_layout = model.to(memory_format=torch.channels_last)  # in place, as loading does
    twins = torch.cat([y[:1], y[:1], y[1:]])  # identical images in one batch score identically
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(y), same_layout.log_prob(y))
        scores = loaded.log_prob(twins)
        assert torch.equal(scores[0], scores[1])
        mode = loaded.sample(2, temperature=0.0)
        assert torch.equal(mode[0], mode[1])
    saved_again = tmp_path / "again" / "model.pt"  # written as a freshly built model writes it
    save_model(loaded, saved_again, card={"note": "test"})
    again = torch.load(saved_again, weights_only=True)["state_dict"]
    assert all(t.is_contiguous() and torch.equal(t, saved[k]) for k, t in again.items())


class _Payload:
    """Unpickling this runs ``os.mkdir(path)``: harmless, but visible."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return os.mkdir, (str(self.path),)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_load_model_refuses_a_checkpoint_that_runs_code(writer: str, tmp_path: Path) -> None:
    marker = tmp_path / "code-was-executed"
    evil = {"config": make_config("glow", SHAPE), "state_dict": {}, "card": _Payload(marker)}
    path = tmp_path / "model.pt"
    with open(path, "wb") as f:
        torch.save(evil, f) if writer == "torch.save" else pickle.dump(evil, f)
    with pytest.raises(CheckpointError, match="not a safe flowpaint checkpoint"):
        load_model(path)
    assert not marker.exists()
    with open(path, "rb") as f:  # control: an unsafe load really would have run the payload
        torch.load(f, weights_only=False) if writer == "torch.save" else pickle.load(f)
    assert marker.is_dir()


def test_load_model_reports_a_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_model(tmp_path / "nothing.pt")


@pytest.mark.parametrize(("change", "message"), [
    ({"family": "vae"}, "unknown model"),
    ({"image_shape": [1, 8]}, "image_shape"),
    ({"image_shape": [0, 8, 8]}, "image_shape"),
    ({"image_shape": [1.0, 8, 8]}, "image_shape"),
    ({"image_shape": "1x8x8"}, "image_shape"),
    ({"prior": "cauchy"}, "unknown prior"),
    ({"flow": {"steps": 2, "depth": 3}}, "unknown glow hyperparameter"),
    ({"preprocess": {"name": "tanh"}}, "preprocess"),
])
def test_validate_config_rejects_bad_configs(change: dict, message: str) -> None:
    config = {**make_config("glow", SHAPE), **change}
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_build_model_rejects_unknown_family_and_hyperparameter() -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("vae", image_shape=SHAPE)
    with pytest.raises(ConfigError, match="bogus"):
        build_model("realnvp", image_shape=SHAPE, bogus=1)
    validate_config(make_config("nice", SHAPE, hidden=8))  # a good config passes


def test_config_rebuilds_the_same_architecture() -> None:
    model = tiny_model("realnvp")
    rebuilt = build_model(model.config)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()


def actnorm_state(model: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for m in model.modules() if isinstance(m, ActNorm)
            for t in (m.bias, m.log_scale)]


def test_glow_actnorm_is_not_reinitialised_after_loading(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("glow", image_shape=SHAPE, **TINY["glow"]).train()
    model.log_prob(pixels(16))  # training-mode forward: data-dependent init
    saved = actnorm_state(model)
    assert saved and any(torch.count_nonzero(t) for t in saved)
    save_model(model, tmp_path / "model.pt")

    loaded = load_model(tmp_path / "model.pt")
    assert all(torch.equal(a, b) for a, b in zip(actnorm_state(loaded), saved, strict=True))
    different = 0.5 + 0.5 * pixels(16, seed=7) ** 4  # bright, skewed images
    loaded.train().log_prob(different)
    assert all(torch.equal(a, b) for a, b in zip(actnorm_state(loaded), saved, strict=True))

    fresh = build_model("glow", image_shape=SHAPE, **TINY["glow"]).train()
    fresh.log_prob(different)  # control: an uninitialised model does take its init here
    assert not all(torch.allclose(a, b) for a, b in zip(actnorm_state(fresh), saved, strict=True))


def test_sample_follows_model_dtype() -> None:
    model = build_model("glow", image_shape=(1, 8, 8), steps=1, hidden=8).double()
    assert model.sample(2).dtype == torch.float64


def test_a_failed_checkpoint_write_keeps_the_previous_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that dies half-way (a full disk) leaves the old checkpoint intact and no
    temporary file behind."""
    from inpaint_app.models import atomic_save

    path = tmp_path / "state.pt"
    atomic_save({"step": 1}, path)

    def disk_full(obj: object, f: BinaryIO) -> None:
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        atomic_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_dequantization_modes_agree_in_expectation() -> None:
    torch.manual_seed(0)
    model = build_model("realnvp", image_shape=(1, 4, 4)).eval()
    x = images(1, 3, shape=(1, 4, 4))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        random = torch.stack([dequantize(x, gen) for _ in range(2000)])
        fixed = torch.stack([dequantize(x, noise="fixed", seed=s) for s in range(2000)])
        centre = dequantize(x, noise="centre")
        assert torch.equal(centre, (x.float() + 0.5) / 256)
        # each pixel's mean over draws is the bin centre: sd of the mean 1 / (256 sqrt(12 n))
        for draws in (random, fixed):
            assert ((draws >= x / 256) & (draws <= (x.float() + 1) / 256)).all()  # its bin
            assert (draws.mean(0) - centre).abs().max() < 5 / (256 * math.sqrt(12 * 2000))
        bpd = [model.bits_per_dim(d.flatten(0, 1)).mean() for d in (random, fixed)]
        assert abs(bpd[0] - bpd[1]) < 0.01


def test_fixed_dequantization_does_not_depend_on_batch_or_position() -> None:
    batch = images(5, 4)
    fixed = dequantize(batch, noise="fixed", seed=7)
    assert torch.equal(fixed[3:4], dequantize(batch[3:4], noise="fixed", seed=7))
    assert torch.allclose(fixed[0] - batch[0] / 256, fixed[4] - batch[4] / 256, atol=1e-6)
    assert not torch.equal(fixed, dequantize(batch, noise="fixed", seed=8))
    with pytest.raises(ValueError, match="dequantization noise 'gaussian'"):
        dequantize(batch, noise="gaussian")
