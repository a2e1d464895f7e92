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
import json
import math
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from inpaint_app.data import DatasetNotFound, image_shape, load_split
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", help="JSON file of defaults for any flag below (flags win)")
    p.add_argument("--dataset", default="mnist", help="mnist, fashion-mnist, cifar10, svhn")
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
                   help="bf16 autocast of the coupling networks (flow arithmetic stays float32); "
                        "CUDA, or a CPU with native bf16 (AVX512-BF16/AMX)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="start from this model.pt's weights with a fresh optimizer and schedule "
                        "(a warm restart); the architecture is the checkpoint's")
    args = p.parse_args(argv)
    if args.config:
        defaults = json.loads(Path(args.config).read_text())
        unknown = set(defaults) - set(vars(args))
        if unknown:
            p.error(f"unknown keys in {args.config}: {sorted(unknown)}")
        p.set_defaults(**{k: (json.dumps(v) if k == "hparams" else v)
                          for k, v in defaults.items()})
        args = p.parse_args(argv)
    if args.capture < 0:
        p.error(f"--capture must be >= 0, got {args.capture}")
    if not 0.0 <= args.perturb < 1.0:
        p.error(f"--perturb must be in [0, 1), got {args.perturb}")
    if args.model not in ALL_FAMILIES:
        p.error(f"unknown model {args.model!r}: choose one of {sorted(ALL_FAMILIES)}")
    # A conditional model is not an image model the app could serve: it goes to runs/ until
    # pipelines.tune_inpainter installs it beside one.
    args.out = Path(args.out or (f"runs/{args.dataset}-{args.model}"
                                 if args.model in CONDITIONAL_FAMILIES
                                 else f"trained/{args.dataset}-{args.model}"))
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the card's command line
    return args


