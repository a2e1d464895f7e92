"""The generic layer harness, run over every flow layer, and structural tests per layer."""

from __future__ import annotations

import importlib
import inspect
import io
import pkgutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import inpaint_app.flows
import inpaint_app.preprocess
from inpaint_app.flows.base import Flatten, Flow, Sequential, Split, Squeeze
from inpaint_app.flows.ffjord import CNF, ODENet
from inpaint_app.flows.glow import ActNorm, InvConv1x1LU
from inpaint_app.flows.maf import BatchNormFlow, MaskedAffineAutoregressive
from inpaint_app.flows.nice import AdditiveCoupling, DiagonalScaling
from inpaint_app.flows.planar import Planar
from inpaint_app.flows.realnvp import AffineCoupling
from inpaint_app.flows.toy import VectorAffineCoupling
from inpaint_app.preprocess import Affine, Logit

BATCH = 3


def affine(mask: str, parity: int, blocks: int, channels: int = 4,
           scale: str = "sigmoid") -> Callable[[], Flow]:
    return lambda: AffineCoupling(channels, mask=mask, parity=parity, hidden=8, blocks=blocks,
                                  scale=scale, shift_bound=5.0 if scale == "sigmoid" else None)


def split() -> Flow:
    # (4, 4, 4) -> keep (2, 4, 4) -> squeeze (8, 2, 2) -> coupling
    inner = Sequential(Squeeze(), AffineCoupling(8, mask="channel", hidden=8))
    return Split(inner, inner_shape=(8, 2, 2))


def glow_like() -> Flow:
    return Sequential(ActNorm(4), InvConv1x1LU(4),
                      AffineCoupling(4, mask="checkerboard", hidden=8, blocks=1))


# name -> (layer factory, per-example input shape, input in (0, 1) rather than N(0, 1))
CASES: dict[str, tuple[Callable[[], Flow], tuple[int, ...], bool]] = {
    "additive-0": (lambda: AdditiveCoupling(6, parity=0, hidden=8, depth=2), (6,), False),
    "additive-1": (lambda: AdditiveCoupling(6, parity=1, hidden=8, depth=2), (6,), False),
    "diagonal-scaling": (lambda: DiagonalScaling(6), (6,), False),
    "affine-channel-0": (affine("channel", 0, blocks=0), (4, 4, 4), False),
    "affine-channel-1": (affine("channel", 1, blocks=1), (4, 4, 4), False),
    "affine-channel-odd-0": (affine("channel", 0, blocks=1, channels=3), (3, 4, 4), False),
    "affine-channel-odd-1": (affine("channel", 1, blocks=0, channels=3), (3, 4, 4), False),
    "affine-checkerboard-0": (affine("checkerboard", 0, blocks=1), (4, 4, 4), False),
    "affine-checkerboard-1": (affine("checkerboard", 1, blocks=0), (4, 4, 4), False),
    "affine-checkerboard-1ch": (affine("checkerboard", 0, blocks=0, channels=1), (1, 4, 4), False),
    "affine-channel-tanh": (affine("channel", 0, blocks=1, scale="tanh"), (4, 4, 4), False),
    "affine-checkerboard-tanh": (affine("checkerboard", 1, blocks=0, scale="tanh"), (4, 4, 4),
                                 False),
    "actnorm": (lambda: ActNorm(4), (4, 4, 4), False),
    "actnorm-vector": (lambda: ActNorm(6), (6,), False),
    "invconv": (lambda: InvConv1x1LU(4), (4, 4, 4), False),
    "invconv-vector": (lambda: InvConv1x1LU(6), (6,), False),
    "squeeze": (Squeeze, (2, 4, 4), False),
    "split": (split, (4, 4, 4), False),
    "sequential": (glow_like, (4, 4, 4), False),
    "sequential-empty": (Sequential, (2, 4, 4), False),
    "flatten": (lambda: Flatten((2, 4, 4)), (2, 4, 4), False),
    "logit": (lambda: Logit(alpha=0.05), (1, 4, 4), True),
    "affine-preprocess": (lambda: Affine(scale=1.7, shift=-0.3), (1, 4, 4), True),
    "maf-natural": (lambda: MaskedAffineAutoregressive(torch.arange(1, 7), hidden=8), (6,), False),
    "maf-permuted": (lambda: MaskedAffineAutoregressive(torch.randperm(6) + 1, hidden=8, depth=2),
                     (6,), False),
    "planar": (lambda: Planar(6), (6,), False),
    "vector-affine-0": (lambda: VectorAffineCoupling(6, 0, hidden=8), (6,), False),
    "vector-affine-1": (lambda: VectorAffineCoupling(5, 1, hidden=8), (5,), False),
    # exact trace (D <= exact_max_dim) and tight tolerances: the ODE solve is the map
    "cnf": (lambda: CNF(ODENet(3, hidden=8), rtol=1e-12, atol=1e-12), (3,), False),
}

