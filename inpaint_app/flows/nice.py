"""NICE: additive coupling layers on the flattened image and a final diagonal scaling.

References: Dinh, Krueger, Bengio, NICE: Non-linear Independent Components Estimation
(arXiv:1410.8516).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Flatten, Flow, Sequential, full_precision


def mlp(d_in: int, d_out: int, hidden: int, depth: int) -> nn.Sequential:
    """``depth`` hidden ReLU layers of width ``hidden``; the last is zero-init (identity flow)."""
    layers: list[nn.Module] = []
    width = d_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    last = nn.Linear(width, d_out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class AdditiveCoupling(Flow):
    """x_b <- x_b + m(x_a), where a/b are the even/odd coordinates (swapped when ``parity`` is 1).

    Volume preserving: logdet = 0 exactly.

    >>> layer = AdditiveCoupling(dim=4, parity=0, hidden=8, depth=2)
    >>> z, logdet = layer(torch.randn(3, 4))
    """

    def __init__(self, dim: int, parity: int, hidden: int = 1000, depth: int = 5) -> None:
        super().__init__()
        self.parity = parity
        n_a = len(range(parity, dim, 2))
        self.net = mlp(n_a, dim - n_a, hidden, depth)

    def _halves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, self.parity :: 2], x[:, 1 - self.parity :: 2]

    def _merge(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = torch.empty(a.shape[0], a.shape[1] + b.shape[1], dtype=a.dtype, device=a.device)
        out[:, self.parity :: 2] = a
        out[:, 1 - self.parity :: 2] = b
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self._halves(x)
        return self._merge(a, b + full_precision(self.net(a))), x.new_zeros(x.shape[0])

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        a, b = self._halves(z)
        return self._merge(a, b - full_precision(self.net(a)))


class DiagonalScaling(Flow):
    """z = x * exp(s): NICE's last layer, the only one that changes volume (logdet = sum s)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * self.log_scale.exp(), self.log_scale.sum().expand(x.shape[0])

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * (-self.log_scale).exp()


def build_nice(image_shape: tuple[int, int, int], *, couplings: int = 4, hidden: int = 1000,
               depth: int = 5) -> Flow:
    """The paper's MNIST model: 4 couplings on alternating halves, 5 x 1000 ReLU MLPs, diagonal
    scaling."""
    dim = image_shape[0] * image_shape[1] * image_shape[2]
    layers: list[Flow] = [Flatten(image_shape)]
    layers += [AdditiveCoupling(dim, i % 2, hidden, depth) for i in range(couplings)]
    layers.append(DiagonalScaling(dim))
    return Sequential(*layers)
