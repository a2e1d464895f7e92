"""The flow interface: ``forward(x) -> (z, logdet)`` to the latent, ``inverse(z) -> x`` back."""

from __future__ import annotations

import math

import torch
from torch import nn


class Flow(nn.Module):
    """An invertible map with a tractable log-determinant.

    ``forward(x)`` returns ``(z, logdet)`` with ``logdet`` of shape ``[B]`` equal to
    ``log|det dz/dx|``; ``inverse(z)`` returns ``x``.
    """

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """A network output brought back to float32 from bf16/fp16 autocast. Only the coupling
    networks run in low precision: the flow's own arithmetic (scales, shifts, log-dets, the
    latent) stays in float32, because at a good fit the likelihood's gradient is a small
    difference of large terms (the log-det's against the data term's) that bf16 rounding
    swamps."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def positions(x: torch.Tensor) -> int:
    """Positions that share one channel's parameters: H*W for images ``[B, C, H, W]``, 1 for
    vectors ``[B, D]`` (the log-det factor of a per-channel scale)."""
    return x[0, 0].numel()


def per_channel(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-channel parameter ``[C]`` shaped to broadcast against ``x`` ``[B, C, ...]``."""
    return p.reshape(1, -1, *([1] * (x.dim() - 2)))


def normal_log_density(z: torch.Tensor, mean: torch.Tensor | float = 0.0,
                       log_sigma: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Elementwise log N(z; mean, exp(log_sigma)^2): the one Gaussian log-density of the
    library (priors, the conditional flow's prior, the 2-D energies)."""
    log_sigma = torch.as_tensor(log_sigma, dtype=z.dtype, device=z.device)
    return -0.5 * ((z - mean) * (-log_sigma).exp()) ** 2 - log_sigma - 0.5 * math.log(2 * math.pi)


def sum_except_batch(x: torch.Tensor) -> torch.Tensor:
    """Sum every dimension but the first: per-example totals of an elementwise log-det."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


class Sequential(Flow):
    """Composition of flows; log-dets add. Inverse runs the layers backwards."""

    def __init__(self, *flows: Flow) -> None:
        super().__init__()
        self.flows = nn.ModuleList(flows)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = x.new_zeros(x.shape[0])
        for flow in self.flows:
            x, step_logdet = flow(x)
            logdet = logdet + step_logdet
        return x, logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        for flow in reversed(self.flows):
            z = flow.inverse(z)
        return z


class Squeeze(Flow):
    """Space-to-depth: ``[B, C, H, W] -> [B, 4C, H/2, W/2]`` (a permutation, so logdet = 0)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(b, c * 4, h // 2, w // 2), x.new_zeros(b)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        b, c, h, w = z.shape
        z = z.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return z.reshape(b, c // 4, h * 2, w * 2)


class Split(Flow):
    """Multi-scale factor-out: half the channels go to the prior, the rest through ``flow``.

    The output keeps the input's shape (the inner flow's result is reshaped back), so a whole
    model maps an image to one latent tensor with as many elements. ``inner_shape`` is the inner
    flow's output shape per example, needed to undo that reshape.
    References: Dinh et al., Density estimation using Real NVP (arXiv:1605.08803), sec. 3.6.
    """

    def __init__(self, flow: Flow, inner_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.flow = flow
        self.inner_shape = tuple(inner_shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_out, x_keep = x.chunk(2, dim=1)
        z_keep, logdet = self.flow(x_keep)
        return torch.cat([x_out, z_keep.reshape(x_keep.shape)], dim=1), logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        z_out, z_keep = z.chunk(2, dim=1)
        x_keep = self.flow.inverse(z_keep.reshape(z.shape[0], *self.inner_shape))
        return torch.cat([z_out, x_keep], dim=1)


class Flatten(Flow):
    """``[B, C, H, W] -> [B, C*H*W]`` for flows on vectors (NICE, MAF)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.reshape(x.shape[0], -1), x.new_zeros(x.shape[0])

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z.reshape(z.shape[0], *self.shape)
