"""What each button does: plain methods that validate input, call the library and shape outputs.

Kept apart from the layout so that tests call them directly, without a browser or a server. Bad
input raises ``gr.Error`` with the reason; the Gradio UI shows it and API clients receive it.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd
import torch
from PIL import Image

from ..anomaly import explain, score_images
from ..images import ImageError, describe_fit, open_image, to_mask, to_model_input, to_pil
from ..inpainting import METHODS, inpaint
from ..masks import MASK_PRESETS, make_mask
from .cards import card_markdown
from .pictures import heat_map, score_histogram, show_missing
from .registry import ModelCache

PAINTED = "painted"  # mask source: the strokes painted in the editor
MASK_SOURCES = (PAINTED, *MASK_PRESETS)
MAX_FILES = 64  # images per anomaly request
MAX_SAMPLES = 16  # inpainting samples per request
MAX_STEPS = 5000
MAX_DRAWS = 64  # model samples per request
VERDICTS = {True: "anomalous", False: "in distribution", None: "no threshold (uncalibrated)"}
TABLE_COLUMNS = ["#", "file", "bits/dim", "score", "p-value", "verdict", "note"]


def _own(image: Image.Image | None) -> Image.Image | None:
    """Tag an output image with a fresh id (a PNG text chunk) so its bytes are unique.

    Gradio caches an output at a path named by the hash of its bytes and writes it there
    non-atomically; two requests returning identical pictures at the same moment (the same
    histogram, say) would write one file while the other is being served, and a client could
    receive it truncated. Unique bytes give each request its own file.
    """
    if image is not None:
        image.info["flowpaint-output"] = uuid.uuid4().hex
    return image


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    """An integer option from the UI or the API, refused with a message when out of range."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number != int(number) or not lo <= number <= hi:
        raise gr.Error(f"{name} must be a whole number from {lo} to {hi}, got {value!r}")
    return int(number)


def _image(source: Any) -> Image.Image:
    """An upload (path or PIL image) opened with the shared validation; ``gr.Error`` if refused."""
    try:
        return open_image(source)
    except ImageError as err:
        raise gr.Error(str(err)) from None


def painted_mask(layers: list[Image.Image] | None, size: tuple[int, int]) -> torch.Tensor:
    """bool ``[H, W]``: a pixel is missing when brush strokes cover at least a quarter of it.

    Strokes are the alpha of the editor's layers at canvas size; an area (box) downscale keeps
    thin strokes that a nearest-neighbour resize would drop.
    """
    height, width = size
    covered = np.zeros((height, width), dtype=bool)
    for layer in layers or []:
        alpha = np.asarray(layer.convert("RGBA"))[..., 3]
        painted = Image.fromarray(np.where(alpha > 0, 255, 0).astype(np.uint8))
        if painted.size != (width, height):
            painted = painted.resize((width, height), Image.Resampling.BOX)
            painted = painted.point(lambda v: 255 if v >= 64 else 0)
        covered |= to_mask(painted, size).numpy()
    return torch.from_numpy(covered)


def _trajectory(values: list[float]) -> pd.DataFrame:
    finite = [v if math.isfinite(v) else None for v in values]
    return pd.DataFrame({"step": list(range(len(finite))), "bits/dim": finite})


def _cell(value: float | None) -> float | None:
    """A table number: rounded, and empty when missing or not finite (JSON has no inf)."""
    return None if value is None or not math.isfinite(value) else round(value, 4)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


