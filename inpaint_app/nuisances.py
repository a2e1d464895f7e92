"""Capture nuisances: what happens to an image between the dataset and an upload.

Each turns a uint8 ``[1, H, W]`` image into the PIL image a user would upload (its size may
differ). Used to measure whether a verdict changes with capture rather than content
(``pipelines.ood_eval``'s nuisance section).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageFilter

from .normalize import prepare, recipe_for

DIRECTIONS = ((1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1))


def _pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(image[0].numpy())


def shifted(pixels: int) -> Callable[[torch.Tensor, int], Image.Image]:
    """Shift by ``pixels`` in one of 8 directions (chosen by the image's index), black fill."""
    def apply(image: torch.Tensor, index: int) -> Image.Image:
        dx, dy = DIRECTIONS[index % len(DIRECTIONS)]
        out = torch.zeros_like(image)
        h, w = image.shape[1:]
        sx, sy = dx * pixels, dy * pixels
        out[:, max(0, sy):h + min(0, sy), max(0, sx):w + min(0, sx)] = \
            image[:, max(0, -sy):h - max(0, sy), max(0, -sx):w - max(0, sx)]
        return _pil(out)
    return apply


def upscaled(size: int) -> Callable[[torch.Tensor, int], Image.Image]:
    """Bicubic upscale to ``size`` x ``size``, as a screenshot or a re-saved photo would be."""
    return lambda image, index: _pil(image).resize((size, size), Image.Resampling.BICUBIC)


def jpeg(quality: int) -> Callable[[torch.Tensor, int], Image.Image]:
    """A JPEG round trip at ``quality``."""
    def apply(image: torch.Tensor, index: int) -> Image.Image:
        buffer = io.BytesIO()
        _pil(image).save(buffer, format="JPEG", quality=quality)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("L")
    return apply


def blurred(radius: float) -> Callable[[torch.Tensor, int], Image.Image]:
    """Gaussian blur of ``radius`` pixels."""
    return lambda image, index: _pil(image).filter(ImageFilter.GaussianBlur(radius))


def gamma(value: float) -> Callable[[torch.Tensor, int], Image.Image]:
    """Intensity curve x -> 255 (x / 255) ** value."""
    table = [round(255 * (v / 255) ** value) for v in range(256)]
    return lambda image, index: _pil(image).point(table)


def contrast(factor: float) -> Callable[[torch.Tensor, int], Image.Image]:
    """Intensities scaled by ``factor`` towards black."""
    table = [round(v * factor) for v in range(256)]
    return lambda image, index: _pil(image).point(table)


def inverted(image: torch.Tensor, index: int) -> Image.Image:
    """Black on white: a scan or a drawing."""
    return _pil(255 - image)


NUISANCES: dict[str, Callable[[torch.Tensor, int], Image.Image]] = {
    "none": lambda image, index: _pil(image),
    "shifted 1 px": shifted(1),
    "shifted 2 px": shifted(2),
    "upscaled to 400 px": upscaled(400),
    "JPEG quality 75": jpeg(75),
    "blur 0.5 px": blurred(0.5),
    "blur 0.7 px": blurred(0.7),
    "gamma 0.8": gamma(0.8),
    "contrast 0.85": contrast(0.85),
    "black on white": inverted,
}


def apply_all(name: str, images: torch.Tensor) -> list[Image.Image]:
    """The uploads made from ``images`` (uint8 ``[N, 1, H, W]``) by nuisance ``name``."""
    nuisance = NUISANCES[name]
    return [nuisance(image, i) for i, image in enumerate(images)]


def low_resolution(side: int, stretch: bool = False, margin: int = 1
                   ) -> Callable[[torch.Tensor, int], Image.Image]:
    """The content re-captured at ``side`` pixels on its longer edge (box filter), as a scan at
    a low resolution stores it; with ``stretch`` both edges fill ``side`` (forms and datasets
    that stretch each digit to its box); ``margin`` black pixels around it."""
    def apply(image: torch.Tensor, index: int) -> Image.Image:
        page = _pil(image)
        box = page.getbbox()
        if box is None:
            return page.resize((side + 2 * margin,) * 2, Image.Resampling.BOX)
        content = page.crop(box)
        w, h = content.size
        size = (side, side) if stretch else (max(1, round(side * w / max(w, h))),
                                             max(1, round(side * h / max(w, h))))
        small = content.resize(size, Image.Resampling.BOX)
        out = Image.new("L", (side + 2 * margin, side + 2 * margin))
        out.paste(small, (margin + (side - size[0]) // 2, margin + (side - size[1]) // 2))
        return out
    return apply


def binarized(level: int, then: Callable[[torch.Tensor, int], Image.Image] | None = None
              ) -> Callable[[torch.Tensor, int], Image.Image]:
    """Two levels only (0 and 255, cut at ``level``), after ``then`` if given: a bitmap form."""
    def apply(image: torch.Tensor, index: int) -> Image.Image:
        page = then(image, index) if then is not None else _pil(image)
        return page.point(lambda v: 255 if v >= level else 0)
    return apply


def stroke_width(thicker: bool) -> Callable[[torch.Tensor, int], Image.Image]:
    """Strokes a pen's width thicker (3x3 maximum) or half a pixel thinner (3x3 minimum at
    twice the size): other pens and other scanners' thresholds."""
    def apply(image: torch.Tensor, index: int) -> Image.Image:
        page = _pil(image)
        if thicker:
            return page.filter(ImageFilter.MaxFilter(3))
        big = page.resize((page.width * 2, page.height * 2), Image.Resampling.BILINEAR)
        return big.filter(ImageFilter.MinFilter(3)).resize(page.size, Image.Resampling.BOX)
    return apply


def photographed(falloff: float, side: int = 280, paper: float = 225.0, ink: float = 0.15,
                 grain: float = 3.0) -> Callable[[torch.Tensor, int], Image.Image]:
    """A photo of the digit written in dark ink on paper, ``side`` pixels square: the paper
    reflects ``paper`` grey levels where the light is full, the ink ``ink`` of that; the light
    falls off linearly across the page by ``falloff`` grey levels (of the paper) in a direction
    chosen by the image's index; then sensor grain (``grain`` levels, seeded by the index), a
    0.6 px lens blur and JPEG quality 90. The measured fall-off is ``falloff`` exactly."""
    def apply(image: torch.Tensor, index: int) -> Image.Image:
        rng = np.random.default_rng(index)
        strokes = np.asarray(_pil(image).resize((side, side), Image.Resampling.BICUBIC),
                             dtype=np.float64) / 255.0
        angle = 2 * np.pi * rng.random()
        ys, xs = np.mgrid[0:side, 0:side] / (side - 1) - 0.5
        along = np.cos(angle) * xs + np.sin(angle) * ys
        along = (along - along.min()) / max(np.ptp(along), 1e-9)
        light = (paper - falloff * along) / paper  # the page's light, 1 at its brightest
        photo = paper * light * (1.0 - (1.0 - ink) * strokes.clip(0, 1))
        photo += rng.normal(0.0, grain, photo.shape)
        page = Image.fromarray(photo.clip(0, 255).round().astype(np.uint8))
        page = page.filter(ImageFilter.GaussianBlur(0.6))
        buffer = io.BytesIO()
        page.save(buffer, format="JPEG", quality=90)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("L")
    return apply


def random_capture(image: torch.Tensor, rng: np.random.Generator) -> Image.Image:
    """One capture of random kind and strength, for training on what uploads look like: a
    resample from a random size, JPEG of random quality, a blur, a contrast or gamma change, a
    small shift, a low-resolution re-capture of the content (kept or stretched to its box),
    binarization (alone or after a low resolution), or another stroke width; each at least as
    strong as the evaluation's version of it."""
    kind = int(rng.integers(10))
    if kind == 0:
        return upscaled(int(rng.integers(40, 513)))(image, 0)
    if kind == 1:
        return jpeg(int(rng.integers(60, 96)))(image, 0)
    if kind == 2:
        return blurred(float(rng.uniform(0.3, 0.9)))(image, 0)
    if kind == 3:
        return contrast(float(rng.uniform(0.6, 1.0)))(image, 0)
    if kind == 4:
        return gamma(float(rng.uniform(0.7, 1.4)))(image, 0)
    if kind == 5:
        return shifted(int(rng.integers(1, 3)))(image, int(rng.integers(8)))
    low = low_resolution(int(rng.integers(8, 21)), stretch=bool(rng.integers(2)),
                         margin=int(rng.integers(0, 3)))
    if kind == 6:
        return low(image, 0)
    if kind == 7:
        return binarized(int(rng.integers(64, 193)))(image, 0)
    if kind == 8:
        return binarized(int(rng.integers(64, 193)), then=low)(image, 0)
    return stroke_width(thicker=bool(rng.integers(2)))(image, 0)


def captured_copies(images: torch.Tensor, dataset: str | None, copies: int, seed: int = 0
                    ) -> torch.Tensor:
    """``copies`` random captures of every uint8 ``[N, 1, H, W]`` image, each brought back by the
    input normalization, as the model will see uploads (``pipelines.train --capture``)."""
    rng = np.random.default_rng(seed)
    recipe, shape = recipe_for(dataset), tuple(images.shape[1:])
    return torch.stack([prepare(random_capture(x, rng), shape, recipe)[0]
                        for _ in range(copies) for x in images])
