"""Classical fills: starting points for likelihood ascent and the benchmark's baselines.

Each takes pixels ``y`` in [0, 1] (float ``[B, C, H, W]``) and a bool mask of the same shape
(True = missing) and returns a float fill in [0, 1] that keeps the observed pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.restoration import inpaint_biharmonic

# With nothing observed there is nothing to interpolate: every fill starts at mid-grey.
EMPTY_VALUE = 0.5


def mean_fill(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Missing pixels take the mean of the observed pixels of their image and channel."""
    observed = (~mask).to(y.dtype)
    count = observed.sum(dim=(2, 3), keepdim=True)
    mean = (y * observed).sum(dim=(2, 3), keepdim=True) / count.clamp(min=1)
    mean = torch.where(count > 0, mean, torch.full_like(mean, EMPTY_VALUE))
    return torch.where(mask, mean.expand_as(y), y)


def biharmonic_fill(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """scikit-image's biharmonic inpainting, image by image (on CPU), clipped to [0, 1].

    References: Damelin, Hoang, On surface completion and image inpainting by biharmonic
    functions (2018).
    """
    out = y.detach().clone()
    for i in range(y.shape[0]):
        hole = mask[i].any(dim=0).cpu().numpy()
        if not hole.any():
            continue
        if hole.all():
            out[i] = torch.where(mask[i], EMPTY_VALUE, y[i])
            continue
        image = y[i].detach().cpu().numpy().astype(np.float64).transpose(1, 2, 0)
        filled = inpaint_biharmonic(image, hole, channel_axis=-1).transpose(2, 0, 1)
        filled = torch.from_numpy(np.clip(filled, 0.0, 1.0)).to(y)
        out[i] = torch.where(mask[i], filled, y[i])
    return out


def noise_fill(y: torch.Tensor, mask: torch.Tensor, generators: list[torch.Generator]
               ) -> torch.Tensor:
    """Missing pixels drawn uniformly from [0, 1], one generator per image."""
    noise = torch.stack([torch.rand(y.shape[1:], generator=g) for g in generators]).to(y)
    return torch.where(mask, noise, y)


FILLS = ("biharmonic", "mean", "noise")
