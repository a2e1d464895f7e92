"""Colour (RGB) models end to end: inpainting by every method, the exemplar bank, the anomaly
scores, the app's handlers and the batch scripts.

One tiny RGB Glow over 16x16 images of coloured shapes on coloured backgrounds is trained for
a few dozen steps (so it is no random init), saved with an exemplar bank and a calibration,
and loaded as the app and the scripts load it, with ``load_bundle``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inpaint_app.anomaly import calibrate, png_bits_per_dim, score_images
from inpaint_app.app.handlers import Handlers
from inpaint_app.app.registry import ModelCache, discover
from inpaint_app.bundle import ModelBundle, load_bundle
from inpaint_app.card import ModelCard
from inpaint_app.exemplars import BANK_FILE, save_bank
from inpaint_app.images import save_png
from inpaint_app.inpainting import inpaint, inpaint_batch
from inpaint_app.masks import make_mask
from inpaint_app.methods import available
from inpaint_app.models import build_model, save_model
from inpaint_app.training import LogProb, initialize_actnorm, train_step
from pipelines import inpaint_batch as inpaint_script
from pipelines import score_batch

SHAPE = (3, 16, 16)
NAME = "shapes-glow"
STEPS = {"ascent": 3, "exemplar": 0, "nice": 3, "langevin": 3}
pytestmark = pytest.mark.filterwarnings("ignore:.*no_silent_downcasting",
                                        "ignore:The copy keyword is deprecated")


def shapes(count: int, seed: int) -> torch.Tensor:
    """uint8 ``[count, 3, 16, 16]``: a saturated rectangle on a background of another hue."""
    rng = np.random.default_rng(seed)
    palette = np.array([(220, 40, 40), (40, 180, 60), (40, 70, 220), (230, 200, 30)], np.uint8)
    out = np.empty((count, 16, 16, 3), np.uint8)
    for image in out:
        back, front = rng.choice(len(palette), 2, replace=False)
        image[:] = palette[back] // 3
        top, left = rng.integers(1, 8, 2)
        image[top:top + rng.integers(5, 9), left:left + rng.integers(5, 9)] = palette[front]
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _trained_glow() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("glow", SHAPE, steps=2, hidden=16)
    data, generator = shapes(256, seed=1), torch.Generator().manual_seed(0)
    initialize_actnorm(model, data[:64], generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        batch = data[torch.randint(0, len(data), (32,), generator=generator)]
        train_step(LogProb(model), model, batch, optimizer, generator=generator)
    return model.eval()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with the colour bundle: model, card, exemplar bank, calibration,
    two examples of its own."""
    folder = tmp_path_factory.mktemp("models") / NAME
    model = _trained_glow()
    card = ModelCard(name=NAME, dataset="shapes", model="glow", image_shape=SHAPE,
                     command="tests/test_colour.py")
    save_model(model, folder / "model.pt", card=card)
    save_bank(shapes(128, seed=2), folder / BANK_FILE)
    anomaly = calibrate(load_bundle(folder), shapes(200, seed=3), source="shapes val (200)")
    save_model(model, folder / "model.pt", card=card.replace(anomaly=anomaly))
    (folder / "examples").mkdir()
    for i, image in enumerate(shapes(2, seed=4)):
        save_png(image, folder / "examples" / f"val-{i}.png")
    return folder.parent


@pytest.fixture(scope="module")
def bundle(root: Path) -> ModelBundle:
    return load_bundle(root / NAME)


@pytest.fixture(scope="module")
def handlers(root: Path) -> Handlers:
    paths = discover(root)
    return Handlers(ModelCache.survey(paths, NAME))


def _coloured(fill: torch.Tensor, mask: torch.Tensor) -> bool:
    """Whether the fill's missing pixels have colour: their channels are not all equal."""
    pixels = fill[:, mask].int()
    return bool((pixels[0] != pixels[1]).any() or (pixels[1] != pixels[2]).any())


def test_the_trained_model_prefers_its_own_images(bundle: ModelBundle) -> None:
    assert bundle.image_shape == SHAPE and bundle.exemplars is not None
    assert bundle.calibration is not None
    own = bundle.model.bits_per_dim(shapes(32, seed=5).float().add(0.5).div(256))
    noise = bundle.model.bits_per_dim(torch.rand(32, *SHAPE))
    assert own.mean() < noise.mean() - 1.0  # trained: not a random init


