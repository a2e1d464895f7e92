"""benchmarks.benchmark smoke runs, and the optimised paths it measures against the plain ones."""

from __future__ import annotations

import json
import math

import pytest
import torch

import benchmarks.benchmark as bench
from inpaint_app.flows.glow import InvConv1x1LU
from inpaint_app.models import build_model

ROW_KEYS = {"name", "unit", "ours", "peer", "ratio", "better"}


def _report(out) -> dict:
    report = json.loads((out / "latest.json").read_text())
    assert {"machine", "rows", "command", "date"} <= set(report)
    assert report["machine"]["torch_threads"] >= 1
    for row in report["rows"]:
        assert set(row) == ROW_KEYS
        assert isinstance(row["ours"], (int, float))
    table_lines = (out / "latest.md").read_text().count("\n|")
    assert table_lines == len(report["rows"]) + 2  # header, rule, one line per row
    return report


def test_quick_run_without_peer_writes_our_rows(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(bench, "import_peer", lambda: None)
    bench.main(["--quick", "--families", "nice", "--no-default-model", "--threads", "1",
                "--out", str(tmp_path)])
    assert 'pip install -e ".[bench]"' in capsys.readouterr().err
    rows = {r["name"]: r for r in _report(tmp_path)["rows"]}
    assert all(r["peer"] is None and r["ratio"] is None for r in rows.values())
    assert rows["nice training (batch 8)"]["unit"] == "images/s"
    # Measured figures depend on the CPU (a bf16 peak is tiny without native bf16): the suite
    # checks that each row is there and is a positive finite number, never its size.
    names = ["nice peak memory, train", "nice training / matmul peak",
             "nice training, bf16 autocast, both sides",
             "nice training, bf16 + fused Adam / bf16 matmul peak"]
    names += [f"nice training, fused Adam, batch {batch} / matmul peak" for batch in (8, 16)]
    for name in names:
        assert math.isfinite(rows[name]["ours"]) and rows[name]["ours"] > 0, name


def test_fresh_process_verdict_row_measures_the_shipped_model() -> None:
    """The eager verdict in a fresh interpreter: the figure ``score_batch`` users see."""
    args = bench.parse(["--threads", "1", "--repeats", "1"])
    rate = bench.fresh_verdict(args)
    assert rate is not None and math.isfinite(rate) and rate > 0


def test_quick_run_with_peer_has_ratios(tmp_path) -> None:
    pytest.importorskip("normflows")
    bench.main(["--quick", "--families", "glow", "--no-default-model", "--threads", "1",
                "--out", str(tmp_path)])
    rows = {r["name"]: r for r in _report(tmp_path)["rows"]}
    params = rows["glow parameters"]
    assert params["ours"] == params["peer"]  # the peer model is the same architecture
    scoring = rows["glow scoring (batch 16)"]
    assert scoring["ratio"] == pytest.approx(scoring["ours"] / scoring["peer"], rel=1e-2)


@pytest.mark.parametrize("family", ["nice", "realnvp", "glow"])
def test_peer_models_match_our_parameter_counts(family: str) -> None:
    nf = pytest.importorskip("normflows")
    pair = bench.build_pair(family, nf, actnorm_batch=4)
    ours, peer = (bench.n_params(pair[side][1]) for side in ("ours", "peer"))
    assert abs(ours - peer) / ours < 0.02


def _layer() -> InvConv1x1LU:
    torch.manual_seed(0)
    return InvConv1x1LU(4).double().eval()


def _plain(layer: InvConv1x1LU, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():  # parameters require grad: the uncached path
        z, logdet = layer(x)
    return z.detach(), logdet.detach()


def test_lu_cache_gives_the_plain_numbers() -> None:
    layer, x = _layer(), torch.randn(3, 4, 5, 5, dtype=torch.float64)
    with torch.inference_mode():
        z, logdet = layer(x)
        x_back = layer.inverse(z)
    z_plain, logdet_plain = _plain(layer, x)
    assert torch.equal(z, z_plain) and torch.equal(logdet, logdet_plain)
    assert torch.allclose(x_back, x, atol=1e-10)


def test_lu_cache_follows_optimizer_steps_and_reloads() -> None:
    layer, x = _layer(), torch.randn(3, 4, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        z_old, logdet_old = layer(x)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    z, logdet = layer(x)
    (z.square().sum() - logdet.sum()).backward()
    optimizer.step()
    with torch.no_grad():
        z_new, logdet_new = layer(x)
    assert not torch.equal(z_new, z_old) and not torch.equal(logdet_new, logdet_old)
    assert all(torch.equal(a, b) for a, b in zip((z_new, logdet_new), _plain(layer, x),
                                                strict=True))
    fresh = _layer()
    layer.load_state_dict(fresh.state_dict())
    with torch.no_grad():
        assert torch.equal(layer(x)[0], z_old)
        assert torch.equal(layer.float()(x.float())[0], _plain(layer, x.float())[0])


def test_lu_cache_with_frozen_weights_allows_input_gradients() -> None:
    layer = _layer().requires_grad_(False)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    with torch.inference_mode():
        layer(x)  # fills the cache inside inference mode
    x.requires_grad_(True)
    z, _ = layer(x)
    (grad,) = torch.autograd.grad(z.square().sum(), x)
    w = layer.weight()
    expected = 2 * torch.einsum("oc,bohw->bchw", w, torch.einsum("oc,bchw->bohw", w, x))
    assert torch.allclose(grad, expected.detach())


@pytest.mark.parametrize("family", ["glow", "realnvp"])
def test_inference_log_prob_equals_training_path(family: str) -> None:
    """The fast scoring path (inference mode, LU cache, NCHW) against the training path
    (gradients on, channels_last convolutions, weights assembled per call)."""
    torch.manual_seed(0)
    model = build_model(family, image_shape=(1, 8, 8))
    y = torch.rand(5, 1, 8, 8) * 0.9 + 0.05
    model.train()
    model.log_prob(y)  # ActNorm init
    with torch.no_grad():  # non-trivial output layers, so the nets matter
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.eval()
    plain = model.log_prob(y).detach()
    with torch.inference_mode():
        fast = model.log_prob(y)
    assert torch.allclose(fast, plain, atol=1e-5, rtol=1e-6)
