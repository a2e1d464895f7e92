"""Calibrate a checkpoint's anomaly thresholds on its validation split and store them in its card.

    python -m pipelines.calibrate trained/mnist-glow/model.pt [--fpr 0.05]
        [--background runs/mnist-background/model.pt]
        [--capture-model runs/mnist-glow-capture-cpu/model.pt]
    python -m pipelines.calibrate trained/mnist-glow --maps [--map-images 1000]
        [--inpainter runs/mnist-cflow/model.pt]

Re-run it whenever the checkpoint changes: it scores the validation split of the card's dataset,
sets each score's threshold at the target false-positive rate, and rewrites ``card["anomaly"]`` in
both model.pt and card.json (each written to a temporary file, then renamed). ``--background``
first installs a background model (``python -m pipelines.train --perturb ...``) beside the
checkpoint as ``background.pt``; the anomaly evidence then includes the likelihood ratio
against it (``inpaint_app.anomaly``). ``--capture-model`` installs a density trained on captured
copies too (``pipelines.train --capture``) as ``capture.pt``: the evidence's flow parts are then
its own, for every image (``inpaint_app.anomaly``). ``--maps`` calibrates the anomaly
map of the conditional inpainting flow beside the checkpoint instead (``inpaint_app.anomaly_map``:
per window position the spread of its bits, and the hot-spot level at ``--fpr``) and stores it in
that flow's card; ``--inpainter`` first installs a conditional flow (``pipelines.train --model
cflow``) beside the checkpoint as ``inpainter.pt``. The validation images go through
the same input normalization as uploads (``inpaint_app.normalize``; ``--no-normalize``: as
stored), so the thresholds hold for what the app and ``score_batch`` actually score; the card
records which.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch

from inpaint_app.anomaly import DEFAULT_PARTS, EVIDENCE_PARTS, VERDICT_BATCH
from inpaint_app.anomaly_map import MapUnavailable
from inpaint_app.calibration_store import install_beside, store_calibration, store_map_calibration
from inpaint_app.capture_axis import calibrate_capture
from inpaint_app.models import (
    BACKGROUND_FILE,
    CAPTURE_FILE,
    CONDITIONAL_FAMILIES,
    INPAINTER_FILE,
    CheckpointError,
    checkpoint_file,
    load_checkpoint,
)
from inpaint_app.normalize import Recipe, normalize_images
from inpaint_app.runs import RunInputError, model_and_split


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Store anomaly thresholds in a checkpoint's card.")
    p.add_argument("checkpoint", help="model.pt (or the folder holding it)")
    p.add_argument("--fpr", type=float, default=0.05, help="target false-positive rate")
    p.add_argument("--dataset", default=None, help="default: the dataset named in the card")
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--batch-size", type=int, default=VERDICT_BATCH,
                   help="images per flow pass group (each with its three quarter turns)")
    p.add_argument("--data-root", default=None,
                   help="dataset root (default $FLOWPAINT_DATA or ./data)")
    p.add_argument("--background", default=None, metavar="CHECKPOINT",
                   help="install this background model beside the checkpoint first")
    p.add_argument("--capture-model", default=None, metavar="CHECKPOINT",
                   help="install this capture-trained model beside the checkpoint first: the "
                        "evidence's flow parts are then its own")
    p.add_argument("--inpainter", default=None, metavar="CHECKPOINT",
                   help="install this conditional inpainting flow (pipelines.train --model "
                        "cflow) beside the checkpoint first, as inpainter.pt")
    p.add_argument("--maps", action="store_true",
                   help="calibrate the anomaly map of the inpainter beside the checkpoint "
                        "instead of the thresholds")
    p.add_argument("--map-images", type=int, default=1000,
                   help="--maps: the first N images of the split")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-normalize", dest="normalize", action="store_false",
                   help="calibrate on the images as stored, not input-normalized")
    p.add_argument("--evidence-parts", default=None, metavar="A,B,...",
                   help=f"what the default score sums, from {','.join(EVIDENCE_PARTS)} "
                        "(default: the card's current choice, else those of "
                        f"{','.join(DEFAULT_PARTS)} the model has)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    path = checkpoint_file(args.checkpoint)
    try:
        if args.background:
            install_beside(Path(args.background), path, BACKGROUND_FILE)
        if args.capture_model:
            install_beside(Path(args.capture_model), path, CAPTURE_FILE)
        if args.inpainter:
            install_inpainter(Path(args.inpainter), path)
    except CheckpointError as err:
        sys.exit(f"error: {err}")
    try:
        model, dataset, images = model_and_split(path, args.dataset, args.split, args.data_root,
                                                 warn=partial(print, file=sys.stderr))
    except RunInputError as err:
        sys.exit(f"error: {err}")
    normalized = args.normalize and model.image_shape[0] == 1
    recipe = model.recipe  # what uploads get, whichever split calibrates
    if args.maps:
        calibrate_maps(path, images[: args.map_images], f"{dataset} {args.split}",
                       recipe if normalized else None, args.fpr)
        return
    # The capture axis reads the validation images as stored, as uploads arrive.
    capture_axis = calibrate_capture(images, recipe if normalized else None, args.fpr)
    if normalized:
        images = normalize_images(images, recipe)
    parts = [p.strip() for p in args.evidence_parts.split(",")] if args.evidence_parts else None
    try:
        store_calibration(path, model, images, fpr=args.fpr, batch_size=args.batch_size,
                          source=f"{dataset} {args.split} ({len(images):,})",
                          recipe=recipe if normalized else None, parts=parts,
                          capture_axis=capture_axis,
                          command=(f"python -m pipelines.calibrate {path} --fpr {args.fpr}"
                                   + ("" if normalized else " --no-normalize")))
    except ValueError as err:
        sys.exit(f"error: {err}")


def install_inpainter(source: Path, path: Path) -> None:
    """Copy a conditional inpainting flow beside ``path`` as ``inpainter.pt``."""
    family = load_checkpoint(source)["config"].get("family")
    if family not in CONDITIONAL_FAMILIES:
        raise CheckpointError(f"{source} is a {family} model, not a conditional inpainting flow "
                              "(train one with python -m pipelines.train --model cflow)")
    install_beside(source, path, INPAINTER_FILE)


def calibrate_maps(path: Path, images: torch.Tensor, split: str, recipe: Recipe | None,
                   fpr: float) -> None:
    """``--maps``: the map's calibration on ``images`` (input-normalized by ``recipe``)."""
    if recipe is not None:
        images = normalize_images(images, recipe)
    try:
        store_map_calibration(path, images, fpr=fpr, source=(
            f"{split} ({len(images):,}), input normalization {recipe.name if recipe else 'off'}"),
            command=(f"python -m pipelines.calibrate {path} --maps --map-images {len(images)} "
                     f"--fpr {fpr}" + ("" if recipe else " --no-normalize")))
    except (MapUnavailable, ValueError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
