"""Densities over FFJORD flows: the training loss with its RNODE penalty, and bits/dim with a
stated probe error. At the density level, so that the flow family (``flows.ffjord``) does not
reach up to ``density``."""

from __future__ import annotations

import math

import torch

from .density import DensityModel, bits_per_dim_from_log_prob
from .flows.ffjord import cnf_blocks, forward_with_penalties


def log_prob_with_penalty(density: DensityModel, y: torch.Tensor, *,
                          generator: torch.Generator | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """``density.log_prob(y)`` and the per-example RNODE penalty summed over its CNF blocks
    (zeros where none regularizes): the training loss is -(log p - penalty). ``generator``
    draws the Hutchinson probes of this call (see ``CNF.forward_with_penalty``). Nothing is
    left on the model, so concurrent calls on one model do not interact."""
    if not cnf_blocks(density.flow):
        log_prob = density.log_prob(y)
        return log_prob, torch.zeros_like(log_prob)
    u, logdet_pre = density.preprocess(y)
    z, logdet, penalties = forward_with_penalties(density.flow, u, generator)
    log_prob = density.prior.log_prob(z) + (logdet + logdet_pre)  # as DensityModel.to_latent
    return log_prob, sum(penalties, torch.zeros_like(log_prob))


def log_prob_probe_samples(density: DensityModel, y: torch.Tensor, *, probes: int = 8,
                           seed: int = 0) -> torch.Tensor:
    """``[probes, B]`` unbiased log p(y) estimates, each from independent Hutchinson probes
    (identical rows where every block uses the exact trace). Their mean and its standard error
    (std / sqrt(probes)) give a bits/dim with a stated error."""
    rows = []
    with torch.no_grad():
        for k in range(probes):
            g = torch.Generator(device=y.device).manual_seed(seed * 100003 + k)
            rows.append(log_prob_with_penalty(density, y, generator=g)[0])
    return torch.stack(rows)


def bits_summary(log_probs: torch.Tensor, dim: int) -> dict[str, float]:
    """Mean bits/dim of ``[probes, B]`` estimates, with the standard error over probes (of the
    image mean) and over images."""
    bpd = bits_per_dim_from_log_prob(log_probs, dim)
    per_probe = bpd.mean(dim=1)
    k, n = bpd.shape
    return {"bpd": bpd.mean().item(),
            "stderr_probes": (per_probe.std() / math.sqrt(k)).item() if k > 1 else 0.0,
            "stderr_images": (bpd.mean(dim=0).std() / math.sqrt(n)).item() if n > 1 else 0.0}
