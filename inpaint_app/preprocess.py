"""Preprocessing flows from dequantized pixels y in [0,1] to the flow's input, with their log-det.

They are flows, not dataloader transforms, so bits/dim can never silently drop a Jacobian.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .flows.base import Flow, sum_except_batch


class Logit(Flow):
    """u = logit(alpha + (1 - 2 alpha) y): unbounded inputs for affine flows.

    logdet = sum log(1 - 2 alpha) - log s - log(1 - s), with s = alpha + (1 - 2 alpha) y.
    References: Dinh et al., Real NVP (arXiv:1605.08803), sec. 4.1.
    """

    def __init__(self, alpha: float = 0.05) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def elementwise(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z and each element's own log-derivative (summed by ``forward``; a conditional model
        sums it over the missing pixels only)."""
        s = self.alpha + (1 - 2 * self.alpha) * x
        z = s.log() - (-s).log1p()
        return z, math.log(1 - 2 * self.alpha) + F.softplus(-z) + F.softplus(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, logdet = self.elementwise(x)
        return z, sum_except_batch(logdet)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha)


class Affine(Flow):
    """u = scale * y + shift with constant scalars (e.g. centring to [-0.5, 0.5] as Glow does)."""

    def __init__(self, scale: float = 1.0, shift: float = -0.5) -> None:
        super().__init__()
        self.scale, self.shift = float(scale), float(shift)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = x[0].numel() * math.log(abs(self.scale))
        return x * self.scale + self.shift, x.new_full((x.shape[0],), logdet)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.shift) / self.scale


def build_preprocess(name: str, **kwargs: float) -> Flow:
    """Preprocessing by name: ``logit`` (alpha) or ``affine`` (scale, shift)."""
    if name == "logit":
        return Logit(**kwargs)
    if name == "affine":
        return Affine(**kwargs)
    raise ValueError(f"unknown preprocessing {name!r}: choose 'logit' or 'affine'")
