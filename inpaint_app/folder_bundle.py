"""What ``flowpaint train --images DIR`` makes of one's own images: a calibrated, servable bundle.

    flowpaint train --images photos/ --out trained/photos [--size H W] [--channels 1|3]
                    [--max-minutes 30] [--no-bundle]
    flowpaint serve --models trained/

``pipelines.train`` reads the folder (``inpaint_app.folder``: validation split by path hash,
unusable files skipped with a reason each) and trains the flow with the folder recipe
(``pipelines/configs/folder-cpu.json``). ``build_bundle`` then adds what the app and the batch
scripts use:

1. a background model for the anomaly likelihood ratio (a small Glow on perturbed pixels, as the
   shipped ``*-background`` recipes);
2. the exemplar bank (the training images, at most ``BANK_MAX``);
3. example images for the app's gallery (``examples/``, from the validation files);
4. anomaly thresholds calibrated on the validation files (``inpaint_app.calibration_store``).

``--max-minutes`` bounds the whole command: the flow gets what the bundle steps are not
expected to need (``bundle_reserve``), and each step gets what is left. An unusable folder or a
budget too small raises ``BundleError``; the command line prints it and exits.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import torch

from .bundle import EXAMPLES_DIR, load_bundle
from .calibration_store import install_beside, store_calibration
from .exemplars import BANK_FILE, save_bank
from .folder import FolderError, FolderImages, FolderSpec, display_name, load_folder
from .gallery import write_examples
from .models import BACKGROUND_FILE, checkpoint_file, read_card
from .normalize import RECIPES
from .train_state import Process
from .trainer import TrainingError, fit

BACKGROUND_SHARE = 0.1  # of --max-minutes, for the background model
BACKGROUND_MINUTES = 3.0  # without --max-minutes
BACKGROUND_HPARAMS = {"steps": 4, "hidden": 48}  # the shipped background recipes' size
BACKGROUND_PERTURB = 0.1
CALIBRATION_IMAGES_PER_S = 30.0  # a conservative verdict rate on 2 threads, for the reserve
BANK_MAX = 20_000
EXAMPLES = 8


class BundleError(TrainingError):
    """A folder that cannot be trained on, or a budget too small for the bundle."""


def folder_data(args: argparse.Namespace) -> FolderImages:
    """Read ``--images`` for training; sets ``args.image_shape``, ``args.folder_entry`` and,
    when the whole command has a budget, the flow's share of it (``args.max_minutes``)."""
    args.command_started = time.monotonic()
    try:
        spec = FolderSpec.infer(args.images, tuple(args.size) if args.size else None,
                                args.channels)
        data = load_folder(args.images, spec)
    except FolderError as err:
        raise BundleError(str(err)) from err
    args.image_shape = spec.image_shape
    args.folder_entry = data.card_entry()
    args.command_minutes = args.max_minutes
    if args.max_minutes and args.bundle:
        spent = time.monotonic() - args.command_started
        flow = 60 * args.max_minutes - spent - bundle_reserve(60 * args.max_minutes, len(data.val))
        if flow < 30:
            raise BundleError(f"--max-minutes {args.max_minutes:g} leaves {flow:.0f} s for the "
                              "flow after reading the folder and reserving time for the "
                              "background model and calibration; give it more, or pass "
                              "--no-bundle")
        args.max_minutes = flow / 60
        print(f"budget: {flow / 60:.1f} of {args.command_minutes:g} minutes for the flow, "
              "the rest for the background model, exemplar bank and calibration", flush=True)
    return data


def bundle_reserve(total_seconds: float, val_images: int) -> float:
    """Seconds kept back from the flow for ``build_bundle``: the background model's share and
    the calibration's reserve."""
    return BACKGROUND_SHARE * total_seconds + calibration_reserve(val_images)


def calibration_reserve(val_images: int) -> float:
    """Seconds for the calibration (every validation image scored with its turns and the
    background) and a margin for the last validations, samples and the bank."""
    return 50 + val_images / CALIBRATION_IMAGES_PER_S


