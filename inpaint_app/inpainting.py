"""Inpainting by ascent on a model's exact log-likelihood, with observed pixels clamped.

All methods climb (or sample) ``DensityModel.log_prob(y)``: the density of pixels y in [0, 1]^D
that training and evaluation use (preprocessing Jacobian included), over the missing pixels only.

- ``nice``: NICE sec. 5.2, y_H <- clip(y_H + a_i (d log p / d y_H + eps), 0, 1), eps ~ N(0, I),
  a_i = 10 / (100 + i), from a mean fill.
- ``default``: with a conditional inpainting flow beside the checkpoint
  (``inpaint_app.conditional``, ``inpainter.pt``), K completions sampled in one pass from
  p(x_missing | x_observed) at a temperature validated per mask kind (compact holes or
  scattered pixels, ``masks.mask_kind``); the fill is their mean, or the
  conditional mode reached by Adam ascent on that exact conditional log-likelihood from the mean,
  as the model's card says validated better. Without one it falls back, and says so, to the
  exemplar start plus a few projected Adam steps on the unconditional log p.
- ``exemplar``: the exemplar start alone (mean of the nearest training images on the observed
  pixels; ``inpaint_app.exemplars``), so that the flow's share of the default is visible.
- ``langevin``: unadjusted Langevin chains from the biharmonic start; returns every chain's
  completion, their posterior mean and the per-pixel standard deviation.

Noise comes from one generator per image seeded ``seed + index``, so ``inpaint_batch`` draws the
same noise as ``inpaint`` on each image alone.
References: Dinh et al., NICE (arXiv:1410.8516), sec. 5.2; Roberts, Tweedie, Exponential
convergence of Langevin distributions (1996).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from .bundle import ModelBundle, as_bundle
from .card import ModelCard
from .conditional import ConditionalInpainter
from .density import DensityModel, bits_per_dim_from_log_prob, dequantize
from .exemplars import ExemplarBank
from .fills import FILLS, biharmonic_fill, mean_fill, noise_fill
from .masks import MASK_KINDS, MASK_PRESETS, make_mask, mask_kind

__all__ = ["METHODS", "MASK_PRESETS", "InpaintResult", "inpaint", "inpaint_batch", "make_mask"]

METHODS = ("default", "exemplar", "nice", "langevin")
DEFAULT_STEPS = {"default": 10, "exemplar": 0, "nice": 100, "langevin": 40}
DEFAULT_INIT = {"default": "exemplar", "exemplar": "exemplar", "nice": "mean",
                "langevin": "biharmonic"}
INITS = (*FILLS, "exemplar")
ADAM_LR = 0.01            # pixel units; larger steps overshoot the very peaked density
# The conditional flow's density is sharper still: at 0.01 the first step costs 3-4 bits per
# missing dim; at 3e-4 the ascent climbs at every step (docs/inpainting.md).
CONDITIONAL_ADAM_LR = 3e-4
LANGEVIN_STEP = (1e-4, 1e-5)  # step size annealed geometrically from first to last

Progress = Callable[[int, int], None] | None


@dataclass
class InpaintResult:
    """One completed image, its samples, and how the likelihood moved on the way."""

    image: torch.Tensor
    samples: torch.Tensor
    uncertainty: torch.Tensor | None
    bpd_trajectory: list[float]
    bpd_before: float
    bpd_after: float
    method: str
    steps: int
    seconds: float
    message: str = ""
    trajectory_label: str = "bits/dim of the image (unconditional model)"


def inpaint(model: ModelBundle | DensityModel, image: torch.Tensor, mask: torch.Tensor, *,
            method: str = "default", steps: int | None = None, seed: int = 0,
            n_samples: int | None = None, temperature: float | None = None,
            init: str | torch.Tensor | None = None, progress: Progress = None
            ) -> InpaintResult:
    """Fill the pixels of ``image`` (uint8 ``[C, H, W]``) where ``mask`` (bool ``[H, W]`` or
    ``[C, H, W]``, True = missing) is set; observed pixels come back bit-identical.

    ``model`` is a bundle (``inpaint_app.bundle``: its conditional flow and exemplar bank serve
    the default) or a bare ``DensityModel``. ``init`` is a fill name (``exemplar``,
    ``biharmonic``, ``mean``, ``noise``) or a start image ``[C, H, W]`` (uint8, or float in
    [0, 1]); ``exemplar`` needs the bundle's exemplar bank and falls back to ``biharmonic``
    when it is the method's default and there is none.
    ``progress(done, total)`` is called once per step. ``n_samples`` and ``temperature``
    default to the method's (the conditional model's card for ``default``).
    """
    init_batch = None if init is None or isinstance(init, str) else init[None]
    return inpaint_batch(model, image[None], mask[None], method=method, steps=steps, seed=seed,
                         n_samples=n_samples, temperature=temperature,
                         init=init if init_batch is None else init_batch, progress=progress)[0]


def inpaint_batch(model: ModelBundle | DensityModel, images: torch.Tensor, masks: torch.Tensor, *,
                  method: str = "default", steps: int | None = None, seed: int = 0,
                  n_samples: int | None = None, temperature: float | None = None,
                  init: str | torch.Tensor | None = None, progress: Progress = None
                  ) -> list[InpaintResult]:
    """``inpaint`` for uint8 ``[B, C, H, W]`` images and ``[B, H, W]`` or ``[B, C, H, W]`` masks
    in one batched optimisation; image i uses noise seeded ``seed + i``. ``seconds`` is the
    batch's time divided by B."""
    start = time.perf_counter()
    bundle = as_bundle(model)
    model = bundle.model
    images, masks = _check_inputs(model, images, masks)
    if method == "default" and bundle.inpainter is not None:
        return _conditional_results(model, bundle.inpainter, bundle.inpainter_card, images,
                                    masks, steps, seed, n_samples, temperature, init, progress,
                                    start)
    if temperature is not None:
        raise ValueError(f"temperature applies to the conditional default method only, not "
                         f"to {method!r}" + ("" if method != "default" else
                                             " without a conditional model"))
    steps, n_samples, init = _check_options(method, steps, 1 if n_samples is None else n_samples,
                                            init, images.shape,
                                            has_bank=bundle.exemplars is not None)
    device = next(model.parameters()).device
    images, masks = images.to(device), masks.to(device)
    generators = [torch.Generator().manual_seed(seed + i) for i in range(images.shape[0])]
    with _eval_mode(model):
        y_obs = dequantize(images, noise="centre")
        y0 = _start(y_obs, masks, init, generators, bundle.exemplars)
        run = {"default": _ascend_adam, "exemplar": _ascend_adam, "nice": _ascend_nice,
               "langevin": _langevin}[method]
        samples, trajectories = run(model, y0, y_obs, masks, steps, generators, n_samples,
                                    progress)
        results = _results(model, images, masks, y0, samples, trajectories, method, steps,
                           (time.perf_counter() - start) / images.shape[0])
    if method == "default":
        for result in results:
            result.message = "; ".join(filter(None, [result.message, NO_CONDITIONAL]))
    return results


