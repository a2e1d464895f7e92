"""A conditional flow for inpainting: the exact density p(x_missing | x_observed, mask).

uint8 x -> dequantize y = (x + u) / 256 -> logit on the missing pixels -> 2x2 squeeze (a
permutation) -> conditional flow (``inpaint_app.flows.conditional``) -> conditional Gaussian
prior, all conditioned on the observed pixels (taken at their bin centres) and the mask
through one U-Net's features at the squeezed resolution.
log p(y_missing | y_obs) counts the missing dimensions only, every Jacobian included, and
bits per missing dim = (-log p + n ln 256) / (n ln 2), with n the number of missing values.
With every pixel missing it is an unconditional model too.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .density import bits_per_dim_from_log_prob, dequantize
from .flows.base import Squeeze, full_precision, normal_log_density, sum_except_batch
from .flows.conditional import ConditionEncoder, Context, build_conditional_flow
from .flows.realnvp import soft_clamp
from .masks import training_masks
from .preprocess import Logit

EVAL_MASK_SEED = 0


class ConditionalInpainter(nn.Module):
    """Exact conditional log-likelihood of missing pixels, and one-pass sampling of completions.

    ``missing`` arguments are masks ``[B, H, W]`` or ``[B, C, H, W]`` (bool or 0/1 float, True
    where a pixel is missing). Where ``missing`` is None, masks are drawn from the training
    distribution (``inpaint_app.masks.training_masks``) with ``generator``, or with a fixed
    seed, so that validation numbers are reproducible.
    """

    def __init__(self, image_shape: tuple[int, int, int], config: dict[str, Any], *,
                 steps: int = 8, hidden: int = 64, features: int = 32, width: int = 64,
                 alpha: float = 0.05) -> None:
        super().__init__()
        channels, rows, cols = image_shape
        if rows % 2 or cols % 2:
            raise ValueError(f"cflow needs even image sides (a 2x2 squeeze), got {image_shape}")
        channels *= 4
        self.image_shape = tuple(image_shape)
        self.squeeze = Squeeze()
        self.config = config
        self.preprocess = Logit(alpha)
        self.encoder = ConditionEncoder(channels, features, width)
        self.flow = build_conditional_flow(channels, features, steps=steps, hidden=hidden)
        self.prior = nn.Conv2d(features, 2 * channels, 3, padding=1)
        nn.init.zeros_(self.prior.weight)
        nn.init.zeros_(self.prior.bias)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """Shape of one image's latent (the squeezed image)."""
        c, h, w = self.image_shape
        return (4 * c, h // 2, w // 2)

    # ---- masks and context ---------------------------------------------------------------

    def missing_mask(self, missing: torch.Tensor | None, batch: int, device: torch.device,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """A float 0/1 ``[B, C, H, W]`` mask from the caller's, or drawn (see the class)."""
        if missing is None:
            if generator is None:
                generator = torch.Generator().manual_seed(EVAL_MASK_SEED)
            missing = training_masks(batch, self.image_shape[1:], generator)
        if missing.dim() == 3:
            missing = missing[:, None]
        missing = missing.to(device=device, dtype=torch.float32)
        if tuple(missing.shape[2:]) != tuple(self.image_shape[1:]) or missing.shape[0] != batch:
            raise ValueError(f"mask shape {tuple(missing.shape)} does not fit a batch of "
                             f"{batch} images of shape {self.image_shape}")
        return missing.expand(batch, self.image_shape[0], *self.image_shape[1:])

    def _squeeze(self, t: torch.Tensor) -> torch.Tensor:
        return self.squeeze(t)[0]

    def context(self, y: torch.Tensor, missing: torch.Tensor) -> Context:
        """The conditioning, squeezed: observed pixels at their bin centres, centred, zero
        where missing; the mask; the encoder's features of both."""
        centres = (torch.floor(y * 256.0).clamp(0, 255) + 0.5) / 256.0
        missing = self._squeeze(missing)
        observed = (self._squeeze(centres) - 0.5) * (1 - missing)
        return Context(missing, observed, self.encoder(observed, missing))

    def _prior(self, context: Context) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = full_precision(self.prior(context.features)).chunk(2, dim=1)
        return mean, soft_clamp(raw, 4.0)

    # ---- density ---------------------------------------------------------------------------

    def log_prob(self, y: torch.Tensor, missing: torch.Tensor | None = None, *,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact log-density of the missing values of y in [0, 1] given the observed ones
        (a density on [0, 1]^n, n missing values), one per image."""
        missing = self.missing_mask(missing, y.shape[0], y.device, generator)
        return self.conditional_log_prob(y, self.context(y, missing))

    def conditional_log_prob(self, y: torch.Tensor, context: Context) -> torch.Tensor:
        """``log_prob`` under a context the caller computed once (``context(y, missing)``): an
        ascent over the missing pixels leaves the observation, and so the context, fixed."""
        u, logdet_pre = self.preprocess.elementwise(self._squeeze(y))
        missing = context.missing
        z, logdet = self.flow(u * missing, context)
        mean, log_sigma = self._prior(context)
        log_normal = normal_log_density(z, mean, log_sigma)
        return sum_except_batch((log_normal + logdet_pre) * missing) + logdet

    def bits_per_dim(self, x: torch.Tensor, missing: torch.Tensor | None = None, *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Bits per missing dimension, per image (0 for an image with none missing); uint8
        input is dequantized with ``generator`` (float input is taken as already in [0, 1])."""
        y = dequantize(x, generator) if x.dtype == torch.uint8 else x
        missing = self.missing_mask(missing, y.shape[0], y.device, generator)
        return bits_per_dim_from_log_prob(self.conditional_log_prob(y, self.context(y, missing)),
                                          sum_except_batch(missing).clamp(min=1))

    def value_terms(self, x: torch.Tensor, missing: torch.Tensor, *,
                    generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per missing value (float ``[B, C, H, W]``, 0 where observed): its share of the bits of
        the missing values given the observed ones, and its standardized latent residual
        ``(z - mean) / sigma`` under the conditional prior. Every layer is elementwise affine,
        so ``-log p`` is a sum of per-value terms (prior, logit and layer log-derivatives): the
        shares add up exactly, and their mean over the missing values is ``bits_per_dim``."""
        y = dequantize(x, generator) if x.dtype == torch.uint8 else x
        context = self.context(y, self.missing_mask(missing, y.shape[0], y.device))
        u, logdet_pre = self.preprocess.elementwise(self._squeeze(y))
        z, log_s = self.flow.forward_elements(u * context.missing, context)
        mean, log_sigma = self._prior(context)
        log_p = normal_log_density(z, mean, log_sigma) + logdet_pre + log_s
        bits = (math.log(256.0) - log_p) / math.log(2.0) * context.missing
        residual = (z - mean) * (-log_sigma).exp() * context.missing
        return self.squeeze.inverse(bits), self.squeeze.inverse(residual)

    def nll_terms(self, y: torch.Tensor, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p, missing dimensions) per image on training masks drawn with ``generator``:
        the training loss is bits per missing dim over the whole batch."""
        missing = self.missing_mask(None, y.shape[0], y.device, generator)
        return self.conditional_log_prob(y, self.context(y, missing)), sum_except_batch(missing)

    # ---- sampling --------------------------------------------------------------------------

    @torch.no_grad()
    def complete(self, y_obs: torch.Tensor, missing: torch.Tensor, n: int = 1,
                 temperature: float | torch.Tensor = 1.0, *,
                 generator: torch.Generator | None = None,
                 noise: torch.Tensor | None = None, context: Context | None = None
                 ) -> torch.Tensor:
        """``[B, n, C, H, W]`` completions in [0, 1]: the missing pixels drawn in one pass at
        ``temperature`` (a number, or ``[B]``: one per image); the observed pixels are
        ``y_obs``'s, untouched. ``noise``
        (``[B, n, *latent_shape]``, standard normal) replaces draws from ``generator``;
        ``context`` (``context(y_obs, missing)``) saves the encoder pass when the caller has it."""
        batch = y_obs.shape[0]
        missing = self.missing_mask(missing, batch, y_obs.device)
        context = self.context(y_obs, missing) if context is None else context
        mean, log_sigma = self._prior(context)

        def rep(t: torch.Tensor) -> torch.Tensor:
            return t.repeat_interleave(n, dim=0)

        context = Context(rep(context.missing), rep(context.observed), rep(context.features))
        if noise is None:
            noise = torch.randn((batch * n, *mean.shape[1:]), generator=generator,
                                device=y_obs.device if generator is None else generator.device)
        noise = noise.reshape(batch * n, *mean.shape[1:])
        if torch.is_tensor(temperature):
            temperature = rep(temperature.to(y_obs).reshape(batch, *[1] * (mean.dim() - 1)))
        z = (rep(mean) + temperature * rep(log_sigma).exp() * noise.to(y_obs)) * context.missing
        u = self.squeeze.inverse(self.flow.inverse(z, context))
        y = self.preprocess.inverse(u).clamp(0.0, 1.0)
        y = torch.where(rep(missing).bool(), y, rep(y_obs))
        return y.reshape(batch, n, *self.image_shape)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """n images with every pixel missing: the model's unconditional samples."""
        device = next(self.parameters()).device
        y_obs = torch.zeros(n, *self.image_shape, device=device)
        everything = torch.ones(n, *self.image_shape[1:], dtype=torch.bool, device=device)
        return self.complete(y_obs, everything, 1, temperature, generator=generator)[:, 0]


def build_conditional(image_shape: tuple[int, int, int], config: dict[str, Any], *,
                      steps: int = 8, hidden: int = 64, features: int = 32, width: int = 64,
                      alpha: float = 0.05) -> ConditionalInpainter:
    """The model a ``cflow`` config describes (``alpha`` comes from its preprocess entry)."""
    return ConditionalInpainter(image_shape, config, steps=steps, hidden=hidden,
                                features=features, width=width, alpha=alpha)
