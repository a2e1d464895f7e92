"""Exemplar fills: the start the default inpainting climbs from.

A bank of training images ships beside a checkpoint (``exemplars.npz``, uint8 ``[N, C, H, W]``,
drawn from the training split only). A hole is filled with the mean of the ``k`` exemplars
nearest to the image on its observed pixels, corrected near the hole's edge by the interpolated
residual (observed pixels minus that mean; biharmonic, damped with the distance to the nearest
observed pixel). Far from observed pixels the fill is the exemplars' mean (shape); next to them
it follows the image's own values (detail), which is where biharmonic interpolation is strong.

Why: the likelihood of our flows ranks blank or blurry fills too high (docs/inpainting.md), so
ascent from a classical start never moved far from it; a start that already looks like the data
puts the ascent where the density is informative. The bank is data, not a model: the benchmark
reports this start alone (``exemplar`` column) next to the ascent, so the flow's share shows.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt
from torch.nn.functional import affine_grid, avg_pool2d, grid_sample

from .atomic import atomic_write

BANK_FILE = "exemplars.npz"
NEIGHBOURS = 8   # PSNR peaks at 8 of 1/8/32 on MNIST and Fashion-MNIST validation
REACH = 1.0      # residual damping exp(-(d - 1)^2 / REACH^2), d in pixels (validation-chosen)
SHAPE_BLUR = 1.5  # Gaussian sigma in pixels of the shape distance (docs/anomaly.md)
# The shape distance also compares with each exemplar stretched to fill a centred square box of
# this share of the side (MNIST's framing box, 20 of 28 px), as forms and datasets that stretch
# each digit to its box store it; content is what exceeds INK_SHARE of the image's maximum.
STRETCH_BOX = 20 / 28
INK_SHARE = 0.25
# ... and takes the nearer of the image as given and the image narrowed and widened by this
# factor about its centre: a capture that fits a digit to a box changes its aspect (chosen on the
# real-world corpus: docs/anomaly.md, "The shape distance").
ASPECT = 1.2
# Shape rows average SHAPE_POOL x SHAPE_POOL pixels of the blurred image: the blur leaves no
# finer detail, and the search costs a quarter.
SHAPE_POOL = 2


class ExemplarBank:
    """Training images kept as float rows, with squared norms, for masked nearest neighbours."""

    def __init__(self, images: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) == 0:
            raise ValueError(f"an exemplar bank is a non-empty uint8 [N, C, H, W] tensor, got "
                             f"{images.dtype} {tuple(images.shape)}")
        self.images = images
        self.rows = images.flatten(1).float() / 255.0
        self.squares = self.rows.square()
        self.norms = self.squares.sum(1)  # |r|^2 of each exemplar, for whole-image distances
        # Rows and squared norms for nearest_shape_distance, made on its first use.
        self._shape_rows: tuple[torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def distances(self, y: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` mean squared difference between each image (pixels in [0, 1]) and every
        exemplar over the image's observed pixels (float 0/1 of the same shape); 0 where
        nothing is observed."""
        flat, observed = y.flatten(1).float().cpu(), observed.flatten(1).float().cpu()
        squared = ((flat.square() * observed).sum(1, keepdim=True)
                   - 2 * (flat * observed) @ self.rows.T + observed @ self.squares.T)
        return squared.clamp(min=0) / observed.sum(1, keepdim=True).clamp(min=1)

    def nearest_distance(self, y: torch.Tensor) -> torch.Tensor:
        """``[B]`` mean squared difference between each whole image (pixels in [0, 1]) and its
        nearest exemplar: ``distances`` with every pixel observed, in one matmul."""
        flat = y.flatten(1).float().cpu()
        squared = flat.square().sum(1, keepdim=True) - 2 * flat @ self.rows.T + self.norms
        return squared.min(1).values.clamp(min=0) / flat.shape[1]

    def nearest_shape_distance(self, y: torch.Tensor) -> torch.Tensor:
        """``[B]`` distance in shape to the nearest exemplar, as stored or stretched to fill its
        box (``stretched_to_box``), of the image as given or narrowed or widened by ``ASPECT``
        (``aspect_copies``): mean squared difference of ``shape_rows``. Blur and scale remove
        what a capture changes (JPEG, resampling, blur, contrast), the stretched and resized
        copies what a box-filling capture changes (the aspect), and the coarse form stays,
        which is what an unseen kind of image differs in."""
        if self._shape_rows is None:
            stored = self.images.float() / 255.0
            rows = shape_rows(torch.cat([stored, stretched_to_box(stored)]))
            self._shape_rows = rows, rows.square().sum(1)  # 1, or 0 for a blank exemplar
        rows, norms = self._shape_rows
        nearest = []
        for copy in aspect_copies(y.float().cpu()):
            flat = shape_rows(copy)
            squared = flat.square().sum(1, keepdim=True) - 2 * flat @ rows.T + norms
            nearest.append(squared.min(1).values.clamp(min=0) / flat.shape[1])
        return torch.stack(nearest).amin(0)

    def nearest_mean(self, y: torch.Tensor, mask: torch.Tensor, k: int = NEIGHBOURS
                     ) -> torch.Tensor:
        """Mean of the k exemplars closest to each image on its observed pixels; an image with
        nothing observed gets the whole bank's mean."""
        nearest = self.distances(y, ~mask).topk(min(k, len(self)), largest=False).indices
        means = self.rows[nearest].mean(1)
        anything = (~mask).flatten(1).any(1, keepdim=True).cpu()
        means = torch.where(anything, means, self.rows.mean(0, keepdim=True))
        return means.view_as(y).to(y)

    def fill(self, y: torch.Tensor, mask: torch.Tensor, k: int = NEIGHBOURS,
             reach: float = REACH) -> torch.Tensor:
        """Exemplar fill of pixels ``y`` in [0, 1] (``[B, C, H, W]``) where ``mask`` is True."""
        from skimage.restoration import inpaint_biharmonic  # here only: loading a bank needs none

        if tuple(y.shape[1:]) != tuple(self.images.shape[1:]):
            raise ValueError(f"images {tuple(y.shape[1:])} do not match the exemplar bank's "
                             f"{tuple(self.images.shape[1:])}")
        base = self.nearest_mean(y, mask, k)
        out = y.detach().clone()
        for i in range(y.shape[0]):
            hole = mask[i].any(dim=0).cpu().numpy()
            if not hole.any():
                continue
            fill = base[i]
            if not hole.all():
                residual = (y[i] - base[i]).detach().cpu().numpy().astype(np.float64)
                residual = inpaint_biharmonic(residual.transpose(1, 2, 0), hole,
                                              channel_axis=-1).transpose(2, 0, 1)
                distance = distance_transform_edt(hole)
                damping = np.exp(-np.clip(distance - 1.0, 0.0, None) ** 2 / reach ** 2)
                fill = fill + torch.from_numpy(residual * damping[None]).to(y)
            out[i] = torch.where(mask[i], fill.clamp(0.0, 1.0), y[i])
        return out


