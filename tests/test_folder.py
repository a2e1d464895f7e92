"""Training on a folder of one's own images: reading (bad files skipped, each reported), the
validation split, the inferred size/channels/polarity, and ``flowpaint train --images`` leaving
a calibrated, servable bundle within its budget."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from inpaint_app.anomaly import score_images
from inpaint_app.app.handlers import Handlers
from inpaint_app.app.registry import ModelCache, checkpoints_for
from inpaint_app.bundle import load_bundle
from inpaint_app.folder import (
    FolderError,
    FolderSpec,
    is_validation,
    list_files,
    load_folder,
)
from inpaint_app.inpainting import inpaint
from inpaint_app.normalize import RECIPES, fit_input
from pipelines import calibrate, folder_eval, train

TINY = ["--hparams", '{"steps": 2, "hidden": 8}', "--epochs", "2", "--batch-size", "16",
        "--threads", "1"]


def blob(rng: np.random.Generator, size: int = 16, light: bool = False) -> np.ndarray:
    """A random bright ellipse on black (or dark on white with ``light``), uint8."""
    image = Image.new("L", (size, size), 0)
    x0, y0 = rng.integers(1, size // 2, 2)
    ImageDraw.Draw(image).ellipse([int(x0), int(y0), int(x0) + size // 3,
                                   int(y0) + size // 2], fill=int(rng.integers(180, 256)))
    array = np.asarray(image)
    return 255 - array if light else array


def make_folder(root: Path, count: int = 60, *, light: bool = False, colour: bool = False,
                seed: int = 0) -> Path:
    """``count`` 16x16 images in two class subfolders."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        array = blob(rng, light=light)
        if colour:
            tint = rng.uniform(0.3, 1.0, 3)
            array = (array[..., None] * tint).astype(np.uint8)
        Image.fromarray(array).save(sub / f"{i:03d}.png")
    return root


def add_awkward_files(root: Path) -> dict[str, str]:
    """Files a real folder holds: the readable ones in odd modes and sizes, and the bad ones;
    returns {name: what the skip reason must mention} for the bad ones."""
    rng = np.random.default_rng(1)
    odd = root / "odd"
    odd.mkdir()
    Image.fromarray(blob(rng, 40)).save(odd / "big.jpg", quality=80)  # other size, JPEG
    Image.fromarray(blob(rng).astype(np.uint16) * 257).save(odd / "deep.png")  # 16-bit
    Image.fromarray(blob(rng)).convert("CMYK").save(odd / "print.tif")  # CMYK
    Image.fromarray(blob(rng)).convert("P").save(odd / "palette.gif")
    Image.fromarray(blob(rng)).save(os.fsencode(odd) + b"/caf\xe9-\xff.png")  # not UTF-8
    bad = root / "bad"
    bad.mkdir()
    (bad / "notes.txt").write_text("hello")
    buffer = io.BytesIO()
    Image.fromarray(blob(rng, 64)).save(buffer, format="PNG")
    (bad / "truncated.png").write_bytes(buffer.getvalue()[:80])
    huge = Image.new("L", (7000, 7000), 0)  # 49 M pixels in a few KB: refused from the header
    huge.save(bad / "huge.png", optimize=True)
    (bad / "empty.png").write_bytes(b"")
    return {"notes.txt": "not an image", "truncated.png": "truncated",
            "huge.png": "7000x7000", "empty.png": "empty"}