# Layers whose generic checks live in their own test file, and why.
COVERED_ELSEWHERE: dict[type, str] = {
    BatchNormFlow: "tests/test_maf.py (batch statistics in training: train != eval by design)",
}


def make_input(name: str, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    _, shape, unit = CASES[name]
    g = torch.Generator().manual_seed(seed)
    if unit:
        return torch.rand(BATCH, *shape, generator=g, dtype=dtype) * 0.98 + 0.01
    return torch.randn(BATCH, *shape, generator=g, dtype=dtype)


def make_layer(name: str, dtype: torch.dtype = torch.float64, seed: int = 0) -> Flow:
    """The layer with ActNorm initialised and every parameter perturbed, in eval mode.

    Zero-initialised output layers make couplings the identity at first, which would let a
    wrong log-det pass; the noise makes every check non-trivial.
    """
    torch.manual_seed(seed)
    layer = CASES[name][0]().to(dtype)
    layer.train()
    layer(make_input(name, dtype, seed=seed + 100))  # data-dependent ActNorm init
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return layer.eval()


def jacobian(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``[B, D_out, B, D_in]`` Jacobian of a batched map, each example flattened."""
    jac = torch.autograd.functional.jacobian(lambda v: fn(v).reshape(v.shape[0], -1), x,
                                             vectorize=True)
    return jac.reshape(x.shape[0], -1, x.shape[0], x[0].numel())


def per_example_logabsdet(jac: torch.Tensor) -> torch.Tensor:
    """log|det| of each example's own block; the blocks between examples must be zero."""
    blocks = torch.stack([jac[i, :, i, :] for i in range(jac.shape[0])])
    cross = jac.clone()
    for i in range(jac.shape[0]):
        cross[i, :, i, :] = 0
    assert torch.count_nonzero(cross) == 0, "an example's output depends on another example"
    sign, logabsdet = torch.linalg.slogdet(blocks)
    assert torch.all(sign != 0), "singular Jacobian"
    return logabsdet


@pytest.mark.parametrize("name", CASES)
def test_output_shapes(name: str) -> None:
    layer, x = make_layer(name), make_input(name)
    z, logdet = layer(x)
    assert z.shape[0] == BATCH and z[0].numel() == x[0].numel()
    assert logdet.shape == (BATCH,)
    assert z.dtype == logdet.dtype == torch.float64
    assert layer.inverse(z).shape == x.shape


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-4), (torch.float64, 1e-10)])
@pytest.mark.parametrize("name", CASES)
def test_round_trip(name: str, dtype: torch.dtype, tol: float) -> None:
    layer, x = make_layer(name, dtype), make_input(name, dtype)
    with torch.no_grad():
        x_back = layer.inverse(layer(x)[0])
    assert (x_back - x).abs().max().item() <= tol


