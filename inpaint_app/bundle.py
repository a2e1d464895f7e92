"""One servable model: the image density, its card and what ships beside it in its folder.

    bundle = load_bundle("trained/mnist-glow")
    bundle.model.bits_per_dim(images)       # the exact likelihood
    score_images(bundle, images)            # the anomaly verdict (calibration, background, bank)
    inpaint(bundle, image, mask)            # the default fill (conditional flow, bank)

A folder holds ``model.pt`` (its card inside, ``card.json`` beside it) and, optionally, the
exemplar bank (``exemplars.npz``), the background density of the anomaly likelihood ratio
(``background.pt``), a density trained on captured copies that judges captured uploads
(``capture.pt``), the conditional inpainting flow (``inpainter.pt``) and gallery images
(``examples/``). The app, the
scripts and the Python API all get them from ``load_bundle``; the models themselves carry no
attached state. Library functions that take a bundle also take a bare ``DensityModel``, which
is a bundle with an empty card and nothing beside it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .card import ModelCard
from .conditional import ConditionalInpainter
from .density import DensityModel
from .detector import Calibration, detector_of
from .exemplars import BANK_FILE, ExemplarBank, load_bank
from .gallery import Example, read_examples
from .models import (
    BACKGROUND_FILE,
    CAPTURE_FILE,
    CONDITIONAL_FAMILIES,
    INPAINTER_FILE,
    CheckpointError,
    ConfigError,
    checkpoint_file,
    load_checkpoint,
    model_from_checkpoint,
)
from .normalize import Recipe, recipe_for
from .spreads import spread_quantile

EXAMPLES_DIR = "examples"  # beside model.pt: the app's gallery images (inpaint_app.gallery)


@dataclass(frozen=True)
class ModelBundle:
    """An image model with its card, exemplar bank, background model, capture model and
    conditional inpainting flow (with that flow's own card). Read-only: requests share it."""

    model: DensityModel
    card: ModelCard = field(default_factory=ModelCard)
    exemplars: ExemplarBank | None = None
    background: DensityModel | None = None
    capture: DensityModel | None = None
    inpainter: ConditionalInpainter | None = None
    inpainter_card: ModelCard = field(default_factory=ModelCard)
    path: Path | None = None

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The anomaly thresholds (``inpaint_app.anomaly.calibrate``), or None."""
        return self.card.anomaly

    @property
    def detector(self) -> Calibration | None:
        """The calibration, typed (``inpaint_app.detector``): its spec says what the verdict
        reads; None without a calibrated evidence score."""
        return detector_of(self.card.anomaly)

    @property
    def dataset(self) -> str | None:
        return self.card.dataset

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.model.image_shape

    @property
    def recipe(self) -> Recipe:
        """How uploads are brought to this model's conventions (``inpaint_app.normalize``):
        the card's own recipe (folder models), else its dataset's."""
        return recipe_for(self.dataset, self.card.input_recipe)

    @property
    def stale_note(self) -> str | None:
        """Why the thresholds may no longer hold, or None: the calibration recorded an input
        normalization whose parameters differ from what uploads now get (``Recipe.settings``;
        the module's fixed constants are not recorded), or it read a small validation set's
        spreads at 99 % (``spreads.spread_quantile``). Calibrations made before 2026-11-26
        recorded the recipe's name only, and their normalization is not checked."""
        current = self.recipe.settings()  # ValueError for a card naming an unknown recipe
        reason = _normalization_change(self.calibration or {}, current) or \
            _spreads_at_99(self.calibration or {})
        if reason is None:
            return None
        where = shlex.quote(str(self.path)) if self.path is not None else "CHECKPOINT"
        fpr = (self.calibration or {}).get("fpr", 0.05)
        return (f"{reason}: the thresholds may be off; recalibrate with "
                f"`python -m pipelines.calibrate {where} --fpr {fpr}`")

    @property
    def examples(self) -> list[Example]:
        """The model's own gallery images, ``<folder>/examples/*.png`` with what each shows and
        a mask preset (``inpaint_app.gallery``): validation images, never training ones."""
        if self.path is None:
            return []
        return read_examples(self.path.parent / EXAMPLES_DIR)


def as_bundle(source: ModelBundle | DensityModel) -> ModelBundle:
    """``source`` itself, or a bare model as a bundle with nothing beside it."""
    if isinstance(source, ModelBundle):
        return source
    if not isinstance(source, DensityModel):
        raise TypeError(f"expected a ModelBundle or DensityModel, got {type(source).__name__}")
    return ModelBundle(source)


def load_bundle(path: str | Path, map_location: str | torch.device = "cpu") -> ModelBundle:
    """The image model in ``path`` (a ``model.pt`` or its folder) with its card and whatever
    ships beside it; a missing, unsafe or mismatched file is a ``CheckpointError`` naming it."""
    file = checkpoint_file(path)
    ckpt = load_checkpoint(file, map_location)
    if ckpt["config"].get("family") in CONDITIONAL_FAMILIES:
        raise CheckpointError(f"{file} is a conditional inpainting model, not an image model; "
                              "install it beside one as inpainter.pt "
                              "(python -m pipelines.tune_inpainter --install)")
    model = _weights(file, ckpt, map_location)
    folder = file.parent
    inpainter, inpainter_card, beside = None, ModelCard(), folder / INPAINTER_FILE
    if beside.is_file() and beside.resolve() != file.resolve():
        inpainter, inpainter_card = _inpainter(beside, model, map_location)
    return ModelBundle(model=model, card=_card(file, ckpt), path=file,
                       exemplars=_bank(folder / BANK_FILE, model),
                       background=_companion(folder / BACKGROUND_FILE, file, model,
                                             map_location),
                       capture=_companion(folder / CAPTURE_FILE, file, model, map_location),
                       inpainter=inpainter, inpainter_card=inpainter_card)


def _weights(file: Path, ckpt: dict[str, Any], map_location: str | torch.device) -> Any:
    try:
        return model_from_checkpoint(ckpt, map_location)
    except (ConfigError, RuntimeError, ValueError, TypeError) as err:
        raise CheckpointError(f"{file}: {str(err).splitlines()[0]}") from err


def _card(file: Path, ckpt: dict[str, Any]) -> ModelCard:
    try:
        return ModelCard.from_dict(ckpt.get("card"))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{file} has an unreadable card: {err}") from err


def _bank(path: Path, model: DensityModel) -> ExemplarBank | None:
    if not path.is_file():
        return None
    try:
        bank = load_bank(path)
    except ValueError as err:
        raise CheckpointError(str(err)) from err
    if tuple(bank.images.shape[1:]) != tuple(model.image_shape):
        raise CheckpointError(f"{path} holds images of shape {tuple(bank.images.shape[1:])}, "
                              f"the model {tuple(model.image_shape)}")
    return bank


def _companion(path: Path, file: Path, model: DensityModel, map_location: str | torch.device
               ) -> DensityModel | None:
    """The density in ``path`` beside ``file`` (background or capture model), or None."""
    if not path.is_file() or path.resolve() == file.resolve():
        return None
    companion = _weights(path, load_checkpoint(path, map_location), map_location)
    if companion.image_shape != model.image_shape:
        raise CheckpointError(f"{path} models images of shape {companion.image_shape}, "
                              f"the model {model.image_shape}")
    return companion


def _inpainter(path: Path, model: DensityModel, map_location: str | torch.device
               ) -> tuple[ConditionalInpainter, ModelCard]:
    """The conditional inpainting flow in ``path``, checked against the image model it serves."""
    ckpt = load_checkpoint(path, map_location)
    family, shape = ckpt["config"].get("family"), ckpt["config"].get("image_shape")
    if family not in CONDITIONAL_FAMILIES or tuple(shape or ()) != tuple(model.image_shape):
        raise CheckpointError(f"{path} is not a conditional inpainting model of images of shape "
                              f"{model.image_shape} (family {family!r}, shape {shape})")
    return _weights(path, ckpt, map_location), _card(path, ckpt)


def _normalization_change(calibration: dict, current: dict) -> str | None:
    """The recorded normalization parameters that differ from ``current``, or None."""
    recorded = calibration.get("input_normalization_settings")
    if not recorded:
        return None
    if not isinstance(recorded, dict):
        recorded = {}  # unreadable: every parameter counts as changed
    changed = sorted(key for key in set(recorded) | set(current)
                     if recorded.get(key) != current.get(key))
    if not changed:
        return None
    return "calibrated with another input normalization (" + ", ".join(
        f"{key} {recorded.get(key)!r} -> {current.get(key)!r}" for key in changed) + ")"


def _spreads_at_99(calibration: dict) -> str | None:
    """A calibration on too few images for 99 % spreads, made before they adapted (2026-11-27)."""
    parts = calibration.get("scores", {}).get("evidence", {}).get("parts", {})
    n = calibration.get("n")
    if not parts or not isinstance(n, int) or spread_quantile(n) >= 0.99:
        return None
    if all(isinstance(part, dict) and "spread_quantile" in part for part in parts.values()):
        return None
    return (f"calibrated on {n:,} validation images by an older rule (each score part's spread "
            f"read at its 99 % point, which {n:,} images cannot pin down; now "
            f"{100 * spread_quantile(n):.1f} %)")

