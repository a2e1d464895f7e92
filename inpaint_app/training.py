"""Pieces of maximum-likelihood training shared by the training script, the benchmark and tests."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .conditional import ConditionalInpainter
from .density import DensityModel, bits_per_dim_from_log_prob, dequantize
from .ffjord_density import log_prob_with_penalty


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def initialize_actnorm(model: DensityModel, batch: torch.Tensor,
                       generator: torch.Generator | None = None) -> None:
    """Run one training-mode forward pass so that ActNorm layers take their data-dependent init.

    Every DDP rank calls this with the same batch and seed, so the inits agree before wrapping.
    """
    was_training = model.training
    model.train()
    model.log_prob(dequantize(batch, generator))
    model.train(was_training)


def warmup_cosine(step: int, *, warmup: int, total: int, floor: float = 0.02,
                  time_progress: float = 0.0) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay down to ``floor``.

    ``time_progress`` (elapsed / time budget) moves the decay ahead when the wall-clock budget
    will end the run before ``total`` steps, so a time-limited run still anneals fully.
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, max((step - warmup) / max(1, total - warmup), time_progress))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def perturb_pixels(batch: torch.Tensor, rate: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """A copy of a uint8 batch with each pixel replaced, with probability ``rate``, by a uniform
    random level: the training input of a background model (Ren et al. 2019, arXiv:1906.02845),
    which then learns the data's local statistics but not its semantics."""
    device = batch.device if generator is None else generator.device
    replace = torch.rand(batch.shape, generator=generator, device=device).to(batch.device) < rate
    levels = torch.randint(0, 256, batch.shape, generator=generator, device=device,
                           dtype=torch.uint8).to(batch.device)
    return torch.where(replace, levels, batch)


def train_step(model: nn.Module, density: DensityModel, batch: torch.Tensor,
               optimizer: torch.optim.Optimizer, *, generator: torch.Generator | None = None,
               clip: float = 50.0, amp: bool = False,
               all_finite: Callable[[bool], bool] | None = None,
               exposure: Exposure | None = None) -> float:
    """One maximum-likelihood step on a uint8 batch; returns the batch's mean bits/dim (of the
    batch alone: ``exposure``'s hinge on outliers is added to what is minimized, not reported).

    ``model`` is what runs the forward (a DDP wrapper, or ``density`` itself). A non-finite loss
    skips the update and returns nan, so one bad batch cannot poison the weights. Under DDP,
    ``all_finite`` turns this rank's verdict into the verdict of all ranks, so every rank skips
    together (one rank skipping alone would leave the others waiting in backward).
    """
    y = dequantize(batch, generator)
    if exposure is not None:  # one forward for both: the flow has no batch statistics
        y = torch.cat([y, dequantize(exposure.outliers, generator)])
    with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=amp):
        log_prob, dims = model(y, generator)
    n = len(batch)
    loss = bits_per_dim_from_log_prob(log_prob[:n].float().sum(), dims[:n].sum())
    objective = loss
    if exposure is not None:
        objective = loss + exposure.weight * exposure.penalty(
            -log_prob[:n].float() / (dims[:n] * math.log(2)),
            -log_prob[n:].float() / (dims[n:] * math.log(2)))
    optimizer.zero_grad(set_to_none=True)
    finite = bool(torch.isfinite(loss))
    if not (all_finite(finite) if all_finite else finite):
        return float("nan")
    objective.backward()
    torch.nn.utils.clip_grad_norm_(density.parameters(), clip)
    optimizer.step()
    return loss.item()


@dataclass(frozen=True)
class Exposure:
    """A batch of outliers for outlier exposure on bits/dim (Hendrycks et al. 2019,
    arXiv:1812.04606, sec. 4.4): the step adds ``weight`` times the mean hinge
    ``max(0, margin - (bpd(outlier) - bpd(inlier)))`` over pairs, so the flow learns to give
    outliers at least ``margin`` more bits/dim than the images it models."""

    outliers: torch.Tensor  # uint8, as many as the batch
    margin: float = 0.5
    weight: float = 1.0

    def penalty(self, inlier_bpd: torch.Tensor, outlier_bpd: torch.Tensor) -> torch.Tensor:
        m = min(len(inlier_bpd), len(outlier_bpd))
        return torch.relu(self.margin - (outlier_bpd[:m] - inlier_bpd[:m])).mean()


class NonFiniteGuard:
    """Counts consecutive non-finite losses; after ``patience`` of them the run should go back
    to its last good weights and halve the learning rate (``observe`` returns True then)."""

    def __init__(self, patience: int = 3) -> None:
        self.patience, self.streak, self.total = patience, 0, 0

    def observe(self, loss: float) -> bool:
        if math.isfinite(loss):
            self.streak = 0
            return False
        self.streak += 1
        self.total += 1
        if self.streak >= self.patience:
            self.streak = 0
            return True
        return False


class LogProb(nn.Module):
    """Wraps a model so that ``forward`` gives the training likelihood (what DDP needs to call):
    ``(log p, dimensions)`` per image. A DensityModel scores whole images, less the RNODE penalty
    of any regularized FFJORD blocks; a conditional inpainting model scores the missing pixels of
    masks it draws with ``generator``."""

    def __init__(self, density: DensityModel) -> None:
        super().__init__()
        self.density = density

    def forward(self, y: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.density, ConditionalInpainter):
            return self.density.nll_terms(y, generator)
        log_prob, penalty = log_prob_with_penalty(self.density, y)
        return log_prob - penalty, torch.full_like(log_prob, self.density.dim)


class EMA:
    """Exponential moving average of parameters (and a copy of buffers), for evaluation.

    The decay warms up as min(decay, (1 + step) / (10 + step)): early on the average follows
    the fast-moving weights instead of dragging the initialization along for thousands of steps
    (a 0.999 average without warm-up validated at 5.5 bits/dim on MNIST after 2 minutes of
    training whose raw weights were at 2.8; runs/ttq15, 2026-11-26).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def decay_at(self, step: int) -> float:
        """The decay used by the update after ``step`` earlier updates."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        """Move the average towards ``model``; ``step`` (updates so far) sets the warm-up, None
        uses the full decay."""
        decay = self.decay if step is None else self.decay_at(step)
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[key].lerp_(value, 1 - decay)
            else:
                self.shadow[key].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.shadow = {k: v.clone() for k, v in state.items()}


def bpd_summary(bpd: torch.Tensor) -> tuple[float, float]:
    """Mean bits/dim and its standard error over images."""
    return bpd.mean().item(), (bpd.std() / math.sqrt(len(bpd))).item()


@torch.no_grad()
def evaluate_bpd(density: DensityModel, images: torch.Tensor, *, batch_size: int = 500,
                 seed: int = 0, progress: bool = False) -> torch.Tensor:
    """Bits/dim of every image, one fixed-seed dequantization each (reproducible)."""
    from tqdm import tqdm

    was_training = density.training
    density.eval()
    device = next(density.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    for start in tqdm(range(0, len(images), batch_size), disable=not progress, desc="eval",
                      unit="batch"):
        batch = images[start:start + batch_size]
        y = dequantize(batch, generator).to(device)
        out.append(density.bits_per_dim(y).cpu())
    density.train(was_training)
    return torch.cat(out)
