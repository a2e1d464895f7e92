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
import json
import sys
from pathlib import Path

import torch

from inpaint_app.data import DatasetNotFound, image_shape, load_split
from inpaint_app.models import ALL_FAMILIES, CONDITIONAL_FAMILIES, CheckpointError
from inpaint_app.nuisances import captured_copies
from inpaint_app.synthetic import exposure_outliers
from inpaint_app.train_state import Process
from inpaint_app.trainer import (
    RECIPE_DEFAULTS,
    TrainingError,
    fit,
    leave_process_group,
    settle_amp,
    setup_distributed,
)

FOLDER_CONFIG = Path(__file__).parent / "configs" / "folder-cpu.json"  # --images' default recipe


def parser() -> argparse.ArgumentParser:
    """Every flag and its default: ``--config`` (defaults for any of the others), then the
    groups data, model, schedule, capture and outlier exposure, run."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", help="JSON file of defaults for any flag below (flags win)")

    g = p.add_argument_group("data", "what it trains on")
    g.add_argument("--dataset", default="mnist", help="mnist, fashion-mnist, cifar10, svhn")
    g.add_argument("--images", default=None, metavar="DIR",
                   help="train on a folder of images (flat, or class subfolders) instead of "
                        "--dataset, and leave a calibrated, servable bundle in --out; without "
                        f"--config the recipe is {FOLDER_CONFIG.name}")
    g.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="--images: the model's size (default: the folder's most common size "
                        "when both sides are <= 64 and multiples of 4, else 32 x 32)")
    g.add_argument("--channels", type=int, choices=[1, 3], default=None,
                   help="--images: 1 (grayscale) or 3 (RGB); default 1 when no image has colour")
    g.add_argument("--no-bundle", dest="bundle", action="store_false",
                   help="--images: train the flow only (no exemplar bank, background model, "
                        "calibration or examples)")
    g.add_argument("--data-root", default=None,
                   help="dataset root (default $FLOWPAINT_DATA or ./data)")
    g.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    g.add_argument("--limit-train", type=int, default=None, help="use only the first N images")
    g.add_argument("--limit-val", type=int, default=None, help="validate on the first N images")

    g = p.add_argument_group("model", "the flow")
    g.add_argument("--model", default="glow",
                   help=f"one of {sorted(ALL_FAMILIES)} (cflow: conditional inpainting flow)")
    g.add_argument("--hparams", default="{}",
                   help='JSON of model hyperparameters, e.g. {"steps": 8}')
    g.add_argument("--init-from", default=RECIPE_DEFAULTS["init_from"], metavar="CHECKPOINT",
                   help="start from this model.pt's weights with a fresh optimizer and schedule "
                        "(a warm restart); the architecture is the checkpoint's")

    g = p.add_argument_group("schedule", "optimisation and its budget")
    g.add_argument("--epochs", type=int, default=RECIPE_DEFAULTS["epochs"])
    g.add_argument("--batch-size", type=int, default=RECIPE_DEFAULTS["batch_size"],
                   help="per process")
    g.add_argument("--lr", type=float, default=RECIPE_DEFAULTS["lr"])
    g.add_argument("--warmup", type=int, default=RECIPE_DEFAULTS["warmup"], help="warm-up steps")
    g.add_argument("--clip", type=float, default=RECIPE_DEFAULTS["clip"],
                   help="gradient-norm clip")
    g.add_argument("--ema", type=float, default=RECIPE_DEFAULTS["ema"],
                   help="EMA decay for evaluation (0: off)")
    g.add_argument("--max-minutes", type=float, default=RECIPE_DEFAULTS["max_minutes"],
                   help="time budget: the cosine schedule anneals within it, then training stops")
    g.add_argument("--seed", type=int, default=RECIPE_DEFAULTS["seed"])

    g = p.add_argument_group("capture and outlier exposure",
                             "what else it learns from, for the anomaly verdict")
    g.add_argument("--perturb", type=float, default=RECIPE_DEFAULTS["perturb"], metavar="RATE",
                   help="replace each training pixel by a random level with this probability: "
                        "a background model for the anomaly likelihood ratio (0: off)")
    g.add_argument("--capture", type=int, default=0, metavar="COPIES",
                   help="add COPIES randomly captured copies of the training set (resampled, "
                        "JPEG, blurred, contrast, gamma, shifted; then input-normalized, as "
                        "uploads are: inpaint_app.nuisances); validation stays clean")
    g.add_argument("--outlier-exposure", type=float,
                   default=RECIPE_DEFAULTS["outlier_exposure"], metavar="MARGIN",
                   help="outlier exposure: a hinge that gives synthetic outliers (letters no "
                        "digit resembles, symbols, scribbles; captured like the training set "
                        "with --capture) at least MARGIN more bits/dim than training images "
                        "(0: off)")
    g.add_argument("--outlier-weight", type=float, default=RECIPE_DEFAULTS["outlier_weight"],
                   help="weight of the outlier-exposure hinge beside the bits/dim")
    g.add_argument("--keep", choices=["best", "last"], default="best",
                   help="which validated weights become model.pt: the best clean validation "
                        "bits/dim, or the last (training with --capture, whose goal is not "
                        "clean bits/dim)")

    g = p.add_argument_group("run", "where it writes, on what hardware")
    g.add_argument("--out", default=None,
                   help="output folder (default trained/<dataset>-<model>; runs/... for cflow)")
    g.add_argument("--checkpoint-every", type=int, default=200, help="steps between train states")
    g.add_argument("--eval-test", action="store_true", help="score the full test set at the end")
    g.add_argument("--device", default="auto")
    g.add_argument("--amp", action="store_true",
                   help="bf16 autocast of the coupling networks (flow arithmetic stays float32) "
                        "on CUDA or a CPU with native bf16 (AVX512-BF16/AMX); elsewhere it "
                        "warns and trains in float32")
    g.add_argument("--no-amp", dest="amp", action="store_false",
                   help="float32 throughout (turns off a config's amp)")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    g.add_argument("--resume", action="store_true")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser()
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
    if args.outlier_exposure < 0 or args.outlier_weight < 0:
        p.error("--outlier-exposure and --outlier-weight must be >= 0")
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
        args.image_shape = None  # from the folder (inpaint_app.folder_bundle.folder_data)
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


def main(argv: list[str] | None = None) -> None:
    """Set up data and DDP, train (``inpaint_app.trainer.fit``), finish the card and samples;
    with --images, also the rest of a servable bundle (``inpaint_app.folder_bundle``). A run
    that cannot go on exits with its one-line error."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    proc = setup_distributed(args.device)
    settle_amp(args, proc.device)
    torch.manual_seed(args.seed)
    try:
        run(args, proc)
    except (TrainingError, CheckpointError) as err:
        sys.exit(f"error: {err}")
    if proc.world > 1:
        leave_process_group()


