"""The typed detector (``inpaint_app.detector``): a spec of what the verdict reads and a
calibration of what validation images set, read from and written back to the card exactly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from inpaint_app.detector import Calibration, DetectorSpec, PartScale

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["mnist-glow", "fashion-mnist-glow"])
def test_a_shipped_calibration_round_trips_exactly(name: str) -> None:
    anomaly = json.loads((ROOT / "trained" / name / "card.json").read_text())["anomaly"]
    detector = Calibration.from_dict(anomaly)
    assert detector.to_dict() == anomaly
    assert Calibration.from_dict(detector.to_dict()) == detector
    # The spec says what the card's evidence sums, and from which flow.
    assert detector.spec.parts == tuple(anomaly["scores"]["evidence"]["parts"])
    assert detector.spec.flow == anomaly["scores"]["evidence"].get("flow", "model")
    assert detector.threshold == anomaly["scores"]["evidence"]["threshold"]


def test_the_spec_names_what_the_model_must_ship() -> None:
    spec = DetectorSpec(parts=("complexity", "likelihood_ratio", "exemplar_distance"),
                        flow="capture")
    assert spec.needs == {"complexity", "likelihood_ratio", "exemplar_distance"}
    assert spec.companions == {"background", "exemplars", "capture"}
    assert DetectorSpec(parts=("complexity",)).companions == set()
    assert "complexity, likelihood_ratio" in spec.describe()


def test_a_fresh_calibration_round_trips_and_its_spec_drives_the_verdict(tiny_bundle) -> None:
    from inpaint_app.anomaly import calibrate, score_images, verdict_needs

    bundle, val = tiny_bundle
    anomaly = calibrate(bundle, val, parts=["complexity"])
    detector = Calibration.from_dict(anomaly)
    assert detector.to_dict() == anomaly
    assert detector.spec.parts == ("complexity",) and detector.spec.chosen
    assert verdict_needs(anomaly) == {"complexity"}
    # Evidence = log(1 + the part's excess over its validation median in high spreads,
    # clipped at 0), from the card's numbers themselves.
    assert anomaly["scores"]["evidence"]["combine"] == "log1p"
    entry = anomaly["scores"]["evidence"]["parts"]["complexity"]
    rows = score_images(bundle, val[:16], anomaly)
    expected = [math.log1p(max(0.0, (r["complexity"] - entry["median"]) / entry["spread_above"]))
                for r in rows]
    assert [r["evidence"] for r in rows] == pytest.approx(expected)
    assert [r["flag"] for r in rows] == [e > anomaly["scores"]["evidence"]["threshold"]
                                         for e in expected]


def test_a_capture_flow_spec_reads_the_capture_models_flow_parts() -> None:
    scale = PartScale(median=1.0, spread_below=1.0, spread_above=2.0)
    anomaly = {"default_score": "evidence", "fpr": 0.05, "n": 10, "tail": {},
               "scores": {"evidence": {"threshold": 1.0, "flow": "capture",
                                       "parts": {"complexity": scale.to_dict(),
                                                 "exemplar_shape": scale.to_dict()}}}}
    detector = Calibration.from_dict(anomaly)
    base = {"complexity": np.array([9.0, 9.0]), "capture_complexity": np.array([5.0, 0.0]),
            "exemplar_shape": np.array([3.0, 3.0])}
    terms = detector.evidence_terms(base)
    # (5 - 1) / 2 = 2 from the capture model, 0 below the median; exemplars are data: (3 - 1) / 2.
    assert terms["complexity"].tolist() == [2.0, 0.0]
    assert terms["exemplar_shape"].tolist() == [1.0, 1.0]
    assert detector.to_dict() == anomaly


def test_a_calibration_without_a_combination_sums_the_excesses_it_was_set_for() -> None:
    scale = PartScale(median=1.0, spread_below=1.0, spread_above=2.0)
    parts = {"complexity": scale.to_dict(), "exemplar_shape": scale.to_dict()}
    base = {"complexity": np.array([9.0, 1.0]), "exemplar_shape": np.array([3.0, 0.0])}
    older = {"default_score": "evidence", "fpr": 0.05, "n": 10, "tail": {},
             "scores": {"evidence": {"threshold": 1.0, "parts": parts}}}
    newer = {**older, "scores": {"evidence": {"threshold": 1.0, "parts": parts,
                                              "combine": "log1p"}}}
    summed = Calibration.from_dict(older)
    logged = Calibration.from_dict(newer)
    assert summed.spec.combine == "sum" and logged.spec.combine == "log1p"
    # Excesses (9 - 1) / 2 = 4 and (3 - 1) / 2 = 1; nothing above the median in the second.
    assert summed.evidence_terms(base)["complexity"].tolist() == [4.0, 0.0]
    assert logged.evidence_terms(base)["complexity"].tolist() == pytest.approx([math.log(5), 0])
    assert logged.evidence_terms(base)["exemplar_shape"].tolist() == pytest.approx([math.log(2),
                                                                                     0])
    assert summed.to_dict() == older and logged.to_dict() == newer
    with pytest.raises(ValueError, match="unknown evidence combination"):
        DetectorSpec(parts=("complexity",), combine="mean")


def test_a_card_with_the_replaced_capture_route_is_not_read() -> None:
    from inpaint_app.detector import detector_of

    anomaly = {"scores": {"evidence": {"threshold": 1.0, "parts": {},
                                       "capture": {"cut": 0.1, "scale": 0.5}}}}
    assert detector_of(anomaly) is None


def test_a_card_that_scaled_the_earlier_shape_distance_is_not_read() -> None:
    from inpaint_app.detector import detector_of

    scale = PartScale(median=1.0, spread_below=1.0, spread_above=2.0).to_dict()
    older = {"scores": {"evidence": {"threshold": 1.0, "parts": {"exemplar_shape": scale}}}}
    assert detector_of(older) is None
    newer = {"scores": {"evidence": {"threshold": 1.0, "combine": "log1p",
                                     "parts": {"exemplar_shape": scale}}}}
    assert detector_of(newer).spec.parts == ("exemplar_shape",)
    # A calibration without the shape distance keeps summing its excesses.
    assert detector_of({"scores": {"evidence": {"threshold": 1.0, "parts": {
        "complexity": scale}}}}).spec.combine == "sum"


@pytest.fixture(scope="module")
def tiny_bundle():
    from inpaint_app.bundle import as_bundle
    from inpaint_app.models import build_model

    torch.manual_seed(0)
    model = build_model("glow", (1, 8, 8), levels=1, steps=1, hidden=8).eval()
    g = torch.Generator().manual_seed(0)
    val = (torch.rand(200, 1, 8, 8, generator=g) * 255).to(torch.uint8)
    return as_bundle(model), val
