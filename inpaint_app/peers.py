"""The peer models of the benchmarks (``benchmarks.benchmark``, ``benchmarks.time_to_quality``):
the same architectures as ours built with normflows (an optional dependency: ``INSTALL_HINT``),
behind our training and scoring interface, and what both sides are measured on."""

from __future__ import annotations

import math

import torch
from torch import nn

from .density import bits_per_dim_from_log_prob
from .runs import machine as runs_machine

SHAPE = (1, 28, 28)
INSTALL_HINT = 'pip install -e ".[bench]"'
# The configurations we train: NICE as in the paper, RealNVP's defaults, Glow as shipped.
RECIPES = {"nice": {"hidden": 1000, "depth": 5}, "realnvp": {},
           "glow": {"steps": 8, "hidden": 128}}


# ---------------------------------------------------------------- the peer (normflows) models
def _peer_nice(nf: object, hidden: int = 1000, depth: int = 5) -> nn.Module:
    """4 additive couplings (392 -> depth x hidden ReLU -> 392) and a diagonal scaling."""
    half = math.prod(SHAPE) // 2
    couplings = [nf.flows.AffineCouplingBlock(
        nf.nets.MLP([half] + [hidden] * depth + [half], init_zeros=True), scale=False,
        split_mode="channel" if i % 2 == 0 else "channel_inv") for i in range(4)]
    scaling = nf.flows.AffineConstFlow((math.prod(SHAPE),), shift=False)
    # normflows lists flows in the sampling direction: the reverse of our data -> latent order.
    flows = [scaling] + couplings[::-1]
    return nf.NormalizingFlow(nf.distributions.DiagGaussian(math.prod(SHAPE), trainable=False),
                              flows)


def _conv_coupling(nf: object, c_a: int, c_b: int, hidden: int, kernels: tuple[int, ...],
                   mode: str) -> nn.Module:
    net = nf.nets.ConvNet2d((c_a,) + (hidden,) * (len(kernels) - 1) + (2 * c_b,), kernels)
    return nf.flows.AffineCouplingBlock(net, scale_map="sigmoid", split_mode=mode)


def _checker(nf: object, c: int, hw: int, parity: int, hidden: int) -> nn.Module:
    """Full-resolution checkerboard coupling; separate s and t nets of width hidden/sqrt(2),
    so parameters and FLOPs match our single net of width ``hidden`` with 2C outputs."""
    grid = torch.arange(hw)[:, None] + torch.arange(hw)
    mask = (grid % 2 == parity).float().expand(c, hw, hw).clone()
    width = round(hidden / math.sqrt(2))

    def net() -> nn.Module:
        return nf.nets.ConvNet2d((c,) + (width,) * 5 + (c,), (3,) * 6)

    return nf.flows.MaskedAffineFlow(mask, t=net(), s=net())


def _peer_realnvp(nf: object, hidden: int = 64) -> nn.Module:
    """Ours: per level 3 checkerboard, squeeze, 3 channel couplings, split; last level 4
    checkerboard (28 -> 14 -> 7). Each net: 6 3x3 convs at width 64."""
    def chan(c: int, i: int) -> nn.Module:
        return _conv_coupling(nf, c // 2, c // 2, hidden, (3,) * 6,
                              "channel" if i % 2 == 0 else "channel_inv")

    def level(c: int, hw: int) -> list[nn.Module]:  # data order, before the split
        return ([_checker(nf, c, hw, i % 2, hidden) for i in range(3)] + [nf.flows.Squeeze()]
                + [chan(4 * c, i) for i in range(3)])

    flows = [[_checker(nf, 4, 7, i % 2, hidden) for i in range(4)][::-1],
             level(2, 14)[::-1], level(1, 28)[::-1]]
    return _multiscale(nf, flows, [(4, 7, 7), (4, 7, 7), (2, 14, 14)])


def _peer_glow(nf: object, steps: int = 8, hidden: int = 128) -> nn.Module:
    """Ours: squeeze -> 4 ch @ 14, K steps, split-prior coupling, split; squeeze -> 8 ch @ 7,
    K steps. Steps are normflows' GlowBlock (ActNorm, LU 1x1 conv, 3-1-3 conv coupling)."""
    split_prior = _conv_coupling(nf, 2, 2, hidden, (3, 1, 3), "channel_inv")
    top = [nf.flows.GlowBlock(4, hidden) for _ in range(steps)]
    deep = [nf.flows.GlowBlock(8, hidden) for _ in range(steps)]
    flows = [deep[::-1] + [nf.flows.Squeeze()], [split_prior] + top[::-1] + [nf.flows.Squeeze()]]
    return _multiscale(nf, flows, [(8, 7, 7), (2, 14, 14)])


def _multiscale(nf: object, flows: list[list[nn.Module]], shapes: list[tuple]) -> nn.Module:
    q0 = [nf.distributions.DiagGaussian(s, trainable=False) for s in shapes]
    merges = [nf.flows.Merge() for _ in shapes[1:]]
    return nf.MultiscaleFlow(q0, flows, merges, transform=nf.transforms.Logit(0.05),
                             class_cond=False)


PEERS = {"nice": _peer_nice, "realnvp": _peer_realnvp, "glow": _peer_glow}


class PeerDensity(nn.Module):
    """A normflows model behind our ``train_step`` interface: ``forward(y)`` gives
    ``(log_prob(y), dimensions)`` per image, as ``inpaint_app.training.LogProb`` does."""

    def __init__(self, flow: nn.Module, flat: bool) -> None:
        super().__init__()
        self.flow, self.flat, self.dim = flow, flat, math.prod(SHAPE)

    def forward(self, y: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.flat:
            log_prob = self.flow.log_prob(y.reshape(y.shape[0], -1))
        else:
            log_prob = self.flow.log_prob(y, None)
        return log_prob, torch.full_like(log_prob, self.dim)

    def bits_per_dim(self, y: torch.Tensor) -> torch.Tensor:
        """Bits/dim per image of dequantized pixels y in [0, 1], as ``DensityModel.bits_per_dim``
        gives them (logit Jacobian included), so ``inpaint_app.training.evaluate_bpd`` scores
        both sides alike."""
        return bits_per_dim_from_log_prob(self(y)[0], self.dim)


def import_peer() -> object | None:
    try:
        import normflows
    except ImportError:
        return None
    return normflows


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def machine(nf: object | None) -> dict:
    """The machine (``inpaint_app.runs.machine``) and the peer's version."""
    return {**runs_machine(), "normflows": getattr(nf, "__version__", None)}
