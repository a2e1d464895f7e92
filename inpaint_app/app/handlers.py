"""What each button does: plain methods that validate input, call the library and shape outputs.

Kept apart from the layout so that tests call them directly, without a browser or a server. Bad
input raises ``gr.Error`` with the reason; the Gradio UI shows it and API clients receive it. An
error the user caused is logged as one line (``user_errors``); only real bugs log a traceback.
"""

from __future__ import annotations

import functools
import logging
import math
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd
import torch
from PIL import Image

from ..anomaly import explain
from ..bundle import ModelBundle
from ..gallery import Example
from ..images import (
    MAX_FILE_BYTES,
    ImageError,
    open_image,
    to_8bit,
    to_pil,
)
from ..masks import MASK_PRESETS
from ..methods import (
    CHOICES,
    DEFAULT,
    METHODS,
    Method,
    conditional_settings,
    describe_default,
    resolve,
)
from ..predictor import Fitted, has_colour, inpaint_upload
from ..uploads import prepare_upload, score_uploads
from . import maps, wording
from .cards import card_markdown, skipped_markdown
from .pictures import (
    heat_map,
    score_histogram,
    show_missing,
    thumbnail_html,
)
from .registry import ModelCache
from .runview import plot, plotted, summary

PAINTED = "painted"  # mask source: the strokes painted in the editor
MASK_SOURCES = (*MASK_PRESETS, PAINTED)
DEFAULT_MASK = "bottom"  # a preset, so that an example followed by Inpaint just works
MAX_FILES = 64  # images per anomaly request
MAX_SAMPLES = 16  # inpainting samples per request
MAX_STEPS = 5000
MAX_DRAWS = 64  # model samples per request
MAX_EXAMPLES_PER_MODEL = 8  # a model's own examples (``ModelBundle.examples``) shown
DISPLAY_SIDE = 512  # an upload is shown in the editor at most this wide and high
BRUSH_RADIUS = 1  # canvas pixels, on an example (a canvas of model pixels); uploads: ``brush_for``
TABLE_COLUMNS = ["#", "model input", "file", "verdict", "capture", "p-value", "score",
                 "bits/dim", "note"]
TABLE_TYPES = ["number", "html", "str", "str", "str", "number", "number", "number", "str"]
log = logging.getLogger(__name__)


def refuse(action: str, message: str) -> gr.Error:
    """A ``gr.Error`` for input the user got wrong: one log line, no server-side traceback."""
    log.warning("%s refused: %s", action, message)
    return gr.Error(message, print_exception=False)


def user_errors(action: Callable) -> Callable:
    """Turn the user's errors (``gr.Error``, ``ImageError``) raised by ``action`` into quiet
    ``refuse`` errors; anything else is a bug and keeps Gradio's full traceback."""
    @functools.wraps(action)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return action(*args, **kwargs)
        except gr.Error as err:
            raise refuse(action.__name__, err.message) from None
        except ImageError as err:
            raise refuse(action.__name__, str(err)) from None
    return run


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


def brush(radius: int) -> gr.Brush:
    """The editor's magenta brush, ``radius`` canvas pixels."""
    return gr.Brush(colors=["#ff00ff"], default_color="#ff00ff", color_mode="fixed",
                    default_size=radius)


def brush_for(canvas: tuple[int, int], shape: tuple[int, int]) -> int:
    """A brush radius whose stroke is at least one model pixel wide on a ``canvas`` (width,
    height) showing an image that a model of ``shape`` (height, width) sees whole (issue 36.3:
    a 2-pixel brush on a 512-pixel canvas was a tenth of a model pixel)."""
    per_pixel = max(canvas[0] / shape[1], canvas[1] / shape[0])
    return max(BRUSH_RADIUS, math.ceil(per_pixel / 2))


