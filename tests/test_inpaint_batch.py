"""pipelines.inpaint_batch: filled PNGs, metrics.csv, skipping, and clear per-file errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image

from inpaint_app.images import open_image, save_png, to_model_input
from inpaint_app.models import build_model, save_model
from pipelines.inpaint_batch import main

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model("glow", image_shape=SHAPE, hidden=8, steps=2)
    with torch.no_grad():
        model.log_prob(torch.rand(16, *SHAPE) * 0.9 + 0.05)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_model(model.eval(), path)
    return path


def write_images(folder: Path, count: int = 2) -> list[torch.Tensor]:
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, SHAPE, generator=gen, dtype=torch.uint8)
              for _ in range(count)]
    for i, image in enumerate(images):
        save_png(image, folder / f"img{i}.png")
    return images


def read_rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "metrics.csv", newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f)}


def test_preset_run_writes_filled_pngs_and_metrics(checkpoint: Path, tmp_path: Path) -> None:
    images = write_images(tmp_path / "in")
    out = tmp_path / "out"
    args = ["--checkpoint", str(checkpoint), "--images", str(tmp_path / "in"), "--out", str(out),
            "--mask-preset", "bottom", "--steps", "2", "--ground-truth", str(tmp_path / "in")]
    assert main(args) == 0
    rows = read_rows(out)
    for i, image in enumerate(images):
        filled = to_model_input(open_image(out / f"img{i}.png"), SHAPE)
        assert torch.equal(filled[:, :4], image[:, :4])  # the observed top half
        row = rows[f"img{i}.png"]
        assert row["status"] == "ok" and float(row["bpd_after"]) > 0
        assert float(row["psnr_masked"]) > 0 and row["ssim_masked"]
    assert not list(out.glob(".*.tmp"))
    assert main(args) == 0  # second run: everything exists, nothing redone
    assert all(r["status"].startswith("skipped") for r in read_rows(out).values())


def test_bad_mask_or_file_is_an_error_and_writes_nothing(checkpoint: Path,
                                                        tmp_path: Path) -> None:
    write_images(tmp_path / "in", 3)
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    masks = tmp_path / "masks"
    masks.mkdir()
    good = Image.new("L", (8, 8), 0)
    good.paste(255, (0, 0, 8, 4))
    good.save(masks / "img0.png")
    Image.new("L", (9, 8), 255).save(masks / "img1.png")  # wrong size
    good.save(masks / "broken.png")  # img2 has no mask at all
    out = tmp_path / "out"
    code = main(["--checkpoint", str(checkpoint), "--images", str(tmp_path / "in"),
                 "--masks", str(masks), "--out", str(out), "--steps", "1"])
    assert code == 1
    rows = read_rows(out)
    assert rows["img0.png"]["status"] == "ok" and (out / "img0.png").is_file()
    assert "9x8" in rows["img1.png"]["error"] and not (out / "img1.png").exists()
    assert "no mask" in rows["img2.png"]["error"] and not (out / "img2.png").exists()
    assert rows["broken.png"]["status"] == "error" and not (out / "broken.png").exists()


def test_other_size_and_mode_is_converted_and_noted(checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(tmp_path / "in" / "big.png")
    out = tmp_path / "out"
    assert main(["--checkpoint", str(checkpoint), "--images", str(tmp_path / "in"),
                 "--mask-preset", "center", "--out", str(out), "--steps", "1"]) == 0
    row = read_rows(out)["big.png"]
    assert "resized" in row["note"] and "converted" in row["note"]
    filled = open_image(out / "big.png")  # back in the upload's frame, observed pixels kept
    assert filled.size == (16, 16) and filled.mode == "L"
    gray = Image.new("RGB", (16, 16), (200, 10, 10)).convert("L").getpixel((0, 0))
    assert filled.getpixel((0, 0)) == gray and filled.getpixel((15, 15)) == gray
    assert main(["--checkpoint", str(checkpoint), "--images", str(tmp_path / "in"),
                 "--mask-preset", "center", "--out", str(tmp_path / "plain"), "--steps", "1",
                 "--no-normalize"]) == 0
    assert open_image(tmp_path / "plain" / "big.png").size == (8, 8)


def test_black_on_white_upload_is_filled_in_its_own_polarity(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("glow", image_shape=(1, 28, 28), hidden=8, steps=1)
    with torch.no_grad():
        model.log_prob(torch.rand(8, 1, 28, 28) * 0.9 + 0.05)
    save_model(model.eval(), tmp_path / "model.pt", card={"dataset": "mnist"})
    page = Image.new("L", (168, 168), 255)
    page.paste(0, (30, 12, 54, 72))  # a dark bar on a white page
    (tmp_path / "in").mkdir()
    page.save(tmp_path / "in" / "scan.png")
    assert main(["--checkpoint", str(tmp_path / "model.pt"), "--images", str(tmp_path / "in"),
                 "--mask-preset", "bottom", "--out", str(tmp_path / "out"), "--steps", "0",
                 "--method", "exemplar"]) == 0
    row = read_rows(tmp_path / "out")["scan.png"]
    assert "light background: inverted" in row["note"]
    filled = open_image(tmp_path / "out" / "scan.png")
    assert filled.size == (168, 168)
    assert filled.getpixel((2, 2)) == 255 and filled.getpixel((42, 20)) == 0  # observed
    assert filled.getpixel((2, 160)) == 255  # outside the model's 84-pixel view: untouched


def test_exemplar_method_runs_without_ascent(checkpoint: Path, tmp_path: Path) -> None:
    images = write_images(tmp_path / "in", count=1)
    out = tmp_path / "out"
    args = ["--checkpoint", str(checkpoint), "--images", str(tmp_path / "in"), "--out", str(out),
            "--mask-preset", "center", "--method", "exemplar"]
    assert main(args) == 0
    row = read_rows(out)["img0.png"]
    assert row["status"] == "ok"
    filled = to_model_input(open_image(out / "img0.png"), SHAPE)
    assert torch.equal(filled[:, :2], images[0][:, :2])  # outside the centre square
