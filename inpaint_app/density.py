"""The one path from an image to its exact log-likelihood and bits/dim.

uint8 x -> dequantize y = (x + u) / 256 -> preprocessing flow (with its log-det) -> flow -> prior.
log p(y) = log p_prior(z) + logdet(flow) + logdet(preprocess), a density on [0, 1]^D, and
bits/dim = (-log p(y) + D ln 256) / (D ln 2), the discrete-data bound every paper reports.
A uniform density on [0, 1]^D is exactly 8 bits/dim.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .flows.base import Flow

NOISE_MODES = ("random", "fixed", "centre")


def dequantize(x: torch.Tensor, generator: torch.Generator | None = None, *,
               noise: str = "random", seed: int = 0) -> torch.Tensor:
    """y = (x + u) / 256: uint8 pixels ``[B, C, H, W]`` to a continuous point of their bin. The
    one place pixels become continuous; ``noise`` names how u is chosen:

    - ``"random"``: u ~ U[0, 1)^D, fresh from ``generator`` (training; seeded for evaluation);
    - ``"fixed"``: one U[0, 1)^D pattern drawn with ``seed``, the same for every image, so an
      image's number never depends on its batch or position (anomaly scores, inpainting);
    - ``"centre"``: u = 1/2, the bin's midpoint (observed pixels held fixed while inpainting).

    All three have the same mean, (x + 1/2) / 256."""
    if noise == "random":
        u = torch.rand(x.shape, generator=generator, device=x.device if generator is None else
                       generator.device).to(x.device)
    elif noise == "fixed":
        u = torch.rand(x.shape[1:], generator=torch.Generator().manual_seed(seed)).to(x.device)
    elif noise == "centre":
        u = torch.tensor(0.5, device=x.device)
    else:
        raise ValueError(f"unknown dequantization noise {noise!r}: one of {NOISE_MODES}")
    return (x.float() + u) / 256.0


def bits_per_dim_from_log_prob(log_prob: torch.Tensor, dim: int) -> torch.Tensor:
    """Discrete-data bits/dim from a density on [0, 1]^D: (-log p + D ln 256) / (D ln 2)."""
    return (-log_prob + dim * math.log(256.0)) / (dim * math.log(2.0))


class DensityModel(nn.Module):
    """Preprocessing + flow + prior over images in [0, 1]^D, with exact ``log_prob``.

    ``config`` is the plain dict that ``build_model`` rebuilds the model from.
    """

    def __init__(self, preprocess: Flow, flow: Flow, prior: nn.Module,
                 image_shape: tuple[int, int, int], config: dict[str, Any]) -> None:
        super().__init__()
        self.preprocess, self.flow, self.prior = preprocess, flow, prior
        self.image_shape = tuple(image_shape)
        self.config = config

    @property
    def dim(self) -> int:
        return math.prod(self.image_shape)

    def to_latent(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z and the total log-det (preprocessing included) for pixels y in [0, 1]."""
        u, logdet_pre = self.preprocess(y)
        z, logdet = self.flow(u)
        return z, logdet + logdet_pre

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """Exact log-density of pixels y in [0, 1]^D (float, ``[B, C, H, W]``), one per image."""
        return self.latent_and_log_prob(y)[1]

    def latent_and_log_prob(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z and the exact log-density of y, from one pass (scores that read the latent too)."""
        z, logdet = self.to_latent(y)
        return z, self.prior.log_prob(z) + logdet

    def bits_per_dim(self, x: torch.Tensor, *, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
        """Bits/dim per image. uint8 input is dequantized with uniform noise (seed it through
        ``generator`` for reproducible numbers); float input is taken as already in [0, 1]."""
        y = dequantize(x, generator) if x.dtype == torch.uint8 else x
        return bits_per_dim_from_log_prob(self.log_prob(y), self.dim)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """n images in [0, 1] drawn from the model, latent scaled by ``temperature``."""
        param = next(self.parameters())
        z = self.prior.sample((n, *self.latent_shape()), temperature, generator=generator,
                              device=param.device if generator is None else generator.device)
        y = self.preprocess.inverse(self.flow.inverse(z.to(param)))
        return y.clamp(0.0, 1.0)

    @torch.no_grad()
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of z for one image (the flow's output layout; same element count as the image)."""
        if not hasattr(self, "_latent_shape"):
            was_training = self.training
            self.eval()
            param = next(self.parameters())
            probe = torch.full((1, *self.image_shape), 0.5, dtype=param.dtype, device=param.device)
            self._latent_shape = tuple(self.to_latent(probe)[0].shape[1:])
            self.train(was_training)
        return self._latent_shape
