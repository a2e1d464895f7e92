"""Maximum-likelihood training of an image flow from a recipe (``python -m pipelines.train``'s
arguments, or any namespace with the same fields): DDP setup, the epoch loop with validation,
checkpoints and the non-finite guard, and the card and samples at the end (``fit``).

Bad input (an unusable ``--init-from`` checkpoint, an invalid configuration) raises
``TrainingError`` with a one-line message; the command lines print it and exit.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from .card import Measurement, ModelCard
from .data import VALIDATION_SIZE, load_split
from .models import (
    CONDITIONAL_FAMILIES,
    CheckpointError,
    ConfigError,
    build_model,
    load_checkpoint,
    save_model,
)
from .runs import git_commit, hardware
from .train_state import Process, TrainState
from .training import (
    Exposure,
    LogProb,
    bpd_summary,
    evaluate_bpd,
    initialize_actnorm,
    perturb_pixels,
    select_device,
    train_step,
)

STATE_FILE = "train_state.pt"  # in --out; rewritten every --checkpoint-every steps
FOLDER_VAL_SOURCE = "validation files of the folder (held out by a hash of their path)"
# The recipe's training fields and their defaults (``pipelines.train``'s flags take them).
RECIPE_DEFAULTS = {"epochs": 10, "batch_size": 64, "lr": 1e-3, "warmup": 200, "clip": 50.0,
                   "ema": 0.0, "perturb": 0.0, "max_minutes": None, "amp": False, "seed": 0,
                   "init_from": None, "outlier_exposure": 0.0, "outlier_weight": 1.0}


class TrainingError(ValueError):
    """A run that cannot start or go on as asked; the message names the problem."""


def recipe_from_config(path: str | Path, **overrides: object) -> argparse.Namespace:
    """The training recipe of a ``pipelines.train`` JSON config (``RECIPE_DEFAULTS`` for what
    it leaves out; ``overrides`` win), for running ``TrainState`` and ``train_batch`` outside
    the command line."""
    recipe = {**RECIPE_DEFAULTS, **json.loads(Path(path).read_text()), **overrides}
    if isinstance(recipe.get("hparams"), dict):  # as the command line gives it
        recipe["hparams"] = json.dumps(recipe["hparams"])
    return argparse.Namespace(**recipe)


def setup_distributed(device_name: str) -> Process:
    """This process; joins the process group when launched by torchrun."""
    if "RANK" not in os.environ:
        return Process(0, 1, select_device(device_name))
    device = select_device(device_name)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return Process(rank, world, device)


def leave_process_group() -> None:
    """Free unreferenced DDP wrappers, wait for every rank, then leave the group. A
    DistributedDataParallel wrapper sits in a reference cycle: left to interpreter exit, after
    the group is gone, its reducer can abort the process ("terminate called without an active
    exception"; 1 two-rank run in 3 to 6 here). Callers drop their own reference first."""
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def settle_amp(args: argparse.Namespace, device: torch.device) -> None:
    """Keep --amp only where bf16 is native (CUDA, or a CPU with AVX512-BF16/AMX): emulated, it
    is slower than float32, so a recipe that asks for it trains in float32 there."""
    if args.amp and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        print("warning: this CPU has no native bf16, where --amp would be emulated and slower: "
              "training in float32", file=sys.stderr)
        args.amp = False


def fit(args: argparse.Namespace, proc: Process, train: torch.Tensor, val: torch.Tensor,
        outliers: torch.Tensor | None = None) -> None:
    """Build or resume the model, train and validate epoch by epoch until the epochs or the time
    budget run out, then write the card and samples (rank 0). ``outliers`` (uint8, with
    ``args.outlier_exposure`` > 0) are drawn into every step for outlier exposure."""
    source = read_init_source(args)
    density = build_density(args, source).to(proc.device)
    steps_per_epoch = max(1, len(train) // (args.batch_size * proc.world))
    state_path = args.out / STATE_FILE
    if args.resume and state_path.exists():
        state = TrainState.resume(state_path, args, density, steps_per_epoch, proc)
        if proc.rank == 0:
            print(f"resumed from {state_path} at step {state.step}")
    else:
        init_weights(args, density, source, train, proc.device)
        state = TrainState.start(args, density, steps_per_epoch, proc)

    model = LogProb(density)
    if proc.world > 1:
        ddp_ids = [proc.device.index] if proc.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ddp_ids)
    state.remember_good()  # after DDP's broadcast, so that every rank holds rank 0's weights
    started = time.time() - state.elapsed
    out_of_time = False
    while state.step < state.total_steps and not out_of_time:
        epoch = state.step // steps_per_epoch
        losses, out_of_time = run_epoch(args, state, model, train, proc, started, outliers)
        if proc.rank == 0:
            validate(args, state, val, epoch, losses, proc)
        state.checkpoint(state_path, proc.rank)

    if proc.rank == 0:
        finish(args, proc.device, state.history)
    if proc.world > 1:
        del model  # the last reference: leave_process_group's gc.collect frees the wrapper


def read_init_source(args: argparse.Namespace) -> dict | None:
    """The --init-from checkpoint, read once: its weights and architecture start this run, and
    its summary (``args.init_source``) goes into every card."""
    if not args.init_from:
        return None
    try:
        source = load_checkpoint(args.init_from)
    except CheckpointError as err:
        raise TrainingError(f"--init-from {args.init_from}: {str(err).splitlines()[0]}") from err
    args.init_source = init_from_summary(args.init_from, source)
    return source


def build_density(args: argparse.Namespace, source: dict | None) -> torch.nn.Module:
    """The model to train, from --model and --hparams, or the --init-from checkpoint's."""
    try:
        # A warm restart takes its architecture from the checkpoint: rebuilding it from --hparams
        # could load the weights into a different coupling of the same shapes without complaint.
        density = (build_model(source["config"]) if source is not None else
                   build_model(args.model, args.image_shape, **json.loads(args.hparams)))
    except ConfigError as err:
        raise TrainingError(str(err)) from err
    shape = tuple(density.config["image_shape"])
    if source is not None and (density.config["family"] != args.model
                               or shape != tuple(args.image_shape)):
        raise TrainingError(f"--init-from {args.init_from} is a {density.config['family']} model "
                            f"of shape {density.config['image_shape']}, not {args.model} on "
                            f"{args.dataset}")
    return density


def init_weights(args: argparse.Namespace, density: torch.nn.Module, source: dict | None,
                 train: torch.Tensor, device: torch.device) -> None:
    """A new run's first weights: the --init-from checkpoint's, else ActNorm initialised from
    512 training images."""
    if source is not None:
        try:
            density.load_state_dict(source["state_dict"])
        except RuntimeError as err:
            raise TrainingError(f"--init-from {args.init_from}: {str(err).splitlines()[0]}"
                                ) from err
        print(f"initialised from {args.init_from} (val {source.get('card', {}).get('val_bpd')})")
        return
    init_gen = torch.Generator(device="cpu").manual_seed(args.seed)
    init_batch = train[torch.randperm(len(train), generator=init_gen)[:512]].to(device)
    initialize_actnorm(density, init_batch, torch.Generator(device=device).manual_seed(args.seed))


def run_epoch(args: argparse.Namespace, state: TrainState, model: torch.nn.Module,
              train: torch.Tensor, proc: Process, started: float,
              outliers: torch.Tensor | None = None) -> tuple[list[float], bool]:
    """The rest of the current epoch, from ``state.step``: its losses, and whether the time
    budget ran out (which stops the epoch early). ``started`` is when ``state.elapsed`` was 0."""
    epoch, offset = divmod(state.step, state.steps_per_epoch)
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(
        args.seed * 7919 + epoch))
    all_finite = (lambda ok: all_ranks_agree(ok, proc.device)) if proc.world > 1 else None
    bar = tqdm(range(offset, state.steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}",
               # None: a bar on a terminal only; a log file gets the per-epoch lines
               disable=True if proc.rank != 0 else None, unit="step", initial=offset,
               total=state.steps_per_epoch)
    losses, out_of_time = [], False
    for i in bar:
        start = (i * proc.world + proc.rank) * args.batch_size
        batch = train[perm[start:start + args.batch_size]].to(proc.device)
        loss = train_batch(args, state, model, batch, all_finite,
                           exposure_batch(args, outliers, state.step, len(batch), proc))
        losses.append(loss)
        bar.set_postfix(bpd=f"{loss:.3f}", lr=f"{state.scheduler.get_last_lr()[0]:.1e}")
        state.elapsed = synced_elapsed(time.time() - started, proc.world, proc.device)
        if state.step % args.checkpoint_every == 0:
            state.checkpoint(args.out / STATE_FILE, proc.rank)
        if state.elapsed > state.budget:
            out_of_time = True
            break
    bar.close()
    return losses, out_of_time


