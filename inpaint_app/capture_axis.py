"""The capture axis: was an image captured the way the training images were?

The verdict has two axes. Its flag is the *content* axis (``inpaint_app.anomaly``): is this the
kind of thing the model learned? This module is the *capture* axis, shown beside it as a note: a
digit scanned at 16x16, binarized on a form or photographed on a page is still a digit, but its
scores are less certain. Four facts of each upload are read, each against the same facts of the
validation images (uploaded as they are stored), with an empirical p-value in the direction that
marks a different capture:

- ``levels``: how many grey levels the upload uses (lower tail: binarized or posterized);
- ``resolution``: the content's longest edge in upload pixels (lower tail: a low-resolution
  scan; larger uploads are shrunk to the model's size, which loses nothing);
- ``halo``: the share of faint model-input pixels, levels 1 to ``INK_LEVEL`` (upper tail: the
  halo that JPEG, blur and resampling leave around strokes on a dark page);
- ``page``: the photographed page's grain plus the grey levels its uneven light spans (upper
  tail; a digital image has neither).

The axis's p-value is the smallest of the four times four (Bonferroni), so on validation images
it fires at most at the calibration's rate; each fact under its own level is named in the note.
Every fact is read from pixels the verdict already has: the axis costs no flow pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from .normalize import INK_LEVEL, Framing, Recipe, fit_input

# fact -> (the tail that marks a different capture, the words for the note)
FACTS: dict[str, tuple[str, str]] = {
    "levels": ("lower", "binarized or few grey levels"),
    "resolution": ("lower", "low resolution"),
    "halo": ("upper", "a faint halo from JPEG, blur or resampling"),
    "page": ("upper", "a photographed page (grain or uneven light)"),
}
KEPT_VALUES = 1001  # validation values kept per fact (every k-th of the sorted values)


def faint_share(images: torch.Tensor) -> np.ndarray:
    """Share of each uint8 image's values that are faint but not black (1 to ``INK_LEVEL``)."""
    faint = (images > 0) & (images <= INK_LEVEL)
    return faint.flatten(1).double().mean(1).cpu().numpy() if len(images) else np.zeros(0)


def capture_facts(upload: np.ndarray, framing: Framing | None, model_input: torch.Tensor
                  ) -> dict[str, float]:
    """The four facts of one upload: its 8-bit grey pixels ``[H, W]``, what the input
    normalization did (None: the upload was the model input as it is) and the uint8 model input
    ``[C, H, W]``."""
    upload = np.asarray(upload)
    if framing is None:
        box, page = _content_edge(upload), 0.0
    else:
        box, page = framing.content_edge, framing.grain + framing.page_levels
    return {"levels": float(len(np.unique(upload))), "resolution": float(box),
            "halo": float(faint_share(model_input[None])[0]), "page": page}


def _content_edge(array: np.ndarray, level: float = 0.2) -> int:
    """Longest edge of the box of pixels above ``level`` of the brightest (0 for a blank)."""
    top = array.max()
    if top <= 0:
        return 0
    ys, xs = np.nonzero(array > level * top)
    return int(max(xs.max() - xs.min(), ys.max() - ys.min()) + 1)


def facts_of_inputs(images: torch.Tensor) -> list[dict[str, float]]:
    """Facts of uint8 ``[N, C, H, W]`` model inputs taken as the uploads themselves (the API's
    tensors, which carry no upload)."""
    return [capture_facts(_grey(x), None, x) for x in images]


def _grey(image: torch.Tensor) -> np.ndarray:
    array = image.numpy()
    return array[0] if array.shape[0] == 1 else np.round(array.mean(0)).astype(np.uint8)


def calibrate_capture(val_images: torch.Tensor, recipe: Recipe | str | None, fpr: float
                      ) -> dict[str, Any]:
    """The capture axis's calibration from uint8 validation images as stored, each read as an
    upload is (through ``recipe``, the model's input normalization; None: as it is): each
    fact's kept sorted values and the level ``fpr`` at which the axis fires."""
    facts = []
    for x in val_images:
        upload = Image.fromarray(x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy())
        model_input, framing, _ = fit_input(upload, tuple(x.shape), recipe, recipe is not None)
        facts.append(capture_facts(_grey(x), framing, model_input))
    kept = {}
    for name in FACTS:
        values = np.sort([f[name] for f in facts])
        step = max(1, int(np.ceil(len(values) / KEPT_VALUES)))
        kept[name] = [round(float(v), 6) for v in values[::step]]
    return {"facts": kept, "n": len(facts), "level": fpr,
            "method": "p = min over facts of 4 x (1 + #validation at least as extreme) / (n + 1) "
                      "in the fact's tail; fires below the level"}


def capture_verdict(facts: Sequence[dict[str, float]], calibration: dict[str, Any]
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per image: the capture axis's p-value, whether it fires, and the facts that fired in
    words ("" for none)."""
    n = calibration["n"]
    per_fact = {}
    for name, (tail, _) in FACTS.items():
        kept = np.asarray(calibration["facts"][name])
        values = np.asarray([f[name] for f in facts], dtype=np.float64)[:, None]
        extreme = (kept <= values) if tail == "lower" else (kept >= values)
        per_fact[name] = (1.0 + n * extreme.mean(1)) / (n + 1.0)
    stacked = np.stack([per_fact[name] for name in FACTS]) if facts else np.zeros((4, 0))
    p = np.minimum(1.0, len(FACTS) * stacked.min(0))
    fires = p < calibration["level"]
    level = calibration["level"] / len(FACTS)
    why = [", ".join(words for name, (_, words) in FACTS.items() if per_fact[name][i] < level)
           if fires[i] else "" for i in range(len(p))]
    return p, fires, why
