"""bf16 autocast (``train --amp``): only the coupling networks run in low precision; the flow's
own arithmetic (scales, shifts, the 1x1 convolution, log-dets, the latent) stays float32."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inpaint_app.data import load_split
from inpaint_app.density import dequantize
from inpaint_app.models import build_model, load_model

SHAPE = (1, 8, 8)
TINY = {"nice": {"hidden": 32, "depth": 2}, "realnvp": {"hidden": 16, "blocks": 1},
        "glow": {"steps": 2, "hidden": 16}, "maf": {"blocks": 2, "hidden": 32}}
SHIPPED_MNIST = Path(__file__).resolve().parents[1] / "trained" / "mnist-glow" / "model.pt"


def _untrained_but_not_identity(family: str) -> torch.nn.Module:
    """A tiny model whose zero-initialised last layers are randomised, so the coupling networks
    actually move the data and their bf16 rounding shows."""
    torch.manual_seed(0)
    model = build_model(family, image_shape=SHAPE, **TINY[family])
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0.0, 0.05)
    return model


@pytest.mark.parametrize("family", sorted(TINY))
def test_flow_arithmetic_stays_float32_under_autocast(family: str) -> None:
    model = _untrained_but_not_identity(family)
    y = dequantize(torch.randint(0, 256, (6, *SHAPE), dtype=torch.uint8,
                                 generator=torch.Generator().manual_seed(1)),
                   torch.Generator().manual_seed(1))
    plain = model.log_prob(y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, logdet = model.to_latent(y)
        mixed = model.log_prob(y)
    assert z.dtype == logdet.dtype == mixed.dtype == torch.float32
    # bf16 rounds the networks' outputs to ~3 digits; the log-density moves by far less than a
    # hundredth of a nat per dimension.
    assert (mixed - plain).abs().max().item() / model.dim < 1e-2


@pytest.mark.data
@pytest.mark.skipif(not SHIPPED_MNIST.is_file(), reason="shipped MNIST checkpoint missing")
def test_autocast_gradient_of_a_trained_glow_agrees_with_float32(data_root: Path) -> None:
    """At a good fit the gradient is a small difference of large terms (the 1x1 convolution's
    log-det against the data term). With the 1x1 convolution autocast too, the bf16 gradient of
    this model was useless: cosine 0.02 to the float32 one, 11x its norm, loss off by 0.04
    nats/dim. With the flow arithmetic in float32: cosine 0.94, 2.2x the norm (Adam normalises
    scale per parameter), loss off by 0.001."""
    model = load_model(SHIPPED_MNIST).requires_grad_(True)  # loaded models come frozen
    y = dequantize(load_split("mnist", "val", data_root)[:128], torch.Generator().manual_seed(0))

    def gradient(amp: bool) -> tuple[float, torch.Tensor]:
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = -model.log_prob(y).mean() / model.dim
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters()])

    (loss32, grad32), (loss16, grad16) = gradient(False), gradient(True)
    assert abs(loss16 - loss32) < 0.01  # nats/dim
    cosine = torch.nn.functional.cosine_similarity(grad32, grad16, dim=0).item()
    assert cosine > 0.8, f"bf16 gradient disagrees with float32: cosine {cosine:.3f}"
    assert 0.5 < (grad16.norm() / grad32.norm()).item() < 4.0
