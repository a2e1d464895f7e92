"""Helpers shared by the family test modules (imported by name: pytest puts tests/ on the path)."""

from __future__ import annotations

import torch

from inpaint_app.training import LogProb, train_step


def perturbed(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> torch.nn.Module:
    """Noise on every parameter, so zero-initialised outputs (identity dynamics, zero
    conditioners) do not hide mistakes."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


def short_training_drop(model: torch.nn.Module, lr: float, spread: float = 20.0,
                        steps: int = 60) -> float:
    """Mean loss of the first ten minus the last ten of ``steps`` Adam steps on 4x4 images
    scattered around a ramp: how much a short run learned."""
    torch.manual_seed(0)
    base = torch.linspace(40, 220, 16).reshape(1, 1, 4, 4)
    data = (base + spread * torch.randn(256, 1, 4, 4)).clamp(0, 255).to(torch.uint8)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    batches = [data[torch.randint(0, 256, (64,), generator=g)] for _ in range(steps)]
    losses = [train_step(LogProb(model), model, b, opt, generator=g) for b in batches]
    return sum(losses[:10]) / 10 - sum(losses[-10:]) / 10
