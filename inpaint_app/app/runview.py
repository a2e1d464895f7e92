"""How an inpainting run is shown: the plot of the quantity its method climbs (or samples) and
the summary under the fill, both from the same numbers, under the same name."""

from __future__ import annotations

import math
from typing import Any

import gradio as gr
import pandas as pd

from ..inpainting import InpaintResult
from .wording import dataset_name


def plotted(result: InpaintResult) -> dict[str, Any]:
    """The plotted quantity at the start, at the end, and for the fill shown: the best step for
    the Adam methods (they keep it), the last for NICE, none for Langevin (its fill is the
    chains' mean, which no step measured)."""
    values = [v for v in result.bpd_trajectory if math.isfinite(v)] or [math.nan]
    fill = {"nice": values[-1], "langevin": None}.get(result.method, min(values))
    return {"quantity": result.trajectory_label, "start": result.bpd_trajectory[0],
            "end": result.bpd_trajectory[-1], "fill": fill}


def plot(result: InpaintResult) -> dict[str, Any]:
    """The trajectory as a plot update, a dot per step, its label naming what it measures;
    with a single value (no steps ran) the label says so and gives it."""
    finite = [v if math.isfinite(v) else None for v in result.bpd_trajectory]
    frame = pd.DataFrame({"step": list(range(len(finite))), "bits/dim": finite})
    label = (f"no steps ran: one value, {fmt(finite[0])} (the single dot)" if len(finite) == 1
             else "a dot per step")
    # The axis title stays "bits per dim" (the layout's): Gradio 6.31 redraws a plot whose
    # y_title changes with the previous run's dots (issue 36.1); the label names the quantity.
    return gr.update(value=frame,
                     label=f"{result.trajectory_label} (lower = likelier): {label}")


def summary(result: InpaintResult, numbers: dict[str, Any], missing: int, fit: str,
            model: str, dataset: str | None, ignored_strokes: bool) -> str:
    """The run in a few lines, its numbers (``plotted``) those of the plot."""
    start, end, fill = numbers["start"], numbers["end"], numbers["fill"]
    steps = len(result.bpd_trajectory) - 1
    climb = (f"{fmt(start)} (no steps ran)" if steps == 0
             else f"{fmt(start)} at step 0 → {fmt(end)} at step {steps}")
    if fill is not None and steps and fill != end:
        climb += f"; the fill shown is the best step, {fmt(fill)}"
    lines = [f"**{numbers['quantity']}** (the plot; lower = likelier): {climb}",
             f"{result.method}, {result.steps} steps, {result.seconds:.1f} s · {missing} "
             f"missing pixels · model **{model}** (trained on "
             f"{dataset_name(dataset)})", f"**model input**: {fit}"]
    if result.message:
        lines.append(result.message)
    if ignored_strokes:
        lines.append("Your brush strokes were not used: choose the mask *painted* to fill them.")
    return "  \n".join(lines)


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for the page: fixed digits, or n/a when missing or not finite."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"