# ---- validation -------------------------------------------------------------------------------

def _check_inputs(model: DensityModel, images: torch.Tensor, masks: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"image must be a tensor [C, H, W] (batch: [B, C, H, W]), got "
                         f"{_shape(images)}")
    if tuple(images.shape[1:]) != tuple(model.image_shape):
        raise ValueError(f"image shape {tuple(images.shape[1:])} does not match the model's "
                         f"{tuple(model.image_shape)}: convert it with images.to_model_input")
    if images.dtype != torch.uint8:
        images = _float_to_uint8(images)
    if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor (True = missing), got "
                         f"{getattr(masks, 'dtype', type(masks).__name__)}")
    c, h, w = images.shape[1:]
    if masks.dim() == 3:
        masks = masks[:, None]
    if masks.dim() != 4 or masks.shape[0] != images.shape[0] or tuple(masks.shape[2:]) != (h, w):
        raise ValueError(f"mask shape {tuple(masks.shape)} does not fit images of shape "
                         f"{tuple(images.shape)}: a mask must be [H, W] or [C, H, W] = "
                         f"{(h, w)} or {(c, h, w)}")
    if masks.shape[1] not in (1, c):
        raise ValueError(f"mask has {masks.shape[1]} channels; the image has {c}")
    return images, masks.expand(-1, c, -1, -1).contiguous()


