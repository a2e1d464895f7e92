"""Planar flows: f(x) = x + u_hat tanh(w^T x + b), invertible because w^T u_hat >= -1.

``forward`` applies f (exact log-det by the matrix determinant lemma); ``inverse`` solves the
scalar monotone equation for a = w^T x by bracketed Newton, so planar flows can score data and
sample. The classic use, fitting an unnormalised 2-D density by reverse KL, is ``reverse_kl``.
References: Rezende, Mohamed, Variational Inference with Normalizing Flows (arXiv:1505.05770),
sec. 4.1 and appendix A.1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .base import Flatten, Flow, Sequential, normal_log_density
from .glow import ActNorm

MARGIN = 1e-4  # w^T u_hat >= -1 + MARGIN


class Planar(Flow):
    """z = x + u_hat tanh(w^T x + b); logdet = log|1 + u_hat^T w tanh'(w^T x + b)|.

    u_hat = u + (m(w^T u) - w^T u) w / |w|^2 with m(a) = -1 + softplus(a) + 1e-4, so that
    w^T u_hat = m(w^T u) > -1 for any parameters: f is strictly increasing along w (the 1e-4
    margin keeps the log-det finite where softplus underflows).

    >>> layer = Planar(2)
    >>> x = torch.randn(5, 2)
    >>> torch.allclose(layer.inverse(layer(x)[0]), x, atol=1e-5)
    True
    """

    def __init__(self, dim: int, *, tol: float | None = None, max_iter: int = 100) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim) / math.sqrt(dim))
        self.u = nn.Parameter(torch.randn(dim) / math.sqrt(dim))
        self.b = nn.Parameter(torch.zeros(()))
        self.tol, self.max_iter = tol, max_iter

    def u_hat(self) -> torch.Tensor:
        wu = self.w @ self.u
        return self.u + (F.softplus(wu) - 1 + MARGIN - wu) * self.w / (self.w @ self.w + 1e-12)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.u_hat()
        h = torch.tanh(x @ self.w + self.b)
        logdet = torch.log1p((1 - h.pow(2)) * (self.w @ u))  # the argument is > -1
        return x + h[:, None] * u, logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        u = self.u_hat()
        target, wu = z @ self.w, self.w @ u
        a = solve_monotone(target, wu, self.b, tol=self.tol, max_iter=self.max_iter)
        # One Newton step with the graph on: the value stays the root, and autograd sees the
        # implicit-function derivative da/dtarget = 1 / g'(a) (the solve itself has no graph).
        t = torch.tanh(a + self.b)
        a = a - (a + wu * t - target) / (1 + wu * (1 - t * t))
        return z - torch.tanh(a + self.b)[:, None] * u


def solve_monotone(target: torch.Tensor, wu: torch.Tensor, b: torch.Tensor, *,
                   tol: float | None = None, max_iter: int = 100) -> torch.Tensor:
    """The root a of g(a) = a + wu tanh(a + b) - target, elementwise, for wu > -1.

    g is increasing, and the root lies in [target - |wu|, target + |wu|]. Newton steps that leave
    the bracket fall back to bisection, so it always converges; stops when every step is below
    ``tol`` (default: 10 x the dtype's epsilon times the scale of the root).
    """
    with torch.no_grad():
        lo, hi = target - wu.abs(), target + wu.abs()
        a = target.clone()
        eps = torch.finfo(target.dtype).eps
        for _ in range(max_iter):
            t = torch.tanh(a + b)
            g = a + wu * t - target
            lo, hi = torch.where(g > 0, lo, a), torch.where(g > 0, a, hi)
            step = g / (1 + wu * (1 - t * t)).clamp_min(eps)
            new = a - step
            outside = (new <= lo) | (new >= hi)
            new = torch.where(outside, (lo + hi) / 2, new)
            moved = (new - a).abs()
            a = new
            limit = tol if tol is not None else 10 * eps * (1 + a.abs())
            if bool(torch.all((moved <= limit) | (hi - lo <= limit))):
                break
        return a


def build_planar(image_shape: tuple[int, int, int], *, layers: int = 32, actnorm: bool = True
                 ) -> Flow:
    """Flatten, an ActNorm per pixel (planar maps are rank-one and cannot rescale the axes,
    so without it a Gaussian prior fits logit pixels badly), then ``layers`` planar maps in the
    data -> latent direction."""
    dim = image_shape[0] * image_shape[1] * image_shape[2]
    head: list[Flow] = [Flatten(image_shape)] + ([ActNorm(dim)] if actnorm else [])
    return Sequential(*head, *[Planar(dim) for _ in range(layers)])


# The paper's 2-D test energies U1..U4 (Rezende & Mohamed 2015, table 1): p(z) ∝ exp(-U(z)).

def _w1(z: torch.Tensor) -> torch.Tensor:
    return torch.sin(2 * math.pi * z[:, 0] / 4)


def _w2(z: torch.Tensor) -> torch.Tensor:
    return 3 * torch.exp(-0.5 * ((z[:, 0] - 1) / 0.6) ** 2)


def _w3(z: torch.Tensor) -> torch.Tensor:
    return 3 * torch.sigmoid((z[:, 0] - 1) / 0.3)


def _neg_logsumexp(*terms: torch.Tensor) -> torch.Tensor:
    return -torch.logsumexp(torch.stack(terms), dim=0)


def energy_u1(z: torch.Tensor) -> torch.Tensor:
    ring = 0.5 * ((z.norm(dim=1) - 2) / 0.4) ** 2
    return ring + _neg_logsumexp(-0.5 * ((z[:, 0] - 2) / 0.6) ** 2,
                                 -0.5 * ((z[:, 0] + 2) / 0.6) ** 2)


def energy_u2(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2


def energy_u3(z: torch.Tensor) -> torch.Tensor:
    return _neg_logsumexp(-0.5 * ((z[:, 1] - _w1(z)) / 0.35) ** 2,
                          -0.5 * ((z[:, 1] - _w1(z) + _w2(z)) / 0.35) ** 2)


def energy_u4(z: torch.Tensor) -> torch.Tensor:
    return _neg_logsumexp(-0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2,
                          -0.5 * ((z[:, 1] - _w1(z) + _w3(z)) / 0.35) ** 2)


ENERGIES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "U1": energy_u1, "U2": energy_u2, "U3": energy_u3, "U4": energy_u4}


def reverse_kl(flow: Flow, energy: Callable[[torch.Tensor], torch.Tensor], n: int, *,
               dim: int = 2, beta: float = 1.0, generator: torch.Generator | None = None
               ) -> torch.Tensor:
    """Monte Carlo KL(q || exp(-beta U)) up to log Z, for q the push-forward of N(0, I) by
    ``flow.forward`` (the sampling direction here): E[log N(x0) - logdet + beta U(x_K)]."""
    x0 = torch.randn(n, dim, generator=generator)
    x, logdet = flow(x0)
    log_q = normal_log_density(x0).sum(dim=1) - logdet
    return (log_q + beta * energy(x)).mean()


def planar_log_q(flow: Flow, x: torch.Tensor) -> torch.Tensor:
    """log q(x) of the reverse-KL model at points x, through the numerical inverse."""
    with torch.no_grad():
        x0 = flow.inverse(x)
        _, logdet = flow(x0)
    return normal_log_density(x0).sum(dim=1) - logdet
