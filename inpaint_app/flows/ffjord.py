"""FFJORD: continuous normalising flows, dx/dt = f(t, x), with d logdet/dt = tr(df/dx).

Integrated with torchdiffeq (``odeint``, or ``odeint_adjoint`` for O(1) memory). The trace is
exact (D vector-Jacobian products) when D <= ``exact_max_dim``, otherwise estimated by Hutchinson,
tr(J) = E[e^T J e] with Gaussian or Rademacher probes e:
- training: one fresh probe per example (unbiased, cheap);
- evaluation: the mean over ``eval_probes`` probes drawn from ``eval_seed`` and shared by every
  image, so a given image always gets the same score whatever its batch (still unbiased);
- ``inpaint_app.ffjord_density.log_prob_probe_samples``: independent probe draws, for a
  bits/dim with its standard error.
References: Grathwohl et al., FFJORD (arXiv:1810.01367); Chen et al., Neural ODEs
(arXiv:1806.07366); Finlay et al., How to train your neural ODE (RNODE, arXiv:2002.02798).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from .base import Flow, Sequential, Split, Squeeze
from .realnvp import inner_out_shape, max_levels

FIXED_STEP = ("euler", "midpoint", "rk4")


def _detached_norm(state: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The solver's error norm (max RMS over the state's parts) without gradient, so step sizes
    are constants of the graph: no derivative through step-size control, and no example's
    gradient leaks into another's through the batch-shared step size."""
    parts = state if isinstance(state, tuple) else (state,)
    return torch.stack([p.detach().pow(2).mean().sqrt() for p in parts]).max()


class ConcatLayer(nn.Module):
    """A linear or 3x3 conv layer that also sees the time t as one extra input feature/channel."""

    def __init__(self, d_in: int, d_out: int, conv: bool) -> None:
        super().__init__()
        self.layer = (nn.Conv2d(d_in + 1, d_out, 3, padding=1) if conv
                      else nn.Linear(d_in + 1, d_out))

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tt = t.to(x).expand(x.shape[0], 1, *x.shape[2:])
        return self.layer(torch.cat([tt, x], dim=1))


