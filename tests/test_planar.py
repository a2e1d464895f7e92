"""Planar flows: the invertibility constraint, the numerical inverse, the family, reverse KL."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from flow_checks import short_training_drop

from inpaint_app.flows.base import Sequential
from inpaint_app.flows.planar import (
    ENERGIES,
    Planar,
    planar_log_q,
    reverse_kl,
    solve_monotone,
)
from inpaint_app.models import build_model, load_model, save_model


def random_planar(dim: int, scale: float, seed: int, dtype: torch.dtype = torch.float32
                  ) -> Planar:
    torch.manual_seed(seed)
    layer = Planar(dim).to(dtype)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(scale * torch.randn_like(p))
    return layer


@pytest.mark.parametrize("scale", [0.1, 1.0, 10.0])
def test_constraint_w_dot_u_hat_at_least_minus_one(scale: float) -> None:
    for seed in range(200):
        layer = random_planar(5, scale, seed, torch.float64)
        assert (layer.w @ layer.u_hat()).item() >= -1.0


def test_constraint_holds_when_u_points_against_w() -> None:
    layer = Planar(3).double()
    with torch.no_grad():
        layer.w.copy_(torch.tensor([1.0, 2.0, -1.0]))
        layer.u.copy_(-5.0 * layer.w)  # w^T u = -30: the raw u would make f non-invertible
    wu = (layer.w @ layer.u_hat()).item()
    assert -1.0 < wu < -0.99


@pytest.mark.parametrize(("scale", "dtype", "tol"), [(0.5, torch.float64, 1e-6),
                                                     (3.0, torch.float64, 1e-6),
                                                     (0.5, torch.float32, 1e-5)])
def test_numerical_inverse_reaches_1e_minus_6(scale: float, dtype: torch.dtype, tol: float
                                              ) -> None:
    # float32 loses digits where w^T u_hat is near -1 (f is nearly flat there): an
    # ill-conditioned inverse, whatever the solver, so float32 gets a looser bound.
    for seed in range(20):
        layer = random_planar(4, scale, seed, dtype)
        x = 3 * torch.randn(64, 4, dtype=dtype)
        with torch.no_grad():
            z, _ = layer(x)
            assert (layer.inverse(z) - x).abs().max().item() <= tol


def test_solver_residual_is_below_tolerance_even_near_the_boundary() -> None:
    target = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    for wu in (-0.999999, -0.5, 0.0, 3.0, 50.0):
        wu_t, b = torch.tensor(wu, dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64)
        a = solve_monotone(target, wu_t, b, tol=1e-12)
        residual = a + wu_t * torch.tanh(a + b) - target
        assert residual.abs().max().item() <= 1e-6


def test_stack_round_trip_and_logdet_against_jacobian() -> None:
    torch.manual_seed(0)
    flow = Sequential(*[random_planar(3, 1.0, s, torch.float64) for s in range(6)])
    x = torch.randn(4, 3, dtype=torch.float64)
    z, logdet = flow(x)
    assert (flow.inverse(z) - x).abs().max().item() <= 1e-10
    jac = torch.autograd.functional.jacobian(lambda v: flow(v)[0], x)
    blocks = torch.stack([jac[i, :, i, :] for i in range(4)])
    torch.testing.assert_close(logdet, torch.linalg.slogdet(blocks)[1], rtol=1e-9, atol=1e-9)


def test_build_save_load_gives_identical_log_prob(tmp_path: Path) -> None:
    model = build_model("planar", image_shape=(1, 8, 8), layers=4)
    model.train().log_prob(torch.rand(16, 1, 8, 8) * 0.9 + 0.05)  # ActNorm's data init
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.eval()
    save_model(model, tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt")
    y = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(loaded.log_prob(y), model.log_prob(y), rtol=0, atol=0)
    samples = loaded.sample(3, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (3, 1, 8, 8) and torch.isfinite(samples).all()


def test_short_training_run_lowers_the_loss() -> None:
    torch.manual_seed(0)
    model = build_model("planar", image_shape=(1, 4, 4), layers=8)
    assert short_training_drop(model, lr=1e-2, spread=15.0) > 0.05


def test_energies_are_finite_and_reverse_kl_fit_improves() -> None:
    pts = torch.randn(100, 2) * 3
    for energy in ENERGIES.values():
        assert torch.isfinite(energy(pts)).all()
    torch.manual_seed(0)
    flow = Sequential(*[Planar(2) for _ in range(8)])
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
    before = reverse_kl(flow, ENERGIES["U1"], 2048, generator=torch.Generator().manual_seed(9))
    for _ in range(150):
        loss = reverse_kl(flow, ENERGIES["U1"], 256, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = reverse_kl(flow, ENERGIES["U1"], 2048, generator=torch.Generator().manual_seed(9))
    assert after.item() < before.item() - 0.5
    log_q = planar_log_q(flow, torch.randn(50, 2))
    assert torch.isfinite(log_q).all()
