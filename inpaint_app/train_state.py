"""The state of a training run (``inpaint_app.trainer``): this process's place in a DDP run, and
what a run carries from step to step, saved to ``train_state.pt`` so that a resumed run continues
exactly."""

from __future__ import annotations

import argparse
import copy
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .models import atomic_save
from .training import EMA, NonFiniteGuard, warmup_cosine


@dataclass(frozen=True)
class Process:
    """This process's place in the run: its DDP rank, the number of processes, its device."""

    rank: int
    world: int
    device: torch.device



@dataclass
class TrainState:
    """What a run carries from step to step; ``train_state.pt`` holds it so that ``--resume``
    continues exactly (same weights, optimizer moments, schedule, random stream and losses)."""

    density: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # this rank's dequantization (and perturbation) noise
    ema: EMA | None
    steps_per_epoch: int  # the plan, which the schedule and the loop follow
    total_steps: int
    budget: float  # seconds: the schedule anneals within them, then training stops (inf: none)
    step: int = 0
    best_val: float = math.inf
    history: list[dict] = field(default_factory=list)  # one entry a validation
    elapsed: float = 0.0  # training seconds, rank 0's clock on every rank
    step_losses: list[float] = field(default_factory=list)
    lr_scale: float = 1.0  # halved after each run of non-finite losses
    guard: NonFiniteGuard = field(default_factory=lambda: NonFiniteGuard(patience=3))
    last_good: dict = field(default_factory=dict)  # weights and optimizer to fall back on
    scheduler: torch.optim.lr_scheduler.LambdaLR = field(init=False)

    @classmethod
    def start(cls, args: argparse.Namespace, density: torch.nn.Module, steps_per_epoch: int,
              proc: Process) -> TrainState:
        """A new run from the density's current weights."""
        # Fused Adam: one kernel over all parameters (NICE: 126 -> 9.5 ms a step,
        # docs/performance.md).
        optimizer = torch.optim.Adam(density.parameters(), lr=args.lr, fused=True)
        state = cls(density, optimizer,
                    torch.Generator(device=proc.device).manual_seed(args.seed * 1000 + proc.rank),
                    EMA(density, args.ema) if args.ema > 0 else None,
                    steps_per_epoch=steps_per_epoch, total_steps=args.epochs * steps_per_epoch,
                    budget=60 * args.max_minutes if args.max_minutes else math.inf)
        # The schedule reads the state: the cosine also follows the time budget, and lr_scale
        # halves after a run of non-finite losses. A lambda, as LambdaLR saves nothing of a
        # plain function (it would save a bound method's __dict__ into train_state.pt).
        state.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: state.lr_scale * warmup_cosine(
                s, warmup=args.warmup, total=state.total_steps,
                time_progress=state.elapsed / state.budget))
        return state

    @classmethod
    def resume(cls, path: Path, args: argparse.Namespace, density: torch.nn.Module,
               steps_per_epoch: int, proc: Process) -> TrainState:
        """The run saved at ``path``, to continue where it stopped."""
        saved = torch.load(path, map_location=proc.device, weights_only=True)
        density.load_state_dict(saved["model"])  # first: an EMA the file lacks starts from it
        state = cls.start(args, density, steps_per_epoch, proc)
        state.optimizer.load_state_dict(saved["optimizer"])
        state.scheduler.load_state_dict(saved["scheduler"])
        state.generator.set_state(saved["generator"].cpu() if proc.device.type == "cpu"
                                  else saved["generator"])
        state.step, state.best_val, state.history, state.elapsed = (
            saved["step"], saved["best_val"], saved["history"], saved["elapsed"])
        state.step_losses = list(saved.get("losses", []))
        state.lr_scale = saved.get("lr_scale", 1.0)
        if state.ema is not None and saved.get("ema") is not None:
            state.ema.load_state_dict(saved["ema"])
        return state

    def save(self, path: Path) -> None:
        """Write the state to ``path`` atomically; a failed write (a full disk) only warns, as
        the previous file is still intact."""
        try:
            atomic_save({"model": self.density.state_dict(),
                         "optimizer": self.optimizer.state_dict(),
                         "scheduler": self.scheduler.state_dict(),
                         "generator": self.generator.get_state(), "step": self.step,
                         "best_val": self.best_val, "history": self.history,
                         "elapsed": self.elapsed,
                         "ema": self.ema.state_dict() if self.ema is not None else None,
                         "losses": self.step_losses, "lr_scale": self.lr_scale}, path)
        except OSError as err:
            print(f"warning: could not write {path} ({err}); the previous train state is "
                  "kept and training goes on", file=sys.stderr, flush=True)

    def checkpoint(self, path: Path, rank: int) -> None:
        """Remember the current weights as good ones; rank 0 also saves the state."""
        self.remember_good()
        if rank == 0:
            self.save(path)

    def remember_good(self) -> None:
        """An in-memory copy of weights and optimizer to fall back on after non-finite losses."""
        self.last_good = copy.deepcopy({"model": self.density.state_dict(),
                                        "optimizer": self.optimizer.state_dict()})

    def fall_back(self) -> None:
        """Back to the last good weights and optimizer, at half the learning rate. The optimizer
        gets a copy: ``load_state_dict`` keeps the given moment tensors, which the next steps
        would then update in place, spoiling the snapshot for a second fall-back."""
        self.density.load_state_dict(self.last_good["model"])
        self.optimizer.load_state_dict(copy.deepcopy(self.last_good["optimizer"]))
        self.lr_scale *= 0.5

    def eval_weights(self) -> dict[str, torch.Tensor]:
        """The weights to validate and keep: the EMA's when there is one."""
        return self.ema.state_dict() if self.ema is not None else self.density.state_dict()

    @contextmanager
    def eval_weights_loaded(self) -> Iterator[torch.nn.Module]:
        """The density holding the evaluation weights inside the block, its live (training)
        weights again after it."""
        live = {k: v.clone() for k, v in self.density.state_dict().items()}
        self.density.load_state_dict(self.eval_weights())
        try:
            yield self.density
        finally:
            self.density.load_state_dict(live)
