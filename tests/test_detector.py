"""The typed detector (``inpaint_app.detector``): a spec of what the verdict reads and a
calibration of what validation images set, read from and written back to the card exactly."""

from __future__ import annotations

import json
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
    # The spec says what the card's evidence sums, and whether a capture model judges captures.
    assert detector.spec.parts == tuple(anomaly["scores"]["evidence"]["parts"])
    assert detector.spec.capture_route == ("capture" in anomaly["scores"]["evidence"])
    assert detector.threshold == anomaly["scores"]["evidence"]["threshold"]


def test_the_spec_names_what_the_model_must_ship() -> None:
    spec = DetectorSpec(parts=("complexity", "likelihood_ratio", "exemplar_distance"),
                        capture_route=True)
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
    # Evidence = the part's excess over its validation median in high spreads, clipped at 0,
    # from the card's numbers themselves.
    entry = anomaly["scores"]["evidence"]["parts"]["complexity"]
    rows = score_images(bundle, val[:16], anomaly)
    expected = [max(0.0, (r["complexity"] - entry["median"]) / entry["spread_above"])
                for r in rows]
    assert [r["evidence"] for r in rows] == pytest.approx(expected)
    assert [r["flag"] for r in rows] == [e > anomaly["scores"]["evidence"]["threshold"]
                                         for e in expected]


def test_routed_images_take_the_capture_models_parts_at_the_route_scale() -> None:
    own = PartScale(median=1.0, spread_below=1.0, spread_above=2.0)
    captured = PartScale(median=3.0, spread_below=1.0, spread_above=1.0)
    anomaly = {"default_score": "evidence", "fpr": 0.05, "n": 10, "tail": {},
               "scores": {"evidence": {
        "threshold": 1.0, "parts": {"complexity": own.to_dict()},
        "capture": {"cut": 0.1, "quantile": 0.95, "faint_levels": [1, 24], "scale": 0.5,
                    "parts": {"complexity": captured.to_dict()}}}}}
    detector = Calibration.from_dict(anomaly)
    base = {"complexity": np.array([5.0, 5.0, 0.0]),
            "capture_complexity": np.array([7.0, 7.0, 0.0])}
    terms = detector.evidence_terms(base, np.array([False, True, True]))
    # (5 - 1) / 2 = 2 on the main route; 0.5 * (7 - 3) / 1 = 2 routed; below the median: 0.
    assert terms["complexity"].tolist() == [2.0, 2.0, 0.0]
    assert detector.to_dict() == anomaly


@pytest.fixture(scope="module")
def tiny_bundle():
    from inpaint_app.bundle import as_bundle
    from inpaint_app.models import build_model

    torch.manual_seed(0)
    model = build_model("glow", (1, 8, 8), levels=1, steps=1, hidden=8).eval()
    g = torch.Generator().manual_seed(0)
    val = (torch.rand(200, 1, 8, 8, generator=g) * 255).to(torch.uint8)
    return as_bundle(model), val
