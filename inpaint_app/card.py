"""The model card: one schema, written in one place, read everywhere.

A card says what a checkpoint is and how well it does: its dataset and family, the
hyperparameters it was built with, its bits/dim and what they were measured on, its training
(minutes, hardware, command, commit, history) and what later steps added (anomaly calibration,
exemplar bank, inpainting settings). Pipelines change a card with ``dataclasses.replace`` and
save it with the model (``models.save_model``); everything else reads the fields.

The measurement sentences in ``card.json`` (``val_measured``, ``test_measured``) are rendered
from the structured fields when the card is written and never parsed back. Keys a card does not
model (provenance notes such as ``gpu_run`` or ``brought_home``) are kept verbatim in ``notes``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SUBSETS = ("all", "first", "random")


@dataclass(frozen=True)
class Measurement:
    """Bits/dim on a split, and what it was measured on: the subset, the dequantization and,
    for a conditional model, that it counts missing dimensions only."""

    bpd: float
    images: int | None            # None only in cards written before the schema (see ``text``)
    subset: str = "all"             # "all" of the split, its "first" N, or a "random" N
    stderr: float | None = None
    seed: int = 0
    command: str | None = None      # the command that measured it, when not the training run
    per_missing_dim: bool = False
    text: str | None = None       # a pre-schema card's own sentence, shown as it is, never parsed
    source: str | None = None     # what the split's images are, when not the dataset's own split

    def __post_init__(self) -> None:
        if self.subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {self.subset!r}")

    def describe(self, split: str) -> str:
        """The sentence a reader sees, e.g. "mean over all 10,000 test images, ..."."""
        if self.images is None:
            return self.text or "not recorded"
        where = {"all": f"all {self.images:,} {split} images",
                 "first": f"the first {self.images:,} {split} images",
                 "random": f"a random subset of {self.images:,} {split} images"}[self.subset]
        if self.source:
            where = where.replace(f"{split} images", self.source)
        elif split == "val":
            where = where.replace("val images", "held-out training images (last 5,000 of "
                                                "train)")
        text = (f"mean over {where}, one uniform dequantization sample each, seed {self.seed}"
                + (", bits per missing dim on training-distribution masks drawn with seed 0"
                   if self.per_missing_dim else ""))
        return f"{self.command}: {text}" if self.command else text


@dataclass(frozen=True)
class ModelCard:
    """What a checkpoint is, how it was made and how well it does (see the module docstring)."""

    name: str = ""
    dataset: str | None = None
    model: str | None = None                      # the family: glow, nice, ..., cflow
    image_shape: tuple[int, ...] | None = None
    hparams: dict[str, Any] = field(default_factory=dict)  # as build_model takes them
    parameters: int | None = None
    val: Measurement | None = None
    test: Measurement | None = None
    training_minutes: float | None = None
    hardware: str | None = None
    command: str | None = None
    commit: str | None = None
    date: str | None = None
    history: tuple[dict[str, Any], ...] = ()
    init_from: dict[str, Any] | None = None       # a warm restart's source, its card summary
    perturb: float | None = None
    capture: int | None = None
    outlier_exposure: dict[str, Any] | None = None  # margin, weight, outlier source
    kept: str | None = None
    anomaly: dict[str, Any] | None = None         # calibration (inpaint_app.anomaly.calibrate)
    exemplars: dict[str, Any] | None = None       # how the exemplar bank was drawn
    inpainting: dict[str, Any] | None = None      # validated settings of a conditional model
    anomaly_map: dict[str, Any] | None = None     # its map calibration (inpaint_app.anomaly_map)
    folder: dict[str, Any] | None = None          # an image-folder dataset (inpaint_app.folder)
    input_recipe: str | None = None               # normalize.RECIPES name; None: the dataset's
    notes: dict[str, Any] = field(default_factory=dict)  # provenance kept verbatim

    @property
    def val_bpd(self) -> float | None:
        return self.val.bpd if self.val else None

    @property
    def test_bpd(self) -> float | None:
        return self.test.bpd if self.test else None

    def replace(self, **changes: Any) -> ModelCard:
        """A copy with ``changes``; cards are values, never edited in place."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form saved in the checkpoint and in ``card.json``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("val", "test", "notes") or value is None or value in ({}, (), ""):
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        for split in ("val", "test"):
            m: Measurement | None = getattr(self, split)
            if m is not None:
                out[f"{split}_bpd"] = m.bpd
                if m.images is not None:
                    out.update({f"{split}_images": m.images, f"{split}_subset": m.subset,
                                f"{split}_seed": m.seed, f"{split}_measured": m.describe(split)})
                elif m.text is not None:  # pre-schema: its own sentence, and no subset or seed
                    out[f"{split}_measured"] = m.text  # that it never recorded
                if m.stderr is not None:
                    out[f"{split}_bpd_stderr"] = m.stderr
                if m.command:
                    out[f"{split}_command"] = m.command
                if m.per_missing_dim:
                    out[f"{split}_per_missing_dim"] = True
                if m.source:
                    out[f"{split}_source"] = m.source
        return {**out, **self.notes}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ModelCard:
        """Read a saved card; unknown keys go to ``notes``, the rendered sentences are dropped
        (a card written before this schema keeps its sentence as ``Measurement.text``, for
        display only: nothing is read out of prose)."""
        if not isinstance(data, dict | None):
            raise ValueError(f"a card is a dict, got {type(data).__name__}")
        data = dict(data or {})
        measurements = {split: _measurement(data, split) for split in ("val", "test")}
        names = {f.name for f in dataclasses.fields(cls)} - {"val", "test", "notes"}
        kwargs = {key: data.pop(key) for key in list(data) if key in names}
        if "image_shape" in kwargs and kwargs["image_shape"] is not None:
            kwargs["image_shape"] = tuple(int(s) for s in kwargs["image_shape"])
        kwargs["history"] = tuple(kwargs.get("history") or ())
        return cls(**kwargs, **measurements, notes=data)


def _measurement(data: dict[str, Any], split: str) -> Measurement | None:
    """Pop ``<split>_*`` keys into a Measurement (None when the card has no figure)."""
    text = data.pop(f"{split}_measured", None)
    bpd = data.pop(f"{split}_bpd", None)
    fields = {name: data.pop(f"{split}_{key}", None) for name, key in (
        ("images", "images"), ("subset", "subset"), ("stderr", "bpd_stderr"), ("seed", "seed"),
        ("command", "command"), ("per_missing_dim", "per_missing_dim"), ("source", "source"))}
    if bpd is None:
        return None
    return Measurement(bpd=float(bpd), text=None if fields["images"] is not None else text,
                       images=None if fields["images"] is None else int(fields["images"]),
                       subset=fields["subset"] or "all", stderr=fields["stderr"],
                       seed=int(fields["seed"] or 0), command=fields["command"],
                       per_missing_dim=bool(fields["per_missing_dim"]), source=fields["source"])
