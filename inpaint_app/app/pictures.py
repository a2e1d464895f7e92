"""Pictures the app shows, drawn with Pillow: the uncertainty heat map, the histogram of
calibration scores with the uploads marked, and the missing pixels of an input.

Pillow instead of a plotting library keeps the install small, and an image is equally easy to
return through the API.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

_BAR = (120, 144, 186)
_THRESHOLD = (200, 40, 40)
_UPLOAD = (230, 120, 0)
_INK = (40, 40, 40)


def heat_map(values: torch.Tensor) -> Image.Image:
    """float ``[H, W]`` (e.g. per-pixel standard deviation) as an RGB heat map, scaled so the
    largest value is brightest; zero everywhere gives black."""
    array = values.detach().float().cpu().numpy()
    array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0).clip(min=0.0)
    top = float(array.max())
    gray = Image.fromarray((array / top * 255 + 0.5).astype(np.uint8) if top > 0
                           else np.zeros(array.shape, np.uint8))
    return ImageOps.colorize(gray, black="#000004", mid="#b5367a", white="#fcfdbf")


def show_missing(image: Image.Image, mask: torch.Tensor) -> Image.Image:
    """The model's input with the missing pixels painted magenta (what the fill must replace)."""
    rgb = np.array(image.convert("RGB"))
    rgb[mask.cpu().numpy()] = (255, 0, 255)
    return Image.fromarray(rgb)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without a scalable default font
        return ImageFont.load_default()


def score_histogram(edges: list[float], counts: list[int], threshold: float | None,
                    marks: list[tuple[str, float]], *, title: str = "validation scores",
                    size: tuple[int, int] = (640, 260)) -> Image.Image:
    """Bars of ``counts`` between ``edges``, a red line at ``threshold`` and an orange line per
    ``(label, score)`` mark; marks outside the range sit at the edge with an arrow."""
    width, height = size
    left, right, top, bottom = 48, 16, 28, 40
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = _font(12)
    lo, hi = float(edges[0]), float(edges[-1])
    span = hi - lo if hi > lo else 1.0
    tallest = max(max(counts, default=1), 1)

    def x_of(value: float) -> float:
        return left + (min(max(value, lo), hi) - lo) / span * (width - left - right)

    def y_of(count: float) -> float:
        return height - bottom - count / tallest * (height - top - bottom)

    for start, stop, count in zip(edges[:-1], edges[1:], counts, strict=False):
        draw.rectangle([x_of(start), y_of(count), max(x_of(stop) - 1, x_of(start)),
                        height - bottom], fill=_BAR)
    draw.line([left, height - bottom, width - right, height - bottom], fill=_INK)
    for value in np.linspace(lo, hi, 5):
        x = x_of(float(value))
        draw.line([x, height - bottom, x, height - bottom + 4], fill=_INK)
        draw.text((x, height - bottom + 6), f"{value:.3g}", fill=_INK, font=font, anchor="mt")
    draw.text((width // 2, height - 14), "score (higher = more anomalous)", fill=_INK,
              font=font, anchor="mm")
    draw.text((left, 6), f"{title}: {sum(counts):,} images", fill=_INK, font=font)
    if threshold is not None and math.isfinite(threshold):
        x = x_of(threshold)
        draw.line([x, top, x, height - bottom], fill=_THRESHOLD, width=2)
        draw.text((x + 3, top), "threshold", fill=_THRESHOLD, font=font)
    for label, score in marks:
        _mark(draw, x_of(score), top + 14, height - bottom, label, score, lo, hi, font)
    return image


def _mark(draw: ImageDraw.ImageDraw, x: float, top: float, bottom: float, label: str,
          score: float, lo: float, hi: float, font: ImageFont.ImageFont) -> None:
    """One upload's line; an arrow says when its score lies beyond the histogram's range."""
    draw.line([x, top, x, bottom], fill=_UPLOAD, width=2)
    beyond, below = score > hi, score < lo
    text = f"{label} >" if beyond else f"< {label}" if below else label
    anchor = "ra" if beyond else "la"
    position = (x - 4 if beyond else x + 4, top)
    draw.rectangle(draw.textbbox(position, text, font=font, anchor=anchor), fill="white")
    draw.text(position, text, fill=_UPLOAD, font=font, anchor=anchor)
