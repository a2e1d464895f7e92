"""Masked-region image metrics: how well a fill matches the truth where pixels were missing."""

from __future__ import annotations

import torch


def masked_psnr(filled: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> float:
    """PSNR in dB over the missing pixels only, images in [0, 1]."""
    err = ((filled.float() - truth.float()) / 255.0)[mask].pow(2).mean().item()
    return 10.0 * torch.log10(torch.tensor(1.0 / max(err, 1e-10))).item()


def masked_ssim(filled: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> float:
    """SSIM map (7x7 windows) averaged over the missing pixels."""
    from skimage.metrics import structural_similarity  # only here: loading models needs none

    a, b = (t.float().numpy().transpose(1, 2, 0) / 255.0 for t in (filled, truth))
    _, full = structural_similarity(a, b, data_range=1.0, channel_axis=-1, full=True)
    return float(full[mask.permute(1, 2, 0).numpy()].mean())