def run(args: argparse.Namespace, proc: Process) -> None:
    """Read the data, train, and with --images (and a bundle) build the rest of the bundle."""
    if args.images:
        from inpaint_app.folder_bundle import build_bundle, folder_data

        folder = folder_data(args)
        train, val = folder.train, folder.val
    else:
        train, val = load_data(args)
    fit(args, proc, train, val, exposure_pool(args, len(train)))
    if proc.rank == 0 and args.images and args.bundle:
        build_bundle(args, folder, proc)


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


def exposure_pool(args: argparse.Namespace, size: int) -> torch.Tensor | None:
    """Synthetic outliers for --outlier-exposure (a fifth as many as training images), with as
    many captured copies as the training set has, in the dataset's frame; None when off."""
    if not args.outlier_exposure:
        return None
    if tuple(args.image_shape) != (1, 28, 28):
        sys.exit("error: --outlier-exposure has synthetic outliers for 28x28 grey datasets only")
    pool = exposure_outliers(max(64, size // 5 // (1 + args.capture)), seed=args.seed)
    if args.capture:
        pool = torch.cat([pool, captured_copies(pool, args.dataset, args.capture,
                                                seed=args.seed + 1)])
    args.outlier_source = (f"inpaint_app.synthetic.exposure_outliers: {len(pool):,} images"
                           + (f", {args.capture} captured cop{'y' if args.capture == 1 else 'ies'}"
                              if args.capture else ""))
    print(f"outlier exposure: margin {args.outlier_exposure} bits/dim, {len(pool):,} outliers")
    return pool


if __name__ == "__main__":
    main()
