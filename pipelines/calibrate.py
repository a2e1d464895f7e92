"""Calibrate a checkpoint's anomaly thresholds on its validation split and store them in its card.

    python -m pipelines.calibrate trained/mnist-glow/model.pt [--fpr 0.05]
        [--background runs/mnist-background/model.pt]
        [--capture-model runs/mnist-glow-capture-cpu/model.pt]

Re-run it whenever the checkpoint changes: it scores the validation split of the card's dataset,
sets each score's threshold at the target false-positive rate, and rewrites ``card["anomaly"]`` in
both model.pt and card.json (each written to a temporary file, then renamed). ``--background``
first installs a background model (``python -m pipelines.train --perturb ...``) beside the
checkpoint as ``background.pt``; the anomaly evidence then includes the likelihood ratio
against it (``inpaint_app.anomaly``). ``--capture-model`` installs a density trained on captured
copies too (``pipelines.train --capture``) as ``capture.pt``: images with capture traces are then
judged by it (the capture route, ``inpaint_app.anomaly``). The validation images go through
the same input normalization as uploads (``inpaint_app.normalize``; ``--no-normalize``: as
stored), so the thresholds hold for what the app and ``score_batch`` actually score; the card
records which.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from inpaint_app.anomaly import EVIDENCE_PARTS, VERDICT_BATCH, calibrate, evidence_parts
from inpaint_app.atomic import atomic_write
from inpaint_app.bundle import ModelBundle
from inpaint_app.models import (
    BACKGROUND_FILE,
    CAPTURE_FILE,
    CheckpointError,
    checkpoint_file,
    load_checkpoint,
    load_model,
    read_card,
    save_model,
)
from inpaint_app.normalize import Recipe, normalize_images
from inpaint_app.runs import model_and_split


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
                   help="install this capture-trained model beside the checkpoint first: it "
                        "judges images with capture traces")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-normalize", dest="normalize", action="store_false",
                   help="calibrate on the images as stored, not input-normalized")
    p.add_argument("--evidence-parts", default=None, metavar="A,B,...",
                   help=f"what the default score sums, from {','.join(EVIDENCE_PARTS)} "
                        "(default: the card's current choice, else every part the model has)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    path = checkpoint_file(args.checkpoint)
    if args.background:
        install_beside(Path(args.background), path, BACKGROUND_FILE)
    if args.capture_model:
        install_beside(Path(args.capture_model), path, CAPTURE_FILE)
    model, dataset, images = model_and_split(path, args.dataset, args.split, args.data_root)
    normalized = args.normalize and model.image_shape[0] == 1
    recipe = model.recipe  # what uploads get, whichever split calibrates
    if normalized:
        images = normalize_images(images, recipe)
    parts = [p.strip() for p in args.evidence_parts.split(",")] if args.evidence_parts else None
    try:
        store_calibration(path, model, images, fpr=args.fpr, batch_size=args.batch_size,
                          source=f"{dataset} {args.split} ({len(images):,})",
                          recipe=recipe if normalized else None, parts=parts,
                          command=(f"python -m pipelines.calibrate {path} --fpr {args.fpr}"
                                   + ("" if normalized else " --no-normalize")))
    except ValueError as err:
        sys.exit(f"error: {err}")


def store_calibration(path: Path, model: ModelBundle, images: torch.Tensor, *, fpr: float,
                      source: str, recipe: Recipe | None, command: str,
                      batch_size: int = VERDICT_BATCH, parts: Sequence[str] | None = None
                      ) -> dict:
    """Calibrate ``model`` (the bundle of ``path``) on ``images`` and rewrite its card with the
    thresholds; ``recipe`` is the input normalization the images went through (None: none),
    recorded by name and with its parameters. ``parts``: what ``evidence`` sums; by default
    what the current calibration sums, so a recalibration keeps a model's choice. Returns the
    calibration."""
    start = time.perf_counter()
    if parts is None:
        parts = evidence_parts(model.calibration)
    anomaly = calibrate(model, images, fpr=fpr, batch_size=batch_size, progress=True,
                        source=source, parts=parts)
    chosen = list(anomaly["scores"]["evidence"]["parts"])
    if parts:  # a choice, not the default: the command that repeats it says so
        command += f" --evidence-parts {','.join(chosen)}"
    anomaly["command"] = command
    anomaly["input_normalization"] = recipe.name if recipe else "off"
    if recipe:
        anomaly["input_normalization_settings"] = recipe.settings()
    for key, name, companion in (("background", BACKGROUND_FILE, model.background),
                                 ("capture_model", CAPTURE_FILE, model.capture)):
        if companion is not None:  # where the density beside the model came from
            card = read_card(path.with_name(name))
            anomaly[key] = {"file": name, "perturb": card.perturb, "capture": card.capture,
                            "val_bpd": card.val_bpd,
                            "test_bpd": card.test_bpd,
                            "training_minutes": card.training_minutes,
                            "command": card.command}
    save_model(model.model, path, card=model.card.replace(anomaly=anomaly))
    print(f"calibrated {path} on {anomaly['source']} in {time.perf_counter() - start:.0f} s; "
          f"target FPR {fpr:.3f}")
    for name, entry in anomaly["scores"].items():
        print(f"  {name:11s} threshold {entry['threshold']:.4f}  validation FPR "
              f"{entry['val_fpr']:.4f}{'  (two-sided)' if entry['two_sided'] else ''}")
    return anomaly


def install_beside(source: Path, checkpoint: Path, name: str) -> None:
    """Copy a background or capture checkpoint beside ``checkpoint`` as ``name``
    (atomically), after checking that it loads and models images of the same shape."""
    try:  # the companion is built in full (a bad file fails here); the model's shape suffices
        companion = load_model(source)
        shape = tuple(load_checkpoint(checkpoint)["config"]["image_shape"])
    except CheckpointError as err:
        sys.exit(f"error: {err}")
    if companion.image_shape != shape:
        sys.exit(f"error: {source} models images of shape {companion.image_shape}, "
                 f"the checkpoint {shape}")
    with atomic_write(checkpoint.with_name(name)) as f:
        f.write(source.read_bytes())


if __name__ == "__main__":
    main()