def setup_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group when launched by torchrun."""
    if "RANK" not in os.environ:
        return 0, 1, select_device(device_name)
    device = select_device(device_name)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return rank, world, device


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world, device = setup_distributed(args.device)
    if args.amp and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        print("warning: --amp on a CPU without native bf16 is emulated and slower than float32",
              file=sys.stderr)
    torch.manual_seed(args.seed)

    # Data: uint8 tensors in memory; validation is held out of the training set.
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

    source = None
    if args.init_from:  # read once: its weights and architecture below, its summary in every card
        try:
            source = load_checkpoint(args.init_from)
        except CheckpointError as err:
            sys.exit(f"error: --init-from {args.init_from}: {str(err).splitlines()[0]}")
        args.init_source = init_from_summary(args.init_from, source)

    try:
        # A warm restart takes its architecture from the checkpoint: rebuilding it from --hparams
        # could load the weights into a different coupling of the same shapes without complaint.
        density = (build_model(source["config"]) if source is not None else
                   build_model(args.model, image_shape(args.dataset), **json.loads(args.hparams)))
    except ConfigError as err:
        sys.exit(f"error: {err}")
    shape = tuple(density.config["image_shape"])
    if source is not None and (density.config["family"] != args.model
                               or shape != image_shape(args.dataset)):
        sys.exit(f"error: --init-from {args.init_from} is a {density.config['family']} model of "
                 f"shape {density.config['image_shape']}, not {args.model} on {args.dataset}")
    density.to(device)
    # Fused Adam: one kernel over all parameters (NICE: 126 -> 9.5 ms a step, docs/performance.md).
    optimizer = torch.optim.Adam(density.parameters(), lr=args.lr, fused=True)
    steps_per_epoch = max(1, len(train) // (args.batch_size * world))
    total_steps = args.epochs * steps_per_epoch
    budget = 60 * args.max_minutes if args.max_minutes else math.inf
    # Read by the schedule: the cosine also follows the time budget, and lr_scale halves after
    # a run of non-finite losses.
    clock = {"elapsed": 0.0, "lr_scale": 1.0}
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: clock["lr_scale"] * warmup_cosine(
            s, warmup=args.warmup, total=total_steps, time_progress=clock["elapsed"] / budget))
    generator = torch.Generator(device=device).manual_seed(args.seed * 1000 + rank)
    state_path = args.out / "train_state.pt"
    step, best_val, history, elapsed, step_losses = 0, math.inf, [], 0.0, []

    if args.resume and state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=True)
        density.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"].cpu() if device.type == "cpu"
                            else state["generator"])
        step, best_val, history, elapsed = (state["step"], state["best_val"], state["history"],
                                            state["elapsed"])
        step_losses = list(state.get("losses", []))
        clock["lr_scale"] = state.get("lr_scale", 1.0)
        print(f"resumed from {state_path} at step {step}")
    elif source is not None:
        try:
            density.load_state_dict(source["state_dict"])
        except RuntimeError as err:
            sys.exit(f"error: --init-from {args.init_from}: {str(err).splitlines()[0]}")
        print(f"initialised from {args.init_from} (val {source.get('card', {}).get('val_bpd')})")
    else:
        init_gen = torch.Generator(device="cpu").manual_seed(args.seed)
        init_batch = train[torch.randperm(len(train), generator=init_gen)[:512]].to(device)
        initialize_actnorm(density, init_batch,
                           torch.Generator(device=device).manual_seed(args.seed))
    ema = EMA(density, args.ema) if args.ema > 0 else None
    if ema is not None and args.resume and state_path.exists() and "ema" in state:
        ema.load_state_dict(state["ema"])

    model = LogProb(density)
    if world > 1:
        ddp_ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ddp_ids)

    last_good = snapshot(density, optimizer)

    def save_state() -> None:
        nonlocal last_good
        last_good = snapshot(density, optimizer)
        if rank != 0:
            return
        try:
            atomic_save({"model": density.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                         "step": step, "best_val": best_val, "history": history,
                         "elapsed": elapsed, "ema": ema.state_dict() if ema else None,
                         "losses": step_losses, "lr_scale": clock["lr_scale"]}, state_path)
        except OSError as err:  # e.g. a full disk: the previous state file is still intact
            print(f"warning: could not write {state_path} ({err}); the previous train state is "
                  "kept and training goes on", file=sys.stderr, flush=True)

    def eval_weights() -> dict[str, torch.Tensor]:
        return ema.state_dict() if ema else density.state_dict()

    guard = NonFiniteGuard(patience=3)
    all_finite = (lambda ok: all_ranks_agree(ok, device)) if world > 1 else None
    started = time.time() - elapsed
    clock["elapsed"] = elapsed
    out_of_time = False
    while step < total_steps and not out_of_time:
        epoch, offset = divmod(step, steps_per_epoch)
        perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(
            args.seed * 7919 + epoch))
        bar = tqdm(range(offset, steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}",
                   disable=rank != 0, unit="step", initial=offset, total=steps_per_epoch)
        losses = []
        for i in bar:
            start = (i * world + rank) * args.batch_size
            batch = train[perm[start:start + args.batch_size]].to(device)
            if args.perturb:
                batch = perturb_pixels(batch, args.perturb, generator)
            loss = train_step(model, density, batch, optimizer,
                              generator=generator, clip=args.clip,
                              amp=args.amp, all_finite=all_finite)
            if not math.isfinite(loss):
                print(f"warning: non-finite loss at step {step}; update skipped", file=sys.stderr)
            if guard.observe(loss):
                density.load_state_dict(last_good["model"])
                optimizer.load_state_dict(last_good["optimizer"])
                clock["lr_scale"] *= 0.5
                print(f"warning: {guard.patience} non-finite losses in a row at step {step}: "
                      f"restored the last good weights, learning rate x{clock['lr_scale']:g}",
                      file=sys.stderr, flush=True)
            losses.append(loss)
            step_losses.append(loss)
            scheduler.step()
            if ema:
                ema.update(density)
            step += 1
            bar.set_postfix(bpd=f"{loss:.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
            elapsed = synced_elapsed(time.time() - started, world, device)
            clock["elapsed"] = elapsed
            if step % args.checkpoint_every == 0:
                save_state()
            if args.max_minutes and elapsed > 60 * args.max_minutes:
                out_of_time = True
                break
        bar.close()
        if rank == 0 and (step % steps_per_epoch == 0 or out_of_time or step >= total_steps):
            best_val = validate_and_save(args, density, eval_weights(), val, epoch, step, losses,
                                         best_val, history, elapsed, device, world)
        save_state()

    if rank == 0:
        finish(args, device, history)
    if world > 1:
        del model  # the DDP wrapper must go before the group, or gloo may abort at exit
        dist.barrier()
        dist.destroy_process_group()


def validate_and_save(args: argparse.Namespace, density: torch.nn.Module,
                      weights: dict[str, torch.Tensor], val: torch.Tensor, epoch: int, step: int,
                      losses: list[float], best_val: float, history: list[dict],
                      elapsed: float, device: torch.device, world: int) -> float:
    """Validation bits/dim with the evaluation weights; keeps the best as ``model.pt``."""
    live = {k: v.clone() for k, v in density.state_dict().items()}
    density.load_state_dict(weights)
    val_bpd = evaluate_bpd(density, val).mean().item()
    finite = [x for x in losses if math.isfinite(x)]
    train_bpd = sum(finite) / max(1, len(finite))
    history.append({"epoch": epoch + 1, "step": step, "train_bpd": round(train_bpd, 4),
                    "val_bpd": round(val_bpd, 4), "minutes": round(elapsed / 60, 2)})
    print(f"epoch {epoch + 1}: train {train_bpd:.4f} bits/dim, val {val_bpd:.4f} bits/dim, "
          f"{elapsed / 60:.1f} min", flush=True)
    if val_bpd < best_val or args.keep == "last":
        best_val = min(best_val, val_bpd)
        save_model(density, args.out / "model.pt", card=make_card(args, history, elapsed,
                                                                  device, world, val_bpd))
    density.load_state_dict(live)
    return best_val


def snapshot(density: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """In-memory copy of weights and optimizer state to fall back on after non-finite losses."""
    return copy.deepcopy({"model": density.state_dict(), "optimizer": optimizer.state_dict()})


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


def make_card(args: argparse.Namespace, history: list[dict], elapsed: float,
              device: torch.device, world: int, val_bpd: float) -> dict:
    return {
        "name": args.out.name, "dataset": args.dataset, "model": args.model,
        "image_shape": list(image_shape(args.dataset)),
        "val_bpd": round(val_bpd, 4),
        "val_measured": (f"mean over the first {args.limit_val:,} of the 5,000 held-out training "
                         "images" if args.limit_val else
                         "mean over the 5,000 held-out training images (last 5,000 of train)")
                        + ", one uniform dequantization sample each, seed 0"
                        + (", bits per missing dim on training-distribution masks drawn with "
                           "seed 0" if args.model in CONDITIONAL_FAMILIES else ""),
        "training_minutes": round(elapsed / 60, 1), "hardware": hardware(device, world),
        "command": "python -m pipelines.train " + shlex.join(args.argv),
        "commit": git_commit(), "history": history,
        **({"init_from": args.init_source} if args.init_from else {}),
        **({"perturb": args.perturb} if args.perturb else {}),
        **({"capture": args.capture} if args.capture else {}),
        **({"kept": "the last validated weights"} if args.keep == "last" else {}),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def init_from_summary(path: str, checkpoint: dict) -> dict:
    """Where a warm-restarted run's weights came from, so its card tells the whole training."""
    card = checkpoint.get("card", {})
    summary = {"checkpoint": str(path), "val_bpd": card.get("val_bpd"),
               "training_minutes": card.get("training_minutes"), "command": card.get("command")}
    if card.get("init_from"):  # the source was itself a warm restart: keep the whole chain
        summary["init_from"] = card["init_from"]
    return summary


