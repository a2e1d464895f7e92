"""Batch scripts against hostile folders: non-UTF-8 file names, impossible output locations."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inpaint_app.models import build_model, save_model
from pipelines import inpaint_batch, score_batch

ODD_NAME = os.fsdecode(b"bad\xffname.png")  # not valid UTF-8 on disk


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_model(build_model("glow", image_shape=(1, 8, 8), steps=1).eval(), path,
               {"dataset": "noise", "model": "glow"})
    return path


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("ok.png", ODD_NAME):
        Image.fromarray(np.full((8, 8), 40, dtype=np.uint8)).save(folder / name)
    return folder


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))


def test_score_batch_keeps_non_utf8_names(checkpoint: Path, images: Path,
                                          tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    score_batch.main(["--checkpoint", str(checkpoint), "--images", str(images),
                      "--out", str(out)])
    rows = read_rows(out)
    assert sorted(r["file"] for r in rows) == sorted(["ok.png", ODD_NAME])
    assert all(r["bpd"] and not r["error"] for r in rows)


def test_inpaint_batch_keeps_non_utf8_names(checkpoint: Path, images: Path,
                                            tmp_path: Path) -> None:
    out = tmp_path / "out"
    inpaint_batch.main(["--checkpoint", str(checkpoint), "--images", str(images),
                        "--mask-preset", "bottom", "--out", str(out), "--steps", "2"])
    assert (out / ODD_NAME).exists() and (out / "ok.png").exists()
    assert sorted(r["file"] for r in read_rows(out / "metrics.csv")) == sorted(
        ["ok.png", ODD_NAME])


@pytest.mark.parametrize("script", ["score", "inpaint"])
def test_an_impossible_output_location_fails_before_any_work(
        script: str, checkpoint: Path, images: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as info:
        if script == "score":
            score_batch.main(["--checkpoint", str(checkpoint), "--images", str(images),
                              "--out", str(blocker / "scores.csv")])
        else:
            inpaint_batch.main(["--checkpoint", str(checkpoint), "--images", str(images),
                                "--mask-preset", "bottom", "--out", str(blocker / "out")])
    assert str(info.value.code).startswith("error: cannot write")
    assert blocker.read_text() == "not a folder"
