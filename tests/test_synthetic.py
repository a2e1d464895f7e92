"""inpaint_app.synthetic: the synthetic out-of-distribution sets."""

from __future__ import annotations

import pytest
import torch

from inpaint_app.synthetic import rendered_letters, scribbles


@pytest.mark.parametrize("make", [rendered_letters, scribbles],
                         ids=["letters", "scribbles"])
def test_synthetic_sets_are_seeded_digit_framed_strokes(make) -> None:
    images = make(12, seed=0)
    assert images.dtype == torch.uint8 and images.shape == (12, 1, 28, 28)
    assert torch.equal(images, make(12, seed=0))
    assert not torch.equal(images, make(12, seed=1))
    assert (images.flatten(1).max(1).values > 200).all()  # every image has ink
    border = torch.cat([images[..., :2, :].flatten(1), images[..., -2:, :].flatten(1)], 1)
    assert border.float().mean() < 0.25 * images.float().mean()  # ink sits inside the frame
