"""Mask presets shared by the inpainting API, the batch scripts, the benchmark and the app.

A mask is a bool tensor ``[H, W]`` with True where pixels are missing. The presets follow the
masks of NICE sec. 5.2 (half images, a centre square, random pixels) plus free-form strokes.
References: Dinh et al., NICE (arXiv:1410.8516), sec. 5.2.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

MaskBuilder = Callable[[int, int, torch.Generator], torch.Tensor]


def _rows(height: int, width: int, start: int, stop: int) -> torch.Tensor:
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[start:stop] = True
    return mask


def _top(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """The top half of the rows is missing."""
    return _rows(height, width, 0, height // 2)


def _bottom(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """The bottom half of the rows is missing."""
    return _rows(height, width, height - height // 2, height)


def _left(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """The left half of the columns is missing."""
    return _top(width, height, generator).T.contiguous()


def _right(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """The right half of the columns is missing."""
    return _bottom(width, height, generator).T.contiguous()


def _center(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """A centred square of half the image's side is missing."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    h, w = max(1, height // 2), max(1, width // 2)
    top, left = (height - h) // 2, (width - w) // 2
    mask[top:top + h, left:left + w] = True
    return mask


def _random(fraction: float) -> MaskBuilder:
    def build(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        count = round(fraction * height * width)
        order = torch.randperm(height * width, generator=generator)
        mask = torch.zeros(height * width, dtype=torch.bool)
        mask[order[:count]] = True
        return mask.reshape(height, width)

    build.__doc__ = f"Exactly {round(100 * fraction)} % of the pixels, at random, are missing."
    return build


def _strokes(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """Three free-form brush strokes (random walks of discs), about a quarter of the image."""
    rows = torch.arange(height, dtype=torch.float32)[:, None]
    cols = torch.arange(width, dtype=torch.float32)[None, :]
    mask = torch.zeros(height, width, dtype=torch.bool)
    radius = max(1.0, 0.06 * min(height, width))
    limit = torch.tensor([height - 1.0, width - 1.0])
    for _ in range(3):
        point = torch.rand(2, generator=generator) * limit
        angle = float(torch.rand(1, generator=generator)) * 2 * math.pi
        for _ in range(12):
            mask |= (rows - point[0]) ** 2 + (cols - point[1]) ** 2 <= radius ** 2
            angle += float(torch.randn(1, generator=generator)) * 0.6
            step = radius * torch.tensor([math.sin(angle), math.cos(angle)])
            point = torch.minimum((point + step).clamp(min=0.0), limit)
    return mask


MASK_PRESETS: dict[str, MaskBuilder] = {
    "top": _top,
    "bottom": _bottom,
    "left": _left,
    "right": _right,
    "center": _center,
    "random25": _random(0.25),
    "random50": _random(0.50),
    "random75": _random(0.75),
    "random90": _random(0.90),
    "strokes": _strokes,
}


def describe_mask(preset: str) -> str:
    """One line saying what a preset hides (for help texts and tables)."""
    return (_check(preset).__doc__ or preset).strip()


def _check(preset: str) -> MaskBuilder:
    if preset not in MASK_PRESETS:
        raise ValueError(f"unknown mask preset {preset!r}: choose one of {list(MASK_PRESETS)}")
    return MASK_PRESETS[preset]


def make_mask(preset: str, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """bool ``[H, W]`` for a named preset, True where pixels are missing; random presets
    (``random*``, ``strokes``) depend on ``seed`` only, so a mask is reproducible.

    >>> make_mask("bottom", (4, 4)).sum().item()
    8
    """
    builder = _check(preset)
    height, width = (int(s) for s in size)
    if height < 1 or width < 1:
        raise ValueError(f"mask size must be two positive ints (H, W), got {size!r}")
    generator = torch.Generator().manual_seed(int(seed))
    return builder(height, width, generator)


MASK_KINDS = ("compact", "scattered", "sparse")
# A mask is "scattered" when more than this share of its observed pixels border a missing one,
# and "sparse" when it is scattered and hides more than this share of the pixels.
SCATTERED_BORDER_SHARE = 0.5
SPARSE_MISSING_SHARE = 0.85


def border_share(masks: torch.Tensor) -> torch.Tensor:
    """Per mask of ``[..., H, W]`` (True = missing): the share of observed pixels with a missing
    4-neighbour. Holes and strokes leave most observed pixels far from them (the half-image
    presets 0.07, the centre 0.10, strokes about 0.15); random pixels leave nearly every
    observed pixel beside one (0.65 at 25 %, 0.99 at 75 %). A mask with nothing observed is 0."""
    missing = masks.bool()
    padded = torch.nn.functional.pad(missing.float(), (1, 1, 1, 1)).bool()
    beside = (padded[..., :-2, 1:-1] | padded[..., 2:, 1:-1]
              | padded[..., 1:-1, :-2] | padded[..., 1:-1, 2:])
    observed = ~missing
    touching = (observed & beside).flatten(-2).sum(-1)
    return touching / observed.flatten(-2).sum(-1).clamp(min=1)


def mask_kind(masks: torch.Tensor) -> list[str]:
    """"compact" (holes, halves, strokes), "scattered" (random pixels) or "sparse" (random
    pixels, few of them observed) for each mask of ``[B, H, W]``. The conditional flow's samples
    want their own temperature on each (``pipelines.tune_inpainter``): scattered masks a lower
    one, since every missing pixel sits among observed ones; sparse masks a higher one again,
    since little is observed and the mean of the samples needs their spread."""
    flat = masks.reshape(-1, *masks.shape[-2:]).bool()
    shares = border_share(flat).tolist()
    missing = flat.flatten(1).float().mean(1).tolist()
    return ["compact" if share <= SCATTERED_BORDER_SHARE else
            "sparse" if gone > SPARSE_MISSING_SHARE else "scattered"
            for share, gone in zip(shares, missing, strict=True)]


def training_masks(batch: int, size: tuple[int, int], generator: torch.Generator
                   ) -> torch.Tensor:
    """bool ``[B, H, W]`` masks for training a conditional inpainting model, drawn in one
    vectorised pass: the four half-image presets and the centre square (30 %), random pixels at
    a random rate from 5 to 95 % (20 %), brush strokes of random count, width and length
    (25 %) and random boxes of random size (25 %). Every mask hides at least one pixel."""
    height, width = size
    device = generator.device
    rows = torch.arange(height, device=device, dtype=torch.float32)[None, :, None]
    cols = torch.arange(width, device=device, dtype=torch.float32)[None, None, :]

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, *shape, generator=generator,
                                               device=device)

    fixed = torch.stack([make_mask(name, (height, width)) for name in
                         ("top", "bottom", "left", "right", "center")]).to(device)
    presets = fixed[torch.randint(0, 5, (batch,), generator=generator, device=device)]
    pixels = torch.rand(batch, height, width, generator=generator, device=device) < uniform(
        0.05, 0.95, 1, 1)
    box_h, box_w = uniform(2, height + 1, 1, 1).floor(), uniform(2, width + 1, 1, 1).floor()
    top, left = uniform(0, 1, 1, 1) * (height - box_h + 1), uniform(0, 1, 1, 1) * (
        width - box_w + 1)
    boxes = ((rows >= top.floor()) & (rows < top.floor() + box_h)
             & (cols >= left.floor()) & (cols < left.floor() + box_w))
    strokes = _random_strokes(batch, height, width, generator, rows, cols)
    kind = torch.rand(batch, generator=generator, device=device)[:, None, None]
    masks = torch.where(kind < 0.30, presets, torch.where(
        kind < 0.50, pixels, torch.where(kind < 0.75, strokes, boxes)))
    empty = ~masks.flatten(1).any(dim=1)
    masks[empty, height // 2, width // 2] = True
    return masks


def _random_strokes(batch: int, height: int, width: int, generator: torch.Generator,
                    rows: torch.Tensor, cols: torch.Tensor, max_strokes: int = 5,
                    max_steps: int = 16) -> torch.Tensor:
    """1 to ``max_strokes`` random-walk brush strokes per mask, radius 1 to 3.5 px."""
    device = generator.device
    scale = torch.tensor([height - 1.0, width - 1.0], device=device)
    point = torch.rand(batch, max_strokes, 2, generator=generator, device=device) * scale
    angle = torch.rand(batch, max_strokes, generator=generator, device=device) * 2 * math.pi
    radius = 1.0 + 2.5 * torch.rand(batch, 1, generator=generator, device=device)
    used = (torch.arange(max_strokes, device=device)[None, :]
            < torch.randint(1, max_strokes + 1, (batch, 1), generator=generator, device=device))
    steps = torch.randint(6, max_steps + 1, (batch, max_strokes), generator=generator,
                          device=device)
    mask = torch.zeros(batch, height, width, dtype=torch.bool, device=device)
    for step in range(max_steps):
        live = used & (step < steps)
        disc = ((rows[:, None] - point[..., 0, None, None]) ** 2
                + (cols[:, None] - point[..., 1, None, None]) ** 2) <= radius[..., None, None] ** 2
        mask |= (disc & live[..., None, None]).any(dim=1)
        angle = angle + 0.6 * torch.randn(angle.shape, generator=generator, device=device)
        move = torch.stack([angle.sin(), angle.cos()], dim=-1) * radius[..., None]
        point = torch.minimum((point + move).clamp(min=0.0), scale)
    return mask