def _float_to_uint8(images: torch.Tensor) -> torch.Tensor:
    if not images.is_floating_point():
        raise ValueError(f"image must be uint8 (or float in [0, 1]), got {images.dtype}")
    if not torch.isfinite(images).all():
        raise ValueError("image has NaN or Inf values")
    if images.min() < 0 or images.max() > 1:
        raise ValueError("a float image must lie in [0, 1]; pass uint8 for 0..255 values")
    return (images * 255.0 + 0.5).floor().to(torch.uint8)


def _check_options(method: str, steps: int | None, n_samples: int, init: object,
                   shape: torch.Size, has_bank: bool) -> tuple[int, int, str | torch.Tensor]:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {METHODS}")
    steps = DEFAULT_STEPS[method] if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= 100_000:
        raise ValueError(f"steps must be an int in [0, 100000], got {steps!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or not 1 <= n_samples <= 256:
        raise ValueError(f"n_samples must be an int in [1, 256], got {n_samples!r}")
    if init is None:
        init = DEFAULT_INIT[method]
        init = "biharmonic" if init == "exemplar" and not has_bank else init
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}: choose one of {INITS} or pass an image")
        if init == "exemplar" and not has_bank:
            raise ValueError("init 'exemplar' needs an exemplar bank beside the checkpoint "
                             "(python -m pipelines.exemplars); choose another init")
        return steps, n_samples, init
    if not isinstance(init, torch.Tensor) or tuple(init.shape) != tuple(shape):
        raise ValueError(f"init image must have the image's shape {tuple(shape[1:])}, got "
                         f"{_shape(init)}")
    if init.dtype == torch.uint8:
        return steps, n_samples, dequantize(init, noise="centre")
    if not init.is_floating_point() or not torch.isfinite(init).all():
        raise ValueError("init image must be uint8 or finite float in [0, 1]")
    return steps, n_samples, init.float().clamp(0.0, 1.0)


def _shape(value: object) -> str:
    shape = getattr(value, "shape", None)
    return str(tuple(shape)) if shape is not None else type(value).__name__


# ---- the methods ------------------------------------------------------------------------------

def _start(y_obs: torch.Tensor, masks: torch.Tensor, init: str | torch.Tensor,
           generators: list[torch.Generator], bank: ExemplarBank | None) -> torch.Tensor:
    if isinstance(init, torch.Tensor):
        return torch.where(masks, init.to(y_obs), y_obs)
    if init == "exemplar":
        return bank.fill(y_obs, masks)
    if init == "biharmonic":
        return biharmonic_fill(y_obs, masks)
    if init == "mean":
        return mean_fill(y_obs, masks)
    return noise_fill(y_obs, masks, generators)


