"""Pictures the app shows, drawn with Pillow: the uncertainty heat map, the histogram of
calibration scores with the uploads marked, the missing pixels of an input, and thumbnails.

Pillow instead of a plotting library keeps the install small, and an image is equally easy to
return through the API.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

from ..anomaly_map import SHOWN_FROM, overlay

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


def map_panel(view: Image.Image, values: torch.Tensor | np.ndarray, level: float,
              side: int = 224) -> Image.Image:
    """An image (the model's view, or an upload) ``side`` pixels wide with its anomaly map
    (``inpaint_app.anomaly_map``, of the image's size; NaN where the model saw nothing) laid
    over it, and a colour bar under it whose ticks are in units of the map's hot-spot
    ``level``."""
    width, height = side, round(side * view.height / view.width)
    big = view.resize((width, height), Image.Resampling.NEAREST if view.width < side
                      else Image.Resampling.LANCZOS)
    array = values.detach().float().cpu().numpy() if torch.is_tensor(values) else values
    smooth = Image.fromarray(np.asarray(array, dtype=np.float32)).resize(
        (width, height), Image.Resampling.BILINEAR)
    # Under the labels (which end 33 pixels below the view), room for the caption Gradio's
    # gallery lays over a thumbnail's bottom (about 27 screen pixels): clear of the labels in
    # a thumbnail 200 screen pixels high or more.
    panel = Image.new("RGB", (width, height + 74), "white")
    panel.paste(overlay(big, np.asarray(smooth), level), (0, 0))
    bar = np.linspace(0, 2, width - 16, dtype=np.float32)[None].repeat(10, 0)  # 0 to 2 levels
    panel.paste(overlay(Image.new("L", (width - 16, 10), 0), bar * level, level),
                (8, height + 6))
    draw, font = ImageDraw.Draw(panel), _font(11)
    for share, label, anchor in ((SHOWN_FROM, "half", "ma"), (1.0, "hot-spot level", "ma"),
                                 (2.0, "2x", "ra")):
        x = 8 + share / 2 * (width - 17)
        draw.line([x, height + 4, x, height + 18], fill=_INK)
        draw.text((x, height + 20), label, fill=_INK, font=font, anchor=anchor)
    return panel


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
                    width: int = 640, plot_height: int = 190) -> Image.Image:
    """Bars of ``counts`` between ``edges``, a red line at ``threshold`` and an orange line per
    ``(label, score)`` mark, its label in the first row where it hides no other label; marks
    beyond the axis get an arrow at that edge and are listed, with their scores, under the axis.
    The picture grows with the rows and lists, so every mark can be found."""
    font = _font(12)
    lo, hi = float(edges[0]), float(edges[-1])
    left, right = 48, 16
    span = hi - lo if hi > lo else 1.0

    def x_of(value: float) -> float:
        return left + (min(max(value, lo), hi) - lo) / span * (width - left - right)

    placed, below, above = mark_layout(marks, lo, hi, x_of, font.getlength, width - right)
    rows = max((row for *_, row in placed), default=-1) + 1
    footer = _beyond_lines(below, above, font, width - 16)
    top = 28 + _ROW * rows
    bottom = top + plot_height
    image = Image.new("RGB", (width, bottom + 40 + _ROW * len(footer)), "white")
    draw = ImageDraw.Draw(image)
    tallest = max(max(counts, default=1), 1)
    for start, stop, count in zip(edges[:-1], edges[1:], counts, strict=False):
        y = bottom - count / tallest * (plot_height - 20)
        draw.rectangle([x_of(start), y, max(x_of(stop) - 1, x_of(start)), bottom], fill=_BAR)
    _axis(draw, lo, hi, x_of, bottom, width, font)
    draw.text((left, 6), f"{title}: {sum(counts):,} images", fill=_INK, font=font)
    if threshold is not None and math.isfinite(threshold):
        x = x_of(threshold)
        draw.line([x, top, x, bottom], fill=_THRESHOLD, width=2)
        draw.text((x + 3, top), "threshold", fill=_THRESHOLD, font=font)
    for label, x, anchor, row in placed:
        y = 28 + _ROW * row
        draw.line([x, y, x, bottom], fill=_UPLOAD, width=2)
        draw.text((x + 3 if anchor == "la" else x - 3, y), label, fill=_UPLOAD, font=font,
                  anchor=anchor)
    for edge, group, sign in ((left, below, -1), (width - right, above, 1)):
        if group:
            y = (top + bottom) / 2
            draw.polygon([(edge + 8 * sign, y), (edge, y - 7), (edge, y + 7)], fill=_UPLOAD)
    for i, line in enumerate(footer):
        draw.text((8, bottom + 40 + _ROW * i), line, fill=_UPLOAD, font=font)
    return image


_ROW = 15  # pixels per label row


def mark_layout(marks: list[tuple[str, float]], lo: float, hi: float,
                x_of: Callable[[float], float], text_width: Callable[[str], float],
                right_edge: float) -> tuple[list[tuple[str, float, str, int]],
                                            list[tuple[str, float]], list[tuple[str, float]]]:
    """Where each mark goes: ``(label, x, anchor, row)`` for marks on the axis, each label in the
    first row where it overlaps no other; then the marks below and above the axis (non-finite
    scores count as above)."""
    below = [(label, score) for label, score in marks if score < lo]
    above = [(label, score) for label, score in marks if score > hi or math.isnan(score)]
    inside = sorted(((x_of(score), label) for label, score in marks if lo <= score <= hi),
                    key=lambda mark: mark[0])  # stable: ties keep the upload order
    placed, ends = [], []  # ends[row]: where the last label in that row stops
    for x, label in inside:
        size = text_width(label) + 3
        start, stop, anchor = (x, x + size, "la") if x + size <= right_edge else (
            x - size, x, "ra")
        row = next((r for r, end in enumerate(ends) if end + 4 <= start), len(ends))
        ends[row:row + 1] = [stop]
        placed.append((label, x, anchor, row))
    return placed, below, above


def _beyond_lines(below: list[tuple[str, float]], above: list[tuple[str, float]],
                  font: ImageFont.ImageFont, width: float) -> list[str]:
    """The marks beyond each edge as wrapped text lines: '< below the axis: #3 (-4.1), ...'."""
    lines = []
    for group, head in ((below, "< below the axis:"), (above, "> beyond the axis:")):
        line = head
        for label, score in group:
            item = f" {label} ({score:.3g})"
            if font.getlength(line + item) > width:
                lines.append(line)
                line = "   "
            line += item
        if group:
            lines.append(line)
    return lines


def _axis(draw: ImageDraw.ImageDraw, lo: float, hi: float, x_of: Callable[[float], float],
          bottom: float, width: int, font: ImageFont.ImageFont) -> None:
    draw.line([x_of(lo), bottom, x_of(hi), bottom], fill=_INK)
    for value in np.linspace(lo, hi, 5):
        x = x_of(float(value))
        draw.line([x, bottom, x, bottom + 4], fill=_INK)
        draw.text((x, bottom + 6), f"{value:.3g}", fill=_INK, font=font, anchor="mt")
    draw.text((width // 2, bottom + 26), "score (higher = more anomalous)", fill=_INK,
              font=font, anchor="mm")


def thumbnail_html(image: Image.Image, size: int = 42) -> str:
    """An ``<img>`` holding ``image`` as a PNG data URL (a table cell can show it)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (f'<img src="data:image/png;base64,{data}" width="{size}" height="{size}" '
            'alt="the image as the model saw it">')
