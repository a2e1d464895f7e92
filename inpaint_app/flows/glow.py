"""Glow: steps of ActNorm, invertible 1x1 conv (LU form) and affine coupling, L levels x K steps.

References: Kingma, Dhariwal, Glow: Generative Flow with Invertible 1x1 Convolutions
(arXiv:1807.03039).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import Flow, Sequential, Split, Squeeze, full_precision, per_channel, positions
from .realnvp import AffineCoupling, max_levels


class ActNorm(Flow):
    """z = (x + bias) * exp(log_scale) per channel; logdet = H*W*sum(log_scale).

    The first batch seen in training sets bias and scale so that the output has zero mean and unit
    variance per channel. ``initialized`` is a buffer, so a reloaded model never re-initialises.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation from one batch."""
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)
        self.bias.copy_(-flat.mean(dim=1))
        self.log_scale.copy_(-(flat.std(dim=1) + 1e-6).log())
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialized):
            self.initialize(x)
        z = (x + per_channel(self.bias, x)) * per_channel(self.log_scale, x).exp()
        return z, (positions(x) * self.log_scale.sum()).expand(x.shape[0])

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * per_channel(-self.log_scale, z).exp() - per_channel(self.bias, z)


class InvConv1x1LU(Flow):
    """Invertible 1x1 convolution, W = P L (U + diag(sign * exp(log_s))); logdet = H*W*sum(log_s).

    P and sign are fixed buffers; starts from a random rotation. When no gradient can flow to
    the weights (eval under ``no_grad``/``inference_mode``, or frozen parameters), W, its inverse
    and sum(log_s) are computed once and reused until a parameter or buffer changes (in-place
    updates bump the tensor's version counter; ``.to()`` gives new storage), so scoring and
    inpainting skip the per-call assembly and matrix inverse. Writes through ``.data`` bypass
    the version counter: change weights under ``torch.no_grad()`` or by ``load_state_dict``.

    Under ``torch.compile`` the cache is read without that check (comparing data pointers breaks
    the graph, and the versions change the guards, so dynamo recompiled until its limit): call
    ``precompute()`` eagerly before compiling, and again after changing the weights
    (``inpaint_app.compiled`` does both). Without a cache the compiled code assembles W inline.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        q = torch.linalg.qr(torch.randn(channels, channels))[0]
        p, lower, upper = torch.linalg.lu(q)
        diag = upper.diagonal()
        self.register_buffer("perm", p)
        self.register_buffer("sign", diag.sign())
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(diag.abs().log())
        self._cache: tuple[tuple, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def weight(self) -> torch.Tensor:
        with torch.autocast(self.lower.device.type, enabled=False):  # float32 even under AMP
            eye = torch.eye(self.lower.shape[0], dtype=self.lower.dtype, device=self.lower.device)
            lower = self.lower * self.lower_mask + eye
            upper = self.upper * self.lower_mask.T + torch.diag(self.sign * self.log_s.exp())
            return self.perm @ lower @ upper

    def _state_key(self) -> tuple:
        return tuple((t._version, t.data_ptr(), t.dtype, t.device)
                     for t in (self.lower, self.upper, self.log_s, self.perm, self.sign))

    def _frozen(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(W, W^-1, sum log_s), cached, when no gradient can reach the weights; else None."""
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            return None
        if torch.compiler.is_compiling():  # plain tensors, no key check (see the class)
            return None if self._cache is None else self._cache[1:]
        key = self._state_key()
        if self._cache is None or self._cache[0] != key:
            # Plain tensors (not inference tensors), so a later autograd pass through the
            # input, e.g. gradient-based inpainting with frozen weights, may use them.
            with torch.inference_mode(False), torch.no_grad():
                w = self.weight()
                self._cache = (key, w, torch.linalg.inv(w), self.log_s.sum())
        return self._cache[1:]

    def precompute(self) -> None:
        """Fill the cache now (or refresh it for changed weights), eagerly, as the first call
        under ``no_grad`` would: before ``torch.compile`` traces this layer."""
        with torch.no_grad():
            self._frozen()

    @staticmethod
    def _mix(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # Never under autocast: the log-det is exact only for the W that is applied.
        with torch.autocast(x.device.type, enabled=False):
            x = full_precision(x)
            if x.dim() == 2:
                return F.linear(x, w)
            return F.conv2d(x, w.reshape(*w.shape, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cached = self._frozen()
        w, log_s_sum = (cached[0], cached[2]) if cached else (self.weight(), self.log_s.sum())
        return self._mix(x, w), (positions(x) * log_s_sum).expand(x.shape[0])

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        cached = self._frozen()
        return self._mix(z, cached[1] if cached else torch.linalg.inv(self.weight()))


def glow_step(channels: int, **coupling: Any) -> Sequential:
    """One step of flow: ActNorm -> 1x1 conv -> affine coupling."""
    return Sequential(ActNorm(channels), InvConv1x1LU(channels),
                      AffineCoupling(channels, mask="channel", **coupling))


def build_glow(image_shape: tuple[int, int, int], *, levels: int | None = None, steps: int = 8,
               hidden: int = 128, bound: float = 2.0, scale: str = "sigmoid",
               shift_bound: float | None = 5.0, split_prior: bool = True) -> Flow:
    """L levels of (squeeze, K steps, split). With ``split_prior`` a coupling conditions the
    factored-out half on the kept half before the split (Glow's learned split prior, as a flow)."""
    c, h, w = image_shape
    levels = levels if levels is not None else max_levels(h, w)
    coupling = {"hidden": hidden, "bound": bound, "scale": scale, "shift_bound": shift_bound}

    def level(ch: int, hh: int, ww: int, remaining: int) -> Flow:
        ch, hh, ww = 4 * ch, hh // 2, ww // 2
        layers: list[Flow] = [Squeeze()] + [glow_step(ch, **coupling) for _ in range(steps)]
        if remaining > 1:
            if split_prior:
                layers.append(AffineCoupling(ch, mask="channel", parity=1, **coupling))
            keep = ch // 2
            inner_shape = (4 * keep, hh // 2, ww // 2)
            layers.append(Split(level(keep, hh, ww, remaining - 1), inner_shape))
        return Sequential(*layers)

    return level(c, h, w, levels)
