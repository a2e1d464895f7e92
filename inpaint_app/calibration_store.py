"""A model's anomaly calibration stored in its card, and the densities installed beside it
(background, capture model): what ``pipelines.calibrate`` and ``train --images``
(``inpaint_app.folder_bundle``) write."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch

from .anomaly import VERDICT_BATCH, calibrate, evidence_parts
from .anomaly_map import FPR, MapUnavailable, calibrate_map
from .atomic import atomic_write
from .bundle import ModelBundle, load_bundle
from .models import (
    BACKGROUND_FILE,
    CAPTURE_FILE,
    INPAINTER_FILE,
    CheckpointError,
    load_checkpoint,
    load_model,
    read_card,
    save_model,
)
from .normalize import Recipe


def store_calibration(path: Path, model: ModelBundle, images: torch.Tensor, *, fpr: float,
                      source: str, recipe: Recipe | None, command: str,
                      batch_size: int = VERDICT_BATCH, parts: Sequence[str] | None = None,
                      capture_axis: dict | None = None) -> dict:
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
    if capture_axis is not None:  # the capture axis (inpaint_app.capture_axis)
        anomaly["capture_axis"] = capture_axis
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


def store_map_calibration(path: Path, images: torch.Tensor, *, source: str, command: str,
                          fpr: float = FPR) -> dict:
    """Calibrate the anomaly map of the inpainter beside ``path`` (``inpaint_app.anomaly_map``)
    on clean ``images`` and store it in the inpainter's card (``inpainter.pt`` and
    ``inpainter-card.json``, weights unchanged). Returns the calibration."""
    bundle = load_bundle(path)
    if bundle.inpainter is None:
        raise MapUnavailable(f"no conditional inpainting flow beside {path}: install one "
                             "(--inpainter) before calibrating its map")
    start = time.perf_counter()
    calibration = calibrate_map(bundle.inpainter, images, fpr=fpr, source=source)
    calibration["command"] = command
    save_model(bundle.inpainter, path.with_name(INPAINTER_FILE),
               card=bundle.inpainter_card.replace(anomaly_map=calibration))
    print(f"calibrated the anomaly map of {path.with_name(INPAINTER_FILE)} on {source} in "
          f"{time.perf_counter() - start:.0f} s ({calibration['seconds_per_image']:.2f} s an "
          f"image); hot-spot level {calibration['level']:.3f} at {fpr:.0%} of the images")
    return calibration


def install_beside(source: Path, checkpoint: Path, name: str) -> None:
    """Copy a background or capture checkpoint beside ``checkpoint`` as ``name``
    (atomically), after checking that it loads and models images of the same shape; raises
    ``CheckpointError`` (with the reason) otherwise."""
    # The companion is built in full (a bad file raises CheckpointError here); the model's
    # shape suffices.
    companion = load_model(source)
    shape = tuple(load_checkpoint(checkpoint)["config"]["image_shape"])
    if companion.image_shape != shape:
        raise CheckpointError(f"{source} models images of shape {companion.image_shape}, "
                              f"the checkpoint {shape}")
    with atomic_write(checkpoint.with_name(name)) as f:
        f.write(source.read_bytes())
