"""pipelines.ood_eval: the set builder and one model's evaluation end to end on a tiny calibrated
checkpoint (the synthetic sets: tests/test_synthetic.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from inpaint_app.anomaly import SCORES, calibrate
from inpaint_app.data import load_split
from inpaint_app.models import build_model, save_model
from inpaint_app.nuisances import NUISANCES
from pipelines import ood_eval


@pytest.mark.data
def test_build_sets_derives_inverted_and_rotated_from_the_in_set(data_root: Path) -> None:
    sets = ood_eval.build_sets("mnist", 16, str(data_root))
    assert set(sets) == {"in", *ood_eval.SET_NAMES}
    for images in sets.values():
        assert images.dtype == torch.uint8 and images.shape == (16, 1, 28, 28)
    assert torch.equal(sets["inverted"], 255 - sets["in"])
    assert torch.equal(sets["rotated"], torch.rot90(sets["in"], 1, (2, 3)))
    test = load_split("mnist", "test", str(data_root))
    assert all((test == image).flatten(1).all(1).any() for image in sets["in"])


@pytest.mark.data
def test_evaluate_model_reports_every_pair_and_score(data_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("glow", image_shape=(1, 28, 28), steps=1, hidden=8).eval()
    val = load_split("mnist", "val", str(data_root))[:64]
    card = {"dataset": "mnist", "anomaly": calibrate(model, val, source="mnist val (64)")}
    save_model(model, tmp_path / "model.pt", card=card)
    result = ood_eval.evaluate_model("mnist", str(tmp_path / "model.pt"), 24, str(data_root),
                                     nuisance_limit=6)
    labels = {name.format(name="mnist", other="fashion-mnist")
              for key, name in ood_eval.SET_NAMES.items() if key != "inverted"}
    assert set(result["pairs"]) == labels
    for metrics in result["pairs"].values():
        assert set(metrics) == set(SCORES)
        assert all(0.0 <= m["auroc"] <= 1.0 for m in metrics.values())
    assert result["throughput_images_per_s"] > 0
    table = ood_eval.markdown({"mnist": result}, "evidence")
    assert table.count("\n| mnist |") == len(labels)
    section = result["nuisance"]
    assert section["n"] == 6 and set(section["rows"]) == set(NUISANCES)
    for row in section["rows"].values():
        assert 0.0 <= row["flag_rate"] <= 1.0 and 0.0 <= row["flag_rate_plain"] <= 1.0
        assert set(row["auroc"]) == set(ood_eval.SET_NAMES) - {"inverted"}
    # Black on white is normalized back: flagged as often as the clean images.
    rows = section["rows"]
    assert rows["black on white"]["flag_rate"] == rows["none"]["flag_rate"]
    assert ood_eval.nuisance_markdown({"mnist": result}).count("\n| mnist |") == len(NUISANCES)


def _corpus(root: Path, copies: Path) -> None:
    """A two-set corpus: in-domain digits as black-on-white 16x16 bitmaps, and an outlier set
    of uniform noise photos; a third set described but never fetched."""
    import json

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, model, role in (("bitmaps", "mnist", "in"), ("noise", "any", "out"),
                              ("absent", "any", "out")):
        (root / name).mkdir(parents=True)
        (root / name / "set.json").write_text(json.dumps(
            {"name": name, "model": model, "role": role, "kind": f"{name} (test)"}))
        if name == "absent":
            continue
        (copies / name).mkdir(parents=True)
        for i in range(4):
            if name == "bitmaps":
                page = np.full((16, 16), 255, np.uint8)
                page[3:13, 6 + i % 3:9 + i % 3] = 0  # a dark bar on white: a "1"
            else:
                page = rng.integers(0, 256, (40, 40), dtype=np.uint8)
            Image.fromarray(page).save(copies / name / f"x_{i}.png")


@pytest.mark.data
def test_real_section_reads_the_corpus_as_users_have_it(data_root: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from inpaint_app.capture_axis import calibrate_capture
    from inpaint_app.corpus import real_sets

    corpus, copies = tmp_path / "corpus", tmp_path / "copies"
    _corpus(corpus, copies)
    sets = {s.name: s for s in real_sets(copies, corpus=corpus)}
    assert len(sets["bitmaps"].files) == 4 and sets["absent"].files == ()
    assert sets["absent"].copy == "not fetched"
    monkeypatch.setattr(ood_eval, "real_sets",
                        lambda copies, limit=None: real_sets(copies, corpus=corpus, limit=limit))
    torch.manual_seed(0)
    model = build_model("glow", image_shape=(1, 28, 28), steps=1, hidden=8).eval()
    val = load_split("mnist", "val", str(data_root))[:64]
    anomaly = calibrate(model, val, source="mnist val (64)")
    # Four facts at 5 %: a p-value of 1 / (n + 1) fires only from n = 80 validation images on.
    axis_val = load_split("mnist", "val", str(data_root))[:400]
    anomaly["capture_axis"] = calibrate_capture(axis_val, "mnist", 0.05)
    save_model(model, tmp_path / "model.pt", card={"dataset": "mnist", "anomaly": anomaly})
    result = ood_eval.real_section("mnist", str(tmp_path / "model.pt"), 4, str(data_root),
                                   str(copies))
    rows = result["sets"]
    assert set(rows) == {"test set", "bitmaps", "noise"}  # the unfetched set is left out
    assert rows["bitmaps"]["role"] == "in" and rows["noise"]["role"] == "out"
    assert rows["bitmaps"]["capture_flagged"] == 1.0  # two grey levels, 16 px: captured
    assert 0.0 <= rows["noise"]["auroc_vs_real"] <= 1.0
    assert set(result["falloff"]) == set(ood_eval.FALLOFFS)
    table = ood_eval.real_markdown({"mnist": result})
    assert "| mnist | bitmaps | in | 4 |" in table and "| 120 |" in table


def test_a_limited_real_set_samples_every_class_not_the_first_few(tmp_path: Path) -> None:
    from inpaint_app.corpus import real_sets

    corpus, copies = tmp_path / "corpus", tmp_path / "copies"
    (corpus / "digits").mkdir(parents=True)
    (corpus / "digits" / "set.json").write_text(json.dumps(
        {"name": "digits", "model": "mnist", "role": "in", "kind": "scans"}))
    (copies / "digits").mkdir(parents=True)
    for label in range(10):  # files named by class, 30 of each, as the corpus's are
        for i in range(30):
            (copies / "digits" / f"{label}_{i:03d}.png").write_bytes(b"")
    (limited,) = real_sets(copies, corpus=corpus, limit=50)
    labels = [f.name.split("_")[0] for f in limited.files]
    assert len(labels) == 50 and {labels.count(str(k)) for k in range(10)} == {5}
    (everything,) = real_sets(copies, corpus=corpus, limit=1000)
    assert len(everything.files) == 300
