"""Anomaly scores: detection metrics on hand-computed cases, calibration, PNG complexity,
thresholds through save/load, determinism, and the shipped checkpoints' cards."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from inpaint_app.anomaly import (
    DEFAULT_SCORE,
    SCORES,
    calibrate,
    png_bits_per_dim,
    score_images,
)
from inpaint_app.bundle import ModelBundle, load_bundle
from inpaint_app.card import Measurement, ModelCard
from inpaint_app.models import build_model, load_model, save_model
from inpaint_app.normalize import RECIPES
from inpaint_app.ood_metrics import aupr, auroc, fpr_at_tpr

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("glow", image_shape=(1, 8, 8), steps=2).eval()
    with torch.no_grad():  # initialise ActNorm on data-like input, then freeze it
        model.log_prob(torch.rand(16, 1, 8, 8) * 0.5)
    return model


def _images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = (torch.rand(n, 1, 8, 8, generator=g) < 0.3).to(torch.uint8) * 200
    return (base + torch.randint(0, 40, base.shape, generator=g, dtype=torch.uint8))


@pytest.mark.parametrize(("inliers", "outliers", "expected"), [
    ([0, 1], [2, 3], 1.0),
    ([2, 3], [0, 1], 0.0),
    ([1, 1], [1, 1], 0.5),           # all tied
    ([0, 1, 2], [1, 3], 0.75),       # (1 + 0.5 + 0) + 3 wins = 4.5 of 6 pairs
    ([0, 0, 1], [0, 2], 4.0 / 6.0),  # out 0: two ties -> 1; out 2: three wins
])
def test_auroc_hand_computed(inliers: list, outliers: list, expected: float) -> None:
    assert auroc(np.array(inliers), np.array(outliers)) == pytest.approx(expected)


def test_aupr_and_fpr95_hand_computed() -> None:
    assert aupr([0], [1]) == pytest.approx(1.0)
    assert aupr([1], [0]) == pytest.approx(0.5)       # recall reached only at precision 1/2
    assert aupr([1], [1]) == pytest.approx(0.5)       # one tied group: precision 1/2
    # out 3, 2: precision 1 at recall 1/2; in 1.5, then out 1: precision 3/4... at recall 1
    assert aupr([1.5, 0], [3, 2, 1, 1]) == pytest.approx(0.5 * 1.0 + 0.5 * 4 / 5)
    assert fpr_at_tpr([0, 1, 2, 3], [10] * 19 + [2.5]) == pytest.approx(0.0)
    assert fpr_at_tpr([0, 1, 2, 3], [10] * 18 + [2.5, 0.5]) == pytest.approx(0.25)
    assert fpr_at_tpr([0, 1, 2, 3], [10] * 18 + [2, 2]) == pytest.approx(0.5)  # ties flagged
    assert auroc([0, np.inf], [np.inf, np.inf]) == pytest.approx(0.75)


@pytest.mark.parametrize("seed", range(5))
def test_metrics_agree_with_scikit_learn(seed: int) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    # rounded scores: many ties, the case where hand-written metrics go wrong
    inliers = rng.normal(0.0, 1.0, 300).round(1)
    outliers = rng.normal(0.8, 1.3, 120).round(1)
    labels = np.r_[np.zeros(inliers.size), np.ones(outliers.size)]
    scores = np.r_[inliers, outliers]
    assert auroc(inliers, outliers) == pytest.approx(metrics.roc_auc_score(labels, scores))
    assert aupr(inliers, outliers) == pytest.approx(
        metrics.average_precision_score(labels, scores))
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    assert fpr_at_tpr(inliers, outliers, 0.95) == pytest.approx(fpr[np.argmax(tpr >= 0.95)])


def test_png_complexity_orders_constant_below_noise() -> None:
    constant = torch.full((1, 28, 28), 128, dtype=torch.uint8)
    noise = torch.randint(0, 256, (1, 28, 28), generator=torch.Generator().manual_seed(0),
                          dtype=torch.uint8)
    assert png_bits_per_dim(constant) < 1.0 < 7.0 < png_bits_per_dim(noise)


@pytest.mark.parametrize("fpr", [0.05, 0.2])
def test_calibration_hits_fpr(tiny: torch.nn.Module, fpr: float) -> None:
    val = _images(400, 1)
    calibration = calibrate(tiny, val, fpr=fpr, source="synthetic")
    assert calibration["default_score"] == DEFAULT_SCORE and calibration["n"] == 400
    held_out = _images(1600, 2)  # the same distribution, images the thresholds never saw
    for name in SCORES:
        rows = score_images(tiny, val, calibration, score=name)
        flagged = np.mean([r["flag"] for r in rows])
        assert abs(flagged - fpr) <= 0.01, name
        assert abs(calibration["scores"][name]["val_fpr"] - fpr) <= 0.01
        rows = score_images(tiny, held_out, calibration, score=name)
        # binomial noise of 400 calibration and 1,600 test images: sd about 0.012 at 5 %
        assert abs(np.mean([r["flag"] for r in rows]) - fpr) <= 0.04, name
    hist = calibration["histogram"]
    assert len(hist["edges"]) == len(hist["counts"]) + 1 and sum(hist["counts"]) == 400
    kept = sum(len(v) for v in calibration["tail"].values())
    assert kept <= 2000


def test_p_values_are_empirical(tiny: torch.nn.Module) -> None:
    val = _images(300, 2)
    calibration = calibrate(tiny, val, source="synthetic")
    rows = score_images(tiny, val, calibration, score="bpd")
    scores = np.array([r["score"] for r in rows])
    p = np.array([r["p_value"] for r in rows])
    exact = (1 + (scores[None, :] >= scores[:, None]).sum(1)) / 301
    assert np.abs(p - exact).max() <= 0.02
    assert p.min() == pytest.approx(2 / 301) and 0 < p.max() <= 1  # the top one counts itself
    far = score_images(tiny, torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8),
                       calibration, score="typicality")
    assert all(r["p_value"] >= 1 / 301 for r in far)


def test_scores_deterministic_and_batch_independent(tiny: torch.nn.Module) -> None:
    x = _images(6, 3)
    batch = score_images(tiny, x, batch_size=4)
    alone = score_images(tiny, x[4:5])
    assert batch[4]["bpd"] == pytest.approx(alone[0]["bpd"], abs=1e-9)
    assert score_images(tiny, x, batch_size=4) == batch
    # Uncalibrated: the default needs validation statistics, so the score is complexity, unflagged.
    assert batch[0]["score_name"] == "complexity" and batch[0]["flag"] is None
    assert batch[0]["score"] == batch[0]["complexity"]


def test_thresholds_survive_save_and_load(tiny: torch.nn.Module, tmp_path: Path) -> None:
    calibration = calibrate(tiny, _images(200, 4), source="synthetic")
    path = tmp_path / "model.pt"
    save_model(tiny, path, card={"dataset": "synthetic", "anomaly": calibration})
    loaded = load_bundle(path)
    assert loaded.calibration == json.loads((tmp_path / "card.json").read_text())["anomaly"]
    assert loaded.card.anomaly == loaded.calibration
    x = _images(8, 5)
    assert score_images(loaded, x) == score_images(tiny, x, calibration)
    # the bare model carries no card: uncalibrated, it falls back to complexity
    assert score_images(load_model(path), x)[0]["score_name"] == "complexity"


@pytest.mark.parametrize("name", ["mnist-glow", "fashion-mnist-glow"])
def test_shipped_cards_carry_thresholds(name: str) -> None:
    card = json.loads((ROOT / "trained" / name / "card.json").read_text())
    anomaly = card["anomaly"]
    assert anomaly["default_score"] in SCORES and set(SCORES) <= set(anomaly["scores"])
    assert anomaly["source"].startswith(card["dataset"]) and anomaly["n"] == 5000
    for entry in anomaly["scores"].values():
        assert abs(entry["val_fpr"] - anomaly["fpr"]) <= 0.01
    assert load_bundle(ROOT / "trained" / name / "model.pt").calibration == anomaly


def test_background_beside_a_checkpoint_gives_the_likelihood_ratio(
        tiny: torch.nn.Module, tmp_path: Path) -> None:
    from inpaint_app.anomaly import base_scores
    from inpaint_app.models import CheckpointError

    torch.manual_seed(1)
    background = build_model("glow", image_shape=(1, 8, 8), steps=1, hidden=8).eval()
    save_model(tiny, tmp_path / "model.pt", card={"dataset": "synthetic"})
    save_model(background, tmp_path / "bg" / "model.pt", card={"name": "background"})
    shutil.copy(tmp_path / "bg" / "model.pt", tmp_path / "background.pt")
    loaded = load_bundle(tmp_path)
    assert loaded.background is not None
    assert load_bundle(tmp_path / "background.pt").background is None  # not its own background
    assert not hasattr(load_model(tmp_path), "background")  # the bare model carries none
    assert set(loaded.model.state_dict()) == set(tiny.state_dict())  # not saved inside the model
    x = _images(5, 11)
    base = base_scores(loaded, x)
    expected = base_scores(tiny, x)["bpd"] - base_scores(background, x)["bpd"]
    assert np.allclose(base["likelihood_ratio"], expected, atol=1e-6)
    assert "likelihood_ratio" not in base_scores(tiny, x)
    # The ratio joins the evidence; the same calibration refuses a model without the background.
    calibration = calibrate(loaded, _images(100, 8), source="synthetic")
    assert "likelihood_ratio" in calibration["scores"]["evidence"]["parts"]
    with pytest.raises(ValueError, match="background"):
        score_images(tiny, x, calibration)
    # A verdict scores only what it reads: the background runs when the ratio is a part of it,
    # and not at all (no pass counted) when the calibration sums other parts.
    passes = []
    loaded.background.flow.register_forward_pre_hook(lambda module, args: passes.append(1))
    score_images(loaded, x, calibration)
    assert passes
    passes.clear()
    plain = calibrate(loaded, _images(100, 8), source="synthetic", parts=["complexity"])
    passes.clear()
    rows = score_images(loaded, x, plain)
    assert not passes and all(r["flag"] is not None for r in rows)
    # Orientation is no part of any verdict: the main flow sees each image once, not with its
    # three quarter turns, and the orientation score is not reported; asked for as the score,
    # it is computed.
    seen = []
    hook = loaded.model.flow.register_forward_pre_hook(
        lambda module, args: seen.append(len(args[0])))
    rows = score_images(loaded, x, plain)
    assert sum(seen) == len(x) and all(r["orientation"] is None for r in rows)
    seen.clear()
    rows = score_images(loaded, x, plain, score="orientation")
    assert sum(seen) == 4 * len(x) and all(r["orientation"] is not None for r in rows)
    hook.remove()
    save_model(build_model("glow", image_shape=(1, 4, 4), steps=1, hidden=8),
               tmp_path / "bg" / "model.pt")
    shutil.copy(tmp_path / "bg" / "model.pt", tmp_path / "background.pt")
    with pytest.raises(CheckpointError, match="shape"):
        load_bundle(tmp_path / "model.pt")


def test_orientation_is_bpd_minus_the_likeliest_turn(tiny: torch.nn.Module) -> None:
    from inpaint_app.anomaly import base_scores

    x = _images(5, 7)
    base = base_scores(tiny, x)
    turned = [base_scores(tiny, torch.rot90(x, k, (2, 3)).contiguous())["bpd"] for k in (1, 2, 3)]
    assert np.allclose(base["orientation"], base["bpd"] - np.min(turned, axis=0), atol=1e-9)
    # A constant image is its own turn (the dequantization pattern stays put): exactly zero.
    flat = torch.full((2, 1, 8, 8), 90, dtype=torch.uint8)
    assert np.all(base_scores(tiny, flat)["orientation"] == 0)


def test_a_part_spread_is_read_where_enough_validation_images_lie_beyond_it() -> None:
    """99 % for a dataset's 5,000 validation images; lower for a folder's 300, whose 99 % point
    rests on 3 images: three stray values must not set a part's weight."""
    from inpaint_app.anomaly import _part_stats
    from inpaint_app.spreads import SPREAD_TAIL_IMAGES, spread_quantile

    assert spread_quantile(5000) == 0.99
    assert spread_quantile(300) == pytest.approx(1 - SPREAD_TAIL_IMAGES / 300)
    assert spread_quantile(10) == 0.9  # still a tail for a tiny set
    rng = np.random.default_rng(0)
    usual = rng.normal(0.0, 1.0, 297)
    for stray in (5.0, 50.0):  # three validation files far out, e.g. odd scans
        stats = _part_stats(np.r_[usual, [stray] * 3])
        assert 1.0 < stats["spread_above"] < 2.5, stray  # read below the strays both times
        assert 1.0 < stats["spread_below"] < 2.5
    many = _part_stats(rng.normal(0.0, 1.0, 5000))
    assert many["spread_quantile"] == 0.99
    assert many["spread_above"] == pytest.approx(2.326, abs=0.15)  # the normal's 99 % point


