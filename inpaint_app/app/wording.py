"""What the app says in words: plain-language verdicts and what each example image shows, with
its model and mask. What each inpainting method runs, and which controls it reads, is in the
method registry (``inpaint_app.methods``).

Kept apart from the handlers so that the texts can be read, and changed, in one place.
"""

from __future__ import annotations

from ..data import DISPLAY_NAMES
from ..gallery import Example
from ..masks import describe_mask
from ..normalize import Recipe

DEFAULT_EXAMPLE_MASK = "center"  # for an example whose index names no preset


def dataset_name(key: str | None) -> str:
    return DISPLAY_NAMES.get(key or "", key or "unknown")


def describe_example(example: Example, model: str) -> tuple[str, str]:
    """The example's mask preset and a note on what it shows and the model it selected (each
    example is one of that model's validation images, ``inpaint_app.gallery``)."""
    preset = example.mask or DEFAULT_EXAMPLE_MASK
    shows = example.shows or example.path.name
    source = f" ({example.source})" if example.source else ""
    hides = describe_mask(preset).rstrip(".")
    return preset, (f"**Example**: {shows}, one of model **{model}**'s validation images"
                    f"{source}, never seen in training. Selected: that model; mask "
                    f"**{preset}** ({hides}). "
                    "Press Inpaint, or paint with the brush and choose the mask *painted*.")


def normalize_info(recipe: Recipe, channels: int) -> str:
    """What "Normalize the input" does for a model with this input ``recipe``, in words."""
    if channels != 1 or not (recipe.dark_background or recipe.box):
        return ("this model's input is a plain resize either way; on, a fill goes back into "
                "the upload at its own size, off, it comes back at the model's size")
    steps = (["a light background is inverted", "the background level subtracted"]
             if recipe.dark_background else [])
    if recipe.box:
        centre = "centred by mass" if recipe.centre == "mass" else "centred"
        steps.append(f"the content fitted into {recipe.box}x{recipe.box}, {centre}, as in the "
                     "training set")
    else:
        steps.append("then resized to the model's size")
    if recipe.white_level:
        steps.append("faded ink stretched")
    return "bring the image to the model's conventions first: " + ", ".join(steps) \
        + "; off: a plain resize"


# ---- anomaly verdicts -------------------------------------------------------------------------

VERDICTS = {True: "anomalous", False: "in distribution", None: "no verdict"}

def one_in(p_value: float) -> str:
    """1/p to two significant figures with thousands separators: 0.0005 -> '2,000'."""
    return f"{float(f'{1.0 / p_value:.2g}'):,.0f}"


def plain_verdict(flag: bool | None, p_value: float | None, n: int, dataset: str | None,
                  why: str = "") -> str:
    """The verdict in words a non-expert reads: like or unlike the images the model learned, how
    rare the score is among ``n`` held-out images of that kind (the empirical p-value) and, for
    a flag, ``why`` (the part that carries most of it)."""
    if flag is None or p_value is None:
        return f"{VERDICTS[None]}: this model is not calibrated"
    data = dataset_name(dataset)
    if p_value * (n + 1) < 1.5:  # p = (1 + count) / (n + 1) with count 0
        rarity = f"none of {n:,} of them scores this high"
    elif p_value < 0.5:
        rarity = f"only 1 in {one_in(p_value)} of them scores this high"
    else:
        rarity = f"{p_value:.0%} of them score at least this high"
    likeness = "unlike" if flag else "like"
    reason = f" (why: {why})" if flag and why else ""
    return f"{VERDICTS[flag]}: {likeness} the {data} images it learned; {rarity}{reason}"


def plain_capture(flag: bool | None, why: str, dataset: str | None) -> str:
    """The capture axis in words: was the image captured like the model's images, and if not,
    what differs (``inpaint_app.capture_axis``)."""
    data = dataset_name(dataset)
    if flag is None:
        return ""
    if not flag:
        return f"captured like {data}"
    return f"captured unlike {data} ({why}): its scores are less certain"


def reading_guide(score: str | None, threshold: float | None, calibration: dict | None,
                  dataset: str | None) -> str:
    """Short explanations of the table's columns for the Anomaly tab."""
    data = dataset_name(dataset)
    if calibration is None:
        return (f"**score** ({score}): how unusual the image looks to the model, higher = more "
                "unusual. This model has no calibration yet, so there is no threshold or "
                "p-value: run `python -m pipelines.calibrate`.")
    fpr, n = calibration.get("fpr", 0.05), calibration.get("n", 0)
    line = "n/a" if threshold is None else f"{threshold:.3g}"
    return (f"**score** ({score}): how unusual the image looks to the model, higher = more "
            f"unusual; above the threshold {line} (red line) an image is flagged, as "
            f"{fpr:.0%} of ordinary {data} images are. **p-value**: the share of {n:,} held-out "
            f"{data} images that score at least as high: 0.5 is ordinary, 0.001 is 1 in 1,000. "
            "**bits/dim**: the model's raw likelihood (lower = likelier). **model input**: the "
            "image as the model saw it (after the input normalization the note describes).")