class Handlers:
    """The app's actions over one shared ``ModelCache``; each method is one API endpoint."""

    def __init__(self, cache: ModelCache) -> None:
        self.cache = cache

    def inpaint(self, editor: dict[str, Any] | None, model_name: str, mask_source: str,
                method: str, steps: float, n_samples: float, seed: float,
                progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008 - Gradio's idiom
        """Fill the missing pixels of the editor's image; returns the fill, the samples, the
        uncertainty map, the bits/dim trajectory, the model's view, a summary and metrics."""
        if not editor or editor.get("background") is None:
            raise gr.Error("no image: pick an example or upload one first")
        if method not in METHODS:
            raise gr.Error(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
        if mask_source not in MASK_SOURCES:
            raise gr.Error(f"unknown mask {mask_source!r}: "
                           f"choose one of {', '.join(MASK_SOURCES)}")
        steps = _int(steps, "steps", 0, MAX_STEPS)
        n_samples = _int(n_samples, "samples", 0, MAX_SAMPLES) or None  # 0: method's own
        seed = _int(seed, "seed", 0, 2**31 - 1)
        model = self.cache.get(model_name)
        shape = model.image_shape
        picture = _image(editor["background"])
        x = to_model_input(picture, shape)
        if mask_source == PAINTED:
            mask = painted_mask(editor.get("layers"), shape[1:])
        else:
            mask = make_mask(mask_source, shape[1:], seed=seed)
        if not mask.any():
            raise gr.Error("the mask is empty: paint over the pixels to fill, or choose a preset")

        def report(done: int, total: int) -> None:
            progress((done, total), desc=f"{method}: gradient ascent", unit="steps")

        try:
            result = inpaint(model, x, mask, method=method, steps=steps or None, seed=seed,
                             n_samples=n_samples, progress=report)
        except (ValueError, ImageError) as err:
            raise gr.Error(str(err)) from None
        fit = describe_fit(picture, shape)
        samples = [_own(to_pil(s)) for s in result.samples] if len(result.samples) > 1 else []
        uncertainty = (None if result.uncertainty is None
                       else _own(heat_map(result.uncertainty)))
        metrics = {"bpd_before": result.bpd_before, "bpd_after": result.bpd_after,
                   "method": result.method, "steps": result.steps,
                   "seconds": round(result.seconds, 3), "missing_pixels": int(mask.sum()),
                   "model": model_name or self.cache.default, "fit": fit,
                   "message": result.message, "trajectory": result.trajectory_label}
        summary = (f"**bits/dim** {_fmt(result.bpd_before)} before → **{_fmt(result.bpd_after)}** "
                   f"after · {result.method}, {result.steps} steps, {result.seconds:.1f} s · "
                   f"{int(mask.sum())} missing pixels  \n**model input**: {fit}  \n"
                   f"**plot**: {result.trajectory_label} at each step (last: "
                   f"{_fmt(result.bpd_trajectory[-1])})"
                   + (f"  \n{result.message}" if result.message else ""))
        return (_own(to_pil(result.image)), samples, uncertainty,
                _trajectory(result.bpd_trajectory), _own(show_missing(to_pil(x), mask)), summary,
                metrics)

    def score(self, files: list[str] | str | None, model_name: str) -> tuple:
        """Score uploaded images; returns the verdict table, the histogram and an explanation."""
        paths = [files] if isinstance(files, str) else list(files or [])
        if not paths:
            raise gr.Error("no images: upload one or more image files")
        if len(paths) > MAX_FILES:
            raise gr.Error(f"{len(paths)} files: at most {MAX_FILES} per request")
        model = self.cache.get(model_name)
        readable, rows = [], []
        for i, path in enumerate(paths, start=1):
            name = Path(str(path)).name
            try:
                picture = open_image(path)
            except ImageError as err:
                rows.append([i, name, None, None, None, "unreadable", str(err)])
                continue
            readable.append((len(rows), to_model_input(picture, model.image_shape)))
            rows.append([i, name, None, None, None, "", describe_fit(picture, model.image_shape)])
        calibration = model.card.get("anomaly")
        results = score_images(model, torch.stack([x for _, x in readable])) if readable else []
        marks = []
        for (row, _), result in zip(readable, results, strict=True):
            rows[row][2:6] = [_cell(result["bpd"]), _cell(result["score"]),
                              _cell(result["p_value"]), VERDICTS[result["flag"]]]
            if not math.isfinite(result["bpd"]):
                rows[row][6] += "; bits/dim not finite (numerical blow-up far from the data)"
            marks.append((f"#{rows[row][0]}", result["score"]))
        table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
        histogram = _own(self._histogram(calibration, marks))
        name = results[0]["score_name"] if results else (calibration or {}).get("default_score")
        note = f"Score: **{name}** (higher = more anomalous). " + explain()
        if calibration is None:
            note += "  \nThis model has no calibration yet: run `python -m pipelines.calibrate`."
        return table, histogram, note

    @staticmethod
    def _histogram(calibration: dict[str, Any] | None, marks: list[tuple[str, float]]
                   ) -> Image.Image | None:
        hist = (calibration or {}).get("histogram")
        if not hist:
            return None
        source = calibration.get("source", "validation")
        return score_histogram(hist["edges"], hist["counts"], hist.get("threshold"), marks,
                               title=f"{hist.get('score', 'score')} on {source}")

    def sample(self, model_name: str, n: float, temperature: float, seed: float
               ) -> list[Image.Image]:
        """``n`` images drawn from the model at ``temperature`` (latent scale)."""
        n = _int(n, "number of samples", 1, MAX_DRAWS)
        seed = _int(seed, "seed", 0, 2**31 - 1)
        try:
            temperature = float(temperature)
        except (TypeError, ValueError):
            raise gr.Error(f"temperature must be a number, got {temperature!r}") from None
        if not 0.0 <= temperature <= 2.0:
            raise gr.Error(f"temperature must be between 0 and 2, got {temperature}")
        model = self.cache.get(model_name)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            images = model.sample(n, temperature, generator=generator)
        return [_own(to_pil(torch.nan_to_num(x, nan=0.0).clamp(0, 1))) for x in images]

    def card(self, model_name: str) -> str:
        """The model card as Markdown: data, quality, thresholds, training cost."""
        model = self.cache.get(model_name)
        return card_markdown(model_name or self.cache.default, model.card, model.image_shape)