def painted_mask(layers: list[Image.Image] | None, size: tuple[int, int]) -> torch.Tensor:
    """bool ``[H, W]``: the pixels the brush strokes touch (half-opaque or more), the editor's
    layers (canvas size) mapped to ``size``: a nearest-neighbour enlargement, or a reduction in
    which a pixel any stroke touches counts, so that no stroke is dropped."""
    height, width = size
    covered = np.zeros((height, width), dtype=bool)
    for layer in layers or []:
        alpha = np.asarray(layer.convert("RGBA"))[..., 3]
        painted = Image.fromarray(np.where(alpha >= 128, 255, 0).astype(np.uint8))
        if painted.size != (width, height):
            shrinks = painted.width > width or painted.height > height
            painted = painted.resize((width, height), Image.Resampling.BOX if shrinks
                                     else Image.Resampling.NEAREST)
        covered |= np.asarray(painted) > 0
    return torch.from_numpy(covered)


def _cell(value: float | None) -> float | None:
    """A table number: rounded, and empty when missing or not finite (JSON has no inf)."""
    return None if value is None or not math.isfinite(value) else round(value, 4)


def _picture(editor: dict[str, Any] | None, original: dict[str, Any] | None) -> Image.Image:
    """The image to fill: the upload itself where the editor shows its smaller copy
    (``original``, checked against the canvas's size), else the editor's background. A blank
    canvas (one colour: what the editor paints on before an image) is refused (issue 36.10)."""
    background = (editor or {}).get("background")
    if background is None:
        raise gr.Error("no image: pick an example or upload one first")
    if _blank(background):
        raise gr.Error("upload an image first (or pick an example): the canvas is blank, and "
                       "the brush marks the pixels to fill in an image, it does not draw one")
    if original and tuple(original.get("shown") or ()) == background.size:
        return open_image(original["path"])
    return open_image(background)


def _blank(image: Image.Image) -> bool:
    """True when every pixel has the same value (after compositing on black)."""
    low, high = zip(*to_8bit(image, 3).getextrema(), strict=True)
    return low == high