@pytest.mark.parametrize("name", CASES)
def test_logdet_matches_jacobian(name: str) -> None:
    layer, x = make_layer(name), make_input(name)
    expected = per_example_logabsdet(jacobian(lambda v: layer(v)[0], x))
    torch.testing.assert_close(layer(x)[1], expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", CASES)
def test_inverse_logdet_is_minus_forward(name: str) -> None:
    layer, x = make_layer(name), make_input(name)
    with torch.no_grad():
        z, logdet = layer(x)
    inverse_logdet = per_example_logabsdet(jacobian(layer.inverse, z))
    torch.testing.assert_close(inverse_logdet, -logdet, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", CASES)
def test_train_and_eval_agree_after_init(name: str) -> None:
    layer, x = make_layer(name), make_input(name, seed=1)
    z_eval, logdet_eval = layer(x)
    z_train, logdet_train = layer.train()(x)
    assert torch.equal(z_eval, z_train) and torch.equal(logdet_eval, logdet_train)


@pytest.mark.parametrize("name", CASES)
def test_save_load_rebuild(name: str) -> None:
    layer, x = make_layer(name, seed=0), make_input(name)
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    fresh = make_layer(name, seed=1)  # different weights, masks and permutations until loaded
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    z, logdet = layer(x)
    z_fresh, logdet_fresh = fresh(x)
    assert torch.equal(z, z_fresh) and torch.equal(logdet, logdet_fresh)
    assert torch.equal(layer.inverse(z), fresh.inverse(z))


def flow_classes() -> set[type]:
    """Every Flow subclass defined in inpaint_app.flows.* and inpaint_app.preprocess."""
    modules = [inpaint_app.preprocess] + [
        importlib.import_module(info.name)
        for info in pkgutil.iter_modules(inpaint_app.flows.__path__, "inpaint_app.flows.")]
    return {cls for module in modules for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, Flow) and cls is not Flow and cls.__module__ == module.__name__}


def test_harness_covers_every_layer() -> None:
    covered = {type(factory()) for factory, _, _ in CASES.values()} | set(COVERED_ELSEWHERE)
    classes = flow_classes()
    assert {AffineCoupling, ActNorm, Logit} <= classes  # the walk itself finds layers
    missing = sorted(cls.__qualname__ for cls in classes - covered)
    assert not missing, f"add these layers to CASES in tests/test_flows.py: {missing}"


# Structural tests: where the math promises structure, check it exactly.

def test_additive_coupling_is_volume_preserving_and_keeps_its_half() -> None:
    for parity in (0, 1):
        layer, x = make_layer(f"additive-{parity}"), make_input(f"additive-{parity}")
        z, logdet = layer(x)
        assert torch.equal(logdet, torch.zeros(BATCH, dtype=x.dtype))
        assert torch.equal(z[:, parity::2], x[:, parity::2])
        assert not torch.allclose(z[:, 1 - parity::2], x[:, 1 - parity::2])


@pytest.mark.parametrize(("channels", "parity", "kept"),
                         [(4, 0, slice(0, 2)), (4, 1, slice(2, 4)),
                          (3, 0, slice(0, 2)), (3, 1, slice(2, 3))])
def test_affine_channel_coupling_keeps_its_half(channels: int, parity: int, kept: slice) -> None:
    torch.manual_seed(0)
    layer = affine("channel", parity, blocks=1, channels=channels)().double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(BATCH, channels, 4, 4, dtype=torch.float64)
    z = layer(x)[0]
    changed = torch.ones(channels, dtype=torch.bool)
    changed[kept] = False
    assert torch.equal(z[:, kept], x[:, kept])
    assert not torch.allclose(z[:, changed], x[:, changed])


@pytest.mark.parametrize("parity", [0, 1])
def test_checkerboard_coupling_keeps_masked_pixels(parity: int) -> None:
    layer, x = make_layer(f"affine-checkerboard-{parity}"), make_input("affine-checkerboard-0")
    z = layer(x)[0]
    i, j = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    kept = (i + j) % 2 == parity
    assert torch.equal(z[..., kept], x[..., kept])
    assert not torch.allclose(z[..., ~kept], x[..., ~kept])


def test_actnorm_init_normalises_each_channel() -> None:
    x = 3.0 + 2.0 * torch.randn(16, 4, 4, 4, dtype=torch.float64) * torch.arange(1, 5).reshape(
        1, 4, 1, 1)
    layer = ActNorm(4).double().train()
    z = layer(x)[0]
    assert bool(layer.initialized)
    flat = z.transpose(0, 1).reshape(4, -1)
    torch.testing.assert_close(flat.mean(dim=1), torch.zeros(4, dtype=torch.float64),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(flat.std(dim=1), torch.ones(4, dtype=torch.float64),
                               atol=1e-5, rtol=0)


def test_actnorm_in_eval_mode_does_not_initialise() -> None:
    layer = ActNorm(4).eval()
    x = 5.0 + torch.randn(8, 4, 4, 4)
    z, logdet = layer(x)
    assert not bool(layer.initialized)
    assert torch.count_nonzero(layer.bias) == 0 and torch.count_nonzero(layer.log_scale) == 0
    assert torch.equal(z, x) and torch.equal(logdet, torch.zeros(8))


def test_actnorm_loaded_state_is_not_reinitialised(tmp_path: Path) -> None:
    trained = ActNorm(4).train()
    trained(torch.randn(8, 4, 4, 4))
    assert "initialized" in trained.state_dict()
    torch.save(trained.state_dict(), tmp_path / "actnorm.pt")

    loaded = ActNorm(4)
    loaded.load_state_dict(torch.load(tmp_path / "actnorm.pt", weights_only=True))
    loaded.train()
    loaded(100.0 + 50.0 * torch.randn(8, 4, 4, 4))  # very different data, training mode
    assert torch.equal(loaded.bias, trained.bias)
    assert torch.equal(loaded.log_scale, trained.log_scale)

    control = ActNorm(4).train()  # without the loaded flag the same data would re-initialise
    control(100.0 + 50.0 * torch.randn(8, 4, 4, 4))
    assert not torch.allclose(control.bias, trained.bias)


@pytest.mark.parametrize("mask", ["channel", "checkerboard"])
def test_sigmoid_coupling_cannot_blow_up(mask: str) -> None:
    """With a contracting scale and a bounded shift, |out| <= |in| + shift_bound per element,
    however extreme the input or the network's weights (unbounded shifts let one unusual
    validation image reach 29,505 bits/dim)."""
    torch.manual_seed(0)
    layer = AffineCoupling(4, mask=mask, hidden=8, blocks=1, shift_bound=5.0)
    with torch.no_grad():
        for param in layer.parameters():
            param.normal_(0.0, 10.0)
    x = torch.randn(16, 4, 4, 4) * 100
    z, logdet = layer(x)
    assert torch.isfinite(z).all() and (logdet <= 0).all()
    assert (z.abs() <= x.abs() + 5.0 + 1e-4).all()
    assert (layer.inverse(z) - x).abs().max() <= 1e-2 * x.abs().max()