def _log_prob_and_grad(log_prob_fn: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(y) per image and its gradient with respect to the pixels (not the weights)."""
    y = y.detach().requires_grad_(True)
    with torch.enable_grad():
        log_prob = log_prob_fn(y)
        safe = torch.nan_to_num(log_prob, nan=0.0, posinf=0.0, neginf=0.0)
        (grad,) = torch.autograd.grad(safe.sum(), y)
    return log_prob.detach(), torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)


def _bpd(model: DensityModel, log_prob: torch.Tensor) -> list[float]:
    return bits_per_dim_from_log_prob(log_prob, model.dim).tolist()


def _noise(generators: list[torch.Generator], shape: tuple[int, ...], like: torch.Tensor
           ) -> torch.Tensor:
    """Standard normal noise ``[B, *shape]``, image i from generator i (batch-size independent)."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(like)


def _ascend_adam(model, y0, y_obs, masks, steps, generators, n_samples, progress):
    """Projected Adam on log p over the missing pixels; keeps each image's best iterate."""
    best, trajectories = _climb(model.log_prob, lambda lp: _bpd(model, lp), y0, y_obs, masks,
                                steps, progress)
    return best[None], trajectories


def _climb(log_prob_fn: Callable[[torch.Tensor], torch.Tensor],
           bpd_fn: Callable[[torch.Tensor], list[float]], y0: torch.Tensor, y_obs: torch.Tensor,
           masks: torch.Tensor, steps: int, progress: Progress, lr: float = ADAM_LR
           ) -> tuple[torch.Tensor, list[list[float]]]:
    """Projected Adam ascent of ``log_prob_fn`` over the missing pixels from ``y0``; returns
    each image's best iterate by that log-likelihood and its bits/dim at every step."""
    y = y0.clone()
    best, best_lp = y0.clone(), torch.full((y.shape[0],), -math.inf, device=y.device)
    # Adam is elementwise, so one optimizer over the batch never lets image i move image j.
    optimizer = torch.optim.Adam([y], lr=lr, maximize=True)
    trajectories: list[list[float]] = [[] for _ in range(y.shape[0])]
    for i in range(steps + 1):
        log_prob, grad = _log_prob_and_grad(log_prob_fn, y)
        _record(trajectories, bpd_fn(log_prob))
        better = torch.isfinite(log_prob) & (log_prob > best_lp)
        best = torch.where(better[:, None, None, None], y, best)
        best_lp = torch.where(better, log_prob, best_lp)
        if i == steps:
            break
        y.grad = grad
        optimizer.step()
        y.copy_(torch.where(masks, y.clamp(0.0, 1.0), y_obs))  # the projection
        _report(progress, i + 1, steps)
    return best, trajectories


def _ascend_nice(model, y0, y_obs, masks, steps, generators, n_samples, progress):
    """NICE's projected stochastic gradient ascent, a_i = 10 / (100 + i)."""
    y = y0.clone()
    trajectories: list[list[float]] = [[] for _ in range(y.shape[0])]
    for i in range(steps + 1):
        log_prob, grad = _log_prob_and_grad(model.log_prob, y)
        _record(trajectories, _bpd(model, log_prob))
        if i == steps:
            break
        step = 10.0 / (100.0 + i)
        eps = _noise(generators, tuple(y.shape[1:]), y)
        y = torch.where(masks, (y + step * (grad + eps)).clamp(0.0, 1.0), y_obs)
        _report(progress, i + 1, steps)
    return y[None], trajectories


def _langevin(model, y0, y_obs, masks, steps, generators, n_samples, progress):
    """n_samples unadjusted Langevin chains per image, y <- clip(y + e grad + sqrt(2e) xi);
    returns the final state of every chain ``[n, B, C, H, W]``."""
    b = y0.shape[0]
    y = y0.repeat(n_samples, 1, 1, 1)
    obs, hole = y_obs.repeat(n_samples, 1, 1, 1), masks.repeat(n_samples, 1, 1, 1)
    trajectories: list[list[float]] = [[] for _ in range(b)]
    first, last = LANGEVIN_STEP
    for i in range(steps + 1):
        log_prob, grad = _log_prob_and_grad(model.log_prob, y)
        _record(trajectories, _bpd(model, log_prob.reshape(n_samples, b).mean(0)))
        if i == steps:
            break
        eps = first * (last / first) ** (i / max(steps - 1, 1))
        xi = _noise(generators, (n_samples, *y.shape[1:]), y).transpose(0, 1).reshape(y.shape)
        y = torch.where(hole, (y + eps * grad + math.sqrt(2 * eps) * xi).clamp(0.0, 1.0), obs)
        _report(progress, i + 1, steps)
    return y.reshape(n_samples, b, *y.shape[1:]), trajectories


def _record(trajectories: list[list[float]], values: list[float]) -> None:
    for trajectory, value in zip(trajectories, values, strict=True):
        trajectory.append(value)


def _report(progress: Progress, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


# ---- results ----------------------------------------------------------------------------------

def _to_uint8(y: torch.Tensor, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Quantize a fill to the nearest bin and put the observed pixels back, bit for bit."""
    filled = (torch.nan_to_num(y, nan=0.5) * 256.0).floor().clamp(0, 255).to(torch.uint8)
    return torch.where(masks, filled, images)


def discrete_bits_per_dim(model: DensityModel, images: torch.Tensor) -> torch.Tensor:
    """Bits/dim of uint8 images ``[B, C, H, W]``, dequantized with the fixed seed-0 pattern, so
    a number never depends on the batch it was computed in."""
    with torch.no_grad():
        return model.bits_per_dim(dequantize(images, noise="fixed"))


def _results(model, images, masks, y0, samples, trajectories, method, steps, seconds
             ) -> list[InpaintResult]:
    n = samples.shape[0]
    filled = torch.stack([_to_uint8(s, images, masks) for s in samples])     # [n, B, C, H, W]
    if n > 1:
        shown = _to_uint8(samples.mean(0), images, masks)
        spread = samples.std(0, unbiased=False).amax(dim=1)                  # [B, H, W]
    else:
        shown, spread = filled[0], None
    before = discrete_bits_per_dim(model, _to_uint8(y0, images, masks)).tolist()
    after = discrete_bits_per_dim(model, shown).tolist()
    label = ("bits/dim of the chains' images, their mean (unconditional model)"
             if method == "langevin" else InpaintResult.trajectory_label)
    results = []
    for i in range(images.shape[0]):
        empty = not bool(masks[i].any())
        message = ("mask is empty: image returned unchanged" if empty
                   else "mask covers the whole image: unconditional mode search"
                   if bool(masks[i].all()) else "")
        uncertainty = None if spread is None and method != "langevin" else (
            spread[i].cpu() if spread is not None else torch.zeros(masks.shape[2:]))
        results.append(InpaintResult(
            image=shown[i].cpu(), samples=filled[:, i].cpu(), uncertainty=uncertainty,
            bpd_trajectory=trajectories[i], bpd_before=before[i], bpd_after=after[i],
            method=method, steps=0 if empty else steps, seconds=seconds, message=message,
            trajectory_label=label))
    return results


# ---- the conditional default -------------------------------------------------------------------

NO_CONDITIONAL = ("no conditional inpainting model beside this checkpoint: exemplar start plus "
                  "ascent on the unconditional likelihood")
# Used where the conditional model's card has no validated "inpainting" settings.
CONDITIONAL_DEFAULTS = {"samples": 8, "temperature": 0.8, "ascent_steps": 0}


def conditional_settings(card: ModelCard) -> dict:
    """K, ascent steps and the sampling temperature per mask kind (``masks.mask_kind``) of the
    default method: the conditional model's card's validated choice. A card with one
    ``temperature`` uses it for every kind; one without a "sparse" entry uses its "scattered"
    one there."""
    settings = {**CONDITIONAL_DEFAULTS, **(card.inpainting or {})}
    by_kind = dict(settings.get("temperature_by_mask") or {})
    if "scattered" in by_kind:
        by_kind.setdefault("sparse", by_kind["scattered"])
    settings["temperature_by_mask"] = {kind: float(by_kind.get(kind, settings["temperature"]))
                                       for kind in MASK_KINDS}
    return settings


def describe_temperatures(by_kind: dict[str, float]) -> str:
    """"temperature 0.6" or "temperature 0.6 (compact masks) / 0.45 (scattered masks)"."""
    values = set(by_kind.values())
    if len(values) == 1:
        return f"temperature {values.pop():g}"
    return "temperature " + " / ".join(f"{t:g} ({kind} masks)" for kind, t in by_kind.items())


def _conditional_results(model: DensityModel, inpainter: ConditionalInpainter,
                         card: ModelCard, images: torch.Tensor, masks: torch.Tensor,
                         steps: int | None, seed: int, n_samples: int | None,
                         temperature: float | None, init: object, progress: Progress, start: float
                         ) -> list[InpaintResult]:
    """K completions from p(x_missing | x_observed); the fill is their mean, climbed for
    ``steps`` Adam steps on that exact conditional log-likelihood (0: the mean itself)."""
    if init is not None:
        raise ValueError("init does not apply to the conditional default method (it samples "
                         "its start); use method 'exemplar', 'nice' or 'langevin' for a start")
    settings = conditional_settings(card)
    steps, n_samples, _ = _check_options("default", settings["ascent_steps"] if steps is None
                                         else steps, settings["samples"] if n_samples is None
                                         else n_samples, "mean", images.shape, has_bank=False)
    if temperature is not None and (
            isinstance(temperature, bool) or not isinstance(temperature, (int, float))
            or not 0.0 <= temperature <= 2.0):
        raise ValueError(f"temperature must be a number in [0, 2], got {temperature!r}")
    kinds = mask_kind(masks.any(dim=1))  # one kind per image, whatever its channels
    temperatures = [float(temperature) if temperature is not None
                    else settings["temperature_by_mask"][kind] for kind in kinds]
    device = next(inpainter.parameters()).device
    images, masks = images.to(device), masks.to(device)
    batch = images.shape[0]
    with _eval_mode(inpainter):
        y_obs = dequantize(images, noise="centre")
        noise = torch.stack([torch.randn((n_samples, *inpainter.latent_shape),
                                         generator=torch.Generator().manual_seed(seed + i))
                             for i in range(batch)]).to(device)
        missing = masks.float()
        with torch.no_grad():  # the observation is fixed: only the missing pixels move
            context = inpainter.context(y_obs, missing)
        samples = inpainter.complete(y_obs, masks, n_samples, torch.tensor(temperatures),
                                     noise=noise, context=context)
        dims = missing.flatten(1).sum(dim=1).clamp(min=1)
        fill, trajectories = _climb(
            lambda y: inpainter.conditional_log_prob(y, context),
            lambda lp: bits_per_dim_from_log_prob(lp, dims).tolist(),
            samples.mean(dim=1), y_obs, masks, steps, progress, lr=CONDITIONAL_ADAM_LR)
    shown = _to_uint8(fill, images, masks)
    start_fill = _to_uint8(samples.mean(dim=1), images, masks)
    completions = torch.stack([_to_uint8(samples[:, k], images, masks)
                               for k in range(n_samples)], dim=1)       # [B, K, C, H, W]
    spread = samples.std(dim=1, unbiased=False).amax(dim=1) if n_samples > 1 else None
    with _eval_mode(model):
        before = discrete_bits_per_dim(model, start_fill).tolist()
        after = discrete_bits_per_dim(model, shown).tolist() if steps else before
    seconds = (time.perf_counter() - start) / batch
    results = []
    for i in range(batch):
        empty = not bool(masks[i].any())
        results.append(InpaintResult(
            image=shown[i].cpu(), samples=completions[i].cpu(),
            uncertainty=None if spread is None else spread[i].cpu(),
            bpd_trajectory=trajectories[i], bpd_before=before[i],
            bpd_after=after[i], method="default", steps=0 if empty else steps, seconds=seconds,
            message=("mask is empty: image returned unchanged" if empty else
                     f"conditional flow: {n_samples} samples at temperature "
                     f"{temperatures[i]:g}" + ("" if temperature is not None else
                                               f" ({kinds[i]} mask)") + ", "
                     + (f"mean climbed {steps} steps" if steps else "fill = their mean")),
            trajectory_label="bits per missing dim (conditional model)"))
    return results


# ---- context helpers --------------------------------------------------------------------------

@contextlib.contextmanager
def _eval_mode(model: DensityModel) -> Iterator[None]:
    """Eval mode (no ActNorm re-initialisation, deterministic layers) and frozen weights, both
    restored afterwards. The ascent needs gradients for the pixels only: with the weights frozen
    autograd records nothing for them, and cached layers (the LU 1x1 convolution) apply. A model
    from ``load_model`` is already both, and is left untouched: concurrent requests share it."""
    was_training = model.training
    trainable = [p for p in model.parameters() if p.requires_grad]
    if was_training:
        model.eval()
    for param in trainable:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param in trainable:
            param.requires_grad_(True)
        if was_training:
            model.train()
