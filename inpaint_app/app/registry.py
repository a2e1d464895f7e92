"""The checkpoints the app offers and a process-wide cache that loads each one once.

Every tab and every API call asks the same ``ModelCache``, so a model is read from disk once per
process and shared by all users (models are used in eval mode and never modified).
"""

from __future__ import annotations

import threading
from pathlib import Path

import gradio as gr

from ..density import DensityModel
from ..models import CheckpointError, ConfigError, load_model

TRAINED_DIR = Path(__file__).resolve().parents[2] / "trained"
DEFAULT_MODEL = "mnist-glow"


def discover(root: str | Path = TRAINED_DIR) -> dict[str, Path]:
    """``{name: path}`` for every ``<root>/<name>/model.pt``, sorted by name."""
    root = Path(root)
    found = sorted(root.glob("*/model.pt")) if root.is_dir() else []
    return {path.parent.name: path for path in found}


def checkpoints_for(checkpoint: str | Path | None, root: str | Path = TRAINED_DIR
                    ) -> tuple[dict[str, Path], str]:
    """The offered checkpoints and the default one: ``checkpoint`` (a file or a folder holding
    ``model.pt``) joins those in ``root`` and becomes the default."""
    paths = discover(root)
    if checkpoint is not None:
        path = Path(checkpoint)
        path = path / "model.pt" if path.is_dir() else path
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        name = path.parent.name if path.name == "model.pt" else path.stem
        paths[name] = path
        return paths, name
    if not paths:
        raise CheckpointError(f"no checkpoints under {root}: train one or pass --checkpoint")
    return paths, DEFAULT_MODEL if DEFAULT_MODEL in paths else next(iter(paths))


class ModelCache:
    """Loads a named checkpoint on first use and hands the same model to every later caller."""

    def __init__(self, paths: dict[str, Path], default: str) -> None:
        if default not in paths:
            raise ValueError(f"default model {default!r} is not among {sorted(paths)}")
        self.paths, self.default = dict(paths), default
        self._models: dict[str, DensityModel] = {}
        self._lock = threading.Lock()
        self.loads = 0  # how many times a file was read (tests check it stays one per model)

    @property
    def names(self) -> list[str]:
        return list(self.paths)

    def get(self, name: str | None) -> DensityModel:
        """The model called ``name`` (the default when empty); ``gr.Error`` for unknown names."""
        name = name or self.default
        if name not in self.paths:
            raise gr.Error(f"unknown model {name!r}: choose one of {', '.join(self.paths)}")
        with self._lock:
            if name not in self._models:
                try:
                    model = load_model(self.paths[name])
                except (CheckpointError, ConfigError, RuntimeError) as err:
                    raise gr.Error(f"cannot load model {name!r}: {err}") from err
                if not isinstance(model, DensityModel):
                    raise gr.Error(f"cannot serve {name!r}: it is a conditional inpainting "
                                   "model, not an image model; install it beside one as "
                                   "inpainter.pt (python -m pipelines.tune_inpainter --install)")
                self._models[name] = model
                self.loads += 1
            return self._models[name]
