"""The inpainting methods, in one registry: each honest name with what it samples or climbs, of
which model, its defaults and its algorithm (``inpaint_app.algorithms``). The app's method
picker, ``flowpaint inpaint --method`` and the Models tab's card read it; ``inpainting.inpaint``
runs it.

``default`` is no method of its own but an alias for a bundle's best: ``conditional`` where a
conditional flow ships beside the model (``inpainter.pt``), else ``ascent``.

    >>> resolve("default", has_conditional=False)
    'ascent'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import algorithms
from .card import ModelCard
from .masks import MASK_KINDS


@dataclass(frozen=True)
class Method:
    """One inpainting method. ``run``: an unconditional method's algorithm takes
    ``(model, y0, y_obs, masks, steps, generators, n_samples, progress)`` and returns
    ``(samples [n, B, C, H, W], trajectories)``; the conditional one is
    ``algorithms.sample_conditional``."""

    name: str
    summary: str  # what it does, of which model: the command's help, the Models tab's card
    label: str  # the app's method picker
    runs: str  # shown with the progress bar
    steps: str  # what one step is
    default_steps: int
    init: str | None  # the start fill; None: it samples its own start
    run: Callable[..., Any]
    samples: bool = False  # reads n_samples
    seed: bool = False  # reads the seed
    conditional: bool = False  # needs the conditional flow beside the model
    warning: str = ""


DEFAULT = "default"
_POOR = ("gives poor fills on the shipped models: {what} (about {db} dB PSNR in the masked "
         "region, against 19-20 for default; benchmarks/inpainting.md)")
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("conditional",
           "samples of the conditional flow p(x_missing | x_observed) beside the model "
           "(inpainter.pt) at its card's temperature per mask kind; the fill is their mean, "
           "climbed by Adam on that exact conditional log-likelihood where the card says so",
           "conditional: conditional flow (samples given the visible pixels)",
           "conditional flow sampling, then Adam ascent if steps > 0",
           "Adam steps on the conditional likelihood", 0, None, algorithms.sample_conditional,
           samples=True, seed=True, conditional=True),
    Method("ascent",
           "gradient ascent on the image flow's exact log-likelihood (NICE sec. 5.2, with "
           "Adam and no noise) from the exemplar start (biharmonic without an exemplar bank)",
           "ascent: Adam on the image's exact likelihood (NICE sec. 5.2)",
           "Adam ascent on the image's likelihood",
           "Adam steps on the likelihood after the exemplar start", 10, "exemplar",
           algorithms.ascend_adam),
    Method("exemplar",
           "the exemplar start alone, the mean of the nearest training images on the observed "
           "pixels (no flow): the baseline that shows the flow's share",
           "exemplar: mean of the nearest training images (no flow)",
           "Adam ascent on the image's likelihood",
           "Adam steps on the likelihood after the exemplar start", 0, "exemplar",
           algorithms.ascend_adam),
    Method("nice",
           "NICE sec. 5.2 as published: projected noisy gradient ascent on the image flow's "
           "exact log-likelihood from a mean fill, a_i = 10 / (100 + i)",
           "NICE: the paper's noisy gradient ascent", "NICE noisy gradient ascent",
           "noisy gradient-ascent steps", 100, "mean", algorithms.ascend_nice, seed=True,
           warning=_POOR.format(what="noise", db=3)),
    Method("langevin",
           "unadjusted Langevin chains on the image flow's exact log-likelihood from the "
           "biharmonic fill: samples, their mean and per-pixel spread",
           "Langevin: sampling chains (samples + uncertainty)", "Langevin sampling",
           "Langevin steps (noise is added: not an ascent)", 40, "biharmonic",
           algorithms.langevin, samples=True, seed=True,
           warning=_POOR.format(what="noisy images", db=10)),
)}
CHOICES = (DEFAULT, *METHODS)  # what a caller may ask for
NO_CONDITIONAL = ("no conditional inpainting model beside this checkpoint: exemplar start plus "
                  "ascent on the unconditional likelihood")
# Used where the conditional model's card has no validated "inpainting" settings.
CONDITIONAL_DEFAULTS = {"samples": 8, "temperature": 0.8, "ascent_steps": 0}


def resolve(name: str, has_conditional: bool) -> str:
    """The method ``name`` runs: ``default`` is ``conditional`` with a conditional flow, else
    ``ascent``; any other name is itself (``ValueError`` for an unknown one)."""
    if name == DEFAULT:
        return "conditional" if has_conditional else "ascent"
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}: choose one of {CHOICES}")
    return name


def available(has_conditional: bool) -> tuple[str, ...]:
    """The methods a bundle can run (``conditional`` only with its conditional flow)."""
    return tuple(n for n, m in METHODS.items() if has_conditional or not m.conditional)


def help_text() -> str:
    """Every name with what it does, for a command's ``--method`` help."""
    return (f"{DEFAULT} (the default): conditional where the model has a conditional flow "
            "beside it (inpainter.pt), else ascent; "
            + "; ".join(f"{name}: {method.summary}" for name, method in METHODS.items()))


def conditional_settings(card: ModelCard) -> dict:
    """K, ascent steps and the sampling temperature per mask kind (``masks.mask_kind``) of the
    conditional method: the conditional model's card's validated choice. A card with one
    ``temperature`` uses it for every kind; one without a "sparse" entry uses its "scattered"
    one there."""
    settings = {**CONDITIONAL_DEFAULTS, **(card.inpainting or {})}
    by_kind = dict(settings.get("temperature_by_mask") or {})
    if "scattered" in by_kind:
        by_kind.setdefault("sparse", by_kind["scattered"])
    settings["temperature_by_mask"] = {kind: float(by_kind.get(kind, settings["temperature"]))
                                       for kind in MASK_KINDS}
    return settings


def describe_temperatures(by_kind: dict[str, float]) -> str:
    """"temperature 0.6" or "temperature 0.6 (compact masks) / 0.45 (scattered masks)"."""
    values = set(by_kind.values())
    if len(values) == 1:
        return f"temperature {values.pop():g}"
    return "temperature " + " / ".join(f"{t:g} ({kind} masks)" for kind, t in by_kind.items())


def describe_default(inpainter_card: ModelCard | None) -> str:
    """What ``default`` runs on a bundle, given its conditional model's card (None: it has no
    conditional flow), and the other methods it offers: the Models tab's line."""
    if inpainter_card is None:
        return (f"default = **ascent**, {METHODS['ascent'].summary}; no conditional flow beside "
                "this model (inpainter.pt: python -m pipelines.tune_inpainter --install). "
                "Also: " + ", ".join(available(False)[1:]))
    settings = conditional_settings(inpainter_card)
    steps = int(settings["ascent_steps"])
    return (f"default = **conditional**: {int(settings['samples'])} samples of the conditional "
            f"flow p(x_missing | x_observed) (inpainter.pt) at "
            f"{describe_temperatures(settings['temperature_by_mask'])}, "
            + (f"their mean climbed {steps} Adam steps" if steps else "the fill their mean")
            + ". Also: " + ", ".join(available(True)[1:]))
