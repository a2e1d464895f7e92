"""Model registry, configs as plain dicts, and checkpoints that load with ``weights_only=True``."""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write
from .card import ModelCard
from .conditional import build_conditional
from .density import DensityModel
from .flows.ffjord import build_ffjord
from .flows.glow import build_glow
from .flows.maf import build_maf
from .flows.nice import build_nice
from .flows.planar import build_planar
from .flows.realnvp import build_realnvp
from .preprocess import build_preprocess
from .priors import PRIORS

FAMILIES: dict[str, Callable[..., Any]] = {
    "nice": build_nice,
    "realnvp": build_realnvp,
    "glow": build_glow,
    "maf": build_maf,
    "planar": build_planar,
    "ffjord": build_ffjord,
}
# Conditional inpainting models: p(x_missing | x_observed, mask), not a density of whole images.
CONDITIONAL_FAMILIES: dict[str, Callable[..., Any]] = {"cflow": build_conditional}
ALL_FAMILIES = {**FAMILIES, **CONDITIONAL_FAMILIES}

# Per-family defaults that are not flow hyperparameters: prior and preprocessing.
_FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "nice": {"prior": "logistic", "preprocess": {"name": "affine", "scale": 1.0, "shift": 0.0}},
    "realnvp": {"prior": "gaussian", "preprocess": {"name": "logit", "alpha": 0.05}},
    "glow": {"prior": "gaussian", "preprocess": {"name": "logit", "alpha": 0.05}},
    "maf": {"prior": "gaussian", "preprocess": {"name": "logit", "alpha": 0.05}},
    "planar": {"prior": "gaussian", "preprocess": {"name": "logit", "alpha": 0.05}},
    "ffjord": {"prior": "gaussian", "preprocess": {"name": "logit", "alpha": 0.05}},
    "cflow": {"prior": "gaussian", "preprocess": {"name": "logit", "alpha": 0.05}},
}


class ConfigError(ValueError):
    """A config that cannot describe a model (unknown family, bad shape or hyperparameter)."""


def _size_defaults(family: str, image_shape: tuple[int, int, int]) -> dict[str, Any]:
    """Hyperparameters that shrink for tiny images so that a (1, 8, 8) model stays small."""
    small = math.prod(image_shape) < 256
    if family == "nice":
        return {"hidden": 128, "depth": 3} if small else {}
    if family == "planar":
        return {"layers": 8} if small else {}
    if family == "ffjord":
        return {"hidden": 8} if small else {}
    return {"hidden": 32} if small else {}


def make_config(family: str, image_shape: tuple[int, int, int], **hyperparameters: Any
                ) -> dict[str, Any]:
    """The plain-dict config for a family and image shape; unknown keys are refused."""
    if family not in ALL_FAMILIES:
        raise ConfigError(f"unknown model {family!r}: choose one of {sorted(ALL_FAMILIES)}")
    config = {"family": family, "image_shape": [int(s) for s in image_shape],
              **_FAMILY_DEFAULTS[family], "flow": _size_defaults(family, tuple(image_shape))}
    for key, value in hyperparameters.items():
        if key in ("prior", "preprocess"):
            config[key] = value
        else:
            config["flow"][key] = value
    validate_config(config)
    return config


def validate_config(config: Any) -> None:
    """Check a config before anything is built from it (it may come from an untrusted file)."""
    if not isinstance(config, dict):
        raise ConfigError("model config must be a dict")
    family = config.get("family")
    if family not in ALL_FAMILIES:
        raise ConfigError(f"unknown model {family!r}: choose one of {sorted(ALL_FAMILIES)}")
    shape = config.get("image_shape")
    if (not isinstance(shape, (list, tuple)) or len(shape) != 3
            or not all(isinstance(s, int) and 0 < s <= 4096 for s in shape)):
        raise ConfigError(f"image_shape must be three positive ints (C, H, W), got {shape!r}")
    if config.get("prior") not in PRIORS:
        raise ConfigError(f"unknown prior {config.get('prior')!r}: choose one of {sorted(PRIORS)}")
    allowed = set(inspect.signature(ALL_FAMILIES[family]).parameters) - {
        "image_shape", "config", "alpha"}
    flow = config.get("flow", {})
    unknown = set(flow) - allowed if isinstance(flow, dict) else {"<not a dict>"}
    if unknown:
        raise ConfigError(f"unknown {family} hyperparameter(s) {sorted(unknown)}; "
                          f"allowed: {sorted(allowed)}")
    pre = config.get("preprocess")
    if not isinstance(pre, dict) or pre.get("name") not in ("logit", "affine"):
        raise ConfigError(f"preprocess must be {{'name': 'logit'|'affine', ...}}, got {pre!r}")


