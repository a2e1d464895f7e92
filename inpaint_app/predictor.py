"""The predictor: an upload to a fill in the upload's own frame, the one path that the app's
Inpaint tab and ``flowpaint inpaint`` share.

An upload is brought to the model by its input normalization (``normalize.fit_for_fill``: the
dataset's framing and polarity, or a plain resize for a colour model; off: the plain fit at the
model's size), a mask is carried into model pixels, the model fills them
(``inpainting.inpaint``), and the fill goes back into the upload's frame, size and polarity
(``Framing.restore``), pasted over the mask's pixels only, or blended a little beyond its edge.

    fitted = Fitted.of(upload, bundle)
    mask, frame_mask = fitted.preset("bottom", seed=0)
    filled = inpaint_upload(bundle, fitted, mask, frame_mask)   # filled.image: a PIL image
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

from .bundle import ModelBundle
from .images import Resize, to_8bit, to_pil
from .inpainting import InpaintResult, inpaint
from .masks import make_mask
from .normalize import Framing, fit_for_fill


@dataclass
class Fitted:
    """An upload made ready for filling: the model input ``x``, the map between the upload and
    the model's pixels (``framing``; None when normalization is off) and what was done, in
    words. Masks and fills live in ``frame``: the upload's own (H, W), or the model's when
    normalization is off."""

    upload: Image.Image
    x: torch.Tensor
    framing: Framing | Resize | None
    note: str

    @classmethod
    def of(cls, upload: Image.Image, bundle: ModelBundle, normalize: bool = True) -> Fitted:
        x, framing, note = fit_for_fill(upload, bundle.image_shape, bundle.recipe, normalize)
        return cls(upload, x, framing, note)

    @property
    def shape(self) -> tuple[int, int]:
        """The model's (H, W)."""
        return tuple(self.x.shape[1:])

    @property
    def frame(self) -> tuple[int, int]:
        framed = self.framing is not None
        return (self.upload.height, self.upload.width) if framed else self.shape

    def preset(self, name: str, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
        """The mask preset ``name`` in model pixels, and in the frame."""
        mask = make_mask(name, self.shape, seed=seed)
        framed = self.framing is not None
        return mask, (self.framing.to_upload_mask(mask) if framed else mask.numpy())

    def model_mask(self, mask: np.ndarray, *, strokes: bool = False) -> torch.Tensor:
        """A bool mask of the frame (with ``strokes``: of any size, e.g. brush strokes on the
        upload) in model pixels: a model pixel is missing when a quarter of it is, or, with
        ``strokes``, when any stroke touches it, so that no thin stroke is dropped."""
        framing = self.framing or Resize((mask.shape[1], mask.shape[0]), self.shape)
        return touched(mask, framing, self.shape) if strokes else framing.to_model_mask(mask)

    def paste(self, fill: torch.Tensor, mask: np.ndarray, *, blend: bool = False,
              keep_colour: bool = True) -> Image.Image:
        """The model-space ``fill`` (uint8 ``[C, H, W]``) back in the upload's frame, size and
        polarity over ``mask`` (the frame's); elsewhere the upload's own pixels, in colour with
        ``keep_colour`` where it has colour. ``blend``: the fill fades out over half a model
        pixel beyond the mask's edge, so that an enlarged fill shows no seam. Without framing,
        the fill itself."""
        if self.framing is None:
            return to_pil(fill)
        whole = self.framing.restore(fill, self.upload, np.ones(mask.shape, bool))
        feather = upload_pixels_per_model_pixel(self.framing) / 2 if blend else 0.0
        return paste_fill(whole, self.upload, mask, feather=feather, keep_colour=keep_colour)


@dataclass
class Filled:
    """A fill: the model's result (model pixels), the masks in model pixels and in the frame,
    and the fill in the upload's frame (``Fitted.paste``)."""

    result: InpaintResult
    mask: torch.Tensor
    frame_mask: np.ndarray
    image: Image.Image


def inpaint_upload(bundle: ModelBundle, fitted: Fitted, mask: torch.Tensor,
                   frame_mask: np.ndarray, *, blend: bool = False, keep_colour: bool = True,
                   **options: Any) -> Filled:
    """Fill the ``mask`` model pixels of a fitted upload with ``inpainting.inpaint``
    (``options``: its method, steps, seed, ...) and paste the fill back over ``frame_mask``."""
    result = inpaint(bundle, fitted.x, mask, **options)
    image = fitted.paste(result.image, frame_mask, blend=blend, keep_colour=keep_colour)
    return Filled(result, mask, frame_mask, image)


def touched(mask: np.ndarray, framing: Framing | Resize, shape: tuple[int, int]
            ) -> torch.Tensor:
    """bool ``[H, W]`` model pixels that any ``mask`` pixel (upload frame) falls in, under the
    framing's own map back to the upload (``to_upload_mask``, which pastes the fill): what is
    painted is filled, however thin the stroke (issue 36.3; a quarter-covered rule dropped five
    of six strokes). Found by mapping the bits of each model row and column index back."""
    height, width = shape
    inside = framing.to_upload_mask(torch.ones(shape, dtype=torch.bool)) & mask
    index = []  # the model row, then column, of each painted upload pixel inside the view
    for axis, count in ((0, height), (1, width)):
        number = np.zeros(int(inside.sum()), dtype=np.int64)
        for bit in range(max(1, (count - 1).bit_length())):
            stripes = (np.arange(count) >> bit) & 1 == 1
            pattern = stripes[:, None] if axis == 0 else stripes[None, :]
            moved = framing.to_upload_mask(torch.from_numpy(np.broadcast_to(pattern, shape)
                                                            .copy()))
            number |= moved[inside].astype(np.int64) << bit
        index.append(number)
    out = np.zeros(shape, dtype=bool)
    out[index[0], index[1]] = True
    # An enlarged upload (a small digit framed at 20 px) spans several model pixels a pixel,
    # of which the map back names one: the framing's own sampling finds the others.
    return torch.from_numpy(out) | framing.to_model_mask(mask)


def upload_pixels_per_model_pixel(framing: Framing | Resize) -> float:
    """How many upload pixels a model pixel spans (the smaller of the two axes)."""
    if isinstance(framing, Resize):
        return min(framing.size[0] / framing.shape[1], framing.size[1] / framing.shape[0])
    return 1.0 / max(framing.scale)


def has_colour(image: Image.Image) -> bool:
    """True when some pixel's red, green and blue differ (a grey image saved as RGB is not)."""
    if image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
        return False
    r, g, b = (np.asarray(band) for band in to_8bit(image, 3).split())
    return bool((r != g).any() or (g != b).any())


def paste_fill(fill: Image.Image, upload: Image.Image, mask: np.ndarray,
               feather: float = 0.0, keep_colour: bool = True) -> Image.Image:
    """The upload with the ``mask`` pixels (bool ``[H, W]``) taken from ``fill`` (the same
    size), the fill blended in over ``feather`` pixels beyond the mask's edge (none below 1), so
    that an enlarged fill shows no seam; other pixels are the upload's own, in colour where it
    has colour and ``keep_colour`` (a grayscale fill stays grey: the model knows no colour)."""
    mode = "RGB" if fill.mode == "RGB" or (keep_colour and has_colour(upload)) else "L"
    base = np.asarray(to_8bit(upload, 3 if mode == "RGB" else 1), dtype=np.float32)
    paint = np.asarray(fill.convert(mode), dtype=np.float32)
    alpha = mask.astype(np.float32)
    if feather >= 1:  # a ramp from 1 at the edge to 0 about ``feather`` pixels out
        soft = Image.fromarray(mask.astype(np.uint8) * 255).filter(
            ImageFilter.GaussianBlur(feather / 2))
        alpha = np.maximum(alpha, np.clip(np.asarray(soft, dtype=np.float32) / 127.5, 0, 1))
    if mode == "RGB":
        alpha = alpha[..., None]
    return Image.fromarray((base + (paint - base) * alpha + 0.5).clip(0, 255).astype(np.uint8))
