"""The capture axis: facts of an upload against the validation images', a p-value, the facts
named, beside a content verdict that reads the capture-trained flow."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from inpaint_app.anomaly import calibrate, score_images
from inpaint_app.bundle import load_bundle
from inpaint_app.capture_axis import calibrate_capture, capture_verdict
from inpaint_app.models import build_model, save_model
from inpaint_app.normalize import prepare
from inpaint_app.nuisances import binarized, low_resolution
from inpaint_app.uploads import prepare_upload, score_uploads


def _strokes(n: int, seed: int) -> torch.Tensor:
    """uint8 [n, 1, 28, 28] anti-aliased strokes, MNIST-framed: a digital validation set."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        big = Image.new("L", (112, 112))
        draw = ImageDraw.Draw(big)
        # from the top-left to the bottom-right of a 20-pixel box, as MNIST frames its digits
        middle = [(int(rng.integers(24, 88)), int(rng.integers(16, 96))) for _ in range(2)]
        draw.line([(24, 16), *middle, (88, 96)], fill=255, width=int(rng.integers(8, 13)))
        out.append(torch.from_numpy(np.array(big.resize((28, 28), Image.Resampling.BOX))))
    return torch.stack(out)[:, None]


@pytest.fixture(scope="module")
def val() -> torch.Tensor:
    return _strokes(300, 0)


@pytest.fixture(scope="module")
def axis(val: torch.Tensor) -> dict:
    return calibrate_capture(val, "mnist", fpr=0.05)


def _facts(uploads: list[Image.Image]) -> list[dict]:
    from inpaint_app.capture_axis import capture_facts

    facts = []
    for upload in uploads:
        x, framing = prepare(upload, (1, 28, 28), "mnist")
        facts.append(capture_facts(np.asarray(upload.convert("L")), framing, x))
    return facts


def test_the_axis_fires_at_its_level_on_validation_images(val: torch.Tensor, axis: dict) -> None:
    p, fires, why = capture_verdict(_facts([Image.fromarray(x[0].numpy()) for x in val]), axis)
    assert ((0 < p) & (p <= 1)).all()
    assert fires.mean() <= 0.05  # Bonferroni over four facts: at most the level
    assert all(w == "" for w, f in zip(why, fires, strict=True) if not f)


def test_binarized_and_low_resolution_captures_fire_and_are_named(axis: dict) -> None:
    fresh = _strokes(40, 1)
    clean = [Image.fromarray(x[0].numpy()) for x in fresh]
    bits = [binarized(128)(x, 0) for x in fresh]
    small = [low_resolution(14)(x, 0) for x in fresh]
    p_clean, fires_clean, _ = capture_verdict(_facts(clean), axis)
    p_bits, fires_bits, why_bits = capture_verdict(_facts(bits), axis)
    _, fires_small, why_small = capture_verdict(_facts(small), axis)
    assert fires_clean.mean() <= 0.1
    assert fires_bits.all() and all("binarized" in w for w in why_bits)
    assert fires_small.mean() >= 0.9
    assert all("low resolution" in w for w, f in zip(why_small, fires_small, strict=True) if f)
    assert (p_bits < np.median(p_clean)).all()


def test_a_photographed_page_is_named_as_one(axis: dict) -> None:
    upload = Image.fromarray(_strokes(1, 2)[0, 0].numpy()).resize((200, 200))
    page = 225.0 - 0.85 * np.asarray(upload, dtype=np.float64)
    page -= np.linspace(0, 60, 200)[None, :]  # light falling off by 60 levels
    page += np.random.default_rng(0).normal(0, 3, page.shape)
    photo = Image.fromarray(page.clip(0, 255).astype(np.uint8))
    _, fires, why = capture_verdict(_facts([photo]), axis)
    assert fires[0] and "photographed page" in why[0]


def test_the_axis_fires_on_binarized_uploads_beside_a_capture_flow_verdict(
        val: torch.Tensor, axis: dict, tmp_path: Path) -> None:
    """With capture.pt beside the model, the capture axis fires on binarized uploads and names
    why, stays quiet on clean ones, and bits/dim is the main flow's for every image."""
    torch.manual_seed(0)
    main, capture = (build_model("glow", image_shape=(1, 28, 28), steps=1, hidden=8).eval()
                     for _ in range(2))
    with torch.no_grad():
        for model in (main, capture):
            model.log_prob(torch.rand(8, 1, 28, 28) * 0.5)
    save_model(main, tmp_path / "model.pt", card={"dataset": "mnist"})
    save_model(capture, tmp_path / "capture.pt", card={"name": "capture"})
    bundle = load_bundle(tmp_path)
    calibration = calibrate(bundle, val[:120], source="strokes")
    calibration["capture_axis"] = axis
    fresh = _strokes(6, 3)
    uploads = [Image.fromarray(x[0].numpy()) for x in fresh[:3]]
    uploads += [binarized(128)(x, 0) for x in fresh[3:]]
    prepared = [prepare_upload(u, bundle) for u in uploads]
    rows = score_images(bundle, torch.stack([p.x for p in prepared]), calibration,
                        captures=[p.facts for p in prepared])
    flags = [r["capture_flag"] for r in rows]
    assert flags[3:] == [True] * 3
    assert all("binarized" in r["capture_why"] for r in rows[3:])
    assert all(r["capture_why"] == "" for r in rows[:3] if not r["capture_flag"])
    main_bpd = [r["bpd"] for r in score_images(main, torch.stack([p.x for p in prepared]))]
    assert np.allclose([r["bpd"] for r in rows], main_bpd, atol=1e-6)
    # score_uploads is the same verdict from the prepared uploads (the bundle's calibration).
    calibrated = dataclasses.replace(bundle, card=bundle.card.replace(anomaly=calibration))
    assert [r["capture_flag"] for r in score_uploads(calibrated, prepared)] == flags


@pytest.mark.data
def test_the_shipped_mnist_verdict_reads_both_axes(data_root: Path) -> None:
    """The shipped MNIST bundle's capture axis fires on binarized 16 x 16 copies of test digits
    and names them, and stays quiet on the digits as stored; bits/dim is reported for all."""
    from inpaint_app.data import load_split

    bundle = load_bundle("trained/mnist-glow")
    assert "capture_axis" in bundle.calibration
    digits = load_split("mnist", "test", str(data_root))[:40]
    clean = [Image.fromarray(x[0].numpy()) for x in digits]
    forms = [binarized(128, then=low_resolution(16))(x, 0) for x in digits]
    rows = {kind: score_uploads(bundle, [prepare_upload(u, bundle) for u in uploads])
            for kind, uploads in (("clean", clean), ("forms", forms))}
    assert np.mean([r["capture_flag"] for r in rows["clean"]]) <= 0.1
    assert np.mean([r["capture_flag"] for r in rows["forms"]]) >= 0.9
    assert all("binarized" in r["capture_why"] for r in rows["forms"] if r["capture_flag"])
    assert all(np.isfinite(r["bpd"]) for kind in rows for r in rows[kind])