def build_model(family: str | dict[str, Any], image_shape: tuple[int, int, int] | None = None,
                **hyperparameters: Any) -> DensityModel:
    """A ``DensityModel`` from a family name and image shape, or from a config dict.

    >>> model = build_model("glow", image_shape=(1, 8, 8), steps=2)
    >>> model.bits_per_dim(torch.zeros(2, 1, 8, 8, dtype=torch.uint8)).shape
    torch.Size([2])
    """
    if isinstance(family, dict):
        config = family
        validate_config(config)
    else:
        if image_shape is None:
            raise ConfigError("build_model needs image_shape=(C, H, W)")
        config = make_config(family, image_shape, **hyperparameters)
    shape = tuple(config["image_shape"])
    pre_kwargs = {k: v for k, v in config["preprocess"].items() if k != "name"}
    if config["family"] in CONDITIONAL_FAMILIES:
        return CONDITIONAL_FAMILIES[config["family"]](shape, config, **config["flow"],
                                                      alpha=pre_kwargs.get("alpha", 0.05))
    flow = FAMILIES[config["family"]](shape, **config["flow"])
    return DensityModel(build_preprocess(config["preprocess"]["name"], **pre_kwargs), flow,
                        PRIORS[config["prior"]](), shape, config)


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, then rename: no half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        torch.save(obj, f)


MODEL_FILE = "model.pt"
BACKGROUND_FILE = "background.pt"
# A capture-trained density beside a model: the verdict reads its flow parts from it for every
# image (inpaint_app.anomaly, "the capture flow").
CAPTURE_FILE = "capture.pt"
INPAINTER_FILE = "inpainter.pt"


def save_model(model: torch.nn.Module, path: str | Path,
               card: ModelCard | dict[str, Any] | None = None) -> None:
    """Write ``{config, state_dict, card}`` and a readable card beside it, atomically:
    ``card.json`` for ``model.pt``, ``<name>-card.json`` for any other file (``inpainter.pt``
    shares a folder with a ``model.pt`` whose card it must not overwrite). The one place a card
    is written; a dict is read through ``ModelCard.from_dict`` first."""
    path = Path(path)
    if not isinstance(card, ModelCard):
        card = ModelCard.from_dict(card)
    data = card.to_dict()
    # contiguous: a loaded model's channels_last weights would change the file, not the values
    weights = {name: value.contiguous() for name, value in model.state_dict().items()}
    atomic_save({"config": model.config, "state_dict": weights, "card": data}, path)
    readable = path.with_name("card.json" if path.name == MODEL_FILE else f"{path.stem}-card.json")
    tmp = readable.with_name(f".{readable.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(readable)


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, unsafe or inconsistent."""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint dict, loaded with ``weights_only=True`` (a checkpoint never runs code)."""
    path = checkpoint_file(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise CheckpointError(f"refusing to load {path}: not a safe flowpaint checkpoint "
                              f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from err
    if not isinstance(ckpt, dict) or "config" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a flowpaint checkpoint (no config/state_dict)")
    return ckpt


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> DensityModel:
    """The model of one checkpoint file (or of the ``model.pt`` in a folder) alone, in eval mode
    with its weights frozen: a loaded model serves requests, which must never change it
    (``requires_grad_(True)`` to fine-tune; its convolution weights are channels_last, so an
    optimizer state from a freshly built model does not fit them: train from ``build_model`` and
    ``load_state_dict``, as ``pipelines.train`` does). Its card and what ships beside it come
    with ``inpaint_app.bundle.load_bundle``."""
    return model_from_checkpoint(load_checkpoint(path, map_location), map_location)


def model_from_checkpoint(ckpt: dict[str, Any], map_location: str | torch.device = "cpu"
                          ) -> DensityModel:
    """The model of a checkpoint dict already read by ``load_checkpoint``, as ``load_model``
    returns it (a file read once serves both its card and its weights)."""
    model = build_model(ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    # Convolution weights channels_last, on every device: on CPU, oneDNN's fast path, which the
    # activations follow; scoring runs about twice as fast, to rounding (docs/performance.md,
    # "Channels-last weights at load"). Not measured on a GPU.
    model = model.to(map_location, memory_format=torch.channels_last)
    return model.eval().requires_grad_(False)


def read_card(path: str | Path) -> ModelCard:
    """The card saved in a checkpoint (or in the ``model.pt`` of a folder)."""
    return ModelCard.from_dict(load_checkpoint(path)["card"])


def checkpoint_file(path: str | Path) -> Path:
    """``path`` itself, or the ``model.pt`` inside it when it is a folder."""
    path = Path(path)
    return path / MODEL_FILE if path.is_dir() else path
