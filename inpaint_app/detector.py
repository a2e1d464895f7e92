"""The anomaly detector of a model, typed: a ``DetectorSpec`` says what the verdict reads (which
evidence parts, whether a capture model and the capture axis take part), and a ``Calibration``
holds what validation images set for it (each part's median and spread, the capture route's cut
and scale, thresholds and tails). Both come from the card's ``anomaly`` dictionary
(``inpaint_app.anomaly.calibrate`` writes it) and give it back unchanged: ``to_dict`` of
``from_dict`` is the dictionary itself, so the card stays the one stored form.

The spec is what a person or an ablation chooses; the calibration is only measured. Scoring asks
the spec what to compute (``needs``), so no part the verdict does not sum is computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Evidence parts that come from a flow, read from the capture model for a routed image.
FLOW_PARTS = ("complexity", "orientation", "likelihood_ratio")
# Which companion of the model each part needs beside the main flow.
PART_NEEDS = {"complexity": None, "orientation": None, "likelihood_ratio": "background",
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
class CaptureRoute:
    """Images whose faint-pixel share exceeds ``cut`` (the ``quantile`` of validation images),
    or that the capture axis calls captured, are judged by the capture model's parts, times
    ``scale`` so both routes flag the same share of validation images at one threshold."""

    cut: float
    quantile: float
    faint_levels: tuple[int, int]
    scale: float
    parts: dict[str, PartScale]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaptureRoute:
        return cls(d["cut"], d["quantile"], tuple(d["faint_levels"]), d["scale"],
                   {k: PartScale.from_dict(v) for k, v in d["parts"].items()})

    def to_dict(self) -> dict[str, Any]:
        return {"cut": self.cut, "quantile": self.quantile,
                "faint_levels": list(self.faint_levels), "scale": self.scale,
                "parts": {k: v.to_dict() for k, v in self.parts.items()}}


@dataclass(frozen=True)
class DetectorSpec:
    """What the verdict reads: the evidence ``parts`` it sums (``chosen``: named by the
    calibration's command rather than the default), whether captured images are routed to a
    capture model, whether the capture axis is reported, and the score it flags by."""

    parts: tuple[str, ...]
    chosen: bool = False
    capture_route: bool = False
    capture_axis: bool = False
    score: str = "evidence"
    fpr: float = 0.05

    @property
    def needs(self) -> set[str]:
        """The parts scoring must compute for this verdict (the route reads the same ones)."""
        return set(self.parts)

    @property
    def companions(self) -> set[str]:
        """What must lie beside the model: its background, exemplar bank, capture model."""
        need = {PART_NEEDS[p] for p in self.parts} - {None}
        return need | ({"capture"} if self.capture_route else set())

    def describe(self) -> str:
        """The spec in one line, for cards and logs."""
        route = ", captured images judged by the capture model" if self.capture_route else ""
        axis = ", capture axis reported" if self.capture_axis else ""
        return f"{self.score} = sum of {', '.join(self.parts)}{route}{axis}; FPR {self.fpr:g}"


# The fields of the evidence entry that the typed calibration holds itself (with every score's
# threshold).
TYPED_FIELDS = ("parts", "chosen_parts", "capture")
# The top-level keys of the card's ``anomaly`` dictionary that the typed fields hold.
OWN_KEYS = ("scores", "n", "tail", "capture_axis", "fpr", "default_score")


@dataclass(frozen=True)
class Calibration:
    """What validation images set for a ``DetectorSpec``: the evidence parts' scales, the
    capture route, every score's threshold, the tails kept for p-values, the capture axis's
    kept values, and the provenance (source, command, date...) kept as it was written."""

    spec: DetectorSpec
    parts: dict[str, PartScale]
    route: CaptureRoute | None
    thresholds: dict[str, float]
    n: int
    tail: dict[str, list[float]]
    capture_axis: dict[str, Any] | None = None
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # every score's entry
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def threshold(self) -> float:
        return self.thresholds[self.spec.score]

    def evidence_terms(self, base: dict[str, np.ndarray], routed: np.ndarray | None = None
                       ) -> dict[str, np.ndarray]:
        """Each part's share of the evidence per image; ``routed`` images read the capture
        model's flow parts (``capture_<part>`` in ``base``) at the route's scales."""
        terms = {p: s.share(base[p]) for p, s in self.parts.items()}
        if self.route is None or routed is None or not routed.any():
            return terms
        judged = {p: s.share(base[f"capture_{p}" if p in FLOW_PARTS else p])
                  for p, s in self.route.parts.items()}
        return {p: np.where(routed, self.route.scale * judged[p], terms[p]) for p in terms}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """The typed form of a card's ``anomaly`` dictionary (or of one being built, before its
        thresholds and tails are set)."""
        scores = d["scores"]
        evidence = scores.get("evidence", {})
        chosen = evidence.get("chosen_parts")
        route = evidence.get("capture")
        spec = DetectorSpec(
            parts=tuple(chosen if chosen is not None else evidence.get("parts", {})),
            chosen=chosen is not None,
            capture_route=route is not None, capture_axis=d.get("capture_axis") is not None,
            score=d.get("default_score", "evidence"), fpr=d.get("fpr", 0.05))
        return cls(spec=spec,
                   parts={k: PartScale.from_dict(v) for k, v in evidence.get("parts", {}).items()},
                   route=CaptureRoute.from_dict(route) if route else None,
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
            if self.route is not None:
                evidence["capture"] = self.route.to_dict()
        out = {"default_score": self.spec.score, "fpr": self.spec.fpr, "n": self.n,
               "scores": scores, "tail": self.tail, **self.provenance}
        if self.capture_axis is not None:
            out["capture_axis"] = self.capture_axis
        return out


def detector_of(anomaly: dict[str, Any] | None) -> Calibration | None:
    """The typed detector of a card's ``anomaly`` dictionary; None without a calibrated
    evidence score (no calibration, or one that predates the evidence)."""
    if not anomaly or "evidence" not in anomaly.get("scores", {}):
        return None
    return Calibration.from_dict(anomaly)
