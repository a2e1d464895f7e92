"""The default verdict's batched passes give what one pass per rotation gave (issue 21)."""

from __future__ import annotations

import numpy as np
import torch

from inpaint_app import anomaly
from inpaint_app.bundle import ModelBundle
from inpaint_app.density import bits_per_dim_from_log_prob, dequantize
from inpaint_app.models import build_model


def _reference_orientation(model, images: torch.Tensor, seed: int) -> np.ndarray:
    """bits/dim minus the lowest bits/dim of the three quarter turns, one pass each."""
    def bpd(x: torch.Tensor) -> torch.Tensor:
        log_prob = model.log_prob(dequantize(x, noise="fixed", seed=seed))
        return bits_per_dim_from_log_prob(log_prob, model.dim)

    with torch.inference_mode():
        turned = torch.stack([bpd(torch.rot90(images, k, (2, 3))) for k in (1, 2, 3)])
        return (bpd(images) - turned.min(0).values).double().numpy()


def test_batched_passes_equal_one_pass_per_rotation() -> None:
    torch.manual_seed(0)
    model = build_model("glow", image_shape=(1, 8, 8), steps=2).eval().requires_grad_(False)
    background = build_model("glow", image_shape=(1, 8, 8), steps=1).eval().requires_grad_(False)
    images = torch.randint(0, 256, (37, 1, 8, 8), dtype=torch.uint8)
    base = anomaly.base_scores(ModelBundle(model, background=background), images, batch_size=16)
    np.testing.assert_allclose(base["orientation"],
                               _reference_orientation(model, images, anomaly.SEED), atol=1e-4)
    with torch.inference_mode():
        own = bits_per_dim_from_log_prob(
            model.log_prob(dequantize(images, noise="fixed", seed=anomaly.SEED)), model.dim)
        back = bits_per_dim_from_log_prob(
            background.log_prob(dequantize(images, noise="fixed", seed=anomaly.SEED)), model.dim)
    np.testing.assert_allclose(base["bpd"], own.double().numpy(), atol=1e-4)
    np.testing.assert_allclose(base["likelihood_ratio"], (own - back).double().numpy(), atol=1e-4)
    expected_png = [anomaly.png_bits_per_dim(x) for x in images]
    np.testing.assert_array_equal(base["png_bpd"], expected_png)   # the thread pool keeps order


def test_whole_image_exemplar_distance_equals_the_masked_one_with_nothing_missing() -> None:
    from inpaint_app.exemplars import ExemplarBank

    generator = torch.Generator().manual_seed(1)
    bank = ExemplarBank(torch.randint(0, 256, (50, 1, 8, 8), dtype=torch.uint8,
                                      generator=generator))
    y = torch.rand(9, 1, 8, 8, generator=generator)
    masked = bank.distances(y, torch.ones_like(y)).min(1).values
    torch.testing.assert_close(bank.nearest_distance(y), masked, atol=1e-6, rtol=1e-5)
    assert bank.nearest_distance(bank.images[:3].float() / 255.0).max() < 1e-6  # itself: 0


def test_the_exemplar_part_is_each_images_own_nearest_distance() -> None:
    """The verdict searches the bank in groups of ``EXEMPLAR_BATCH``: a group's size must not
    change an image's distance (more images than one group, and a ragged last one)."""
    from inpaint_app.exemplars import ExemplarBank

    generator = torch.Generator().manual_seed(2)
    bank = ExemplarBank(torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8,
                                      generator=generator))
    images = torch.randint(0, 256, (anomaly.EXEMPLAR_BATCH + 9, 1, 8, 8), dtype=torch.uint8,
                           generator=generator)
    model = build_model("glow", image_shape=(1, 8, 8), steps=1).eval().requires_grad_(False)
    base = anomaly.base_scores(ModelBundle(model, exemplars=bank), images, batch_size=8)
    alone = torch.cat([bank.nearest_distance(x[None].float() / 255.0) for x in images])
    np.testing.assert_allclose(base["exemplar_distance"], alone.double().numpy(), atol=1e-6)
