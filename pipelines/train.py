"""Train an image flow by maximum likelihood; write ``model.pt``, ``card.json``, ``samples.png``.

    python -m pipelines.train --dataset mnist --model glow --out trained/mnist-glow --epochs 10
    python -m pipelines.train --config pipelines/configs/mnist-glow-cpu.json --resume
    torchrun --nproc_per_node 2 -m pipelines.train --dataset mnist --model glow --out runs/ddp

Runs on CUDA when present (``--device auto``), CPU otherwise; DDP is detected from ``RANK`` under
torchrun (gloo on CPU, NCCL on GPU). ``--resume`` continues from ``<out>/train_state.pt``, which
is rewritten atomically every ``--checkpoint-every`` steps, so a killed run loses little.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from inpaint_app.card import Measurement, ModelCard
from inpaint_app.data import VALIDATION_SIZE, DatasetNotFound, image_shape, load_split
from inpaint_app.models import (
    ALL_FAMILIES,
    CONDITIONAL_FAMILIES,
    CheckpointError,
    ConfigError,
    atomic_save,
    build_model,
    load_checkpoint,
    save_model,
)
from inpaint_app.nuisances import captured_copies
from inpaint_app.runs import git_commit, hardware
from inpaint_app.training import (
    EMA,
    LogProb,
    NonFiniteGuard,
    bpd_summary,
    evaluate_bpd,
    initialize_actnorm,
    perturb_pixels,
    select_device,
    train_step,
    warmup_cosine,
)

STATE_FILE = "train_state.pt"  # in --out; rewritten every --checkpoint-every steps
FOLDER_CONFIG = Path(__file__).parent / "configs" / "folder-cpu.json"  # --images' default recipe
FOLDER_VAL_SOURCE = "validation files of the folder (held out by a hash of their path)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", help="JSON file of defaults for any flag below (flags win)")
    p.add_argument("--dataset", default="mnist", help="mnist, fashion-mnist, cifar10, svhn")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="train on a folder of images (flat, or class subfolders) instead of "
                        "--dataset, and leave a calibrated, servable bundle in --out; without "
                        f"--config the recipe is {FOLDER_CONFIG.name} (pipelines/folder.py)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="--images: the model's size (default: the folder's most common size "
                        "when both sides are <= 64 and multiples of 4, else 32 x 32)")
    p.add_argument("--channels", type=int, choices=[1, 3], default=None,
                   help="--images: 1 (grayscale) or 3 (RGB); default 1 when no image has colour")
    p.add_argument("--no-bundle", dest="bundle", action="store_false",
                   help="--images: train the flow only (no exemplar bank, background model, "
                        "calibration or examples)")
    p.add_argument("--model", default="glow",
                   help=f"one of {sorted(ALL_FAMILIES)} (cflow: conditional inpainting flow)")
    p.add_argument("--hparams", default="{}",
                   help='JSON of model hyperparameters, e.g. {"steps": 8}')
    p.add_argument("--out", default=None,
                   help="output folder (default trained/<dataset>-<model>; runs/... for cflow)")
    p.add_argument("--data-root", default=None,
                   help="dataset root (default $FLOWPAINT_DATA or ./data)")
    p.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200, help="warm-up steps")
    p.add_argument("--clip", type=float, default=50.0, help="gradient-norm clip")
    p.add_argument("--ema", type=float, default=0.0, help="EMA decay for evaluation (0: off)")
    p.add_argument("--perturb", type=float, default=0.0, metavar="RATE",
                   help="replace each training pixel by a random level with this probability: "
                        "a background model for the anomaly likelihood ratio (0: off)")
    p.add_argument("--capture", type=int, default=0, metavar="COPIES",
                   help="add COPIES randomly captured copies of the training set (resampled, "
                        "JPEG, blurred, contrast, gamma, shifted; then input-normalized, as "
                        "uploads are: inpaint_app.nuisances); validation stays clean")
    p.add_argument("--limit-train", type=int, default=None, help="use only the first N images")
    p.add_argument("--limit-val", type=int, default=None, help="validate on the first N images")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="time budget: the cosine schedule anneals within it, then training stops")
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between train states")
    p.add_argument("--keep", choices=["best", "last"], default="best",
                   help="which validated weights become model.pt: the best clean validation "
                        "bits/dim, or the last (training with --capture, whose goal is not "
                        "clean bits/dim)")
    p.add_argument("--eval-test", action="store_true", help="score the full test set at the end")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action="store_true",
                   help="bf16 autocast of the coupling networks (flow arithmetic stays float32) "
                        "on CUDA or a CPU with native bf16 (AVX512-BF16/AMX); elsewhere it "
                        "warns and trains in float32")
    p.add_argument("--no-amp", dest="amp", action="store_false",
                   help="float32 throughout (turns off a config's amp)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="start from this model.pt's weights with a fresh optimizer and schedule "
                        "(a warm restart); the architecture is the checkpoint's")
    args = p.parse_args(argv)
    config = args.config or (FOLDER_CONFIG if args.images else None)
    if config:
        defaults = json.loads(Path(config).read_text())
        unknown = set(defaults) - set(vars(args))
        if unknown:
            p.error(f"unknown keys in {config}: {sorted(unknown)}")
        p.set_defaults(**{k: (json.dumps(v) if k == "hparams" else v)
                          for k, v in defaults.items()})
        args = p.parse_args(argv)
    if args.capture < 0:
        p.error(f"--capture must be >= 0, got {args.capture}")
    if not 0.0 <= args.perturb < 1.0:
        p.error(f"--perturb must be in [0, 1), got {args.perturb}")
    if args.model not in ALL_FAMILIES:
        p.error(f"unknown model {args.model!r}: choose one of {sorted(ALL_FAMILIES)}")
    if args.images:
        if args.model in CONDITIONAL_FAMILIES or args.capture or args.eval_test:
            p.error("--images trains an image model: --capture, --eval-test and conditional "
                    "families are for the torchvision datasets")
        args.dataset = f"folder:{Path(args.images).resolve().name}"
        args.out = args.out or f"trained/{Path(args.images).resolve().name}"
        args.image_shape = None  # from the folder (pipelines.folder.folder_data)
    else:
        try:
            args.image_shape = image_shape(args.dataset)
        except ValueError as err:
            p.error(str(err))
    # A conditional model is not an image model the app could serve: it goes to runs/ until
    # pipelines.tune_inpainter installs it beside one.
    args.out = Path(args.out or (f"runs/{args.dataset}-{args.model}"
                                 if args.model in CONDITIONAL_FAMILIES
                                 else f"trained/{args.dataset}-{args.model}"))
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the card's command line
    return args


@dataclass(frozen=True)
class Process:
    """This process's place in the run: its DDP rank, the number of processes, its device."""

    rank: int
    world: int
    device: torch.device


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