class Handlers:
    """The app's actions over one shared ``ModelCache``; each method is one API endpoint."""

    def __init__(self, cache: ModelCache) -> None:
        self.cache = cache

    @user_errors
    def inpaint(self, editor: dict[str, Any] | None, model_name: str, mask_source: str,
                method: str, steps: float, n_samples: float, seed: float,
                normalize: bool = True, original: dict[str, Any] | None = None,
                progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008 - Gradio's idiom
        """Fill the missing pixels of the editor's image; returns the fill, the samples, the
        uncertainty map, the plot of what the method climbs, the model's view, a summary and
        metrics. With ``normalize`` (the default) the model sees the image through its input
        normalization (colour models: a plain resize) and the fill is pasted back into the
        image's own frame, size and polarity, blended at the mask's edge; outside the mask the
        image keeps its own pixels (colours too: a grayscale model's fill is gray).
        ``original`` (the page's state, set by ``upload``) names the upload the editor shows
        a smaller copy of: the model reads, and the fill comes back in, the upload itself."""
        if method not in CHOICES:
            raise gr.Error(f"unknown method {method!r}: choose one of {', '.join(CHOICES)}")
        if mask_source not in MASK_SOURCES:
            raise gr.Error(f"unknown mask {mask_source!r}: "
                           f"choose one of {', '.join(MASK_SOURCES)}")
        steps = _int(steps, "steps", 0, MAX_STEPS)
        n_samples = _int(n_samples, "samples", 0, MAX_SAMPLES) or None  # 0: method's own
        seed = _int(seed, "seed", 0, 2**31 - 1)
        bundle = self.cache.get(model_name)
        shape = bundle.image_shape
        picture = _picture(editor, original)
        fitted = Fitted.of(picture, bundle, bool(normalize))
        # Strokes are painted on the picture: they move into model pixels with it, every model
        # pixel they touch counting.
        painted = painted_mask(editor.get("layers"), (picture.height, picture.width)).numpy()
        strokes = (fitted.model_mask(painted, strokes=True) if painted.any()
                   else torch.zeros(shape[1:], dtype=bool))
        mask, frame_mask = ((strokes, painted) if mask_source == PAINTED
                            else fitted.preset(mask_source, seed=seed))
        if not mask.any():
            raise gr.Error("the mask is empty: paint over the pixels to fill, or choose a preset"
                           + (" (the strokes miss the model's view of the image)"
                              if fitted.framing is not None and mask_source == PAINTED else ""))
        ran, chosen = self._method(method, bundle)

        def report(done: int, total: int) -> None:
            progress((done, total), desc=f"{ran}: {chosen.runs}", unit="steps")

        try:
            filled = inpaint_upload(bundle, fitted, mask, frame_mask, blend=True, method=method,
                                    steps=steps or None, seed=seed, n_samples=n_samples,
                                    progress=report)
        except ValueError as err:
            raise gr.Error(str(err)) from None
        result = filled.result
        name = model_name or self.cache.default
        numbers = plotted(result)
        text = summary(result, numbers, int(mask.sum()), fitted.note, name, bundle.dataset,
                       ignored_strokes=mask_source != PAINTED and bool(strokes.any()))
        samples = [_own(to_pil(s)) for s in result.samples] if len(result.samples) > 1 else []
        uncertainty = (None if result.uncertainty is None
                       else _own(heat_map(result.uncertainty)))
        metrics = {"plot": numbers, "method": result.method, "steps": result.steps,
                   "seconds": round(result.seconds, 3), "missing_pixels": int(mask.sum()),
                   "model": name, "fit": fitted.note, "message": result.message,
                   "bpd_before": result.bpd_before, "bpd_after": result.bpd_after,
                   "bpd_note": "bpd_before/after: the unconditional model's bits/dim of the "
                               "whole quantized image, start fill and shown fill"}
        if fitted.framing is not None and shape[0] == 1 and has_colour(picture):
            text += ("  \n**Colour upload, grayscale model**: the fill is gray (the model "
                     "knows no colour); outside the mask the upload keeps its own colours.")
        return (_own(filled.image), samples, uncertainty, plot(result),
                _own(show_missing(to_pil(fitted.x), mask)), text, metrics)

    @user_errors
    def upload(self, path: str | None, model_name: str) -> tuple:
        """An uploaded file, checked from its header and decoded here on the server, as the
        editor's background (at most ``DISPLAY_SIDE`` pixels a side, so the browser never paints
        a huge canvas) with a brush a model pixel wide, a note on it, and the page's state
        naming the upload itself (``inpaint`` reads it, not the smaller copy). The upload box
        is emptied for the next file, also when the file is refused: the note and a warning say
        why (issue 36.9: a refused file stuck in the box under an error badge)."""
        if not path:
            return None, gr.update(), "", None
        name = Path(str(path)).name
        try:
            picture = open_image(path)
        except ImageError as err:
            message = f"{name}: {err}"
            log.warning("upload refused: %s", message)
            gr.Warning(message, title="Not loaded")
            return None, gr.update(), f"**Not loaded**: {message}", gr.update()
        shown = to_8bit(picture, 3)
        shown.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.LANCZOS)
        bundle = self.cache.get(model_name)
        size = f"{picture.width}x{picture.height}"
        note = (f"**Upload**: {name}, {size} {picture.mode}"
                + (f", shown at {shown.width}x{shown.height}" if shown.size != picture.size
                   else "")
                + f". The model **{model_name or self.cache.default}** learned "
                f"{wording.dataset_name(bundle.dataset)} images: fills of pictures "
                "unlike those are poor.")
        editor = gr.update(value={"background": shown, "layers": [], "composite": shown},
                           brush=brush(brush_for(shown.size, bundle.image_shape[1:])))
        return None, editor, note, {"path": str(path), "shown": list(shown.size)}

    @functools.cached_property
    def examples(self) -> list[tuple[Example, str]]:
        """The examples gallery, each image with the model it selects: every offered model's
        own examples (at most ``MAX_EXAMPLES_PER_MODEL`` of ``ModelBundle.examples``), the
        default model's first."""
        names = [self.cache.default, *(n for n in self.cache.names if n != self.cache.default)]
        return [(example, name) for name in names
                for example in self.cache.get(name).examples[:MAX_EXAMPLES_PER_MODEL]]

    @user_errors
    def example(self, selected: gr.SelectData) -> tuple:
        """Picking an example selects its model and a mask preset, and says what it shows; it
        forgets an earlier upload and sets the brush for the example's small canvas."""
        if not 0 <= selected.index < len(self.examples):
            raise gr.Error(f"no example number {selected.index}")
        example, model = self.examples[selected.index]
        preset, note = wording.describe_example(example, model)
        return model, preset, note, None, gr.update(brush=brush(BRUSH_RADIUS))

    def normalize_info(self, model_name: str | None) -> str:
        """What "Normalize the input" does for this model (its input recipe), in words."""
        bundle = self.cache.get(model_name)
        return wording.normalize_info(bundle.recipe, bundle.image_shape[0])

    def normalize_infos(self, model_name: str | None) -> tuple[dict, dict]:
        """Both tabs' "Normalize the input" explanations for a newly chosen model."""
        info = self.normalize_info(model_name)
        return gr.update(info=info), gr.update(info=info)

    @staticmethod
    def _method(method: str, bundle: ModelBundle) -> tuple[str, Method]:
        """The method ``method`` runs on ``bundle`` (``default``: ``conditional`` with a
        conditional flow beside it, else ``ascent``), by name and registry entry."""
        name = resolve(method, has_conditional=bundle.inpainter is not None)
        return name, METHODS[name]

    @user_errors
    def controls(self, method: str, model_name: str) -> tuple:
        """Method-dependent controls: steps, samples and seed shown only where the method reads
        them, each saying what it does, and the method's own note (a warning where it fills
        poorly)."""
        if method not in CHOICES:
            raise gr.Error(f"unknown method {method!r}: choose one of {', '.join(CHOICES)}")
        bundle = self.cache.get(model_name)
        name, text = self._method(method, bundle)
        has_flow = bundle.inpainter is not None
        steps, samples = text.default_steps, 1
        if text.conditional and has_flow:
            settings = conditional_settings(bundle.inpainter_card)
            steps, samples = int(settings["ascent_steps"]), int(settings["samples"])
        why = (" (the default: no conditional flow beside this model)"
               if method == DEFAULT and not has_flow else
               " (this model has no conditional flow beside it: choose another method)"
               if text.conditional and not has_flow else "")
        return (gr.update(info=f"{text.steps}; 0 = the method's default ({steps})"),
                gr.update(visible=text.samples, info=f"0 = the method's default ({samples})"),
                gr.update(visible=text.seed),
                gr.update(info=f"Runs: {name}, {text.runs}{why}."
                          + (f" Warning: {text.warning}." if text.warning else "")))

    @user_errors
    def score(self, files: list[str] | str | None, model_name: str,
              normalize: bool = True, refused: str = "") -> tuple:
        """Score uploaded images; returns the verdict table, the histogram and an explanation.
        With ``normalize`` (the default) each image goes through the model's input
        normalization first (the table's note says what it did). ``refused``: the names, one a
        line, of files the page kept back for their size (``layout.HEAD``); each gets a row
        saying so, after the scored ones (issue 36.4)."""
        paths = [files] if isinstance(files, str) else list(files or [])
        too_big = [name for name in (refused or "").splitlines() if name.strip()]
        if not paths and not too_big:
            raise gr.Error("no images: upload one or more image files")
        if len(paths) > MAX_FILES:
            raise gr.Error(f"{len(paths)} files: at most {MAX_FILES} per request")
        bundle = self.cache.get(model_name)
        readable, rows = [], []
        for i, path in enumerate(paths, start=1):
            name = Path(str(path)).name
            try:
                picture = open_image(path)
            except ImageError as err:
                rows.append([i, "", name, "unreadable", "", None, None, None, str(err)])
                continue
            prepared = prepare_upload(picture, bundle, bool(normalize))
            readable.append((len(rows), prepared))
            rows.append([i, thumbnail_html(to_pil(prepared.x)), name, "", "", None, None, None,
                         prepared.note])
        for i, name in enumerate(too_big, start=len(rows) + 1):
            rows.append([i, "", Path(name).name, "refused", "", None, None, None,
                         f"larger than {MAX_FILE_BYTES // 2**20} MB: the page did not send it"])
        calibration = bundle.calibration
        dataset = bundle.dataset
        results = score_uploads(bundle, [p for _, p in readable])
        marks = []
        for (row, _), result in zip(readable, results, strict=True):
            rows[row][3:8] = [wording.plain_verdict(result["flag"], result["p_value"],
                                                    (calibration or {}).get("n", 0), dataset,
                                                    result["why"]),
                              wording.plain_capture(result["capture_flag"],
                                                    result["capture_why"], dataset),
                              _cell(result["p_value"]), _cell(result["score"]),
                              _cell(result["bpd"])]
            if not math.isfinite(result["bpd"]):
                rows[row][8] += "; bits/dim not finite (numerical blow-up far from the data)"
            marks.append((f"#{rows[row][0]}", result["score"]))
        table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
        histogram = _own(self._histogram(calibration, marks))
        name = results[0]["score_name"] if results else (calibration or {}).get("default_score")
        threshold = results[0]["threshold"] if results else None
        note = (wording.reading_guide(name, threshold, calibration, dataset)
                + "  \n**Why not bits/dim alone?** " + explain(calibration))
        stale = bundle.stale_note if normalize else None
        if stale:
            note = f"**Warning**: {stale}  \n" + note
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

    @user_errors
    def sample(self, model_name: str, n: float, temperature: float, seed: float
               ) -> list[Image.Image]:
        """``n`` images drawn from the model at ``temperature`` (latent scale); at temperature
        0 every draw is the same image, so one is returned."""
        n = _int(n, "number of samples", 1, MAX_DRAWS)
        seed = _int(seed, "seed", 0, 2**31 - 1)
        try:
            temperature = float(temperature)
        except (TypeError, ValueError):
            raise gr.Error(f"temperature must be a number, got {temperature!r}") from None
        if not 0.0 <= temperature <= 2.0:
            raise gr.Error(f"temperature must be between 0 and 2, got {temperature}")
        bundle = self.cache.get(model_name)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            images = bundle.model.sample(1 if temperature == 0 else n, temperature,
                                        generator=generator)
        return [_own(to_pil(torch.nan_to_num(x, nan=0.0).clamp(0, 1))) for x in images]

    @user_errors
    def card(self, model_name: str) -> str:
        """The model card as Markdown: data, quality, thresholds, training cost."""
        bundle = self.cache.get(model_name)
        flow_card = bundle.inpainter_card if bundle.inpainter is not None else None
        return card_markdown(model_name or self.cache.default, bundle.card, bundle.image_shape,
                             warning=bundle.stale_note, inpainting=describe_default(flow_card))

    def skipped(self) -> str:
        """The bundles found but not offered, each with why (empty when there are none)."""
        return skipped_markdown(self.cache.skipped)

    @user_errors
    def maps(self, files: list[str] | str | None, model_name: str, normalize: bool = True
             ) -> tuple[list[tuple[Image.Image, str]], str]:
        """Each upload's anomaly map over the model's view of it, captioned with its row in the
        verdict table, and what the colours mean (``app.maps``)."""
        paths = [files] if isinstance(files, str) else list(files or [])
        if not paths:
            raise gr.Error("no images: upload one or more image files")
        if len(paths) > MAX_FILES:
            raise gr.Error(f"{len(paths)} files: at most {MAX_FILES} per request")
        gallery, legend = maps.row_maps(self.cache.get(model_name), paths, bool(normalize))
        return [(_own(panel), text) for panel, text in gallery], legend

    @user_errors
    def where(self, editor: dict[str, Any] | None, model_name: str, normalize: bool = True,
              original: dict[str, Any] | None = None) -> tuple[Image.Image, str]:
        """Where would the model change the editor's image? Its anomaly map (``app.maps``)."""
        panel, note = maps.where_map(self.cache.get(model_name), _picture(editor, original),
                                     bool(normalize))
        return _own(panel), note
