"""Conditional flow layers over the missing pixels of an image, given the observed ones.

A ``ConditionalFlow`` maps ``(x, context) -> (z, logdet)`` like a ``Flow``, but every layer also
reads a ``Context``: the mask (1 where a value is missing), the observed values and features
that a conditioning network computed from them once per image. Layers transform only the
missing values; observed positions pass through unchanged (their Jacobian is the identity), so
log-dets count missing dimensions only and the exact density is that of p(x_missing | x_obs).
Design after ACFlow (Li, Akbar, Oliva, ICML 2020: transforms on the missing dimensions with the
observation and mask as conditioning) and c-Glow/SRFlow (couplings and prior fed features of
the masked image); the code is this project's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import full_precision, sum_except_batch
from .realnvp import soft_clamp


@dataclass
class Context:
    """What every conditional layer sees: ``missing`` (float 0/1 ``[B, C, H, W]``), ``observed``
    (the observed values, zero where missing) and ``features`` (``[B, F, H, W]``)."""

    missing: torch.Tensor
    observed: torch.Tensor
    features: torch.Tensor


class ConditionalFlow(nn.Module):
    """An invertible map of x given a fixed ``Context``; ``forward`` returns ``(z, logdet)``.
    Every layer here is elementwise affine, so ``forward_elements`` gives each value's own
    log-derivative (``[B, C, H, W]``), which ``logdet`` sums."""

    def forward(self, x: torch.Tensor, context: Context) -> tuple[torch.Tensor, torch.Tensor]:
        z, log_s = self.forward_elements(x, context)
        return z, sum_except_batch(log_s)

    def forward_elements(self, x: torch.Tensor, context: Context
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def inverse(self, z: torch.Tensor, context: Context) -> torch.Tensor:
        raise NotImplementedError


class ConditionalSequential(ConditionalFlow):
    """Composition of conditional flows under one context; log-dets add."""

    def __init__(self, *flows: ConditionalFlow) -> None:
        super().__init__()
        self.flows = nn.ModuleList(flows)

    def forward(self, x: torch.Tensor, context: Context) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = x.new_zeros(x.shape[0])
        for flow in self.flows:
            x, step = flow(x, context)
            logdet = logdet + step
        return x, logdet

    def forward_elements(self, x: torch.Tensor, context: Context
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        log_s = torch.zeros_like(x)
        for flow in self.flows:
            x, step = flow.forward_elements(x, context)
            log_s = log_s + step
        return x, log_s

    def inverse(self, z: torch.Tensor, context: Context) -> torch.Tensor:
        for flow in reversed(self.flows):
            z = flow.inverse(z, context)
        return z


PATTERNS = ("checker", "subpixel-checker", "subpixel-rows", "subpixel-cols")


def pattern_mask(kind: str, parity: int, shape: tuple[int, int, int],
                 device: torch.device | None = None) -> torch.Tensor:
    """A fixed 0/1 ``[1, C, H, W]`` split of the values; ``parity`` picks the half that a
    coupling transforms. ``checker`` alternates over positions; the ``subpixel-*`` patterns
    split the four sub-pixels of a 2x2 squeeze (channel index c = 4 * colour + 2 * dy + dx) by
    dy + dx, dy or dx, that is a checkerboard, alternate rows or alternate columns at full
    resolution."""
    channels, height, width = shape
    k = torch.arange(channels, device=device)[:, None, None] % 4
    rows = torch.arange(height, device=device)[None, :, None]
    cols = torch.arange(width, device=device)[None, None, :]
    index = {"checker": rows + cols, "subpixel-checker": k // 2 + k % 2,
             "subpixel-rows": k // 2, "subpixel-cols": k % 2}[kind]
    return (index.expand(channels, height, width) % 2 == parity).float()[None]


class MaskedAffineCoupling(ConditionalFlow):
    """x_b <- x_b * exp(log_s) + t on the missing values of one half ``b`` of a fixed pixel
    pattern; log_s and t come from a network over everything else (the other half, the
    observed values, the mask and the context features), so the Jacobian is triangular and
    logdet = sum of log_s over the transformed values. The scale only contracts (log_s <= 0,
    softly floored at -bound) and the shift is soft-clamped, as in the project's stable
    coupling, so no input can blow up to a huge latent."""

    def __init__(self, channels: int, features: int, *, pattern: str = "checker",
                 parity: int = 0, hidden: int = 64, bound: float = 2.0,
                 shift_bound: float = 5.0) -> None:
        super().__init__()
        if pattern not in PATTERNS:
            raise ValueError(f"unknown pattern {pattern!r}: choose one of {PATTERNS}")
        self.pattern, self.parity = pattern, parity
        self.bound, self.shift_bound = bound, shift_bound
        last = nn.Conv2d(hidden, 2 * channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(
            nn.Conv2d(4 * channels + features, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 1), nn.ReLU(inplace=True), last)

    def _transformed(self, x: torch.Tensor, context: Context) -> torch.Tensor:
        """0/1 mask of the values this layer changes: missing and in its half of the pattern."""
        half = pattern_mask(self.pattern, self.parity, tuple(x.shape[1:]), x.device)
        return context.missing * half.to(x.dtype)

    def _params(self, x: torch.Tensor, b: torch.Tensor, context: Context
                ) -> tuple[torch.Tensor, torch.Tensor]:
        net_in = torch.cat([x * (1 - b), context.observed, context.missing, b,
                            context.features], dim=1)
        shift, raw = full_precision(self.net(net_in)).chunk(2, dim=1)
        log_s = -soft_clamp(F.softplus(-(raw + 2.0)), self.bound)
        return soft_clamp(shift, self.shift_bound) * b, log_s * b

    def forward_elements(self, x: torch.Tensor, context: Context
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        b = self._transformed(x, context)
        shift, log_s = self._params(x, b, context)
        return x * log_s.exp() + shift, log_s

    def inverse(self, z: torch.Tensor, context: Context) -> torch.Tensor:
        b = self._transformed(z, context)
        shift, log_s = self._params(z, b, context)  # z * (1 - b) == x * (1 - b)
        return (z - shift) * (-log_s).exp()


class ConditionalAffine(ConditionalFlow):
    """x <- x * exp(log_s) + t on every missing value, with log_s and t a 1x1 map of the context
    features alone (a per-pixel ActNorm that depends on the observation); logdet = sum log_s
    over the missing values."""

    def __init__(self, channels: int, features: int, *, bound: float = 3.0) -> None:
        super().__init__()
        self.bound = bound
        self.net = nn.Conv2d(features, 2 * channels, 1)
        nn.init.zeros_(self.net.weight)
        nn.init.zeros_(self.net.bias)

    def _params(self, context: Context) -> tuple[torch.Tensor, torch.Tensor]:
        shift, raw = full_precision(self.net(context.features)).chunk(2, dim=1)
        return shift * context.missing, soft_clamp(raw, self.bound) * context.missing

    def forward_elements(self, x: torch.Tensor, context: Context
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        shift, log_s = self._params(context)
        return x * log_s.exp() + shift, log_s

    def inverse(self, z: torch.Tensor, context: Context) -> torch.Tensor:
        shift, log_s = self._params(context)
        return (z - shift) * (-log_s).exp()


class ConditionEncoder(nn.Module):
    """A small U-Net over (observed values, mask): features with a receptive field of the whole
    image, computed once per image and shared by the prior and every layer. Any H, W: the
    decoder resizes to the skip connection's size."""

    def __init__(self, channels: int, features: int, width: int = 64) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
                                 nn.ReLU(inplace=True),
                                 nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU(inplace=True))

        self.enc1 = block(2 * channels, width)
        self.enc2 = block(width, 2 * width, stride=2)
        self.enc3 = block(2 * width, 2 * width, stride=2)
        self.dec2 = block(4 * width, 2 * width)
        self.dec1 = block(3 * width, width)
        self.out = nn.Conv2d(width, features, 1)

    def forward(self, observed: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(torch.cat([observed, missing], dim=1))
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(torch.cat([F.interpolate(e3, size=e2.shape[-2:]), e2], dim=1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, size=e1.shape[-2:]), e1], dim=1))
        return self.out(d1)


def build_conditional_flow(channels: int, features: int, *, steps: int = 8, hidden: int = 64
                           ) -> ConditionalSequential:
    """``steps`` couplings over squeezed ``channels`` (a multiple of 4) cycling through the
    patterns and both parities, each followed by a context-dependent affine."""
    layers: list[ConditionalFlow] = []
    for i in range(steps):
        pattern = PATTERNS[(i // 2) % len(PATTERNS)]
        layers.append(MaskedAffineCoupling(channels, features, pattern=pattern, parity=i % 2,
                                           hidden=hidden))
        layers.append(ConditionalAffine(channels, features))
    return ConditionalSequential(*layers)