def exposure_batch(args: argparse.Namespace, outliers: torch.Tensor | None, step: int, size: int,
                   proc: Process) -> Exposure | None:
    """The outlier-exposure batch of ``step`` (drawn from ``outliers`` by a generator seeded by
    the step and rank, so a resumed run draws the same), or None when exposure is off."""
    if outliers is None or not getattr(args, "outlier_exposure", 0.0):
        return None
    draw = torch.Generator().manual_seed((args.seed * 1_000_003 + step) * 64 + proc.rank)
    picked = outliers[torch.randint(len(outliers), (size,), generator=draw)]
    return Exposure(picked.to(proc.device), margin=args.outlier_exposure,
                    weight=args.outlier_weight)


def train_batch(args: argparse.Namespace, state: TrainState, model: torch.nn.Module,
                batch: torch.Tensor, all_finite: Callable[[bool], bool] | None = None,
                exposure: Exposure | None = None) -> float:
    """One step of the recipe on a uint8 batch (also ``benchmarks.time_to_quality``'s): the
    --perturb corruption, the likelihood step, the non-finite guard, the schedule and the EMA.
    Returns the batch's bits/dim (nan for a skipped update)."""
    if args.perturb:
        batch = perturb_pixels(batch, args.perturb, state.generator)
    loss = train_step(model, state.density, batch, state.optimizer, generator=state.generator,
                      clip=args.clip, amp=args.amp, all_finite=all_finite, exposure=exposure)
    if not math.isfinite(loss):
        print(f"warning: non-finite loss at step {state.step}; update skipped", file=sys.stderr)
    if state.guard.observe(loss):
        state.fall_back()
        print(f"warning: {state.guard.patience} non-finite losses in a row at step "
              f"{state.step}: restored the last good weights, learning rate "
              f"x{state.lr_scale:g}", file=sys.stderr, flush=True)
    state.step_losses.append(loss)
    state.scheduler.step()
    if state.ema is not None:
        state.ema.update(state.density, step=state.step)
    state.step += 1
    return loss


