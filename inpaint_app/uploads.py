"""From uploads to verdicts: the one path that the app, ``score_batch`` and the real-world
evaluation share.

An upload is read as it is (any size, mode and polarity), brought to the model's conventions by
its input normalization (``inpaint_app.normalize``), and scored on both axes: the content verdict
(``inpaint_app.anomaly``) and the capture axis (``inpaint_app.capture_axis``), whose facts need
the upload itself, not only the model input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from .anomaly import VERDICT_BATCH, score_images
from .bundle import ModelBundle
from .capture_axis import capture_facts
from .images import to_8bit
from .normalize import Framing, fit_input


@dataclass
class Prepared:
    """One upload made ready for a model: its input, what the normalization did (``framing``:
    None for the plain fit), that in words, and its capture facts."""

    x: torch.Tensor
    framing: Framing | None
    note: str
    facts: dict[str, float]


def prepare_upload(image: Image.Image, bundle: ModelBundle, normalize: bool = True) -> Prepared:
    """The model input of ``image`` by the bundle's input normalization (``normalize``), and the
    facts the capture axis reads."""
    x, framing, note = fit_input(image, bundle.image_shape, bundle.recipe, normalize)
    grey = np.asarray(to_8bit(image, 1))
    return Prepared(x, framing, note, capture_facts(grey, framing, x))


def score_uploads(bundle: ModelBundle, prepared: Sequence[Prepared], *,
                  score: str | None = None, batch_size: int = VERDICT_BATCH
                  ) -> list[dict[str, Any]]:
    """``anomaly.score_images`` of prepared uploads, with their capture facts."""
    if not prepared:
        return []
    return score_images(bundle, torch.stack([p.x for p in prepared]), score=score,
                        batch_size=batch_size, captures=[p.facts for p in prepared])