def main(argv: list[str] | None = None) -> None:
    """Set up data and DDP, train (``fit``), finish the card and samples; with --images, also
    the rest of a servable bundle (``pipelines.folder``)."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    proc = setup_distributed(args.device)
    settle_amp(args, proc.device)
    torch.manual_seed(args.seed)
    if args.images:
        from pipelines.folder import build_bundle, folder_data

        folder = folder_data(args)
        train, val = folder.train, folder.val
    else:
        train, val = load_data(args)
    fit(args, proc, train, val)
    if proc.rank == 0 and args.images and args.bundle:
        build_bundle(args, folder, proc)
    if proc.world > 1:
        leave_process_group()


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


def fit(args: argparse.Namespace, proc: Process, train: torch.Tensor, val: torch.Tensor
        ) -> None:
    """Build or resume the model, train and validate epoch by epoch until the epochs or the time
    budget run out, then write the card and samples (rank 0)."""
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
        losses, out_of_time = run_epoch(args, state, model, train, proc, started)
        if proc.rank == 0:
            validate(args, state, val, epoch, losses, proc)
        state.checkpoint(state_path, proc.rank)

    if proc.rank == 0:
        finish(args, proc.device, state.history)
    if proc.world > 1:
        del model  # the last reference: leave_process_group's gc.collect frees the wrapper


def load_data(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and validation images, uint8 tensors in memory; validation is held out of the
    training set, and --capture adds captured copies of the training images only."""
    try:
        train = load_split(args.dataset, "train", args.data_root, download=args.download)
        val = load_split(args.dataset, "val", args.data_root, download=args.download)
    except DatasetNotFound as err:
        sys.exit(f"error: {err}")
    train = train[: args.limit_train] if args.limit_train else train
    val = val[: args.limit_val] if args.limit_val else val
    if args.capture:
        captured = captured_copies(train, args.dataset, args.capture, seed=args.seed)
        train = torch.cat([train, captured])
        print(f"training on {len(train):,} images: {args.capture} captured cop"
              f"{'y' if args.capture == 1 else 'ies'} of each")
    return train, val


def read_init_source(args: argparse.Namespace) -> dict | None:
    """The --init-from checkpoint, read once: its weights and architecture start this run, and
    its summary (``args.init_source``) goes into every card."""
    if not args.init_from:
        return None
    try:
        source = load_checkpoint(args.init_from)
    except CheckpointError as err:
        sys.exit(f"error: --init-from {args.init_from}: {str(err).splitlines()[0]}")
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
        sys.exit(f"error: {err}")
    shape = tuple(density.config["image_shape"])
    if source is not None and (density.config["family"] != args.model
                               or shape != tuple(args.image_shape)):
        sys.exit(f"error: --init-from {args.init_from} is a {density.config['family']} model of "
                 f"shape {density.config['image_shape']}, not {args.model} on {args.dataset}")
    return density


def init_weights(args: argparse.Namespace, density: torch.nn.Module, source: dict | None,
                 train: torch.Tensor, device: torch.device) -> None:
    """A new run's first weights: the --init-from checkpoint's, else ActNorm initialised from
    512 training images."""
    if source is not None:
        try:
            density.load_state_dict(source["state_dict"])
        except RuntimeError as err:
            sys.exit(f"error: --init-from {args.init_from}: {str(err).splitlines()[0]}")
        print(f"initialised from {args.init_from} (val {source.get('card', {}).get('val_bpd')})")
        return
    init_gen = torch.Generator(device="cpu").manual_seed(args.seed)
    init_batch = train[torch.randperm(len(train), generator=init_gen)[:512]].to(device)
    initialize_actnorm(density, init_batch, torch.Generator(device=device).manual_seed(args.seed))


def run_epoch(args: argparse.Namespace, state: TrainState, model: torch.nn.Module,
              train: torch.Tensor, proc: Process, started: float) -> tuple[list[float], bool]:
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
        loss = train_batch(args, state, model, batch, all_finite)
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


def train_batch(args: argparse.Namespace, state: TrainState, model: torch.nn.Module,
                batch: torch.Tensor, all_finite: Callable[[bool], bool] | None = None) -> float:
    """One step of the recipe on a uint8 batch (also ``pipelines.time_to_quality``'s): the
    --perturb corruption, the likelihood step, the non-finite guard, the schedule and the EMA.
    Returns the batch's bits/dim (nan for a skipped update)."""
    if args.perturb:
        batch = perturb_pixels(batch, args.perturb, state.generator)
    loss = train_step(model, state.density, batch, state.optimizer, generator=state.generator,
                      clip=args.clip, amp=args.amp, all_finite=all_finite)
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


if __name__ == "__main__":
    main()
