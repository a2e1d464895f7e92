"""The inpainting algorithms, on pixels y in [0, 1] with the observed pixels clamped: each samples
or climbs one model's exact log-likelihood over the missing pixels only.

- ``ascend_adam``: projected Adam ascent on the image flow's log p(y), keeping the best iterate.
- ``ascend_nice``: NICE sec. 5.2, y_H <- clip(y_H + a_i (d log p / d y_H + eps), 0, 1),
  eps ~ N(0, I), a_i = 10 / (100 + i).
- ``langevin``: unadjusted Langevin chains on log p(y), the step annealed geometrically.
- ``sample_conditional``: K completions from a conditional flow p(x_missing | x_observed) in one
  pass, their mean climbed by projected Adam on that exact conditional log-likelihood.

``inpaint_app.methods`` names them; ``inpaint_app.inpainting`` checks the inputs, starts them and
turns what they return into results. Noise comes from one generator per image.
References: Dinh et al., NICE (arXiv:1410.8516), sec. 5.2; Roberts, Tweedie, Exponential
convergence of Langevin distributions (1996).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .conditional import ConditionalInpainter
from .density import DensityModel, bits_per_dim_from_log_prob

ADAM_LR = 0.01            # pixel units; larger steps overshoot the very peaked density
# The conditional flow's density is sharper still: at 0.01 the first step costs 3-4 bits per
# missing dim; at 3e-4 the ascent climbs at every step (docs/inpainting.md).
CONDITIONAL_ADAM_LR = 3e-4
LANGEVIN_STEP = (1e-4, 1e-5)  # step size annealed geometrically from first to last

Progress = Callable[[int, int], None] | None


def log_prob_and_grad(log_prob_fn: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor
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


def ascend_adam(model, y0, y_obs, masks, steps, generators, n_samples, progress):
    """Projected Adam on log p over the missing pixels; keeps each image's best iterate."""
    best, trajectories = climb(model.log_prob, lambda lp: _bpd(model, lp), y0, y_obs, masks,
                               steps, progress)
    return best[None], trajectories


def climb(log_prob_fn: Callable[[torch.Tensor], torch.Tensor],
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
        log_prob, grad = log_prob_and_grad(log_prob_fn, y)
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


def ascend_nice(model, y0, y_obs, masks, steps, generators, n_samples, progress):
    """NICE's projected stochastic gradient ascent, a_i = 10 / (100 + i)."""
    y = y0.clone()
    trajectories: list[list[float]] = [[] for _ in range(y.shape[0])]
    for i in range(steps + 1):
        log_prob, grad = log_prob_and_grad(model.log_prob, y)
        _record(trajectories, _bpd(model, log_prob))
        if i == steps:
            break
        step = 10.0 / (100.0 + i)
        eps = _noise(generators, tuple(y.shape[1:]), y)
        y = torch.where(masks, (y + step * (grad + eps)).clamp(0.0, 1.0), y_obs)
        _report(progress, i + 1, steps)
    return y[None], trajectories


def langevin(model, y0, y_obs, masks, steps, generators, n_samples, progress):
    """n_samples unadjusted Langevin chains per image, y <- clip(y + e grad + sqrt(2e) xi);
    returns the final state of every chain ``[n, B, C, H, W]``."""
    b = y0.shape[0]
    y = y0.repeat(n_samples, 1, 1, 1)
    obs, hole = y_obs.repeat(n_samples, 1, 1, 1), masks.repeat(n_samples, 1, 1, 1)
    trajectories: list[list[float]] = [[] for _ in range(b)]
    first, last = LANGEVIN_STEP
    for i in range(steps + 1):
        log_prob, grad = log_prob_and_grad(model.log_prob, y)
        _record(trajectories, _bpd(model, log_prob.reshape(n_samples, b).mean(0)))
        if i == steps:
            break
        eps = first * (last / first) ** (i / max(steps - 1, 1))
        xi = _noise(generators, (n_samples, *y.shape[1:]), y).transpose(0, 1).reshape(y.shape)
        y = torch.where(hole, (y + eps * grad + math.sqrt(2 * eps) * xi).clamp(0.0, 1.0), obs)
        _report(progress, i + 1, steps)
    return y.reshape(n_samples, b, *y.shape[1:]), trajectories


def sample_conditional(inpainter: ConditionalInpainter, y_obs: torch.Tensor, masks: torch.Tensor,
                       steps: int, n_samples: int, temperatures: list[float], seed: int,
                       progress: Progress
                       ) -> tuple[torch.Tensor, torch.Tensor, list[list[float]]]:
    """K completions ``[B, K, C, H, W]`` from p(x_missing | x_observed) at each image's
    temperature (image i's noise seeded ``seed + i``), and their mean climbed ``steps`` Adam
    steps on that exact conditional log-likelihood, with its bits per missing dim per step."""
    batch = y_obs.shape[0]
    noise = torch.stack([torch.randn((n_samples, *inpainter.latent_shape),
                                     generator=torch.Generator().manual_seed(seed + i))
                         for i in range(batch)]).to(y_obs.device)
    missing = masks.float()
    with torch.no_grad():  # the observation is fixed: only the missing pixels move
        context = inpainter.context(y_obs, missing)
    samples = inpainter.complete(y_obs, masks, n_samples, torch.tensor(temperatures),
                                 noise=noise, context=context)
    dims = missing.flatten(1).sum(dim=1).clamp(min=1)
    fill, trajectories = climb(
        lambda y: inpainter.conditional_log_prob(y, context),
        lambda lp: bits_per_dim_from_log_prob(lp, dims).tolist(),
        samples.mean(dim=1), y_obs, masks, steps, progress, lr=CONDITIONAL_ADAM_LR)
    return samples, fill, trajectories


def _record(trajectories: list[list[float]], values: list[float]) -> None:
    for trajectory, value in zip(trajectories, values, strict=True):
        trajectory.append(value)


def _report(progress: Progress, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)