def test_evidence_adds_log_one_plus_the_excess_of_each_part_over_its_validation_median(
        tiny: torch.nn.Module) -> None:
    from inpaint_app.anomaly import base_scores
    from inpaint_app.exemplars import ExemplarBank

    # By default a bare flow sums complexity alone (no exemplar bank, no background here);
    # orientation is a score, never a part.
    default = calibrate(tiny, _images(100, 8), source="synthetic")
    assert set(default["scores"]["evidence"]["parts"]) == {"complexity"}
    with pytest.raises(ValueError, match="unknown evidence parts"):
        calibrate(tiny, _images(100, 8), parts=["complexity", "orientation"])
    banked = ModelBundle(tiny, exemplars=ExemplarBank(_images(30, 3)))
    calibration = calibrate(banked, _images(100, 8), source="synthetic",
                            parts=["complexity", "exemplar_distance"])
    parts = calibration["scores"]["evidence"]["parts"]
    assert set(parts) == {"complexity", "exemplar_distance"}
    x = _images(6, 9)
    base = base_scores(banked, x)
    expected = sum(np.log1p(np.clip((base[n] - parts[n]["median"]) / parts[n]["spread_above"],
                                    0, None)) for n in parts)
    rows = score_images(banked, x, calibration)
    assert np.allclose([r["evidence"] for r in rows], expected, atol=1e-9)
    assert all(r["score_name"] == "evidence" for r in rows)  # the default once calibrated
    # With a bank, the nearest-exemplar distance joins; it is zero for an image in the bank.
    bundle = ModelBundle(tiny, exemplars=ExemplarBank(x))
    with_bank = calibrate(bundle, _images(100, 8), source="synthetic")
    assert "exemplar_distance" in with_bank["scores"]["evidence"]["parts"]
    assert np.allclose(base_scores(bundle, x)["exemplar_distance"], 0, atol=1e-6)
    assert "exemplar_distance" not in base_scores(tiny, x)
    with pytest.raises(ValueError, match="exemplar bank"):
        score_images(tiny, x, with_bank)


