"""Small flows on 2-D vectors for the density gallery, one builder per family, and toy data sets.

The image builders expect ``[B, C, H, W]``; these reuse the same layers (or vector versions of
them) on ``[B, D]`` points, with a standard Gaussian prior.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .base import Flow, Sequential, normal_log_density
from .ffjord import CNF, ODENet
from .glow import ActNorm, InvConv1x1LU
from .maf import maf_layers
from .nice import AdditiveCoupling, DiagonalScaling, mlp
from .planar import Planar


class VectorAffineCoupling(Flow):
    """x_b <- x_b * exp(s(x_a)) + t(x_a) on vectors, a/b the even/odd coordinates (swapped when
    ``parity`` is 1); s soft-clamped to [-bound, bound]; logdet = sum s.

    References: Dinh et al., Real NVP (arXiv:1605.08803), eq. 6.
    """

    def __init__(self, dim: int, parity: int, hidden: int = 64, depth: int = 2,
                 bound: float = 3.0) -> None:
        super().__init__()
        self.parity, self.bound = parity, bound
        n_a = len(range(parity, dim, 2))
        self.net = mlp(n_a, 2 * (dim - n_a), hidden, depth)

    def _params(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, raw = self.net(a).chunk(2, dim=1)
        return shift, self.bound * torch.tanh(raw / self.bound)

    def _merge(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = torch.empty(a.shape[0], a.shape[1] + b.shape[1], dtype=a.dtype, device=a.device)
        out[:, self.parity :: 2], out[:, 1 - self.parity :: 2] = a, b
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = x[:, self.parity :: 2], x[:, 1 - self.parity :: 2]
        shift, log_s = self._params(a)
        return self._merge(a, b * log_s.exp() + shift), log_s.sum(dim=1)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        a, b = z[:, self.parity :: 2], z[:, 1 - self.parity :: 2]
        shift, log_s = self._params(a)
        return self._merge(a, (b - shift) * (-log_s).exp())


def build_toy_flow(family: str, dim: int = 2, *, hidden: int = 64) -> Flow:
    """A small flow on ``[B, dim]`` for ``family`` in ``TOY_FAMILIES``."""
    if family == "nice":
        couplings = [AdditiveCoupling(dim, i % 2, hidden, 3) for i in range(6)]
        for layer in couplings:  # symmetric toy data make the zero init a saddle: nudge it
            torch.nn.init.normal_(layer.net[-1].weight, std=0.05)
        return Sequential(*couplings, DiagonalScaling(dim))
    if family == "realnvp":
        return Sequential(*[VectorAffineCoupling(dim, i % 2, hidden) for i in range(6)])
    if family == "glow":
        steps = [[ActNorm(dim), InvConv1x1LU(dim), VectorAffineCoupling(dim, 0, hidden)]
                 for _ in range(5)]
        return Sequential(*[layer for step in steps for layer in step])
    if family == "maf":
        return Sequential(*maf_layers(dim, blocks=6, hidden=hidden, depth=2))
    if family == "planar":
        return Sequential(*[Planar(dim) for _ in range(32)])
    if family == "ffjord":
        return CNF(ODENet(dim, hidden, depth=3), solver="dopri5", rtol=1e-3, atol=1e-3)
    raise ValueError(f"unknown toy family {family!r}: choose one of {TOY_FAMILIES}")


TOY_FAMILIES = ("nice", "realnvp", "glow", "maf", "planar", "ffjord")


def gaussian_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per row."""
    return normal_log_density(z).sum(dim=1)


def toy_log_prob(flow: Flow, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log N(f(x)) + logdet, per point."""
    z, logdet = flow(x)
    return gaussian_log_prob(z) + logdet


# Toy data sets, each a sampler (n, generator) -> [n, 2] points roughly within [-4, 4]^2.

def two_moons(n: int, g: torch.Generator) -> torch.Tensor:
    t = math.pi * torch.rand(n, generator=g)
    upper = torch.rand(n, generator=g) < 0.5
    x = torch.where(upper, torch.cos(t), 1 - torch.cos(t))
    y = torch.where(upper, torch.sin(t), 0.5 - torch.sin(t))
    pts = torch.stack([x - 0.5, y - 0.25], dim=1) * 2
    return pts + 0.1 * torch.randn(n, 2, generator=g)


def eight_gaussians(n: int, g: torch.Generator) -> torch.Tensor:
    angle = torch.randint(0, 8, (n,), generator=g) * (math.pi / 4)
    centres = 2.8 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return centres + 0.3 * torch.randn(n, 2, generator=g)


def checkerboard(n: int, g: torch.Generator) -> torch.Tensor:
    x1 = 4 * torch.rand(n, generator=g) - 2
    x2 = torch.rand(n, generator=g) - 2 * torch.randint(0, 2, (n,), generator=g)
    x2 = x2 + torch.floor(x1) % 2
    return 1.8 * torch.stack([x1, x2], dim=1)


def rings(n: int, g: torch.Generator) -> torch.Tensor:
    radius = 0.8 * (1 + torch.randint(0, 4, (n,), generator=g))
    angle = 2 * math.pi * torch.rand(n, generator=g)
    pts = radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return pts + 0.08 * torch.randn(n, 2, generator=g)


DATASETS: dict[str, Callable[[int, torch.Generator], torch.Tensor]] = {
    "moons": two_moons, "8gaussians": eight_gaussians, "checkerboard": checkerboard,
    "rings": rings}