def build_bundle(args: argparse.Namespace, folder: FolderImages, proc: Process) -> None:
    """Background model, exemplar bank, examples and calibration beside the trained flow."""
    path = checkpoint_file(args.out)
    background_out = args.out / ".background"
    # rank 0 alone (under torchrun the other ranks wait at the final barrier)
    fit(background_args(args, background_out), Process(0, 1, proc.device), folder.train,
        folder.val)
    install_beside(background_out / "model.pt", path, BACKGROUND_FILE)
    shutil.rmtree(background_out, ignore_errors=True)

    bank = folder.train[torch.randperm(len(folder.train), generator=torch.Generator()
                                       .manual_seed(0))[:BANK_MAX].sort().values]
    save_bank(bank.contiguous(), path.with_name(BANK_FILE))
    write_folder_examples(folder, path.parent / EXAMPLES_DIR)

    bundle = load_bundle(path)
    bundle = dataclasses.replace(bundle, card=bundle.card.replace(exemplars={
        "file": BANK_FILE, "images": len(bank), "source": "the folder's training files "
        "(validation files excluded), random draw, seed 0"}))
    store_calibration(path, bundle, folder.val, fpr=0.05,
                      source=f"{display_name(folder.root.name)} validation files "
                             f"({len(folder.val):,})",
                      recipe=RECIPES[folder.spec.recipe] if folder.spec.channels == 1 else None,
                      command=f"python -m pipelines.calibrate {path}")
    report(args, folder, path)


def background_args(args: argparse.Namespace, out: Path) -> argparse.Namespace:
    """The background model's run: a small Glow on perturbed pixels of the same images, in the
    budget that is left after the flow minus the calibration's reserve."""
    bg = argparse.Namespace(**vars(args))
    if args.command_minutes:
        left = 60 * args.command_minutes - (time.monotonic() - args.command_started)
        seconds = left - calibration_reserve(args.folder_entry["val"])
        bg.max_minutes = max(0.25, min(BACKGROUND_SHARE * 60 * args.command_minutes,
                                       seconds) / 60)
    else:
        bg.max_minutes = BACKGROUND_MINUTES
    bg.model, bg.hparams, bg.perturb = "glow", json.dumps(BACKGROUND_HPARAMS), BACKGROUND_PERTURB
    bg.ema, bg.out, bg.resume, bg.init_from, bg.keep = 0.0, out, False, None, "best"
    bg.argv = [*args.argv, "(background model)"]
    print(f"background model: glow {BACKGROUND_HPARAMS}, perturb {BACKGROUND_PERTURB}, "
          f"{bg.max_minutes:.1f} min", flush=True)
    return bg


def write_folder_examples(folder: FolderImages, out: Path) -> None:
    """Up to ``EXAMPLES`` validation images, evenly spaced, as model-size PNGs for the app,
    each named by its file (``inpaint_app.gallery``)."""
    count = min(EXAMPLES, len(folder.val))
    chosen = [i * len(folder.val) // count for i in range(count)]
    write_examples(out, folder.val[chosen], shows=[None] * count, masks=[None] * count,
                   sources=[f"file {folder.val_names[i]} of folder "
                            f"{display_name(folder.root.name)}" for i in chosen])


def report(args: argparse.Namespace, folder: FolderImages, path: Path) -> None:
    """What the user got, where it is and how to serve it."""
    card = read_card(path)
    minutes = (time.monotonic() - args.command_started) / 60
    print(f"bundle ready in {minutes:.1f} min: {path.parent}\n"
          f"  {len(folder.train):,} training and {len(folder.val):,} validation images, "
          f"{len(folder.skipped)} files skipped\n"
          f"  validation {card.val_bpd:.4f} bits/dim; anomaly threshold at 5 % of the "
          "validation files\n"
          f"  serve it: flowpaint serve --models {path.parent.parent}", flush=True)
