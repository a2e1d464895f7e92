"""Anomaly maps (``inpaint_app.anomaly_map``): a pasted patch is hot where it was pasted and not
elsewhere; the calibration survives a save and load; maps come back in the upload's frame;
``score_batch --maps`` writes one PNG per readable file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inpaint_app.anomaly_map import (
    MapUnavailable,
    anomaly_map,
    calibrate_map,
    map_calibration,
    to_upload_frame,
    window_masks,
)
from inpaint_app.bundle import ModelBundle, load_bundle
from inpaint_app.calibration_store import store_map_calibration
from inpaint_app.card import ModelCard
from inpaint_app.models import INPAINTER_FILE, build_model, save_model
from inpaint_app.normalize import Framing

SIDE = 12


def smooth_dark(n: int, seed: int) -> torch.Tensor:
    """uint8 ``[n, 1, 12, 12]``: a dark vertical gradient with a little noise."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.linspace(10, 60, SIDE)[None, None, :, None].expand(n, 1, SIDE, SIDE)
    noise = torch.randint(0, 12, (n, 1, SIDE, SIDE), generator=generator)
    return (base + noise).to(torch.uint8)


@pytest.fixture(scope="module")
def tiny() -> ModelBundle:
    """A tiny image model and a tiny conditional flow trained for a few seconds on
    ``smooth_dark`` images, its map calibrated on 60 more of them."""
    torch.manual_seed(0)
    glow = build_model("glow", image_shape=(1, SIDE, SIDE), hidden=8, steps=2)
    with torch.no_grad():
        glow.log_prob(torch.rand(16, 1, SIDE, SIDE) * 0.9 + 0.05)  # ActNorm init
    inpainter = build_model("cflow", (1, SIDE, SIDE), steps=2, hidden=16, features=8, width=16)
    optimizer = torch.optim.Adam(inpainter.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(0)
    for step in range(120):
        x = smooth_dark(64, 100 + step)
        y = (x.float() + torch.rand(x.shape, generator=generator)) / 256
        log_p, missing = inpainter.nll_terms(y, generator)
        loss = -log_p.sum() / missing.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    inpainter.eval()
    calibration = calibrate_map(inpainter, smooth_dark(60, 1), source="smooth_dark")
    return ModelBundle(glow.eval(), inpainter=inpainter,
                       inpainter_card=ModelCard(anomaly_map=calibration))


def test_windows_cover_every_pixel_and_end_at_the_edges() -> None:
    masks, counts = window_masks((28, 28), [(6, 2), (10, 4)])
    assert counts == [12 * 12, 6 * 6] and masks.shape == (180, 28, 28)
    for part in masks.split(counts):
        assert part.any(dim=0).all()
        assert part[:, -1, :].any() and part[:, :, -1].any()
        assert bool((part.flatten(1).sum(1) == part[0].sum()).all())  # one size per scale


def test_a_pasted_patch_is_hot_where_it_was_pasted_and_not_elsewhere(tiny: ModelBundle) -> None:
    generator = torch.Generator().manual_seed(7)
    images = smooth_dark(16, 2)
    regions = torch.zeros(16, SIDE, SIDE, dtype=torch.bool)
    for image, region in zip(images, regions, strict=True):
        top, left = torch.randint(0, SIDE - 3, (2,), generator=generator).tolist()
        image[0, top:top + 4, left:left + 4] = 255
        region[top:top + 4, left:left + 4] = True
    maps = anomaly_map(tiny, images)
    clean = anomaly_map(tiny, smooth_dark(16, 3))
    assert maps.shape == (16, SIDE, SIDE) and torch.isfinite(maps).all()
    level = map_calibration(tiny)["level"]
    inside = torch.stack([m[r].mean() for m, r in zip(maps, regions, strict=True)])
    outside = torch.stack([m[~r].mean() for m, r in zip(maps, regions, strict=True)])
    assert bool((inside > outside).all())
    assert bool((inside > level).all())  # every patch is a hot spot...
    # ... where it was pasted: the hottest pixel lies in the patch or next to it
    grown = torch.nn.functional.max_pool2d(regions[:, None].float(), 3, 1, 1)[:, 0] > 0
    hottest = maps.flatten(1).argmax(1)
    assert int(grown.flatten(1)[torch.arange(16), hottest].sum()) >= 14
    # and where no window holds a pasted pixel, the map is a hundred times lower, mostly cool
    masks, _ = window_masks((SIDE, SIDE), map_calibration(tiny)["windows"])
    far = torch.stack([~masks[masks[:, r].any(dim=1)].any(dim=0) for r in regions])
    assert int(far.sum()) > 100
    assert float(maps[far].mean()) < float(inside.mean()) / 100
    assert float((maps[far] > level).float().mean()) < 0.3
    assert float((clean.flatten(1).amax(1) > level).float().mean()) <= 0.25


def test_the_calibration_round_trips_through_the_inpainters_card(tiny: ModelBundle,
                                                                 tmp_path: Path) -> None:
    save_model(tiny.model, tmp_path / "model.pt", card={"name": "tiny"})
    save_model(tiny.inpainter, tmp_path / INPAINTER_FILE, card={"name": "tiny cflow"})
    with pytest.raises(MapUnavailable, match="not calibrated"):
        map_calibration(load_bundle(tmp_path))
    val = smooth_dark(40, 5)
    stored = store_map_calibration(tmp_path / "model.pt", val, source="smooth_dark (40)",
                                   command="test")
    bundle = load_bundle(tmp_path)
    calibration = map_calibration(bundle)
    assert calibration == stored and calibration["n"] == 40
    assert bundle.inpainter_card.name == "tiny cflow"  # the rest of the card is kept
    assert '"anomaly_map"' in (tmp_path / "inpainter-card.json").read_text()
    # the stored level is what the validation images' own maps give back
    peaks = anomaly_map(bundle, val).flatten(1).amax(1)
    assert float((peaks > calibration["level"]).float().mean()) <= calibration["fpr"] + 1e-9
    assert float((peaks >= calibration["level"] - 1e-3).float().mean()) >= calibration["fpr"]


def test_a_pixel_takes_its_most_surprising_window_and_older_calibrations_the_mean(
        tiny: ModelBundle) -> None:
    calibration = map_calibration(tiny)
    assert calibration["cover"] == "max"
    older = ModelBundle(tiny.model, inpainter=tiny.inpainter, inpainter_card=ModelCard(
        anomaly_map={k: v for k, v in calibration.items() if k != "cover"}))
    images = smooth_dark(4, 11)
    images[:, :, 3:7, 4:8] = 255
    largest, mean = anomaly_map(tiny, images), anomaly_map(older, images)
    assert bool((largest >= mean - 1e-6).all()) and bool((largest > mean + 1e-3).any())
    # a corner pixel lies in one window of each size: there the largest is the mean
    masks, counts = window_masks((SIDE, SIDE), calibration["windows"])
    assert all(int(part[:, 0, 0].sum()) == 1 for part in masks.split(counts))
    assert torch.allclose(largest[:, 0, 0], mean[:, 0, 0])


def test_a_bundle_without_an_inpainter_gets_a_clear_error(tiny: ModelBundle) -> None:
    with pytest.raises(MapUnavailable, match="no conditional inpainting flow"):
        anomaly_map(ModelBundle(tiny.model), smooth_dark(1, 0))


def test_maps_come_back_in_the_uploads_frame() -> None:
    values = torch.zeros(SIDE, SIDE)
    values[2:4, 6:8] = 5.0
    framing = Framing(size=(60, 40), shape=(SIDE, SIDE), scale=(0.5, 0.5), offset=(-2.0, 1.0))
    back = to_upload_frame(values, framing, framing.size)
    assert back.shape == (40, 60)
    # model (u, v) = 0.5 * (x, y) + offset: the hot model pixels come from x 16..20, y 2..6
    hot = np.argwhere(np.nan_to_num(back) > 2.5)
    assert hot[:, 1].min() >= 15 and hot[:, 1].max() <= 20
    assert hot[:, 0].min() >= 1 and hot[:, 0].max() <= 6
    assert np.isnan(back[:, -10:]).all()  # x >= 28 is beyond the model's 12 pixels
    plain = to_upload_frame(values, None, (24, 24))
    assert plain.shape == (24, 24) and plain[4:8, 12:16].mean() > plain[12:, :].mean()


def test_score_batch_maps_one_png_per_readable_file(tiny: ModelBundle, tmp_path: Path) -> None:
    from pipelines import score_batch

    save_model(tiny.model, tmp_path / "model" / "model.pt", card={"name": "tiny"})
    save_model(tiny.inpainter, tmp_path / "model" / INPAINTER_FILE, card=tiny.inpainter_card)
    images = tmp_path / "images"
    images.mkdir()
    pasted = smooth_dark(1, 9)[0, 0].numpy()
    pasted[1:5, 6:10] = 255
    Image.fromarray(pasted).save(images / "pasted.png")
    Image.fromarray(pasted).resize((36, 36), Image.Resampling.NEAREST).save(images / "big.png")
    Image.fromarray(smooth_dark(1, 8)[0, 0].numpy()).convert("RGB").save(images / "clean.jpg")
    (images / "notes.txt").write_text("not an image\n")
    (images / "cut.png").write_bytes((images / "pasted.png").read_bytes()[:40])
    out, maps = tmp_path / "scores.csv", tmp_path / "maps"
    score_batch.main(["--checkpoint", str(tmp_path / "model"), "--images", str(images),
                      "--out", str(out), "--maps", str(maps), "--no-normalize"])
    assert sorted(p.name for p in maps.iterdir()) == ["big.png", "clean.png", "pasted.png"]
    with out.open(newline="") as f:
        rows = {row["file"]: row for row in csv.DictReader(f)}
    assert rows["notes.txt"]["map"] == rows["cut.png"]["map"] == ""
    assert rows["pasted.png"]["hot_spot"] == "true" and rows["big.png"]["hot_spot"] == "true"
    assert float(rows["pasted.png"]["map_peak"]) > float(rows["clean.jpg"]["map_peak"])
    for name, scale in (("pasted.png", 1), ("big.png", 3)):
        picture = np.asarray(Image.open(maps / name).convert("RGB")).astype(int)
        assert picture.shape == (12 * scale, 12 * scale, 3)  # the upload's size
        warm = (picture[..., 0] - picture[..., 2]) > 100  # yellow to red: the map's colours
        patch = warm[1 * scale:5 * scale, 6 * scale:10 * scale]
        corner = warm[10 * scale:, :2 * scale]  # a far corner: no window holds the patch
        assert patch.all() and not corner.any()  # coloured where pasted, in the upload's frame


def test_score_batch_maps_refuse_a_model_without_an_inpainter(tiny: ModelBundle,
                                                             tmp_path: Path) -> None:
    from pipelines import score_batch

    save_model(tiny.model, tmp_path / "model.pt", card={"name": "tiny"})
    (tmp_path / "images").mkdir()
    with pytest.raises(SystemExit, match="no conditional inpainting flow"):
        score_batch.main(["--checkpoint", str(tmp_path), "--images", str(tmp_path / "images"),
                          "--out", str(tmp_path / "s.csv"), "--maps", str(tmp_path / "m")])
    assert not (tmp_path / "m").exists() and not (tmp_path / "s.csv").exists()


def test_a_folder_bundle_gets_an_inpainter_and_maps(tmp_path: Path) -> None:
    from inpaint_app.folder_inpainter import add_inpainter
    from pipelines import train

    rng = np.random.default_rng(0)
    root = tmp_path / "blobs"
    root.mkdir()
    for i in range(240):
        image = np.zeros((16, 16), np.uint8)
        top, left = rng.integers(2, 8, 2)
        image[top:top + 6, left:left + 6] = rng.integers(150, 256)
        Image.fromarray(image).save(root / f"{i:03d}.png")
    out = tmp_path / "trained" / "blobs"
    train.main(["--images", str(root), "--out", str(out), "--no-bundle", "--epochs", "1",
                "--hparams", '{"steps": 2, "hidden": 8}', "--threads", "1"])
    with pytest.raises(MapUnavailable, match="no conditional inpainting flow"):
        map_calibration(load_bundle(out))
    calibration = add_inpainter(out, minutes=0.05)
    bundle = load_bundle(out)
    assert map_calibration(bundle) == calibration and calibration["n"] >= 20
    assert calibration["windows"] == [[6, 2], [7, 2]]  # 10 and 12 at stride 4, for 16 pixels
    assert not (out / ".inpainter").exists()
    images = torch.zeros(2, 1, 16, 16, dtype=torch.uint8)
    images[:, :, 4:10, 4:10] = 200
    maps = anomaly_map(bundle, images)
    assert maps.shape == (2, 16, 16) and torch.isfinite(maps).all()


@pytest.mark.parametrize(("size", "side"), [
    ((12, 12), 224), ((28, 28), 224),  # a model's view, as each Anomaly row shows it
    ((60, 40), 224), ((300, 500), 300), ((1200, 300), 320), ((320, 2000), 320)])  # uploads
def test_every_colour_bar_label_lies_inside_the_map_panel(size: tuple[int, int],
                                                           side: int) -> None:
    """Issue 38: the colour bar's labels were cut off. At each size the app draws a panel (the
    model's view 224 pixels wide, an upload at its width within 224..320), under the view come
    two bands of ink, the bar with its ticks, then the labels, each tick's label wholly inside
    the panel; under the model's view a blank band stays for the caption Gradio's gallery lays
    over a thumbnail's bottom (27 screen pixels of a thumbnail 200 high)."""
    from inpaint_app.app.pictures import map_panel

    view = Image.new("L", size, 0)
    panel = map_panel(view, np.zeros(size[::-1], np.float32), 1.0, side=side)
    height = round(side * size[1] / size[0])
    assert panel.width == side and panel.height > height
    under = np.asarray(panel.convert("L"))[height:] < 250  # ink under the view
    rows = np.flatnonzero(np.diff(np.r_[0, under.any(axis=1), 0])).reshape(-1, 2)
    assert len(rows) == 2  # the bar with its ticks, then the labels, each band whole
    (bar, _), (top, bottom) = rows
    labels = under[top:bottom]
    assert bottom < len(under) and not labels[:, [0, -1]].any()  # no label cut at an edge
    ticks = np.flatnonzero(under[bar])  # the ticks rise above the bar
    assert len(ticks) == 3
    assert all(labels[:, max(0, x - 4):x + 5].any() for x in ticks)  # a label at each tick
    if size[0] == size[1]:
        assert (len(under) - bottom) / panel.height >= 27 / 200


def test_the_app_shows_each_rows_map_and_where_the_model_would_change_an_image(
        tiny: ModelBundle, tmp_path: Path) -> None:
    import gradio as gr

    from inpaint_app.app.handlers import Handlers
    from inpaint_app.app.registry import ModelCache

    for name, inpainter in (("tiny", True), ("bare", False)):
        save_model(tiny.model, tmp_path / name / "model.pt", card={"name": name})
        if inpainter:
            save_model(tiny.inpainter, tmp_path / name / INPAINTER_FILE, card=tiny.inpainter_card)
    handlers = Handlers(ModelCache({n: tmp_path / n / "model.pt" for n in ("tiny", "bare")},
                                   "tiny"))
    pasted = smooth_dark(1, 9)[0, 0].numpy()
    pasted[1:5, 6:10] = 255
    Image.fromarray(pasted).save(tmp_path / "pasted.png")
    Image.fromarray(smooth_dark(1, 8)[0, 0].numpy()).save(tmp_path / "clean.png")
    (tmp_path / "notes.txt").write_text("not an image\n")
    files = [str(tmp_path / n) for n in ("pasted.png", "notes.txt", "clean.png")]
    gallery, legend = handlers.maps(files, "tiny", False)
    assert [caption.split(":")[0] for _, caption in gallery] == ["#1 pasted.png", "#3 clean.png"]
    assert "pasted.png: hot spot" in gallery[0][1] and "no hot spot" in gallery[1][1]
    assert "hot-spot level" in legend and "5%" in legend
    panel = np.asarray(gallery[0][0].convert("RGB")).astype(int)
    assert panel.shape[1] == 224 and panel.shape[0] > 224  # the view enlarged, a colour bar
    warm = (panel[:224, :, 0] - panel[:224, :, 2]) > 100
    assert warm[19:93, 112:187].mean() > 0.9  # red over the pasted pixels, 224 / 12 a pixel
    editor = {"background": Image.fromarray(pasted), "layers": [], "composite": None}
    picture, note = handlers.where(editor, "tiny", False)
    assert picture.size == gallery[0][0].size and note.startswith("**Hot spot**")
    with pytest.raises(gr.Error, match="no conditional inpainting flow"):
        handlers.maps(files, "bare", False)
