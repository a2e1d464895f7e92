"""Capture nuisances: what happens to an image between the dataset and an upload.

Each turns a uint8 ``[1, H, W]`` image into the PIL image a user would upload (its size may
differ). Used to measure whether a verdict changes with capture rather than content
(``pipelines.ood_eval``'s nuisance section).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import torch
from PIL import Image, ImageFilter

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