def test_a_folder_with_awkward_files_reads_the_good_ones_and_reports_the_bad(
        tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    bad = add_awkward_files(root)
    lines: list[str] = []
    spec = FolderSpec.infer(root)
    data = load_folder(root, spec, log=lines.append)
    assert spec == FolderSpec(size=(16, 16), channels=1, recipe="resize-dark")
    assert len(data.train) + len(data.val) == 60 + 5  # every readable file, odd ones included
    assert data.train.dtype == torch.uint8 and data.train.shape[1:] == (1, 16, 16)
    reasons = dict(data.skipped)
    assert set(reasons) == {f"bad/{name}" for name in bad}
    for name, words in bad.items():
        assert words in reasons[f"bad/{name}"]
        assert any(line.startswith(f"skipped bad/{name}:") for line in lines)
    assert "4 skipped" in lines[-1]
    entry = data.card_entry()
    assert entry["files"] == 69 and entry["skipped"] == 4 and len(entry["sha256"]) == 64
    json.dumps(entry)  # the non-UTF-8 name and everything else is valid JSON for the card


def test_the_validation_split_depends_on_each_path_only(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs", count=200)
    before = {p.relative_to(root) for p in list_files(root) if is_validation(p.relative_to(root))}
    assert 8 <= len(before) <= 35  # about 10 % of 200
    make_folder(tmp_path / "imgs" / "more", count=40, seed=3)
    after = {p.relative_to(root) for p in list_files(root) if is_validation(p.relative_to(root))}
    assert before <= after  # adding files moves none of the old ones


def test_a_light_background_folder_is_inverted_to_dark_and_photos_are_left_alone(
        tmp_path: Path) -> None:
    light = make_folder(tmp_path / "light", light=True)
    spec = FolderSpec.infer(light)
    assert spec.recipe == "resize-dark"
    data = load_folder(light, spec, log=None)
    assert data.train[:, :, 0, :].float().mean() < 20  # the page became black
    rng = np.random.default_rng(0)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i in range(20):
        Image.fromarray(blob(rng, light=i % 2 == 0)).save(mixed / f"{i}.png")
    assert FolderSpec.infer(mixed).recipe == "resize"
    assert FolderSpec.infer(mixed, size=(8, 12), channels=3) == FolderSpec((8, 12), 3, "resize")
    with pytest.raises(FolderError, match="multiple of 4"):
        FolderSpec.infer(mixed, size=(10, 10))


def test_colour_is_detected_and_kept(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "rgb", colour=True)
    spec = FolderSpec.infer(root)
    assert spec.channels == 3 and spec.recipe == "resize"
    data = load_folder(root, spec, log=None)
    assert data.train.shape[1] == 3
    assert (data.train[:, 0].float() - data.train[:, 2].float()).abs().max() > 20


def test_a_folder_without_usable_images_fails_before_anything_is_written(tmp_path: Path) -> None:
    root = tmp_path / "junk"
    root.mkdir()
    (root / "a.png").write_text("not a png")
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match="no readable image"):
        train.main(["--images", str(root), "--out", str(out), *TINY])
    assert not out.exists()


def test_train_images_leaves_a_calibrated_servable_bundle(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    """Few steps of the folder recipe: model, card with the folder, background model, bank,
    examples and thresholds; the bundle scores and inpaints; later pipelines re-read the
    folder from the card."""
    root = make_folder(tmp_path / "imgs", count=120)
    add_awkward_files(root)
    out = tmp_path / "trained" / "blobs"
    train.main(["--images", str(root), "--out", str(out), "--max-minutes", "4", *TINY])
    printed = capsys.readouterr().out
    assert "bundle ready" in printed and "4 files skipped" in printed

    bundle = load_bundle(out)
    card = bundle.card
    assert card.dataset == "folder:imgs" and card.input_recipe == "resize-dark"
    assert card.folder["skipped"] == 4 and card.folder["path"] == str(root.resolve())
    assert card.val.images == card.folder["val"] and "validation files" in card.val.describe(
        "val")
    assert bundle.background is not None and bundle.exemplars is not None
    assert len(bundle.exemplars.images) == card.folder["train"]
    assert len(bundle.examples) == min(8, card.folder["val"])
    assert all(e.source and e.source.startswith("file ") for e in bundle.examples)
    assert bundle.calibration["input_normalization"] == "resize-dark"
    assert bundle.calibration["input_normalization_settings"] == RECIPES["resize-dark"].settings()
    assert bundle.stale_note is None
    assert bundle.calibration["background"]["perturb"] == 0.1
    assert not (out / ".background").exists()

    light_upload = Image.fromarray(255 - blob(np.random.default_rng(5), 48))
    x, framing, note = fit_input(light_upload, bundle.image_shape, bundle.recipe)
    assert framing.inverted and "inverted" in note
    [verdict] = score_images(bundle, x[None])
    assert np.isfinite(verdict["bpd"]) and isinstance(verdict["flag"], bool)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[8:] = True
    filled = inpaint(bundle, x, mask)
    assert torch.equal(filled.image[:, :8], x[:, :8])

    calibrate.main([str(out)])  # the split comes back from the folder the card names
    report = folder_eval.main([str(out), "--out-set", f"same={root / 'a'}", "--limit", "20"])
    assert 0.0 <= report["pairs"]["same"]["evidence"]["auroc"] <= 1.0

    handlers = Handlers(ModelCache.survey(*checkpoints_for(None, out.parent)))
    assert handlers.cache.names == ["blobs"] and not handlers.cache.skipped
    assert [model for _, model in handlers.examples] == ["blobs"] * 8
    assert "background level subtracted, then resized" in handlers.normalize_info("blobs")
    upload = tmp_path / "page.png"
    light_upload.save(upload)
    editor = {"background": light_upload, "layers": [], "composite": None}
    filled, *_, metrics = handlers.inpaint(editor, "blobs", "bottom", "default", 0, 2, 0)
    assert filled.size == light_upload.size and "inverted" in metrics["fit"]
    assert np.asarray(filled)[0].mean() > 200  # pasted back into the white page
    table, _, _ = handlers.score([str(upload)], "blobs")
    assert table["bits/dim"].notna().all() and "inverted" in table["note"][0]


def test_a_colour_folder_trains_into_a_colour_bundle(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "rgb", count=80, colour=True)
    out = tmp_path / "trained" / "tints"
    train.main(["--images", str(root), "--out", str(out), "--max-minutes", "4", *TINY])
    bundle = load_bundle(out)
    assert bundle.image_shape == (3, 16, 16) and bundle.recipe.name == "resize"
    assert bundle.calibration["input_normalization"] == "off"
    assert "input_normalization_settings" not in bundle.calibration and bundle.stale_note is None
    image = torch.from_numpy(np.array(Image.open(bundle.examples[0].path))).permute(2, 0, 1)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:12, 4:12] = True
    filled = inpaint(bundle, image, mask, method="exemplar")
    assert filled.image.shape == (3, 16, 16)
    assert torch.equal(filled.image[:, ~mask], image[:, ~mask])
    [verdict] = score_images(bundle, image[None])
    assert np.isfinite(verdict["bpd"])


def test_the_budget_must_leave_time_for_the_flow(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    with pytest.raises(SystemExit, match="leaves"):
        train.main(["--images", str(root), "--out", str(tmp_path / "o"), "--max-minutes", "1",
                    *TINY])


def test_a_folder_model_can_start_from_a_trained_model_of_the_same_shape(tmp_path: Path) -> None:
    """--init-from with --images (the README's pretrained start): the weights and architecture
    come from the source, the card names it; a source of another shape is refused before
    anything is written."""
    source = tmp_path / "source"
    train.main(["--images", str(make_folder(tmp_path / "a", seed=1)), "--out", str(source),
                "--no-bundle", *TINY])
    out = tmp_path / "warm"
    train.main(["--images", str(make_folder(tmp_path / "b", seed=2)), "--out", str(out),
                "--no-bundle", "--init-from", str(source / "model.pt"),
                "--hparams", '{"steps": 3, "hidden": 4}', *TINY[2:]])
    card = load_bundle(out).card
    assert card.init_from["checkpoint"] == str(source / "model.pt")
    assert card.hparams == load_bundle(source).card.hparams  # the source's, not --hparams

    other = tmp_path / "other"
    with pytest.raises(SystemExit, match="--init-from .* shape"):
        train.main(["--images", str(tmp_path / "b"), "--out", str(other), "--size", "12", "12",
                    "--no-bundle", "--init-from", str(source / "model.pt"), *TINY[2:]])
    assert not other.exists()
