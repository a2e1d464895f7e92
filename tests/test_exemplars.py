"""Exemplar bank: nearest neighbours on observed pixels, residual near the hole, save/load, and
its use as the default inpainting start."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inpaint_app.bundle import ModelBundle, load_bundle
from inpaint_app.exemplars import BANK_FILE, ExemplarBank, load_bank, save_bank
from inpaint_app.inpainting import inpaint, inpaint_batch, make_mask
from inpaint_app.models import CheckpointError, build_model, load_model, save_model

SHAPE = (1, 8, 8)


def random_bank(n: int = 40, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, *SHAPE), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def pixels(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0


def test_nearest_neighbour_restores_a_bank_image_from_its_observed_half() -> None:
    images = random_bank()
    bank = ExemplarBank(images)
    y = pixels(images[7:8])
    mask = make_mask("bottom", (8, 8))[None, None]
    assert torch.allclose(bank.nearest_mean(y, mask, k=1), y)
    mean3 = bank.nearest_mean(y, mask, k=3)
    assert not torch.allclose(mean3, y)  # averaging other exemplars changes the hidden half


def test_fill_keeps_observed_pixels_and_stays_in_range() -> None:
    bank = ExemplarBank(random_bank())
    y = torch.rand(3, *SHAPE, generator=torch.Generator().manual_seed(1))
    mask = torch.stack([make_mask(p, (8, 8), seed=i) for i, p in
                        enumerate(("top", "center", "random75"))])[:, None]
    out = bank.fill(y, mask)
    assert torch.equal(out[~mask], y[~mask])
    assert out.min() >= 0 and out.max() <= 1


def test_residual_makes_the_fill_follow_the_image_next_to_observed_pixels() -> None:
    """Bank of black images, image a flat 0.6 grey: the nearest mean is black, so any grey in
    the hole comes from the interpolated residual: full at the edge, damped far inside."""
    bank = ExemplarBank(torch.zeros(5, 1, 16, 16, dtype=torch.uint8))
    y = torch.full((1, 1, 16, 16), 0.6)
    mask = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    mask[..., 2:14, 2:14] = True
    out = bank.fill(y, mask)
    assert out[0, 0, 2, 8] == pytest.approx(0.6, abs=0.02)     # one pixel from observed
    assert out[0, 0, 8, 8] < 0.01                              # six pixels away: exemplar mean


def test_nothing_observed_gives_the_bank_mean_and_no_hole_changes_nothing() -> None:
    images = random_bank()
    bank = ExemplarBank(images)
    y = torch.rand(2, *SHAPE)
    mask = torch.zeros(2, *SHAPE, dtype=torch.bool)
    mask[0] = True
    out = bank.fill(y, mask)
    assert torch.allclose(out[0], pixels(images).mean(0), atol=1e-6)
    assert torch.equal(out[1], y[1])


def test_bank_validation_and_save_load_round_trip(tmp_path) -> None:
    images = random_bank()
    save_bank(images, tmp_path / BANK_FILE)
    assert torch.equal(load_bank(tmp_path / BANK_FILE).images, images)
    with pytest.raises(ValueError, match="uint8"):
        ExemplarBank(images.float())
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not an exemplar bank"):
        load_bank(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="do not match"):
        ExemplarBank(images).fill(torch.rand(1, 1, 4, 4), torch.ones(1, 1, 4, 4, dtype=bool))


def saved_model(folder, bank: torch.Tensor | None) -> ModelBundle:
    torch.manual_seed(0)
    model = build_model("glow", image_shape=SHAPE, hidden=8, steps=2)
    with torch.no_grad():
        model.log_prob(torch.rand(16, *SHAPE) * 0.9 + 0.05)
    save_model(model, folder / "model.pt", card={"dataset": "test"})
    if bank is not None:
        save_bank(bank, folder / BANK_FILE)
    return load_bundle(folder)


def test_load_bundle_carries_the_bank_and_refuses_a_mismatched_one(tmp_path) -> None:
    bundle = saved_model(tmp_path, random_bank())
    assert len(bundle.exemplars) == 40
    assert not hasattr(load_model(tmp_path), "exemplars")  # the bare model carries none
    save_bank(torch.zeros(3, 1, 4, 4, dtype=torch.uint8), tmp_path / BANK_FILE)
    with pytest.raises(CheckpointError, match="shape"):
        load_bundle(tmp_path)
    load_model(tmp_path)  # the model alone does not read the bank


def test_default_inpainting_starts_from_the_exemplars_when_a_bank_ships(tmp_path) -> None:
    images = random_bank()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with_bank, without = saved_model(tmp_path / "a", images), saved_model(tmp_path / "b", None)
    image, mask = images[3], make_mask("left", (8, 8))
    # With no steps the result is the start itself: the exemplar fill, not the biharmonic one.
    y = (image[None].float() + 0.5) / 256
    start = with_bank.exemplars.fill(y, mask[None, None].expand_as(y))
    result = inpaint(with_bank, image, mask, steps=0)
    assert torch.equal(result.image, (start[0] * 256).floor().clamp(0, 255).to(torch.uint8))
    biharmonic = inpaint(with_bank, image, mask, steps=0, init="biharmonic").image
    assert not torch.equal(result.image, biharmonic)
    assert torch.equal(inpaint(without, image, mask, steps=0).image, biharmonic)
    with pytest.raises(ValueError, match="exemplar bank"):
        inpaint(without, image, mask, init="exemplar")
    batch = inpaint_batch(with_bank, images[:4], mask.expand(4, -1, -1), steps=2)
    assert all(torch.equal(r.image[:, ~mask], im[:, ~mask]) for r, im in
               zip(batch, images[:4], strict=True))


def test_shape_distance_ignores_contrast_blur_aspect_and_a_stretch_to_the_box_but_not_form(
) -> None:
    """The shape distance (blur, 2 x 2 block means, unit length) matches an independent Gaussian
    filter and resampling: the nearest of the exemplars and their copies stretched to fill the
    box, for the image as given, narrowed or widened by ``ASPECT``. It is zero for a fainter
    copy of an exemplar and for that exemplar stretched to its box, small for a blurred copy, a
    wider copy is nearer than without the resized query, another form (a ring) is far, and a
    blank image lies at distance 1 / D from every exemplar."""
    from scipy.ndimage import affine_transform, gaussian_filter

    from inpaint_app.exemplars import ASPECT, SHAPE_BLUR

    images = torch.zeros(3, 1, 16, 16, dtype=torch.uint8)
    images[0, 0, 3:13, 7:9] = 255    # a vertical bar
    images[1, 0, 7:9, 3:13] = 255    # a horizontal bar
    images[2, 0, 3:13, 3:13] = 255   # a ring: a square with its inside cut out
    images[2, 0, 5:11, 5:11] = 0
    bank = ExemplarBank(images[:2])
    d = 8 * 8  # rows of 2 x 2 block means of a 16 x 16 image
    # Both bars stretched to fill the centred box of 20/28 of the side: 11 x 11 pixels from 2.
    block = torch.zeros(1, 16, 16)
    block[0, 2:13, 2:13] = 1.0

    def row(image: np.ndarray) -> np.ndarray:
        blurred = gaussian_filter(image.astype(np.float64), SHAPE_BLUR, mode="constant")
        means = blurred.reshape(8, 2, 8, 2).mean(axis=(1, 3)).ravel()
        return means / max(float((means ** 2).sum()) ** 0.5, 1e-6)

    def resized(image: np.ndarray, factor: float) -> np.ndarray:
        # Column j of the copy reads the image at centre + factor * (j - centre), bilinearly.
        centre = (image.shape[1] - 1) / 2
        return affine_transform(image.astype(np.float64), [1.0, factor],
                                offset=[0.0, centre - factor * centre], order=1,
                                mode="grid-constant", cval=0.0)

    def expected(y: torch.Tensor, copies: bool = True) -> float:
        image = y[0].double().numpy()
        queries = [image, resized(image, ASPECT), resized(image, 1 / ASPECT)] if copies else [
            image]
        exemplars = [row(im[0].numpy()) for im in (*pixels(images[:2]), block)]
        return min(float(((row(q) - r) ** 2).sum()) for q in queries for r in exemplars) / d

    fainter = pixels(images[:1]) * 0.6
    blurred = torch.from_numpy(gaussian_filter(pixels(images[:1]).numpy(), (0, 0, 0.7, 0.7)))
    ring, blank, stretched = pixels(images[2:]), torch.zeros(1, 1, 16, 16), block[None] * 0.8
    wider = torch.from_numpy(resized(pixels(images[:1])[0, 0].numpy(), 1 / ASPECT))[None, None]
    for y in (fainter, blurred, ring, blank, stretched, wider):
        assert bank.nearest_shape_distance(y).item() == pytest.approx(expected(y[0]), abs=1e-6)
    assert bank.nearest_shape_distance(fainter).item() == pytest.approx(0.0, abs=1e-6)
    assert bank.nearest_shape_distance(stretched).item() == pytest.approx(0.0, abs=1e-6)
    assert bank.nearest_distance(fainter).item() > 0.01       # pixels differ, shape does not
    assert bank.nearest_shape_distance(blurred) < bank.nearest_shape_distance(ring) / 4
    assert bank.nearest_shape_distance(wider).item() < 0.75 * expected(wider[0], copies=False)
    assert bank.nearest_shape_distance(blank).item() == pytest.approx(1.0 / d)


def test_stretched_to_box_fills_the_centred_box_with_the_content() -> None:
    """A short bar, a dot and a wide shape each fill the centred 20/28 box at their own level
    (aspect ignored); pixels under a quarter of the image's maximum are not content; a blank
    image stays blank."""
    from inpaint_app.exemplars import stretched_to_box

    x = torch.zeros(4, 1, 28, 28)
    x[0, 0, 10:15, 13:15] = 1.0          # a short vertical bar
    x[1, 0, 5, 20] = 0.5                 # a single dot
    x[2, 0, 12:14, 2:26] = 0.9           # a wide bar, with a faint speck outside it
    x[2, 0, 25, 25] = 0.2
    out = stretched_to_box(x)
    for i, level in enumerate((1.0, 0.5, 0.9)):
        assert torch.allclose(out[i, 0, 4:24, 4:24], torch.full((20, 20), level), atol=1e-6)
        assert out[i].sum().item() == pytest.approx(level * 400, rel=1e-5)  # nothing outside
    assert out[3].abs().sum().item() == 0.0
