"""The app's anomaly maps (``inpaint_app.anomaly_map``): each Anomaly row's map over the model's
view of its image, and the Inpaint tab's "where would the model change this image?". Computed
only when asked (a button): a map costs a few hundred milliseconds an image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import torch
from PIL import Image

from ..anomaly_map import MapUnavailable, anomaly_map, map_calibration, to_upload_frame
from ..bundle import ModelBundle
from ..images import ImageError, open_image, to_pil
from ..normalize import fit_input
from .pictures import map_panel
from .wording import dataset_name


def _calibration(bundle: ModelBundle) -> dict[str, Any]:
    try:
        return map_calibration(bundle)
    except MapUnavailable as err:
        raise gr.Error(str(err)) from None


def legend(calibration: dict[str, Any], dataset: str | None) -> str:
    """What the colours mean, in words."""
    return ("**How to read a map**: colour marks where the model's conditional flow finds a "
            "region of the image surprising given the rest of it (each "
            "window of pixels read given all the others: how far its pixels lie from what the "
            "flow predicts there, in units of the spread it predicts: small where the image is "
            "as expected). Clear: below half the **hot-spot level**; yellow from there; red "
            "at the level and above. The level is what the hottest spot of "
            f"{calibration['fpr']:.0%} of clean {dataset_name(dataset)} validation images "
            f"reaches ({calibration['n']:,} images): red is a region the model would change. "
            "The number beside each map is its hottest value over the level.")


def caption(row: int | None, name: str, peak: float) -> str:
    where = f"#{row} {name}" if row is not None else name
    verdict = "hot spot" if peak > 1 else "no hot spot"
    return f"{where}: {verdict} (peak {peak:.2f} x the level)"


def _panels(bundle: ModelBundle, inputs: list[torch.Tensor], level: float
            ) -> list[tuple[Image.Image, float]]:
    values = anomaly_map(bundle, torch.stack(inputs))
    return [(map_panel(to_pil(x), v, level), float(v.max()) / level)
            for x, v in zip(inputs, values, strict=True)]


def row_maps(bundle: ModelBundle, paths: list[str], normalize: bool
             ) -> tuple[list[tuple[Image.Image, str]], str]:
    """Each readable file's map panel captioned with its row number in the verdict table (the
    rows count every file, unreadable ones too), and the legend."""
    calibration = _calibration(bundle)
    named, inputs = [], []
    for row, path in enumerate(paths, start=1):
        try:
            picture = open_image(path)
        except ImageError:
            continue  # its row in the table says why
        named.append((row, Path(str(path)).name))
        inputs.append(fit_input(picture, bundle.image_shape, bundle.recipe, normalize)[0])
    if not inputs:
        raise gr.Error("no readable image among the files: nothing to map")
    panels = _panels(bundle, inputs, calibration["level"])
    return ([(panel, caption(row, name, peak))
             for (row, name), (panel, peak) in zip(named, panels, strict=True)],
            legend(calibration, bundle.dataset))


def where_map(bundle: ModelBundle, picture: Image.Image, normalize: bool
              ) -> tuple[Image.Image, str]:
    """The Inpaint tab's answer to "where would the model change this image?": the map over
    the picture in its own frame (through the input normalization's framing; without it, over
    the model's view), and a line saying what it found with the legend."""
    calibration = _calibration(bundle)
    x, framing, _ = fit_input(picture, bundle.image_shape, bundle.recipe, normalize)
    values = anomaly_map(bundle, x[None])[0]
    peak = float(values.max()) / calibration["level"]
    panel = (map_panel(to_pil(x), values, calibration["level"]) if framing is None else
             map_panel(picture, to_upload_frame(values, framing, picture.size),
                       calibration["level"], side=max(224, min(picture.width, 320))))
    found = ("**Hot spot**: the red region is where the model would change this image most; "
             "paint over it to fill it." if peak > 1 else
             "**No hot spot**: no region is as unlikely as the hottest spot of "
             f"{calibration['fpr']:.0%} of clean images.")
    return panel, f"{found} (peak {peak:.2f} x the level)  \n" + legend(calibration,
                                                                        bundle.dataset)