def finish(args: argparse.Namespace, device: torch.device, history: list[dict]) -> None:
    """Reload the best weights, add the full history and test bits/dim to the card, write
    card.json and samples.png."""
    from torchvision.utils import save_image

    from inpaint_app.models import load_model

    best = load_model(args.out / "model.pt", map_location=device)
    card = best.card
    card["parameters"] = sum(p.numel() for p in best.parameters())
    card["history"] = history
    if args.eval_test:
        test = load_split(args.dataset, "test", args.data_root, download=args.download)
        bpd = evaluate_bpd(best, test.to(device), progress=True)
        mean, stderr = bpd_summary(bpd)
        card["test_bpd"], card["test_bpd_stderr"] = round(mean, 4), round(stderr, 4)
        card["test_measured"] = (f"python -m pipelines.evaluate {args.out / 'model.pt'}: "
                                 "mean over "
                                 f"all {len(test)} test images, one uniform dequantization sample "
                                 "each, seed 0")
        print(f"test: {card['test_bpd']:.4f} bits/dim over {len(test)} images")
    save_model(best, args.out / "model.pt", card=card)
    samples = best.sample(64, temperature=0.8,
                          generator=torch.Generator(device=device).manual_seed(0))
    save_image(samples, args.out / "samples.png", nrow=8)


if __name__ == "__main__":
    main()