def validate(args: argparse.Namespace, state: TrainState, val: torch.Tensor, epoch: int,
             losses: list[float], proc: Process) -> None:
    """Validation bits/dim of the evaluation weights after ``epoch``, recorded in the history;
    the weights become ``model.pt`` when they are the best yet (or always, with --keep last)."""
    finite = [x for x in losses if math.isfinite(x)]
    train_bpd = sum(finite) / max(1, len(finite))
    with state.eval_weights_loaded() as density:
        val_bpd = evaluate_bpd(density, val).mean().item()
        state.history.append({"epoch": epoch + 1, "step": state.step,
                              "train_bpd": round(train_bpd, 4), "val_bpd": round(val_bpd, 4),
                              "minutes": round(state.elapsed / 60, 2)})
        print(f"epoch {epoch + 1}: train {train_bpd:.4f} bits/dim, val {val_bpd:.4f} bits/dim, "
              f"{state.elapsed / 60:.1f} min", flush=True)
        if val_bpd < state.best_val or args.keep == "last":
            state.best_val = min(state.best_val, val_bpd)
            save_model(density, args.out / "model.pt", card=make_card(
                args, density, state.history, state.elapsed, proc, val_bpd))


def all_ranks_agree(ok: bool, device: torch.device) -> bool:
    """True only if ``ok`` holds on every DDP rank."""
    flag = torch.tensor([1.0 if ok else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)


def synced_elapsed(seconds: float, world: int, device: torch.device) -> float:
    """Rank 0's clock on every rank, so a time-driven learning rate stays identical under DDP."""
    if world == 1:
        return seconds
    t = torch.tensor([seconds], dtype=torch.float64, device=device)
    torch.distributed.broadcast(t, src=0)
    return float(t)


def make_card(args: argparse.Namespace, density: torch.nn.Module, history: list[dict],
              elapsed: float, proc: Process, val_bpd: float) -> ModelCard:
    """The card of the weights just validated: what they are, how they were trained, and the
    validation figure with what it was measured on."""
    folder = getattr(args, "folder_entry", None)
    full = folder["val"] if folder else VALIDATION_SIZE
    val_images = min(args.limit_val or full, full)
    return ModelCard(
        name=args.out.name, dataset=args.dataset, model=args.model,
        image_shape=tuple(args.image_shape), hparams=dict(density.config["flow"]),
        val=Measurement(bpd=round(val_bpd, 4), images=val_images,
                        subset="first" if val_images < full else "all",
                        per_missing_dim=args.model in CONDITIONAL_FAMILIES,
                        source=FOLDER_VAL_SOURCE if folder else None),
        folder=folder, input_recipe=folder["recipe"] if folder else None,
        training_minutes=round(elapsed / 60, 1), hardware=hardware(proc.device, proc.world),
        command="python -m pipelines.train " + shlex.join(args.argv), commit=git_commit(),
        history=tuple(history), init_from=args.init_source if args.init_from else None,
        perturb=args.perturb or None, capture=args.capture or None,
        outlier_exposure=({"margin_bpd": args.outlier_exposure, "weight": args.outlier_weight,
                           "outliers": args.outlier_source}
                          if getattr(args, "outlier_exposure", 0.0) else None),
        kept="the last validated weights" if args.keep == "last" else None,
        date=datetime.now(UTC).isoformat(timespec="seconds"))


def init_from_summary(path: str, checkpoint: dict) -> dict:
    """Where a warm-restarted run's weights came from, so its card tells the whole training."""
    card = ModelCard.from_dict(checkpoint.get("card"))
    summary = {"checkpoint": str(path), "val_bpd": card.val_bpd,
               "training_minutes": card.training_minutes, "command": card.command}
    if card.init_from:  # the source was itself a warm restart: keep the whole chain
        summary["init_from"] = card.init_from
    return summary


def finish(args: argparse.Namespace, device: torch.device, history: list[dict]) -> None:
    """Reload the best weights, add the full history and test bits/dim to the card, write
    card.json and samples.png."""
    from torchvision.utils import save_image

    from inpaint_app.models import load_model, read_card

    best = load_model(args.out / "model.pt", map_location=device)
    card = read_card(args.out / "model.pt").replace(
        parameters=sum(p.numel() for p in best.parameters()), history=tuple(history))
    if args.eval_test:
        test = load_split(args.dataset, "test", args.data_root, download=args.download)
        bpd = evaluate_bpd(best, test.to(device), progress=True)
        mean, stderr = bpd_summary(bpd)
        card = card.replace(test=Measurement(
            bpd=round(mean, 4), stderr=round(stderr, 4), images=len(test), subset="all",
            command=f"python -m pipelines.evaluate {args.out / 'model.pt'}"))
        print(f"test: {card.test_bpd:.4f} bits/dim over {len(test)} images")
    save_model(best, args.out / "model.pt", card=card)
    samples = best.sample(64, temperature=0.8,
                          generator=torch.Generator(device=device).manual_seed(0))
    save_image(samples, args.out / "samples.png", nrow=8)
