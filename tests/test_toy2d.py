"""The 2-D gallery: toy flows, data sets, rendering, and a smoke run of the script."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from benchmarks import toy2d
from inpaint_app.flows.toy import DATASETS, TOY_FAMILIES, build_toy_flow, toy_log_prob


@pytest.mark.parametrize("family", TOY_FAMILIES)
def test_toy_flows_round_trip_and_score_points(family: str) -> None:
    # float64: a random stack of 32 planar maps can contract hard, which costs float32 digits
    torch.manual_seed(0)
    flow = build_toy_flow(family, hidden=16).double()
    x = torch.randn(32, 2, dtype=torch.float64)
    tol = 1e-3 if family == "ffjord" else 1e-6  # FFJORD: the toy solver's rtol/atol of 1e-3
    flow.train()
    toy_log_prob(flow, x)  # ActNorm init
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    flow.eval()
    with torch.no_grad():
        z, logdet = flow(x)
        assert z.shape == x.shape and logdet.shape == (32,)
        assert (flow.inverse(z) - x).abs().max().item() <= tol
    assert torch.isfinite(toy_log_prob(flow, x)).all()


@pytest.mark.parametrize("name", DATASETS)
def test_datasets_are_2d_and_inside_the_plot(name: str) -> None:
    pts = DATASETS[name](5000, torch.Generator().manual_seed(0))
    assert pts.shape == (5000, 2) and torch.isfinite(pts).all()
    inside = (pts.abs() < toy2d.BOUND).all(dim=1).float().mean().item()
    assert inside > 0.99


def test_colorize_maps_zero_and_one_to_the_ends() -> None:
    image = toy2d.colorize(torch.tensor([[0.0, 1.0]]))
    assert image.size == (2, 1)
    assert image.getpixel((0, 0)) == (68, 1, 84) and image.getpixel((1, 0)) == (253, 231, 37)


def test_grid_points_run_top_to_bottom() -> None:
    pts = toy2d.grid_points(4)
    assert pts.shape == (16, 2)
    assert pts[0, 1] > 0 > pts[-1, 1] and pts[0, 0] < 0 < pts[3, 0]


def test_smoke_run_writes_gallery_tables_and_energy_figure(tmp_path: Path) -> None:
    toy2d.main(["--families", ",".join(TOY_FAMILIES), "--datasets", "moons,rings",
                "--steps", "3", "--batch-size", "64", "--test-size", "64", "--grid", "12",
                "--energy-steps", "3", "--out", str(tmp_path)])
    gallery = Image.open(tmp_path / "gallery.png")
    assert gallery.size[0] > gallery.size[1] / 4 and gallery.size[1] > 7 * 160
    assert Image.open(tmp_path / "planar_energies.png").size[1] > 2 * 160
    with open(tmp_path / "loglik.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["family"], r["dataset"]) for r in rows} == {
        (fam, d) for fam in TOY_FAMILIES for d in ("moons", "rings")}
    assert all(r["test_loglik"] not in ("", "nan") for r in rows)
    summary = json.loads((tmp_path / "loglik.json").read_text())
    assert set(summary["planar_reverse_kl"]) == {"U1", "U2", "U3", "U4"}
    assert any("nfe" in r for r in summary["results"] if r["family"] == "ffjord")


def test_unknown_family_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown family"):
        toy2d.main(["--families", "gan", "--out", str(tmp_path)])


# Per family: (Adam steps, batch size, learning rate). A few hundred steps each; planar maps
# are rank one and FFJORD pays an ODE solve per step, so they get their own settings.
MOONS_RECIPES = {"nice": (200, 128, 3e-3), "realnvp": (200, 128, 3e-3), "glow": (200, 128, 3e-3),
                 "maf": (200, 128, 3e-3), "planar": (300, 64, 2e-2), "ffjord": (120, 64, 1e-2)}
MOONS_MARGIN = 0.15  # nats per point above the Gaussian; every family clears it by 0.3 or more


def gaussian_test_loglik(train: torch.Tensor, test: torch.Tensor) -> float:
    """Mean test log-likelihood of the Gaussian with the training mean and covariance."""
    fitted = torch.distributions.MultivariateNormal(train.mean(dim=0), torch.cov(train.T))
    return fitted.log_prob(test).mean().item()


def test_gaussian_baseline_matches_the_closed_form() -> None:
    # N(0, diag(4, 1/4)) has unit determinant: its expected log-density is -1 - log(2 pi)
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(20_000, 2, generator=g) * torch.tensor([2.0, 0.5])
    assert abs(gaussian_test_loglik(pts, pts) - (-1 - math.log(2 * math.pi))) < 0.02


@pytest.mark.slow
@pytest.mark.parametrize("family", TOY_FAMILIES)
def test_every_family_fits_two_moons_better_than_a_gaussian(family: str) -> None:
    moons = DATASETS["moons"]
    train = moons(20_000, torch.Generator().manual_seed(1))
    test = moons(2000, torch.Generator().manual_seed(2))
    baseline = gaussian_test_loglik(train, test)
    steps, batch_size, lr = MOONS_RECIPES[family]
    torch.manual_seed(0)
    flow = build_toy_flow(family, hidden=32)
    toy2d.train_toy(flow, moons, steps, batch_size, lr, torch.Generator().manual_seed(0))
    flow.eval()
    with torch.no_grad():
        loglik = toy_log_prob(flow, test).mean().item()
    assert loglik > baseline + MOONS_MARGIN, (family, loglik, baseline)