class ODENet(nn.Module):
    """f(t, x): ``depth`` hidden time-conditioned layers of width ``hidden``; vectors ``[B, D]``
    (tanh) or images ``[B, C, H, W]`` (conv, softplus). The last layer is zero-initialised, so a
    fresh CNF is the identity and cheap to solve."""

    def __init__(self, channels: int, hidden: int = 64, depth: int = 2, conv: bool = False
                 ) -> None:
        super().__init__()
        widths = [channels] + [hidden] * depth + [channels]
        self.layers = nn.ModuleList(ConcatLayer(a, b, conv)
                                    for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.act = nn.Softplus() if conv else nn.Tanh()
        nn.init.zeros_(self.layers[-1].layer.weight)
        nn.init.zeros_(self.layers[-1].layer.bias)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(t, x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x


def divergence(dx: torch.Tensor, x: torch.Tensor, probes: torch.Tensor | None,
               create_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(tr(df/dx), |df/dx|_F^2) per example: exact when ``probes`` is None, else the Hutchinson
    means over probes ``[K, B or 1, ...]`` (e^T J e and |e^T J|^2)."""
    b = x.shape[0]
    if probes is None:
        flat = dx.reshape(b, -1)
        trace, frob = x.new_zeros(b), x.new_zeros(b)
        for i in range(flat.shape[1]):
            row = torch.autograd.grad(flat[:, i].sum(), x, create_graph=create_graph,
                                      retain_graph=True)[0].reshape(b, -1)
            trace, frob = trace + row[:, i], frob + row.pow(2).sum(dim=1)
        return trace, frob
    trace, frob = x.new_zeros(b), x.new_zeros(b)
    for e in probes:
        e = e.expand_as(dx)
        e_jac = torch.autograd.grad(dx, x, e, create_graph=create_graph, retain_graph=True)[0]
        trace = trace + (e_jac * e).reshape(b, -1).sum(dim=1)
        frob = frob + e_jac.pow(2).reshape(b, -1).sum(dim=1)
    return trace / len(probes), frob / len(probes)


class ODEFunc(nn.Module):
    """The augmented dynamics (dx, d logdet[, d kinetic, d jacobian]) of the ODE net. Per-solve
    settings are arguments, never attributes, so concurrent solves of one module cannot see each
    other's probes; a module of its own only so that checkpoints keep their ``func.net`` keys."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, ...],
                probes: torch.Tensor | None, regularize: bool) -> tuple[torch.Tensor, ...]:
        x = state[0]
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            # a solve without grad (evaluation, the adjoint's forward) gets a fresh leaf: an input
            # that requires grad would be a view made under no_grad, outside any graph
            x = x if create_graph and x.requires_grad else x.detach().requires_grad_(True)
            dx = self.net(t, x)
            trace, frob = divergence(dx, x, probes, create_graph)
        out = (dx, trace)
        if regularize:
            out += (dx.pow(2).reshape(x.shape[0], -1).sum(dim=1), frob)
        return out if create_graph else tuple(o.detach() for o in out)


class CNF(Flow):
    """One continuous normalising flow block: x(0) = x, z = x(T), logdet = int_0^T tr(df/dx) dt.

    ``solver``: any torchdiffeq method (``dopri5`` adaptive with ``rtol``/``atol``, or fixed-step
    ``rk4``/``midpoint``/``euler`` with ``step_size``); tolerances below 10 eps of the dtype are
    raised to it. ``adjoint`` backpropagates by the adjoint ODE. ``kinetic``/``jacobian`` > 0 add
    the RNODE penalties (lambda * int |f|^2 dt, lambda * int |df/dx|_F^2 dt) to the training loss:
    ``forward_with_penalty`` returns them per example, ``forward`` keeps the Flow contract (the
    true logdet, no penalty). ``nfe_forward``/``nfe_inverse`` hold the function evaluations of the
    last solve (a diagnostic; nothing else is written to the module by a solve).

    >>> cnf = CNF(ODENet(2, hidden=16), solver="rk4", step_size=0.25)
    >>> z, logdet = cnf(torch.randn(5, 2))
    >>> z, logdet, penalty = cnf.forward_with_penalty(torch.randn(5, 2))
    """

    def __init__(self, net: nn.Module, *, time: float = 1.0, solver: str = "dopri5",
                 rtol: float = 1e-5, atol: float = 1e-5, step_size: float = 0.25,
                 adjoint: bool = False, trace: str = "auto", exact_max_dim: int = 16,
                 probe: str = "gaussian", eval_probes: int = 4, eval_seed: int = 0,
                 kinetic: float = 0.0, jacobian: float = 0.0) -> None:
        super().__init__()
        if trace not in ("auto", "exact", "hutchinson"):
            raise ValueError(f"unknown trace {trace!r}: choose 'auto', 'exact' or 'hutchinson'")
        if probe not in ("gaussian", "rademacher"):
            raise ValueError(f"unknown probe {probe!r}: choose 'gaussian' or 'rademacher'")
        self.func = ODEFunc(net)
        self.time, self.solver, self.rtol, self.atol = time, solver, rtol, atol
        self.step_size, self.adjoint, self.trace = step_size, adjoint, trace
        self.exact_max_dim, self.probe = exact_max_dim, probe
        self.eval_probes, self.eval_seed = eval_probes, eval_seed
        self.kinetic, self.jacobian = kinetic, jacobian
        self.nfe_forward = self.nfe_inverse = 0

    def uses_exact_trace(self, x: torch.Tensor) -> bool:
        return self.trace == "exact" or (self.trace == "auto" and x[0].numel() <=
                                         self.exact_max_dim)

    def _draw(self, shape: tuple[int, ...], like: torch.Tensor,
              generator: torch.Generator | None) -> torch.Tensor:
        device = like.device if generator is None else generator.device
        if self.probe == "gaussian":
            e = torch.randn(shape, generator=generator, device=device, dtype=like.dtype)
        else:
            e = torch.randint(0, 2, shape, generator=generator, device=device).to(like.dtype)
            e = 2 * e - 1
        return e.to(like.device)

    def _probes(self, x: torch.Tensor, generator: torch.Generator | None
                ) -> torch.Tensor | None:
        """This call's Hutchinson probes ``[K, B or 1, ...]``, or None for the exact trace: one
        per example from ``generator`` when given; else one fresh per example in training, and
        in evaluation the ``eval_probes`` drawn from ``eval_seed`` that every image shares."""
        if self.uses_exact_trace(x):
            return None
        if generator is not None or self.training:
            return self._draw((1, *x.shape), x, generator)
        g = torch.Generator().manual_seed(self.eval_seed)
        return self._draw((self.eval_probes, 1, *x.shape[1:]), x, g)

    def _solve(self, rhs: Callable[[torch.Tensor, tuple[torch.Tensor, ...]],
                                   tuple[torch.Tensor, ...]],
               state: tuple[torch.Tensor, ...], t0: float, t1: float, need_grad: bool
               ) -> tuple[tuple[torch.Tensor, ...], int]:
        """The state at t1 of dstate/dt = rhs(t, state) from t0, and the evaluations it took."""
        nfe = 0

        def counted(t: torch.Tensor, s: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            nonlocal nfe
            nfe += 1
            return rhs(t, s)

        x = state[0]
        floor = 10 * torch.finfo(x.dtype).eps
        kwargs: dict[str, Any] = {"rtol": max(self.rtol, floor), "atol": max(self.atol, floor),
                                  "method": self.solver}
        kwargs["options"] = ({"step_size": self.step_size} if self.solver in FIXED_STEP
                             else {"norm": _detached_norm})
        t = torch.tensor([t0, t1], dtype=x.dtype, device=x.device)
        if self.adjoint and need_grad:
            sol = odeint_adjoint(counted, state, t, adjoint_params=tuple(self.parameters()),
                                 **kwargs)
        else:
            sol = odeint(counted, state, t, **kwargs)
        return tuple(s[-1] for s in sol), nfe

    def _integrate(self, x: torch.Tensor, generator: torch.Generator | None, penalize: bool
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(z, logdet, RNODE penalty or None); the penalty is integrated only when ``penalize``
        and gradients are on (it exists for the training loss alone)."""
        need_grad = torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
        with torch.inference_mode(False), torch.set_grad_enabled(need_grad):
            x = x.clone() if x.is_inference() else x
            probes = self._probes(x, generator)
            regularize = penalize and need_grad
            zeros = x.new_zeros(x.shape[0])
            state = (x, zeros, zeros, zeros) if regularize else (x, zeros)
            out, self.nfe_forward = self._solve(
                lambda t, s: self.func(t, s, probes, regularize), state, 0.0, self.time,
                need_grad)
            penalty = self.kinetic * out[2] + self.jacobian * out[3] if regularize else None
        return out[0], out[1], penalty

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, logdet, _ = self._integrate(x, None, penalize=False)
        return z, logdet

    def forward_with_penalty(self, x: torch.Tensor, *, generator: torch.Generator | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``forward``'s (z, logdet) and the per-example RNODE penalty that the training loss
        adds to -log p: None unless the block regularizes (``kinetic`` or ``jacobian`` > 0) and
        is training with gradients. ``generator``, when given, draws this call's Hutchinson
        probes, one per example (independent draws for ``log_prob_probe_samples``)."""
        return self._integrate(x, generator,
                               penalize=self.training and (self.kinetic > 0 or self.jacobian > 0))

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        need_grad = torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
        with torch.inference_mode(False), torch.set_grad_enabled(need_grad):
            z = z.clone() if z.is_inference() else z
            (x,), self.nfe_inverse = self._solve(lambda t, s: (self.func.net(t, s[0]),), (z,),
                                                 self.time, 0.0, need_grad)
        return x


def cnf_blocks(module: nn.Module) -> list[CNF]:
    return [m for m in module.modules() if isinstance(m, CNF)]


def total_nfe(module: nn.Module) -> int:
    """Function evaluations of the last forward solve, summed over every CNF block."""
    return sum(block.nfe_forward for block in cnf_blocks(module))


def forward_with_penalties(flow: Flow, x: torch.Tensor, generator: torch.Generator | None
                            ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """``flow(x)`` with ``generator`` handed to every CNF block, and their RNODE penalties in
    the order they ran. The Flow contract has no room for either, so this walks the containers
    that ``build_ffjord`` nests CNF blocks in (Sequential, Split) as their ``forward`` does."""
    if isinstance(flow, CNF):
        z, logdet, penalty = flow.forward_with_penalty(x, generator=generator)
        return z, logdet, [] if penalty is None else [penalty]
    if not cnf_blocks(flow):
        return (*flow(x), [])
    if type(flow) is Sequential:
        logdet, penalties = x.new_zeros(x.shape[0]), []
        for step in flow.flows:
            x, step_logdet, step_penalties = forward_with_penalties(step, x, generator)
            logdet, penalties = logdet + step_logdet, penalties + step_penalties
        return x, logdet, penalties
    if type(flow) is Split:
        x_out, x_keep = x.chunk(2, dim=1)
        z_keep, logdet, penalties = forward_with_penalties(flow.flow, x_keep, generator)
        return torch.cat([x_out, z_keep.reshape(x_keep.shape)], dim=1), logdet, penalties
    raise TypeError(f"{type(flow).__name__} holds CNF blocks but cannot pass them a generator "
                    "or return their penalties")


def build_ffjord(image_shape: tuple[int, int, int], *, levels: int | None = None,
                 hidden: int = 16, depth: int = 2, time: float = 1.0, solver: str = "dopri5",
                 rtol: float = 1e-4, atol: float = 1e-4, step_size: float = 0.25,
                 adjoint: bool = False, trace: str = "auto", exact_max_dim: int = 16,
                 probe: str = "gaussian", eval_probes: int = 4, kinetic: float = 0.0,
                 jacobian: float = 0.0) -> Flow:
    """Multi-scale FFJORD (as the paper's image models): per level a CNF, squeeze, a CNF and a
    split of half the channels; the last level one CNF. ``levels`` defaults to min(2, as many
    squeezes as fit); conv ODE nets of ``depth`` hidden layers x ``hidden`` channels. The
    defaults are sized for a CPU (the paper used 64 channels and tolerances of 1e-5)."""
    c, h, w = image_shape
    levels = min(2, max_levels(h, w)) if levels is None else levels
    options = {"time": time, "solver": solver, "rtol": rtol, "atol": atol,
               "step_size": step_size, "adjoint": adjoint, "trace": trace,
               "exact_max_dim": exact_max_dim, "probe": probe, "eval_probes": eval_probes,
               "kinetic": kinetic, "jacobian": jacobian}

    def block(ch: int) -> CNF:
        return CNF(ODENet(ch, hidden, depth, conv=True), **options)

    def level(ch: int, hh: int, ww: int, remaining: int) -> Flow:
        if remaining == 0:
            return block(ch)
        inner = level(2 * ch, hh // 2, ww // 2, remaining - 1)
        return Sequential(block(ch), Squeeze(), block(4 * ch),
                          Split(inner, inner_out_shape(2 * ch, hh // 2, ww // 2, remaining - 1)))

    return level(c, h, w, levels)
