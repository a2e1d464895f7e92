"""Compiled scoring (``inpaint_app.compiled``): one graph without breaks or recompiles, numbers
within 1e-3 bits/dim of eager, an eager fallback that never raises, and the switches that turn
it off.

Most tests compile with a counting backend that runs dynamo's graph as is (a trace of the tiny
Glow, a few seconds); the inductor test, which builds C++ kernels, is marked slow."""

from __future__ import annotations

import copy
import logging
import shutil
import threading
from pathlib import Path

import pytest
import torch

from inpaint_app import compiled
from inpaint_app.app.registry import ModelCache
from inpaint_app.compiled import CompiledScorer, compile_enabled, prepare, scorer_for
from inpaint_app.density import bits_per_dim_from_log_prob
from inpaint_app.flows.glow import InvConv1x1LU
from inpaint_app.models import build_model, load_model, save_model

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module", autouse=True)
def _fresh_dynamo() -> None:
    torch._dynamo.reset()


@pytest.fixture(autouse=True)
def _switch_in_default_position(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(compiled.ENV_VAR, raising=False)


def _model(seed: int = 0) -> torch.nn.Module:
    """A tiny Glow as ``load_model`` returns one (eval, frozen), with non-trivial couplings."""
    torch.manual_seed(seed)
    model = build_model("glow", image_shape=SHAPE, steps=2)
    model.train()
    model.log_prob(torch.rand(8, *SHAPE) * 0.9 + 0.05)  # ActNorm init
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval().requires_grad_(False)


def _images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(seed))


class CountingBackend:
    """A dynamo backend that counts compiles and runs of its graphs (no C++ involved)."""

    def __init__(self) -> None:
        self.compiles = self.runs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list) -> object:
        self.compiles += 1

        def run(*args: object) -> object:
            self.runs += 1
            return gm.forward(*args)
        return run


def _eager(model: torch.nn.Module, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        return model.latent_and_log_prob(y)


def test_lu_precompute_leaves_eager_numbers_bit_identical() -> None:
    model = _model()
    untouched = copy.deepcopy(model)
    y = _images(5)
    z, log_prob = _eager(untouched, y)  # the cache filled lazily, as before
    prepare(model)
    layers = [m for m in model.modules() if isinstance(m, InvConv1x1LU)]
    assert layers and all(m._cache is not None and m._cache[0] == m._state_key() for m in layers)
    z2, log_prob2 = _eager(model, y)
    assert torch.equal(z, z2) and torch.equal(log_prob, log_prob2)
    with torch.enable_grad():  # the uncached path (W assembled per call; channels_last nets)
        plain = copy.deepcopy(model).requires_grad_(True)
        z3, log_prob3 = plain.latent_and_log_prob(y)
    assert torch.allclose(z, z3.detach(), atol=1e-5) and torch.allclose(log_prob, log_prob3)


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """A ``load_model`` model, its scorer warmed for batches of 32 (fullgraph: a graph break
    would fail the warm-up) and the counting backend, shared by the tests below."""
    path = tmp_path_factory.mktemp("compiled") / "model.pt"
    save_model(_model(), path)
    model, backend = load_model(path), CountingBackend()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scorer = CompiledScorer(model, backend=backend, enabled=True)
    assert not scorer.compiled and scorer.state == "cold"
    assert scorer.warm_up(32) and scorer.compiled and scorer.state == "compiled"
    assert backend.compiles == 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    return model, scorer, backend


def test_warm_scorer_serves_repeated_and_ragged_batches_without_recompiling(warm) -> None:
    model, scorer, backend = warm
    runs = backend.runs
    for n in (32, 32, 23, 40):  # the same size again and ragged last batches: one graph
        y = _images(n, seed=n)
        z, log_prob = scorer(y)
        want = _eager(model, y)
        assert torch.allclose(z, want[0], atol=1e-5) and torch.allclose(log_prob, want[1])
    assert backend.compiles == 1 and backend.runs == runs + 4
    z, log_prob = scorer(_images(3))  # below the warm graph's range: eager, not a compile
    assert backend.compiles == 1 and backend.runs == runs + 4
    assert torch.equal(log_prob, _eager(model, _images(3))[1])
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_compiled_results_behave_like_eager_ones_outside_inference_mode(warm) -> None:
    model, scorer, backend = warm
    runs = backend.runs
    with torch.no_grad():
        z, log_prob = scorer(_images(16))
    assert not z.is_inference() and not log_prob.is_inference()
    log_prob.add_(1.0)  # in-place use, as on an eager result
    with torch.inference_mode():
        assert scorer(_images(16))[1].is_inference()
    assert backend.runs == runs + 2


def test_scorer_refreshes_the_lu_cache_after_a_weight_change(warm) -> None:
    model, scorer, backend = warm
    runs = backend.runs
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, InvConv1x1LU):
                layer.log_s.add_(0.05)
    y = _images(16)
    assert torch.allclose(scorer(y)[1], _eager(model, y)[1])
    assert backend.runs == runs + 1 and backend.compiles == 1


@pytest.mark.slow
def test_inductor_bits_per_dim_within_1e3_of_eager() -> None:
    if not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
        pytest.skip("no C++ compiler: inductor cannot build CPU kernels")
    model = _model()
    scorer = CompiledScorer(model, enabled=True)
    assert scorer.warm_up(16), scorer.state
    for n in (16, 37):
        y = _images(n, seed=n)
        got, want = (bits_per_dim_from_log_prob(out[1], model.dim)
                     for out in (scorer(y), _eager(model, y)))
        assert (got - want).abs().max().item() < 1e-3


def test_a_failing_compiler_leaves_eager_scores_and_one_log_line(monkeypatch, caplog) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no compiler here\nsecond line")

    monkeypatch.setattr(torch, "compile", broken)
    model, y = _model(), _images(16)
    scorer = CompiledScorer(model, enabled=True, name="tiny")
    with caplog.at_level(logging.WARNING, logger="inpaint_app.compiled"):
        assert scorer.warm_up(16) is False
    assert scorer.state == "failed" and not scorer.compiled
    [record] = caplog.records
    assert "running eagerly" in record.getMessage() and "no compiler here" in record.getMessage()
    assert record.exc_info is None and "second line" not in record.getMessage()
    z, log_prob = scorer(y)
    want = model.latent_and_log_prob(y)  # the eager method, in the caller's grad mode
    assert torch.equal(z, want[0]) and torch.equal(log_prob, want[1])
    assert scorer.warm_up(16) is False  # a failed scorer does not retry


def test_a_graph_that_disagrees_with_eager_is_refused(caplog) -> None:
    def off_by_one(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        return lambda *args: [t + 1.0 for t in gm.forward(*args)]

    model, y = _model(), _images(16)
    scorer = CompiledScorer(model, backend=off_by_one, enabled=True)
    with caplog.at_level(logging.WARNING, logger="inpaint_app.compiled"):
        assert scorer.warm_up(16) is False
    assert "differ" in caplog.text
    with torch.inference_mode():
        assert torch.equal(scorer(y)[1], _eager(model, y)[1])


def test_a_training_model_is_not_compiled() -> None:
    model = _model().requires_grad_(True)
    scorer = CompiledScorer(model, backend=CountingBackend(), enabled=True)
    assert scorer.warm_up(16) is False and scorer.state == "failed"


def test_environment_variable_and_argument_turn_compiling_off(monkeypatch) -> None:
    assert compile_enabled() and compile_enabled(True) and not compile_enabled(False)
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("compiled"))
    model, y = _model(), _images(16)
    scorer = CompiledScorer(model, enabled=False)
    assert scorer.state == "off" and scorer.warm_up(16) is False
    assert scorer.start_warm_up(16) is None
    monkeypatch.setenv(compiled.ENV_VAR, "0")
    assert not compile_enabled() and not compile_enabled(True)
    scorer = CompiledScorer(model)
    assert scorer.state == "off" and scorer.warm_up(16) is False and not scorer.compiled
    with torch.inference_mode():
        assert torch.equal(scorer(y)[1], _eager(model, y)[1])
    assert compiled.warm_in_background({"tiny": model}) is None
    assert scorer_for(model) == model.latent_and_log_prob  # nothing registered


def test_scorer_for_gives_the_registered_scorer_else_the_eager_method() -> None:
    model = _model()
    assert scorer_for(model) == model.latent_and_log_prob
    scorer = compiled.register(model, enabled=False)
    try:
        assert scorer_for(model) is scorer and compiled.register(model) is scorer
    finally:
        compiled.unregister(model)
    assert scorer_for(model) == model.latent_and_log_prob


def test_warm_up_runs_in_a_background_thread_while_calls_stay_eager() -> None:
    model, y = _model(), _images(16)
    started, release = threading.Event(), threading.Event()
    backend = CountingBackend()

    def slow_backend(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        started.set()
        release.wait(30)
        return backend(gm, example_inputs)

    scorer = CompiledScorer(model, backend=slow_backend, enabled=True)
    thread = scorer.start_warm_up(16)
    assert thread is not None and thread.daemon and started.wait(30)
    assert not scorer.compiled and scorer.state == "warming"
    with torch.inference_mode():  # not waiting for the compile
        assert torch.equal(scorer(y)[1], _eager(model, y)[1])
    release.set()
    thread.join(60)
    assert scorer.compiled and backend.compiles == 1


def test_model_cache_warms_a_loaded_model_only_when_asked(tmp_path: Path, monkeypatch) -> None:
    save_model(_model(), tmp_path / "tiny" / "model.pt")
    calls: list[dict] = []
    monkeypatch.setattr("inpaint_app.app.registry.warm_in_background",
                        lambda models: calls.append(models) or threading.Thread())
    paths = {"tiny": tmp_path / "tiny" / "model.pt"}
    ModelCache(paths, "tiny").get("tiny")
    assert calls == []
    cache = ModelCache(paths, "tiny", compile=True)
    thread = cache.preload()
    thread.join(60)
    bundle = cache.get(None)
    assert cache.loads == 1 and "tiny" in cache.warming
    [models] = calls
    assert models == {"tiny": bundle.model, "tiny background": None, "tiny capture": None}
