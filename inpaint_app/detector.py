"""The anomaly detector of a model, typed: a ``DetectorSpec`` says what the verdict reads (which
evidence parts, from which flow, whether the capture axis is reported), and a ``Calibration``
holds what validation images set for it (each part's median and spread, thresholds and
tails). Both come from the card's ``anomaly`` dictionary
(``inpaint_app.anomaly.calibrate`` writes it) and give it back unchanged: ``to_dict`` of
``from_dict`` is the dictionary itself, so the card stays the one stored form.

The spec is what a person or an ablation chooses; the calibration is only measured. Scoring asks
the spec what to compute (``needs``), so no part the verdict does not sum is computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Evidence parts that come from a flow: the capture model's where the spec's flow is "capture".
FLOW_PARTS = ("complexity", "likelihood_ratio")
# How a part's excess enters the evidence: "log1p" adds log(1 + excess), so the verdict is the
# product of the parts' (1 + excess) and one extreme part weighs less than parts that agree;
# "sum" adds the excess itself (calibrations written before 0.29.0, which set their threshold so).
COMBINE = "log1p"
COMBINES = ("log1p", "sum")
# Which companion of the model each part needs beside the main flow.
PART_NEEDS = {"complexity": None, "likelihood_ratio": "background",
              "exemplar_distance": "exemplars", "exemplar_shape": "exemplars"}


@dataclass(frozen=True)
class PartScale:
    """A part's validation median and its spreads to the low and high quantile
    (``spread_quantile``): an image's share of the evidence is its excess over the median in
    high spreads, clipped at 0."""

    median: float
    spread_below: float
    spread_above: float
    spread_quantile: float | None = None

    def excess(self, values: np.ndarray) -> np.ndarray:
        return (values - self.median) / self.spread_above

    def share(self, values: np.ndarray) -> np.ndarray:
        return np.clip(self.excess(values), 0.0, None)

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> PartScale:
        return cls(d["median"], d["spread_below"], d["spread_above"], d.get("spread_quantile"))

    def to_dict(self) -> dict[str, float]:
        out = {"median": self.median, "spread_below": self.spread_below,
               "spread_above": self.spread_above}
        if self.spread_quantile is not None:
            out["spread_quantile"] = self.spread_quantile
        return out


@dataclass(frozen=True)
class DetectorSpec:
    """What the verdict reads: the evidence ``parts`` it sums (``chosen``: named by the
    calibration's command rather than the default), the ``flow`` its flow parts come from
    (``"model"``, or ``"capture"``: the flow that also learned captured copies, for every
    image), whether the capture axis is reported, the score it flags by, and how each part's
    excess enters the sum (``combine``, see ``COMBINE``)."""

    parts: tuple[str, ...]
    chosen: bool = False
    flow: str = "model"
    capture_axis: bool = False
    score: str = "evidence"
    fpr: float = 0.05
    combine: str = COMBINE

    def __post_init__(self) -> None:
        if self.combine not in COMBINES:
            raise ValueError(f"unknown evidence combination {self.combine!r}: choose from "
                             f"{', '.join(COMBINES)}")

    @property
    def needs(self) -> set[str]:
        """The parts scoring must compute for this verdict."""
        return set(self.parts)

    @property
    def companions(self) -> set[str]:
        """What must lie beside the model: its background, exemplar bank, capture model."""
        need = {PART_NEEDS[p] for p in self.parts} - {None}
        return need | ({"capture"} if self.flow == "capture" else set())

    def source(self, part: str) -> str:
        """The key of ``part``'s values in ``base_scores``' output for this spec."""
        return f"capture_{part}" if self.flow == "capture" and part in FLOW_PARTS else part

    def term(self, excess: np.ndarray) -> np.ndarray:
        """A part's term in the evidence from its clipped excess (``PartScale.share``)."""
        return np.log1p(excess) if self.combine == "log1p" else excess

    def describe(self) -> str:
        """The spec in one line, for cards and logs."""
        flow = ", flow parts from the capture model" if self.flow == "capture" else ""
        axis = ", capture axis reported" if self.capture_axis else ""
        how = "log(1 + excess)" if self.combine == "log1p" else "excess"
        return (f"{self.score} = sum of the {how} of {', '.join(self.parts)}{flow}{axis}; "
                f"FPR {self.fpr:g}")


# The fields of the evidence entry that the typed calibration holds itself (with every score's
# threshold).
TYPED_FIELDS = ("parts", "chosen_parts", "flow", "combine")
# The top-level keys of the card's ``anomaly`` dictionary that the typed fields hold.
OWN_KEYS = ("scores", "n", "tail", "capture_axis", "fpr", "default_score")


@dataclass(frozen=True)
class Calibration:
    """What validation images set for a ``DetectorSpec``: the evidence parts' scales, every
    score's threshold, the tails kept for p-values, the capture axis's
    kept values, and the provenance (source, command, date...) kept as it was written."""

    spec: DetectorSpec
    parts: dict[str, PartScale]
    thresholds: dict[str, float]
    n: int
    tail: dict[str, list[float]]
    capture_axis: dict[str, Any] | None = None
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # every score's entry
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def threshold(self) -> float:
        return self.thresholds[self.spec.score]

    def evidence_terms(self, base: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each part's term of the evidence per image, read from the spec's flow."""
        return {p: self.spec.term(s.share(base[self.spec.source(p)]))
                for p, s in self.parts.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """The typed form of a card's ``anomaly`` dictionary (or of one being built, before its
        thresholds and tails are set)."""
        scores = d["scores"]
        evidence = scores.get("evidence", {})
        chosen = evidence.get("chosen_parts")
        spec = DetectorSpec(
            parts=tuple(chosen if chosen is not None else evidence.get("parts", {})),
            chosen=chosen is not None, flow=evidence.get("flow", "model"),
            capture_axis=d.get("capture_axis") is not None,
            score=d.get("default_score", "evidence"), fpr=d.get("fpr", 0.05),
            combine=evidence.get("combine", "sum"))
        return cls(spec=spec,
                   parts={k: PartScale.from_dict(v) for k, v in evidence.get("parts", {}).items()},
                   thresholds={k: v["threshold"] for k, v in scores.items() if "threshold" in v},
                   n=d.get("n", 0), tail=d.get("tail", {}), capture_axis=d.get("capture_axis"),
                   scores={k: {f: v for f, v in entry.items()
                               if f != "threshold" and (k != "evidence" or f not in TYPED_FIELDS)}
                           for k, entry in scores.items()},
                   provenance={k: v for k, v in d.items() if k not in OWN_KEYS})

    def to_dict(self) -> dict[str, Any]:
        """The card's ``anomaly`` dictionary."""
        scores = {k: {**entry, **({"threshold": self.thresholds[k]}
                                  if k in self.thresholds else {})}
                  for k, entry in self.scores.items()}
        if "evidence" in scores:
            evidence = scores["evidence"]
            evidence["parts"] = {k: v.to_dict() for k, v in self.parts.items()}
            if self.spec.chosen:
                evidence["chosen_parts"] = list(self.spec.parts)
            if self.spec.flow != "model":
                evidence["flow"] = self.spec.flow
            if self.spec.combine != "sum":
                evidence["combine"] = self.spec.combine
        out = {"default_score": self.spec.score, "fpr": self.spec.fpr, "n": self.n,
               "scores": scores, "tail": self.tail, **self.provenance}
        if self.capture_axis is not None:
            out["capture_axis"] = self.capture_axis
        return out


def detector_of(anomaly: dict[str, Any] | None) -> Calibration | None:
    """The typed detector of a card's ``anomaly`` dictionary; None without an evidence score
    this version reads (no calibration, one that predates the evidence, one that routed
    captured images by a faint-pixel cut, which 0.28.0 replaced, or one that scaled the shape
    distance as measured before 0.29.0, which also compares the image's aspect copies at half
    resolution: recalibrate)."""
    evidence = (anomaly or {}).get("scores", {}).get("evidence")
    if evidence is None or "capture" in evidence:
        return None
    if "exemplar_shape" in evidence.get("parts", {}) and "combine" not in evidence:
        return None
    return Calibration.from_dict(anomaly)
