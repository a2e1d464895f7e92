"""Where an image is unlike the training images: a per-pixel map from the exact conditional
likelihood of each region given the rest of the image.

Square windows (10 and 12 pixels at a stride of 4, scaled with the image: 61 windows for 28x28)
each go missing in turn, and the bundle's conditional inpainting flow reads each window given
every other pixel (pixels at their bin centres, so a map is deterministic). All windows of all
images go through the flow as one batch (in chunks of ``ROWS``). Every layer of that flow is
elementwise affine, so each pixel has its own terms (``ConditionalInpainter.value_terms``): its
latent residual standardized by the spread the flow predicts for it from the rest of the image,
and its exact share of the window's bits.

- A window's *surprise* is the mean squared standardized residual of its pixels: in the flow's
  own units of spread, so a textured garment, whose pixels the flow predicts loosely, is not
  surprising for its texture alone, and a stroke where the flow predicted blank background is
  (the raw bits of a window confused the two). Small where the window is as the flow expects,
  far above 1 where it is not. A pixel's window map is the largest surprise of the windows over
  it, averaged over the two sizes: a mean let the windows holding only part of a stroke dilute
  it among Fashion-MNIST's textures. A calibration without ``cover`` (older) keeps the mean,
  which its level was set for.
- The map sharpens that to the pixels that carry the bits: ``window map * (1 + tanh(z_p / 2) /
  2)``, with ``z_p`` a pixel's share of its windows' bits less its validation median, over one
  spread for the whole image.
- Calibration (``calibrate_map``, on clean validation images) stores ``cover``, the per-pixel
  medians, the spread and the hot-spot ``level``: the map's peak that a ``fpr`` share of
  validation images exceed, one level for every position. The surprise is not rescaled per
  position: the flow is over-cautious where it is sure, so its validation median runs from 0.03
  at MNIST's blank border to 0.6 in the middle (recorded as ``window_median_range``), but
  rescaling it per position (a z-score, a ratio to the median or the median subtracted) made
  border noise look like strokes and lowered the AUROCs (docs/anomaly.md, "Where").

Chosen on foreign strokes pasted over test images (docs/anomaly.md, "Where";
measured by ``benchmarks/anomaly_maps.py`` on other images): the raw bits of a window (per
position z-scored) confused texture with surprise on Fashion-MNIST (image AUROC 0.78 against
0.93 for the surprise); 6 and 8 pixel windows gave noisier peaks than 10 and 12. The
calibration is stored in the inpainter's card (``card.anomaly_map``; ``pipelines.calibrate
--maps``). The largest surprise against the mean (the benchmark's pastes from test image 3,000
on, other crop seeds; clean test images 7,000-7,199): Fashion-MNIST pixel AUROC 0.942 / 0.908
pasted over / as a block against 0.925 / 0.868, image AUROC 0.903 / 0.934 against 0.890 /
0.902; MNIST 0.974 / 0.937 and 0.984 / 0.986 against 0.972 / 0.929 and 0.988 / 0.988. Sharing
a window's surprise among its pixels by their own squared residuals (so that a blank corner
beside a stroke stays cool) lost on both models (Fashion-MNIST pixel AUROC 0.83-0.91): one
pixel's residual is too noisy.

References: ACFlow (Li, Akbar, Oliva, ICML 2020) for the arbitrary conditional likelihood.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from .bundle import ModelBundle
from .conditional import ConditionalInpainter
from .images import to_8bit

WINDOWS = ((10, 4), (12, 4))  # (side, stride) in pixels of a 28x28 model, scaled for others
FPR = 0.05  # share of clean validation images allowed a hot spot above the level
COVER = "max"  # how the windows over a pixel combine (calibrations without it: "mean")
ROWS = 128  # (image, window) pairs per flow pass
SHARPEN = 0.5  # how much the pixels' bits move the window map (a factor 1 +- SHARPEN)
SPREAD_QUANTILE = 0.9
SHOWN_FROM = 0.5  # of the hot-spot level: below it the overlay leaves the image as it is
YELLOW, RED = np.array([255.0, 221.0, 0.0]), np.array([228.0, 26.0, 28.0])


class MapUnavailable(ValueError):
    """A bundle that cannot give a map (no inpainter, or no map calibration); says why."""


def scaled_windows(shape: Sequence[int], windows: Sequence[Sequence[int]] = WINDOWS
                   ) -> list[tuple[int, int]]:
    """``windows`` (for 28 pixels) scaled to an image of ``shape`` (H, W): side and stride
    grow with the shorter side, so every model gets about as many windows."""
    factor = min(shape[-2:]) / 28
    return [(max(2, round(side * factor)), max(1, round(stride * factor)))
            for side, stride in windows]


def _starts(length: int, side: int, stride: int) -> list[int]:
    starts = list(range(0, length - side + 1, stride))
    return starts if starts[-1] == length - side else [*starts, length - side]


def window_masks(shape: Sequence[int], windows: Sequence[Sequence[int]]
                 ) -> tuple[torch.Tensor, list[int]]:
    """bool ``[W, H, W']``: every window of every size, row by row (the last window of a row
    or column ends at the image's edge), and the number of windows of each size."""
    height, width = shape[-2:]
    masks, counts = [], []
    for side, stride in windows:
        if side > min(height, width):
            raise ValueError(f"a {side}-pixel window does not fit a {height}x{width} image")
        for top in _starts(height, side, stride):
            for left in _starts(width, side, stride):
                mask = torch.zeros(height, width, dtype=torch.bool)
                mask[top:top + side, left:left + side] = True
                masks.append(mask)
        counts.append(len(masks) - sum(counts))
    return torch.stack(masks), counts


@torch.no_grad()
def window_terms(inpainter: ConditionalInpainter, images: torch.Tensor, masks: torch.Tensor,
                 *, rows: int = ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """For uint8 ``images``: each window's surprise given the rest (mean squared standardized
    residual of its values, ``[N, W]``) and each pixel's share of the bits of the windows over
    it (mean over them and its channels, ``[N, H, W]``); ``rows`` (image, window) pairs a
    flow pass."""
    device = next(inpainter.parameters()).device
    y = (images.to(device=device, dtype=torch.float32) + 0.5) / 256.0  # bin centres
    masks = masks.to(device)
    pairs = torch.cartesian_prod(torch.arange(len(images)), torch.arange(len(masks))).to(device)
    surprise = torch.empty(len(pairs), device=device)
    shares = torch.zeros(len(images), *masks.shape[1:], device=device)
    for start in range(0, len(pairs), rows):
        image, window = pairs[start:start + rows].unbind(1)
        bits, residual = inpainter.value_terms(y[image], masks[window])
        values = masks[window].sum((1, 2)) * residual.shape[1]
        surprise[start:start + rows] = residual.float().square().sum((1, 2, 3)) / values
        shares.index_add_(0, image, bits.float().mean(dim=1))
    shares = shares / masks.sum(dim=0).clamp(min=1)
    return surprise.reshape(len(images), len(masks)).cpu(), shares.cpu()


def _map(surprise: torch.Tensor, shares: torch.Tensor, masks: torch.Tensor,
         counts: Sequence[int], calibration: dict[str, Any]) -> torch.Tensor:
    """The map of the module docstring from ``window_terms``' output and a calibration."""
    sizes = []
    for size, cover in zip(surprise.split(list(counts), dim=1),
                           masks.float().split(list(counts)), strict=True):
        if calibration.get("cover", "mean") == "mean":
            sizes.append(torch.einsum("nw,whv->nhv", size, cover)
                         / cover.sum(dim=0).clamp(min=1))
            continue
        largest = size.new_zeros(len(size), *cover.shape[1:])  # surprise is never negative
        for values, window in zip(size.T, cover, strict=True):
            largest = torch.maximum(largest, values[:, None, None] * window)
        sizes.append(largest)
    pixels = (shares - torch.tensor(calibration["pixel_center"])) / calibration["pixel_spread"]
    return torch.stack(sizes).mean(dim=0) * (1 + SHARPEN * torch.tanh(pixels / 2))


def calibrate_map(inpainter: ConditionalInpainter, images: torch.Tensor, *,
                  windows: Sequence[Sequence[int]] = WINDOWS, fpr: float = FPR,
                  source: str = "validation images", rows: int = ROWS) -> dict[str, Any]:
    """The map's calibration on clean uint8 ``images`` (``card.anomaly_map``): the windows,
    how windows combine, per pixel the median of its bits share and one spread of all shares,
    and the hot-spot level; the range of the windows' median surprise is recorded."""
    if len(images) < 20:
        raise ValueError(f"{len(images)} images cannot calibrate a map: give at least 20")
    shape = tuple(images.shape[-2:])
    windows = scaled_windows(shape, windows)
    masks, counts = window_masks(shape, windows)
    start = time.perf_counter()
    surprise, shares = window_terms(inpainter, images, masks, rows=rows)
    seconds = (time.perf_counter() - start) / len(images)
    pixel_center = shares.median(dim=0).values
    pixel_spread = (torch.quantile(shares, SPREAD_QUANTILE, dim=0) - pixel_center).median()
    calibration = {"windows": [list(w) for w in windows], "counts": list(counts), "cover": COVER,
                   "pixel_center": [_rounded(row) for row in pixel_center],
                   "pixel_spread": round(max(float(pixel_spread), 1e-3), 5)}
    peaks = _map(surprise, shares, masks, counts, calibration).flatten(1).amax(dim=1)
    medians = surprise.median(dim=0).values
    return {**calibration, "level": round(float(torch.quantile(peaks, 1 - fpr)), 4),
            "fpr": fpr, "n": len(images), "source": source,
            "window_median_range": [round(float(medians.min()), 3),
                                    round(float(medians.max()), 3)],
            "seconds_per_image": round(seconds, 4)}


def _rounded(values: torch.Tensor) -> list[float]:
    return [round(float(v), 4) for v in values]


def map_calibration(bundle: ModelBundle) -> dict[str, Any]:
    """The bundle's map calibration, or ``MapUnavailable`` saying what is missing."""
    if bundle.inpainter is None:
        raise MapUnavailable("this model has no conditional inpainting flow (inpainter.pt), "
                             "so it has no anomaly map; install one beside it "
                             "(python -m pipelines.calibrate MODEL --inpainter CFLOW --maps)")
    calibration = bundle.inpainter_card.anomaly_map
    if not calibration:
        where = bundle.path or "MODEL"
        raise MapUnavailable("the inpainter's map is not calibrated: run "
                             f"python -m pipelines.calibrate {where} --maps")
    return calibration


def anomaly_map(bundle: ModelBundle, images: torch.Tensor, *, rows: int = ROWS
                ) -> torch.Tensor:
    """float ``[N, H, W]`` (higher = more anomalous; small where the image is as the flow
    expects) for uint8 ``[N, C, H, W]`` images at the model's size: the calibrated map of the
    module docstring; ``map_calibration(bundle)["level"]`` is the hot-spot level.
    ``MapUnavailable`` for a bundle without an inpainter or a map calibration."""
    calibration = map_calibration(bundle)
    if images.dim() == 3:
        images = images[None]
    if tuple(images.shape[1:]) != tuple(bundle.image_shape):
        raise ValueError(f"images of shape {tuple(images.shape[1:])}, the model takes "
                         f"{tuple(bundle.image_shape)}")
    masks, counts = window_masks(images.shape[-2:], calibration["windows"])
    if list(counts) != list(calibration["counts"]):
        raise MapUnavailable("the map calibration's windows do not fit this model's images")
    surprise, shares = window_terms(bundle.inpainter, images, masks, rows=rows)
    return _map(surprise, shares, masks, counts, calibration)


def to_upload_frame(values: torch.Tensor, framing: Any, size: tuple[int, int]) -> np.ndarray:
    """A model-space map (``[H, W]``) in an upload's frame, at its ``size`` (width, height):
    through the input normalization's framing (``normalize.Framing``: the model pixel at
    ``scale * (x, y) + offset``), or resized for the plain fit (``framing`` None or
    ``images.Resize``). Upload pixels the model did not see are NaN."""
    image = Image.fromarray(values.detach().float().cpu().numpy())
    if framing is None or not hasattr(framing, "offset"):
        return np.asarray(image.resize(size, Image.Resampling.BILINEAR))
    (sx, sy), (ox, oy) = framing.scale, framing.offset
    affine = (sx, 0.0, ox, 0.0, sy, oy)
    moved = np.asarray(image.transform(size, Image.Transform.AFFINE, affine,
                                       resample=Image.Resampling.BILINEAR), dtype=np.float32)
    seen = Image.new("L", image.size, 255).transform(size, Image.Transform.AFFINE, affine,
                                                     resample=Image.Resampling.NEAREST)
    return np.where(np.asarray(seen) > 0, moved, np.nan)


def overlay(base: Image.Image, values: np.ndarray, level: float) -> Image.Image:
    """``base`` in grey with ``values`` (a map of its size, NaN where not seen) laid over it:
    clear below half the hot-spot ``level``, then yellow, turning red and opaque at the level
    and above (full red at twice the level)."""
    grey = np.asarray(to_8bit(base, 1), dtype=np.float32)[..., None]
    share = np.nan_to_num(np.asarray(values, dtype=np.float32) / max(level, 1e-6), nan=0.0)
    alpha = 0.8 * np.clip((share - SHOWN_FROM) / (1 - SHOWN_FROM), 0, 1)[..., None]
    colour = YELLOW + (RED - YELLOW) * np.clip(share - 1, 0, 1)[..., None]
    rgb = grey * (1 - alpha) + colour * alpha
    return Image.fromarray((rgb + 0.5).clip(0, 255).astype(np.uint8))
