"""Factorial priors over the latent: standard Gaussian and standard logistic."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .flows.base import normal_log_density, sum_except_batch


class StandardGaussian(nn.Module):
    """N(0, I): log p(z) = -z^2/2 - log(2 pi)/2 per dimension."""

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return sum_except_batch(normal_log_density(z))

    def sample(self, shape: tuple[int, ...], temperature: float = 1.0,
               generator: torch.Generator | None = None, device: str | torch.device = "cpu"
               ) -> torch.Tensor:
        return temperature * torch.randn(shape, generator=generator, device=device)


class StandardLogistic(nn.Module):
    """Logistic(0, 1), NICE's prior for MNIST: log p(z) = -softplus(z) - softplus(-z).

    References: Dinh et al., NICE (arXiv:1410.8516), sec. 3.4.
    """

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return sum_except_batch(-F.softplus(z) - F.softplus(-z))

    def sample(self, shape: tuple[int, ...], temperature: float = 1.0,
               generator: torch.Generator | None = None, device: str | torch.device = "cpu"
               ) -> torch.Tensor:
        u = torch.rand(shape, generator=generator, device=device).clamp(1e-6, 1 - 1e-6)
        return temperature * (u.log() - (-u).log1p())


PRIORS = {"gaussian": StandardGaussian, "logistic": StandardLogistic}
