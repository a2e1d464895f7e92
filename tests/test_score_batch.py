"""`python -m pipelines.score_batch`: one row per file, bad files get an error row, atomic CSV."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from inpaint_app.anomaly import DEFAULT_SCORE, SCORES, calibrate
from inpaint_app.models import build_model, save_model
from pipelines import score_batch


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model("glow", image_shape=(1, 8, 8), steps=2).eval()
    with torch.no_grad():
        model.log_prob(torch.rand(16, 1, 8, 8) * 0.5)
    val = torch.randint(0, 256, (200, 1, 8, 8), generator=torch.Generator().manual_seed(0),
                        dtype=torch.uint8)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_model(model, path, card={"anomaly": calibrate(model, val, source="synthetic")})
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("L", (8, 8), 0).save(images / "black.png")
    Image.new("RGB", (30, 20), (200, 10, 10)).save(images / "red_big.jpg")
    noise = torch.randint(0, 256, (64, 64), dtype=torch.uint8).numpy()
    Image.fromarray(noise).save(tmp_path / "noise.png")
    png = (tmp_path / "noise.png").read_bytes()
    (images / "corrupt.png").write_bytes(png[: len(png) * 3 // 5])  # cut inside the pixel data
    (images / "empty.png").write_bytes(b"")
    (images / "notes.txt").write_text("not an image\n")
    return images


def _rows(path: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), {r["file"]: r for r in reader}


def test_scores_folder_and_reports_bad_files(checkpoint: Path, folder: Path,
                                             tmp_path: Path) -> None:
    out = tmp_path / "out" / "scores.csv"
    score_batch.main(["--checkpoint", str(checkpoint), "--images", str(folder),
                      "--out", str(out)])
    header, rows = _rows(out)
    assert header == ["file", "bpd", "score", *(s for s in SCORES if s != "bpd"), "p_value",
                      "flag", "threshold", "why", "capture_flag", "capture_p_value", "capture_why",
                      "normalization", "error"]
    assert set(rows) == {"black.png", "red_big.jpg", "corrupt.png", "empty.png", "notes.txt"}
    for name in ("black.png", "red_big.jpg"):
        row = rows[name]
        assert row["error"] == "" and row["flag"] in ("true", "false")
        assert float(row["score"]) == pytest.approx(float(row[DEFAULT_SCORE]), rel=1e-5)
        assert 0 < float(row["p_value"]) <= 1 and math.isfinite(float(row["threshold"]))
    assert "empty" in rows["empty.png"]["error"]
    assert "truncated or corrupt" in rows["corrupt.png"]["error"]
    assert "not an image" in rows["notes.txt"]["error"]
    assert rows["notes.txt"]["bpd"] == ""
    assert [p.name for p in out.parent.iterdir()] == ["scores.csv"]  # no temporary left behind


def test_chosen_score(checkpoint: Path, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    score_batch.main(["--checkpoint", str(checkpoint), "--images", str(folder),
                      "--out", str(out), "--score", "bpd"])
    row = _rows(out)[1]["black.png"]
    assert float(row["score"]) == pytest.approx(float(row["bpd"]), rel=1e-5)


def test_missing_folder_is_a_clear_error(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not a folder"):
        score_batch.main(["--checkpoint", str(checkpoint), "--images", str(tmp_path / "nope"),
                          "--out", str(tmp_path / "s.csv")])


def test_black_on_white_scores_as_its_inverse_unless_normalization_is_off(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("glow", image_shape=(1, 28, 28), steps=1, hidden=8).eval()
    with torch.no_grad():
        model.log_prob(torch.rand(8, 1, 28, 28) * 0.5)
    save_model(model, tmp_path / "model.pt", card={"dataset": "mnist"})
    digit = Image.new("L", (28, 28), 0)
    digit.paste(255, (12, 6, 16, 22))
    images = tmp_path / "images"
    images.mkdir()
    digit.save(images / "white_on_black.png")
    Image.eval(digit, lambda v: 255 - v).save(images / "black_on_white.png")
    for flag, same in (([], True), (["--no-normalize"], False)):
        out = tmp_path / f"scores{len(flag)}.csv"
        score_batch.main(["--checkpoint", str(tmp_path / "model.pt"), "--images", str(images),
                          "--out", str(out), "--score", "bpd", *flag])
        rows = _rows(out)[1]
        bpd = [float(rows[name]["bpd"]) for name in ("white_on_black.png", "black_on_white.png")]
        assert (bpd[0] == pytest.approx(bpd[1])) is same
        assert ("inverted" in rows["black_on_white.png"]["normalization"]) is same


def test_stale_thresholds_are_warned_about(checkpoint: Path, folder: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A calibration recorded under other normalization settings still scores, with a warning
    on stderr; without normalization (--no-normalize) the settings do not apply."""
    from inpaint_app.models import load_checkpoint, load_model
    from inpaint_app.normalize import RECIPES

    card = load_checkpoint(checkpoint)["card"]
    recorded = {**RECIPES["resize"].settings(), "box": 20}
    stale = tmp_path / "stale" / "model.pt"
    save_model(load_model(checkpoint), stale, card={**card, "anomaly": {
        **card["anomaly"], "input_normalization_settings": recorded}})
    score_batch.main(["--checkpoint", str(stale), "--images", str(folder),
                      "--out", str(tmp_path / "a.csv")])
    err = capsys.readouterr().err
    assert "warning: calibrated with another input normalization (box 20 -> None)" in err
    assert (tmp_path / "a.csv").is_file()
    score_batch.main(["--checkpoint", str(stale), "--images", str(folder), "--no-normalize",
                      "--out", str(tmp_path / "b.csv")])
    assert "warning" not in capsys.readouterr().err
