"""What the app says in words: plain-language verdicts, what each inpainting method runs (and
which controls it reads), and what each example image shows, with its model and mask.

Kept apart from the handlers so that the texts can be read, and changed, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..masks import describe_mask

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE_FILES = sorted(EXAMPLES_DIR.glob("*.png"))  # the order of the examples gallery
# What each example shows and a mask preset that hides a telling part of it.
EXAMPLES = {"mnist-test-0000.png": ("a handwritten 7", "bottom"),
            "mnist-test-0001.png": ("a handwritten 2", "center"),
            "mnist-test-0002.png": ("a handwritten 1", "top"),
            "mnist-test-0003.png": ("a handwritten 0", "right"),
            "fashion-test-0000.png": ("an ankle boot", "center"),
            "fashion-test-0001.png": ("a pullover", "left"),
            "fashion-test-0002.png": ("a pair of trousers", "bottom"),
            "fashion-test-0003.png": ("a pair of trousers", "random50")}
OWN_EXAMPLE_MASK = "center"  # the preset for a model's own examples: nothing known of them
DATASETS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}  # card key -> display name


def dataset_name(key: str | None) -> str:
    return DATASETS.get(key or "", key or "unknown")


def example_dataset(filename: str) -> str:
    """An example's dataset, from its name: ``fashion-test-0001.png`` -> ``fashion-mnist``."""
    return "fashion-mnist" if filename.startswith("fashion") else filename.split("-")[0]


def describe_example(filename: str, model: str, packaged: bool = True) -> tuple[str, str]:
    """The example's mask preset and a note on what it shows and the model it selected: a
    packaged test image (``EXAMPLES``) or one of a model's own examples (its validation
    images, ``ModelBundle.example_files``)."""
    if packaged:
        what, preset = EXAMPLES.get(filename, ("an example image", "center"))
        data = dataset_name(example_dataset(filename))
        shows = f"{what} from the {data} test set"
        chosen = f"model **{model}** (trained on {data})"
    else:
        preset = OWN_EXAMPLE_MASK
        shows, chosen = f"{filename}, one of model **{model}**'s validation images", "that model"
    hides = describe_mask(preset).rstrip(".")
    return preset, (f"**Example**: {shows} (never seen in training). Selected: {chosen}; "
                    f"mask **{preset}** ({hides}). "
                    "Press Inpaint, or paint with the brush and choose the mask *painted*.")


# ---- methods ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Method:
    """How the Inpaint tab presents a method: its name, what runs, which controls it reads."""

    label: str
    runs: str  # shown with the progress bar
    steps: str  # what one step is
    samples: bool = False
    seed: bool = False
    warning: str = ""


_POOR = ("gives poor fills on the shipped models: {what} (about {db} dB PSNR in the masked "
         "region, against 19-20 for default; benchmarks/inpainting.md)")
METHODS = {
    "default": Method("default: conditional flow (samples given the visible pixels)",
                      "conditional flow sampling, then Adam ascent if steps > 0",
                      "Adam steps on the conditional likelihood",
                      samples=True, seed=True),
    "exemplar": Method("exemplar: mean of the nearest training images (no flow)",
                       "Adam ascent on the image's likelihood",
                       "Adam steps on the likelihood after the exemplar start"),
    "nice": Method("NICE: the paper's noisy gradient ascent", "NICE noisy gradient ascent",
                   "noisy gradient-ascent steps", seed=True,
                   warning=_POOR.format(what="noise", db=3)),
    "langevin": Method("Langevin: sampling chains (samples + uncertainty)", "Langevin sampling",
                       "Langevin steps (noise is added: not an ascent)", samples=True,
                       seed=True, warning=_POOR.format(what="noisy images", db=10)),
}
# The default method without a conditional model beside the checkpoint: deterministic ascent.
FALLBACK = Method(METHODS["default"].label, "Adam ascent on the image's likelihood (no "
                  "conditional model)", "Adam steps on the likelihood after the exemplar start")


# ---- anomaly verdicts -------------------------------------------------------------------------

VERDICTS = {True: "anomalous", False: "in distribution", None: "no verdict"}

def one_in(p_value: float) -> str:
    """1/p to two significant figures with thousands separators: 0.0005 -> '2,000'."""
    return f"{float(f'{1.0 / p_value:.2g}'):,.0f}"


def plain_verdict(flag: bool | None, p_value: float | None, n: int, dataset: str | None) -> str:
    """The verdict in words a non-expert reads: like or unlike the images the model learned, and
    how rare the score is among ``n`` held-out images of that kind (the empirical p-value)."""
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
    return f"{VERDICTS[flag]}: {likeness} the {data} images it learned; {rarity}"


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
