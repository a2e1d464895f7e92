"""The predictor (``inpaint_app.predictor``): an upload to a fill in its own frame, the path the
app and ``flowpaint inpaint`` share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from inpaint_app.bundle import ModelBundle, load_bundle
from inpaint_app.predictor import Fitted, inpaint_upload

SHIPPED = Path(__file__).resolve().parents[1] / "trained" / "mnist-glow"


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    return load_bundle(SHIPPED)


def _scan(size: int = 140, mode: str = "L") -> Image.Image:
    """A dark bar on a white page, as a scan would be."""
    page = Image.new("L", (size, size), 255)
    page.paste(0, (size // 2 - 6, size // 5, size // 2 + 6, size * 4 // 5))
    return page.convert(mode)


def test_a_preset_fill_comes_back_in_the_uploads_frame_and_nowhere_else(bundle) -> None:
    upload = _scan()
    fitted = Fitted.of(upload, bundle)
    assert fitted.framing is not None and fitted.frame == (140, 140)
    assert tuple(fitted.x.shape) == bundle.image_shape and "inverted" in fitted.note
    mask, frame_mask = fitted.preset("bottom", seed=0)
    assert mask.shape == (28, 28) and frame_mask.shape == (140, 140) and frame_mask.any()
    filled = inpaint_upload(bundle, fitted, mask, frame_mask, method="exemplar")
    assert filled.result.method == "exemplar" and filled.image.size == upload.size
    out, before = np.asarray(filled.image), np.asarray(upload)
    assert np.array_equal(out[~frame_mask], before[~frame_mask])  # observed: the upload's own
    assert out[2, 2] == 255 and out[100:112, 64:76].mean() < 128  # white page, dark bar back


def test_strokes_keep_every_model_pixel_they_touch(bundle) -> None:
    fitted = Fitted.of(_scan(), bundle)
    stroke = np.zeros((140, 140), bool)
    stroke[:, 71] = True  # one upload pixel wide: a fifth of a model pixel or less
    touched = fitted.model_mask(stroke, strokes=True)
    assert touched.any() and touched.sum() > fitted.model_mask(stroke).sum()


def test_without_normalization_the_frame_is_the_models(bundle) -> None:
    fitted = Fitted.of(_scan(), bundle, normalize=False)
    assert fitted.framing is None and fitted.frame == (28, 28)
    mask, frame_mask = fitted.preset("top")
    assert np.array_equal(frame_mask, mask.numpy())
    assert torch.equal(fitted.model_mask(frame_mask), mask)
    filled = inpaint_upload(bundle, fitted, mask, frame_mask, method="exemplar")
    assert filled.image.size == (28, 28)


def test_a_colour_upload_keeps_its_colours_only_when_asked(bundle) -> None:
    upload = _scan(84, "RGB")
    ImageDraw.Draw(upload).rectangle((0, 0, 10, 10), fill=(200, 30, 30))
    fitted = Fitted.of(upload, bundle)
    mask, frame_mask = fitted.preset("bottom")
    fill = inpaint_upload(bundle, fitted, mask, frame_mask, method="exemplar").result.image
    coloured = fitted.paste(fill, frame_mask, blend=True)
    assert coloured.mode == "RGB" and coloured.getpixel((2, 2)) == (200, 30, 30)
    grey = fitted.paste(fill, frame_mask, keep_colour=False)
    assert grey.mode == "L" and np.array_equal(np.asarray(grey)[frame_mask],
                                               np.asarray(coloured.convert("L"))[frame_mask])
