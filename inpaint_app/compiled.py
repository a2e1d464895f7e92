"""Compiled scoring: ``torch.compile`` (inductor on CPU) of a frozen model's
``latent_and_log_prob``, with an eager fallback, warmed up off the request path.

    scorer = CompiledScorer(model)      # a frozen eval-mode DensityModel (``load_model``)
    scorer.start_warm_up(256)           # compiles in a daemon thread (seconds to a minute)
    z, log_prob = scorer(y)             # compiled once warm; eager before that

A call never compiles. It runs the warm graphs in dynamo's run-only mode, so an input that no
warm graph covers (a batch size, a grad mode) runs eagerly instead of stalling a request for a
compile. The warm-up marks the batch dimension dynamic: one graph serves every batch from 16
images up (torch 2.14 on CPU: the convolutions' shape guard splits batches at 16; a smaller
batch is eager unless ``warm_up`` was also called with one). Compiling is refused, with one log
line and eager results, where the compiler fails or is missing, the model trains, the graph
breaks (``fullgraph``) or the compiled bits/dim of the warm-up batch differ from eager ones by
more than ``MAX_BPD_GAP`` (on the model's own samples, the kind of images it scores near
the data's bits/dim).

``FLOWPAINT_COMPILE=0`` (or ``enabled=False``) turns compiling off. The default is on where it
is asked for: the app with ``--compile`` (``python -m inpaint_app serve --compile``; off by
default since issue 36.7) warms the models it loads in the background, since a request never
waits for it; scripts and library functions stay eager unless they build a scorer themselves.
``scorer_for(model)`` is the hook for scoring code: the model's registered (app-warmed) scorer,
else its eager ``latent_and_log_prob``.

Why scoring only (shipped MNIST Glow, two busy shared cores, docs/performance.md): scoring a
batch of 256 ran 2.1x faster for a compile of 54 s (13-17 s from a warm inductor cache);
sampling's inverse pass would save 50-70 ms a request (16-64 images) for a 31-54 s compile, the
inpainting gradient (forward and backward) 3-9% for 76 s. Since 2026-11-26 loaded models keep
their convolution weights channels_last, and eager scoring runs as fast as the compiled pass on
this CPU (docs/performance.md, "Channels-last weights at load").
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import torch

from .density import DensityModel, bits_per_dim_from_log_prob, dequantize

__all__ = ["ENV_VAR", "MAX_BPD_GAP", "CompiledScorer", "compile_enabled", "prepare",
           "register", "scorer_for", "unregister", "warm_in_background"]

ENV_VAR = "FLOWPAINT_COMPILE"
MAX_BPD_GAP = 1e-3  # compiled against eager bits/dim, per image, checked at warm-up
WARM_BATCH = 16  # the smallest batch the dynamic graph covers (see the module docstring)
# The app warms both ranges: 16 and up (a batch of uploads), and 2-15 (one to three uploads,
# whose verdict pass holds each image and its three quarter turns). The graphs share the
# method's dynamo cache: warming at 4 after 256 took a pass of 4 images from 16.8 to 8.7 ms and
# of 12 from 26.4 to 15.2 ms, and left 64 images at 56 ms (MNIST Glow, 2 threads, 2026-11-26).
APP_WARM_BATCHES = (WARM_BATCH, 4)
WARM_SEED = 0
WARM_TEMPERATURE = 0.7  # the check batch: the model's own samples (see ``_example``)
OFF = ("0", "false", "no", "off")

log = logging.getLogger(__name__)
Scorer = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def compile_enabled(enabled: bool | None = None) -> bool:
    """Whether to compile: False where ``enabled`` is False or ``FLOWPAINT_COMPILE`` is 0 /
    false / no / off; True otherwise (the variable can turn compiling off, never force it on
    against ``enabled=False``)."""
    if enabled is False:
        return False
    return os.environ.get(ENV_VAR, "1").strip().lower() not in OFF


def prepare(model: torch.nn.Module) -> None:
    """Fill, eagerly, the caches that compiled code reads without checking them (the LU 1x1
    convolution's W, W^-1 and sum log s): before compiling, and after any weight change.
    A no-op for layers whose cache is current."""
    for module in model.modules():
        precompute = getattr(module, "precompute", None)
        if callable(precompute):
            precompute()


class CompiledScorer:
    """``model.latent_and_log_prob`` of a frozen eval-mode model: compiled by ``warm_up``,
    eager until then, where no warm graph covers the input and after any failure. Thread-safe:
    one warm-up at a time; calls never wait for it and never change the model's weights.
    Results are the eager ones' up to float rounding (within ``MAX_BPD_GAP`` bits/dim, checked
    at warm-up); calls run under ``inference_mode`` and return inference tensors only to
    callers already in it."""

    def __init__(self, model: DensityModel, *, enabled: bool | None = None,
                 backend: str = "inductor", name: str | None = None) -> None:
        self.model, self.backend = model, backend
        self.name = name or str(model.config.get("family", "model"))
        self.enabled = compile_enabled(enabled)
        self.state = "cold" if self.enabled else "off"  # cold, warming, compiled, failed, off
        self.compile_seconds = 0.0
        self._run: Scorer | None = None
        self._lock = threading.Lock()

    @property
    def compiled(self) -> bool:
        """True once a warm-up compiled and checked the graph (calls may then run it)."""
        return self._run is not None

    def __call__(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        run = self._run
        if run is None or (torch.is_grad_enabled() and y.requires_grad):
            return self.model.latent_and_log_prob(y)  # eager, as the caller would have run it
        outer_inference = torch.is_inference_mode_enabled()
        with torch.inference_mode():
            try:
                prepare(self.model)  # current LU caches, should the weights have changed
                out = run(y if y.is_inference() else y.clone())  # one input kind: one graph
            except Exception as err:  # noqa: BLE001 - any failure: eager from now on
                self._fail("running", err)
                out = None
        if out is None:
            return self.model.latent_and_log_prob(y)
        return out if outer_inference else (out[0].clone(), out[1].clone())

    def warm_up(self, batch_size: int = WARM_BATCH) -> bool:
        """Compile for batches of ``batch_size`` (the batch dimension dynamic, so one graph
        covers a range of sizes), check the result against eager, and switch calls to it.
        True when compiled; False, with one log line, where compiling is off or failed."""
        if not self.enabled:
            return False
        with self._lock:
            if self.state == "failed":
                return False
            self.state = "warming"
            start = time.perf_counter()
            try:
                self._check_model()
                prepare(self.model)
                compiled = torch.compile(self.model.latent_and_log_prob, backend=self.backend,
                                         fullgraph=True)
                y = self._example(batch_size)
                with torch.inference_mode():
                    y = y.clone()
                    if batch_size > 1:
                        torch._dynamo.mark_dynamic(y, 0)
                    got = compiled(y)
                    want = self.model.latent_and_log_prob(y)
                self._compare(got, want)
                run = torch._dynamo.run(compiled)
            except Exception as err:  # noqa: BLE001 - compiler missing, graph break, mismatch
                self._fail("compiling", err)
                return False
            self.compile_seconds += time.perf_counter() - start
            self._run, self.state = run, "compiled"
            log.info("compiled scoring of %s for batches of %d in %.1f s", self.name,
                     batch_size, time.perf_counter() - start)
            return True

    def start_warm_up(self, batch_size: int = WARM_BATCH) -> threading.Thread | None:
        """``warm_up`` in a daemon thread (None where compiling is off)."""
        if not self.enabled:
            return None
        thread = threading.Thread(target=self.warm_up, args=(batch_size,), daemon=True,
                                  name=f"flowpaint-compile-{self.name}")
        thread.start()
        return thread

    def _check_model(self) -> None:
        if self.model.training or any(p.requires_grad for p in self.model.parameters()):
            raise ValueError("the model trains (compile a frozen eval-mode model, as "
                             "load_model returns)")

    def _example(self, batch_size: int) -> torch.Tensor:
        """Images as scoring sees them, of the kind the model knows: its own samples at
        ``WARM_TEMPERATURE``, quantized and dequantized with the fixed pattern. (On uniform
        noise, bits/dim far above the data's, compiled and eager numbers part by more.)"""
        generator = torch.Generator().manual_seed(WARM_SEED)
        with torch.inference_mode(False), torch.no_grad():
            y = self.model.sample(batch_size, WARM_TEMPERATURE, generator=generator)
        x = (y * 256.0).floor().clamp(0, 255).to(torch.uint8)
        return dequantize(x, noise="fixed", seed=WARM_SEED)

    def _compare(self, got: tuple[torch.Tensor, torch.Tensor],
                 want: tuple[torch.Tensor, torch.Tensor]) -> None:
        bpd = [bits_per_dim_from_log_prob(out[1], self.model.dim) for out in (got, want)]
        finite = torch.isfinite(bpd[1])
        if not torch.equal(torch.isfinite(bpd[0]), finite):
            raise ValueError("compiled bits/dim are not finite where eager ones are")
        gap = (bpd[0] - bpd[1])[finite].abs().max().item() if finite.any() else 0.0
        if gap > MAX_BPD_GAP:
            raise ValueError(f"compiled bits/dim differ from eager by {gap:.2g}")
        if not torch.allclose(got[0], want[0], rtol=1e-3, atol=1e-3, equal_nan=True):
            raise ValueError("compiled latent differs from eager")

    def _fail(self, doing: str, err: Exception) -> None:
        self._run, self.state = None, "failed"
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        log.warning("%s scoring of %s failed, running eagerly (%s: %s)", doing, self.name,
                    type(err).__name__, reason)


# ---- the process-wide registry the app fills ------------------------------------------------

_SCORERS: dict[DensityModel, CompiledScorer] = {}  # by identity; registered models stay
_REGISTRY_LOCK = threading.Lock()


def register(model: DensityModel, *, enabled: bool | None = None, name: str | None = None
             ) -> CompiledScorer:
    """The model's shared scorer, made on first call (not warmed: see ``warm_up``). The
    registry keeps the model alive, as the app's model cache does, until ``unregister``."""
    with _REGISTRY_LOCK:
        scorer = _SCORERS.get(model)
        if scorer is None:
            scorer = _SCORERS[model] = CompiledScorer(model, enabled=enabled, name=name)
        return scorer


def unregister(model: DensityModel) -> None:
    """Forget the model's scorer: ``scorer_for`` gives the eager method again."""
    with _REGISTRY_LOCK:
        _SCORERS.pop(model, None)


def scorer_for(model: DensityModel) -> Scorer:
    """What scoring code calls instead of ``model.latent_and_log_prob``: the model's registered
    scorer (compiled once the app's warm-up is done, eager before), else the eager method."""
    with _REGISTRY_LOCK:
        scorer = _SCORERS.get(model)
    return scorer if scorer is not None else model.latent_and_log_prob


def warm_in_background(models: dict[str, DensityModel | None], *,
                       batch_sizes: tuple[int, ...] = APP_WARM_BATCHES,
                       enabled: bool | None = None) -> threading.Thread | None:
    """Register a scorer for each model and warm them, one after another and at each of
    ``batch_sizes``, in a daemon thread; None (and nothing registered) where compiling is off."""
    if not compile_enabled(enabled):
        return None
    scorers = [register(model, name=name) for name, model in models.items() if model is not None]

    def warm() -> None:
        for scorer in scorers:
            for batch_size in batch_sizes:
                if not scorer.warm_up(batch_size):
                    break

    thread = threading.Thread(target=warm, daemon=True, name="flowpaint-compile")
    thread.start()
    return thread