@pytest.mark.parametrize("method", available(has_conditional=False))
def test_every_method_fills_in_colour(bundle: ModelBundle, method: str) -> None:
    image, mask = shapes(1, seed=6)[0], make_mask("center", SHAPE[1:])
    result = inpaint(bundle, image, mask, method=method, steps=STEPS[method], seed=0)
    assert result.image.shape == SHAPE and result.image.dtype == torch.uint8
    assert torch.equal(result.image[:, ~mask], image[:, ~mask])  # observed: bit-identical
    assert not torch.equal(result.image[:, mask], image[:, mask])  # missing: filled anew
    assert _coloured(result.image, mask), f"{method} filled in gray"


def test_the_conditional_default_runs_on_colour(bundle: ModelBundle) -> None:
    """A 3-channel mask batch once gave one mask kind per channel, not per image."""
    torch.manual_seed(0)
    inpainter = build_model("cflow", SHAPE, steps=1, hidden=8).eval()
    with_flow = ModelBundle(bundle.model, bundle.card, inpainter=inpainter)
    images = shapes(2, seed=7)
    masks = torch.stack([make_mask("left", SHAPE[1:]), make_mask("random50", SHAPE[1:])])
    results = inpaint_batch(with_flow, images, masks, seed=0, n_samples=2)
    assert [r.method for r in results] == ["conditional", "conditional"]  # what "default" ran
    assert "compact mask" in results[0].message and "scattered mask" in results[1].message
    for result, image, mask in zip(results, images, masks, strict=True):
        assert torch.equal(result.image[:, ~mask], image[:, ~mask])
        assert result.samples.shape == (2, *SHAPE)


def test_the_exemplar_start_takes_colour_from_its_neighbours(bundle: ModelBundle) -> None:
    images = shapes(3, seed=8)
    masks = make_mask("right", SHAPE[1:]).expand(3, 3, -1, -1)
    filled = bundle.exemplars.fill(images.float() / 255, masks)
    assert filled.shape == images.shape
    assert all(_coloured((f * 255).round().byte(), masks[0, 0]) for f in filled)


def test_png_complexity_compresses_colour_in_colour() -> None:
    image = shapes(1, seed=9)[0]
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy(), "RGB").save(
        buffer, format="PNG", compress_level=9, optimize=True)
    assert png_bits_per_dim(image) == 8.0 * len(buffer.getvalue()) / image.numel()


def test_colour_images_score_and_noise_stands_out(bundle: ModelBundle) -> None:
    own = score_images(bundle, shapes(8, seed=10))
    noise = score_images(bundle, torch.randint(0, 256, (8, *SHAPE), dtype=torch.uint8))
    for row in own + noise:
        assert np.isfinite(row["bpd"]) and np.isfinite(row["score"]) and 0 < row["p_value"] <= 1
        assert row["score_name"] == "evidence"
    assert np.median([r["score"] for r in noise]) > np.median([r["score"] for r in own])
    assert sum(r["flag"] for r in noise) > sum(r["flag"] for r in own)


def _upload(scale: int = 3) -> Image.Image:
    """A colour upload at ``scale`` times the model's size."""
    array = shapes(1, seed=11)[0].permute(1, 2, 0).numpy()
    return Image.fromarray(array, "RGB").resize((16 * scale, 16 * scale), Image.NEAREST)


def _widened(mask: np.ndarray, pixels: int = 3) -> np.ndarray:
    """``mask`` grown by ``pixels`` in every direction (a square neighbourhood)."""
    grown = mask.copy()
    for dy in range(-pixels, pixels + 1):
        for dx in range(-pixels, pixels + 1):
            grown |= np.roll(np.roll(mask, dy, 0), dx, 1)
    return grown