def _with_halo(n: int, seed: int, halo: float) -> torch.Tensor:
    """Ink on an exactly black page, with faint pixels (levels 1-24) on about ``halo`` of the
    page, as a capture leaves them."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 1, 8, 8, generator=g) < 0.3).to(torch.uint8) * 220
    faint = torch.randint(1, 25, x.shape, generator=g, dtype=torch.uint8)
    return torch.where((x == 0) & (torch.rand(x.shape, generator=g) < halo), faint, x)


def test_a_capture_model_supplies_the_evidence_flow_parts_for_every_image(
        tiny: torch.nn.Module, tmp_path: Path) -> None:
    """With capture.pt beside the model, the evidence's flow parts are the capture model's for
    every image, in its own validation statistics; bits/dim stays the main model's. A model
    without capture.pt refuses such a calibration, and a card from the replaced faint-pixel
    route is refused with the command that renews it."""
    from inpaint_app.anomaly import base_scores, explain

    torch.manual_seed(3)
    capture = build_model("glow", image_shape=(1, 8, 8), steps=1, hidden=8).eval()
    with torch.no_grad():
        capture.log_prob(torch.rand(16, 1, 8, 8) * 0.5)
    save_model(tiny, tmp_path / "model.pt", card={"dataset": "synthetic"})
    save_model(capture, tmp_path / "capture.pt", card={"name": "capture"})
    bundle = load_bundle(tmp_path)
    assert bundle.capture is not None and bundle.background is None
    val = torch.cat([_with_halo(150, 1, 0.0)]
                    + [_with_halo(1, 100 + i, 0.05 + 0.011 * i) for i in range(50)])
    calibration = calibrate(bundle, val, source="synthetic")
    evidence = calibration["scores"]["evidence"]
    assert evidence["flow"] == "capture"
    own = base_scores(capture, val)  # the capture model alone, as a bare density
    assert evidence["parts"]["complexity"]["median"] == pytest.approx(
        np.median(own["complexity"]))

    x = torch.cat([_with_halo(4, 5, 0.0), _with_halo(4, 6, 0.9)])
    judged, main = base_scores(capture, x), base_scores(tiny, x)
    entry = evidence["parts"]["complexity"]
    expected = np.log1p(np.clip((judged["complexity"] - entry["median"]) / entry["spread_above"],
                                0, None))
    rows = score_images(bundle, x, calibration)
    assert np.allclose([r["evidence"] for r in rows], expected, atol=1e-6)
    assert np.allclose([r["bpd"] for r in rows], main["bpd"], atol=1e-6)  # the main model's
    assert "capture_bpd" not in base_scores(bundle, x, capture=False)
    with pytest.raises(ValueError, match="capture"):
        score_images(tiny, x, calibration)
    assert "also learned captured copies" in explain(calibration)
    assert "captured copies" not in explain(calibrate(tiny, val))
    routed = json.loads(json.dumps(calibration))
    routed["scores"]["evidence"]["capture"] = {"cut": 0.1}
    with pytest.raises(ValueError, match="flowpaint calibrate"):
        score_images(bundle, x, routed)


@pytest.mark.data
def test_the_shipped_mnist_verdict_passes_jpeg_digits_through_its_capture_flow(
        data_root: Path) -> None:
    """Issue 18: JPEG-compressed test digits pass the verdict, whose flow parts come from the
    capture-trained flow; read from the main flow at the same scales, nearly all are flagged."""
    from inpaint_app.data import load_split
    from inpaint_app.nuisances import apply_all
    from pipelines.ood_eval import model_inputs

    bundle = load_bundle(ROOT / "trained" / "mnist-glow")
    assert bundle.capture is not None
    digits = load_split("mnist", "test", str(data_root))[:40]
    x = model_inputs(bundle, apply_all("JPEG quality 75", digits), True)
    rows = score_images(bundle, x)
    assert np.mean([r["flag"] for r in rows]) <= 0.2
    main_flow = json.loads(json.dumps(bundle.calibration))
    del main_flow["scores"]["evidence"]["flow"]
    without = dataclasses.replace(bundle, capture=None)
    assert np.mean([r["flag"] for r in score_images(without, x, main_flow)]) >= 0.8


@pytest.mark.data
def test_calibrate_installs_a_background_and_records_it(data_root: Path, tmp_path: Path) -> None:
    from pipelines import calibrate as calibrate_cli

    torch.manual_seed(2)
    save_model(build_model("glow", image_shape=(1, 28, 28), steps=1, hidden=8),
               tmp_path / "m" / "model.pt", card={"dataset": "mnist"})
    save_model(build_model("glow", image_shape=(1, 28, 28), steps=1, hidden=4),
               tmp_path / "bg" / "model.pt",
               card=ModelCard(perturb=0.1, val=Measurement(9.0, images=500, subset="first")))
    save_model(build_model("glow", image_shape=(1, 8, 8), steps=1, hidden=4),
               tmp_path / "small" / "model.pt")
    checkpoint = tmp_path / "m" / "model.pt"
    with pytest.raises(SystemExit, match="shape"):
        calibrate_cli.main([str(checkpoint), "--background", str(tmp_path / "small" / "model.pt"),
                            "--data-root", str(data_root)])
    assert not (tmp_path / "m" / "background.pt").exists()
    calibrate_cli.main([str(checkpoint), "--background", str(tmp_path / "bg" / "model.pt"),
                        "--data-root", str(data_root), "--threads", "2"])
    anomaly = json.loads((tmp_path / "m" / "card.json").read_text())["anomaly"]
    assert anomaly["background"]["perturb"] == 0.1 and anomaly["background"]["val_bpd"] == 9.0
    assert "likelihood_ratio" in anomaly["scores"]["evidence"]["parts"]
    assert load_bundle(checkpoint).background is not None
    assert anomaly["input_normalization"] == "mnist"  # thresholds for what uploads become
    assert anomaly["input_normalization_settings"] == RECIPES["mnist"].settings()
    assert load_bundle(checkpoint).stale_note is None
    calibrate_cli.main([str(checkpoint), "--capture-model", str(tmp_path / "bg" / "model.pt"),
                        "--data-root", str(data_root), "--threads", "2"])
    anomaly = json.loads((tmp_path / "m" / "card.json").read_text())["anomaly"]
    assert anomaly["capture_model"]["val_bpd"] == 9.0
    assert anomaly["scores"]["evidence"]["flow"] == "capture"
    assert load_bundle(checkpoint).capture is not None


def test_a_changed_recipe_makes_the_thresholds_stale(tiny: torch.nn.Module,
                                                     tmp_path: Path) -> None:
    """Settings recorded at calibration that differ from the recipe's now give a note naming
    each change and the command; equal or unrecorded (older cards) settings give none."""
    anomaly = calibrate(tiny, torch.randint(0, 256, (64, *tiny.image_shape), dtype=torch.uint8))
    settings = RECIPES["mnist"].settings()

    def note(recorded: dict | None) -> str | None:
        extra = {} if recorded is None else {"input_normalization_settings": recorded}
        save_model(tiny, tmp_path / "m" / "model.pt",
                   card={"dataset": "mnist", "anomaly": {**anomaly, **extra}})
        return load_bundle(tmp_path / "m").stale_note

    assert note(settings) is None and note(None) is None
    stale = note({**settings, "content_level": 0.05, "white_level": 0})
    assert "content_level 0.05 -> 0.2" in stale and "white_level 0 -> 250" in stale
    command = f"`python -m pipelines.calibrate {tmp_path / 'm' / 'model.pt'} --fpr 0.05`"
    assert command in stale  # the calibration's own false-positive rate, not a default
    assert "box None -> 20" in note("unreadable")  # not a dict: every parameter differs


def test_a_small_calibration_with_99_percent_spreads_is_stale(tiny: torch.nn.Module,
                                                              tmp_path: Path) -> None:
    """A folder model calibrated before the spreads adapted (its parts have no
    ``spread_quantile``) is told to recalibrate; a fresh calibration, or an old one on 2,000+
    images (where the rule still reads 99 %), is not."""
    fresh = calibrate(tiny, torch.randint(0, 256, (300, *tiny.image_shape), dtype=torch.uint8))
    assert all(part["spread_quantile"] < 0.99
               for part in fresh["scores"]["evidence"]["parts"].values())

    def note(anomaly: dict) -> str | None:
        save_model(tiny, tmp_path / "m" / "model.pt",
                   card={"dataset": "mnist", "anomaly": anomaly})
        return load_bundle(tmp_path / "m").stale_note

    old_parts = {name: {k: v for k, v in part.items() if k != "spread_quantile"}
                 for name, part in fresh["scores"]["evidence"]["parts"].items()}
    old = {**fresh, "scores": {**fresh["scores"], "evidence": {
        **fresh["scores"]["evidence"], "parts": old_parts}}}
    assert note(fresh) is None
    stale = note(old)
    assert "calibrated on 300 validation images" in stale and "93.3 %" in stale
    assert f"`python -m pipelines.calibrate {tmp_path / 'm' / 'model.pt'} --fpr 0.05`" in stale
    assert note({**old, "n": 5000}) is None


def test_a_calibration_sums_the_parts_it_is_told_and_a_recalibration_keeps_them(
        tiny: torch.nn.Module, tmp_path: Path) -> None:
    """``parts`` picks what ``evidence`` sums (recorded as ``chosen_parts``, with the command
    that repeats it); recalibrating without naming parts keeps that choice; unknown parts, or
    parts the bundle cannot compute, are refused."""
    from inpaint_app.anomaly import base_scores, evidence_parts
    from inpaint_app.calibration_store import store_calibration
    from inpaint_app.exemplars import BANK_FILE, ExemplarBank, save_bank

    x, val = _images(6, 9), _images(120, 8)
    bundle = ModelBundle(tiny, exemplars=ExemplarBank(_images(30, 3)))
    chosen = ["exemplar_shape", "complexity"]
    calibration = calibrate(bundle, val, parts=chosen)
    parts = calibration["scores"]["evidence"]["parts"]
    assert list(parts) == chosen and evidence_parts(calibration) == chosen
    assert evidence_parts(calibrate(bundle, val)) is None  # the default is not a choice
    base = base_scores(bundle, x)
    expected = sum(np.log1p(np.clip((base[n] - parts[n]["median"]) / parts[n]["spread_above"],
                                    0, None)) for n in chosen)
    assert np.allclose([r["evidence"] for r in score_images(bundle, x, calibration)], expected)
    with pytest.raises(ValueError, match="unknown evidence parts"):
        calibrate(bundle, val, parts=["orientation", "complexity"])
    with pytest.raises(ValueError, match="exemplar bank"):
        calibrate(tiny, val, parts=chosen)

    path = tmp_path / "m" / "model.pt"
    save_model(tiny, path, card={"dataset": "mnist"})
    save_bank(bundle.exemplars.images, tmp_path / "m" / BANK_FILE)
    store_calibration(path, load_bundle(path), val, fpr=0.05, source="synthetic", recipe=None,
                      command="calibrate", parts=chosen)
    again = store_calibration(path, load_bundle(path), val, fpr=0.05, source="synthetic",
                              recipe=None, command="calibrate")
    assert list(again["scores"]["evidence"]["parts"]) == chosen
    assert again["command"] == "calibrate --evidence-parts exemplar_shape,complexity"


def test_the_explanation_names_the_parts_the_calibration_sums() -> None:
    from inpaint_app.anomaly import DEFAULT_PARTS, PART_WORDS, explain

    def calibrated(*parts: str) -> dict:
        scale = {"median": 0.0, "spread_below": 1.0, "spread_above": 1.0}
        return {"scores": {"evidence": {"parts": dict.fromkeys(parts, scale),
                                        "combine": "log1p"}}}

    text = explain(calibrated("exemplar_distance", "exemplar_shape"))
    assert PART_WORDS["exemplar_distance"] in text and PART_WORDS["exemplar_shape"] in text
    assert PART_WORDS["likelihood_ratio"] not in text and PART_WORDS["complexity"] not in text
    assert all(PART_WORDS[p] in explain() for p in DEFAULT_PARTS)  # uncalibrated: the default
