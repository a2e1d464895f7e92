"""MAF: MADE's autoregressive structure, exact inverse, batch norm, and the model family."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from flow_checks import perturbed, short_training_drop

from inpaint_app.flows.maf import (
    MADE,
    BatchNormFlow,
    MaskedAffineAutoregressive,
    build_maf,
    made_orders,
)
from inpaint_app.models import build_model, load_model, save_model


def batch_jacobian(fn, x: torch.Tensor) -> torch.Tensor:
    """``[B, D, D]`` per-example Jacobians of a map acting row by row."""
    jac = torch.autograd.functional.jacobian(fn, x, vectorize=True)
    return torch.stack([jac[i, :, i, :] for i in range(x.shape[0])])


@pytest.mark.parametrize("order", ["alternate", "random"])
@pytest.mark.parametrize("depth", [1, 2])
def test_made_jacobian_is_zero_outside_its_mask(order: str, depth: int) -> None:
    for degrees in made_orders(7, 2, order, seed=3):
        made = perturbed(MADE(degrees, hidden=16, depth=depth).double())
        x = torch.randn(2, 7, dtype=torch.float64)
        for k in range(2):  # both outputs per dimension (shift and log-scale)
            jac = batch_jacobian(lambda v, k=k, made=made: made(v)[:, k], x)
            allowed = degrees[None, :] < degrees[:, None]  # output i sees inputs of lower degree
            assert torch.count_nonzero(jac[:, ~allowed]) == 0
            assert torch.count_nonzero(jac[:, allowed]) > 0


def test_maf_layer_jacobian_is_triangular_in_its_order() -> None:
    degrees = torch.randperm(6, generator=torch.Generator().manual_seed(1)) + 1
    layer = perturbed(MaskedAffineAutoregressive(degrees, hidden=16, depth=2).double())
    x = torch.randn(3, 6, dtype=torch.float64)
    jac = batch_jacobian(lambda v: layer(v)[0], x)
    later = degrees[None, :] > degrees[:, None]
    assert torch.count_nonzero(jac[:, later]) == 0
    logdet = torch.log(torch.diagonal(jac, dim1=1, dim2=2).abs()).sum(dim=1)
    torch.testing.assert_close(layer(x)[1], logdet, rtol=1e-10, atol=1e-10)


def test_stacked_maf_inverse_is_exact_in_float32() -> None:
    flow = perturbed(build_maf((1, 4, 5), blocks=4, hidden=32, depth=2, order="random"), 0.1)
    x = torch.randn(8, 1, 4, 5)
    with torch.no_grad():
        z, _ = flow(x)
        assert (flow.inverse(z) - x).abs().max().item() <= 1e-4


def test_orders_alternate_and_random_ones_are_permutations() -> None:
    alt = made_orders(5, 3, "alternate")
    assert torch.equal(alt[0], torch.arange(1, 6)) and torch.equal(alt[1], torch.arange(5, 0, -1))
    for degrees in made_orders(5, 3, "random", seed=1):
        assert torch.equal(degrees.sort().values, torch.arange(1, 6))
    with pytest.raises(ValueError, match="unknown order"):
        made_orders(5, 1, "sideways")


# Batch norm: train mode uses batch statistics, so the generic harness (train == eval) does not
# apply; in eval mode it is a fixed elementwise affine map and gets the usual checks here.

def trained_batchnorm() -> BatchNormFlow:
    layer = perturbed(BatchNormFlow(4).double(), scale=0.2).train()
    for _ in range(5):
        layer(2.0 + 3.0 * torch.randn(32, 4, dtype=torch.float64))
    return layer.eval()


def test_batchnorm_eval_round_trip_and_logdet() -> None:
    layer, x = trained_batchnorm(), torch.randn(3, 4, dtype=torch.float64)
    z, logdet = layer(x)
    assert (layer.inverse(z) - x).abs().max().item() <= 1e-12
    jac = batch_jacobian(lambda v: layer(v)[0], x)
    torch.testing.assert_close(logdet, torch.linalg.slogdet(jac)[1], rtol=1e-10, atol=1e-10)
    inv_jac = batch_jacobian(layer.inverse, z)
    torch.testing.assert_close(torch.linalg.slogdet(inv_jac)[1], -logdet, rtol=1e-10, atol=1e-10)


def test_batchnorm_training_normalises_the_batch_and_tracks_running_stats() -> None:
    layer = BatchNormFlow(3).double().train()
    x = 5.0 + 2.0 * torch.randn(256, 3, dtype=torch.float64)
    z, logdet = layer(x)
    torch.testing.assert_close(z.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(z.var(0, unbiased=False), torch.ones(3, dtype=torch.float64),
                               atol=1e-4, rtol=0)
    expected = -0.5 * (x.var(0, unbiased=False) + layer.eps).log().sum()
    torch.testing.assert_close(logdet, expected.expand(256))
    assert torch.all(layer.running_mean > 0.2)  # moved towards 5 by one momentum step


def test_batchnorm_on_images_counts_every_position() -> None:
    layer = trained_batchnorm()
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    z, logdet = layer(x)
    flat = batch_jacobian(lambda v: layer(v.reshape(-1, 4, 3, 3))[0].reshape(v.shape[0], -1),
                          x.reshape(2, -1))
    torch.testing.assert_close(logdet, torch.linalg.slogdet(flat)[1], rtol=1e-10, atol=1e-10)
    assert (layer.inverse(z) - x).abs().max().item() <= 1e-12


# The model family.

@pytest.mark.parametrize("hparams", [{}, {"batch_norm": True, "order": "random", "depth": 2}])
def test_build_save_load_gives_identical_log_prob(tmp_path: Path, hparams: dict) -> None:
    model = build_model("maf", image_shape=(1, 8, 8), **hparams)
    perturbed(model, scale=0.05)
    model.train().log_prob(torch.rand(16, 1, 8, 8) * 0.9 + 0.05)  # batch-norm statistics move
    model.eval()
    save_model(model, tmp_path / "model.pt", card={"note": "test"})
    loaded = load_model(tmp_path)
    y = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(loaded.log_prob(y), model.log_prob(y), rtol=0, atol=0)
    assert loaded.config == model.config
    samples = loaded.sample(3, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (3, 1, 8, 8) and torch.isfinite(samples).all()


def test_short_training_run_lowers_the_loss() -> None:
    torch.manual_seed(0)
    model = build_model("maf", image_shape=(1, 4, 4), blocks=2, hidden=32)
    assert short_training_drop(model, lr=3e-3) > 0.3