def stretched_to_box(images: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` images (in [0, 1]) with each one's content (its bounding box of values
    above ``INK_SHARE`` of its maximum, over channels) resized to fill a centred square of
    ``STRETCH_BOX`` of the shorter side, aspect ignored (torchvision's ``roi_align``: bilinear,
    two by two samples a pixel, all images in one call); a blank image stays
    blank."""
    from torchvision.ops import roi_align

    side = max(1, round(min(images.shape[2:]) * STRETCH_BOX))
    top, left = (images.shape[2] - side) // 2, (images.shape[3] - side) // 2
    ink = images.amax(1) > INK_SHARE * images.flatten(1).amax(1).clamp(min=1e-6)[:, None, None]
    rows, cols = ink.any(2), ink.any(1)  # [B, H], [B, W]
    index = torch.arange(images.shape[2]), torch.arange(images.shape[3])
    # Each box spans the centres of its first and last inked row and column (in roi_align's
    # aligned coordinates a pixel's centre is at index + 0.5), so nothing outside it bleeds in.
    y0 = torch.where(rows, index[0], images.shape[2]).amin(1) + 0.5
    y1 = torch.where(rows, index[0], -1).amax(1) + 0.5
    x0 = torch.where(cols, index[1], images.shape[3]).amin(1) + 0.5
    x1 = torch.where(cols, index[1], -1).amax(1) + 0.5
    boxes = torch.stack([torch.arange(len(images)), x0, y0, x1, y1], 1).to(images.dtype)
    out = torch.zeros_like(images)
    if len(images):
        crops = roi_align(images, boxes, output_size=side, sampling_ratio=2, aligned=True)
        blank = ~rows.any(1)
        out[:, :, top:top + side, left:left + side] = crops.masked_fill(
            blank[:, None, None, None], 0.0)
    return out


def aspect_copies(images: torch.Tensor) -> list[torch.Tensor]:
    """``[B, C, H, W]`` images as given, narrowed and widened by ``ASPECT`` about the centre
    (bilinear; zero where a copy reaches outside the image)."""
    copies = [images]
    for factor in (ASPECT, 1 / ASPECT):  # the grid reads the image at x * factor: narrower
        theta = torch.tensor([[factor, 0.0, 0.0], [0.0, 1.0, 0.0]]).to(images)
        grid = affine_grid(theta.expand(len(images), 2, 3), list(images.shape),
                           align_corners=False)
        copies.append(grid_sample(images, grid, align_corners=False))
    return copies


def shape_rows(images: torch.Tensor) -> torch.Tensor:
    """``[B, D]`` rows of ``[B, C, H, W]`` images (in [0, 1]) Gaussian-blurred by ``SHAPE_BLUR``
    pixels in each channel (zero outside the frame), averaged over ``SHAPE_POOL`` pixel blocks
    and scaled to unit length (a blank image stays zero). The blur is two small matrix
    products, about 10x faster on the CPU than a separable convolution over a 20,000-image
    bank."""
    rows, cols = _blur_matrix(images.shape[2]).to(images), _blur_matrix(images.shape[3]).to(images)
    x = avg_pool2d(rows @ images @ cols, SHAPE_POOL, ceil_mode=True).flatten(1)  # symmetric
    return x / x.norm(dim=1, keepdim=True).clamp(min=1e-6)


def _blur_matrix(n: int) -> torch.Tensor:
    """``[n, n]`` matrix of a 1-D Gaussian blur of ``SHAPE_BLUR`` pixels, truncated at 3 sigma."""
    radius = int(np.ceil(3 * SHAPE_BLUR))
    taps = torch.exp(-torch.arange(-radius, radius + 1.0) ** 2 / (2 * SHAPE_BLUR ** 2))
    offset = torch.arange(n)[None, :] - torch.arange(n)[:, None]
    inside = offset.abs() <= radius
    return torch.where(inside, (taps / taps.sum())[(offset + radius).clamp(0, 2 * radius)], 0.0)


def save_bank(images: torch.Tensor, path: str | Path) -> None:
    """Write a bank atomically as a compressed ``.npz`` (no pickle, so loading runs no code)."""
    ExemplarBank(images)  # validates
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images.numpy())
    with atomic_write(path) as f:
        f.write(buffer.getvalue())


def load_bank(path: str | Path) -> ExemplarBank:
    """Read a bank written by ``save_bank``; a bad file raises ValueError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            images = torch.from_numpy(data["images"].copy())
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"{path} is not an exemplar bank ({type(err).__name__}: {err})") from err
    return ExemplarBank(images)
