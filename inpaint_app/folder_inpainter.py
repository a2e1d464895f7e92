"""A conditional inpainting flow for a bundle trained on a folder of one's own images, so that it
gets anomaly maps (``inpaint_app.anomaly_map``) and the conditional fill.

    flowpaint folder-inpainter trained/photos [--max-minutes 20] [--threads 2]

The folder recipe (``flowpaint train --images``, ``inpaint_app.folder_bundle``) trains the image
flow, a background model and calibrates thresholds, but no inpainter: a conditional flow costs a
training run of its own (minutes to hours on a CPU; ``benchmarks/anomaly-maps.md`` measures one).
``add_inpainter`` trains one on the folder's training files (read again from the folder the
card names, with the same split and input normalization), installs it beside the bundle as
``inpainter.pt`` and calibrates its map on the validation files.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from .bundle import load_bundle
from .calibration_store import install_beside, store_map_calibration
from .folder import FolderError, display_name, folder_split
from .models import INPAINTER_FILE, checkpoint_file
from .train_state import Process
from .trainer import RECIPE_DEFAULTS, TrainingError, fit

HPARAMS = {"steps": 8, "hidden": 64, "features": 32, "width": 64}  # the shipped CPU cflow recipe
RECIPE = {"epochs": 1000, "batch_size": 64, "lr": 1e-3, "warmup": 100, "ema": 0.999}


def inpainter_args(path: Path, card_dataset: str, shape: tuple[int, ...], minutes: float,
                   out: Path, seed: int = 0) -> argparse.Namespace:
    """The training run of the conditional flow, as ``pipelines.train`` would set it up."""
    return argparse.Namespace(**{
        **RECIPE_DEFAULTS, **RECIPE, "model": "cflow", "hparams": json.dumps(HPARAMS),
        "dataset": card_dataset, "image_shape": tuple(shape), "max_minutes": minutes,
        "out": out, "seed": seed, "resume": False, "keep": "best", "capture": 0,
        "checkpoint_every": 200, "limit_val": None, "eval_test": False, "data_root": None,
        "download": False, "amp": False, "init_source": None, "outlier_source": None,
        "argv": [f"(folder-inpainter {path})"]})


def add_inpainter(path: str | Path, *, minutes: float, data_root: str | None = None,
                  device: str = "cpu", seed: int = 0) -> dict:
    """Train a conditional flow on the folder of the bundle at ``path`` for ``minutes``,
    install it as ``inpainter.pt`` and calibrate its map; returns the calibration. A bundle
    that was not trained on a folder, or whose folder is gone, raises ``TrainingError``."""
    path = checkpoint_file(path)
    bundle = load_bundle(path)
    entry = bundle.card.folder
    if not entry:
        raise TrainingError(f"{path} was not trained on a folder: train a conditional flow with "
                            "python -m pipelines.train --model cflow and install it with "
                            "python -m pipelines.tune_inpainter --install")
    try:
        train, _ = folder_split(entry, "train", data_root)
        val, _ = folder_split(entry, "val", data_root)
    except FolderError as err:
        raise TrainingError(f"{err} (pass --data-root with the folder's new place)") from err
    out = path.parent / ".inpainter"
    torch.manual_seed(seed)
    fit(inpainter_args(path, bundle.dataset, bundle.image_shape, minutes, out, seed),
        Process(0, 1, torch.device(device)), train, val)
    install_beside(out / "model.pt", path, INPAINTER_FILE)
    shutil.rmtree(out, ignore_errors=True)
    name = display_name(Path(entry["path"]).name)
    return store_map_calibration(path, val, source=f"{name} validation files ({len(val):,})",
                                 command=f"python -m pipelines.calibrate {path} --maps")
