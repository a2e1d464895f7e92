"""Input normalization: polarity, framing by the dataset's recipe, levels, and the way back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from inpaint_app.normalize import RECIPES, prepare, recipe_for
from inpaint_app.nuisances import NUISANCES, apply_all

SHAPE = (1, 28, 28)


def digit(size: int = 28, offset: tuple[int, int] = (0, 0)) -> Image.Image:
    """A white-on-black '7'-like stroke pattern, MNIST-framed at 28 px (scaled for larger)."""
    k = size / 28
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    dx, dy = offset
    draw.line([((8 + dx) * k, (6 + dy) * k), ((20 + dx) * k, (6 + dy) * k),
               ((12 + dx) * k, (23 + dy) * k)], fill=255, width=max(2, round(2.5 * k)))
    return image


def mass_centre(image: torch.Tensor) -> tuple[float, float]:
    array = image[0].double().numpy()
    ys, xs = np.indices(array.shape)
    return (xs * array).sum() / array.sum(), (ys * array).sum() / array.sum()


def test_black_on_white_is_inverted_and_recorded() -> None:
    plain, framing = prepare(digit(), SHAPE, "mnist")
    assert not framing.inverted
    inverted = Image.fromarray(255 - np.asarray(digit()))
    x, framing = prepare(inverted, SHAPE, "mnist")
    assert framing.inverted and "light background: inverted" in framing.describe()
    assert torch.equal(x, plain)


def test_grey_page_is_brought_to_black() -> None:
    page = Image.fromarray(np.clip(np.asarray(digit(), dtype=np.int32) + 60, 0, 255)
                           .astype(np.uint8))
    x, framing = prepare(page, SHAPE, "mnist")
    assert framing.background == 60
    assert x[0, 0].max() == 0 and x.max() >= 190


@pytest.mark.parametrize("offset", [(2, 0), (0, -2), (2, 2), (-1, 1)])
def test_a_shifted_image_is_recentred_by_mass(offset: tuple[int, int]) -> None:
    reference, _ = prepare(digit(), SHAPE, "mnist")
    x, framing = prepare(digit(offset=offset), SHAPE, "mnist")
    assert torch.equal(x, reference)
    cx, cy = mass_centre(x)
    assert abs(cx - 14) <= 0.5 and abs(cy - 14) <= 0.5


def test_a_large_upload_is_fitted_into_20_pixels_and_centred() -> None:
    x, framing = prepare(digit(size=400), SHAPE, "mnist")
    ys, xs = np.nonzero(x[0].numpy() > 0.2 * 255)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 in (19, 20, 21)
    cx, cy = mass_centre(x)  # placed before the levels, which move it a little
    assert abs(cx - 14) <= 0.6 and abs(cy - 14) <= 0.6
    assert "fitted into" in framing.describe()


def test_fashion_recipe_centres_the_box_and_keeps_intensities() -> None:
    item = np.zeros((28, 28), dtype=np.uint8)
    item[4:20, 2:14] = 90  # a dark garment, off-centre
    x, framing = prepare(Image.fromarray(item), SHAPE, "fashion-mnist")
    ys, xs = np.nonzero(x[0].numpy())
    assert (xs.min() + xs.max()) / 2 == pytest.approx(13.5, abs=0.5)
    assert (ys.min() + ys.max()) / 2 == pytest.approx(13.5, abs=0.5)
    assert x.max() == 90  # no contrast stretch: intensity is content for clothes


def test_fashion_item_is_not_shifted_by_faint_ringing_beside_it() -> None:
    """JPEG ringing (here 8 % of the item's brightest pixel, one side only) is not content: a
    centred item stays where it is instead of moving a pixel away from the ringing."""
    item = np.zeros((28, 28), dtype=np.uint8)
    item[4:24, 8:20] = 200  # box centre (13.5, 13.5): already centred
    item[6:22, 20:22] = 16
    x, framing = prepare(Image.fromarray(item), SHAPE, "fashion-mnist")
    assert torch.equal(x[0], torch.from_numpy(item)) and framing.steps == []
    item[6:22, 20:22] = 40  # 20 %: a dark part of the item, which the box must include
    x, framing = prepare(Image.fromarray(item), SHAPE, "fashion-mnist")
    assert framing.offset == (-1, 0) and x[0, 10, 7] == 200


def test_faded_ink_is_stretched_to_mnists_white_level() -> None:
    faded = Image.fromarray((np.asarray(digit(), dtype=np.float64) * 0.8).astype(np.uint8))
    x, framing = prepare(faded, SHAPE, "mnist")
    assert framing.gain == pytest.approx(250 / 204, rel=0.02) and "contrast x1.2" in \
        framing.describe()
    assert x.max() >= 249
    _, framing = prepare(digit(), SHAPE, "mnist")
    assert framing.gain == 1.0  # full-contrast ink is left alone


def test_restore_pastes_the_fill_in_the_uploads_frame_and_polarity() -> None:
    upload = Image.fromarray(255 - np.asarray(digit(size=112)))  # black on white, 4x larger
    x, framing = prepare(upload, SHAPE, "mnist")
    mask = np.zeros((112, 112), dtype=bool)
    mask[56:, :] = True  # the bottom half is missing
    model_mask = framing.to_model_mask(mask)
    assert model_mask[20:].any() and not model_mask[:8].any()
    back = np.asarray(framing.restore(x, upload, mask)).astype(int)
    original = np.asarray(upload).astype(int)
    assert np.array_equal(back[~mask], original[~mask])  # observed pixels untouched
    assert np.abs(back[mask] - original[mask]).mean() < 25  # the digit comes back dark on light
    assert back[mask].min() < 80 and np.median(back[mask]) > 200
    upload_mask = framing.to_upload_mask(model_mask)
    assert upload_mask.shape == (112, 112)  # the model's field covers the content's box only
    assert upload_mask[60:90, 30:80].mean() > 0.9 and upload_mask[:50].mean() < 0.05


def test_plain_resize_recipe_and_unknown_datasets() -> None:
    assert recipe_for("cifar10") is RECIPES["resize"] and recipe_for(None) is RECIPES["resize"]
    x, framing = prepare(digit(size=56), SHAPE, "resize")
    assert x.shape == SHAPE and "resized to 28x28" in framing.describe()
    with pytest.raises(ValueError, match="grayscale"):
        prepare(digit(), (3, 28, 28), "resize")


def test_blank_image_passes_through() -> None:
    x, framing = prepare(Image.new("L", (40, 30), 255), SHAPE, "mnist")
    assert x.shape == SHAPE and x.max() == 0 and framing.inverted


def test_nuisances_make_uploads_of_the_documented_kind() -> None:
    images = torch.stack([torch.from_numpy(np.asarray(digit()).copy())[None]] * 3)
    for name in NUISANCES:
        uploads = apply_all(name, images)
        assert len(uploads) == 3 and all(u.mode == "L" for u in uploads)
    assert apply_all("upscaled to 400 px", images)[0].size == (400, 400)
    assert np.array_equal(np.asarray(apply_all("none", images)[0]), images[0, 0].numpy())
    shifted = np.asarray(apply_all("shifted 2 px", images)[0])
    assert np.array_equal(shifted[:, 2:], images[0, 0].numpy()[:, :-2])
    assert np.asarray(apply_all("black on white", images)[0])[0, 0] == 255


def _photo(falloff: float, grain: float = 0.0, seed: int = 0) -> Image.Image:
    """digit(280) as dark ink on paper of 225 grey levels whose light falls off linearly from
    left to right by ``falloff`` levels, with Gaussian ``grain``."""
    strokes = np.asarray(digit(280), dtype=np.float64) / 255.0
    light = 225.0 - falloff * np.linspace(0.0, 1.0, 280)[None, :]
    photo = light * (1.0 - 0.85 * strokes)
    photo += np.random.default_rng(seed).normal(0.0, grain, photo.shape)
    return Image.fromarray(photo.clip(0, 255).round().astype(np.uint8))


def test_an_evenly_lit_page_is_not_flattened() -> None:
    x, framing = prepare(_photo(0), SHAPE, "mnist")
    assert framing.page is None and "flattened" not in framing.describe()
    for image in (digit(), digit(280)):  # digital images: no page surface, no grain
        _, framing = prepare(image, SHAPE, "mnist")
        assert framing.page is None and framing.grain == 0


@pytest.mark.parametrize("falloff", [40, 100, 120])
def test_light_falling_off_across_the_page_is_flattened(falloff: int) -> None:
    flat, _ = prepare(_photo(0), SHAPE, "mnist")
    x, framing = prepare(_photo(falloff), SHAPE, "mnist")
    assert framing.page is not None
    assert f"its light spans {falloff} grey levels" in framing.describe()
    # The ramp is gone: the model input matches the evenly lit page's within a few levels,
    # where without flattening the dim side's page would survive as grey content.
    assert (x.double() - flat.double()).abs().mean().item() < 3
    unflattened = np.asarray(_photo(falloff), dtype=np.float64)
    assert np.ptp(unflattened[5, 5:-5]) > falloff * 0.9  # the test page does fall off


def test_page_grain_is_measured_and_the_fill_goes_back_into_the_lit_page() -> None:
    upload = _photo(100, grain=3.0)
    x, framing = prepare(upload, SHAPE, "mnist")
    assert 2 < framing.grain < 6  # the noise of the flattened page, a standard deviation
    mask = np.zeros((280, 280), dtype=bool)
    mask[:, 140:] = True  # the dim half
    restored = np.asarray(framing.restore(x, upload, mask), dtype=np.float64)
    original = np.asarray(upload, dtype=np.float64)
    assert np.array_equal(restored[:, :140], original[:, :140])  # outside the mask: as is
    # Inside it, the page light comes back: the fill of page pixels matches the dim page.
    page = np.asarray(digit(280))[:, 140:] == 0
    assert abs(restored[:, 140:][page].mean() - original[:, 140:][page].mean()) < 6


def test_a_model_mask_lands_on_the_upload_pixels_it_covers() -> None:
    """The bottom half and left quarter of a 28 x 28 model field cover exactly rows 300+ and
    columns below 150 of a 600 x 600 upload: no half-pixel shift either way."""
    upload = Image.fromarray(np.random.default_rng(0).integers(0, 256, (600, 600), np.uint8))
    _, framing = prepare(upload, SHAPE, "resize")
    mask = torch.zeros(28, 28, dtype=torch.bool)
    mask[14:] = True
    mask[:, :7] = True
    back = framing.to_upload_mask(mask)
    assert not back[:300, 150:].any() and back[300:].all() and back[:, :150].all()
    half = np.zeros((600, 600), dtype=bool)
    half[300:] = True
    assert torch.equal(framing.to_model_mask(half), torch.arange(28)[:, None].expand(28, 28) >= 14)


def test_a_photographed_garment_keeps_no_floor_around_it() -> None:
    """Fashion-MNIST's recipe isolates a photo's largest object: a dark coat on a light,
    textured floor comes out as the coat alone on black; the same recipe leaves an image at
    the model's size as it is."""
    rng = np.random.default_rng(0)
    floor = 200 + rng.normal(0, 12, (400, 300))  # a light floor with texture
    floor[60:340, 70:230] = 60 + rng.normal(0, 5, (280, 160))  # the coat
    photo = Image.fromarray(floor.clip(0, 255).astype(np.uint8))
    x, framing = prepare(photo, SHAPE, "fashion-mnist")
    assert "object isolated" in framing.describe()
    column = x[0, :, 14].double()
    assert (column[column > 0] > 60).all()  # the coat, bright after inversion; nothing faint
    ys, xs = np.nonzero(x[0].numpy())
    assert xs.min() >= 5 and xs.max() <= 22  # the coat's own width (160 of 280 px), not the floor
    plain, framing = prepare(Image.fromarray(np.asarray(photo.resize((28, 28)))), SHAPE,
                             "fashion-mnist")
    assert "object isolated" not in framing.describe()


def test_a_speck_of_page_beside_a_photographed_digit_is_dropped() -> None:
    """MNIST's recipe keeps a photo's strokes and drops a small speck far from them (a shadow
    or smudge), which would otherwise widen the content box and shrink the digit; a speck as
    large as a stroke stays, as the second part of a digit would."""
    im = Image.new("L", (400, 400), 215)
    draw = ImageDraw.Draw(im)
    draw.line([(150, 120), (250, 120), (180, 300)], fill=30, width=14)  # a '7'
    draw.ellipse([20, 370, 32, 382], fill=60)  # a speck in the corner
    x, framing = prepare(im, SHAPE, "mnist")
    assert "1 speck of page dropped" in framing.describe()
    ys, xs = np.nonzero(x[0].numpy() > 0.2 * 255)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 in (19, 20, 21)  # the 7 fills 20 px
    assert x[0, 24:, :6].max() == 0  # nothing where the speck was
    draw.rectangle([20, 340, 60, 382], fill=30)  # a mark as large as a stroke is kept
    x, framing = prepare(im, SHAPE, "mnist")
    assert "dropped" not in framing.describe()
    assert x[0, 20:, :8].max() > 100
    stored, framing = prepare(Image.fromarray(np.asarray(im.resize((28, 28)))), SHAPE, "mnist")
    assert "dropped" not in framing.describe()  # an image at the model's size is left alone