def test_the_editor_keeps_colour(handlers: Handlers, tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    _upload().save(path)
    _, editor, note, _ = handlers.upload(str(path), NAME)
    assert editor["value"]["background"].mode == "RGB"
    assert np.array_equal(np.asarray(editor["value"]["background"]), np.asarray(_upload()))
    assert "48x48 RGB" in note


def test_the_app_fills_a_colour_upload_in_its_own_frame(handlers: Handlers) -> None:
    picture = _upload()
    editor = {"background": picture.convert("RGBA"), "layers": [], "composite": None}
    filled, _, _, _, view, summary, metrics = handlers.inpaint(
        editor, NAME, "center", "exemplar", 5, 0, 0)
    assert filled.mode == "RGB" and filled.size == picture.size  # pasted back, in colour
    assert view.size == (16, 16) and "resized to 16x16" in metrics["fit"]
    mask = np.asarray(Image.fromarray(make_mask("center", (16, 16)).numpy()).resize(
        picture.size, Image.NEAREST))
    before, after = np.asarray(picture), np.asarray(filled)
    kept = ~_widened(mask)  # the fill is blended in over about half a model pixel beyond
    assert np.array_equal(after[kept], before[kept])
    assert not np.array_equal(after[mask], before[mask])
    assert (after[mask][:, 0] != after[mask][:, 1]).any()  # the fill has colour
    plain = handlers.inpaint(editor, NAME, "center", "exemplar", 0, 0, 0, False)
    assert plain[0].mode == "RGB" and plain[0].size == (16, 16)


def test_the_app_fills_painted_strokes_on_a_colour_upload(handlers: Handlers) -> None:
    picture = _upload()
    layer = np.zeros((48, 48, 4), np.uint8)
    layer[12:30, 6:42] = (255, 0, 255, 255)
    editor = {"background": picture.convert("RGBA"),
              "layers": [Image.fromarray(layer, "RGBA")], "composite": None}
    filled = handlers.inpaint(editor, NAME, "painted", "default", 2, 0, 0)[0]
    before, after = np.asarray(picture), np.asarray(filled)
    painted = layer[..., 3] > 0
    kept = ~_widened(painted)
    assert np.array_equal(after[kept], before[kept])
    assert not np.array_equal(after[painted], before[painted])


def test_the_normalize_switch_says_what_it_does_for_colour(handlers: Handlers) -> None:
    """A review note: the switch described MNIST framing even for colour models. For them it
    only decides where a fill goes back: into the upload at its size, or at the model's."""
    info = handlers.normalize_info(NAME)
    assert "plain resize either way" in info and "upload at its own size" in info
    assert "20x20" not in info and "inverted" not in info
    inpaint_info, score_info = handlers.normalize_infos(NAME)
    assert inpaint_info["info"] == score_info["info"] == info


def test_the_anomaly_tab_scores_colour_uploads(handlers: Handlers, tmp_path: Path) -> None:
    own, noise = tmp_path / "own.png", tmp_path / "noise.png"
    _upload(2).save(own)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)).save(noise)
    table, histogram, _ = handlers.score([str(own), str(noise)], NAME)
    assert table["bits/dim"].notna().all() and "RGB" in table["note"][0]
    assert table["verdict"][0].startswith("in distribution")
    assert table["verdict"][1].startswith("anomalous")
    assert histogram is not None
    assert all(image.mode == "RGB" for image in handlers.sample(NAME, 2, 0.7, 0))


def _colour_folder(folder: Path) -> list[Image.Image]:
    folder.mkdir()
    pictures = [_upload(2), _upload(1)]
    for i, picture in enumerate(pictures):
        picture.save(folder / f"img{i}.png")
    return pictures


def test_score_batch_reads_colour_images(root: Path, tmp_path: Path) -> None:
    _colour_folder(tmp_path / "in")
    out = tmp_path / "scores.csv"
    score_batch.main(["--checkpoint", str(root / NAME), "--images", str(tmp_path / "in"),
                      "--out", str(out)])
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == ["img0.png", "img1.png"]
    assert all(np.isfinite(float(r["bpd"])) and not r["error"] for r in rows)
    assert rows[0]["flag"] == "false" and "RGB" in rows[0]["normalization"]


def test_inpaint_batch_writes_colour_fills(root: Path, tmp_path: Path) -> None:
    pictures = _colour_folder(tmp_path / "in")
    code = inpaint_script.main(["--checkpoint", str(root / NAME), "--images",
                                str(tmp_path / "in"), "--mask-preset", "center", "--out",
                                str(tmp_path / "out"), "--method", "exemplar",
                                "--ground-truth", str(tmp_path / "in")])
    assert code == 0
    with open(tmp_path / "out" / "metrics.csv", newline="") as f:
        rows = {row["file"]: row for row in csv.DictReader(f)}
    for i, picture in enumerate(pictures):
        filled = Image.open(tmp_path / "out" / f"img{i}.png")
        assert filled.mode == "RGB" and filled.size == picture.size
        before, after = np.asarray(picture), np.asarray(filled)
        assert not np.array_equal(before, after) and (after[..., 0] != after[..., 2]).any()
        assert rows[f"img{i}.png"]["status"] == "ok" and float(rows[f"img{i}.png"]["psnr_masked"])
