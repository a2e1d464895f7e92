"""FFJORD: exact and Hutchinson traces, solvers, adjoint gradients, RNODE, and the family."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from flow_checks import perturbed

from inpaint_app.density import DensityModel
from inpaint_app.ffjord_density import bits_summary, log_prob_probe_samples, log_prob_with_penalty
from inpaint_app.flows.ffjord import (
    CNF,
    ODENet,
    build_ffjord,
    cnf_blocks,
    divergence,
    total_nfe,
)
from inpaint_app.models import build_model, load_model, save_model
from inpaint_app.training import LogProb, train_step


def vector_cnf(dim: int = 4, **options) -> CNF:
    """The same weights for the same ``dim`` whatever the options."""
    torch.manual_seed(0)
    return perturbed(CNF(ODENet(dim, hidden=16), **options).double())


def test_exact_divergence_matches_the_jacobian_trace() -> None:
    net = perturbed(ODENet(5, hidden=16).double())
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(0.3, dtype=torch.float64)
    trace, frob = divergence(net(t, x), x, None, create_graph=False)
    jac = torch.autograd.functional.jacobian(lambda v: net(t, v), x)
    blocks = torch.stack([jac[i, :, i, :] for i in range(3)])
    torch.testing.assert_close(trace, torch.diagonal(blocks, dim1=1, dim2=2).sum(1))
    torch.testing.assert_close(frob, blocks.pow(2).sum(dim=(1, 2)))


def test_exact_trace_logdet_matches_the_integrated_maps_jacobian() -> None:
    cnf = vector_cnf(3, rtol=1e-12, atol=1e-12)
    x = torch.randn(3, 3, dtype=torch.float64)
    z, logdet = cnf(x)
    jac = torch.autograd.functional.jacobian(lambda v: cnf(v)[0], x, vectorize=True)
    blocks = torch.stack([jac[i, :, i, :] for i in range(3)])
    torch.testing.assert_close(logdet, torch.linalg.slogdet(blocks)[1], rtol=1e-9, atol=1e-9)
    assert (cnf.inverse(z) - x).abs().max().item() <= 1e-9


@pytest.mark.parametrize("probe", ["gaussian", "rademacher"])
def test_hutchinson_logdet_is_unbiased(probe: str) -> None:
    # Fixed-step rk4: every probe sees the same trajectory, so each example's estimate is the
    # exact-trace log-det plus zero-mean noise; 600 copies of one point give 600 probes at once.
    options = {"solver": "rk4", "step_size": 0.25}
    exact = vector_cnf(6, trace="exact", **options)
    hutch = vector_cnf(6, trace="hutchinson", probe=probe, **options).train()
    x = torch.randn(1, 6, dtype=torch.float64).expand(600, 6)
    torch.manual_seed(1)
    with torch.no_grad():
        target = exact(x[:1])[1].item()
        estimates = hutch(x)[1]
    stderr = estimates.std().item() / math.sqrt(len(estimates))
    assert estimates.std().item() > 0  # really stochastic
    assert abs(estimates.mean().item() - target) < 4 * stderr


def test_eval_mode_hutchinson_is_deterministic_and_batch_independent() -> None:
    cnf = vector_cnf(6, trace="hutchinson", eval_probes=3, solver="rk4").eval()
    x = torch.randn(5, 6, dtype=torch.float64)
    with torch.no_grad():
        first, again = cnf(x)[1], cnf(x)[1]
        alone = cnf(x[2:3])[1]
    assert torch.equal(first, again)
    torch.testing.assert_close(alone, first[2:3], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_adjoint_gradients_equal_direct_backprop(trace: str) -> None:
    # the input requires grad, as it does for every block after the first; the backward solve
    # must see the forward's own probes (the same global seed draws them for both runs)
    grads = []
    for adjoint in (False, True):
        cnf = vector_cnf(3, rtol=1e-10, atol=1e-10, adjoint=adjoint, trace=trace).train()
        x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1),
                        requires_grad=True)
        torch.manual_seed(2)
        z, logdet = cnf(x)
        (z.pow(2).sum() - logdet.sum()).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in (*cnf.parameters(), x)]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)


def test_nfe_is_reported_and_rk4_takes_four_per_step() -> None:
    cnf = vector_cnf(3, solver="rk4", step_size=0.25)
    cnf(torch.randn(2, 3, dtype=torch.float64))
    assert cnf.nfe_forward == 16 and total_nfe(cnf) == 16
    cnf.inverse(torch.randn(2, 3, dtype=torch.float64))
    assert cnf.nfe_inverse == 16
    adaptive = vector_cnf(3)
    adaptive(torch.randn(2, 3, dtype=torch.float64))
    assert adaptive.nfe_forward > 6


def test_rnode_penalty_is_returned_in_training_only() -> None:
    x = torch.randn(4, 3, dtype=torch.float64)
    plain = vector_cnf(3, solver="rk4").train()
    both, kinetic, jacobian = (vector_cnf(3, solver="rk4", kinetic=k, jacobian=j).train()
                               for k, j in ((0.1, 0.2), (0.1, 0.0), (0.0, 0.2)))
    z, logdet, penalty = both.forward_with_penalty(x)
    # the Flow contract holds in training too: forward gives the true logdet, no penalty
    assert all(torch.equal(a, b) for a, b in zip((z, logdet), plain(x), strict=True))
    assert torch.all(penalty > 0) and penalty.requires_grad
    torch.testing.assert_close(penalty, kinetic.forward_with_penalty(x)[2]
                               + jacobian.forward_with_penalty(x)[2])
    assert plain.forward_with_penalty(x)[2] is None
    with torch.no_grad():
        assert both.forward_with_penalty(x)[2] is None
    assert both.eval().forward_with_penalty(x)[2] is None


def test_training_loss_adds_the_rnode_penalty() -> None:
    model = build_model("ffjord", image_shape=(1, 4, 4), solver="rk4", kinetic=0.1,
                        jacobian=0.1)
    perturbed(model, scale=0.05).train()
    y = torch.rand(3, 1, 4, 4) * 0.9 + 0.05
    log_prob, penalty = log_prob_with_penalty(model, y)
    assert torch.all(penalty > 0) and penalty.requires_grad
    torch.testing.assert_close(log_prob, model.log_prob(y), rtol=0, atol=0)
    torch.testing.assert_close(LogProb(model)(y)[0], log_prob - penalty, rtol=0, atol=0)
    # the sum over the model's CNF blocks, each fed what the flow feeds it
    inputs = []
    for block in cnf_blocks(model):
        block.register_forward_pre_hook(lambda _, args: inputs.append(args[0]))
    model.log_prob(y)
    blocks = [block.forward_with_penalty(u)[2] for block, u in zip(cnf_blocks(model), inputs,
                                                                   strict=True)]
    torch.testing.assert_close(penalty, sum(blocks))


def hutchinson_model_and_images(n: int) -> tuple[DensityModel, torch.Tensor]:
    """An 8x8 FFJORD in evaluation whose blocks all take the Hutchinson trace, and n images."""
    model = build_model("ffjord", image_shape=(1, 8, 8), exact_max_dim=4, solver="rk4")
    perturbed(model, scale=0.05).eval()
    return model, torch.rand(n, 1, 8, 8) * 0.9 + 0.05


def test_probe_samples_give_a_mean_and_standard_error() -> None:
    model, y = hutchinson_model_and_images(3)
    samples = log_prob_probe_samples(model, y, probes=4)
    assert samples.shape == (4, 3) and samples.std(dim=0).min() > 0
    summary = bits_summary(samples, 64)
    assert summary["stderr_probes"] > 0 and math.isfinite(summary["bpd"])
    exact = build_model("ffjord", image_shape=(1, 4, 4), solver="rk4").eval()  # D = 16: exact
    rows = log_prob_probe_samples(exact, torch.rand(2, 1, 4, 4), probes=3)
    assert torch.equal(rows[0], rows[2])


def test_a_request_scored_during_another_gets_its_own_numbers() -> None:
    # Threads of a server interleave solves on one shared model: here one scoring runs inside
    # another, mid-solve. Neither call may leave probes or a generator on the modules.
    model, y = hutchinson_model_and_images(2)
    with torch.no_grad():
        alone = model.log_prob(y)
    samples_alone = log_prob_probe_samples(model, y, probes=2)
    nested: list[torch.Tensor | None] = []

    def interleave(*_) -> None:
        if not nested:  # once: the nested call's own solves come through here too
            nested.append(None)
            with torch.no_grad():
                nested[0] = model.log_prob(y)

    cnf_blocks(model)[-1].func.net.register_forward_pre_hook(interleave)
    samples = log_prob_probe_samples(model, y, probes=2)
    assert torch.equal(nested[0], alone) and torch.equal(samples, samples_alone)


def test_multiscale_structure_round_trips() -> None:
    flow = perturbed(build_ffjord((2, 8, 8), hidden=8), scale=0.05).eval()
    names = [type(m).__name__ for m in flow.modules()]
    assert names.count("CNF") == 5 and "Split" in names and "Squeeze" in names
    x = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        z, logdet = flow(x)
        assert z[0].numel() == x[0].numel() and logdet.shape == (2,)
        assert (flow.inverse(z) - x).abs().max().item() <= 1e-3


def test_build_save_load_gives_the_same_log_prob(tmp_path: Path) -> None:
    model = build_model("ffjord", image_shape=(1, 8, 8))
    perturbed(model, scale=0.05).eval()
    save_model(model, tmp_path / "model.pt")
    loaded = load_model(tmp_path)
    y = torch.rand(2, 1, 8, 8) * 0.9 + 0.05
    with torch.inference_mode():  # as pipelines.evaluate scores: autograd re-enabled inside
        bpd = loaded.bits_per_dim(y)
    # loading puts the convolution weights in channels_last: exactly that model's numbers,
    # and the contiguous original's to rounding
    contiguous = model.log_prob(y)
    model.to(memory_format=torch.channels_last)  # in place
    torch.testing.assert_close(loaded.log_prob(y), model.log_prob(y), rtol=0, atol=0)
    torch.testing.assert_close(loaded.log_prob(y), contiguous, rtol=1e-5, atol=1e-3)
    assert torch.isfinite(bpd).all()
    samples = loaded.sample(2, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (2, 1, 8, 8)


def test_short_training_run_lowers_the_loss() -> None:
    torch.manual_seed(0)
    model = build_model("ffjord", image_shape=(1, 4, 4), levels=0, hidden=8, solver="rk4",
                        step_size=0.5, exact_max_dim=0)  # one CNF, Hutchinson trace
    centre = torch.linspace(60, 200, 16).reshape(1, 1, 4, 4)
    data = (centre + 15 * torch.randn(128, 1, 4, 4)).clamp(0, 255).to(torch.uint8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    losses = [train_step(LogProb(model), model, data[torch.randint(0, 128, (32,), generator=g)],
                         opt, generator=g) for _ in range(25)]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.05
