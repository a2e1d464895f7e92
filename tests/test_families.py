"""Smoke test of ``benchmarks.families`` on tiny temporary checkpoints and a card-only model, and
how it reads a card: the structured measurement fields, never the prose sentences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import families
from inpaint_app.card import Measurement, ModelCard
from inpaint_app.models import build_model, save_model

SHAPE = (1, 28, 28)


def _card(family: str, **extra: object) -> dict:
    return {"dataset": "mnist", "model": family, "image_shape": list(SHAPE),
            "training_minutes": 1.5, "hardware": "1 process(es) x 1 CPU thread(s), x86_64",
            "command": f"python -m pipelines.train --model {family}", "date": "d", **extra}


@pytest.fixture
def checkpoints(tmp_path: Path) -> list[Path]:
    ffjord = {"hidden": 4, "levels": 0, "solver": "rk4", "step_size": 0.5, "eval_probes": 1}
    tiny = {"maf": {"blocks": 1, "hidden": 8}, "ffjord": ffjord, "planar": {"layers": 2}}
    paths = []
    for family, hparams in tiny.items():
        path = tmp_path / f"mnist-{family}" / "model.pt"
        test = {} if family == "planar" else {"test_bpd": 5.0, "test_bpd_stderr": 0.01,
                                              "test_images": 10000, "test_subset": "all"}
        card = _card(family, **test, val_bpd=5.5, val_images=500, val_subset="first")
        save_model(build_model(family, SHAPE, **hparams), path, card=card)
        paths.append(path)
    (paths[1].parent / "evaluate.json").write_text(json.dumps(  # ignored: the card has a test
        {"split": "test", "images": 500, "bpd": 9.0, "bpd_stderr": 0.1}))
    return paths


def test_families_writes_table_and_json(tmp_path: Path, checkpoints: list[Path]) -> None:
    card_only = tmp_path / "paper.card.json"
    # A card written before the schema: a test figure and its sentence, no test_images. The
    # sentence is shown as the card says, never parsed (it would read "all 10,000").
    card = _card("nice", test_bpd=7.6, date="other", hparams={"hidden": 8, "depth": 1},
                 test_measured="mean over all 10000 test images")
    card_only.write_text(json.dumps(card))
    duplicate = tmp_path / "dup.card.json"  # the same run as a checkpoint above: skipped
    duplicate.write_text(json.dumps(_card("maf")))
    out = tmp_path / "bench"
    report = families.main([*map(str, checkpoints), "--cards", str(card_only), str(duplicate),
                            "--sample-batch", "2", "--score-batch", "4", "--repeats", "1",
                            "--data-root", str(tmp_path / "no-data"), "--out", str(out)])
    rows = {r["family"]: r for r in report["rows"]}
    assert list(rows) == ["maf", "ffjord", "planar", "nice"]
    assert rows["maf"]["test_bpd"] == 5.0 and rows["maf"]["bpd_measured"] == "test, all 10,000"
    assert rows["planar"]["test_bpd"] == 5.5
    assert rows["planar"]["bpd_measured"] == "val, first 500 held out; no test figure"
    assert rows["ffjord"]["test_bpd"] == 5.0
    assert rows["nice"]["parameters"] > 0 and "fresh weights" in rows["nice"]["weights"]
    assert rows["nice"]["bpd_measured"] == "test, as the card says"
    assert rows["nice"]["parameters"] == sum(
        p.numel() for p in build_model("nice", SHAPE, hidden=8, depth=1).parameters())
    assert rows["ffjord"]["nfe_score"] == rows["ffjord"]["nfe_sample"] == 8  # rk4: 2 x 4 stages
    assert "nfe_score" not in rows["maf"]
    assert all(r["sample_images_per_s"] > 0 and r["score_images_per_s"] > 0
               for r in rows.values())
    assert report["score_images"] == "random pixels"
    saved = json.loads((out / "families.json").read_text())
    assert [r["family"] for r in saved["rows"]] == list(rows)
    table = (out / "families.md").read_text()
    assert table.count("\n| ") == 1 + len(rows)
    assert "5.000 ± 0.010" in table and "1.5 min" in table


def test_model_from_card_reads_family_shape_and_hparams(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"hparams": {"hidden": 16, "depth": 2}}))
    # the command names other hparams: it is a record, not read back
    card = ModelCard.from_dict(_card(
        "nice", image_shape=[1, 8, 8], hparams={"hidden": 8, "depth": 1},
        command=f"python -m pipelines.train --config {config} --hparams '{{\"depth\": 3}}'"))
    model = families.model_from_card(card)
    assert model.config["flow"] == {"hidden": 8, "depth": 1}
    assert tuple(model.image_shape) == (1, 8, 8)
    with pytest.raises(ValueError, match="no model family"):
        families.model_from_card(ModelCard(hparams={"hidden": 8}))


def test_bits_fall_back_to_evaluate_json_then_to_validation() -> None:
    card = ModelCard.from_dict(_card(  # the command's --limit-val is not read: the fields are
        "ffjord", val_bpd=6.8, val_images=500, val_subset="first",
        command="python -m pipelines.train --model ffjord --limit-val 2000"))
    run = {"split": "test", "images": 500, "bpd": 6.9, "bpd_stderr": 0.02}
    assert families.bpd_text(card, run) == (6.9, 0.02,
                                            "test, random subset of 500 (evaluate.json)")
    assert families.bpd_text(card) == (6.8, None, "val, first 500 held out; no test figure")
    assert families.bpd_text(ModelCard()) == (None, None, "-")


@pytest.mark.parametrize(("test", "where"), [
    (Measurement(3.0, images=10000, stderr=0.01), "test, all 10,000"),
    (Measurement(3.0, images=1000, subset="first"), "test, first 1,000"),
    (Measurement(3.0, images=2000, subset="random"), "test, random subset of 2,000"),
    # before the schema: only a sentence, which is shown as it is and never parsed
    (Measurement(3.0, images=None, text="mean over a random subset of 2000 test images"),
     "test, as the card says"),
])
def test_bits_say_what_the_structured_measurement_covers(test: Measurement, where: str) -> None:
    card = ModelCard(model="maf", test=test, val=Measurement(4.0, images=500, subset="first"))
    assert families.bpd_text(card) == (3.0, test.stderr, where)
    # the same through a card.json: the rendered sentence is not what families reads
    saved = card.to_dict()
    if test.images is not None:
        saved["test_measured"] = "mean over all 7 test images"
    assert families.bpd_text(ModelCard.from_dict(saved)) == (3.0, test.stderr, where)


def test_default_checkpoints_skip_anomaly_backgrounds(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    model = build_model("glow", image_shape=(1, 8, 8), steps=1, hidden=4)
    save_model(model, tmp_path / "runs" / "mnist-maf" / "model.pt", card={"dataset": "mnist"})
    save_model(model, tmp_path / "runs" / "mnist-background" / "model.pt",
               card={"dataset": "mnist", "perturb": 0.1})
    assert families.default_checkpoints() == [Path("runs/mnist-maf/model.pt")]
