"""MAF: masked autoregressive affine flows built from MADE networks, with optional batch norm.

Density evaluation (data -> latent) is one MADE pass per layer; the inverse (sampling) needs D
sequential passes, each vectorised over the batch, and is exact.
References: Papamakarios, Pavlakou, Murray, Masked Autoregressive Flow for Density Estimation
(arXiv:1705.07057); Germain et al., MADE: Masked Autoencoder for Distribution Estimation
(arXiv:1502.03509).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import Flatten, Flow, Sequential, full_precision, per_channel, positions


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (a buffer)."""

    def __init__(self, d_in: int, d_out: int, mask: torch.Tensor) -> None:
        super().__init__(d_in, d_out)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """An MLP whose output ``i`` depends only on inputs of lower degree than ``degrees[i]``.

    ``degrees`` is a permutation of 1..D (the autoregressive order). Hidden units get degrees
    cycling through 1..D-1 (deterministic, so masks never depend on a random draw). Returns
    ``out_per_dim`` values per input dimension, shape ``[B, out_per_dim, D]``; the output layer is
    zero-initialised so a fresh MAF layer is the identity.
    """

    def __init__(self, degrees: torch.Tensor, hidden: int = 512, depth: int = 1,
                 out_per_dim: int = 2) -> None:
        super().__init__()
        d = degrees.numel()
        self.register_buffer("degrees", degrees.clone())
        self.out_per_dim = out_per_dim
        layers: list[nn.Module] = []
        prev = degrees
        for _ in range(depth):
            hid = torch.arange(hidden) % max(1, d - 1) + 1
            layers += [MaskedLinear(prev.numel(), hidden, (hid[:, None] >= prev[None, :])),
                       nn.ReLU()]
            prev = hid
        out_deg = degrees.repeat(out_per_dim)
        last = MaskedLinear(prev.numel(), out_per_dim * d, out_deg[:, None] > prev[None, :])
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(x.shape[0], self.out_per_dim, -1)


class MaskedAffineAutoregressive(Flow):
    """z_i = (x_i - mu_i(x_<i)) * exp(-alpha_i(x_<i)); logdet = -sum alpha.

    ``alpha`` is soft-clamped to [-bound, bound]. The order is MADE's ``degrees`` (a buffer).

    >>> layer = MaskedAffineAutoregressive(torch.tensor([2, 1, 3]), hidden=16)
    >>> z, logdet = layer(torch.randn(4, 3))
    """

    def __init__(self, degrees: torch.Tensor, hidden: int = 512, depth: int = 1,
                 bound: float = 5.0) -> None:
        super().__init__()
        self.made = MADE(degrees, hidden, depth, out_per_dim=2)
        self.bound = bound

    def _params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, raw = full_precision(self.made(x)).unbind(dim=1)
        return mu, self.bound * torch.tanh(raw / self.bound)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, alpha = self._params(x)
        return (x - mu) * (-alpha).exp(), -alpha.sum(dim=1)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """D passes: after pass k the first k coordinates in the order are exact."""
        x = torch.zeros_like(z)
        for _ in range(z.shape[1]):
            mu, alpha = self._params(x)
            x = z * alpha.exp() + mu
        return x


class BatchNormFlow(Flow):
    """z = (x - m) / sqrt(v + eps) * exp(log_gamma) + beta, per dimension.

    Training uses the batch mean and variance (and updates running averages); evaluation uses
    the running averages, so the layer is a fixed elementwise affine map there.
    logdet = sum(log_gamma - log(v + eps) / 2). Works on ``[B, D]`` and ``[B, C, H, W]``.
    References: MAF (arXiv:1705.07057), sec. 3.4; Real NVP (arXiv:1605.08803), sec. 3.7.
    """

    def __init__(self, dim: int, momentum: float = 0.05, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.log_gamma = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.training:
            return self.running_mean, self.running_var
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)
        mean, var = flat.mean(dim=1), flat.var(dim=1, unbiased=False)
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach(), self.momentum)
        return mean, var

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, var = self._stats(x)
        log_scale = self.log_gamma - 0.5 * (var + self.eps).log()
        z = (x - per_channel(mean, x)) * per_channel(log_scale, x).exp()
        return z + per_channel(self.beta, x), (positions(x) * log_scale.sum()).expand(x.shape[0])

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        log_scale = self.log_gamma - 0.5 * (self.running_var + self.eps).log()
        x = (z - per_channel(self.beta, z)) * per_channel(-log_scale, z).exp()
        return x + per_channel(self.running_mean, z)


def made_orders(dim: int, layers: int, order: str = "alternate", seed: int = 0
                ) -> list[torch.Tensor]:
    """Degrees (1..D) per layer: ``alternate`` flips natural/reversed, ``random`` draws a
    fixed-seed permutation per layer (kept in buffers, so a reload never redraws them)."""
    if order not in ("alternate", "random"):
        raise ValueError(f"unknown order {order!r}: choose 'alternate' or 'random'")
    natural = torch.arange(1, dim + 1)
    if order == "alternate":
        return [natural if i % 2 == 0 else natural.flip(0) for i in range(layers)]
    g = torch.Generator().manual_seed(seed)
    return [torch.randperm(dim, generator=g) + 1 for _ in range(layers)]


def build_maf(image_shape: tuple[int, int, int], *, blocks: int = 5, hidden: int = 512,
              depth: int = 1, order: str = "alternate", batch_norm: bool = False,
              bound: float = 5.0, seed: int = 0) -> Flow:
    """Flatten, then ``blocks`` MAF layers (each one MADE with ``depth`` hidden layers of
    ``hidden`` units), orders alternating or fixed-seed random, batch norm between them
    optionally."""
    dim = image_shape[0] * image_shape[1] * image_shape[2]
    return Sequential(Flatten(image_shape), *maf_layers(dim, blocks=blocks, hidden=hidden,
                                                        depth=depth, order=order,
                                                        batch_norm=batch_norm, bound=bound,
                                                        seed=seed))


def maf_layers(dim: int, *, blocks: int, hidden: int, depth: int = 1, order: str = "alternate",
               batch_norm: bool = False, bound: float = 5.0, seed: int = 0) -> list[Flow]:
    """The MAF layers on ``[B, dim]`` vectors (shared by the image and the 2-D builders)."""
    layers: list[Flow] = []
    for i, degrees in enumerate(made_orders(dim, blocks, order, seed)):
        layers.append(MaskedAffineAutoregressive(degrees, hidden, depth, bound))
        if batch_norm and i < blocks - 1:
            layers.append(BatchNormFlow(dim))
    return layers

