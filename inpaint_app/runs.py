"""What the command-line pipelines share: a checkpoint with a split of its dataset, and where a
run happened (git commit, hardware, machine) for cards and benchmark reports.

Nothing here prints or exits: what a command cannot use raises ``RunInputError`` with the one
line to show, and notes go to the caller's ``warn`` (Python warnings by default); the commands
print them to stderr and exit."""

from __future__ import annotations

import os
import platform
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from .bundle import ModelBundle, load_bundle
from .data import DATASETS, DatasetNotFound, load_split
from .models import CheckpointError, ConfigError


class RunInputError(ValueError):
    """A checkpoint, dataset or folder a command cannot use; the message names the problem in one
    line (the commands show it as ``error: <message>``)."""


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def model_and_split(checkpoint: str | Path, dataset: str | None, split: str,
                    data_root: str | None, *, download: bool = False,
                    device: torch.device | str = "cpu",
                    warn: Callable[[str], None] = _warn
                    ) -> tuple[ModelBundle, str, torch.Tensor]:
    """A checkpoint's bundle and the images of ``split`` of its dataset (the card's unless
    given). A bad checkpoint, unknown dataset or missing data raises ``RunInputError``; a note
    on the data (a folder model's test split, a folder whose content changed) goes to ``warn``
    as one line."""
    try:
        model = load_bundle(checkpoint, map_location=device)
    except (CheckpointError, ConfigError) as err:
        raise RunInputError(str(err)) from err
    dataset = dataset or model.dataset
    if dataset == model.dataset and model.card.folder:
        return model, dataset, _folder_split(model, split, data_root, warn)
    if dataset not in DATASETS:
        raise RunInputError(f"unknown dataset {dataset!r}: pass --dataset, one of "
                            f"{sorted(DATASETS)}")
    try:
        images = load_split(dataset, split, data_root, download=download)
    except DatasetNotFound as err:
        raise RunInputError(str(err)) from err
    return model, dataset, images


def _folder_split(model: ModelBundle, split: str, root: str | None,
                  warn: Callable[[str], None]) -> torch.Tensor:
    """A folder model's split, read again from its folder (``root`` when it moved); a folder
    whose content changed since training is used with a warning."""
    from .folder import FolderError, folder_split

    entry = model.card.folder
    if split == "test":
        warn("note: a folder has no test split; using its validation files")
    try:
        images, sha256 = folder_split(entry, split, root)
    except FolderError as err:
        raise RunInputError(f"{err} (the model was trained on {entry['path']}; pass --data-root "
                            "with the folder's new place)") from err
    if sha256 != entry.get("sha256"):
        warn(f"warning: the folder's content changed since training (sha256 {sha256[:12]}, "
             f"card {str(entry.get('sha256'))[:12]})")
    return images


def git_commit() -> str:
    """The short hash of HEAD, or "unknown" outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def hardware(device: torch.device, world: int) -> str:
    """What trained a model, for its card: GPUs by name, or processes x CPU threads."""
    if device.type == "cuda":
        return f"{world} x {torch.cuda.get_device_name(device)}"
    return (f"{world} process(es) x {torch.get_num_threads()} CPU thread(s), "
            f"{platform.processor() or platform.machine()}")


def machine() -> dict:
    """The CPU by name, cores, torch threads and versions, and the load average now: what a
    benchmark's figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                 .splitlines() if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "load_average": os.getloadavg()}
