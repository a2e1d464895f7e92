"""Inpainting with a model's exact log-likelihood, observed pixels clamped: the methods of
``inpaint_app.methods``, each of which samples or climbs one model's density over the missing
pixels only (``DensityModel.log_prob(y)`` of pixels y in [0, 1]^D, the density training and
evaluation use, or the conditional flow's p(x_missing | x_observed)).

- ``conditional``: with a conditional inpainting flow beside the checkpoint
  (``inpaint_app.conditional``, ``inpainter.pt``), K completions sampled in one pass at a
  temperature validated per mask kind (compact holes or scattered pixels, ``masks.mask_kind``);
  the fill is their mean, or the conditional mode reached by Adam ascent on that exact
  conditional log-likelihood from the mean, as the model's card says validated better.
- ``ascent``: the exemplar start plus projected Adam steps on the unconditional log p (NICE
  sec. 5.2's ascent, with Adam and no noise).
- ``exemplar``: the exemplar start alone (mean of the nearest training images on the observed
  pixels; ``inpaint_app.exemplars``), so that the flow's share is visible.
- ``nice``: NICE sec. 5.2 as published, noisy projected gradient ascent from a mean fill.
- ``langevin``: unadjusted Langevin chains from the biharmonic start; returns every chain's
  completion, their posterior mean and the per-pixel standard deviation.
- ``default``: ``conditional`` where the bundle has a conditional flow, else ``ascent`` (the
  result's message says so).

Noise comes from one generator per image seeded ``seed + index``, so ``inpaint_batch`` draws the
same noise as ``inpaint`` on each image alone.
References: Dinh et al., NICE (arXiv:1410.8516), sec. 5.2; Roberts, Tweedie, Exponential
convergence of Langevin distributions (1996).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .algorithms import Progress
from .bundle import ModelBundle, as_bundle
from .card import ModelCard
from .conditional import ConditionalInpainter
from .density import DensityModel, dequantize
from .exemplars import ExemplarBank
from .fills import FILLS, biharmonic_fill, mean_fill, noise_fill
from .masks import MASK_PRESETS, make_mask, mask_kind
from .methods import (
    CHOICES,
    DEFAULT,
    METHODS,
    NO_CONDITIONAL,
    conditional_settings,
    resolve,
)

__all__ = ["CHOICES", "METHODS", "MASK_PRESETS", "InpaintResult", "inpaint", "inpaint_batch",
           "make_mask"]

INITS = (*FILLS, "exemplar")


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
            method: str = DEFAULT, steps: int | None = None, seed: int = 0,
            n_samples: int | None = None, temperature: float | None = None,
            init: str | torch.Tensor | None = None, progress: Progress = None
            ) -> InpaintResult:
    """Fill the pixels of ``image`` (uint8 ``[C, H, W]``) where ``mask`` (bool ``[H, W]`` or
    ``[C, H, W]``, True = missing) is set; observed pixels come back bit-identical.

    ``model`` is a bundle (``inpaint_app.bundle``: its conditional flow and exemplar bank serve
    the default) or a bare ``DensityModel``. ``method``: a name of ``methods.CHOICES``; the
    result's ``method`` is the one that ran (``default`` resolved). ``init`` is a fill name
    (``exemplar``, ``biharmonic``, ``mean``, ``noise``) or a start image ``[C, H, W]`` (uint8,
    or float in [0, 1]); ``exemplar`` needs the bundle's exemplar bank and falls back to
    ``biharmonic`` when it is the method's default and there is none.
    ``progress(done, total)`` is called once per step. ``n_samples`` and ``temperature``
    default to the method's (the conditional model's card for ``conditional``).
    """
    init_batch = None if init is None or isinstance(init, str) else init[None]
    return inpaint_batch(model, image[None], mask[None], method=method, steps=steps, seed=seed,
                         n_samples=n_samples, temperature=temperature,
                         init=init if init_batch is None else init_batch, progress=progress)[0]


def inpaint_batch(model: ModelBundle | DensityModel, images: torch.Tensor, masks: torch.Tensor, *,
                  method: str = DEFAULT, steps: int | None = None, seed: int = 0,
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
    name = resolve(method, has_conditional=bundle.inpainter is not None)
    if METHODS[name].conditional:
        if bundle.inpainter is None:
            raise ValueError("method 'conditional' needs a conditional inpainting flow beside "
                             "the checkpoint (inpainter.pt: python -m pipelines.tune_inpainter "
                             "--install); choose 'ascent' or another method")
        return _conditional_results(model, bundle.inpainter, bundle.inpainter_card, images,
                                    masks, steps, seed, n_samples, temperature, init, progress,
                                    start)
    if temperature is not None:
        raise ValueError(f"temperature applies to the conditional method only, not to {name!r}"
                         + ("" if method != DEFAULT else
                            " (the default without a conditional model)"))
    steps, n_samples, init = _check_options(name, steps, 1 if n_samples is None else n_samples,
                                            init, images.shape,
                                            has_bank=bundle.exemplars is not None)
    device = next(model.parameters()).device
    images, masks = images.to(device), masks.to(device)
    generators = [torch.Generator().manual_seed(seed + i) for i in range(images.shape[0])]
    with _eval_mode(model):
        y_obs = dequantize(images, noise="centre")
        y0 = _start(y_obs, masks, init, generators, bundle.exemplars)
        samples, trajectories = METHODS[name].run(model, y0, y_obs, masks, steps, generators,
                                                  n_samples, progress)
        results = _results(model, images, masks, y0, samples, trajectories, name, steps,
                           (time.perf_counter() - start) / images.shape[0])
    if method == DEFAULT:
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
        raise ValueError(f"unknown method {method!r}: choose one of {CHOICES}")
    steps = METHODS[method].default_steps if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= 100_000:
        raise ValueError(f"steps must be an int in [0, 100000], got {steps!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or not 1 <= n_samples <= 256:
        raise ValueError(f"n_samples must be an int in [1, 256], got {n_samples!r}")
    if init is None:
        init = METHODS[method].init
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


# ---- the conditional method --------------------------------------------------------------------

def _conditional_results(model: DensityModel, inpainter: ConditionalInpainter,
                         card: ModelCard, images: torch.Tensor, masks: torch.Tensor,
                         steps: int | None, seed: int, n_samples: int | None,
                         temperature: float | None, init: object, progress: Progress, start: float
                         ) -> list[InpaintResult]:
    """K completions from p(x_missing | x_observed); the fill is their mean, climbed for
    ``steps`` Adam steps on that exact conditional log-likelihood (0: the mean itself)."""
    if init is not None:
        raise ValueError("init does not apply to the conditional method (it samples its "
                         "start); use method 'ascent', 'exemplar', 'nice' or 'langevin' for a "
                         "start")
    settings = conditional_settings(card)
    steps, n_samples, _ = _check_options("conditional", settings["ascent_steps"] if steps is None
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
        samples, fill, trajectories = METHODS["conditional"].run(
            inpainter, dequantize(images, noise="centre"), masks, steps, n_samples,
            temperatures, seed, progress)
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
            bpd_after=after[i], method="conditional", steps=0 if empty else steps,
            seconds=seconds,
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
