"""Reading untrusted images and masks, and fitting them to a model's input shape.

Every entry point (web app, batch scripts, Python API) goes through ``open_image`` and
``to_model_input``, so an upload is handled the same way everywhere:

1. open with Pillow, refusing non-images, truncated files, empty files and decompression bombs;
   size and pixel count come from the header, so an oversized image is refused before decoding;
2. first frame only (animated GIF/WebP, the several pictures of a phone's MPO "JPEG"), EXIF
   orientation applied;
3. mode: 16-bit grayscale scaled to 8 bits; alpha composited on black (MNIST-style backgrounds);
   palette/CMYK/other modes converted to L (1 channel models) or RGB (3 channel models);
4. resize to the model's H x W with Lanczos (antialiased) when the size differs.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .atomic import atomic_write

MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000  # below Pillow's own bomb limit; a 6000 x 6000 photo still opens
FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "TIFF", "WEBP", "PPM")  # MPO: phones' .jpg


class ImageError(ValueError):
    """An input that cannot be used as an image or mask; the message says why."""


def open_image(source: str | Path | bytes | BinaryIO | Image.Image, *,
               max_bytes: int = MAX_FILE_BYTES, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """A fully decoded, upright, single-frame PIL image, or ``ImageError``; file size, format and
    pixel count are checked (``peek_image``) before a single pixel is decoded."""
    if isinstance(source, Image.Image):
        image = _check_pixels(source, max_pixels)
    else:
        image = peek_image(source, max_bytes=max_bytes, max_pixels=max_pixels)
    try:
        image.seek(0)
        image.load()
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"truncated or corrupt image: {err}") from None
    return image


def peek_image(source: str | Path | bytes | BinaryIO, *, max_bytes: int = MAX_FILE_BYTES,
               max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The image opened but not decoded, or ``ImageError``: Pillow reads only the header, so an
    oversized image is refused in milliseconds (a 7000 x 7000 PNG of 47 KB included)."""
    data = _read_bytes(source, max_bytes)
    if not data:
        raise ImageError("empty file: no image data")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(f"not an image this app reads (formats: {', '.join(FORMATS)})"
                         ) from None
    except Image.DecompressionBombError as err:
        raise ImageError(f"image too large to decode safely: {err}") from None
    if image.format not in FORMATS:
        raise ImageError(f"unsupported format {image.format}: use {', '.join(FORMATS)}")
    return _check_pixels(image, max_pixels)


def _check_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"image is {width}x{height}; at most {max_pixels:,} pixels are accepted")
    if width < 1 or height < 1:
        raise ImageError("image has no pixels")
    return image


def _read_bytes(source: str | Path | bytes | BinaryIO, max_bytes: int) -> bytes:
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
    elif isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"no such file: {path.name}")
        if path.stat().st_size > max_bytes:
            raise ImageError(f"{path.name} is larger than {max_bytes // 2**20} MB")
        data = path.read_bytes()
    else:
        data = source.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageError(f"file larger than {max_bytes // 2**20} MB")
    return data


def to_8bit(image: Image.Image, channels: int) -> Image.Image:
    """Mode conversion to L (channels=1) or RGB (channels=3), as documented above."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "La", "RGBa"):
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("L" if channels == 1 else "RGB")


def to_model_input(image: Image.Image, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 ``[C, H, W]`` for a model of ``image_shape``: mode conversion, then a Lanczos
    resize when the size differs."""
    channels, height, width = image_shape
    image = to_8bit(image, channels)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(array.copy())


def describe_fit(image: Image.Image, image_shape: tuple[int, int, int]) -> str:
    """One line saying what ``to_model_input`` does to this image (shown in the app)."""
    channels, height, width = image_shape
    mode = "grayscale" if channels == 1 else "RGB"
    steps = [f"{image.width}x{image.height} {image.mode}"]
    if image.mode != ("L" if channels == 1 else "RGB"):
        steps.append(f"converted to {mode}")
    if image.size != (width, height):
        steps.append(f"resized to {width}x{height} (Lanczos)")
    return " -> ".join(steps)


@dataclass(frozen=True)
class Resize:
    """The plain fit (``to_model_input``) as a map between an upload and the model's pixels,
    with the methods of ``normalize.Framing`` that carry masks across and paste a fill back
    into the upload's own frame: colour models, which have no input normalization, use it."""

    size: tuple[int, int]  # the upload's (width, height)
    shape: tuple[int, int]  # the model's (height, width)

    def to_model_mask(self, mask: np.ndarray) -> torch.Tensor:
        """A bool mask in the upload's frame, in model pixels (missing when a quarter is)."""
        height, width = self.shape
        image = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8))
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BOX)
        return torch.from_numpy(np.asarray(image) >= 64)

    def to_upload_mask(self, mask: torch.Tensor) -> np.ndarray:
        """A bool model-space mask in the upload's frame (nearest model pixel)."""
        image = Image.fromarray(mask.numpy().astype(np.uint8) * 255)
        if image.size != self.size:
            image = image.resize(self.size, Image.Resampling.NEAREST)
        return np.asarray(image) >= 128

    def restore(self, completed: torch.Tensor, upload: Image.Image, mask: np.ndarray
                ) -> Image.Image:
        """The upload, in the model's mode (L or RGB), with its ``mask`` pixels taken from the
        model-space fill ``completed`` (uint8 ``[C, H, W]``), scaled back to the upload's size."""
        fill = to_pil(completed)
        if fill.size != self.size:
            fill = fill.resize(self.size, Image.Resampling.BICUBIC)
        original = np.asarray(to_8bit(upload, completed.shape[0]))
        where = mask if original.ndim == 2 else mask[..., None]
        return Image.fromarray(np.where(where, np.asarray(fill), original))


def to_mask(image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """bool ``[H, W]``, True where pixels are missing (white, >= 128 after conversion to L).

    ``size`` is (H, W). A mask of another size is resized with nearest neighbour (the app
    paints masks at display size); batch scripts check sizes before calling this.
    """
    height, width = size
    gray = to_8bit(image, 1)
    if gray.size != (width, height):
        gray = gray.resize((width, height), Image.Resampling.NEAREST)
    return torch.from_numpy(np.asarray(gray, dtype=np.uint8) >= 128)


def to_pil(image: torch.Tensor) -> Image.Image:
    """uint8 ``[C, H, W]`` (or float in [0, 1]) to a PIL image (L or RGB)."""
    if image.dtype != torch.uint8:
        if not torch.isfinite(image).all():
            raise ImageError("image tensor has NaN or Inf values")
        image = (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    array = image.detach().cpu().numpy()
    return Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))


def save_png(image: Image.Image | torch.Tensor, path: str | Path) -> None:
    """Write a PNG atomically: a temporary file in the same folder, then rename."""
    path = Path(path)
    image = to_pil(image) if isinstance(image, torch.Tensor) else image
    with atomic_write(path) as f:
        image.save(f, format="PNG")
