"""The input battery for image reading: every odd file gets a clear error or a documented fit."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from inpaint_app.images import (
    ImageError,
    describe_fit,
    open_image,
    peek_image,
    save_png,
    to_mask,
    to_model_input,
    to_pil,
)

SHAPE = (1, 28, 28)


def encode(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def digit() -> Image.Image:
    """A white bar on black, the MNIST look."""
    array = np.zeros((28, 28), dtype=np.uint8)
    array[4:24, 12:16] = 255
    return Image.fromarray(array)


@pytest.mark.parametrize("data, message", [
    (b"", "empty file"),
    (b"this is text, not a picture", "not an image"),
    (encode(Image.effect_noise((28, 28), 64))[:400], "truncated or corrupt"),
])
def test_unreadable_inputs_get_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        open_image(data)


def test_a_text_file_named_png_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "digit.png"
    path.write_text("not a png")
    with pytest.raises(ImageError, match="not an image"):
        open_image(path)


def test_a_missing_file_names_only_the_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file: ghost.png"):
        open_image(tmp_path / "ghost.png")


def test_decompression_bomb_is_refused() -> None:
    """A tiny PNG that declares 20000 x 20000 pixels never gets decoded."""
    bomb = encode(Image.new("1", (20000, 20000)))
    assert len(bomb) < 200_000
    with pytest.raises(ImageError, match="too large|pixels"):
        open_image(bomb)


def test_too_many_pixels_are_refused_from_the_header(monkeypatch: pytest.MonkeyPatch) -> None:
    """7000 x 7000 (over the limit, under Pillow's own) is refused without decoding a pixel."""
    png = encode(Image.new("1", (7000, 7000)))

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    for read in (open_image, peek_image):
        with pytest.raises(ImageError, match="7000x7000; at most 40,000,000 pixels"):
            read(png)
    assert peek_image(encode(digit())).size == (28, 28)


def test_oversized_file_is_refused_before_decoding() -> None:
    with pytest.raises(ImageError, match="larger than"):
        open_image(b"\x89PNG" + b"\0" * 2048, max_bytes=1024)


def test_huge_but_legal_image_is_resized() -> None:
    image = Image.new("L", (3000, 2000), 200)
    x = to_model_input(open_image(encode(image)), SHAPE)
    assert x.shape == SHAPE and x.dtype == torch.uint8 and int(x.min()) == 200


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "I;16", "I", "F"])
def test_every_mode_becomes_the_model_input(mode: str) -> None:
    image = digit().convert(mode) if mode not in ("I;16", "I", "F") else digit()
    if mode == "I;16":
        image = Image.fromarray(np.asarray(digit(), dtype=np.uint16) * 257)
    elif mode in ("I", "F"):
        image = digit().convert(mode)
    x = to_model_input(image, SHAPE)
    assert x.shape == SHAPE and x.dtype == torch.uint8
    assert int(x[0, 10, 13]) >= 250 and int(x[0, 2, 2]) <= 5  # the bar stays white on black
    assert to_model_input(image, (3, 28, 28)).shape == (3, 28, 28)


def test_sixteen_bit_png_round_trip_through_bytes() -> None:
    array = np.full((28, 28), 65535, dtype=np.uint16)
    array[:14] = 0
    x = to_model_input(open_image(encode(Image.fromarray(array))), SHAPE)
    assert int(x[0, 0, 0]) == 0 and int(x[0, 27, 0]) == 255


def test_transparent_pixels_become_black() -> None:
    image = Image.new("RGBA", (28, 28), (255, 255, 255, 0))
    assert int(to_model_input(image, SHAPE).max()) == 0


def test_one_by_one_image_is_upscaled() -> None:
    x = to_model_input(open_image(encode(Image.new("L", (1, 1), 77))), SHAPE)
    assert x.shape == SHAPE and int(x.min()) == int(x.max()) == 77


def test_animated_gif_uses_its_first_frame() -> None:
    frames = [Image.new("L", (28, 28), value) for value in (0, 255, 128)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    x = to_model_input(open_image(buffer.getvalue()), SHAPE)
    assert int(x.max()) == 0


def test_a_phone_mpo_jpeg_uses_its_first_picture() -> None:
    """Some phones save a .jpg as MPO (a JPEG followed by more pictures): it opens as its first."""
    pictures = [Image.new("L", (28, 28), value) for value in (230, 20)]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="MPO", save_all=True, append_images=pictures[1:])
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "MPO"
    x = to_model_input(open_image(buffer.getvalue()), SHAPE)
    assert abs(int(x.float().mean()) - 230) <= 2


def test_exif_orientation_is_applied() -> None:
    """A JPEG stored sideways with orientation 6 (rotate 90 degrees clockwise) comes upright."""
    stored = Image.new("L", (40, 20), 0)
    stored.paste(255, (0, 0, 20, 20))  # white left half as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    upright = open_image(encode(stored, "JPEG", exif=exif, quality=95))
    assert upright.size == (20, 40)
    array = np.asarray(upright)
    assert array[:20].mean() > 200 and array[20:].mean() < 50  # white on top after rotation


def test_describe_fit_says_what_happens() -> None:
    text = describe_fit(Image.new("RGB", (64, 48)), SHAPE)
    assert text == "64x48 RGB -> converted to grayscale -> resized to 28x28 (Lanczos)"
    assert describe_fit(Image.new("L", (28, 28)), SHAPE) == "28x28 L"


def test_masks_are_white_for_missing_and_resized_by_nearest() -> None:
    mask = Image.new("L", (56, 56), 0)
    mask.paste(255, (0, 0, 56, 28))
    m = to_mask(mask, (28, 28))
    assert m.dtype == torch.bool and m[:14].all() and not m[14:].any()
    gray = to_mask(Image.new("L", (28, 28), 127), (28, 28))
    assert not gray.any()  # below 128 is observed


def test_to_pil_refuses_non_finite_tensors() -> None:
    bad = torch.full((1, 4, 4), float("nan"))
    with pytest.raises(ImageError, match="NaN or Inf"):
        to_pil(bad)
    assert to_pil(torch.full((1, 4, 4), 0.5)).getpixel((0, 0)) == 128


def test_save_png_is_atomic_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    save_png(torch.zeros(1, 4, 4, dtype=torch.uint8), tmp_path / "ok.png")
    assert Image.open(tmp_path / "ok.png").size == (4, 4)
    with pytest.raises(ImageError):
        save_png(torch.full((1, 4, 4), float("inf")), tmp_path / "bad.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.png"]


def test_save_png_into_an_unwritable_folder_fails_cleanly(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder that refuses the final rename (read-only; root ignores chmod, so the refusal is
    simulated) raises and leaves no temporary file."""
    import os

    def refuse(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied", dst)

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        save_png(torch.zeros(1, 4, 4, dtype=torch.uint8), tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []
